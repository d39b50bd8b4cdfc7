package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Processes of a cluster are owned by record, never by their command line: each
// component runs under its own supervisor (`outpost cluster supervise`), which
// writes run/<component>.json naming itself and the component's process by pid
// and start time. A pid whose start time differs was recycled by another
// process and is left alone; a signal goes through a pidfd opened before the
// start time is checked, so it cannot reach a process that took the pid since.
// Everything else of the cluster descends from a supervisor and dies with it:
// components get SIGKILL when their supervisor dies (Pdeathsig), containers
// when the node dies, and a supervisor is the subreaper of whatever its
// component leaves behind.

// procID names one process for good: a pid is reused, a pid with its start
// time is not.
type procID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// record is what a supervisor tells about itself and its component.
type record struct {
	Supervisor procID `json:"supervisor"`
	// Process is the component's process while it runs; nil while the
	// supervisor waits to restart it.
	Process  *procID `json:"process,omitempty"`
	Restarts int     `json:"restarts"`
	LastExit string  `json:"lastExit,omitempty"`
}

// procStat reads the state and start time (fields 3 and 22 of /proc/PID/stat).
func procStat(pid int) (state byte, start uint64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name in parentheses may itself hold spaces and parentheses;
	// the fields after the last ')' are fixed.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// self identifies the calling process.
func self() (procID, error) {
	_, start, err := procStat(os.Getpid())
	return procID{PID: os.Getpid(), Start: start}, err
}

// identify names a process just started by the caller (so still its unreaped
// child, whose pid cannot have been reused).
func identify(pid int) (procID, error) {
	_, start, err := procStat(pid)
	return procID{PID: pid, Start: start}, err
}

// alive tells whether the process still runs (a zombie has finished).
func (p procID) alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, start, err := procStat(p.PID)
	return err == nil && start == p.Start && state != 'Z'
}

// signal sends sig to exactly this process; a process that has ended, or whose
// pid now belongs to another one, gets nothing.
func (p procID) signal(sig syscall.Signal) error {
	if p.PID <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if !p.alive() {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %s to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

func (c *Config) recordFile(name string) string { return c.path("run", name+".json") }

// readRecord returns the supervisor record of a component; a component never
// started has an empty one.
func (c *Config) readRecord(name string) (record, error) {
	var r record
	data, err := os.ReadFile(c.recordFile(name))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", c.recordFile(name), err)
	}
	return r, nil
}

// writeRecord replaces the record in one rename, so that a reader never sees
// half of it. No fsync: after a machine crash no process of it runs anyway.
func (c *Config) writeRecord(name string, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.path("run"), "."+name+".json.*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), c.recordFile(name))
}

// componentState is what runs of a component: its supervisor and its process.
type componentState struct {
	rec        record
	supervised bool // the supervisor runs
	running    bool // the component's process runs
}

func (c *Config) state(name string) (componentState, error) {
	rec, err := c.readRecord(name)
	if err != nil {
		return componentState{}, err
	}
	return componentState{rec: rec, supervised: rec.Supervisor.alive(),
		running: rec.Process != nil && rec.Process.alive()}, nil
}

// launched is a supervisor started by this process, watched until it exits.
type launched struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// launch starts the supervisor of a component in its own session, so that it
// outlives the CLI and a Ctrl-C in the user's terminal does not reach it, and
// waits until it has recorded itself.
func (c *Config) launch(name string) (*launched, error) {
	for _, d := range []string{c.path("logs"), c.path("run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	log, err := os.OpenFile(c.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(c.Outpost, "cluster", "supervise", "--dir", c.Dir, name)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the supervisor of %s: %w", name, err)
	}
	l := &launched{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { l.err = cmd.Wait(); close(l.done) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		rec, err := c.readRecord(name)
		if err == nil && rec.Supervisor.PID == cmd.Process.Pid {
			return l, nil
		}
		select {
		case <-l.done:
			return l, fmt.Errorf("the supervisor of %s exited (%v)", name, l.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.kill()
			return l, fmt.Errorf("the supervisor of %s did not start within 10s", name)
		}
	}
}

// kill ends a supervisor this process started (and so its component, by
// Pdeathsig). The process handle is exact: the child is not reaped before
// done is closed.
func (l *launched) kill() {
	if err := l.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		// Killing our own unreaped child fails only once it is gone.
		return
	}
	<-l.done
}

// stopComponent stops a component and its supervisor: SIGTERM to the
// supervisor, which stops the component within grace (the node stops its pods
// then), SIGKILL to both when that did not end them. It reports processes that
// would not end.
func (c *Config) stopComponent(name string, grace time.Duration) (bool, error) {
	st, err := c.state(name)
	if err != nil {
		return false, err
	}
	procs := []procID{st.rec.Supervisor}
	if st.rec.Process != nil {
		procs = append(procs, *st.rec.Process)
	}
	if !st.supervised && !st.running {
		return false, nil
	}
	if st.supervised {
		err = st.rec.Supervisor.signal(syscall.SIGTERM)
	} else {
		// A component outliving its supervisor cannot happen with Pdeathsig;
		// stop it all the same.
		err = st.rec.Process.signal(syscall.SIGTERM)
	}
	if err != nil {
		return true, err
	}
	// The supervisor gives the component grace; a little more for itself.
	if waitGone(procs, grace+5*time.Second) {
		return true, nil
	}
	for _, p := range procs {
		if err := p.signal(syscall.SIGKILL); err != nil {
			return true, err
		}
	}
	if !waitGone(procs, 5*time.Second) {
		var left []string
		for _, p := range procs {
			if p.alive() {
				left = append(left, strconv.Itoa(p.PID))
			}
		}
		return true, fmt.Errorf("processes %s of %s would not stop", strings.Join(left, ", "), name)
	}
	return true, nil
}

// waitGone waits until none of the processes runs, or timeout.
func waitGone(procs []procID, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		alive := false
		for _, p := range procs {
			alive = alive || p.alive()
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// lock serialises `up` and `down` on one cluster directory, so that two of them
// never start two supervisors for one component.
func (c *Config) lock(wait func()) (func(), error) {
	if err := os.MkdirAll(c.path("run"), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(c.path("run", "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		wait()
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// logTail returns the last lines of a component's log, for error messages.
func (c *Config) logTail(name string, lines int) string {
	data, err := os.ReadFile(c.LogPath(name))
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// checkWritable makes sure the cluster directory can hold state.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cluster directory %s cannot be created: %w; choose another with --dir", dir, errors.Unwrap(err))
	}
	probe := filepath.Join(dir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return fmt.Errorf("cluster directory %s is not writable: %w; choose another with --dir", dir, errors.Unwrap(err))
	}
	return os.Remove(probe)
}
