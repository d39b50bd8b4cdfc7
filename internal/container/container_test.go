package container_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/container"
)

var outpost string

func TestMain(m *testing.M) {
	b, err := clustertest.Binary()
	if err != nil {
		panic(err)
	}
	outpost = b
	os.Exit(m.Run())
}

// start runs a container and returns its exit code and output.
func start(t *testing.T, s container.Spec) (int, string) {
	t.Helper()
	dir := t.TempDir()
	s.Root = filepath.Join(dir, "root")
	if s.TerminationLog == "" {
		s.TerminationLog = filepath.Join(dir, "termination-log")
	}
	log := filepath.Join(dir, "log")
	p, err := container.Start(outpost, s, log)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		p.Kill()
		t.Fatal("container did not finish")
	}
	out, _ := os.ReadFile(log)
	return p.ExitCode, string(out)
}

func TestMountsStayInsideTheContainer(t *testing.T) {
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "tls.crt"), []byte("CERT"), 0o644)
	file := filepath.Join(t.TempDir(), "one-file")
	os.WriteFile(file, []byte("FILE"), 0o644)
	code, out := start(t, container.Spec{
		Argv: []string{"sh", "-c", "cat /etc/outpost-test/tls/tls.crt /opt/outpost-test/f; echo; touch /etc/outpost-test/tls/new && echo writable; " +
			"(echo x > /opt/outpost-test/f) 2>/dev/null && echo rw || echo ro; tr '\\0' ' ' < /proc/1/cmdline; echo; pwd"},
		Env:        []string{"PATH=/usr/bin:/bin"},
		WorkingDir: "/srv/outpost-test-wd",
		Mounts: []container.Mount{
			{Source: vol, Target: "/etc/outpost-test/tls"},
			{Source: file, Target: "/opt/outpost-test/f", ReadOnly: true},
		},
	})
	// PID 1 of the container's own PID namespace is its init.
	lines := strings.Split(out, "\n")
	if code != 0 || len(lines) != 6 || strings.Join(lines[:3], "\n") != "CERTFILE\nwritable\nro" ||
		!strings.HasPrefix(lines[3], outpost+" container-init ") || lines[4] != "/srv/outpost-test-wd" {
		t.Fatalf("exit %d, output %q; want the volume contents, a writable volume, a read-only file, the init as PID 1, the working dir", code, out)
	}
	if _, err := os.Stat(filepath.Join(vol, "new")); err != nil {
		t.Errorf("a write to the mounted volume did not reach the host directory: %v", err)
	}
	for _, p := range []string{"/etc/outpost-test", "/opt/outpost-test", "/srv/outpost-test-wd"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created on the host", p)
		}
	}
}

func TestExitCodesAndStartErrors(t *testing.T) {
	cases := []struct {
		name     string
		argv     []string
		wantCode int
		wantLog  string
		wantTerm string
	}{
		{"exit code", []string{"sh", "-c", "echo bye; exit 3"}, 3, "bye\n", ""},
		{"killed by a signal", []string{"sh", "-c", "kill -9 $$"}, 137, "", ""},
		{"not found", []string{"no-such-command-xyz"}, 128, `executable file not found`, `"no-such-command-xyz": executable file not found in $PATH`},
		{"termination message", []string{"sh", "-c", "echo done-badly > /dev/termination-log; exit 1"}, 1, "", "done-badly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			term := filepath.Join(t.TempDir(), "termination-log")
			os.WriteFile(term, nil, 0o644)
			code, out := start(t, container.Spec{Argv: tc.argv, TerminationLog: term,
				Mounts: []container.Mount{{Source: term, Target: corev1.TerminationMessagePathDefault}}})
			msg, _ := os.ReadFile(term)
			if code != tc.wantCode || !strings.Contains(out, tc.wantLog) || !strings.Contains(string(msg), tc.wantTerm) {
				t.Fatalf("exit %d, log %q, termination message %q; want %d, %q, %q", code, out, msg, tc.wantCode, tc.wantLog, tc.wantTerm)
			}
		})
	}
}

func TestStopKillsTheWholeContainer(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	p, err := container.Start(outpost, container.Spec{Root: filepath.Join(dir, "root"),
		Argv: []string{"sh", "-c", "trap '' TERM; setsid sh -c 'sleep 1000; :' " + marker + " & sh -c 'sleep 1001; :' " + marker + "; wait"}}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	// `sh -c '...; :' MARKER` keeps a shell (with the marker as its $0) around
	// the sleep, whose own argv could not carry the marker.
	clustertest.Eventually(t, 10*time.Second, "both shells running", func() error {
		if n := len(clustertest.Processes(marker)); n < 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	t0 := time.Now()
	p.Stop(300 * time.Millisecond)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("stop took %s", d)
	}
	// Stop returns once the init is reaped; the kernel has killed the rest of
	// the namespace by then, though their exit may still be under way.
	clustertest.Eventually(t, 5*time.Second, "no process of the container left", func() error {
		if pids := clustertest.Processes(marker); len(pids) > 0 {
			return fmt.Errorf("processes %v survived the container", pids)
		}
		return nil
	})
}

// TestStopTerminatesEveryProcessGracefully is what a script with background
// workers needs: every process of the container gets SIGTERM, not just the
// first, so each worker can finish its shutdown within the grace period.
func TestStopTerminatesEveryProcessGracefully(t *testing.T) {
	dir := t.TempDir()
	// A worker writes its ready file once its trap is set, and its stopped file
	// when SIGTERM reaches it; its sleep must not hold it up either.
	worker := func(name string) string {
		ready, stopped := filepath.Join(dir, name+".ready"), filepath.Join(dir, name+".stopped")
		return fmt.Sprintf(`sh -c 'trap "echo stopped > %s; exit 0" TERM; touch %s; sleep 1000 & wait'`, stopped, ready)
	}
	// Two workers the script waits for, and a third in a session of its own
	// that nobody waits for: it too is the container's, and must be told.
	script := "trap 'wait; exit 0' TERM; " + worker("a") + " & " + worker("b") + " & (setsid " + worker("c") + " &); wait"
	p, err := container.Start(outpost, container.Spec{Root: filepath.Join(dir, "root"), Argv: []string{"sh", "-c", script}},
		filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 10*time.Second, "workers ready", func() error {
		for _, w := range []string{"a", "b", "c"} {
			if _, err := os.Stat(filepath.Join(dir, w+".ready")); err != nil {
				return err
			}
		}
		return nil
	})
	const grace = 20 * time.Second
	t0 := time.Now()
	p.Stop(grace)
	took := time.Since(t0)
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	for _, w := range []string{"a", "b", "c"} {
		if _, err := os.Stat(filepath.Join(dir, w+".stopped")); err != nil {
			t.Errorf("worker %s did not get SIGTERM: %v", w, err)
		}
	}
	if took >= grace || p.ExitCode != 0 {
		t.Fatalf("the container stopped after %s with exit code %d (log %q); want a graceful exit 0 before the grace period (%s) ends", took, p.ExitCode, log, grace)
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	cases := map[string]string{
		"$(A)-$(B)":   "1-two",
		"$(MISSING)":  "$(MISSING)",
		"$$(A)":       "$(A)",
		"cost $5":     "cost $5",
		"$(A":         "$(A",
		"plain":       "plain",
		"$(A)$(A)$$$": "11$$",
	}
	for in, want := range cases {
		if got := container.Expand(in, vars); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestArgv(t *testing.T) {
	env := []string{"PORT=8000"}
	cases := []struct {
		name    string
		c       corev1.Container
		want    string
		wantErr string
	}{
		{"command and args", corev1.Container{Image: "example.com/app:1", Command: []string{"python3", "-m", "http.server"}, Args: []string{"$(PORT)"}}, "python3 -m http.server 8000", ""},
		{"args only", corev1.Container{Image: "example.com/app:1", Args: []string{"python3", "x.py"}}, "python3 x.py", ""},
		{"outpost image entrypoint", corev1.Container{Image: "registry.local/outpost:v1", Args: []string{"version"}}, "/bin/outpost version", ""},
		{"outpost image with outpost command", corev1.Container{Image: "outpost", Command: []string{"outpost", "node"}, Args: []string{"run"}}, "/bin/outpost node run", ""},
		{"outpost image other command", corev1.Container{Image: "outpost:dev", Command: []string{"sh"}}, "sh", ""},
		{"nothing to run", corev1.Container{Image: "nginx:1.25"}, "", `image "nginx:1.25": images are not pulled on the Outpost node`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			argv, err := container.Argv(&tc.c, env, container.Binaries{Outpost: "/bin/outpost"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(argv, " ") != tc.want {
				t.Fatalf("argv %q (%v), want %q", argv, err, tc.want)
			}
		})
	}
}
