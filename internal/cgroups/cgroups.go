// Package cgroups enforces the resource limits of the process node's
// containers, as a container runtime does for the kubelet: each container
// whose spec limits memory or CPU runs in cgroups of its own, with
// memory.limit_in_bytes = resources.limits.memory (the kernel's OOM killer
// ends a process that goes over it), a CFS quota of resources.limits.cpu per
// 100 ms period, and cpu.shares from resources.requests.cpu.
//
// The cgroup v1 memory and cpu hierarchies are used where the machine has
// them. Without them (a cgroup v2 only machine) the controllers are enabled
// on the unified hierarchy, below the pod's cgroup that internal/podnet
// makes there, and every container of a pod gets a child cgroup of its own
// (a v2 cgroup with controllers enabled for its children cannot hold
// processes itself). Where neither works, limits are not enforced and the
// node says so once when it starts.
//
// This is a package of its own rather than part of podnet: podnet gives a
// pod its addresses through BPF programs on one cgroup v2 directory per pod,
// whereas limits are per container, on other hierarchies (v1), and must work
// where podnet's programs cannot load. The two meet only on a v2-only
// machine, where the containers' cgroups are children of the pod's podnet
// cgroup so that its programs still apply to them (NodeDirName is podnet's
// naming).
//
// Every directory lives under <hierarchy>/outpost/<node>-<hash>/<pod UID>/
// <container>, named after the node and its state directory (so two nodes
// on one machine never share one), made before the container's processes
// start and removed, with whatever still runs in it, when the container has
// ended; Open removes what a previous run of the node left behind.
package cgroups

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mounts are the machine's cgroup hierarchies.
type Mounts struct {
	// V1 maps each cgroup v1 controller (memory, cpu, cpuacct, ...) to the
	// mount point of its hierarchy.
	V1 map[string]string
	// V2 is the mount point of the unified (v2) hierarchy, "" when none.
	V2 string
}

// ReadMounts reads the cgroup hierarchies this process sees.
func ReadMounts() (Mounts, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Mounts{}, err
	}
	return parseMountinfo(data), nil
}

// parseMountinfo finds the cgroup mounts of a /proc/self/mountinfo. A mount of
// a hierarchy's root is preferred to one of a cgroup inside it.
func parseMountinfo(data []byte) Mounts {
	m := Mounts{V1: map[string]string{}}
	atRoot := map[string]bool{}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(s.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			continue
		}
		mnt, root := unescapeMountPath(f[4]), f[3] == "/"
		switch g[0] {
		case "cgroup2":
			// Only a mount of the root holds every cgroup we may make.
			if root && m.V2 == "" {
				m.V2 = mnt
			}
		case "cgroup":
			if len(g) < 3 {
				continue
			}
			for _, opt := range strings.Split(g[2], ",") {
				if opt == "rw" || opt == "ro" || strings.Contains(opt, "=") {
					continue
				}
				if _, seen := m.V1[opt]; !seen || (root && !atRoot[opt]) {
					m.V1[opt], atRoot[opt] = mnt, root
				}
			}
		}
	}
	return m
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) {
			if c, err := strconv.ParseUint(p[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// NodeDirName is the name of a node's directory in every hierarchy: the
// node's name and a hash of its state directory, the name podnet gives the
// node's cgroup v2 directory.
func NodeDirName(name, stateDir string) (string, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return name + "-" + hex.EncodeToString(sum[:4]), nil
}

// Manager holds the cgroups of one node's containers. A nil Manager enforces
// nothing.
type Manager struct {
	// The node's directory in the v1 memory and cpu hierarchies, and in the
	// cpuacct one when it is mounted apart from cpu (so that CPU usage can be
	// read per container there too); "" where there is none.
	mem, cpu, acct string
	// v2 is the node's directory on the unified hierarchy when a
	// controller is enforced there (v2mem, v2cpu); "" otherwise.
	v2           string
	v2mem, v2cpu bool
}

// Open prepares the node's cgroup directories in every hierarchy that can
// enforce limits, after removing what a previous run of the node (name,
// stateDir) left there, killing whatever still runs in it. It does not fail:
// what cannot be enforced is logged once, and containers then run without
// it. On a cgroup v2 only machine, open podnet's node first: it mounts the
// unified hierarchy when the machine has none.
func Open(name, stateDir string, log *slog.Logger) *Manager {
	m := &Manager{}
	node, err := NodeDirName(name, stateDir)
	var mounts Mounts
	if err == nil {
		mounts, err = ReadMounts()
	}
	if err != nil {
		log.Warn("resource limits are not enforced: containers run without memory and CPU limits", "err", err)
		return m
	}
	return open(mounts, node, log)
}

// open is Open with the hierarchies given.
func open(mounts Mounts, node string, log *slog.Logger) *Manager {
	m := &Manager{}
	var problems []string
	prepare := func(mnt string) string {
		if mnt == "" {
			return ""
		}
		dir := filepath.Join(mnt, "outpost", node)
		if err := clean(dir); err != nil {
			problems = append(problems, err.Error())
			return ""
		}
		return dir
	}
	m.mem = prepare(mounts.V1["memory"])
	m.cpu = prepare(mounts.V1["cpu"])
	if acct := mounts.V1["cpuacct"]; m.cpu != "" && acct != mounts.V1["cpu"] {
		m.acct = prepare(acct)
	}
	if (m.mem == "" || m.cpu == "") && mounts.V2 != "" {
		dir := filepath.Join(mounts.V2, "outpost", node)
		var err error
		m.v2mem, m.v2cpu, err = enableV2(mounts.V2, dir, m.mem == "", m.cpu == "")
		if err != nil {
			problems = append(problems, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		if m.v2mem || m.v2cpu {
			if err := clean(dir); err != nil {
				problems = append(problems, err.Error())
				m.v2mem, m.v2cpu = false, false
			} else {
				m.v2 = dir
			}
		}
	}
	memory, cpu := m.Enforced()
	where := func(v1 string, v2 bool) string {
		switch {
		case v1 != "":
			return "cgroup v1 " + v1
		case v2:
			return "cgroup v2 " + m.v2
		}
		return "not enforced"
	}
	log.Info("container resource limits", "memory", where(m.mem, m.v2mem), "cpu", where(m.cpu, m.v2cpu))
	if !memory || !cpu {
		var missing []string
		if !memory {
			missing = append(missing, "memory")
		}
		if !cpu {
			missing = append(missing, "CPU")
		}
		log.Warn("container "+strings.Join(missing, " and ")+" limits are not enforced: no cgroup v1 hierarchy for them, and their controllers cannot be enabled on the unified (v2) hierarchy; pods run without them",
			"problems", strings.Join(problems, "; "))
	}
	return m
}

// Enforced says which limits the node enforces.
func (m *Manager) Enforced() (memory, cpu bool) {
	if m == nil {
		return false, false
	}
	return m.mem != "" || m.v2mem, m.cpu != "" || m.v2cpu
}

// enableV2 enables the memory and cpu controllers (as asked) for the
// node's directory on the unified hierarchy mounted at mnt, from the root
// down: a controller is usable in a cgroup only when every ancestor enables
// it for its children.
func enableV2(mnt, nodeDir string, memory, cpu bool) (memOK, cpuOK bool, err error) {
	data, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
	if err != nil {
		return false, false, err
	}
	avail := strings.Fields(string(data))
	var errs []error
	for _, c := range []struct {
		name   string
		wanted *bool
	}{{"memory", &memory}, {"cpu", &cpu}} {
		if *c.wanted && !slices.Contains(avail, c.name) {
			errs = append(errs, fmt.Errorf("cgroup v2 controller %s is not available at %s", c.name, mnt))
			*c.wanted = false
		}
	}
	if !memory && !cpu {
		return false, false, errors.Join(errs...)
	}
	dirs := []string{mnt, filepath.Join(mnt, "outpost"), nodeDir}
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return false, false, errors.Join(append(errs, err)...)
	}
	enable := func(c string) bool {
		for _, d := range dirs {
			if err := enableController(d, c); err != nil {
				errs = append(errs, err)
				return false
			}
		}
		return true
	}
	if memory {
		memOK = enable("memory")
	}
	if cpu {
		cpuOK = enable("cpu")
	}
	return memOK, cpuOK, errors.Join(errs...)
}

// enableController enables controller c for the children of the v2 cgroup
// dir, unless it already is.
func enableController(dir, c string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if slices.Contains(strings.Fields(string(data)), c) {
		return nil
	}
	if err := os.WriteFile(file, []byte("+"+c), 0); err != nil {
		return fmt.Errorf("enable %s in %s: %w", c, file, err)
	}
	return nil
}

// Close removes the node's directories, killing whatever still runs in them.
func (m *Manager) Close() error {
	if m == nil {
		return nil
	}
	var errs []error
	for _, d := range m.nodeDirs() {
		errs = append(errs, remove(d))
	}
	return errors.Join(errs...)
}

func (m *Manager) nodeDirs() []string {
	var out []string
	for _, d := range []string{m.mem, m.cpu, m.acct, m.v2} {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// RemovePod removes the pod's directories (those of its containers with
// them), killing whatever still runs in them; a pod without any is no error.
func (m *Manager) RemovePod(podUID string) error {
	if m == nil || podUID == "" {
		return nil
	}
	var errs []error
	for _, d := range m.nodeDirs() {
		errs = append(errs, remove(filepath.Join(d, podUID)))
	}
	return errors.Join(errs...)
}

// Cgroup is the cgroups of one run of a container. A nil Cgroup (a container
// without limits) has none.
type Cgroup struct {
	dirs []string
	// procs are the cgroup.procs files of the v1 cgroups: the container's
	// init writes itself there before it runs anything.
	procs []string
	// mem is the cgroup of the memory limit, on v2 when memV2.
	mem   string
	memV2 bool
	// fd is the v2 cgroup, open: the container's init is cloned into it.
	fd *os.File
}

// Add makes the cgroups of one run of a container (name, unique in the pod)
// of pod podUID with the limits l; podShares is the pod's cpu.shares
// (PodCPUShares). The container's processes must join them before they run
// (Procs, FD). It returns nil, and no error, when there is nothing to
// enforce: a container without limits, on a machine where the node uses
// cgroup v1 (or enforces nothing).
func (m *Manager) Add(podUID, name string, l Limits, podShares int64) (_ *Cgroup, err error) {
	if m == nil {
		return nil, nil
	}
	for _, n := range []string{podUID, name} {
		if n == "" || n == "." || n == ".." || strings.Contains(n, "/") {
			return nil, fmt.Errorf("container cgroup: bad name %q", n)
		}
	}
	c := &Cgroup{}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("container cgroup: %w", err), c.Close())
		}
	}()
	// v1 makes the container's directory in one v1 hierarchy.
	v1 := func(node string, pod, ctr []setting) (string, error) {
		podDir := filepath.Join(node, podUID)
		if err := os.MkdirAll(podDir, 0o755); err != nil {
			return "", err
		}
		if err := apply(podDir, pod); err != nil {
			return "", err
		}
		dir, err := c.mkdir(podDir, name)
		if err != nil {
			return "", err
		}
		c.procs = append(c.procs, filepath.Join(dir, "cgroup.procs"))
		return dir, apply(dir, ctr)
	}
	if m.mem != "" && l.Memory > 0 {
		if c.mem, err = v1(m.mem, nil, l.v1Memory()); err != nil {
			return nil, err
		}
	}
	if m.cpu != "" && (l.CPUQuota > 0 || l.CPUShares > 0) {
		pod := []setting{{file: "cpu.shares", value: strconv.FormatInt(podShares, 10)}}
		if _, err := v1(m.cpu, pod, l.v1CPU()); err != nil {
			return nil, err
		}
		if m.acct != "" {
			if _, err := v1(m.acct, nil, nil); err != nil {
				return nil, err
			}
		}
	}
	if m.v2 != "" {
		// Every container, limits or not: the pod's cgroup enables the
		// controllers for its children and so can hold no process itself.
		podDir := filepath.Join(m.v2, podUID)
		if err := os.MkdirAll(podDir, 0o755); err != nil {
			return nil, err
		}
		var pod []setting
		if m.v2mem {
			if err := enableController(podDir, "memory"); err != nil {
				return nil, err
			}
		}
		if m.v2cpu {
			if err := enableController(podDir, "cpu"); err != nil {
				return nil, err
			}
			pod = append(pod, setting{file: "cpu.weight", value: strconv.FormatInt(SharesToWeight(podShares), 10)})
		}
		if err := apply(podDir, pod); err != nil {
			return nil, err
		}
		dir, err := c.mkdir(podDir, name)
		if err != nil {
			return nil, err
		}
		if err := apply(dir, l.v2(m.v2mem, m.v2cpu)); err != nil {
			return nil, err
		}
		if m.v2mem && l.Memory > 0 {
			c.mem, c.memV2 = dir, true
		}
		if c.fd, err = os.Open(dir); err != nil {
			return nil, err
		}
	}
	if len(c.dirs) == 0 {
		return nil, nil
	}
	return c, nil
}

// mkdir makes the cgroup name in parent afresh (one of that name left by an
// earlier run is removed first) and records it for Close.
func (c *Cgroup) mkdir(parent, name string) (string, error) {
	dir := filepath.Join(parent, name)
	if err := remove(dir); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	c.dirs = append(c.dirs, dir)
	return dir, nil
}

// apply writes the settings into the cgroup dir.
func apply(dir string, settings []setting) error {
	for _, s := range settings {
		err := os.WriteFile(filepath.Join(dir, s.file), []byte(s.value), 0)
		if err != nil && !s.optional {
			return fmt.Errorf("%s = %s: %w", s.file, s.value, err)
		}
	}
	return nil
}

// Procs are the cgroup.procs files that the container's init joins (writes
// itself to) before it runs anything: the v1 ones, since a process cannot be
// started in a v1 cgroup.
func (c *Cgroup) Procs() []string {
	if c == nil {
		return nil
	}
	return c.procs
}

// FD is the container's v2 cgroup, open, to start its init in
// (SysProcAttr.UseCgroupFD); nil when the node uses no v2 cgroup of its own
// for the container.
func (c *Cgroup) FD() *os.File {
	if c == nil {
		return nil
	}
	return c.fd
}

// Dirs are the cgroup directories of the container, in every hierarchy.
func (c *Cgroup) Dirs() []string {
	if c == nil {
		return nil
	}
	return c.dirs
}

// OOMKilled says whether the container, which ended with exitCode, was ended
// by the kernel's OOM killer: the run's memory cgroup counts an OOM kill
// (oom_kill of memory.oom_control on v1, of memory.events on v2) and the
// container failed. On kernels that do not count kills (before 4.13), the
// limit having been hit (memory.failcnt) and a death by SIGKILL (137) say
// the same.
func (c *Cgroup) OOMKilled(exitCode int) bool {
	if c == nil || c.mem == "" || exitCode == 0 {
		return false
	}
	file := "memory.oom_control"
	if c.memV2 {
		file = "memory.events"
	}
	if n, ok := counter(filepath.Join(c.mem, file), "oom_kill"); ok {
		return n > 0
	}
	if c.memV2 || exitCode != 128+int(unix.SIGKILL) {
		return false
	}
	data, err := os.ReadFile(filepath.Join(c.mem, "memory.failcnt"))
	if err != nil {
		return false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return err == nil && n > 0
}

// counter reads the value of key in a flat-keyed cgroup file ("key value"
// lines).
func counter(file, key string) (int64, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	return parseCounter(data, key)
}

func parseCounter(data []byte, key string) (int64, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Close kills whatever still runs in the container's cgroups and removes them.
// Closing a nil Cgroup does nothing.
func (c *Cgroup) Close() error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.fd != nil {
		errs = append(errs, c.fd.Close())
		c.fd = nil
	}
	for _, d := range slices.Backward(c.dirs) {
		errs = append(errs, remove(d))
	}
	return errors.Join(errs...)
}

// clean makes dir (a node's directory) and removes the cgroups in it.
func clean(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("stale cgroup: %w", err)
			}
		}
	}
	return nil
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
	// A cgroup whose last process has just exited may still be busy for a
	// moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill ends every process of the cgroup dir (v1 or v2) and waits until it
// has none: a cgroup with processes cannot be removed.
func kill(dir string) error {
	// Dying processes leave the cgroup within milliseconds; the deadline
	// only turns a stuck one (in uninterruptible sleep) into an error.
	deadline := time.Now().Add(10 * time.Second)
	for first := true; ; first = false {
		pids, err := procs(dir)
		if err != nil || len(pids) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v remain after SIGKILL", dir, pids)
		}
		// cgroup.kill (v2, Linux 5.14) kills forking processes too; else
		// each process is signalled, again on every pass, which catches
		// what was forked meanwhile.
		if !first || os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) != nil {
			for _, pid := range pids {
				if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
					return err
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func procs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s/cgroup.procs: %w", dir, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
