package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/cgroups"
	"outpost.dev/outpost/internal/container"
	"outpost.dev/outpost/internal/node/podstatus"
	"outpost.dev/outpost/internal/podnet"
	"outpost.dev/outpost/internal/volume"
)

// Restart back-off: doubling from backoffStart up to backoffMax, reset once a
// container has run for backoffReset. Shorter than the kubelet's (10 s to
// 5 min) because a local node restarts a process in milliseconds.
const (
	backoffStart = time.Second
	backoffMax   = 30 * time.Second
	backoffReset = time.Minute
)

// podWorker runs one pod from its first sight to its final deletion.
type podWorker struct {
	a         *Agent
	ref       podstatus.Ref
	namespace string
	name      string
	dir       string

	mu          sync.Mutex
	pod         *corev1.Pod
	ip          string
	net         *podnet.Pod // the pod's cgroup and address programs; nil without them
	started     metav1.Time
	volumes     map[string]string
	ready2start bool // sandbox (IP, volumes) prepared
	initDone    bool
	final       corev1.PodPhase // Succeeded or Failed once nothing will run again
	// terminating is set once the pod is to stop (deleted, gone, or the node
	// shutting down): from then on no container starts or restarts.
	terminating bool
	initStates  []*ctrState
	states      []*ctrState
	// reason and message of the pod's status (DeadlineExceeded).
	reason, message string

	stop chan time.Duration
	// ended is closed once no container of the pod runs or will run
	// again (or the pod stops before that).
	ended chan struct{}
	// specChanged is poked when the pod's spec may have changed (its
	// activeDeadlineSeconds may be shortened while it runs).
	specChanged chan struct{}
	cancel      context.CancelFunc

	vanished bool // the pod object is gone from the API; guarded by Agent.mu
}

// ctrState is what the node knows of one container.
type ctrState struct {
	spec     corev1.Container
	restarts int32
	state    corev1.ContainerState
	last     corev1.ContainerState
	ready    bool
	started  bool
	proc     *container.Process
	done     bool // its loop ended: it will not run again
	logDir   string
}

func newPodWorker(a *Agent, pod *corev1.Pod) *podWorker {
	w := &podWorker{a: a, ref: podstatus.RefOf(pod), namespace: pod.Namespace, name: pod.Name, pod: pod,
		dir: filepath.Join(a.cfg.Dir, "pods", string(pod.UID)), stop: make(chan time.Duration, 1), ended: make(chan struct{}), specChanged: make(chan struct{}, 1)}
	// As the kubelet: behind init containers, every container waits as
	// PodInitializing until it starts.
	waiting := "ContainerCreating"
	if len(pod.Spec.InitContainers) > 0 {
		waiting = "PodInitializing"
	}
	mk := func(cs []corev1.Container) []*ctrState {
		var out []*ctrState
		for _, c := range cs {
			out = append(out, &ctrState{spec: c, logDir: filepath.Join(w.dir, "logs", c.Name),
				state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}})
		}
		return out
	}
	w.initStates, w.states = mk(pod.Spec.InitContainers), mk(pod.Spec.Containers)
	if pod.Status.StartTime != nil {
		w.started = *pod.Status.StartTime
	} else {
		w.started = metav1.Now()
	}
	return w
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	select {
	case w.specChanged <- struct{}{}:
	default:
	}
	if pod.DeletionTimestamp != nil {
		grace := 30 * time.Second
		if pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		}
		w.requestStop(grace)
	}
}

// shutdown is the node going down: stop quickly, keep the pod in the API.
func (w *podWorker) shutdown() { w.requestStop(-1) }

// gone is the pod object vanishing: stop at once.
func (w *podWorker) gone() { w.requestStop(0) }

func (w *podWorker) requestStop(grace time.Duration) {
	select {
	case w.stop <- grace:
	default:
	}
}

// changed publishes the pod's status after a change of what the worker knows.
func (w *podWorker) changed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.publishLocked()
}

func (w *podWorker) key() string { return w.ref.String() }

// run drives the pod: sandbox, init containers, containers; then waits for
// deletion, stops everything and removes the pod object.
func (w *podWorker) run(parent context.Context) {
	pod := w.snapshot()
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		// Finished before this agent started: nothing runs again; wait for deletion.
		w.final = pod.Status.Phase
		grace := <-w.stop
		if grace >= 0 {
			w.a.statuses.Delete(w.ref)
		}
		return
	}
	ctx, cancel := context.WithCancel(parent)
	w.cancel = cancel
	w.warnIgnoredSecurity()

	grace := time.Duration(-1)
	stopped := w.ended
	var ctrs sync.WaitGroup
	if pod.DeletionTimestamp != nil {
		// Deleted while the node agent was away: nothing of it starts again,
		// it only gets its final status.
		w.mu.Lock()
		w.terminating = true
		w.mu.Unlock()
		close(stopped)
	} else {
		go func() {
			defer close(stopped)
			go w.enforceDeadline(ctx, stopped)
			if !w.setup(ctx) || !w.runInit(ctx) {
				return
			}
			for _, s := range w.states {
				ctrs.Add(1)
				go func() { defer ctrs.Done(); w.runContainer(ctx, s, &grace) }()
			}
			ctrs.Wait()
		}()
	}

	select {
	case grace = <-w.stop:
	case <-stopped:
		if !w.isTerminating() {
			w.finish()
		}
		grace = <-w.stop
	}
	w.mu.Lock()
	w.terminating = true
	w.mu.Unlock()
	if grace < 0 {
		grace = 5 * time.Second
	}
	w.stopAll(grace)
	cancel()
	<-stopped
	if err := w.net.Close(); err != nil {
		w.a.log.Warn("remove pod cgroup", "pod", w.key(), "err", err)
	}
	// Each container's cgroups go when its run ends; this removes the pod's
	// directories that held them.
	if err := w.a.cgroups.RemovePod(string(pod.UID)); err != nil {
		w.a.log.Warn("remove the pod's resource cgroups", "pod", w.key(), "err", err)
	}
	w.a.ips.release(w.ip)
	if parent.Err() != nil {
		return // node shutdown: the pod stays, and runs again with the node
	}
	w.terminate()
	w.teardownVolumes()
	if err := os.RemoveAll(w.dir); err != nil {
		w.a.log.Warn("remove pod directory", "pod", w.key(), "err", err)
	}
	// After the containers' final states are written, not before.
	w.a.statuses.Delete(w.ref)
}

func (w *podWorker) snapshot() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// setup gives the pod its IP and volumes, retrying until they can be made.
func (w *podWorker) setup(ctx context.Context) bool {
	pod := w.snapshot()
	ip, err := w.a.ips.allocate(pod.UID, pod.Status.PodIP)
	if err != nil {
		w.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		return false
	}
	w.mu.Lock()
	w.ip = ip
	w.mu.Unlock()
	// A hostNetwork pod shares the host's addresses, as on any cluster.
	if w.a.podnet != nil && !pod.Spec.HostNetwork {
		pn, err := w.a.podnet.Add(string(pod.UID), netip.MustParseAddr(ip))
		if err != nil {
			w.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", "pod network: "+err.Error())
			return false
		}
		w.mu.Lock()
		w.net = pn
		w.mu.Unlock()
	}
	backoff := backoffStart
	for {
		vols, err := volume.Prepare(ctx, w.volumeOptions(), pod, w.dir)
		if err == nil {
			w.mu.Lock()
			w.volumes, w.ready2start = vols, true
			w.mu.Unlock()
			w.changed()
			go w.refreshVolumes(ctx)
			return true
		}
		w.event(corev1.EventTypeWarning, "FailedMount", err.Error())
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// runInit runs init containers one after another; each must succeed.
func (w *podWorker) runInit(ctx context.Context) bool {
	policy := w.pod.Spec.RestartPolicy
	for _, s := range w.initStates {
		backoff := backoffStart
		for {
			code, ok := w.runOnce(ctx, s, nil)
			if !ok || w.isTerminating() {
				return false
			}
			if code == 0 {
				break
			}
			if policy == corev1.RestartPolicyNever {
				w.setFinal(corev1.PodFailed)
				return false
			}
			if !w.backoff(ctx, s, &backoff) {
				return false
			}
		}
		w.mu.Lock()
		s.done = true
		w.mu.Unlock()
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	w.changed()
	return true
}

// runContainer runs a regular container and restarts it per restartPolicy.
func (w *podWorker) runContainer(ctx context.Context, s *ctrState, grace *time.Duration) {
	backoff := backoffStart
	for {
		t0 := time.Now()
		code, ok := w.runOnce(ctx, s, grace)
		// A container stopped because its pod is deleted ends for good,
		// whatever the restart policy says.
		if !ok || w.isTerminating() {
			break
		}
		policy := w.pod.Spec.RestartPolicy
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && code == 0) {
			break
		}
		if time.Since(t0) > backoffReset {
			backoff = backoffStart
		}
		if !w.backoff(ctx, s, &backoff) {
			break
		}
	}
	w.mu.Lock()
	s.done = true
	w.mu.Unlock()
	w.changed()
}

func (w *podWorker) backoff(ctx context.Context, s *ctrState, backoff *time.Duration) bool {
	w.mu.Lock()
	s.last = s.state
	s.restarts++
	s.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
		Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", *backoff, s.spec.Name, w.name)}}
	w.mu.Unlock()
	w.changed()
	w.event(corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container "+s.spec.Name)
	ok := sleep(ctx, *backoff)
	*backoff = min(*backoff*2, backoffMax)
	return ok
}

// runOnce starts the container and waits for it to end. ok is false when the
// pod is stopping (or the container could not be configured before that).
func (w *podWorker) runOnce(ctx context.Context, s *ctrState, grace *time.Duration) (exitCode int, ok bool) {
	backoff := backoffStart
	var proc *container.Process
	// The run's cgroups, which enforce the container's limits: made afresh
	// for every run, before its first process, and removed once it has ended.
	var cg *cgroups.Cgroup
	for proc == nil {
		if w.isTerminating() {
			return 0, false
		}
		spec, err := w.containerSpec(ctx, s)
		if err == nil {
			cg, err = w.cgroups(s, &spec)
		}
		if err == nil {
			proc, err = container.Start(w.a.cfg.Outpost, spec, s.logFile())
			if err != nil {
				if cerr := cg.Close(); cerr != nil {
					w.a.log.Warn("remove the cgroups of a container that did not start", "pod", w.key(), "container", s.spec.Name, "err", cerr)
				}
			}
		}
		if err != nil {
			w.mu.Lock()
			s.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}}
			w.mu.Unlock()
			w.changed()
			w.event(corev1.EventTypeWarning, "Failed", fmt.Sprintf("Error: container %s: %v", s.spec.Name, err))
			if !sleep(ctx, backoff) {
				return 0, false
			}
			backoff = min(backoff*2, backoffMax)
		}
	}
	w.postStart(ctx, s, proc) // the container is not running before its postStart hook returns
	w.mu.Lock()
	s.proc = proc
	s.started = s.spec.StartupProbe == nil
	s.ready = false
	s.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(proc.Started)}}
	w.mu.Unlock()
	w.changed()
	w.event(corev1.EventTypeNormal, "Started", "Started container "+s.spec.Name)

	probeCtx, stopProbes := context.WithCancel(ctx)
	w.startProbes(probeCtx, s, proc)
	select {
	case <-proc.Done():
	case <-ctx.Done():
		g := 5 * time.Second
		if grace != nil && *grace >= 0 {
			g = *grace
		}
		proc.Stop(g)
	}
	stopProbes()
	oom := cg.OOMKilled(proc.ExitCode)
	if err := cg.Close(); err != nil {
		w.a.log.Warn("remove the container's cgroups", "pod", w.key(), "container", s.spec.Name, "err", err)
	}

	term := &corev1.ContainerStateTerminated{ExitCode: int32(proc.ExitCode), StartedAt: metav1.NewTime(proc.Started),
		FinishedAt: metav1.NewTime(proc.Finished), Reason: "Completed", ContainerID: s.containerID()}
	if proc.ExitCode != 0 {
		term.Reason = "Error"
	}
	term.Message = s.terminationMessage(w.dir, proc.ExitCode)
	switch {
	case oom:
		// As the kubelet reports a container its runtime saw killed by the
		// OOM killer (over its memory limit).
		term.Reason = "OOMKilled"
	case proc.ExitCode == 128 && term.Message != "":
		term.Reason = "StartError"
	}
	w.mu.Lock()
	s.proc, s.ready = nil, false
	s.state = corev1.ContainerState{Terminated: term}
	w.mu.Unlock()
	w.changed()
	return proc.ExitCode, ctx.Err() == nil
}

func (s *ctrState) logFile() string {
	// A directory that cannot be made fails the log file's open, which
	// reports it with the path.
	_ = os.MkdirAll(s.logDir, 0o755)
	return filepath.Join(s.logDir, fmt.Sprintf("%d.log", s.restarts))
}

func (s *ctrState) containerID() string {
	return fmt.Sprintf("outpost://%s/%d", s.spec.Name, s.restarts)
}

func (s *ctrState) terminationLog(podDir string) string {
	return filepath.Join(podDir, "containers", s.spec.Name, "termination-log")
}

// terminationMessage reads what the container wrote to its
// terminationMessagePath, or the end of its log when the policy says so.
func (s *ctrState) terminationMessage(podDir string, exitCode int) string {
	data, _ := os.ReadFile(s.terminationLog(podDir))
	msg := strings.TrimSpace(string(data))
	if msg == "" && exitCode != 0 && s.spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		tail, _ := tailLines(filepath.Join(s.logDir, fmt.Sprintf("%d.log", s.restarts)), 80)
		msg = strings.TrimSpace(string(tail))
	}
	if len(msg) > 4096 {
		msg = msg[len(msg)-4096:]
	}
	return msg
}

// containerSpec resolves env, command and mounts of the container.
func (w *podWorker) containerSpec(ctx context.Context, s *ctrState) (container.Spec, error) {
	pod := w.snapshot()
	w.mu.Lock()
	ip, vols, pn := w.ip, w.volumes, w.net
	w.mu.Unlock()
	// The downward API reads the pod's IP from its status, which may not be
	// written yet when the first container starts.
	pod = pod.DeepCopy()
	pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	pod.Status.HostIP, pod.Status.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}

	env, err := container.Env(ctx, apiSources{w.a.client}, pod, &s.spec, w.baseEnv(pod, ip), w.a.capacity)
	if err != nil {
		return container.Spec{}, err
	}
	bins := container.Binaries{Outpost: w.a.cfg.Outpost, KubeBinDir: w.a.cfg.KubeBinDir, AppletDir: filepath.Join(w.a.cfg.Dir, "busybox-applets")}
	if extra := container.ImagePath(s.spec.Image); extra != "" {
		for i, kv := range env {
			if strings.HasPrefix(kv, "PATH=") {
				env[i] = kv + ":" + extra
			}
		}
	}
	argv, err := container.Argv(&s.spec, env, bins)
	if err != nil {
		return container.Spec{}, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	ctrDir := filepath.Join(w.dir, "containers", s.spec.Name)
	termLog := s.terminationLog(w.dir)
	if err := os.MkdirAll(ctrDir, 0o755); err != nil {
		return container.Spec{}, err
	}
	if err := os.WriteFile(termLog, nil, 0o644); err != nil {
		return container.Spec{}, err
	}
	hosts, err := w.hostsFile(pod, ip)
	if err != nil {
		return container.Spec{}, fmt.Errorf("/etc/hosts: %w", err)
	}
	resolv, err := w.resolvConf(pod)
	if err != nil {
		return container.Spec{}, fmt.Errorf("/etc/resolv.conf: %w", err)
	}
	tmpDir, err := w.privateTmp(ctrDir, s)
	if err != nil {
		return container.Spec{}, fmt.Errorf("/tmp: %w", err)
	}
	// First, so that a volume the container mounts at /etc/hosts or
	// /etc/resolv.conf wins.
	mounts := []container.Mount{{Source: hosts, Target: "/etc/hosts"}, {Source: resolv, Target: "/etc/resolv.conf"}}
	files, err := container.ImageFiles(s.spec.Image, bins)
	if err != nil {
		return container.Spec{}, err
	}
	for target, src := range files {
		mounts = append(mounts, container.Mount{Source: src, Target: target, ReadOnly: true})
	}
	for _, m := range s.spec.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			return container.Spec{}, fmt.Errorf("volumeMount %q: no volume of that name in the pod", m.Name)
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = container.Expand(m.SubPathExpr, vars)
		}
		if sub != "" {
			if filepath.IsAbs(sub) || strings.HasPrefix(filepath.Clean(sub), "..") {
				return container.Spec{}, fmt.Errorf("volumeMount %q: subPath %q must be a relative path inside the volume", m.Name, sub)
			}
			src = filepath.Join(src, sub)
			if _, err := os.Stat(src); os.IsNotExist(err) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return container.Spec{}, err
				}
			}
		}
		mounts = append(mounts, container.Mount{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	tmp := s.spec.TerminationMessagePath
	if tmp == "" {
		tmp = corev1.TerminationMessagePathDefault
	}
	mounts = append(mounts, container.Mount{Source: termLog, Target: tmp})
	return container.Spec{Root: filepath.Join(ctrDir, "root"), Mounts: mounts, Argv: argv, Env: env,
		WorkingDir: s.spec.WorkingDir, TerminationLog: termLog, Cgroup: pn.Cgroup(), Tmp: tmpDir, Hostname: utsHostname(pod),
		ReadOnlyRoot: s.spec.SecurityContext != nil && ptr.Deref(s.spec.SecurityContext.ReadOnlyRootFilesystem, false)}, nil
}

// cgroups makes the cgroups of a run of the container, which enforce its
// resources.limits (and requests.cpu as CPU shares), and has spec join them.
// nil when it has none.
func (w *podWorker) cgroups(s *ctrState, spec *container.Spec) (*cgroups.Cgroup, error) {
	pod := w.snapshot()
	cg, err := w.a.cgroups.Add(string(pod.UID), s.spec.Name, cgroups.ForContainer(&s.spec), cgroups.PodCPUShares(pod))
	if err != nil {
		return nil, err
	}
	spec.CgroupProcs = cg.Procs()
	if fd := cg.FD(); fd != nil {
		// On cgroup v2, the container's own cgroup, a child of the pod's.
		spec.Cgroup = fd
	}
	return cg, nil
}

// baseEnv is what every container gets before its own env: what an image
// would set, the pod's identity, and service links.
func (w *podWorker) baseEnv(pod *corev1.Pod, ip string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"HOSTNAME=" + pod.Name,
		"POD_IP=" + ip,
		"KUBERNETES_SERVICE_HOST=" + w.a.apiHost,
		"KUBERNETES_SERVICE_PORT=" + w.a.apiPort,
		"KUBERNETES_SERVICE_PORT_HTTPS=" + w.a.apiPort,
		"KUBERNETES_PORT=tcp://" + w.a.cfg.APIServer,
	}
	if pod.Spec.EnableServiceLinks != nil && !*pod.Spec.EnableServiceLinks {
		return env
	}
	svcs, err := w.a.services.Services(pod.Namespace).List(everything)
	if err != nil {
		return env
	}
	for _, svc := range svcs {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
		p := svc.Spec.Ports[0]
		env = append(env, fmt.Sprintf("%s_SERVICE_HOST=%s", prefix, ip), fmt.Sprintf("%s_SERVICE_PORT=%d", prefix, p.Port),
			fmt.Sprintf("%s_PORT=%s://%s:%d", prefix, strings.ToLower(string(p.Protocol)), ip, p.Port))
		for _, p := range svc.Spec.Ports {
			if p.Name != "" {
				env = append(env, fmt.Sprintf("%s_SERVICE_PORT_%s=%d", prefix, strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), p.Port))
			}
			// The Docker-link variables the kubelet sets too, which older
			// programs read (FOO_PORT_80_TCP_ADDR and the like).
			proto := string(p.Protocol)
			link := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			env = append(env, fmt.Sprintf("%s=%s://%s:%d", link, strings.ToLower(proto), ip, p.Port),
				fmt.Sprintf("%s_PROTO=%s", link, strings.ToLower(proto)), fmt.Sprintf("%s_PORT=%d", link, p.Port),
				fmt.Sprintf("%s_ADDR=%s", link, ip))
		}
	}
	return env
}

// stopAll stops every running container with the grace period.
func (w *podWorker) stopAll(grace time.Duration) {
	w.mu.Lock()
	var procs []*container.Process
	for _, s := range append(append([]*ctrState{}, w.initStates...), w.states...) {
		if s.proc != nil {
			procs = append(procs, s.proc)
		}
	}
	w.mu.Unlock()
	if len(procs) > 0 {
		w.event(corev1.EventTypeNormal, "Killing", fmt.Sprintf("Stopping %d containers (grace %s)", len(procs), grace))
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(w.preStop(p, grace)) }()
	}
	wg.Wait()
	w.cancel()
}

// finish records the final phase once no container will run again.
func (w *podWorker) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.publishLocked()
	if w.final != "" || !w.initDone {
		if w.final == "" {
			w.final = corev1.PodFailed
		}
		return
	}
	w.final = corev1.PodSucceeded
	for _, s := range w.states {
		if t := s.state.Terminated; t == nil || t.ExitCode != 0 {
			w.final = corev1.PodFailed
		}
	}
}

// enforceDeadline ends the pod once it has been active longer than its
// activeDeadlineSeconds (which may be shortened while it runs), as the
// kubelet does: its containers stop and it fails with DeadlineExceeded.
func (w *podWorker) enforceDeadline(ctx context.Context, stopped <-chan struct{}) {
	for {
		pod := w.snapshot()
		var fire <-chan time.Time
		var timer *time.Timer
		if d := pod.Spec.ActiveDeadlineSeconds; d != nil {
			timer = time.NewTimer(time.Until(w.started.Add(time.Duration(*d) * time.Second)))
			fire = timer.C
		}
		var changed bool
		select {
		case <-ctx.Done():
		case <-stopped:
		case <-w.specChanged:
			changed = true
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if changed {
			continue
		}
		if ctx.Err() != nil || fire == nil {
			return
		}
		select {
		case <-stopped:
			return // ended by itself first
		default:
		}
		w.mu.Lock()
		if w.terminating || w.final != "" {
			w.mu.Unlock()
			return
		}
		w.terminating = true
		w.final = corev1.PodFailed
		w.reason, w.message = "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
		w.publishLocked()
		w.mu.Unlock()
		w.event(corev1.EventTypeNormal, "DeadlineExceeded", w.message)
		grace := 30 * time.Second
		if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		w.stopAll(grace)
		return
	}
}

func (w *podWorker) isTerminating() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.terminating
}

// terminate gives a pod that is deleted its final status once none of its
// containers runs, as the kubelet's status manager does (TerminatePod): the
// Job controller and anyone holding a finalizer wait for a final phase.
// Every container that ran ends with a terminated state; one without (its
// run was never seen, e.g. the node restarted meanwhile) counts as failed with
// exit code 137 and reason ContainerStatusUnknown, since nothing says it
// succeeded. Containers that never started stay waiting. The phase is
// Succeeded only when every container exited 0, whatever the restart policy.
func (w *podWorker) terminate() {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.publishLocked()
	// What the API shows: after a restart of the node agent, the states its
	// previous run wrote.
	prev := map[string]corev1.ContainerState{}
	for _, cs := range append(append([]corev1.ContainerStatus{}, w.pod.Status.InitContainerStatuses...), w.pod.Status.ContainerStatuses...) {
		prev[cs.Name] = cs.State
	}
	ran := func(s *ctrState) bool {
		p := prev[s.spec.Name]
		return s.state.Waiting == nil || s.restarts > 0 || p.Running != nil || p.Terminated != nil
	}
	end := func(s *ctrState) {
		switch {
		case s.state.Terminated != nil:
		case s.state.Waiting != nil && s.last.Terminated != nil:
			// Deleted during a restart back-off: its last run is its final
			// state, and the restart counted for it never happened.
			s.state, s.last = s.last, corev1.ContainerState{}
			s.restarts--
		case prev[s.spec.Name].Terminated != nil:
			s.state = prev[s.spec.Name]
		case ran(s):
			s.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137,
				Reason: "ContainerStatusUnknown", Message: "The container could not be located when the pod was terminated"}}
		}
		s.ready = false
	}
	initialized := w.initDone
	for _, s := range w.states {
		initialized = initialized || ran(s)
	}
	for _, s := range w.initStates {
		end(s)
	}
	if initialized {
		for _, s := range w.states {
			end(s)
		}
	}
	if w.final != "" {
		return
	}
	w.final = corev1.PodSucceeded
	for _, s := range w.states {
		if t := s.state.Terminated; !initialized || t == nil || t.ExitCode != 0 {
			w.final = corev1.PodFailed
		}
	}
}

func (w *podWorker) setFinal(phase corev1.PodPhase) {
	w.mu.Lock()
	w.final = phase
	w.mu.Unlock()
	w.changed()
}

func (w *podWorker) event(kind, reason, msg string) {
	w.a.recorder.Event(w.snapshot(), kind, reason, msg)
	if kind == corev1.EventTypeWarning {
		w.a.log.Warn(msg, "pod", w.key(), "reason", reason)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
