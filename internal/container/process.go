package container

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is a running container: its init, PID 1 of the container's own PID
// namespace.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	// ready is closed once the init has assembled the container's root (or
	// exited): see Spec.Ready.
	ready chan struct{}
	// cgroup is the pod's cgroup the init started in (nil when none), which
	// commands run in the container (StartExec) join too.
	cgroup *os.File
	// ExitCode is valid once Done is closed.
	ExitCode int
	Started  time.Time
	Finished time.Time
}

// Start writes the spec next to the container's root and launches the init
// with outpostBin. stdout and stderr of the container go to logFile.
func Start(outpostBin string, s Spec, logFile string) (*Process, error) {
	if err := os.MkdirAll(s.Root, 0o755); err != nil {
		return nil, err
	}
	s.Ready = true
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	specFile := filepath.Join(filepath.Dir(s.Root), "spec.json")
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(outpostBin, "container-init", specFile)
	cmd.Stdout, cmd.Stderr = log, log
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyW.Close()                // the init holds it once started
	cmd.ExtraFiles = []*os.File{readyW} // its fd 3: readyFD
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Setpgid:    true,
		// Should the node agent die, its containers die with it rather than run
		// on unsupervised; it restarts them when it comes back.
		Pdeathsig: syscall.SIGKILL,
	}
	if s.Cgroup != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(s.Cgroup.Fd())
	}
	if s.Hostname != "" {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUTS
	}
	if err := cmd.Start(); err != nil {
		readyR.Close()
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		// EOF once the init closed its end: root assembled, or init gone.
		_, _ = io.Copy(io.Discard, readyR)
		readyR.Close()
		close(ready)
	}()
	p := &Process{cmd: cmd, done: make(chan struct{}), ready: ready, Started: time.Now(), cgroup: s.Cgroup}
	go func() {
		err := cmd.Wait()
		p.Finished = time.Now()
		var exit *exec.ExitError
		switch {
		case err == nil:
			p.ExitCode = 0
		case errors.As(err, &exit):
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.ExitCode = 128 + int(ws.Signal())
			} else {
				p.ExitCode = exit.ExitCode()
			}
		default:
			p.ExitCode = startFailed
		}
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the container has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid is the init's pid on the host.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the container to stop (SIGTERM, which the init passes on to every
// process of the container) and kills its whole PID namespace after grace.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill ends the container at once.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}
