package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
)

// Each extension has an inventory: a ConfigMap in the agent's namespace that
// lists every kind the extension was ever rendered with. Pruning looks for
// the extension's objects among exactly these kinds, so an object whose kind
// the render no longer produces (a custom resource, a PodDisruptionBudget)
// is still found, and no list of kinds is kept in the code. The inventory is
// applied before the objects it lists, so an apply that fails halfway has
// already recorded what it may have created.
const (
	inventoryLabel = "outpost.dev/inventory" // value: the extension's name
	inventoryKey   = "kinds"                 // one "apiVersion kind" a line
)

// An object annotated on-remove: keep stays when its extension no longer
// renders it or is removed: deleting a CRD deletes every object of its
// kind, and users' InstanceTypes must outlive turning training off.
const (
	annotationOnRemove = "outpost.dev/on-remove"
	onRemoveKeep       = "keep"
)

func inventoryName(ext string) string { return "outpost-inventory-" + ext }

// inventory returns the inventory to apply with objs: the kinds of objs added
// to those the extension had before.
func (a *Agent) inventory(ctx context.Context, ext string, objs []*unstructured.Unstructured) (*unstructured.Unstructured, error) {
	kinds, _, err := a.inventoryKinds(ctx, ext)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		kinds = append(kinds, o.GroupVersionKind())
	}
	lines := make([]string, 0, len(kinds))
	for _, k := range kinds {
		apiVersion, kind := k.ToAPIVersionAndKind()
		lines = append(lines, apiVersion+" "+kind)
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	inv := &unstructured.Unstructured{}
	inv.SetAPIVersion("v1")
	inv.SetKind("ConfigMap")
	inv.SetNamespace(Namespace)
	inv.SetName(inventoryName(ext))
	inv.SetLabels(map[string]string{extensionLabel: ext, inventoryLabel: ext, "app.kubernetes.io/managed-by": "outpost"})
	if err := unstructured.SetNestedStringMap(inv.Object, map[string]string{inventoryKey: strings.Join(lines, "\n")}, "data"); err != nil {
		return nil, err // impossible: inv.Object is a fresh map
	}
	return inv, nil
}

// inventoryKinds reads the kinds an extension's inventory lists; found is
// false when it has none.
func (a *Agent) inventoryKinds(ctx context.Context, ext string) (kinds []schema.GroupVersionKind, found bool, err error) {
	cm, err := a.kube.CoreV1().ConfigMaps(Namespace).Get(ctx, inventoryName(ext), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the inventory of extension %s: %w", ext, err)
	}
	return parseKinds(cm), true, nil
}

func parseKinds(cm *corev1.ConfigMap) []schema.GroupVersionKind {
	var kinds []schema.GroupVersionKind
	for _, line := range strings.Split(cm.Data[inventoryKey], "\n") {
		apiVersion, kind, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue // an empty inventory, or a line someone edited away
		}
		kinds = append(kinds, schema.FromAPIVersionAndKind(apiVersion, kind))
	}
	return kinds
}

// installedExtensions names the extensions that have an inventory in the
// cluster, that is, whose objects the agent applied and has not pruned.
func (a *Agent) installedExtensions(ctx context.Context) ([]string, error) {
	list, err := a.kube.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventoryLabel})
	if err != nil {
		return nil, fmt.Errorf("list extension inventories: %w", err)
	}
	var names []string
	for _, cm := range list.Items {
		if cm.Name == inventoryName(cm.Labels[inventoryLabel]) {
			names = append(names, cm.Labels[inventoryLabel])
		}
	}
	slices.Sort(names)
	return names, nil
}

// pruneRemoved deletes everything of the extensions the cluster has but
// wanted does not name (all of them when wanted is empty).
func (a *Agent) pruneRemoved(ctx context.Context, wanted map[string]bool) error {
	names, err := a.installedExtensions(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if !wanted[name] {
			errs = append(errs, a.prune(ctx, name, nil))
		}
	}
	return errors.Join(errs...)
}

// pruneEverything deletes everything of every extension the cluster has.
func pruneEverything(ctx context.Context, rc *rest.Config, kube kubernetes.Interface, dyn dynamic.Interface) error {
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return err
	}
	a := &Agent{kube: kube, dyn: dyn, log: discardLogger(), mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
	return a.pruneRemoved(ctx, nil)
}

// prune deletes the objects of extension ext that keep does not hold: those
// carrying its label, of every kind its inventory lists and every kind in
// keep. Namespaces go last, since deleting one takes its contents along.
// With keep nil (the extension was deleted) everything of ext goes, its
// inventory last, once the rest is gone without error; until then a retry
// finds the same objects again.
func (a *Agent) prune(ctx context.Context, ext string, keep []*unstructured.Unstructured) error {
	kinds, found, err := a.inventoryKinds(ctx, ext)
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, o := range keep {
		kinds = append(kinds, o.GroupVersionKind())
		kept[objectKey(o.GroupVersionKind().GroupKind(), o.GetNamespace(), o.GetName())] = true
	}
	inv := objectKey(schema.GroupKind{Kind: "ConfigMap"}, Namespace, inventoryName(ext))
	kept[inv] = true
	seen := map[schema.GroupKind]bool{}
	var errs []error
	for _, k := range pruneOrder(kinds) {
		if seen[k.GroupKind()] {
			continue // the same kind at another version: the same objects
		}
		seen[k.GroupKind()] = true
		errs = append(errs, a.pruneKind(ctx, ext, k, kept))
	}
	err = errors.Join(errs...)
	if keep != nil || !found || err != nil {
		return err
	}
	err = a.kube.CoreV1().ConfigMaps(Namespace).Delete(ctx, inventoryName(ext), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the inventory of extension %s: %w", ext, err)
	}
	return nil
}

// pruneOrder sorts kinds so that namespaces come last.
func pruneOrder(kinds []schema.GroupVersionKind) []schema.GroupVersionKind {
	out := slices.Clone(kinds)
	slices.SortStableFunc(out, func(x, y schema.GroupVersionKind) int {
		return boolInt(isNamespace(x)) - boolInt(isNamespace(y))
	})
	return out
}

func isNamespace(k schema.GroupVersionKind) bool { return k.Group == "" && k.Kind == "Namespace" }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (a *Agent) pruneKind(ctx context.Context, ext string, k schema.GroupVersionKind, kept map[string]bool) error {
	gvr, err := a.resource(k)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil // the cluster no longer serves the kind (its CRD is gone), so nothing of it is left
		}
		return err
	}
	ri := a.dyn.Resource(gvr)
	list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: extensionLabel + "=" + ext})
	if err != nil {
		return fmt.Errorf("list %s of extension %s: %w", gvr.Resource, ext, err)
	}
	var errs []error
	policy := metav1.DeletePropagationBackground
	for _, o := range list.Items {
		if kept[objectKey(k.GroupKind(), o.GetNamespace(), o.GetName())] || o.GetDeletionTimestamp() != nil ||
			o.GetAnnotations()[annotationOnRemove] == onRemoveKeep {
			continue
		}
		opts := metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: ptr.To(o.GetUID())}}
		if o.GetNamespace() != "" {
			err = ri.Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), opts)
		} else {
			err = ri.Delete(ctx, o.GetName(), opts)
		}
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone already, or replaced meanwhile by an object this list did not see.
		case err != nil:
			errs = append(errs, fmt.Errorf("prune %s %s/%s: %w", k.Kind, o.GetNamespace(), o.GetName(), err))
		default:
			a.log.Info("pruned", "extension", ext, "kind", k.Kind, "namespace", o.GetNamespace(), "name", o.GetName())
		}
	}
	return errors.Join(errs...)
}

// resource maps a kind to the resource that serves it; the error wraps a
// meta.NoMatchError when the cluster does not serve the kind.
func (a *Agent) resource(k schema.GroupVersionKind) (schema.GroupVersionResource, error) {
	m, err := a.mapper.RESTMapping(k.GroupKind(), k.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD may have appeared or changed since discovery was cached
		m, err = a.mapper.RESTMapping(k.GroupKind(), k.Version)
	}
	if meta.IsNoMatchError(err) {
		// The version recorded may be gone while the kind is served at
		// another one: the objects are the same.
		m, err = a.mapper.RESTMapping(k.GroupKind())
	}
	if err != nil {
		return schema.GroupVersionResource{}, fmt.Errorf("map %s: %w", k, err)
	}
	return m.Resource, nil
}

func objectKey(gk schema.GroupKind, ns, name string) string {
	return gk.String() + "|" + ns + "|" + name
}
