package agent

import (
	"context"
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
)

// changeSet is what one sync answer changed in the local cache.
type changeSet struct {
	// reset: the answer was the whole state; extensions the cluster has
	// but the cache lacks are pruned.
	reset   bool
	changed map[api.ObjectRef]api.DesiredObject
	deleted map[api.ObjectRef]api.DesiredObject // as they were before
}

// take applies a sync answer to the local cache and returns what changed.
func (a *Agent) take(resp *api.SyncResponse) changeSet {
	cs := changeSet{reset: resp.Reset, changed: map[api.ObjectRef]api.DesiredObject{}, deleted: map[api.ObjectRef]api.DesiredObject{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	if resp.Reset {
		keep := map[api.ObjectRef]bool{}
		for _, o := range resp.Objects {
			keep[o.Ref()] = true
		}
		for ref, o := range a.objects {
			if !keep[ref] {
				cs.deleted[ref] = o
				delete(a.objects, ref)
			}
		}
	}
	for _, o := range resp.Objects {
		ref := o.Ref()
		// An object the agent has at this generation already is applied
		// already (a reset after a long absence repeats most of them).
		if old, ok := a.objects[ref]; ok && old.Generation == o.Generation && reflect.DeepEqual(old, o) {
			continue
		}
		a.objects[ref] = o
		cs.changed[ref] = o
	}
	for _, ref := range resp.Deleted {
		if old, ok := a.objects[ref]; ok {
			cs.deleted[ref] = old
			delete(a.objects, ref)
		}
	}
	return cs
}

func (a *Agent) cached(ref api.ObjectRef) (api.DesiredObject, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	o, ok := a.objects[ref]
	return o, ok
}

func (a *Agent) setRevision(rev int64) {
	a.mu.Lock()
	a.revision = rev
	a.mu.Unlock()
}

// extensions returns the cached extensions, by name.
func (a *Agent) extensions() []api.DesiredExtension {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []api.DesiredExtension
	for _, o := range a.objects {
		if o.Kind == api.KindExtension && o.Extension != nil {
			out = append(out, *o.Extension)
		}
	}
	slices.SortFunc(out, func(x, y api.DesiredExtension) int { return cmpString(x.Name, y.Name) })
	return out
}

func cmpString(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// reconcileComputes makes the namespaces the computes ask for: those of the
// changed computes, or, with changed nil, those missing from present (a
// user deleted one). A detached compute's namespace stays: it may hold
// anyone's work.
func (a *Agent) reconcileComputes(ctx context.Context, changed map[api.ObjectRef]api.DesiredObject, present []string) (failed []api.ObjectRef) {
	objs := changed
	if objs == nil {
		a.mu.Lock()
		objs = map[api.ObjectRef]api.DesiredObject{}
		for ref, o := range a.objects {
			if o.Compute != nil && o.Compute.CreateNamespace && !slices.Contains(present, o.Compute.Namespace) {
				objs[ref] = o
			}
		}
		a.mu.Unlock()
	}
	for ref, o := range objs {
		if o.Kind != api.KindCompute || o.Compute == nil || !o.Compute.CreateNamespace {
			continue
		}
		ns := o.Compute.Namespace
		_, err := a.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		switch {
		case err == nil:
			a.log.Info("created namespace", "namespace", ns, "compute", o.ID)
		case apierrors.IsAlreadyExists(err):
		default:
			a.log.Warn("create namespace", "namespace", ns, "compute", o.ID, "err", err)
			failed = append(failed, ref)
		}
	}
	return failed
}

// report gathers the heartbeat: facts about the cluster, its namespaces,
// the state of every extension the agent has, as of the revision it has
// applied, and that of every job on the cluster.
func (a *Agent) report(ctx context.Context) api.AgentReport {
	a.mu.Lock()
	rev, outcomes := a.revision, a.applied
	a.mu.Unlock()
	rep := api.AgentReport{Revision: rev, Facts: a.facts(ctx)}
	if nss, err := a.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		for _, ns := range nss.Items {
			rep.Namespaces = append(rep.Namespaces, ns.Name)
		}
		slices.Sort(rep.Namespaces)
		a.reconcileComputes(ctx, nil, rep.Namespaces)
	} else {
		a.log.Warn("list namespaces", "err", err)
	}
	for _, e := range a.extensions() {
		rep.Extensions = append(rep.Extensions, a.evaluate(ctx, e, outcomes[e.Name]))
	}
	rep.Jobs = a.jobReports(ctx)
	rep.Deployments = a.deploymentReports(ctx)
	return rep
}

// changedSince is the report to send when the workspace has acknowledged
// acked: the facts and revision always, the rest when it changed.
func changedSince(acked, full api.AgentReport) api.AgentReport {
	rep := api.AgentReport{Revision: full.Revision, Facts: full.Facts}
	if !slices.Equal(acked.Namespaces, full.Namespaces) {
		rep.Namespaces = full.Namespaces
	}
	for _, e := range full.Extensions {
		i := slices.IndexFunc(acked.Extensions, func(x api.ExtensionReport) bool { return x.Name == e.Name })
		if i < 0 || !reflect.DeepEqual(acked.Extensions[i], e) {
			rep.Extensions = append(rep.Extensions, e)
		}
	}
	rep.Jobs = changedJobs(acked.Jobs, full.Jobs)
	rep.Deployments = changedDeployments(acked.Deployments, full.Deployments)
	return rep
}
