package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"outpost.dev/outpost/api"
)

// verdict is what the live state of one rendered object says about the
// install.
type verdict int

const (
	waiting verdict = iota // not there yet, or still rolling out
	ready
	failed // will not get better by waiting
)

// evaluate turns the live state of everything an extension rendered into
// its installState: Installed when every object is ready, Failed with the
// object and reason when one cannot become ready, Pending otherwise.
func (a *Agent) evaluate(ctx context.Context, e api.DesiredExtension, out applied) api.ExtensionReport {
	rep := api.ExtensionReport{Name: e.Name, Generation: e.Generation, InstallState: api.InstallPending}
	if out.err != nil {
		rep.InstallState, rep.Message = api.InstallFailed, out.err.Error()
		return rep
	}
	var broken, pending []string
	for _, c := range out.components {
		st, v := a.componentStatus(ctx, c)
		rep.Components = append(rep.Components, st)
		switch v {
		case failed:
			broken = append(broken, c.GetName()+": "+st.Message)
		case waiting:
			pending = append(pending, c.GetKind()+" "+c.GetName())
		}
	}
	n := len(out.components)
	switch {
	case len(broken) > 0:
		rep.InstallState, rep.Message = api.InstallFailed, strings.Join(broken, "; ")
	case len(pending) > 0:
		rep.Message = fmt.Sprintf("%d/%d components ready; waiting for %s", n-len(pending), n, strings.Join(pending, ", "))
	default:
		rep.InstallState = api.InstallInstalled
		rep.Message = fmt.Sprintf("%d/%d components ready", n, n)
	}
	return rep
}

// componentStatus reads one rendered object and, when a workload is not
// ready, its pods, whose problems say why far better than the workload does.
func (a *Agent) componentStatus(ctx context.Context, c *unstructured.Unstructured) (api.ComponentStatus, verdict) {
	st := api.ComponentStatus{Name: c.GetName(), Kind: c.GetKind()}
	gvr, err := a.gvr(c)
	if err != nil {
		st.Message = err.Error()
		return st, waiting
	}
	ri := a.dyn.Resource(gvr)
	var live *unstructured.Unstructured
	if ns := c.GetNamespace(); ns != "" {
		live, err = ri.Namespace(ns).Get(ctx, c.GetName(), metav1.GetOptions{})
	} else {
		live, err = ri.Get(ctx, c.GetName(), metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		st.Message = "not created yet"
		return st, waiting
	}
	if err != nil {
		st.Message = err.Error()
		return st, waiting
	}
	v, msg := judge(live)
	st.Ready, st.Message = v == ready, msg
	if v == ready {
		return st, v
	}
	if why := a.workloadProblem(ctx, live); why != "" {
		st.Message = why
		return st, failed
	}
	return st, v
}

// judge says whether a live object is ready, as kstatus sees it (workloads
// rolled out, CRDs established, generic Ready/Stalled conditions; anything
// else is ready when it exists), with two stricter rules for an install: a
// Job must have completed, and a LoadBalancer Service must have an address,
// since that address is what users of the extension connect to.
func judge(live *unstructured.Unstructured) (verdict, string) {
	res, err := status.Compute(live)
	if err != nil {
		return waiting, err.Error()
	}
	switch res.Status {
	case status.CurrentStatus:
	case status.FailedStatus:
		return failed, res.Message
	default:
		return waiting, res.Message
	}
	switch live.GroupVersionKind().GroupKind().String() {
	case "Job.batch":
		if !hasCondition(live, "Complete") {
			return waiting, res.Message
		}
	case "Service":
		typ, _, _ := unstructured.NestedString(live.Object, "spec", "type")
		ingress, _, _ := unstructured.NestedSlice(live.Object, "status", "loadBalancer", "ingress")
		if typ == string(corev1.ServiceTypeLoadBalancer) && len(ingress) == 0 {
			return waiting, "no load balancer address yet"
		}
	}
	return ready, res.Message
}

func hasCondition(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ && m["status"] == string(corev1.ConditionTrue) {
			return true
		}
	}
	return false
}

// workloadProblem looks at the pods of a workload (any object with a label
// selector in spec.selector: Deployments, DaemonSets, StatefulSets, Jobs)
// for one that cannot run, and says which and why.
func (a *Agent) workloadProblem(ctx context.Context, workload *unstructured.Unstructured) string {
	m, found, err := unstructured.NestedMap(workload.Object, "spec", "selector")
	if !found || err != nil {
		return "" // not a workload, or a selector of another shape (a Service's)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ls); err != nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil || sel.Empty() {
		return "" // an empty selector would match every pod of the namespace
	}
	pods, err := a.kube.CoreV1().Pods(workload.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "" // the workload's own status still says it is not ready
	}
	current := func(*corev1.Pod) bool { return true }
	if workload.GetKind() == "Deployment" {
		hash, ok := a.currentTemplateHash(ctx, workload, sel)
		if !ok {
			return "" // not rolled out to a ReplicaSet yet: nothing to blame
		}
		current = func(p *corev1.Pod) bool { return p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash }
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for _, p := range pods.Items {
		if !current(&p) {
			// A pod of an earlier revision that a rolling update is
			// replacing (one that could not be scheduled under the old
			// settings, say) is not the new settings' fault.
			continue
		}
		if why := podProblem(&p); why != "" {
			return "pod " + p.Name + ": " + why
		}
	}
	return ""
}

// crashesBeforeFailed is how many restarts make a crash-looping component a
// failed install rather than one that is coming back: the first back-off
// after a crash is 10 s, during which the pod already says CrashLoopBackOff.
const crashesBeforeFailed = 3

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
			if w.Reason == "CrashLoopBackOff" && cs.RestartCount < crashesBeforeFailed {
				continue // a component that died once (a node restart, kill -9) comes back by itself
			}
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

// currentTemplateHash is the pod-template-hash of a Deployment's ReplicaSet
// of its current revision: the pods the Deployment's spec asks for now.
func (a *Agent) currentTemplateHash(ctx context.Context, d *unstructured.Unstructured, sel labels.Selector) (string, bool) {
	const revision = "deployment.kubernetes.io/revision"
	want := d.GetAnnotations()[revision]
	observed, _, _ := unstructured.NestedInt64(d.Object, "status", "observedGeneration")
	if want == "" || observed < d.GetGeneration() {
		// The controller has not seen the latest spec yet: its revision
		// annotation still names the previous ReplicaSet.
		return "", false
	}
	rss, err := a.kube.AppsV1().ReplicaSets(d.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		// As for the pods: the Deployment's own status still says it is
		// not ready, and the next evaluation asks again.
		return "", false
	}
	for _, rs := range rss.Items {
		if owner := metav1.GetControllerOf(&rs); owner != nil && owner.UID == d.GetUID() && rs.Annotations[revision] == want {
			h := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
			return h, h != ""
		}
	}
	return "", false
}
