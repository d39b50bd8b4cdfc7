package workspace

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/internal/store"
)

// inference is the workspace's state for online endpoints beside the
// store: the locks that make their checks and writes one step, and the
// deletion reconciler, which forgets a Deleting endpoint or deployment once
// its cluster's agent has confirmed the revision that took it out of the
// cluster's desired state (so `delete` without --no-wait returns when the
// cluster has let it go), or at once when the cluster's registration is
// gone.
type inference struct {
	s *Server
	// createMu makes an endpoint name's check (free on its cluster, in any
	// workspace) and its creation one step. One workspace process serves
	// a database, so a lock in memory is enough.
	createMu sync.Mutex
	// endpointLocks serialise the changes of one endpoint and its
	// deployments: traffic names deployments that exist and are not
	// being deleted, and a deployment that takes traffic is not deleted.
	endpointLocks keyedMutex
	// reportLocks make each read-modify-write of a deployment's status one
	// step.
	reportLocks keyedMutex

	wake chan struct{}
	mu   sync.Mutex
	// pending are the clusters (targets) with something Deleting, each
	// with a count of the deletions started there: a pass forgets a
	// cluster only if none started while it looked.
	pending map[string]int64
}

func newInference(s *Server) *inference {
	return &inference{s: s, wake: make(chan struct{}, 1), pending: map[string]int64{}}
}

func (in *inference) kick() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// deleting notes that the cluster t has something Deleting: call it after
// the write that marks it, so that a pass that looked before the write
// sees the count change and keeps t.
func (in *inference) deleting(t string) {
	in.mu.Lock()
	in.pending[t]++
	in.mu.Unlock()
}

// reported takes note of an agent's report: a cluster with something
// Deleting may have let it go.
func (in *inference) reported(t string) {
	in.mu.Lock()
	_, p := in.pending[t]
	in.mu.Unlock()
	if p {
		in.kick()
	}
}

func (in *inference) run(ctx context.Context) {
	// After a start, whatever was Deleting is looked at again.
	if err := in.findPending(ctx); err != nil && ctx.Err() == nil {
		in.s.log.Error("online endpoints: list deletions", "err", err)
	}
	// Time also lets go of deletions: a cluster whose registration goes
	// writes nothing this reconciler hears of.
	tick := time.NewTicker(max(in.s.opts.Heartbeat, time.Second))
	defer tick.Stop()
	for {
		if err := in.reconcile(ctx); err != nil && ctx.Err() == nil {
			in.s.log.Error("online endpoints: finish deletions", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-in.wake:
		case <-tick.C:
		}
	}
}

func (in *inference) findPending(ctx context.Context) error {
	for _, kind := range []string{kindDeployment, kindEndpoint} {
		objs, err := in.s.store.List(ctx, kind, "", "*")
		if err != nil {
			return err
		}
		for _, o := range objs {
			if t, deleting, err := deletingTarget(o); err == nil && deleting {
				in.deleting(t)
			}
		}
	}
	return nil
}

// deletingTarget tells whether a stored endpoint or deployment is Deleting,
// and its cluster.
func deletingTarget(o store.Object) (string, bool, error) {
	if o.Kind == kindEndpoint {
		e, err := decodeEndpoint(o)
		if err != nil {
			return "", false, err
		}
		return e.rec.target(), e.rec.Deleting, nil
	}
	d, err := decodeDeployment(o)
	if err != nil {
		return "", false, err
	}
	return d.rec.target(), d.rec.Deleting, nil
}

// reconcile forgets what its cluster has let go: deployments first, then
// endpoints with none left.
func (in *inference) reconcile(ctx context.Context) error {
	in.mu.Lock()
	seen := maps.Clone(in.pending)
	in.mu.Unlock()
	if len(seen) == 0 {
		return nil
	}
	left := map[string]bool{}
	for _, kind := range []string{kindDeployment, kindEndpoint} {
		objs, err := in.s.store.List(ctx, kind, "", "*")
		if err != nil {
			return err
		}
		for _, o := range objs {
			t, deleting, err := deletingTarget(o)
			if err != nil {
				in.s.log.Error("online endpoints: unreadable", "resource", resourceID(o.Key), "err", err)
				continue
			}
			if !deleting {
				continue
			}
			gone, err := in.letGo(ctx, o, t)
			if err != nil {
				return err
			}
			if !gone {
				left[t] = true
			}
		}
	}
	in.mu.Lock()
	for t, n := range seen {
		if !left[t] && in.pending[t] == n {
			delete(in.pending, t)
		}
	}
	in.mu.Unlock()
	return nil
}

// letGo deletes a Deleting resource its cluster confirmed (or that has no
// cluster any more), and tells whether it is gone.
func (in *inference) letGo(ctx context.Context, o store.Object, t string) (bool, error) {
	rg, cluster, _ := strings.Cut(t, "/")
	_, found, err := in.s.clusterOf(ctx, rg, cluster)
	if err != nil {
		return false, err
	}
	if found && in.s.syncedRevision(t) < o.SpecRevision {
		return false, nil
	}
	if o.Kind == kindEndpoint {
		ws := strings.TrimPrefix(o.Parent, workspaceParent(""))
		rest, err := in.s.store.List(ctx, kindDeployment, o.Group, deploymentParent(ws, o.Name))
		if err != nil {
			return false, err
		}
		if len(rest) > 0 {
			return false, nil // its deployments go first
		}
	}
	if err := in.s.store.Delete(ctx, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	if o.Kind == kindDeployment {
		if err := in.s.removeDeploymentLogs(o.Key); err != nil {
			in.s.log.Error("online deployment: remove its logs", "deployment", resourceID(o.Key), "err", err)
		}
	}
	in.s.log.Info("online "+map[string]string{kindEndpoint: "endpoint", kindDeployment: "deployment"}[o.Kind]+" deleted", "resource", resourceID(o.Key), "clusterConfirmed", found)
	return true, nil
}

// removeDeploymentLogs removes a deployment's shipped logs.
func (s *Server) removeDeploymentLogs(k store.Key) error {
	err := os.RemoveAll(s.deploymentLogDir(k))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
