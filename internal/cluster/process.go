package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A process of the cluster is recognised by its command line naming the
// cluster directory: every component gets a flag under it. That is how `down`
// finds what to stop even after pid files are lost, and why a recycled pid is
// never mistaken for ours.

// started is a component launched by this process, watched until it exits.
type started struct {
	name string
	pid  int
	done chan struct{}
	err  error
}

func (c *Config) pidFile(name string) string { return c.path("run", name+".pid") }

// launch starts a component in its own session so that it outlives the CLI and
// a Ctrl-C in the user's terminal does not reach it.
func (c *Config) launch(name, bin string, args ...string) (*started, error) {
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.path("run"), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(c.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &started{name: name, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	if err := os.WriteFile(c.pidFile(name), []byte(strconv.Itoa(s.pid)), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

// runningPid returns the pid of a component when it is alive.
func (c *Config) runningPid(name string) (int, bool) {
	data, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, false
	}
	return pid, c.owns(pid)
}

// owns tells whether pid is a live (not zombie) process of this cluster.
func (c *Config) owns(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(c.Dir)) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// processes lists every live process of this cluster, components and pod
// processes alike.
func (c *Config) processes() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if c.owns(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// stop sends SIGTERM to the processes, waits up to grace for them to go, then
// kills what is left.
func (c *Config) stop(pids []int, grace time.Duration) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		alive := false
		for _, pid := range pids {
			alive = alive || c.owns(pid)
		}
		if !alive {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range pids {
		if c.owns(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		alive := false
		for _, pid := range pids {
			alive = alive || c.owns(pid)
		}
		if !alive {
			return
		}
	}
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
