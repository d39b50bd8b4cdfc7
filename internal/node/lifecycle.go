package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/container"
	"outpost.dev/outpost/internal/probe"
)

// minPreStopGrace is what SIGTERM still gets after a preStop hook that used
// up the grace period, as the kubelet's minimum grace period.
const minPreStopGrace = 2 * time.Second

// postStart runs the container's postStart hook, right after the container
// started and before it counts as running. Should the hook fail, the
// container is killed (and restarts per its restartPolicy), as the kubelet
// does, with a FailedPostStartHook event.
func (w *podWorker) postStart(ctx context.Context, s *ctrState, proc *container.Process) {
	if s.spec.Lifecycle == nil || s.spec.Lifecycle.PostStart == nil {
		return
	}
	err := w.runHook(ctx, s, proc, s.spec.Lifecycle.PostStart)
	if err == nil || ctx.Err() != nil {
		return // succeeded, or the pod is stopping anyway
	}
	w.event(corev1.EventTypeWarning, "FailedPostStartHook", fmt.Sprintf("PostStartHook of container %s failed: %v", s.spec.Name, err))
	w.event(corev1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s failed post start hook, will be killed", s.spec.Name))
	proc.Stop(w.graceOf())
}

// preStop runs the preStop hook of the container whose process is proc,
// within the grace period, before the container gets SIGTERM, and returns
// what is left of the grace period for SIGTERM. A failure is an event; the
// container is stopped all the same.
func (w *podWorker) preStop(proc *container.Process, grace time.Duration) time.Duration {
	var s *ctrState
	w.mu.Lock()
	for _, c := range w.states {
		if c.proc == proc {
			s = c
		}
	}
	w.mu.Unlock()
	// No hook once the grace period is zero: the pod is to die at once.
	if s == nil || s.spec.Lifecycle == nil || s.spec.Lifecycle.PreStop == nil || grace <= 0 {
		return grace
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := w.runHook(ctx, s, proc, s.spec.Lifecycle.PreStop); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w: it did not complete within the grace period of %s", err, grace)
		}
		w.event(corev1.EventTypeWarning, "FailedPreStopHook", fmt.Sprintf("PreStopHook of container %s failed: %v", s.spec.Name, err))
	}
	return max(grace-time.Since(start), minPreStopGrace)
}

// runHook runs one lifecycle handler against the running container.
func (w *podWorker) runHook(ctx context.Context, s *ctrState, proc *container.Process, h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		// One writer for both streams: exec then writes from one goroutine.
		var out bytes.Buffer
		lw := &limited{&out, 10 << 10}
		code, err := runIn(ctx, w.a.cfg.Outpost, proc, w.ctrRoot(s.spec.Name), h.Exec.Command, nil, lw, lw, false, nil)
		if err != nil {
			return fmt.Errorf("exec %q: %w", h.Exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("exec %q exited with %d: %s", h.Exec.Command, code, strings.TrimSpace(out.String()))
		}
		return nil
	case h.HTTPGet != nil:
		w.mu.Lock()
		target := probe.Target{PodIP: w.ip, Container: &s.spec}
		w.mu.Unlock()
		// The same request as an httpGet probe, bounded only by ctx (for
		// preStop, the grace period), as the kubelet's hooks are.
		p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: h.HTTPGet}, TimeoutSeconds: math.MaxInt32}
		if err := probe.Do(ctx, p, target); err != nil {
			return fmt.Errorf("httpGet %s: %w", h.HTTPGet.Path, err)
		}
		return nil
	case h.Sleep != nil:
		if !sleep(ctx, time.Duration(h.Sleep.Seconds)*time.Second) {
			return fmt.Errorf("sleep %ds: %w", h.Sleep.Seconds, ctx.Err())
		}
		return nil
	case h.TCPSocket != nil:
		return errors.New("tcpSocket lifecycle handlers are not supported (as on the kubelet); use exec, httpGet or sleep")
	}
	return errors.New("lifecycle handler has no action")
}

// ctrRoot is the directory the container's init uses as its root (see
// containerSpec).
func (w *podWorker) ctrRoot(name string) string {
	return filepath.Join(w.dir, "containers", name, "root")
}

// limited is a writer that keeps only the first n bytes (a hook's output in
// an event), discarding the rest without failing the command.
type limited struct {
	buf *bytes.Buffer
	n   int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
