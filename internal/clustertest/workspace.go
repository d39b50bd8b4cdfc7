package clustertest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Workspace is a running `outpost workspace serve` of a test and a login to
// it, for tests that drive the CLI as a user does.
type Workspace struct {
	T     testing.TB // the test that fails when a call does; subtests set it
	Dir   string
	Addr  string
	Login string // OUTPOST_CONFIG of the user
	// Heartbeat is the agents' report interval the workspace asks for.
	Heartbeat time.Duration
	cmd       *exec.Cmd
}

// FreePort returns a loopback address nothing listens on now.
func FreePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartWorkspace serves a workspace in a temporary directory, logs in to
// it, and stops it when the test ends.
func StartWorkspace(t testing.TB, heartbeat time.Duration) *Workspace {
	w := &Workspace{T: t, Dir: t.TempDir(), Addr: FreePort(t), Heartbeat: heartbeat}
	w.Login = filepath.Join(w.Dir, "login.json")
	w.Serve()
	t.Cleanup(w.Stop)
	out, errOut, code := w.Outpost("login", "--url", "https://"+w.Addr, "--token", w.AdminToken(), "--ca-file", filepath.Join(w.Dir, "data", "tls", "ca.crt"))
	if code != 0 {
		t.Fatalf("login: %s %s", out, errOut)
	}
	return w
}

// Serve starts the workspace process and waits until it listens.
func (w *Workspace) Serve() {
	w.T.Helper()
	w.cmd = exec.Command(Cluster.Outpost, "workspace", "serve", "--addr", w.Addr, "--data-dir", filepath.Join(w.Dir, "data"),
		"--heartbeat", w.Heartbeat.String())
	log, err := os.OpenFile(filepath.Join(w.Dir, "workspace.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.T.Fatal(err)
	}
	w.cmd.Stdout, w.cmd.Stderr = log, log
	if err := w.cmd.Start(); err != nil {
		w.T.Fatal(err)
	}
	log.Close() // the child has its own descriptor
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", w.Addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.T.Fatal("workspace did not listen")
}

// Stop ends the workspace gracefully.
func (w *Workspace) Stop() {
	if w.cmd != nil && w.cmd.Process != nil {
		w.cmd.Process.Signal(syscall.SIGTERM)
		w.cmd.Wait()
		w.cmd = nil
	}
}

// Kill9 ends the workspace as a crash would.
func (w *Workspace) Kill9() {
	w.cmd.Process.Kill()
	w.cmd.Wait()
	w.cmd = nil
}

// AdminToken reads the workspace's admin token.
func (w *Workspace) AdminToken() string {
	data, err := os.ReadFile(filepath.Join(w.Dir, "data", "admin-token"))
	if err != nil {
		w.T.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// Outpost runs the CLI as the logged-in user against the test cluster.
func (w *Workspace) Outpost(args ...string) (string, string, int) {
	w.T.Helper()
	return Run(w.T, w.Env(), Cluster.Outpost, args...)
}

// Env is the environment of the CLI as the logged-in user.
func (w *Workspace) Env() []string {
	return []string{"OUTPOST_CONFIG=" + w.Login, "KUBECONFIG=" + Cluster.Kubeconfig}
}

// Must runs the CLI and fails the test on a non-zero exit.
func (w *Workspace) Must(args ...string) string {
	w.T.Helper()
	out, errOut, code := w.Outpost(args...)
	if code != 0 {
		w.T.Fatalf("outpost %s: exit %d\n%s\n%s\n--- workspace log ---\n%s", strings.Join(args, " "), code, out, errOut, w.Log())
	}
	return out
}

// ML runs `outpost ml ARGS -g RG -w WS` as the logged-in user.
func (w *Workspace) ML(rg, ws string, args ...string) (string, string, int) {
	w.T.Helper()
	return w.Outpost(append(append([]string{"ml"}, args...), "-g", rg, "-w", ws)...)
}

// MustML is ML failing the test on a non-zero exit, with the end of the
// workspace's log.
func (w *Workspace) MustML(rg, ws string, args ...string) string {
	w.T.Helper()
	out, errOut, code := w.ML(rg, ws, args...)
	if code != 0 {
		log := strings.Split(w.Log(), "\n")
		w.T.Fatalf("outpost ml %s: exit %d\n%s\n%s\n--- workspace log (end) ---\n%s", strings.Join(args, " "), code, out, errOut,
			strings.Join(log[max(0, len(log)-40):], "\n"))
	}
	return out
}

// Log is what the workspace printed so far.
func (w *Workspace) Log() string {
	data, err := os.ReadFile(filepath.Join(w.Dir, "workspace.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(data)
}

// JobPods lists the pods of the workspace job named name in namespace
// default: its TrainingJob's name is the job's in DNS form, the pods'
// label value and prefix.
func JobPods(t testing.TB, name string) []corev1.Pod {
	t.Helper()
	l, err := Cluster.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "training.outpost.dev/job"})
	if err != nil {
		t.Fatal(err)
	}
	cr := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	var out []corev1.Pod
	for _, p := range l.Items {
		if strings.HasPrefix(p.Labels["training.outpost.dev/job"], cr) {
			out = append(out, p)
		}
	}
	return out
}
