package cgroups

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"outpost.dev/outpost/internal/podnet"
)

// v1 opens a Manager for a node of its own, skipping the test where this
// machine has no cgroup v1 memory and cpu hierarchies to write to.
func v1(t *testing.T, stateDir string) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	mounts, err := ReadMounts()
	if err != nil || mounts.V1["memory"] == "" || mounts.V1["cpu"] == "" {
		t.Skipf("no cgroup v1 memory and cpu hierarchies (%v)", err)
	}
	m := Open("cgroups-test", stateDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if m.mem == "" || m.cpu == "" {
		t.Fatalf("v1 hierarchies not used: %+v", m)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		for _, d := range []string{m.mem, m.cpu, m.acct} {
			if _, err := os.Stat(d); d != "" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node directory %s left after Close (%v)", d, err)
			}
		}
	})
	return m
}

func read(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// run starts a shell that joins the cgroup (as the container's init does)
// and then runs script.
func run(t *testing.T, cg *Cgroup, script string) *exec.Cmd {
	t.Helper()
	join := ""
	for _, f := range cg.Procs() {
		join += "echo 0 > " + f + " && "
	}
	cmd := exec.Command("sh", "-c", join+script)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws := exit.Sys().(syscall.WaitStatus); ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestV1LimitsAndOOMKill(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	m := v1(t, t.TempDir())
	if mem, cpu := m.Enforced(); !mem || !cpu {
		t.Fatalf("Enforced() = %v, %v", mem, cpu)
	}
	l := Limits{Memory: 50 << 20, CPUQuota: 20000, CPUShares: 256}
	cg, err := m.Add("pod-1", "c", l, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		filepath.Join(m.mem, "pod-1", "c", "memory.limit_in_bytes"): "52428800",
		filepath.Join(m.cpu, "pod-1", "c", "cpu.cfs_quota_us"):      "20000",
		filepath.Join(m.cpu, "pod-1", "c", "cpu.cfs_period_us"):     "100000",
		filepath.Join(m.cpu, "pod-1", "c", "cpu.shares"):            "256",
		filepath.Join(m.cpu, "pod-1", "cpu.shares"):                 "512",
	}
	for file, v := range want {
		if got := read(t, file); got != v {
			t.Errorf("%s = %s, want %s", file, got, v)
		}
	}
	if n := len(cg.Procs()); n != 2 && !(n == 3 && m.acct != "") {
		t.Errorf("cgroup.procs to join: %v", cg.Procs())
	}
	// Over the limit: the kernel's OOM killer ends the process.
	code := exitCode(run(t, cg, `exec python3 -c 'b = b"x" * (200 << 20)'`).Wait())
	if code != 137 || !cg.OOMKilled(code) {
		t.Errorf("over the limit: exit %d, OOMKilled %v; want 137, true", code, cg.OOMKilled(code))
	}
	if err := cg.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range cg.Dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Close (%v)", d, err)
		}
	}

	// Under it: no OOM kill, a run's counter starts afresh.
	cg, err = m.Add("pod-1", "c", l, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	code = exitCode(run(t, cg, `exec python3 -c 'b = b"x" * (10 << 20)'`).Wait())
	if code != 0 || cg.OOMKilled(1) {
		t.Errorf("under the limit: exit %d, OOMKilled %v; want 0, false", code, cg.OOMKilled(1))
	}
	// Another cause of death is no OOM kill.
	code = exitCode(run(t, cg, `kill -9 $$`).Wait())
	if code != 137 || cg.OOMKilled(code) {
		t.Errorf("kill -9: exit %d, OOMKilled %v; want 137, false", code, cg.OOMKilled(code))
	}
	if err := m.RemovePod("pod-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.mem, "pod-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod directory left after RemovePod (%v)", err)
	}
}

func TestV1NoLimitsNoCgroup(t *testing.T) {
	m := v1(t, t.TempDir())
	cg, err := m.Add("pod-2", "plain", Limits{}, 2)
	if cg != nil || err != nil {
		t.Errorf("a container without limits: %v, %v; want no cgroup", cg, err)
	}
	// Memory alone: no cpu cgroup.
	cg, err = m.Add("pod-2", "mem", Limits{Memory: 1 << 30}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	if len(cg.Dirs()) != 1 || !strings.HasPrefix(cg.Dirs()[0], m.mem) {
		t.Errorf("memory limit only: cgroups %v", cg.Dirs())
	}
	if _, err := m.Add("pod-2", "../x", Limits{Memory: 1}, 2); err == nil {
		t.Error("a name with a slash was taken")
	}
}

// A node that died leaves cgroups, with processes in them: the next Open of
// the same node removes them, and another node's stay.
func TestV1StaleCgroupsRemovedAtOpen(t *testing.T) {
	state := t.TempDir()
	m := v1(t, state)
	other := v1(t, t.TempDir())
	cg, err := m.Add("pod-3", "c", Limits{Memory: 64 << 20, CPUQuota: 50000}, 2)
	if err != nil {
		t.Fatal(err)
	}
	keep, err := other.Add("pod-3", "c", Limits{Memory: 64 << 20}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	cmd := run(t, cg, "sleep 60")
	exited := make(chan int, 1)
	go func() { exited <- exitCode(cmd.Wait()) }()
	// (clustertest's Eventually would import this package back.)
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return read(t, filepath.Join(cg.Dirs()[0], "cgroup.procs")) != "", nil
	}); err != nil {
		t.Fatalf("the process never showed in its cgroup: %v", err)
	}

	again := Open("cgroups-test", state, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if again.mem != m.mem {
		t.Fatalf("the same node got another directory: %s, then %s", m.mem, again.mem)
	}
	select {
	case code := <-exited:
		if code != 137 {
			t.Errorf("process of a stale cgroup: exit %d, want 137 (killed)", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the process of a stale cgroup still runs")
	}
	for _, d := range cg.Dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s left (%v)", d, err)
		}
	}
	for _, d := range keep.Dirs() {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("another node's %s removed: %v", d, err)
		}
	}
}

// fakeV2 lays out the files of a cgroup v2 hierarchy that the kernel would
// make, for the cgroups the node uses (node, pod), in a plain directory.
func fakeV2(t *testing.T, mnt, controllers string, cgroups ...string) string {
	t.Helper()
	if mnt == "" {
		mnt = t.TempDir()
	}
	for _, dir := range append([]string{mnt}, cgroups...) {
		if dir != mnt {
			dir = filepath.Join(mnt, dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, data := range map[string]string{"cgroup.controllers": controllers, "cgroup.subtree_control": ""} {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return mnt
}

// Without v1 hierarchies, the controllers are enabled on the unified one
// from its root down to the pod, and every container gets a cgroup of its
// own there, limits or not, which its init starts in.
func TestV2WhereNoV1(t *testing.T) {
	mnt := fakeV2(t, "", "cpuset cpu io memory pids", "outpost", "outpost/n-1")
	m := open(Mounts{V1: map[string]string{}, V2: mnt}, "n-1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if mem, cpu := m.Enforced(); !mem || !cpu || m.v2 != filepath.Join(mnt, "outpost", "n-1") {
		t.Fatalf("Enforced() = %v, %v at %q", mem, cpu, m.v2)
	}
	for _, d := range []string{"", "outpost", "outpost/n-1"} {
		// Written one at a time: the last write is what the fake file holds.
		if got := read(t, filepath.Join(mnt, d, "cgroup.subtree_control")); got != "+cpu" {
			t.Errorf("%s/cgroup.subtree_control: last write %q, want +cpu", d, got)
		}
	}
	fakeV2(t, mnt, "cpu memory", "outpost/n-1/pod-4") // as the kernel makes it with the directory
	cg, err := m.Add("pod-4", "c", Limits{Memory: 100 << 20, CPUQuota: 25000, CPUShares: 102}, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.fd.Close()
	dir := filepath.Join(mnt, "outpost", "n-1", "pod-4", "c")
	for file, want := range map[string]string{
		"memory.max": "104857600", "memory.swap.max": "0", "cpu.max": "25000 100000", "cpu.weight": "4",
		"../cpu.weight": "20", "../cgroup.subtree_control": "+cpu",
	} {
		if got := read(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if cg.FD() == nil || cg.Procs() != nil || len(cg.Dirs()) != 1 || cg.Dirs()[0] != dir {
		t.Errorf("v2 cgroup: fd %v, procs %v, dirs %v", cg.FD(), cg.Procs(), cg.Dirs())
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !cg.OOMKilled(137) || cg.OOMKilled(0) {
		t.Error("memory.events oom_kill 1 not read as an OOM kill")
	}

	plain, err := m.Add("pod-4", "plain", Limits{}, 512)
	if err != nil {
		t.Fatal(err)
	}
	if plain == nil || plain.FD() == nil {
		t.Fatal("a container without limits got no v2 cgroup: its pod's cgroup can hold no process")
	}
	plain.fd.Close()
	if _, err := os.Stat(filepath.Join(dir, "..", "plain", "memory.max")); err == nil {
		t.Error("a container without limits got a memory limit")
	}
}

// Controllers that the unified hierarchy does not offer (bound to v1
// hierarchies, or absent) are not enforced, and nothing fails.
func TestV2WithoutControllers(t *testing.T) {
	mnt := fakeV2(t, "", "pids")
	m := open(Mounts{V1: map[string]string{}, V2: mnt}, "n-2", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if mem, cpu := m.Enforced(); mem || cpu || m.v2 != "" {
		t.Fatalf("Enforced() = %v, %v at %q; want nothing", mem, cpu, m.v2)
	}
	if _, err := os.Stat(filepath.Join(mnt, "outpost")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a directory made on a hierarchy that enforces nothing (%v)", err)
	}
	cg, err := m.Add("pod-5", "c", Limits{Memory: 1 << 20, CPUQuota: 1000}, 2)
	if cg != nil || err != nil {
		t.Errorf("Add = %v, %v; want no cgroup and no error", cg, err)
	}
	// Nothing at all: no hierarchy.
	m = open(Mounts{V1: map[string]string{}}, "n-3", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if mem, cpu := m.Enforced(); mem || cpu {
		t.Errorf("no hierarchy: Enforced() = %v, %v", mem, cpu)
	}
}

// On a cgroup v2 only machine the containers' cgroups are children of the
// pods' podnet cgroups: both name the node's directory the same way.
func TestNodeDirNameIsPodnets(t *testing.T) {
	state := t.TempDir()
	n, err := podnet.Open("naming-test", state)
	if err != nil {
		t.Skipf("podnet unavailable here: %v", err)
	}
	defer n.Close()
	name, err := NodeDirName("naming-test", state)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(n.Dir()) != name || filepath.Base(filepath.Dir(n.Dir())) != "outpost" {
		t.Errorf("podnet's node directory %s, ours <hierarchy>/outpost/%s", n.Dir(), name)
	}
}
