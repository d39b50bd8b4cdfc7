package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Each component runs under a supervisor of its own rather than one for the
// whole cluster: killing or losing one supervisor takes down one component,
// which `up` then restarts alone, and `up` keeps starting components one by one
// and reporting each as before. A supervisor is the same outpost binary, so
// nothing else needs installing, and it is small next to what it runs.

// Restart back-off of a component that keeps exiting, as for containers: 1 s
// doubling to 30 s, back to 1 s once a run lasted a minute.
const (
	restartMin    = time.Second
	restartMax    = 30 * time.Second
	restartStable = time.Minute
)

// stopGrace is how long a component has to stop on SIGTERM before SIGKILL; the
// node stops its pods meanwhile.
func stopGrace(name string) time.Duration {
	if nodeIndex(name) >= 0 {
		return 20 * time.Second
	}
	return 10 * time.Second
}

// IsComponent tells whether name is a component of the cluster.
func (c *Config) IsComponent(name string) bool { return slices.Contains(c.components(), name) }

// Supervise is `outpost cluster supervise COMPONENT`: it runs the component,
// restarts it with back-off whenever it exits, writing why to the component's
// log, and stops it when ctx ends (on SIGTERM, as `down` sends).
func Supervise(ctx context.Context, c *Config, name string) error {
	if !c.IsComponent(name) {
		return fmt.Errorf("unknown component %q; the components are %s", name, strings.Join(c.components(), ", "))
	}
	// Pdeathsig fires when the thread that started the child ends, not the
	// process; children are started from this goroutine, which keeps its thread.
	runtime.LockOSThread()
	// What the component leaves running when it exits (a container init whose
	// node died, a helper it forked) is reparented to us and stopped.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	me, err := self()
	if err != nil {
		return err
	}
	if st, err := c.state(name); err != nil {
		return err
	} else if st.supervised && st.rec.Supervisor != me {
		return fmt.Errorf("%s is already supervised by pid %d", name, st.rec.Supervisor.PID)
	}
	s := &supervisor{
		name: name, log: os.Stderr, grace: stopGrace(name), reap: true,
		minDelay: restartMin, maxDelay: restartMax, stable: restartStable,
		command: func() *exec.Cmd {
			bin, args := c.command(name)
			cmd := exec.Command(bin, args...)
			cmd.Dir = c.Dir
			return cmd
		},
		record: func(r record) error {
			r.Supervisor = me
			return c.writeRecord(name, r)
		},
	}
	return s.run(ctx)
}

// supervisor runs one component; its parts are fields so tests can run it
// with a command of their own.
type supervisor struct {
	name    string
	command func() *exec.Cmd
	record  func(record) error
	// log receives the supervisor's lines and the component's output.
	log                io.Writer
	grace              time.Duration
	minDelay, maxDelay time.Duration
	stable             time.Duration
	// reap is set in the real supervisor only: reaping any child would
	// race with other children of a test process.
	reap     bool
	restarts int
	lastExit string
}

func (s *supervisor) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "%s outpost-supervisor: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func (s *supervisor) run(ctx context.Context) error {
	if err := s.record(record{}); err != nil {
		return err
	}
	delay := s.minDelay
	for {
		cmd := s.command()
		cmd.Stdout, cmd.Stderr = s.log, s.log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		started := time.Now()
		var exitErr error
		done := make(chan struct{})
		if err := cmd.Start(); err != nil {
			exitErr = fmt.Errorf("cannot start: %w", err)
			close(done)
		} else {
			id, err := identify(cmd.Process.Pid)
			if err == nil {
				err = s.record(record{Process: &id, Restarts: s.restarts, LastExit: s.lastExit})
			}
			if err != nil {
				// Unrecorded, the process could not be told from a stranger.
				s.logf("cannot record %s (pid %d): %v; stopping it", s.name, cmd.Process.Pid, err)
				s.stop(cmd, done)
				return err
			}
			go func() { exitErr = cmd.Wait(); close(done) }()
		}
		select {
		case <-ctx.Done():
			s.stop(cmd, done)
			s.reapOrphans()
			s.logf("stopped %s", s.name)
			return s.record(record{Restarts: s.restarts, LastExit: s.lastExit})
		case <-done:
		}
		s.reapOrphans()
		ran := time.Since(started)
		if ran >= s.stable {
			delay = s.minDelay
		}
		if exitErr == nil {
			exitErr = errors.New("exit status 0")
		}
		s.restarts++
		s.lastExit = fmt.Sprintf("%v after %s", exitErr, ran.Round(time.Millisecond))
		s.logf("%s exited (%s); restarting in %s", s.name, s.lastExit, delay)
		if err := s.record(record{Restarts: s.restarts, LastExit: s.lastExit}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			s.logf("stopped %s", s.name)
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, s.maxDelay)
	}
}

// stop sends SIGTERM, then SIGKILL after the grace period, and waits for the
// component to end. cmd is our unreaped child until done, so its pid is exact.
func (s *supervisor) stop(cmd *exec.Cmd, done chan struct{}) {
	if cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		// It has exited already; done is about to close.
		<-done
		return
	}
	select {
	case <-done:
	case <-time.After(s.grace):
		s.logf("%s did not stop within %s; killing it", s.name, s.grace)
		if err := cmd.Process.Kill(); err != nil {
			s.logf("kill %s: %v", s.name, err)
		}
		<-done
	}
}

// reapOrphans kills and reaps the processes reparented to this subreaper. It
// runs only while no child of exec's is outstanding, so that reaping any child
// cannot take an exit status exec.Cmd waits for.
func (s *supervisor) reapOrphans() {
	if !s.reap {
		return
	}
	logged := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return
		}
		if !logged {
			s.logf("stopping what %s left behind: pids %v", s.name, kids)
			logged = true
		}
		for _, pid := range kids {
			// These are our own children, so the pid cannot have been reused
			// until we reap it below.
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				s.logf("kill %d: %v", pid, err)
			}
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // ended meanwhile
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}
