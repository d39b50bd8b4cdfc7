package node

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/container"
	"outpost.dev/outpost/internal/probe"
)

// startProbes runs the container's probes for as long as ctx lives: startup
// first, then readiness and liveness.
func (w *podWorker) startProbes(ctx context.Context, s *ctrState, proc *container.Process) {
	w.mu.Lock()
	target := probe.Target{PodIP: w.ip, Container: &s.spec, Exec: func(ctx context.Context, argv []string) (int, error) {
		return w.exec(ctx, s, argv)
	}}
	w.mu.Unlock()
	spec := s.spec
	go func() {
		if spec.StartupProbe != nil {
			started := make(chan struct{})
			sctx, stop := context.WithCancel(ctx)
			go probe.Loop(sctx, spec.StartupProbe, target, func(ok bool, err error) {
				if ok {
					close(started)
					return
				}
				w.event(corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("Startup probe failed: %v", err))
				proc.Stop(w.graceOf())
			})
			select {
			case <-ctx.Done():
				stop()
				return
			case <-started:
				stop()
			}
			w.mu.Lock()
			s.started = true
			w.mu.Unlock()
			w.changed()
		}
		if spec.ReadinessProbe == nil {
			w.mu.Lock()
			s.ready = true
			w.mu.Unlock()
			w.changed()
		} else {
			go probe.Loop(ctx, spec.ReadinessProbe, target, func(ok bool, err error) {
				w.mu.Lock()
				s.ready = ok && s.proc == proc
				w.mu.Unlock()
				w.changed()
				if !ok {
					w.event(corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("Readiness probe failed: %v", err))
				}
			})
		}
		if spec.LivenessProbe != nil {
			go probe.Loop(ctx, spec.LivenessProbe, target, func(ok bool, err error) {
				if ok {
					return
				}
				w.event(corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("Liveness probe failed: %v; container %s will be restarted", err, spec.Name))
				proc.Stop(w.graceOf())
			})
		}
	}()
}

func (w *podWorker) graceOf() time.Duration {
	if g := w.snapshot().Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// exec runs an exec probe's command inside the running container, as the
// kubelet does: it sees the container's files (its /tmp included), processes
// and env.
func (w *podWorker) exec(ctx context.Context, s *ctrState, argv []string) (int, error) {
	proc, root, err := w.running(s.spec.Name)
	if err != nil {
		return 0, err
	}
	return runIn(ctx, w.a.cfg.Outpost, proc, root, argv, nil, nil, nil, false, nil)
}
