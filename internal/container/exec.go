package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit codes of `outpost container-exec` when the command never ran, the
// ones shells use: 127 not found, 126 found but not started.
const (
	execNotFound  = 127
	execCannotRun = 126
)

// The container's namespaces and root travel to `outpost container-exec` as
// inherited descriptors, opened by the node while it knows the container is
// alive: a pid number alone could be reused by an unrelated process by the
// time the helper looks it up.
const (
	// readyFD is the init's end of the pipe it closes once the root is ready.
	readyFD = 3

	fdRoot  = 3
	fdMntNS = 4
	fdPidNS = 5
	fdUTSNS = 6
)

// StartExec starts `outpost container-exec`: argv run inside the running
// container p (its mount and PID namespaces, its root, its env and
// workingDir, from the spec it was started with at root), with the given
// stdio. ExitCode of the command's Wait is the command's. With tty the
// command becomes a session leader with stdin (a terminal) as its
// controlling terminal. Cancelling ctx kills the helper and, with it, the
// command.
func StartExec(ctx context.Context, outpostBin string, p *Process, root string, argv []string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command to run")
	}
	// Right after Start, the init may not have made the container's root
	// yet: its namespaces would still show the host's.
	select {
	case <-p.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var files []*os.File
	defer func() {
		// Start duplicated them into the helper; ours are no longer needed.
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range []string{"root", "ns/mnt", "ns/pid", "ns/uts"} {
		flags := unix.O_RDONLY | unix.O_CLOEXEC // setns takes namespace files opened for reading
		if name == "root" {
			flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
		}
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/%s", p.Pid(), name), flags, 0)
		if err != nil {
			return nil, fmt.Errorf("container is not running: %w", err)
		}
		files = append(files, f)
	}
	select {
	case <-p.Done():
		// Exited while we opened its namespaces: they may be a reused pid's.
		return nil, errors.New("container is not running")
	default:
	}
	mode := "notty"
	if tty {
		mode = "tty"
	}
	cmd := exec.CommandContext(ctx, outpostBin, append([]string{"container-exec", specFile(root), mode, "--"}, argv...)...)
	cmd.ExtraFiles = files
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// The command's own processes may keep stdout open after it exits (a
	// daemon it started): its output is then cut after this delay rather
	// than holding the caller forever.
	cmd.WaitDelay = 2 * time.Second
	// The helper kills the command when asked to stop (a SIGKILL would leave
	// the command running); WaitDelay kills the helper should it not exit.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	// Should the node die, the helper dies with it, and the containers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// In the pod's cgroup, so that the pod's address programs apply to the
	// command too (a probe's `curl localhost:8080` reaches the pod's server),
	// or the container's own (v2) one within it, under the container's
	// limits. The helper joins the container's v1 cgroups itself.
	if p.cgroup != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(p.cgroup.Fd())
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// specFile is where Start writes the spec of the container rooted at root.
func specFile(root string) string { return filepath.Join(filepath.Dir(root), "spec.json") }

// ExecMain is `outpost container-exec SPEC tty|notty -- ARGV...`, started by
// ExecCommand with the container's root and namespaces at fds 3, 4 and 5. It
// never returns: it exits with the command's status.
func ExecMain(args []string) {
	if len(args) < 4 || args[2] != "--" {
		execFail(execCannotRun, errors.New("usage: outpost container-exec SPEC tty|notty -- COMMAND..."))
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		execFail(execCannotRun, err)
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		execFail(execCannotRun, fmt.Errorf("%s: %w", args[0], err))
	}
	tty, argv := args[1] == "tty", args[3:]
	// Inside the container's limits, as any process of it.
	if err := joinCgroups(s.CgroupProcs); err != nil {
		execFail(execCannotRun, err)
	}

	// Namespaces, root and working directory are attributes of one thread
	// (after unshare(CLONE_FS)); the command is forked from that very thread,
	// which therefore must never run another goroutine.
	runtime.LockOSThread()
	if err := enter(s.WorkingDir); err != nil {
		execFail(execCannotRun, err)
	}
	path, err := lookPath(argv[0], s.Env)
	if err != nil {
		execFail(execNotFound, err)
	}
	child, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   s.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// No Pdeathsig: the child, in another PID namespace, would see its
		// parent as pid 0 and Go's fork would take that for the parent's
		// death. The helper ends it instead, below.
		Sys: &syscall.SysProcAttr{Setsid: tty, Setctty: tty, Ctty: 0},
	})
	if err != nil {
		execFail(execCannotRun, err)
	}
	// The node ends an exec session (client gone, hook timed out) with
	// SIGTERM to this helper: the command ends with it.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		<-stop
		_ = child.Kill()
	}()
	st, err := child.Wait()
	if err != nil {
		execFail(execCannotRun, err)
	}
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(ws.ExitStatus())
}

// enter moves the calling thread into the container: its mount namespace and
// root, then the working directory; processes it forks start in the
// container's PID namespace.
func enter(workingDir string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	if err := unix.Setns(fdMntNS, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("enter mount namespace: %w", err)
	}
	// The container's init chrooted into its assembled root, which is not
	// the mount namespace's own root: go there too.
	if err := unix.Fchdir(fdRoot); err != nil {
		return fmt.Errorf("enter root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Setns(fdPidNS, unix.CLONE_NEWPID); err != nil {
		return fmt.Errorf("enter PID namespace: %w", err)
	}
	// The container's hostname (the host's own UTS namespace when it has none).
	if err := unix.Setns(fdUTSNS, unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("enter UTS namespace: %w", err)
	}
	for _, fd := range []int{fdRoot, fdMntNS, fdPidNS, fdUTSNS} {
		unix.Close(fd)
	}
	if workingDir == "" {
		workingDir = "/"
	}
	if err := unix.Chdir(workingDir); err != nil {
		return fmt.Errorf("workingDir %s: %w", workingDir, err)
	}
	return nil
}

func execFail(code int, err error) {
	fmt.Fprintf(os.Stderr, "outpost: exec in container: %v\n", err)
	os.Exit(code)
}

// ExitCode is the status of a finished ExecCommand (128+signal when killed
// by one), or an error when it could not be run or waited for.
func ExitCode(err error) (int, error) {
	var exit *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: the command succeeded; only its stray output was cut.
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return 0, err
}
