package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/container"
	"outpost.dev/outpost/internal/probe"
)

var execSeq atomic.Int64

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

// exec runs a command with the container's filesystem view and environment,
// in a fresh namespace of its own (for exec probes).
func (w *podWorker) exec(ctx context.Context, s *ctrState, argv []string) (int, error) {
	spec, err := w.containerSpec(ctx, s)
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(w.dir, "exec", fmt.Sprint(execSeq.Add(1)))
	defer os.RemoveAll(dir)
	spec.Root = filepath.Join(dir, "root")
	spec.Argv = argv
	spec.TerminationLog = filepath.Join(dir, "termination-log")
	spec.Mounts = spec.Mounts[:len(spec.Mounts)-1] // not the container's termination log
	p, err := container.Start(w.a.cfg.Outpost, spec, os.DevNull)
	if err != nil {
		return 0, err
	}
	select {
	case <-p.Done():
		return p.ExitCode, nil
	case <-ctx.Done():
		p.Kill()
		return 0, ctx.Err()
	}
}
