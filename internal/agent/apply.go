package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/extension"
)

const (
	fieldManager   = "outpost-agent"
	extensionLabel = "outpost.dev/extension"
)

// rendered is what the agent made of one desired extension: the objects to
// apply (its inventory first) and those whose readiness makes its
// installState (every object of the extension).
type rendered struct {
	objects    []*unstructured.Unstructured
	components []*unstructured.Unstructured
}

// applied is the outcome of applying one extension, kept for the reports:
// its workloads, or why it could not be applied.
type applied struct {
	components []*unstructured.Unstructured
	err        error
}

// apply converges the cluster on what one sync answer changed, one
// reconciler per kind: computes get their namespaces; a changed extension is
// rendered and applied by server-side apply (idempotent: applying the same
// state again changes nothing), then what it no longer renders is pruned; a
// deleted one is pruned whole; a job gets its TrainingJob, a deleted one
// loses it. After a reset, extensions and jobs the cluster has but the
// workspace no longer wants are pruned too. It returns the objects to apply
// again later.
func (a *Agent) apply(ctx context.Context, cs changeSet) (retry map[api.ObjectRef]bool) {
	retry = map[api.ObjectRef]bool{}
	for _, ref := range a.reconcileComputes(ctx, cs.changed, nil) {
		retry[ref] = true
	}
	nodes := -1
	for ref, o := range cs.changed {
		if o.Kind != api.KindExtension || o.Extension == nil {
			continue
		}
		if nodes < 0 {
			nodes = a.nodeCount(ctx)
		}
		if err := a.applyExtension(ctx, *o.Extension, nodes); err != nil {
			retry[ref] = true
		}
	}
	// Jobs after extensions: the one that installs the TrainingJob CRD may
	// be in the same answer.
	for ref := range a.applyJobs(ctx, cs.changed) {
		retry[ref] = true
	}
	// Retried as after a reset (see syncLoop): pruneOrphanJobs finds them.
	for ref := range a.deleteJobs(ctx, cs.deleted) {
		retry[ref] = true
	}
	// Endpoints and deployments after extensions too (the one that
	// installs their CRDs may be in the same answer); a failed deletion is
	// retried as after a reset: pruneOrphanInference finds it.
	for ref := range a.applyInference(ctx, cs.changed) {
		retry[ref] = true
	}
	for ref := range a.deleteInference(ctx, cs.deleted) {
		retry[ref] = true
	}
	for ref, o := range cs.deleted {
		if o.Kind != api.KindExtension || o.Extension == nil {
			continue
		}
		name := o.Extension.Name
		a.mu.Lock()
		delete(a.applied, name)
		a.mu.Unlock()
		if err := a.prune(ctx, name, nil); err != nil {
			// Retried as after a reset (see syncLoop): pruneRemoved finds it.
			a.log.Error("prune deleted extension", "extension", name, "err", err)
			retry[ref] = true
		} else {
			a.log.Info("removed extension", "extension", name)
		}
	}
	if cs.reset {
		wanted := map[string]bool{}
		for _, e := range a.extensions() {
			wanted[e.Name] = true
		}
		if err := a.pruneRemoved(ctx, wanted); err != nil {
			a.log.Error("prune deleted extensions", "err", err)
			retry[api.ObjectRef{Kind: api.KindExtension}] = true // no object of the cache: pruned again as after a reset
		}
		if err := a.pruneOrphanJobs(ctx); err != nil {
			a.log.Error("prune deleted jobs", "err", err)
			retry[api.ObjectRef{Kind: api.KindJob}] = true
		}
		if err := a.pruneOrphanInference(ctx); err != nil {
			a.log.Error("prune deleted endpoints and deployments", "err", err)
			retry[api.ObjectRef{Kind: api.KindOnlineDeployment}] = true
		}
	}
	return retry
}

// applyExtension renders e, applies it and prunes what it no longer renders,
// and keeps the outcome for the reports.
func (a *Agent) applyExtension(ctx context.Context, e api.DesiredExtension, nodes int) error {
	r, err := a.render(ctx, e, nodes)
	if err == nil {
		err = a.applyObjects(ctx, r.objects)
	}
	// An extension that cannot be rendered keeps what it has in the
	// cluster: a bad setting must not tear down a working install.
	// A failed prune leaves only leftovers: the install stands, and the
	// prune is retried.
	var perr error
	if r != nil {
		if perr = a.prune(ctx, e.Name, r.objects); perr != nil {
			a.log.Error("prune extension", "extension", e.Name, "err", perr)
		}
	}
	out := applied{err: err}
	if err != nil {
		a.log.Error("apply extension", "extension", e.Name, "generation", e.Generation, "err", err)
	} else {
		out.components = r.components
		a.log.Info("applied extension", "extension", e.Name, "generation", e.Generation, "objects", len(r.objects))
	}
	a.mu.Lock()
	if a.applied == nil {
		a.applied = map[string]applied{}
	}
	a.applied[e.Name] = out
	a.mu.Unlock()
	return errors.Join(err, perr)
}

// render makes the objects of e, with the inventory that lets prune find
// them again once a later render drops them.
func (a *Agent) render(ctx context.Context, e api.DesiredExtension, nodes int) (*rendered, error) {
	set, err := extension.Parse(e.Settings, e.Protected)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	objs, err := extension.Render(set, extension.RenderOptions{Name: e.Name, Image: a.cfg.Image, NodeCount: nodes})
	if err != nil {
		return nil, err
	}
	if set.InstallNvidiaDevicePlugin {
		other, err := a.foreignDevicePlugin(ctx)
		if err != nil {
			return nil, err
		}
		if other != "" {
			return nil, fmt.Errorf("installNvidiaDevicePlugin=True, but an NVIDIA device plugin already runs in this cluster (DaemonSet %s): "+
				"two plugins would advertise the same GPUs; set installNvidiaDevicePlugin=False to use the one there", other)
		}
	}
	inv, err := a.inventory(ctx, e.Name, objs)
	if err != nil {
		return nil, err
	}
	return &rendered{objects: append([]*unstructured.Unstructured{inv}, objs...), components: objs}, nil
}

// foreignDevicePlugin names a DaemonSet running the NVIDIA device plugin that
// no extension of ours created, or "".
func (a *Agent) foreignDevicePlugin(ctx context.Context) (string, error) {
	list, err := a.kube.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("look for another NVIDIA device plugin: %w", err)
	}
	for _, ds := range list.Items {
		if _, ours := ds.Labels[extensionLabel]; ours {
			continue
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			if strings.Contains(c.Image, "k8s-device-plugin") || strings.Contains(ds.Name, "nvidia-device-plugin") {
				return ds.Namespace + "/" + ds.Name, nil
			}
		}
	}
	return "", nil
}

func (a *Agent) gvr(o *unstructured.Unstructured) (schema.GroupVersionResource, error) {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD may have appeared since discovery was cached
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return schema.GroupVersionResource{}, fmt.Errorf("the cluster does not serve %s (%s)", gvk.Kind, gvk.GroupVersion())
		}
		return schema.GroupVersionResource{}, err
	}
	return m.Resource, nil
}

func (a *Agent) applyObjects(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvr, err := a.gvr(o)
		if err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		data, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		var ri = a.dyn.Resource(gvr)
		force := true
		opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force}
		if ns := o.GetNamespace(); ns != "" {
			_, err = ri.Namespace(ns).Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
		} else {
			_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
		}
		if err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}
