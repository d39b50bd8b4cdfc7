package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"outpost.dev/outpost/api"
	infv1 "outpost.dev/outpost/api/inference/v1alpha1"
)

// deploymentWatch follows the OnlineDeployments the agent made, once the
// cluster serves them (the extension installs the CRD after the agent
// starts).
type deploymentWatch struct {
	mu       sync.Mutex
	informer cache.SharedIndexInformer
}

// watchDeployments returns the informer of the agent's OnlineDeployments,
// started with ctx the first time it is called while the cluster serves
// them; nil before. A status change it sees wakes the report loop.
func (a *Agent) watchDeployments(ctx context.Context) cache.SharedIndexInformer {
	w := &a.deploymentWatch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.informer != nil {
		return w.informer
	}
	rl, err := a.kube.Discovery().ServerResourcesForGroupVersion(infv1.GroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		a.log.Warn("look for the OnlineDeployment API", "err", err)
		return nil
	case !slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == infv1.DeploymentResource }):
		return nil
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(a.dyn, onlineDeployments, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = labelManagedBy + "=" + managedByAgent }).Informer()
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if _, ok, _ := deploymentReportOf(obj); ok {
				a.kick()
			}
		},
		UpdateFunc: func(old, cur any) {
			was, _, _ := deploymentReportOf(old)
			is, _, _ := deploymentReportOf(cur)
			if was != is {
				a.kick()
			}
		},
		// A deleted deployment is no longer reported: nothing to say at once.
	})
	if err != nil {
		a.log.Warn("watch OnlineDeployments", "err", err) // only when the informer has stopped, which it has not
		return nil
	}
	a.bg.Go(func() { inf.RunWithContext(ctx) })
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), inf.HasSynced) && ctx.Err() == nil {
		a.log.Warn("OnlineDeployments not listed yet; reporting deployments as they come")
	}
	w.informer = inf
	return inf
}

// deploymentReports is the state of every deployment the agent made that
// the operator has given a phase, by id.
func (a *Agent) deploymentReports(ctx context.Context) []api.DeploymentReport {
	inf := a.watchDeployments(ctx)
	if inf == nil {
		return nil
	}
	var out []api.DeploymentReport
	for _, obj := range inf.GetStore().List() {
		r, ok, err := deploymentReportOf(obj)
		if err != nil {
			a.log.Warn("unreadable OnlineDeployment", "err", err)
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(x, y api.DeploymentReport) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// deploymentReportOf reads an OnlineDeployment's state; ok is false when
// there is nothing to report: not a deployment of the workspace, or no
// phase yet.
func deploymentReportOf(obj any) (r api.DeploymentReport, ok bool, err error) {
	u, isU := obj.(*unstructured.Unstructured)
	if !isU {
		return r, false, nil // a deletion tombstone
	}
	var od infv1.OnlineDeployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &od); err != nil {
		return r, false, fmt.Errorf("OnlineDeployment %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	if od.Spec.DeploymentID == "" || od.Status.Phase == "" {
		return r, false, nil
	}
	st := od.Status
	return api.DeploymentReport{ID: od.Spec.DeploymentID, Phase: st.Phase, Reason: st.Reason, Message: st.Message,
		Instances: int(st.Replicas), ReadyInstances: int(st.ReadyReplicas)}, true, nil
}

// changedDeployments are the deployments of full whose state differs from
// that in acked.
func changedDeployments(acked, full []api.DeploymentReport) []api.DeploymentReport {
	was := make(map[string]api.DeploymentReport, len(acked))
	for _, d := range acked {
		was[d.ID] = d
	}
	var out []api.DeploymentReport
	for _, d := range full {
		if w, ok := was[d.ID]; !ok || w != d {
			out = append(out, d)
		}
	}
	return out
}
