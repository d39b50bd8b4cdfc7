// Package container runs one container of a pod as a host process: a small
// init (this same binary, `outpost container-init`) starts in fresh mount and
// PID namespaces, assembles the container's view of the filesystem (the host's
// files plus the pod's volumes at their mountPaths), chroots into it and runs
// the command as its only child. SIGTERM to the init reaches every process of
// the container; killing the init kills the whole PID namespace, so no process
// of a container ever outlives it.
package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec is what the init needs; the node agent writes it as JSON.
type Spec struct {
	// Root is an empty directory that becomes the container's "/" (a tmpfs,
	// only inside the container's mount namespace).
	Root       string   `json:"root"`
	Mounts     []Mount  `json:"mounts"`
	Argv       []string `json:"argv"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir"`
	// TerminationLog is a host file where a failure to start is written, the
	// same file the container sees at its terminationMessagePath.
	TerminationLog string `json:"terminationLog"`
	// ReadOnlyRoot makes the root read-only, volumes excepted
	// (readOnlyRootFilesystem).
	ReadOnlyRoot bool `json:"readOnlyRoot"`
	// Tmp, when set, is a host directory private to this container that
	// becomes its /tmp.
	Tmp string `json:"tmp,omitempty"`
	// Hostname, when set, is the container's own hostname (a UTS namespace
	// of its own), as a runtime gives a pod: its name, or spec.hostname.
	Hostname string `json:"hostname,omitempty"`
	// Cgroup, when set, is the pod's cgroup (v2) directory: the init starts
	// in it, so the pod's network programs apply from its first instruction.
	// Where the container's limits are enforced on cgroup v2, it is the
	// container's own cgroup, a child of the pod's.
	Cgroup *os.File `json:"-"`
	// CgroupProcs are the cgroup.procs files (host paths) of the container's
	// cgroup v1 directories, which enforce its resource limits: the init
	// joins them before it does anything else, so that everything the
	// container runs (and every command run in it) is inside them.
	CgroupProcs []string `json:"cgroupProcs,omitempty"`

	// Ready, set by Start, says that fd 3 of the init is a pipe it closes once
	// the container's root is assembled: commands run in the container
	// (StartExec) wait for that.
	Ready bool `json:"ready,omitempty"`

	ours map[string]bool // container paths on a tmpfs of ours, safe to create in
}

// Mount binds a host path at a path inside the container.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
}

// startFailed is the exit code for "the command never ran", as the kubelet's
// StartError uses.
const startFailed = 128

// Init is `outpost container-init SPEC`: it never returns.
func Init(specFile string) {
	data, err := os.ReadFile(specFile)
	if err != nil {
		fail("", err)
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		fail("", fmt.Errorf("%s: %w", specFile, err))
	}
	// First: the container's limits hold for everything it starts.
	if err := joinCgroups(s.CgroupProcs); err != nil {
		fail(s.TerminationLog, err)
	}
	// Read before the container's mounts hide anything: the outpost image
	// runs this very binary, which may live where the container cannot see
	// it (under the host's /tmp, which the container's private /tmp hides).
	self, err := os.Executable()
	if err != nil {
		fail(s.TerminationLog, err)
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			fail(s.TerminationLog, fmt.Errorf("hostname %s: %w", s.Hostname, err))
		}
	}
	if err := s.assemble(); err != nil {
		fail(s.TerminationLog, err)
	}
	if s.Ready {
		// Also keeps the pipe from leaking into the command.
		_ = unix.Close(readyFD)
	}
	os.Exit(s.run(self))
}

// joinCgroups moves this process (all its threads) into the cgroups whose
// cgroup.procs files are given: "0" is the writer itself, whatever its PID
// namespace.
func joinCgroups(procs []string) error {
	for _, f := range procs {
		if err := os.WriteFile(f, []byte("0"), 0); err != nil {
			return fmt.Errorf("join the container's cgroup %s: %w", filepath.Dir(f), err)
		}
	}
	return nil
}

func fail(terminationLog string, err error) {
	fmt.Fprintf(os.Stderr, "outpost: cannot start container: %v\n", err)
	if terminationLog != "" {
		// Best effort: the reason is on stderr, in the container's log, already.
		_ = os.WriteFile(terminationLog, []byte(err.Error()), 0o644)
	}
	os.Exit(startFailed)
}

// assemble builds the root: a tmpfs that mirrors "/" entry by entry (bind
// mounts), so that a mountPath whose parent does not exist on the host can be
// created without touching the host. Directories on the way to such a path are
// mirrored the same way ("shadowed") one level at a time.
func (s *Spec) assemble() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := shadow("/", s.Root); err != nil {
		return err
	}
	if s.Tmp != "" {
		if err := s.mountTmp(); err != nil {
			return fmt.Errorf("private /tmp: %w", err)
		}
	}
	for _, m := range s.Mounts {
		if err := s.bind(m); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
		}
	}
	// A fresh /proc shows this PID namespace, so `ps` in a container lists its own processes.
	proc := filepath.Join(s.Root, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	wd := s.WorkingDir
	if wd == "" {
		wd = "/"
	}
	// A missing working dir is made like a mount target, so it too stays inside.
	if _, err := s.makeTarget(wd, true); err != nil {
		return fmt.Errorf("workingDir %s: %w", wd, err)
	}
	// Last, once nothing more is to be made in the root.
	if s.ReadOnlyRoot {
		if err := s.makeRootReadOnly(); err != nil {
			return err
		}
	}
	if err := unix.Chroot(s.Root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return os.Chdir(wd)
}

// shadow mounts a tmpfs at dst and mirrors every entry of the host directory
// src into it: directories and files by bind mount (recursive, so mounts below
// stay visible), symlinks recreated.
func shadow(src, dst string) error {
	if err := unix.Mount("tmpfs", dst, "tmpfs", 0, "mode=755"); err != nil {
		return fmt.Errorf("tmpfs at %s: %w", dst, err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if src == "/" && e.Name() == "proc" {
			if err := os.Mkdir(filepath.Join(dst, "proc"), 0o555); err != nil {
				return err
			}
			continue
		}
		if err := mirror(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func mirror(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return nil // gone since ReadDir: nothing to mirror
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(link, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
			return err
		}
	default:
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return err
		}
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// bind places one volume at its target inside the root.
func (s *Spec) bind(m Mount) error {
	src, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	target, err := s.makeTarget(m.Target, src.IsDir())
	if err != nil {
		return err
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if m.ReadOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only: %w", err)
		}
	}
	return nil
}

// makeTarget returns the path in the root to mount on, creating it when it is
// missing. Creating inside a directory that is a bind of the host's would
// write to the host, so such a directory is shadowed first; symlinks on the way
// are resolved inside the root, as the container will see them.
func (s *Spec) makeTarget(target string, dir bool) (string, error) {
	parts := strings.Split(filepath.Clean("/"+target), "/")[1:]
	cur := "/" // path inside the container, symlinks resolved
	for i, name := range parts {
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(s.Root, next))
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(filepath.Join(s.Root, next))
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(link) {
				link = filepath.Join(cur, link)
			}
			rest := filepath.Join(append([]string{link}, parts[i+1:]...)...)
			if len(strings.Split(rest, "/")) > 256 {
				return "", errors.New("too many levels of symbolic links")
			}
			return s.makeTarget(rest, dir)
		case err == nil:
			cur = next
		case errors.Is(err, fs.ErrNotExist):
			if err := s.shadowOnce(cur); err != nil {
				return "", err
			}
			last := i == len(parts)-1
			p := filepath.Join(s.Root, next)
			if !last || dir {
				if err := os.Mkdir(p, 0o755); err != nil {
					return "", err
				}
			} else if err := os.WriteFile(p, nil, 0o644); err != nil {
				return "", err
			}
			s.ours[next] = true
			cur = next
		default:
			return "", err
		}
	}
	return filepath.Join(s.Root, cur), nil
}

// shadowOnce turns a mirrored host directory inside the root into a tmpfs copy
// of itself, so that new entries stay inside the container. Directories that
// are already ours (the root, shadowed or created here) are left alone.
func (s *Spec) shadowOnce(dir string) error {
	if s.ours == nil {
		s.ours = map[string]bool{"/": true}
	}
	if s.ours[dir] {
		return nil
	}
	// The host directory is still reachable at its own path: we are not chrooted yet.
	if err := shadow(dir, filepath.Join(s.Root, dir)); err != nil {
		return err
	}
	s.ours[dir] = true
	return nil
}

// run starts the command as the only child of this PID 1, reaps every orphan,
// and exits with the command's status.
//
// SIGTERM goes to every process of the container, as a container runtime's
// stop does: a script's background workers get their chance to shut down
// gracefully too, not just SIGKILL at the end of the grace period. Other
// signals go to the command only. Once the command has exited after a SIGTERM,
// the init stays until the container's other processes have exited as well (or
// the node kills the namespace when the grace period ends), rather than
// killing them with the namespace in the middle of their shutdown.
func (s *Spec) run(self string) int {
	if len(s.Argv) == 0 {
		fail(s.TerminationLog, errors.New("no command to run"))
	}
	path, err := lookPath(s.Argv[0], s.Env)
	if err != nil {
		fail(s.TerminationLog, err)
	}
	if path == self {
		// The kernel keeps our own executable reachable whatever the mounts.
		path = "/proc/self/exe"
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	child, err := os.StartProcess(path, s.Argv, &os.ProcAttr{
		Env:   s.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		fail(s.TerminationLog, err)
	}
	var terminating atomic.Bool
	go func() {
		for sig := range sigs {
			switch sig {
			case syscall.SIGCHLD, syscall.SIGURG: // SIGURG: Go's own preemption
			case syscall.SIGTERM:
				// Set before the signal is sent, so that the reaper below knows
				// it by the time the command exits of it.
				terminating.Store(true)
				// kill(-1) from the init of a PID namespace reaches every other
				// process of that namespace (whatever its session or process
				// group) and none outside it. ESRCH only means that no other
				// process is left.
				if err := unix.Kill(-1, unix.SIGTERM); err != nil && err != unix.ESRCH {
					fmt.Fprintf(os.Stderr, "outpost: forward SIGTERM to the container's processes: %v\n", err)
				}
			default:
				// The command may have exited already: nothing to forward to then.
				_ = child.Signal(sig)
			}
		}
	}()
	status := -1
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ECHILD && status >= 0:
			return status // the command and every other process have exited
		case err != nil:
			fmt.Fprintf(os.Stderr, "outpost: wait for the container's processes: %v\n", err)
			return startFailed
		}
		if pid != child.Pid {
			continue // an orphan, reaped
		}
		if ws.Signaled() {
			status = 128 + int(ws.Signal())
		} else {
			status = ws.ExitStatus()
		}
		if !terminating.Load() {
			// The command ended on its own: the container ends with it, as
			// with any runtime, and the kernel kills what is left when this
			// PID 1 exits.
			return status
		}
	}
}

// lookPath resolves the command with the container's PATH, inside the root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}
