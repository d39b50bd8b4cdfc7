// Package e2e drives the outpost binary as a user would: cluster up, status,
// kubectl against it, down, and the errors bad input gets.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/clustertest"
)

var outpost string

func TestMain(m *testing.M) {
	b, err := clustertest.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outpost = b
	os.Exit(m.Run())
}

// run executes outpost and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return clustertest.Run(t, nil, outpost, args...)
}

// upArgs are the flags of a cluster in its own test slot.
func upArgs(t *testing.T, dir string) ([]string, cluster.Config) {
	t.Helper()
	slot, release, err := clustertest.Slot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	var c cluster.Config
	slot.Apply(&c)
	return []string{"cluster", "up", "--dir", dir, "--api-port", strconv.Itoa(c.APIPort), "--pod-cidr", c.PodCIDR,
		"--service-cidr", c.ServiceCIDR, "--node-port-range", c.NodePortRange}, c
}

func TestClusterLifecycle(t *testing.T) {
	dir := t.TempDir()
	args, cfg := upArgs(t, dir)
	t.Cleanup(func() { run(t, "cluster", "down", "--dir", dir) })

	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("cluster up failed (%d):\n%s\n%s", code, out, errOut)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	for _, want := range []string{"starting etcd", "starting node", "cluster ready in", "kubeconfig: " + kubeconfig} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster up output lacks %q:\n%s", want, out)
		}
	}

	out, _, code = run(t, args...)
	if code != 0 || !strings.Contains(out, "already running") {
		t.Errorf("second cluster up: exit %d, %q; want a no-op that says so", code, out)
	}
	// Without its address flags, `up` takes the saved ones: the cluster runs
	// on ports other than the defaults, and that is still "already running".
	out, errOut, code = run(t, "cluster", "up", "--dir", dir)
	if code != 0 || !strings.Contains(out, "already running") {
		t.Errorf("cluster up without flags on a running cluster: exit %d, %q %q; want a no-op that says so", code, out, errOut)
	}
	if out, _, _ := run(t, "cluster", "kubeconfig", "--dir", dir); strings.TrimSpace(out) != kubeconfig {
		t.Errorf("cluster kubeconfig printed %q, want %q", out, kubeconfig)
	}

	out, _, code = run(t, "cluster", "status", "--dir", dir, "-o", "json")
	var st cluster.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("cluster status -o json: exit %d: %s", code, out)
	}
	if !st.Running() || !st.NodeReady || !strings.HasPrefix(st.Version, "v1.34") {
		t.Errorf("status: %+v; want every component running, the node Ready, version v1.34", st)
	}
	if out, _, _ := run(t, "cluster", "status", "--dir", dir); !strings.Contains(out, "kube-apiserver") || !strings.Contains(out, "Ready") {
		t.Errorf("cluster status table:\n%s", out)
	}

	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := kubectl("get", "nodes"); !strings.Contains(out, "outpost-node") || !strings.Contains(out, " Ready ") {
		t.Errorf("kubectl get nodes:\n%s", out)
	}
	manifest := filepath.Join(dir, "pod.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: debian:12
    command: [sh, -c, "echo hello from $POD_IP; sleep 600"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {medium: Memory, sizeLimit: 8Mi}}]
`), 0o644)
	kubectl("apply", "-f", manifest)
	kubectl("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
	ip := strings.TrimSpace(kubectl("get", "pod", "hello", "-o", "jsonpath={.status.podIP}"))
	if out := kubectl("logs", "hello"); out != "hello from "+ip+"\n" {
		t.Errorf("kubectl logs: %q", out)
	}
	_, podNet, _ := net.ParseCIDR(cfg.PodCIDR)
	if !podNet.Contains(net.ParseIP(ip)) {
		t.Errorf("pod IP %s outside the pod CIDR %s", ip, cfg.PodCIDR)
	}

	out, errOut, code = run(t, "cluster", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "cluster stopped") {
		t.Fatalf("cluster down: exit %d\n%s\n%s", code, out, errOut)
	}
	if left := clustertest.Processes(dir); len(left) > 0 {
		t.Fatalf("processes left after cluster down:\n%s", strings.Join(left, "\n"))
	}
	if out, _, _ := run(t, "cluster", "status", "--dir", dir, "-o", "json"); json.Unmarshal([]byte(out), &st) != nil || st.Components[0].Running || st.Components[4].Running {
		t.Errorf("status after down: %s", out)
	}
	// The pod's memory-backed emptyDir is still mounted (it outlives a node
	// restart); purge must unmount it to remove the directory.
	out, errOut, code = run(t, "cluster", "down", "--dir", dir, "--purge")
	if code != 0 || !strings.Contains(out, "removed "+dir) {
		t.Fatalf("cluster down --purge: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after down --purge, %s: %v; want it gone", dir, err)
	}
}

func TestClusterUpBadInput(t *testing.T) {
	busyDir := t.TempDir()
	args, cfg := upArgs(t, busyDir)
	// Something else holds the etcd port the cluster would take.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.APIPort+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	fileInTheWay := filepath.Join(t.TempDir(), "file")
	os.WriteFile(fileInTheWay, nil, 0o644)

	cases := []struct {
		name string
		args []string
		dir  string
		want string
	}{
		{"busy port", args, busyDir, fmt.Sprintf("port %d (etcd (client)) on 127.0.0.1 is in use", cfg.APIPort+1)},
		{"dir not writable", []string{"cluster", "up", "--dir", filepath.Join(fileInTheWay, "cluster")}, "", "cannot be created"},
		{"pod CIDR not loopback", []string{"cluster", "up", "--dir", t.TempDir(), "--pod-cidr", "10.0.0.0/16"}, "", "--pod-cidr \"10.0.0.0/16\": must be an IPv4 CIDR inside 127.0.0.0/8"},
		{"CIDRs overlap", []string{"cluster", "up", "--dir", t.TempDir(), "--pod-cidr", "127.50.0.0/16", "--service-cidr", "127.50.0.0/20"}, "", "overlap"},
		{"bad node port range", []string{"cluster", "up", "--dir", t.TempDir(), "--node-port-range", "32000-31000"}, "", "--node-port-range \"32000-31000\": must be LOW-HIGH"},
		{"no nodes", []string{"cluster", "up", "--dir", t.TempDir(), "--nodes", "0"}, "", "--nodes 0: must be 1 or more"},
		{"pod CIDR too small for the nodes", []string{"cluster", "up", "--dir", t.TempDir(), "--pod-cidr", "127.50.0.0/24", "--nodes", "17"}, "", "--pod-cidr 127.50.0.0/24 is too small for 17 nodes"},
		{"label of no node", []string{"cluster", "up", "--dir", t.TempDir(), "--nodes", "2", "--node-label", "outpost-node-2:a=b"}, "", `there is no node "outpost-node-2"; the nodes are outpost-node, outpost-node-1`},
		{"bad label value", []string{"cluster", "up", "--dir", t.TempDir(), "--node-label", "0:zone=a b"}, "", `value "a b": a valid label must be`},
		{"bad node CPU", []string{"cluster", "up", "--dir", t.TempDir(), "--node-cpu", "two"}, "", `--node-cpu "two": must be a positive quantity`},
		{"bad output format", []string{"cluster", "status", "--dir", t.TempDir(), "-o", "xml"}, "", `-o "xml": unknown output format; use one of table, json, yaml`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code := run(t, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want an error; output:\n%s", out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q lacks %q", errOut, tc.want)
			}
			if tc.dir != "" {
				if left := clustertest.Processes(tc.dir); len(left) > 0 {
					t.Fatalf("failed up left processes:\n%s", strings.Join(left, "\n"))
				}
			}
			if time.Since(start) > 30*time.Second {
				t.Errorf("took %s to fail", time.Since(start))
			}
		})
	}
}

// clusterStatus is `outpost cluster status -o json`.
func clusterStatus(t *testing.T, dir string) cluster.Status {
	t.Helper()
	out, errOut, code := run(t, "cluster", "status", "--dir", dir, "-o", "json")
	var st cluster.Status
	if code != 0 {
		t.Fatalf("cluster status: exit %d\n%s%s", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cluster status -o json: %v\n%s", err, out)
	}
	return st
}

func component(t *testing.T, st cluster.Status, name string) cluster.ComponentStatus {
	t.Helper()
	for _, c := range st.Components {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("status lists no %s: %+v", name, st)
	return cluster.ComponentStatus{}
}

// decoy is a process that is not the cluster's but names its directory.
type decoy struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startDecoy(t *testing.T, name string, args ...string) *decoy {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &decoy{cmd: cmd, done: make(chan struct{})}
	go func() {
		// The exit status does not matter: the test only asks whether it ran on.
		cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err == nil {
			<-d.done
		}
	})
	return d
}

func (d *decoy) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// TestClusterOwnsOnlyItsProcesses: up and down signal only the processes the
// cluster started, not those that merely name its directory, and not up's
// own parent.
func TestClusterOwnsOnlyItsProcesses(t *testing.T) {
	dir := t.TempDir()
	args, _ := upArgs(t, dir)
	t.Cleanup(func() { run(t, "cluster", "down", "--dir", dir) })

	// A process whose command line names the cluster directory before the
	// cluster exists: up's own parent.
	out, errOut, code := clustertest.Run(t, nil, "timeout", append([]string{"300", outpost}, args...)...)
	if code != 0 || !strings.Contains(out, "cluster ready in") {
		t.Fatalf("timeout 300 outpost cluster up: exit %d, want 0 (timeout itself not killed)\n%s\n%s", code, out, errOut)
	}

	decoys := map[string]*decoy{
		// A cluster directory sharing the prefix of this one.
		"other cluster": startDecoy(t, "bash", "-c", `exec -a "$0" sleep 600`, dir+"-other/kube-apiserver"),
		"tail -f":       startDecoy(t, "tail", "-f", filepath.Join(dir, "logs", "node.log")),
	}
	marker := "pod-of-" + filepath.Base(dir)
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
  - {name: main, image: debian:12, command: [sh, -c, "sleep 600; : `+marker+`"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	for _, a := range [][]string{{"apply", "-f", manifest}, {"wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s"}} {
		if out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, a...)...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", a, err, out)
		}
	}
	if len(clustertest.Processes(marker)) == 0 {
		t.Fatalf("the pod's process (%s) does not run", marker)
	}

	out, errOut, code = run(t, "cluster", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "cluster stopped") {
		t.Fatalf("cluster down: exit %d\n%s\n%s", code, out, errOut)
	}
	for what, d := range decoys {
		if !d.alive() {
			t.Errorf("cluster down killed a process it does not own (%s: %v)", what, d.cmd.Args)
		}
	}
	decoyPid := map[string]bool{}
	for _, d := range decoys {
		decoyPid[strconv.Itoa(d.cmd.Process.Pid)] = true
	}
	var left []string
	for _, p := range clustertest.Processes(dir) {
		if pid, _, _ := strings.Cut(p, ":"); !decoyPid[pid] {
			left = append(left, p)
		}
	}
	left = append(left, clustertest.Processes(marker)...)
	if len(left) > 0 {
		t.Fatalf("processes of the cluster left after cluster down:\n%s", strings.Join(left, "\n"))
	}
	for _, c := range clusterStatus(t, dir).Components {
		if c.Running || c.SupervisorPID != 0 {
			t.Errorf("after down, status says %s: %+v", c.Name, c)
		}
	}
}

// TestClusterRecovers: a node that dies comes back by itself, and up after
// losing components starts just those and keeps what runs.
func TestClusterRecovers(t *testing.T) {
	dir := t.TempDir()
	args, _ := upArgs(t, dir)
	t.Cleanup(func() { run(t, "cluster", "down", "--dir", dir) })
	if out, errOut, code := run(t, args...); code != 0 {
		t.Fatalf("cluster up failed (%d):\n%s\n%s", code, out, errOut)
	}
	cfg, err := cluster.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfg.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// nodeHeartbeatAfter: the node is Ready and reported so after t0, which
	// only a node agent running after t0 can have done.
	nodeHeartbeatAfter := func(t0 time.Time) error {
		n, err := client.CoreV1().Nodes().Get(context.Background(), cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				// API times have whole seconds.
				if c.Status != corev1.ConditionTrue || !c.LastHeartbeatTime.After(t0.Truncate(time.Second)) {
					return fmt.Errorf("Ready=%s, last heartbeat %s", c.Status, c.LastHeartbeatTime)
				}
				return nil
			}
		}
		return errors.New("node has no Ready condition")
	}

	t.Run("node killed comes back by itself", func(t *testing.T) {
		old := component(t, clusterStatus(t, dir), "node")
		killed := time.Now()
		if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		clustertest.Eventually(t, 90*time.Second, "node restarted and Ready", func() error {
			n := component(t, clusterStatus(t, dir), "node")
			if !n.Running || n.PID == old.PID {
				return fmt.Errorf("node %s, pid %d (killed %d)", n.State, n.PID, old.PID)
			}
			return nodeHeartbeatAfter(killed)
		})
		if n := component(t, clusterStatus(t, dir), "node"); n.Restarts != 1 || !strings.Contains(n.LastExit, "signal: killed") {
			t.Errorf("status of the node: %d restarts, last exit %q; want 1, killed", n.Restarts, n.LastExit)
		}
		log, err := os.ReadFile(cfg.LogPath("node"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "node exited (signal: killed after") || !strings.Contains(string(log), "restarting in 1s") {
			t.Errorf("the node's log does not say why it restarted:\n%s", log)
		}
	})

	t.Run("up starts only what is missing", func(t *testing.T) {
		before := clusterStatus(t, dir)
		for _, name := range []string{"node", "kube-scheduler"} {
			c := component(t, before, name)
			for _, pid := range []int{c.SupervisorPID, c.PID} {
				// The component may be gone already: it dies with its supervisor.
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					t.Fatal(err)
				}
			}
		}
		clustertest.Eventually(t, 30*time.Second, "killed processes gone", func() error {
			for _, c := range clusterStatus(t, dir).Components {
				if (c.Name == "node" || c.Name == "kube-scheduler") && c.State != "stopped" {
					return fmt.Errorf("%s is %s", c.Name, c.State)
				}
			}
			return nil
		})

		out, errOut, code := run(t, args...)
		if code != 0 {
			t.Fatalf("cluster up after losing node and scheduler: exit %d\n%s\n%s", code, out, errOut)
		}
		for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
			if strings.Contains(out, "starting "+name) || !strings.Contains(out, name+" runs, keeping it") {
				t.Errorf("up did not keep %s:\n%s", name, out)
			}
		}
		for _, name := range []string{"kube-scheduler", "node"} {
			if !strings.Contains(out, "starting "+name) {
				t.Errorf("up did not start %s:\n%s", name, out)
			}
		}
		after := clusterStatus(t, dir)
		for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
			if b, a := component(t, before, name), component(t, after, name); a.PID != b.PID {
				t.Errorf("%s was restarted: pid %d, was %d", name, a.PID, b.PID)
			}
		}
		if !after.Running() || !after.NodeReady {
			t.Errorf("after up: %+v; want every component running and the node Ready", after)
		}
		// The restarted scheduler places a pod and the restarted node runs it.
		manifest := filepath.Join(t.TempDir(), "pod.yaml")
		if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: after-restart}
spec:
  containers:
  - {name: main, image: debian:12, command: [sleep, "600"]}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, a := range [][]string{{"apply", "-f", manifest}, {"wait", "--for=condition=Ready", "pod/after-restart", "--timeout=60s"}} {
			if out, err := exec.Command("kubectl", append([]string{"--kubeconfig", cfg.KubeconfigPath()}, a...)...).CombinedOutput(); err != nil {
				t.Fatalf("kubectl %v: %v\n%s", a, err, out)
			}
		}
	})

	out, errOut, code := run(t, "cluster", "down", "--dir", dir)
	if code != 0 {
		t.Fatalf("cluster down: exit %d\n%s\n%s", code, out, errOut)
	}
	if left := clustertest.Processes(dir); len(left) > 0 {
		t.Fatalf("processes left after cluster down:\n%s", strings.Join(left, "\n"))
	}
}

// TestClusterMultiNode: `up --nodes 2` runs two node agents that split the
// machine and the pod CIDR, carry their labels, take pods by anti-affinity
// and nodeSelector, and reach each other's pods through Services and the
// cluster DNS (served by the first node for both); a node killed comes back;
// nodes are added to a running cluster, removed after `down`, and `down`
// leaves no process.
func TestClusterMultiNode(t *testing.T) {
	dir := t.TempDir()
	args, cfg := upArgs(t, dir)
	t.Cleanup(func() { run(t, "cluster", "down", "--dir", dir) })
	labels := []string{"--node-label", "0:outpost.dev/pool=a", "--node-label", "outpost-node-1:node.kubernetes.io/instance-type=big,zone=z1"}
	out, errOut, code := run(t, append(append(slices.Clone(args), "--nodes", "2"), labels...)...)
	if code != 0 {
		t.Fatalf("cluster up --nodes 2 failed (%d):\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"starting node ...", "starting node-1 ...", "cluster ready in"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster up output lacks %q:\n%s", want, out)
		}
	}
	saved, err := cluster.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Nodes != 2 || saved.NodeLabels["outpost-node-1"]["zone"] != "z1" {
		t.Errorf("cluster.json keeps nodes %d, labels %v; want 2 nodes and the labels", saved.Nodes, saved.NodeLabels)
	}
	rc, err := saved.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names := []string{"outpost-node", "outpost-node-1"}

	// Both Ready, in status and in the API, each with its share of the
	// machine, its own part of the pod CIDR and its labels.
	st := clusterStatus(t, dir)
	if !st.Running() || !st.NodeReady || len(st.Nodes) != 2 {
		t.Fatalf("status: %+v; want every component running and 2 nodes Ready", st)
	}
	if n := component(t, st, "node-1"); !n.Running || n.SupervisorPID == 0 || n.Log != filepath.Join(dir, "logs", "node-1.log") {
		t.Errorf("status of node-1: %+v", n)
	}
	if table, _, _ := run(t, "cluster", "status", "--dir", dir); !strings.Contains(table, "node outpost-node-1") {
		t.Errorf("status table does not list node outpost-node-1:\n%s", table)
	}
	_, podNet, _ := net.ParseCIDR(cfg.PodCIDR)
	wantCPU := int64(runtime.NumCPU()) * 1000 / 2
	wantMem := memTotal(t) / 2 / (1 << 20) * (1 << 20)
	ranges := map[string]*net.IPNet{}
	for i, name := range names {
		ns := st.Nodes[i]
		_, r, err := net.ParseCIDR(ns.PodCIDR)
		if ns.Name != name || !ns.Ready || err != nil || !podNet.Contains(r.IP) {
			t.Fatalf("status of node %d: %+v; want %s Ready with a range inside %s", i, ns, name, cfg.PodCIDR)
		}
		ranges[name] = r
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Spec.PodCIDR != ns.PodCIDR {
			t.Errorf("node %s: spec.podCIDR %q, want %q", name, n.Spec.PodCIDR, ns.PodCIDR)
		}
		cpu, mem, gpu := n.Status.Allocatable[corev1.ResourceCPU], n.Status.Allocatable[corev1.ResourceMemory], n.Status.Capacity["nvidia.com/gpu"]
		if cpu.MilliValue() != wantCPU || mem.Value() != wantMem || !gpu.IsZero() {
			t.Errorf("node %s: allocatable cpu %s, memory %s, gpu %s; want half the machine: %dm, %d bytes, no GPU", name, &cpu, &mem, &gpu, wantCPU, wantMem)
		}
		if n.Labels["kubernetes.io/hostname"] != name {
			t.Errorf("node %s: labels %v lack the standard ones", name, n.Labels)
		}
	}
	if ranges[names[0]].Contains(ranges[names[1]].IP) || ranges[names[1]].Contains(ranges[names[0]].IP) {
		t.Errorf("node pod ranges overlap: %s, %s", ranges[names[0]], ranges[names[1]])
	}
	for name, want := range map[string]map[string]string{
		names[0]: {"outpost.dev/pool": "a"},
		names[1]: {"node.kubernetes.io/instance-type": "big", "zone": "z1"},
	} {
		n, _ := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		for k, v := range want {
			if n.Labels[k] != v {
				t.Errorf("node %s: label %s=%q, want %q (labels %v)", name, k, n.Labels[k], v, n.Labels)
			}
		}
	}

	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", saved.KubeconfigPath()}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	manifest := filepath.Join(t.TempDir(), "spread.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 2
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: spread}}
            topologyKey: kubernetes.io/hostname
      containers:
      - {name: web, image: agnhost, args: [netexec, --http-port=8080]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, labels: {app: backend}}
spec:
  nodeSelector: {node.kubernetes.io/instance-type: big}
  containers:
  - {name: web, image: agnhost, args: [netexec, --http-port=8080]}
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 8080}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "-f", manifest)
	kubectl("rollout", "status", "deployment/spread", "--timeout=90s")
	kubectl("wait", "--for=condition=Ready", "pod/backend", "--timeout=60s")
	pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spread := map[string]string{} // node -> pod
	for _, p := range pods.Items {
		if r := ranges[p.Spec.NodeName]; r == nil || !r.Contains(net.ParseIP(p.Status.PodIP)) {
			t.Errorf("pod %s on node %q has IP %s, outside its node's range %v", p.Name, p.Spec.NodeName, p.Status.PodIP, r)
		}
		switch {
		case p.Labels["app"] == "spread":
			spread[p.Spec.NodeName] = p.Name
		case p.Name == "backend" && p.Spec.NodeName != names[1]:
			t.Errorf("pod backend (nodeSelector instance-type=big) is on %q, want %s", p.Spec.NodeName, names[1])
		}
	}
	if spread[names[0]] == "" || spread[names[1]] == "" {
		t.Fatalf("the 2 replicas with pod anti-affinity are not one per node: %v", spread)
	}
	// The Service's endpoint is on node 1; its name resolves and its
	// cluster IP answers from a pod of either node.
	for _, n := range names {
		if got := kubectl("exec", spread[n], "--", "sh", "-c", "wget -qO- http://backend/hostname"); got != "backend" {
			t.Errorf("from pod %s on %s, http://backend/hostname answered %q, want backend", spread[n], n, got)
		}
	}

	// Changing a running cluster: removing a node, or changing the share of
	// a node that runs, needs `down` first; bad labels say what is wrong.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "1"}, "removing nodes needs `outpost cluster down` first"},
		{[]string{"--nodes", "3"}, "which a running node cannot change: stop the cluster with `outpost cluster down` first"},
		{[]string{"--node-label", "2:zone=z2"}, "there is no node 2; the cluster has 2 node(s)"},
		{[]string{"--node-label", "0:-bad=x"}, `key "-bad": name part must consist of alphanumeric characters`},
		{[]string{"--node-label", "0:kubernetes.io/hostname=x"}, "the node sets kubernetes.io/hostname itself"},
	} {
		out, errOut, code := run(t, append([]string{"cluster", "up", "--dir", dir}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("cluster up %v on a running 2-node cluster: exit %d, stderr %q; want an error with %q\n%s", tc.args, code, errOut, tc.want, out)
		}
	}
	// Adding a node that leaves the running ones as they are works.
	n0, _ := client.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
	cpu, mem := n0.Status.Capacity[corev1.ResourceCPU], n0.Status.Capacity[corev1.ResourceMemory]
	out, errOut, code = run(t, "cluster", "up", "--dir", dir, "--nodes", "3", "--node-cpu", cpu.String(), "--node-memory", mem.String())
	if code != 0 || !strings.Contains(out, "node-1 runs, keeping it") || !strings.Contains(out, "starting node-2 ...") {
		t.Fatalf("cluster up --nodes 3 keeping the nodes' capacity: exit %d\n%s\n%s", code, out, errOut)
	}
	if st := clusterStatus(t, dir); len(st.Nodes) != 3 || !st.NodeReady || st.Nodes[2].Name != "outpost-node-2" {
		t.Errorf("after adding a node, status: %+v", st.Nodes)
	}

	// A node agent killed comes back by itself, under its own supervisor.
	old := component(t, clusterStatus(t, dir), "node-1")
	killed := time.Now()
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 90*time.Second, "node-1 restarted and Ready", func() error {
		n := component(t, clusterStatus(t, dir), "node-1")
		if !n.Running || n.PID == old.PID || n.Restarts != 1 {
			return fmt.Errorf("node-1 %s, pid %d (killed %d), %d restarts", n.State, n.PID, old.PID, n.Restarts)
		}
		node, err := client.CoreV1().Nodes().Get(ctx, names[1], metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && c.LastHeartbeatTime.After(killed.Truncate(time.Second)) {
				return nil
			}
		}
		return errors.New("no Ready heartbeat since the kill")
	})
	if n := component(t, clusterStatus(t, dir), "node"); n.PID != component(t, st, "node").PID {
		t.Errorf("killing node-1 restarted the first node too")
	}

	out, errOut, code = run(t, "cluster", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "stopping node-2 and its pods") || !strings.Contains(out, "cluster stopped") {
		t.Fatalf("cluster down: exit %d\n%s\n%s", code, out, errOut)
	}
	if left := clustertest.Processes(dir); len(left) > 0 {
		t.Fatalf("processes left after cluster down:\n%s", strings.Join(left, "\n"))
	}

	// Fewer nodes after down: the Nodes of the others go, with their pods.
	out, errOut, code = run(t, "cluster", "up", "--dir", dir, "--nodes", "1")
	if code != 0 || !strings.Contains(out, "removing node outpost-node-1") || !strings.Contains(out, "removing node outpost-node-2") {
		t.Fatalf("cluster up --nodes 1 after down: exit %d\n%s\n%s", code, out, errOut)
	}
	if nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(nodes.Items) != 1 {
		t.Errorf("after up --nodes 1, nodes: %v, %v; want outpost-node alone", nodes, err)
	}
	if _, err := client.CoreV1().Pods("default").Get(ctx, "backend", metav1.GetOptions{}); err == nil {
		t.Errorf("pod backend of the removed node is still there")
	}
	out, errOut, code = run(t, "cluster", "down", "--dir", dir)
	if code != 0 {
		t.Fatalf("cluster down: exit %d\n%s\n%s", code, out, errOut)
	}
	if left := clustertest.Processes(dir); len(left) > 0 {
		t.Fatalf("processes left after cluster down:\n%s", strings.Join(left, "\n"))
	}
}

// memTotal is the machine's memory in bytes.
func memTotal(t *testing.T) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}
