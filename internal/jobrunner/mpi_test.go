package jobrunner

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/remoteexec"
)

// The test binary is mpirun's rsh agent too, as the outpost binary is in
// a pod: mpiAgent names os.Executable() + " job rsh".
func init() {
	if len(os.Args) > 2 && os.Args[1] == "job" && os.Args[2] == "rsh" {
		os.Exit(remoteexec.RSH(context.Background(), os.Args[3:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, nil))
	}
	// Each instance's server on its own loopback address, as on the local
	// node, at a port free there.
	mpiListen = func(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		mpiPort = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	mpiProgressEvery = 200 * time.Millisecond
}

func TestMPIRunArgs(t *testing.T) {
	o := mpirunOptions{np: 4, hostfile: "/azureml/mpi/hostfile", agent: "/azureml/bin/outpost job rsh", wd: "/azureml/wd"}
	base := []string{"--allow-run-as-root", "-np", "4", "--hostfile", "/azureml/mpi/hostfile",
		"--mca", "plm_rsh_agent", "/azureml/bin/outpost job rsh", "--mca", "plm_rsh_no_tree_spawn", "1",
		"--mca", "orte_keep_fqdn_hostnames", "1", "--bind-to", "none", "--mca", "rtc_hwloc_vmhole", "none", "--tag-output", "-wdir", "/azureml/wd"}
	app := []string{"/bin/bash", "-c", mpiRankScript, "/bin/bash", "python a.py"}
	if got, want := mpirunArgs(o, "/bin/bash", "python a.py"), append(append([]string(nil), base...), app...); !reflect.DeepEqual(got, want) {
		t.Errorf("cluster args:\n%q\nwant\n%q", got, want)
	}
	o.loopback = true
	lo := []string{"--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", "--mca", "btl_tcp_port_min_v4", "0"}
	if got, want := mpirunArgs(o, "/bin/bash", "python a.py"), append(append(append([]string(nil), base...), lo...), app...); !reflect.DeepEqual(got, want) {
		t.Errorf("loopback args:\n%q\nwant\n%q", got, want)
	}
	if got, want := hostfileText([]string{"j-0.j", "j-1.j"}, 2), "j-0.j slots=2\nj-1.j slots=2\n"; got != want {
		t.Errorf("hostfile %q, want %q", got, want)
	}
	env := mpiEnv([]string{"A=1", "OMPI_COMM_WORLD_RANK=0", "OMPI_MCA_x=y", "AZUREML_PROCESS_NAME=rank_0", "AZ_BATCH_MASTER_NODE=h:6105",
		"OUTPOST_METRICS_FILE=/azureml/metrics/rank_0.jsonl"})
	if want := []string{"A=1", "OMPI_MCA_x=y", "AZ_BATCH_MASTER_NODE=h:6105"}; !reflect.DeepEqual(env, want) {
		t.Errorf("mpiEnv %q, want %q", env, want)
	}
}

func TestRankDemux(t *testing.T) {
	input := "[1,1]<stdout>:one\n[1,0]<stderr>:zero\n[1,2]<stdout>:two\nmpirun noticed something\n[1,7]<stdout>:out of range\n" +
		"[bad]<stdout>:x\n[1,1]<stddiag>:diag\n" +
		// Chunks that end mid-line, another rank's in between.
		"[1,0]<stdout>:sum [1,1]<stdout>:sum 3\n[1,0]<stdout>:3\n[1,2]<stdout>:no [1,2]<stdout>:end"
	wantRanks := [3]string{"zero\nmpirun noticed something\nout of range\n[bad]<stdout>:x\nsum 3\n", "one\ndiag\nsum 3\n", "two\nno end"}
	wantConsole := "[1,1]<stdout>:one\n[1,0]<stderr>:zero\n[1,2]<stdout>:two\nmpirun noticed something\n[1,7]<stdout>:out of range\n" +
		"[bad]<stdout>:x\n[1,1]<stddiag>:diag\n[1,1]<stdout>:sum 3\n[1,0]<stdout>:sum 3\n[1,2]<stdout>:no end"
	for _, size := range []int{len(input), 7, 1} {
		var out [3]strings.Builder
		var console, tail strings.Builder
		d := &rankDemux{ranks: []io.Writer{&out[0], &out[1], &out[2]}, console: func(b []byte) { console.Write(b) }, tail: &tail}
		for i := 0; i < len(input); i += size {
			d.Write([]byte(input[i:min(i+size, len(input))]))
		}
		d.close()
		for i := range out {
			if out[i].String() != wantRanks[i] {
				t.Errorf("chunks of %d: rank %d got %q, want %q", size, i, out[i].String(), wantRanks[i])
			}
		}
		if console.String() != wantConsole || tail.String() != wantConsole {
			t.Errorf("chunks of %d: console %q, tail %q, want %q", size, console.String(), tail.String(), wantConsole)
		}
	}
}

func needMPI(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun (Open MPI) is not installed")
	}
	if os.Geteuid() != 0 {
		// 127.0.0.2 and above need no setup as any user, but the launch
		// is only tried as the pods run it.
		t.Skip("MPI launch tests run as root, as a job's pods do")
	}
}

// runMPIJob runs the instances of job w as pods would, each with hosts
// as OUTPOST_HOSTS, and returns their results by instance.
func runMPIJob(t *testing.T, w *fakeWorkspace, hosts []string, perInstance int, extra map[string]string) []jobResult {
	t.Helper()
	res := make([]jobResult, len(hosts))
	done := make(chan int, len(hosts))
	for i := len(hosts) - 1; i >= 0; i-- {
		env := map[string]string{EnvFramework: "mpi", EnvInstanceCount: strconv.Itoa(len(hosts)), EnvInstanceIndex: strconv.Itoa(i),
			EnvHosts: strings.Join(hosts, ","), EnvProcessesPerInstance: strconv.Itoa(perInstance)}
		for k, v := range extra {
			env[k] = v
		}
		go func() {
			res[i] = runJob(t, w, runOptions{env: env})
			done <- i
		}()
	}
	for range hosts {
		<-done
	}
	return res
}

func TestMPIJobAcrossInstances(t *testing.T) {
	needMPI(t)
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = `echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE local $OMPI_COMM_WORLD_LOCAL_RANK name $AZUREML_PROCESS_NAME key ${OUTPOST_RSH_KEY:-unset} in $PWD"; echo "err $OMPI_COMM_WORLD_RANK" >&2; echo $OMPI_COMM_WORLD_RANK > outputs/rank-$OMPI_COMM_WORLD_RANK.txt`
	if py := "/usr/bin/python3"; exec.Command(py, "-c", "import mpi4py").Run() == nil {
		// The ranks talk to each other: an allreduce over Open MPI's TCP.
		run.Command += `; ` + py + ` -c "from mpi4py import MPI; c = MPI.COMM_WORLD; print('sum', c.allreduce(c.Get_rank() + 1))"`
	}
	w := newFakeWorkspace(t, run)
	res := runMPIJob(t, w, []string{"127.0.0.2", "127.0.0.3"}, 1, nil)
	for i, r := range res {
		if r.code != 0 {
			t.Fatalf("instance %d: exit code %d\nstdout:\n%s\nstderr:\n%s", i, r.code, r.stdout, r.stderr)
		}
	}
	for rank := range 2 {
		log := w.log("user_logs/std_log_process_" + strconv.Itoa(rank) + ".txt")
		r := strconv.Itoa(rank)
		for _, want := range []string{"rank " + r + " of 2 local 0 name rank_" + r + " key unset in /", "err " + r + "\n"} {
			if !strings.Contains(log, want) {
				t.Errorf("rank %d's log has no %q:\n%s", rank, want, log)
			}
		}
		if strings.Contains(run.Command, "mpi4py") && !strings.Contains(log, "sum 3\n") {
			t.Errorf("rank %d's log has no allreduce sum:\n%s", rank, log)
		}
		if _, ok := w.get(ds, "ExperimentRun/dcid.job_1/outputs/rank-"+r+".txt"); !ok {
			t.Errorf("instance %d did not upload its ./outputs", rank)
		}
	}
	if !strings.Contains(res[0].stdout, "[1,1]<stdout>:rank 1 of 2") {
		t.Errorf("the launcher's stdout lacks rank 1's tagged line:\n%s", res[0].stdout)
	}
	if p := w.phaseNames(); !reflect.DeepEqual(p, []string{"Preparing", "Running", "Finalizing"}) {
		t.Errorf("phases %v", p)
	}
}

func TestMPIJobProcessesPerInstance(t *testing.T) {
	needMPI(t)
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = `echo "rank $OMPI_COMM_WORLD_RANK local $OMPI_COMM_WORLD_LOCAL_RANK of $OMPI_COMM_WORLD_SIZE"`
	w := newFakeWorkspace(t, run)
	res := runMPIJob(t, w, []string{"127.0.0.4"}, 2, nil)
	if res[0].code != 0 {
		t.Fatalf("exit code %d\n%s\n%s", res[0].code, res[0].stdout, res[0].stderr)
	}
	for rank := range 2 {
		r := strconv.Itoa(rank)
		if log := w.log("user_logs/std_log_process_" + r + ".txt"); log != "rank "+r+" local "+r+" of 2\n" {
			t.Errorf("rank %d's log %q", rank, log)
		}
	}
}

func TestMPIJobFailingRank(t *testing.T) {
	needMPI(t)
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = `if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then echo "rank 1 gives up"; exit 3; fi`
	w := newFakeWorkspace(t, run)
	res := runMPIJob(t, w, []string{"127.0.0.5", "127.0.0.6"}, 1, nil)
	if res[0].code != 3 || !strings.Contains(res[0].term, "exit code 3") || !strings.Contains(res[0].term, "rank 1 gives up") {
		t.Errorf("launcher: exit code %d, termination message %q", res[0].code, res[0].term)
	}
	if res[1].code != 0 {
		t.Errorf("worker: exit code %d, want 0 (the launcher carries the job's code)\n%s", res[1].code, res[1].stderr)
	}
}

func TestMPILauncherGivesUpOnAbsentWorker(t *testing.T) {
	needMPI(t)
	old := mpiWaitFor
	oldShutdown := mpiShutdownFor
	mpiWaitFor, mpiShutdownFor = 2*time.Second, time.Second
	defer func() { mpiWaitFor, mpiShutdownFor = old, oldShutdown }()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = "true"
	w := newFakeWorkspace(t, run)
	r := runJob(t, w, runOptions{env: map[string]string{EnvFramework: "mpi", EnvInstanceCount: "2", EnvInstanceIndex: "0", EnvHosts: "127.0.0.7,127.0.0.8"}})
	if r.code != 1 || !strings.Contains(r.term, "instance 1 (127.0.0.8:") || !strings.Contains(r.stderr, "waiting for the remote-exec servers") {
		t.Errorf("exit code %d, termination message %q\nstderr:\n%s", r.code, r.term, r.stderr)
	}
}
