// Command jobs measures training-job dispatch on the local cluster: N short
// single-instance jobs submitted through the workspace API to one compute,
// against the same pods as plain Kubernetes Jobs created directly on the same
// cluster in the same run; then gangs of two instances on room for three.
// It prints figures, ratios and the targets (>= 50 jobs/s end to end,
// submit -> Running p50 <= 1 s) with PASS or MISS: a miss is a figure, not
// a failure. Run `make bench-jobs`; Ctrl-C stops it and cleans up (a second
// Ctrl-C exits at once).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/bench/benchenv"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/cluster"
)

const (
	rg, ws, computeName = "rg", "ws", "bench"
	jobsPath            = "/resourceGroups/" + rg + "/workspaces/" + ws + "/jobs"
)

func main() {
	var o options
	flag.IntVar(&o.jobs, "jobs", 1000, "single-instance jobs to submit (and plain Kubernetes Jobs for the baseline)")
	flag.IntVar(&o.gangs, "gangs", 50, "two-instance gangs for the mixed run (0: skip it)")
	flag.IntVar(&o.parallel, "parallel", 16, "concurrent submissions")
	flag.StringVar(&o.cpuLimit, "cpu-limit", "500m", "limits.cpu of the jobs' instance type")
	flag.StringVar(&o.memLimit, "memory-limit", "64Mi", "limits.memory of the jobs' instance type")
	flag.StringVar(&o.logs, "logs", "", "folder to keep the workspace's, agent's and operator's logs in (default: none kept)")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		signal.Stop(sigs) // a second Ctrl-C ends the program at once
		fmt.Fprintln(os.Stderr, "bench: stopping and cleaning up (Ctrl-C again to exit at once)")
		cancel()
	}()
	err := run(ctx, o)
	cancel()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	jobs, gangs, parallel int
	cpuLimit, memLimit    string
	logs                  string
}

// bench is the cluster, the workspace and a login to it.
type bench struct {
	env   *benchenv.Env
	dir   string
	bin   string
	cfg   *cluster.Config
	kube  kubernetes.Interface
	meta  metadata.Interface
	ws    *client.Client
	wsPid int
}

func run(ctx context.Context, o options) error {
	b, cleanup, err := setup(ctx)
	defer cleanup()
	if err != nil {
		return err
	}
	if o.logs != "" {
		defer b.keepLogs(o.logs) // before cleanup, which removes them
	}
	if err := b.probe(ctx); err != nil {
		return err
	}
	// A small instance type, so that every job fits at once. Its limits are
	// enforced by the node: they must hold the wrapper (see the probe's
	// figures printed above).
	if err := b.instanceType(ctx, "bench-tiny", "1m", "1Mi", o.cpuLimit, o.memLimit); err != nil {
		return err
	}
	fmt.Printf("\nOutpost: %d jobs (command true, image python, requests 1m CPU 1Mi, limits %s CPU %s) through the workspace API, %d at a time\n",
		o.jobs, o.cpuLimit, o.memLimit, o.parallel)
	comps := b.components(ctx)
	cpu0 := cpuOf(comps)
	req0 := b.apiRequests(ctx)
	out, mem, err := b.outpostJobs(ctx, o.jobs, o.parallel)
	if err != nil {
		return err
	}
	outCPU := diff(cpuOf(comps), cpu0)
	outReq := diff(b.apiRequests(ctx), req0)
	// The retired jobs' pods are deleted by the agent: let that end before
	// the baseline starts, so that it does not pay for it.
	if err := b.waitPodsGone(ctx, "", v1alpha1.LabelJob); err != nil {
		return err
	}
	fmt.Printf("\nBaseline: %d plain Kubernetes Jobs (image python, command true, same requests and limits) created with client-go, %d at a time\n",
		o.jobs, o.parallel)
	cpu0 = cpuOf(comps)
	req0 = b.apiRequests(ctx)
	base, err := b.kubeJobs(ctx, o.jobs, o.parallel, o.cpuLimit, o.memLimit)
	if err != nil {
		return err
	}
	baseCPU := diff(cpuOf(comps), cpu0)
	baseReq := diff(b.apiRequests(ctx), req0)
	report(out, base, mem)
	fmt.Println("\nCPU per job (ms) from submit until all ended, by component:")
	names := slices.Sorted(maps.Keys(comps))
	var tOut, tBase float64
	for _, name := range names {
		if outCPU[name] < 0 || baseCPU[name] < 0 {
			// A process that ended (and was restarted) took its counts along.
			fmt.Printf("  %-26s  restarted during the runs: not counted\n", name)
			continue
		}
		fmt.Printf("  %-26s %8.1f %8.1f\n", name, outCPU[name]/float64(o.jobs), baseCPU[name]/float64(o.jobs))
		tOut += outCPU[name]
		tBase += baseCPU[name]
	}
	fmt.Printf("  %-26s %8.1f %8.1f   (Outpost, k8s Jobs; the machine has %d CPUs)\n", "total", tOut/float64(o.jobs), tBase/float64(o.jobs), runtime.NumCPU())
	printRequests(outReq, baseReq, o.jobs)
	if o.gangs > 0 {
		if err := b.kube.CoreV1().Namespaces().Delete(ctx, "baseline", metav1.DeleteOptions{}); err != nil {
			return err
		}
		if err := b.waitPodsGone(ctx, "baseline", ""); err != nil {
			return err
		}
		if err := b.gangs(ctx, o.gangs, o.parallel, o.memLimit); err != nil {
			return err
		}
	}
	return nil
}

func setup(ctx context.Context) (*bench, func(), error) {
	e, err := benchenv.Start(ctx, benchenv.Options{Name: "jobs", ResourceGroup: rg, Workspace: ws, Compute: computeName, Heartbeat: "2s",
		Extension: []string{"--config", "enableTraining=True"},
		QPS:       200, Burst: 400}) // the baseline's client must not be the bottleneck
	if err != nil {
		return nil, func() {}, err
	}
	meta, err := metadata.NewForConfig(e.REST)
	if err != nil {
		e.Close()
		return nil, func() {}, err
	}
	b := &bench{env: e, dir: e.Dir, bin: e.Bin, cfg: e.Cluster, kube: e.Kube, meta: meta, ws: e.WS, wsPid: e.WSPid}
	return b, e.Close, nil
}

// keepLogs copies the workspace's log and the agent's and operator's pod
// logs into dir, to find where the time went.
func (b *bench) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
		return
	}
	for name, path := range map[string]string{"workspace.log": filepath.Join(b.dir, "workspace.log"), "node.log": b.cfg.LogPath("node")} {
		if data, err := os.ReadFile(path); err == nil {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
			}
		}
	}
	for _, c := range []struct{ name, ns, selector string }{{"agent", "azure-arc", "app=outpost-agent"}, {"operator", "azureml", "app=training-operator"}} {
		out, err := exec.Command("kubectl", "--kubeconfig", b.cfg.KubeconfigPath(), "logs", "-n", c.ns, "-l", c.selector, "--tail=-1", "--timestamps").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s log: %v\n%s", c.name, err, out)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, c.name+".log"), out, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
		}
	}
	fmt.Fprintf(os.Stderr, "logs kept in %s\n", dir)
}

func diff(after, before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (b *bench) outpost(ctx context.Context, args ...string) error {
	_, err := b.env.Outpost(ctx, args...)
	return err
}

// instanceType applies an InstanceType and waits until the workspace knows
// it: jobs are checked against what the agent reported.
func (b *bench) instanceType(ctx context.Context, name, reqCPU, reqMem, limCPU, limMem string) error {
	manifest := fmt.Sprintf(`{"apiVersion":"amlarc.azureml.com/v1alpha1","kind":"InstanceType","metadata":{"name":%q},
"spec":{"resources":{"requests":{"cpu":%q,"memory":%q},"limits":{"cpu":%q,"memory":%q}}}}`, name, reqCPU, reqMem, limCPU, limMem)
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", b.cfg.KubeconfigPath(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply instance type %s: %v\n%s", name, err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var c api.Compute
		if err := b.ws.Do(ctx, "GET", "/resourceGroups/"+rg+"/workspaces/"+ws+"/computes/"+computeName, nil, &c); err != nil {
			return err
		}
		if slices.ContainsFunc(c.InstanceTypes, func(it api.InstanceType) bool { return it.Name == name }) {
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("instance type %s not reported in 60 s", name)
}

func jobSpec(instanceType string) api.JobSpec {
	return api.JobSpec{Command: "true", Environment: &api.EnvironmentRef{Inline: &api.Environment{Image: "python"}},
		Compute: "azureml:" + computeName, Resources: &api.JobResources{InstanceType: instanceType}}
}

// probe runs one job without tight limits and measures what the wrapper
// (`outpost job run`) and the install init container need, so that the
// benchmark's instance type can be sized to hold them.
func (b *bench) probe(ctx context.Context) error {
	if err := b.instanceType(ctx, "bench-probe", "1m", "1Mi", "2", "1Gi"); err != nil {
		return err
	}
	// The install container copies the running binary: do what it does here,
	// where its resource usage can be read.
	start := time.Now()
	install := exec.CommandContext(ctx, b.bin, "job", "install", filepath.Join(b.dir, "probe-install", "outpost"))
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("outpost job install: %v\n%s", err, out)
	}
	installWall := time.Since(start)
	ru := install.ProcessState.SysUsage().(*syscall.Rusage)
	st, err := os.Stat(b.bin)
	if err != nil {
		return err
	}
	spec := jobSpec("bench-probe")
	spec.Command = "sleep 3"
	if err := b.ws.Do(ctx, "PUT", jobsPath+"/probe", spec, nil); err != nil {
		return err
	}
	if _, err := b.waitJob(ctx, "probe", func(s string) bool { return s == api.JobRunning || api.JobTerminal(s) }); err != nil {
		return err
	}
	pods, err := b.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelJob + "=probe"})
	if err != nil {
		return err
	}
	if len(pods.Items) != 1 {
		return fmt.Errorf("probe job: %d pods", len(pods.Items))
	}
	var wrapper procStats
	for _, pid := range podPids(string(pods.Items[0].UID)) {
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "job\x00run") {
			wrapper = readProc(pid)
		}
	}
	j, err := b.waitJob(ctx, "probe", api.JobTerminal)
	if err != nil {
		return err
	}
	if j.Status != api.JobCompleted {
		return fmt.Errorf("probe job %s: %s", j.Status, j.StatusMessage)
	}
	fmt.Printf("what a job's pod needs (probe job, command sleep 3, no tight limits):\n")
	fmt.Printf("  install, once per node and outpost binary (copies the %.0f MiB binary): %.0f ms, CPU %.0f ms, peak RSS %.0f MiB\n",
		float64(st.Size())/(1<<20), float64(installWall.Milliseconds()),
		float64(ru.Utime.Nano()+ru.Stime.Nano())/1e6, float64(ru.Maxrss)/1024)
	if wrapper.pid == 0 {
		fmt.Printf("  wrapper: not found while its command ran\n")
	} else {
		fmt.Printf("  wrapper (outpost job run) up to its command: CPU %.0f ms, peak RSS %.0f MiB\n", wrapper.cpuMs, wrapper.peakMiB)
	}
	return nil
}

// waitJob GETs one job until ok(its state).
func (b *bench) waitJob(ctx context.Context, name string, ok func(string) bool) (api.Job, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var j api.Job
		if err := b.ws.Do(ctx, "GET", jobsPath+"/"+name, nil, &j); err != nil {
			return j, err
		}
		if ok(j.Status) {
			return j, nil
		}
		if time.Now().After(deadline) {
			return j, fmt.Errorf("job %s still %s after 2 minutes", name, j.Status)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return j, err
		}
	}
}

// waitPodsGone waits until no pod of namespace (all when "") with the label
// selector is left.
func (b *bench) waitPodsGone(ctx context.Context, ns, selector string) error {
	start := time.Now()
	for {
		pods, err := b.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			fmt.Fprintf(os.Stderr, "  pods deleted (%.1f s)\n", time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("%d pods (%s %s) still there after 5 minutes", len(pods.Items), ns, selector)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// firsts records, per job index, the first time each stage was seen.
type firsts struct {
	mu sync.Mutex
	at map[string][]time.Time // stage -> per job
	n  int
}

func newFirsts(n int, stages ...string) *firsts {
	f := &firsts{at: map[string][]time.Time{}, n: n}
	for _, s := range stages {
		f.at[s] = make([]time.Time, n)
	}
	return f
}

// see notes stage for job i at now, unless seen before; it says whether
// this was the first time.
func (f *firsts) see(stage string, i int, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i < 0 || i >= f.n || f.at[stage] == nil || !f.at[stage][i].IsZero() {
		return false
	}
	f.at[stage][i] = now
	return true
}

// seeNode notes the node's own timestamps of a job's pod: when it was
// created, when its install init container started and ended, and when its
// job container started. They are whole seconds, but tell the node's
// share apart from the delay of its status reports.
func (f *firsts) seeNode(p *corev1.Pod, i int) {
	f.see(stNodeCreated, i, p.CreationTimestamp.Time)
	for _, c := range p.Status.InitContainerStatuses {
		if st := c.State.Running; st != nil {
			f.see(stInstall, i, st.StartedAt.Time)
		}
		if st := c.State.Terminated; st != nil {
			f.see(stInstall, i, st.StartedAt.Time)
			f.see(stInstalled, i, st.FinishedAt.Time)
		}
	}
	for _, c := range p.Status.ContainerStatuses {
		if st := c.State.Running; st != nil {
			f.see(stJobStart, i, st.StartedAt.Time)
		}
		if st := c.State.Terminated; st != nil {
			f.see(stJobStart, i, st.StartedAt.Time)
		}
	}
}

func (f *firsts) get(stage string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.at[stage])
}

// Stages of a job, in order.
const (
	stSubmit    = "submit"
	stTraining  = "TrainingJob"  // seen on the cluster (workspace -> agent)
	stPod       = "pod"          // pod seen (operator)
	stPodRun    = "pod Running"  // pod Running or beyond (node)
	stPodDone   = "pod ended"    // pod Succeeded or Failed
	stRunning   = "Running"      // the workspace says Running or beyond
	stCompleted = "Completed"    // the workspace says it ended
	stKubeStart = "kube created" // baseline: Job created
	// The node's timestamps (whole seconds).
	stNodeCreated = "pod created (s)"
	stInstall     = "install started (s)"
	stInstalled   = "install ended (s)"
	stJobStart    = "job container started (s)"
)

// progress prints, every second on stderr, how far a run is.
type progress struct {
	submitted, running, ended atomic.Int64
}

func (p *progress) print(ctx context.Context, what string, n int) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fmt.Fprintf(os.Stderr, "  %s %3.0fs: submitted %d/%d, running or beyond %d, ended %d\n",
					what, time.Since(start).Seconds(), p.submitted.Load(), n, p.running.Load(), p.ended.Load())
			}
		}
	}()
	return func() { cancel(); <-done }
}

// submitAll calls create for 0..n-1, parallel at a time, noting each call's
// start, and returns when the last one answered.
func submitAll(ctx context.Context, n, parallel int, f *firsts, p *progress, create func(i int) error) (time.Duration, error) {
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range parallel {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f.see(stSubmit, i, time.Now())
				if err := create(i); err != nil {
					once.Do(func() { first = err })
					return
				}
				p.submitted.Add(1)
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return time.Since(start), first
}

// timings are what one run measured.
type timings struct {
	n          int
	submitted  time.Duration // until every create was answered
	toRunning  []time.Duration
	allRunning time.Duration // start -> the last job Running or beyond
	allDone    time.Duration // start -> the last job ended
	failed     int
	stages     [][2]string // pairs of stages whose per-job gaps are printed
	f          *firsts
	lists      int           // job lists the bench asked the workspace for
	listTime   time.Duration // their total latency
}

func (t *timings) finish(start time.Time, runStage, doneStage string) {
	sub, run, done := t.f.get(stSubmit), t.f.get(runStage), t.f.get(doneStage)
	for i := range t.n {
		t.toRunning = append(t.toRunning, run[i].Sub(sub[i]))
		t.allRunning = max(t.allRunning, run[i].Sub(start))
		t.allDone = max(t.allDone, done[i].Sub(start))
	}
}

func (t timings) runningRate() float64 { return float64(t.n) / t.allRunning.Seconds() }

func jobName(i int) string { return fmt.Sprintf("bench-%04d", i) }

func (b *bench) outpostJobs(ctx context.Context, n, parallel int) (timings, memory, error) {
	t := timings{n: n, f: newFirsts(n, stSubmit, stTraining, stPod, stPodRun, stPodDone, stRunning, stCompleted,
		stNodeCreated, stInstall, stInstalled, stJobStart),
		stages: [][2]string{{stSubmit, stTraining}, {stTraining, stPod}, {stPod, stPodRun}, {stPodRun, stRunning}, {stPodDone, stCompleted},
			{stNodeCreated, stInstall}, {stInstall, stInstalled}, {stInstalled, stJobStart}}}
	index := func(name string) int {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "bench-"))
		if err != nil || !strings.HasPrefix(name, "bench-") {
			return -1
		}
		return i
	}
	// The cluster side, to tell where the time goes: watches cost the API
	// server, not the workspace.
	stopWatch, err := b.watchCluster(ctx, t.f, index, nil)
	if err != nil {
		return t, memory{}, err
	}
	defer stopWatch()
	var p progress
	mem := b.sampleMemory(ctx)
	stopProgress := p.print(ctx, "outpost", n)
	defer stopProgress()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	followed := make(chan error, 1)
	go func() { followed <- b.followJobs(ctx, n, index, &t, &p, nil) }()
	took, err := submitAll(ctx, n, parallel, t.f, &p, func(i int) error {
		return b.ws.Do(ctx, "PUT", jobsPath+"/"+jobName(i), jobSpec("bench-tiny"), nil)
	})
	if err != nil {
		cancel()
		<-followed
		return t, memory{}, err
	}
	t.submitted = took
	fmt.Printf("  submitted %d jobs in %.1f s: %.0f submissions/s\n", n, took.Seconds(), float64(n)/took.Seconds())
	if err := <-followed; err != nil {
		return t, memory{}, err
	}
	t.finish(start, stRunning, stCompleted)
	fmt.Printf("  %.1f jobs/s reaching Running, submit -> Running p50 %.2f s, p99 %.2f s, all ended after %.1f s, %d failed\n",
		t.runningRate(), percentile(t.toRunning, 0.5).Seconds(), percentile(t.toRunning, 0.99).Seconds(), t.allDone.Seconds(), t.failed)
	return t, mem(), nil
}

// followJobs lists the workspace's jobs until all n have ended, noting
// when each was first seen Running (or beyond) and ended. One list a round
// costs the workspace one store read whatever the number of jobs, where a
// GET per job would cost it n requests a round; the pause between lists is
// 100 ms, or four times the last list's latency when that is longer, so
// that the bench's own reads never take more than a fifth of the
// workspace's time however many jobs there are. onRound, when set, is
// called after each list with the jobs.
func (b *bench) followJobs(ctx context.Context, n int, index func(string) int, t *timings, p *progress, onRound func([]api.Job)) error {
	left := n
	deadline := time.Now().Add(30 * time.Minute)
	pause := 100 * time.Millisecond
	for left > 0 {
		if err := sleep(ctx, pause); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d jobs not ended after 30 minutes", left)
		}
		var jobs []api.Job
		asked := time.Now()
		if err := b.ws.Do(ctx, "GET", jobsPath, nil, &jobs); err != nil {
			return err
		}
		now := time.Now()
		t.lists++
		t.listTime += now.Sub(asked)
		pause = max(100*time.Millisecond, 4*now.Sub(asked))
		for _, j := range jobs {
			i := index(j.Name)
			if i < 0 || i >= n {
				continue
			}
			switch j.Status {
			case api.JobRunning, api.JobFinalizing, api.JobCompleted, api.JobFailed, api.JobCanceled:
				if t.f.see(stRunning, i, now) {
					p.running.Add(1)
				}
			}
			if api.JobTerminal(j.Status) && t.f.see(stCompleted, i, now) {
				left--
				p.ended.Add(1)
				if j.Status != api.JobCompleted {
					t.failed++
					if t.failed <= 3 {
						fmt.Fprintf(os.Stderr, "  job %s %s: %s\n", j.Name, j.Status, j.StatusMessage)
					}
				}
			}
		}
		if onRound != nil {
			onRound(jobs)
		}
	}
	return nil
}

// watchCluster notes when each job's TrainingJob and pods are first seen,
// Running and ended. onPods, when set, is called with the number of job
// pods placed and not ended after each change.
func (b *bench) watchCluster(ctx context.Context, f *firsts, index func(string) int, onPods func(int)) (func(), error) {
	stop := make(chan struct{})
	var placedMu sync.Mutex
	placed := map[string]bool{}
	podEvent := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			if d, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
				p, ok = d.Obj.(*corev1.Pod)
			}
			if !ok {
				return
			}
		}
		now := time.Now()
		i := index(p.Labels[v1alpha1.LabelJob])
		f.see(stPod, i, now)
		if p.Labels[v1alpha1.LabelInstance] == "0" {
			f.seeNode(p, i)
		}
		ended := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		if p.Status.Phase == corev1.PodRunning || ended {
			f.see(stPodRun, i, now)
		}
		if ended {
			f.see(stPodDone, i, now)
		}
		if onPods != nil {
			placedMu.Lock()
			if ended || p.DeletionTimestamp != nil {
				delete(placed, p.Namespace+"/"+p.Name)
			} else {
				placed[p.Namespace+"/"+p.Name] = true
			}
			n := len(placed)
			placedMu.Unlock()
			onPods(n)
		}
	}
	pf := informers.NewSharedInformerFactoryWithOptions(b.kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = v1alpha1.LabelJob
	}))
	pi := pf.Core().V1().Pods().Informer()
	if _, err := pi.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: podEvent, UpdateFunc: func(_, o any) { podEvent(o) },
		DeleteFunc: func(o any) {
			if onPods == nil {
				return
			}
			if p, ok := o.(*corev1.Pod); ok {
				placedMu.Lock()
				delete(placed, p.Namespace+"/"+p.Name)
				n := len(placed)
				placedMu.Unlock()
				onPods(n)
			}
		}}); err != nil {
		return nil, err
	}
	mf := metadatainformer.NewSharedInformerFactory(b.meta, 0)
	ti := mf.ForResource(v1alpha1.GroupVersion.WithResource(v1alpha1.Resource)).Informer()
	if _, err := ti.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			f.see(stTraining, index(m.Name), time.Now())
		}
	}}); err != nil {
		return nil, err
	}
	pf.Start(stop)
	mf.Start(stop)
	pf.WaitForCacheSync(stop)
	mf.WaitForCacheSync(stop)
	return func() { close(stop); pf.Shutdown(); mf.Shutdown() }, nil
}

func (b *bench) kubeJobs(ctx context.Context, n, parallel int, cpuLimit, memLimit string) (timings, error) {
	t := timings{n: n, f: newFirsts(n, stSubmit, stKubeStart, stPod, stPodRun, stPodDone, stNodeCreated, stJobStart),
		stages: [][2]string{{stSubmit, stKubeStart}, {stKubeStart, stPod}, {stPod, stPodRun}, {stNodeCreated, stJobStart}}}
	ns := "baseline"
	if _, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return t, err
	}
	var p progress
	var failed atomic.Int64
	allEnded := make(chan struct{})
	note := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		i, err := strconv.Atoi(strings.TrimPrefix(pod.Labels["job-name"], "baseline-"))
		if err != nil {
			return
		}
		now := time.Now()
		t.f.see(stPod, i, now)
		t.f.seeNode(pod, i)
		ended := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
		if (pod.Status.Phase == corev1.PodRunning || ended) && t.f.see(stPodRun, i, now) {
			p.running.Add(1)
		}
		if ended && t.f.see(stPodDone, i, now) {
			if pod.Status.Phase == corev1.PodFailed {
				failed.Add(1)
				fmt.Fprintf(os.Stderr, "  baseline pod %s failed: %s\n", pod.Name, pod.Status.Message)
			}
			if p.ended.Add(1) == int64(n) {
				close(allEnded)
			}
		}
	}
	f := informers.NewSharedInformerFactoryWithOptions(b.kube, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, o any) { note(o) }}); err != nil {
		return t, err
	}
	stop := make(chan struct{})
	defer close(stop)
	f.Start(stop)
	f.WaitForCacheSync(stop)
	stopProgress := p.print(ctx, "baseline", n)
	defer stopProgress()
	start := time.Now()
	took, err := submitAll(ctx, n, parallel, t.f, &p, func(i int) error {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("baseline-%d", i)},
			// Deleted once finished, with its pod, as Outpost deletes a
			// finished job's TrainingJob and pod: both runs pay for the
			// deletions, and the node does not keep a thousand ended pods.
			Spec: batchv1.JobSpec{BackoffLimit: new(int32(0)), TTLSecondsAfterFinished: new(int32(0)), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "job", Image: "python", Command: []string{"true"},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("1Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLimit), corev1.ResourceMemory: resource.MustParse(memLimit)},
					}}},
			}}},
		}
		_, err := b.kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
		t.f.see(stKubeStart, i, time.Now())
		return err
	})
	if err != nil {
		return t, err
	}
	t.submitted = took
	fmt.Printf("  created %d Jobs in %.1f s: %.0f creates/s\n", n, took.Seconds(), float64(n)/took.Seconds())
	select {
	case <-allEnded:
	case <-ctx.Done():
		return t, ctx.Err()
	case <-time.After(30 * time.Minute):
		return t, fmt.Errorf("baseline: %d pods not ended after 30 minutes", int64(n)-p.ended.Load())
	}
	t.failed = int(failed.Load())
	t.finish(start, stPodRun, stPodDone)
	return t, nil
}

// memory is the peak resident memory of the workspace, the agent and the
// training operator during a run, in MiB.
type memory struct{ workspace, agent, operator float64 }

// sampleMemory reads the processes' resident memory every second until the
// returned function is called, which returns the peaks. The pods' processes
// are found once (by their pod's cgroup): the pods do not restart.
func (b *bench) sampleMemory(ctx context.Context) func() memory {
	var agent, operator []int
	if pods, err := b.kube.CoreV1().Pods("azure-arc").List(ctx, metav1.ListOptions{LabelSelector: "app=outpost-agent"}); err == nil && len(pods.Items) > 0 {
		agent = podPids(string(pods.Items[0].UID))
	}
	if pods, err := b.kube.CoreV1().Pods("azureml").List(ctx, metav1.ListOptions{LabelSelector: "app=training-operator"}); err == nil && len(pods.Items) > 0 {
		operator = podPids(string(pods.Items[0].UID))
	}
	sum := func(pids []int) float64 {
		if len(pids) == 0 {
			return -1 // not found: printed as such
		}
		total := 0.0
		for _, pid := range pids {
			total += readProc(pid).rssMiB
		}
		return total
	}
	var mu sync.Mutex
	var peak memory
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		peak.workspace = max(peak.workspace, readProc(b.wsPid).rssMiB)
		peak.agent = max(peak.agent, sum(agent))
		peak.operator = max(peak.operator, sum(operator))
	}
	sample()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() memory {
		close(stop)
		<-done
		sample()
		return peak
	}
}

// components are the processes of the cluster, the workspace and the
// extension's pods, by name, to tell where the machine's CPU goes.
func (b *bench) components(ctx context.Context) map[string][]int {
	c := map[string][]int{"workspace": {b.wsPid}}
	for _, p := range []struct{ name, ns, selector string }{{"agent", "azure-arc", "app=outpost-agent"}, {"training operator", "azureml", "app=training-operator"}} {
		if pods, err := b.kube.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: p.selector}); err == nil && len(pods.Items) > 0 {
			c[p.name] = podPids(string(pods.Items[0].UID))
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return c
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(data), b.cfg.Dir) {
			continue
		}
		args := strings.Split(string(data), "\x00")
		switch name := filepath.Base(args[0]); {
		case name == "kube-apiserver" || name == "etcd" || name == "kube-controller-manager" || name == "kube-scheduler":
			c[name] = append(c[name], pid)
		case len(args) > 2 && args[1] == "node" && args[2] == "run":
			c["node and its containers"] = append(c["node and its containers"], pid)
		}
	}
	return c
}

// cpuOf is the CPU time of each component, its waited-for children's
// included (the node's containers are its children), in ms.
func cpuOf(c map[string][]int) map[string]float64 {
	out := map[string]float64{}
	for name, pids := range c {
		for _, pid := range pids {
			out[name] += readProc(pid).cpuWithChildrenMs
		}
	}
	return out
}

// podPids are the processes in a pod's cgroups: the node names each pod's
// cgroup after its UID.
func podPids(uid string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil && strings.Contains(string(cg), uid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

type procStats struct {
	pid                      int
	rssMiB, peakMiB          float64
	cpuMs, cpuWithChildrenMs float64
}

// readProc reads a process's resident memory (now and peak) and CPU time;
// zeros for a process that has gone.
func readProc(pid int) procStats {
	s := procStats{pid: pid}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStats{}
	}
	kib := func(v string) float64 {
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0
		}
		return kb / 1024
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			s.rssMiB = kib(v)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			s.peakMiB = kib(v)
		}
	}
	// utime, stime, cutime and cstime (the waited-for children's) are fields
	// 14 to 17 of /proc/pid/stat, in clock ticks (100 a second on Linux);
	// the name before them may hold spaces.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			f := strings.Fields(string(stat)[i+1:])
			if len(f) > 14 {
				ticks := func(fs []string) float64 {
					t := 0.0
					for _, v := range fs {
						n, err := strconv.ParseFloat(v, 64)
						if err == nil {
							t += n
						}
					}
					return t
				}
				s.cpuMs = ticks(f[11:13]) * 10
				s.cpuWithChildrenMs = ticks(f[11:15]) * 10
			}
		}
	}
	return s
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// gaps are the per-job durations from stage a to stage b, for the jobs
// where both were seen.
func (t timings) gaps(a, b string) []time.Duration {
	from, to := t.f.get(a), t.f.get(b)
	var out []time.Duration
	for i := range from {
		if !from[i].IsZero() && !to[i].IsZero() {
			out = append(out, to[i].Sub(from[i]))
		}
	}
	return out
}

func report(out, base timings, mem memory) {
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	p50, p99 := percentile(out.toRunning, 0.5), percentile(out.toRunning, 0.99)
	bp50, bp99 := percentile(base.toRunning, 0.5), percentile(base.toRunning, 0.99)
	n := out.n
	fmt.Println()
	fmt.Printf("%-34s %12s %12s %8s\n", fmt.Sprintf("%d jobs", n), "Outpost", "k8s Jobs", "ratio")
	fmt.Printf("%-34s %12.0f %12.0f %8.2f\n", "submissions/s", float64(n)/out.submitted.Seconds(), float64(base.n)/base.submitted.Seconds(),
		base.submitted.Seconds()/out.submitted.Seconds())
	fmt.Printf("%-34s %12.1f %12.1f %8.2f   target >= 50: %s\n", "jobs/s reaching Running", out.runningRate(), base.runningRate(),
		out.runningRate()/base.runningRate(), verdict(out.runningRate() >= 50))
	fmt.Printf("%-34s %12.2f %12.2f %8.2f   target <= 1 s: %s\n", "submit -> Running p50 (s)", p50.Seconds(), bp50.Seconds(), p50.Seconds()/bp50.Seconds(), verdict(p50 <= time.Second))
	fmt.Printf("%-34s %12.2f %12.2f %8.2f\n", "submit -> Running p99 (s)", p99.Seconds(), bp99.Seconds(), p99.Seconds()/bp99.Seconds())
	fmt.Printf("%-34s %12.1f %12.1f %8.2f\n", "all Completed after (s)", out.allDone.Seconds(), base.allDone.Seconds(), out.allDone.Seconds()/base.allDone.Seconds())
	fmt.Printf("%-34s %12.1f %12.1f %8.2f\n", "jobs/s end to end (to Completed)", float64(n)/out.allDone.Seconds(), float64(base.n)/base.allDone.Seconds(),
		base.allDone.Seconds()/out.allDone.Seconds())
	fmt.Printf("%-34s %12d %12d\n", "failed", out.failed, base.failed)
	fmt.Printf("peak memory during the Outpost run: workspace %.0f MiB, agent %.0f MiB, training operator %.0f MiB\n", mem.workspace, mem.agent, mem.operator)
	fmt.Printf("the bench listed the workspace's jobs %d times (mean %.0f ms a list)\n", out.lists, float64(out.listTime.Milliseconds())/float64(max(out.lists, 1)))
	fmt.Println("\nwhere the time goes, per job (p50 / p99 in s; first seen by the bench's watches and lists):")
	for _, run := range []struct {
		name string
		t    timings
	}{{"Outpost", out}, {"k8s Jobs", base}} {
		for _, s := range run.t.stages {
			g := run.t.gaps(s[0], s[1])
			if len(g) == 0 {
				// Pods without an install container, say.
				fmt.Printf("  %-9s %-44s   none seen\n", run.name, s[0]+" -> "+s[1])
				continue
			}
			fmt.Printf("  %-9s %-44s %6.2f / %6.2f  (%d jobs)\n", run.name, s[0]+" -> "+s[1], percentile(g, 0.5).Seconds(), percentile(g, 0.99).Seconds(), len(g))
		}
	}
}

// gangs runs two-instance jobs on room for three instances: at most one
// gang fits at a time, and every one must finish.
func (b *bench) gangs(ctx context.Context, n, parallel int, memLimit string) error {
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) != 1 {
		return fmt.Errorf("mixed run: %d nodes, want 1", len(nodes.Items))
	}
	node := nodes.Items[0]
	// Room is what the node's pods have not asked for: an instance of 2/7 of
	// it fits three times and not four.
	pods, err := b.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node.Name})
	if err != nil {
		return err
	}
	free := node.Status.Allocatable.Cpu().MilliValue()
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range p.Spec.Containers {
			free -= c.Resources.Requests.Cpu().MilliValue()
		}
	}
	cpu := fmt.Sprintf("%dm", free*2/7)
	if err := b.instanceType(ctx, "bench-third", cpu, "1Mi", cpu, memLimit); err != nil {
		return err
	}
	fmt.Printf("\nMixed: %d two-instance gangs (pytorch, 1 process each, command true) on room for three instances (node %s: %d m CPU free, %s each)\n",
		n, node.Name, free, cpu)
	index := func(name string) int {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "gang-"))
		if err != nil || !strings.HasPrefix(name, "gang-") {
			return -1
		}
		return i
	}
	t := timings{n: n, f: newFirsts(n, stSubmit, stTraining, stPod, stPodRun, stPodDone, stRunning, stCompleted,
		stNodeCreated, stInstall, stInstalled, stJobStart)}
	var maxPlaced atomic.Int64
	stopWatch, err := b.watchCluster(ctx, t.f, index, func(placed int) {
		for {
			m := maxPlaced.Load()
			if int64(placed) <= m || maxPlaced.CompareAndSwap(m, int64(placed)) {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	defer stopWatch()
	var p progress
	stopProgress := p.print(ctx, "gangs", n)
	defer stopProgress()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	followed := make(chan error, 1)
	go func() { followed <- b.followJobs(ctx, n, index, &t, &p, nil) }()
	_, err = submitAll(ctx, n, parallel, t.f, &p, func(i int) error {
		spec := jobSpec("bench-third")
		spec.Resources.InstanceCount = 2
		spec.Distribution = &api.Distribution{Type: "pytorch", ProcessCountPerInstance: 1}
		return b.ws.Do(ctx, "PUT", jobsPath+"/"+fmt.Sprintf("gang-%03d", i), spec, nil)
	})
	if err != nil {
		cancel()
		<-followed
		var se *client.StatusError
		if errors.As(err, &se) && strings.Contains(err.Error(), "not supported yet") {
			fmt.Printf("  skipped: multi-instance jobs are refused by this build (%v)\n", err)
			return nil
		}
		return err
	}
	if err := <-followed; err != nil {
		return err
	}
	t.finish(start, stRunning, stCompleted)
	fmt.Printf("  all %d gangs ended after %.1f s (%.2f gangs/s), %d failed; at most %d instances placed at once (room for 3)\n",
		n, t.allDone.Seconds(), float64(n)/t.allDone.Seconds(), t.failed, maxPlaced.Load())
	return nil
}

// apiRequests are the API server's counts of the requests it served, by
// verb and resource (apiserver_request_total): what each job costs it.
// Empty when the metrics cannot be read.
func (b *bench) apiRequests(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	data, err := b.kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: reading the API server's metrics:", err)
		return out
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		l := map[string]string{}
		for kv := range strings.SplitSeq(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				l[k] = strings.Trim(v, `"`)
			}
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		out[key] += v
	}
	return out
}

// printRequests prints the API requests per job of both runs, the most
// frequent first (watches and those under 0.05 a job left out).
func printRequests(out, base map[string]float64, n int) {
	keys := map[string]bool{}
	for k := range out {
		keys[k] = true
	}
	for k := range base {
		keys[k] = true
	}
	sorted := slices.SortedFunc(maps.Keys(keys), func(a, b string) int {
		return cmpFloat(out[b]+base[b], out[a]+base[a])
	})
	var tOut, tBase float64
	fmt.Println("\nAPI server requests per job, by verb and resource:")
	for _, k := range sorted {
		if strings.HasPrefix(k, "WATCH") {
			continue
		}
		o, bs := out[k]/float64(n), base[k]/float64(n)
		tOut += o
		tBase += bs
		if o < 0.05 && bs < 0.05 {
			continue
		}
		fmt.Printf("  %-38s %6.2f %6.2f\n", k, o, bs)
	}
	fmt.Printf("  %-38s %6.2f %6.2f   (Outpost, k8s Jobs)\n", "total", tOut, tBase)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
