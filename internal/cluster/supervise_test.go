package cluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/clustertest"
)

func TestSupervisorBacksOffAndLogsWhy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &clustertest.Log{}
	var mu sync.Mutex
	restarts := 0
	errc := make(chan error, 1)
	go func() {
		errc <- cluster.RunSupervisor(ctx, func() *exec.Cmd {
			return exec.Command("sh", "-c", "echo 'error: unknown flag --bogus' >&2; exit 3")
		}, log, 20*time.Millisecond, 80*time.Millisecond, time.Second, func(_, n int, _ string) {
			mu.Lock()
			restarts = n
			mu.Unlock()
		})
	}()
	clustertest.Eventually(t, 10*time.Second, "five exits recorded", func() error {
		mu.Lock()
		defer mu.Unlock()
		if restarts < 5 {
			return fmt.Errorf("%d exits so far", restarts)
		}
		return nil
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("supervisor returned %v after ctx ended", err)
	}
	out := log.String()
	// The delays double up to the cap, and every line says why it restarts.
	var delays []string
	for _, line := range strings.Split(out, "\n") {
		if _, after, ok := strings.Cut(line, "restarting in "); ok {
			if !strings.Contains(line, "test-component exited (exit status 3 after ") {
				t.Errorf("restart line does not say why: %q", line)
			}
			delays = append(delays, after)
		}
	}
	if want := []string{"20ms", "40ms", "80ms", "80ms"}; len(delays) < 4 || strings.Join(delays[:4], ",") != strings.Join(want, ",") {
		t.Errorf("restart delays %v, want %v then capped; log:\n%s", delays, want, out)
	}
	if !strings.Contains(out, "error: unknown flag --bogus") {
		t.Errorf("the component's own output is not in its log:\n%s", out)
	}
}

func TestSupervisorStopsItsComponent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := make(chan int, 10)
	errc := make(chan error, 1)
	go func() {
		errc <- cluster.RunSupervisor(ctx, func() *exec.Cmd { return exec.Command("sleep", "600") },
			&clustertest.Log{}, time.Second, time.Second, 5*time.Second, func(pid, _ int, _ string) {
				if pid != 0 {
					pids <- pid
				}
			})
	}()
	var pid int
	select {
	case pid = <-pids:
	case <-time.After(10 * time.Second):
		t.Fatal("the component was not started")
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("supervisor: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor did not stop within 10s")
	}
	// The supervisor reaped its child, so the pid is gone, or reused by a
	// stranger with another command line.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasPrefix(string(cmdline), "sleep\x00600") {
		t.Fatalf("component pid %d still runs after the supervisor stopped", pid)
	}
}
