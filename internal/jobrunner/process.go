package jobrunner

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

// Process ending; tests shorten them.
var (
	killGrace    = 10 * time.Second // between SIGTERM and SIGKILL
	drainTimeout = 2 * time.Second  // for the output of what a process left behind
)

// process is one local process of the job: `shell -c command`.
type process struct {
	rank  int // global
	local int
	env   []string
	out   io.Writer // gets its stdout and stderr, in order
	warn  io.Writer // the wrapper's stderr
	// filled by start and wait
	cmd    *exec.Cmd
	exited chan struct{}
	code   int
	termAt atomic.Pointer[time.Time] // when it was sent SIGTERM
}

// outcome of running the processes.
type outcome struct {
	codes    []int // by local index
	first    int   // local index of the first to fail, -1 when none did
	canceled bool  // ctx ended before they did
}

// runProcesses runs every process to its end. Each runs in its own process
// group, so that a signal reaches what it started too. When ctx ends, or a
// process fails while others run (a distributed job cannot go on without
// one of its ranks), the others get SIGTERM, then SIGKILL after killGrace.
func runProcesses(ctx context.Context, shell, command, dir string, procs []*process) (outcome, error) {
	res := outcome{codes: make([]int, len(procs)), first: -1}
	type exit struct {
		i    int
		code int
	}
	exits := make(chan exit, len(procs))
	started := 0
	var startErr error
	for i, p := range procs {
		if err := p.start(shell, command, dir, func(code int) { exits <- exit{i, code} }); err != nil {
			startErr = fmt.Errorf("starting process %d: %w", p.rank, err)
			break
		}
		started++
	}

	var kill <-chan time.Time
	stop := func() {
		if kill != nil {
			return
		}
		for _, p := range procs[:started] {
			p.signal(syscall.SIGTERM)
		}
		kill = time.After(killGrace)
	}
	if startErr != nil {
		stop()
	}
	done := ctx.Done()
	for left := started; left > 0; {
		select {
		case e := <-exits:
			left--
			res.codes[e.i] = e.code
			if e.code != 0 && res.first < 0 {
				res.first = e.i
				if left > 0 {
					stop()
				}
			}
		case <-done:
			done = nil
			res.canceled = true
			stop()
		case <-kill:
			for _, p := range procs[:started] {
				p.signal(syscall.SIGKILL)
			}
		}
	}
	return res, startErr
}

// start starts the process and a watcher that calls exited with its exit
// code once it has ended and its output has been read.
func (p *process) start(shell, command, dir string, exited func(int)) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(shell, "-c", command)
	cmd.Dir = dir
	cmd.Env = p.env
	// One pipe for both, like a terminal: the order of the lines is kept.
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close() // the child has its own copy
	if err != nil {
		r.Close()
		return err
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		// An error here is the pipe closed below, after the process ended
		// and its leftovers were given drainTimeout: nothing more to read.
		io.Copy(p.out, r)
	}()
	go func() {
		// Wait's error is the exit status, which ProcessState has; or a
		// failure to reap, after which ProcessState is nil.
		if err := cmd.Wait(); cmd.ProcessState == nil {
			fmt.Fprintf(p.warn, "process %d: %v\n", p.rank, err)
			p.code = 1
		} else {
			p.code = exitCode(cmd.ProcessState)
		}
		close(p.exited)
		// Once told to stop, what the command started has the rest of the
		// grace period too (it got SIGTERM with it): until it lets go of
		// the output.
		if at := p.termAt.Load(); at != nil {
			select {
			case <-drained:
			case <-time.After(time.Until(at.Add(killGrace))):
			}
		}
		// What the command left running in its group would end with the
		// container; end it now so that it lets go of the pipe.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH: nothing was left, as hoped
		select {
		case <-drained:
		case <-time.After(drainTimeout):
			// Something outside the group (a daemon that called setsid)
			// holds the pipe open: stop reading.
			r.Close()
			<-drained
		}
		r.Close()
		exited(p.code)
	}()
	return nil
}

// signal sends sig to the process's group while it runs.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	if sig == syscall.SIGTERM {
		now := time.Now()
		p.termAt.CompareAndSwap(nil, &now)
	}
	// ESRCH: it ended meanwhile.
	syscall.Kill(-p.cmd.Process.Pid, sig)
}

// exitCode is a shell's way of telling how a process ended: its status,
// or 128+N for a signal N.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return 1
}
