// Package podnet gives each pod of the process node its own addresses on the
// host's loopback without a network namespace: every process of a pod runs
// in the pod's cgroup (cgroup v2), and cgroup sock_addr BPF programs attached
// to it rewrite socket addresses in the kernel. A server that binds every
// address (0.0.0.0:P, or [::]:P as Go's ":P" does) binds the pod's IP
// instead, so two pods serving the same port never collide, and a connection
// from the pod to 127.0.0.1:P reaches the pod's own server when it has one
// there, the host's otherwise. Everything else (pod to pod, pod to the
// apiserver on 127.0.0.1) is plain loopback traffic as before.
package podnet

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// fallbackMount is where a cgroup2 hierarchy is mounted when the machine has
// none: a place of its own, so nothing of the host's layout changes.
const fallbackMount = "/run/outpost/cgroup2"

// Node holds the pod cgroups of one node agent.
type Node struct {
	dir string
}

// Open prepares the node's cgroup directory, named after name and stateDir
// (so two nodes on one machine never share it): it mounts a cgroup2 hierarchy
// unless the machine has one, removes the pod cgroups a previous run of the
// node left (killing whatever still runs in them) and checks that the kernel
// takes the programs. An error means the node cannot give pods their own
// addresses this way.
func Open(name, stateDir string) (*Node, error) {
	// Kernels before 5.11 charge BPF programs to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, err
	}
	mnt, err := cgroup2()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(abs))
	n := &Node{dir: filepath.Join(mnt, "outpost", name+"-"+hex.EncodeToString(sum[:4]))}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(n.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := remove(filepath.Join(n.dir, e.Name())); err != nil {
				return nil, fmt.Errorf("stale pod cgroup: %w", err)
			}
		}
	}
	// A trial pod: every program loads and attaches, or the node knows now.
	p, err := n.Add("probe", netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	return n, p.Close()
}

// Dir is the node's cgroup directory; each pod's cgroup is a child of it.
func (n *Node) Dir() string { return n.dir }

// Close removes the node's cgroup directory once its pods are closed (a pod
// cgroup still there is killed and removed with it). Closing a nil Node does
// nothing.
func (n *Node) Close() error {
	if n == nil {
		return nil
	}
	return remove(n.dir)
}

// cgroup2 returns the machine's cgroup2 mount point, mounting one when there
// is none.
func cgroup2() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(s.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		// Only a mount of the hierarchy's root holds every cgroup we may make.
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" && f[3] == "/" {
			return unescapeMountPath(f[4]), nil
		}
	}
	if err := os.MkdirAll(fallbackMount, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("none", fallbackMount, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("mount cgroup2 at %s: %w", fallbackMount, err)
	}
	return fallbackMount, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) {
			var c byte
			if _, err := fmt.Sscanf(p[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// Pod is one pod's cgroup with its programs attached.
type Pod struct {
	dir   string
	fd    *os.File
	links []link.Link
	progs []*ebpf.Program
}

// Add makes the cgroup of the pod id (a name unique on the node, such as the
// pod's UID) whose address is ip, and attaches the programs to it. A cgroup
// of that name left from before is removed first.
func (n *Node) Add(id string, ip netip.Addr) (_ *Pod, err error) {
	specs, err := programs(ip)
	if err != nil {
		return nil, err
	}
	p := &Pod{dir: filepath.Join(n.dir, id)}
	if err := remove(p.dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	for _, s := range specs {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "outpost_" + strings.TrimPrefix(s.attach.String(), "CGroup"), Type: ebpf.CGroupSockAddr,
			// The kernel lets only GPL-compatible programs read its socket
			// structures (bind6 reads the IPV6_V6ONLY flag).
			AttachType: s.attach, Instructions: s.insns, License: "Dual MIT/GPL",
		})
		if err != nil {
			return nil, fmt.Errorf("load %s program: %w", s.attach, err)
		}
		p.progs = append(p.progs, prog)
		l, err := link.AttachCgroup(link.CgroupOptions{Path: p.dir, Attach: s.attach, Program: prog})
		if err != nil {
			return nil, fmt.Errorf("attach %s program: %w", s.attach, err)
		}
		p.links = append(p.links, l)
	}
	if p.fd, err = os.Open(p.dir); err != nil {
		return nil, err
	}
	return p, nil
}

// Cgroup is the pod's cgroup directory, open: a process cloned into it
// (SysProcAttr.UseCgroupFD) is in the pod from its first instruction. A nil
// Pod (a pod without programs) has none.
func (p *Pod) Cgroup() *os.File {
	if p == nil {
		return nil
	}
	return p.fd
}

// Close kills whatever still runs in the pod's cgroup, detaches the programs
// and removes the cgroup. Closing a nil Pod does nothing.
func (p *Pod) Close() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.fd != nil {
		errs = append(errs, p.fd.Close())
	}
	errs = append(errs, remove(p.dir))
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	for _, prog := range p.progs {
		errs = append(errs, prog.Close())
	}
	return errors.Join(errs...)
}

// remove kills every process in the cgroup dir and removes it (and its
// children, deepest first); a missing dir is no error.
func remove(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := kill(dir); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// kill ends every process of the cgroup and waits until it is empty: a
// cgroup with processes cannot be removed.
func kill(dir string) error {
	empty := func() (bool, error) {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return false, err
		}
		return bytes.Contains(data, []byte("populated 0")), nil
	}
	if ok, err := empty(); ok || err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		// cgroup.kill came with Linux 5.14; before it, signal each process.
		if err := killEach(dir); err != nil {
			return err
		}
	}
	// Dying processes leave the cgroup within milliseconds; the deadline
	// only turns a stuck one (in uninterruptible sleep) into an error.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := empty()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes remain after SIGKILL", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killEach(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(data)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err != nil {
			return fmt.Errorf("cgroup.procs: %w", err)
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			return err
		}
	}
	return nil
}
