package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// computeReconciler decides the state of every compute, in one goroutine of
// the workspace, from what the workspace knows of the compute's cluster:
// whether it is registered and connected, its ML extension's installState,
// and the namespaces its agent reported. It looks at a compute again when
// any of these change (store writes of the cluster, its extensions or the
// compute, found by their target; a cluster connecting; an agent reporting
// facts a compute waits for; a grace period ending), so that a Failed or
// Succeeded compute follows its conditions instead of keeping the verdict
// of the moment it was attached.
type computeReconciler struct {
	s       *Server
	started time.Time
	wake    chan struct{}

	mu sync.Mutex
	// Targets whose computes all need a look (their cluster connected, or
	// reported facts a compute waits for).
	pending map[string]bool
	// The sync revision each cluster's agent last reported having applied:
	// its facts are at least that fresh. In memory: after a restart a
	// compute waits (within a grace) for the next report.
	synced map[string]int64
	// Targets with a compute waiting for a report.
	waiting map[string]bool
}

func newComputeReconciler(s *Server) *computeReconciler {
	return &computeReconciler{s: s, started: time.Now(), wake: make(chan struct{}, 1),
		pending: map[string]bool{}, synced: map[string]int64{}, waiting: map[string]bool{}}
}

func (c *computeReconciler) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// reported takes note of an agent's report: the revision it has applied and
// whether the cluster just (re)connected.
func (c *computeReconciler) reported(target string, revision int64, connected bool) {
	c.mu.Lock()
	c.synced[target] = revision
	wake := connected || c.waiting[target]
	if wake {
		c.pending[target] = true
	}
	c.mu.Unlock()
	if wake {
		c.kick()
	}
}

// work is what to look at for one target: all its computes, or some.
type work struct {
	all  bool
	keys map[store.Key]bool
}

func (c *computeReconciler) run(ctx context.Context) {
	// Every store write may concern a compute; TouchedSince says which.
	go func() {
		var seen int64
		for ctx.Err() == nil {
			seen = c.s.store.Wait(ctx, seen)
			c.kick()
		}
	}()
	todo := map[string]*work{}
	// After a start every compute gets a look: conditions may have changed
	// while the workspace was down.
	since := c.s.store.Revision()
	all, err := c.s.store.List(ctx, kindCompute, "", "*")
	if err != nil && ctx.Err() == nil {
		c.s.log.Error("compute reconciler: list computes", "err", err)
	}
	for _, o := range all {
		todo[o.Target] = &work{all: true}
	}
	rechecks := map[string]time.Time{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for t, w := range todo {
			if t == "" {
				continue
			}
			at, err := c.reconcileTarget(ctx, t, w)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				c.s.log.Error("compute reconciler", "cluster", t, "err", err)
				at = time.Now().Add(c.s.opts.Heartbeat) // try again
			}
			switch {
			case w.all && at.IsZero():
				delete(rechecks, t)
			case w.all, !at.IsZero() && (rechecks[t].IsZero() || at.Before(rechecks[t])):
				rechecks[t] = at
			}
		}
		todo = map[string]*work{}
		next := time.Time{}
		for _, at := range rechecks {
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(0, time.Until(next)))
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-timer.C:
		}
		now := time.Now()
		for t, at := range rechecks {
			if !at.After(now) {
				todo[t] = &work{all: true}
				delete(rechecks, t)
			}
		}
		c.mu.Lock()
		for t := range c.pending {
			todo[t] = &work{all: true}
		}
		clear(c.pending)
		c.mu.Unlock()
		touched, rev, err := c.s.store.TouchedSince(ctx, since)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.s.log.Error("compute reconciler: read changes", "err", err)
			continue
		}
		since = rev
		for _, t := range touched {
			w := todo[t.Target]
			if w == nil {
				w = &work{keys: map[store.Key]bool{}}
				todo[t.Target] = w
			}
			switch {
			case t.Kind == kindCluster, t.Kind == kindExtension:
				w.all = true // every compute of the cluster
			case t.Kind == kindCompute && !t.Deleted && !w.all:
				w.keys[t.Key] = true
			}
		}
	}
}

// clusterFacts is what the workspace knows of a compute's cluster.
type clusterFacts struct {
	found      bool
	view       api.ConnectedCluster
	namespaces []string
	extension  *api.Extension // the ML extension, nil when there is none
	synced     int64          // revision the agent last reported having applied
}

func (c *computeReconciler) facts(ctx context.Context, t string) (clusterFacts, error) {
	var f clusterFacts
	rg, cluster, _ := strings.Cut(t, "/")
	o, err := c.s.store.Get(ctx, clusterKey(rg, cluster))
	if errors.Is(err, store.ErrNotFound) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if f.view, err = c.s.clusterView(o); err != nil {
		return f, err
	}
	f.found = true
	var st clusterStatus
	if err := decodeStored(o, nil, &st); err != nil {
		return f, err
	}
	f.namespaces = st.Namespaces
	exts, err := c.s.store.List(ctx, kindExtension, rg, kindCluster+"/"+cluster)
	if err != nil {
		return f, err
	}
	if len(exts) > 0 {
		e, err := c.s.extensionView(exts[0])
		if err != nil {
			return f, err
		}
		f.extension = &e
	}
	c.mu.Lock()
	f.synced = c.synced[t]
	c.mu.Unlock()
	return f, nil
}

// reconcileTarget judges the computes of one cluster and returns when to
// look again (zero: when something changes).
func (c *computeReconciler) reconcileTarget(ctx context.Context, t string, w *work) (time.Time, error) {
	var objs []store.Object
	if w.all {
		var err error
		if objs, err = c.s.store.ListTarget(ctx, t, kindCompute); err != nil {
			return time.Time{}, err
		}
	} else {
		for k := range w.keys {
			o, err := c.s.store.Get(ctx, k)
			if errors.Is(err, store.ErrNotFound) {
				continue // detached meanwhile
			}
			if err != nil {
				return time.Time{}, err
			}
			if o.Target == t {
				objs = append(objs, o)
			}
		}
	}
	if len(objs) == 0 {
		return time.Time{}, nil
	}
	f, err := c.facts(ctx, t)
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	var recheck time.Time
	waiting := false
	for _, o := range objs {
		spec, cur, err := readCompute(o)
		if err != nil {
			return time.Time{}, err
		}
		next, at, wantReport := c.judge(o, spec, cur, f, now)
		waiting = waiting || wantReport
		if !at.IsZero() && (recheck.IsZero() || at.Before(recheck)) {
			recheck = at
		}
		if next.State == cur.State && next.Reason == cur.Reason && next.ObservedGeneration == cur.ObservedGeneration {
			continue
		}
		body, err := json.Marshal(next)
		if err != nil {
			return time.Time{}, err
		}
		if _, err := c.s.store.UpdateStatus(ctx, o.Key, body); err != nil && !errors.Is(err, store.ErrNotFound) {
			return time.Time{}, err
		}
		if next.State != cur.State {
			c.s.log.Info("compute state", "compute", resourceID(o.Key), "state", next.State, "reason", next.Reason)
		}
	}
	c.mu.Lock()
	if w.all {
		c.waiting[t] = waiting
	} else {
		c.waiting[t] = c.waiting[t] || waiting
	}
	c.mu.Unlock()
	return recheck, nil
}

// judge decides a compute's state from its cluster's facts. It returns when
// to look again if time alone can change the verdict, and whether the
// verdict waits for the agent's next report.
//
// Facts the workspace holds (the cluster is registered, has the ML
// extension, the extension did not fail) decide at once. Facts the agent
// reports (connectivity, namespaces) are trusted only once the agent has
// confirmed the compute's revision, or after a grace of about two
// heartbeats from the attach or from the workspace's start, whichever is
// later: right after a restart every cluster is still Connecting, and a
// namespace created a moment before the attach is in the next report.
// A Succeeded compute stays Succeeded while its cluster is away: an outage
// does not detach it.
func (c *computeReconciler) judge(o store.Object, spec computeSpec, cur computeStatus, f clusterFacts, now time.Time) (computeStatus, time.Time, bool) {
	if cur.ObservedGeneration != o.Generation {
		cur = computeStatus{State: api.StateCreating, ObservedGeneration: o.Generation, Since: &now}
	}
	if cur.Since == nil {
		cur.Since = &now
	}
	set := func(state, format string, args ...any) computeStatus {
		return computeStatus{State: state, Reason: fmt.Sprintf(format, args...), ObservedGeneration: o.Generation, Since: cur.Since}
	}
	waitState := func() computeStatus {
		if cur.State == api.StateFailed || cur.State == api.StateSucceeded {
			return cur // no new verdict yet
		}
		return set(api.StateCreating, "")
	}
	if !f.found {
		return set(api.StateFailed, "connected cluster %s/%s not found: connect it with `outpost connectedk8s connect` first", spec.ClusterGroup, spec.Cluster), time.Time{}, false
	}
	if f.extension == nil {
		return set(api.StateFailed, "cluster %s has no ML extension: install it with `outpost k8s-extension create --extension-type %s --cluster-name %s ...`",
			spec.Cluster, MLExtensionType, spec.Cluster), time.Time{}, false
	}
	if f.extension.InstallState == api.InstallFailed {
		return set(api.StateFailed, "the ML extension %s of cluster %s is Failed: %s", f.extension.Name, spec.Cluster, f.extension.Message), time.Time{}, false
	}
	hb := c.s.opts.Heartbeat
	graceEnd := c.started
	if cur.Since.After(graceEnd) {
		graceEnd = *cur.Since
	}
	graceEnd = graceEnd.Add(2*hb + hb/2)
	connected := f.view.ConnectivityStatus == api.Connected
	if !connected || f.synced < o.SpecRevision {
		if now.Before(graceEnd) {
			return waitState(), graceEnd, true
		}
		if !connected {
			if cur.State == api.StateSucceeded {
				return cur, time.Time{}, false
			}
			return set(api.StateFailed, "cluster %s is not connected (connectivityStatus %s): check its agent (kubectl -n azure-arc get pods)",
				spec.Cluster, f.view.ConnectivityStatus), time.Time{}, false
		}
		// Connected, but its agent does not confirm revisions (an older
		// agent): judge on the facts it reported.
	}
	if f.extension.InstallState != api.InstallInstalled {
		return waitState(), time.Time{}, false // the extension's next state decides
	}
	if !slices.Contains(f.namespaces, spec.Namespace) {
		if spec.CreateNamespace {
			return set(api.StateCreating, ""), time.Time{}, true // the agent creates it
		}
		return set(api.StateFailed, "namespace %q does not exist in cluster %s: create it (kubectl create namespace %s) or attach with --create-namespace",
			spec.Namespace, spec.Cluster, spec.Namespace), time.Time{}, false
	}
	return set(api.StateSucceeded, ""), time.Time{}, false
}
