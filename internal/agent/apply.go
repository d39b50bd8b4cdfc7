package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// prunable are the kinds an extension may create; objects of these kinds
// labelled with an extension that is no longer wanted (or no longer rendered)
// are deleted.
var prunable = []schema.GroupVersionResource{
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "security.openshift.io", Version: "v1", Resource: "securitycontextconstraints"},
	{Version: "v1", Resource: "namespaces"},
}

// rendered is what the agent made of one desired extension.
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

// apply converges the cluster on d: namespaces, then each extension by
// server-side apply (idempotent: applying the same state again changes
// nothing, so an agent restart applies nothing twice), then pruning.
func (a *Agent) apply(ctx context.Context, d api.DesiredState) (failed bool) {
	outcomes := map[string]applied{}
	// An extension that cannot be rendered keeps what it has in the cluster:
	// a bad setting must not tear down a working install.
	untouchable := map[string]bool{}
	for _, ns := range d.Namespaces {
		_, err := a.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			a.log.Warn("create namespace", "namespace", ns, "err", err)
		}
	}
	keep := map[string]bool{} // "<gvr>|<ns>|<name>" of every object still wanted
	nodes := a.nodeCount(ctx)
	for _, e := range d.Extensions {
		r, err := a.render(e, nodes)
		if err == nil {
			err = a.applyObjects(ctx, r.objects)
		}
		if r != nil {
			for _, o := range r.objects {
				if gvr, err := a.gvr(o); err == nil {
					keep[objectID(gvr, o.GetNamespace(), o.GetName())] = true
				}
			}
		}
		if r == nil {
			untouchable[e.Name] = true
		} else {
			outcomes[e.Name] = applied{components: r.components}
		}
		if err != nil {
			failed = true
			a.log.Error("apply extension", "extension", e.Name, "err", err)
		} else {
			a.log.Info("applied extension", "extension", e.Name, "generation", e.Generation, "objects", len(r.objects))
		}
		if err != nil {
			outcomes[e.Name] = applied{err: err}
		}
	}
	a.prune(ctx, keep, untouchable)
	a.mu.Lock()
	a.desired, a.applied = d, outcomes
	if d.HeartbeatSeconds > 0 {
		a.heartbeat = secondsOf(d.HeartbeatSeconds)
	}
	a.mu.Unlock()
	return failed
}

func (a *Agent) render(e api.DesiredExtension, nodes int) (*rendered, error) {
	set, err := extension.Parse(e.Settings, e.Protected)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	objs, err := extension.Render(set, extension.RenderOptions{Name: e.Name, Image: a.cfg.Image, NodeCount: nodes})
	if err != nil {
		return nil, err
	}
	if set.InstallNvidiaDevicePlugin {
		if other := a.foreignDevicePlugin(); other != "" {
			return nil, fmt.Errorf("installNvidiaDevicePlugin=True, but an NVIDIA device plugin already runs in this cluster (DaemonSet %s): "+
				"two plugins would advertise the same GPUs; set installNvidiaDevicePlugin=False to use the one there", other)
		}
	}
	r := &rendered{objects: objs}
	for _, o := range objs {
		if o.GetKind() == "Deployment" || o.GetKind() == "DaemonSet" {
			r.components = append(r.components, o)
		}
	}
	return r, nil
}

// foreignDevicePlugin names a DaemonSet running the NVIDIA device plugin that
// no extension of ours created, or "".
func (a *Agent) foreignDevicePlugin() string {
	list, err := a.kube.AppsV1().DaemonSets("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return ""
	}
	for _, ds := range list.Items {
		if _, ours := ds.Labels[extensionLabel]; ours {
			continue
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			if strings.Contains(c.Image, "k8s-device-plugin") || strings.Contains(ds.Name, "nvidia-device-plugin") {
				return ds.Namespace + "/" + ds.Name
			}
		}
	}
	return ""
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

// prune deletes objects an extension created that are no longer wanted,
// namespaces last (deleting one takes its contents along), except those of
// the untouchable extensions.
func (a *Agent) prune(ctx context.Context, keep, untouchable map[string]bool) {
	for _, gvr := range prunable {
		list, err := a.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: extensionLabel})
		if err != nil {
			continue // e.g. no SecurityContextConstraints outside OpenShift
		}
		for _, o := range list.Items {
			if keep[objectID(gvr, o.GetNamespace(), o.GetName())] || untouchable[o.GetLabels()[extensionLabel]] || o.GetDeletionTimestamp() != nil {
				continue
			}
			policy := metav1.DeletePropagationBackground
			ri := a.dyn.Resource(gvr)
			if o.GetNamespace() != "" {
				err = ri.Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
			} else {
				err = ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				a.log.Warn("prune", "kind", gvr.Resource, "name", o.GetName(), "err", err)
			} else {
				a.log.Info("pruned", "kind", gvr.Resource, "namespace", o.GetNamespace(), "name", o.GetName())
			}
		}
	}
}

func objectID(gvr schema.GroupVersionResource, ns, name string) string {
	return gvr.String() + "|" + ns + "|" + name
}

// evaluate turns the live state of an extension's workloads into its
// installState: Installed when every component is ready, Failed with the
// component and reason when one of its pods cannot run, Pending otherwise.
func (a *Agent) evaluate(ctx context.Context, e api.DesiredExtension, out applied) api.ExtensionReport {
	rep := api.ExtensionReport{Name: e.Name, Generation: e.Generation, InstallState: api.InstallPending}
	if out.err != nil {
		rep.InstallState, rep.Message = api.InstallFailed, out.err.Error()
		return rep
	}
	var failed, waiting []string
	for _, c := range out.components {
		st := a.componentStatus(ctx, c)
		rep.Components = append(rep.Components, st)
		switch {
		case st.Ready:
		case strings.HasPrefix(st.Message, "failed: "):
			failed = append(failed, c.GetName()+": "+strings.TrimPrefix(st.Message, "failed: "))
		default:
			waiting = append(waiting, c.GetName())
		}
	}
	ready := len(out.components) - len(failed) - len(waiting)
	switch {
	case len(failed) > 0:
		rep.InstallState, rep.Message = api.InstallFailed, strings.Join(failed, "; ")
	case len(waiting) > 0:
		rep.Message = fmt.Sprintf("%d/%d components ready; waiting for %s", ready, len(out.components), strings.Join(waiting, ", "))
	default:
		rep.InstallState = api.InstallInstalled
		rep.Message = fmt.Sprintf("%d/%d components ready", ready, len(out.components))
	}
	return rep
}

// componentStatus reads one workload and its pods.
func (a *Agent) componentStatus(ctx context.Context, c *unstructured.Unstructured) api.ComponentStatus {
	st := api.ComponentStatus{Name: c.GetName(), Kind: c.GetKind()}
	ns, name := c.GetNamespace(), c.GetName()
	var selector *metav1.LabelSelector
	switch c.GetKind() {
	case "Deployment":
		d, err := a.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			st.Message = err.Error()
			return st
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		// As `kubectl rollout status`: the controller saw the latest spec, every
		// replica runs it, no old one is left, and all are available.
		st.Ready = d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.Replicas == want && d.Status.AvailableReplicas >= want
		st.Message = fmt.Sprintf("%d/%d ready", d.Status.ReadyReplicas, want)
		selector = d.Spec.Selector
	case "DaemonSet":
		d, err := a.kube.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			st.Message = err.Error()
			return st
		}
		st.Ready = d.Status.ObservedGeneration >= d.Generation && d.Status.NumberReady == d.Status.DesiredNumberScheduled && d.Status.UpdatedNumberScheduled == d.Status.DesiredNumberScheduled
		st.Message = fmt.Sprintf("%d/%d ready", d.Status.NumberReady, d.Status.DesiredNumberScheduled)
		selector = d.Spec.Selector
	}
	if st.Ready || selector == nil {
		return st
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return st
	}
	pods, err := a.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return st
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for _, p := range pods.Items {
		if why := podProblem(&p); why != "" {
			st.Message = "failed: pod " + p.Name + ": " + why
			return st
		}
	}
	return st
}

// podProblem names what keeps a pod from running, when it is something that
// waiting will not fix.
func podProblem(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "Unschedulable: " + c.Message
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "RunContainerError":
				msg := w.Reason
				if t := cs.LastTerminationState.Terminated; t != nil {
					msg += fmt.Sprintf(" (last exit code %d, %s", t.ExitCode, t.Reason)
					if t.Message != "" {
						msg += ": " + t.Message
					}
					msg += ")"
				} else if w.Message != "" {
					msg += ": " + w.Message
				}
				return "container " + cs.Name + ": " + msg
			}
		}
	}
	return ""
}
