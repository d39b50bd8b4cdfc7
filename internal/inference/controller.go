package inference

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/inference/v1alpha1"
)

// conflictRetry is how soon a Deployment whose name is still held by one
// being deleted is tried again.
const conflictRetry = 2 * time.Second

type reconciler struct {
	client client.Client // reads from the caches
	// reader reads from the API server: the cache holds only the
	// Deployments the operator made, not one of another that holds a name.
	reader client.Reader
	image  string
	// wrapperKey names the nodes' copy of the image's binary (see
	// Options.WrapperKey).
	wrapperKey string
	log        logr.Logger
	events     record.EventRecorder
	now        func() time.Time
	scaler     *autoscaler
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var od v1alpha1.OnlineDeployment
	if err := r.client.Get(ctx, req.NamespacedName, &od); err != nil {
		if apierrors.IsNotFound(err) {
			// Its Deployment goes with it (owner reference).
			if r.scaler != nil {
				r.scaler.forget(req.NamespacedName)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if od.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	var its amlarcv1alpha1.InstanceTypeList
	if err := r.client.List(ctx, &its); err != nil {
		return ctrl.Result{}, err
	}
	p, err := prepare(&od, r.image, its.Items)
	p.wrapperKey = r.wrapperKey
	var bad invalidSpec
	if errors.As(err, &bad) {
		// A Deployment that runs keeps running: an instance type deleted
		// or a spec gone wrong must not take a serving deployment down.
		return ctrl.Result{}, r.fail(ctx, &od, bad.reason, bad.err.Error())
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	want := buildDeployment(&od, p)
	live, res, err := r.ensure(ctx, &od, want)
	if err != nil || live == nil {
		return res, err
	}
	pods, err := r.pods(ctx, &od)
	if err != nil {
		return ctrl.Result{}, err
	}
	st, recheck := deriveStatus(&od, live, pods, r.now())
	if recheck > 0 && (res.RequeueAfter == 0 || recheck < res.RequeueAfter) {
		res.RequeueAfter = recheck
	}
	return res, r.setStatus(ctx, &od, st)
}

// ensure makes the Deployment want, or brings the one there in line. A nil
// Deployment with no error: the status was set, or a retry is due.
func (r *reconciler) ensure(ctx context.Context, od *v1alpha1.OnlineDeployment, want *appsv1.Deployment) (*appsv1.Deployment, ctrl.Result, error) {
	var live appsv1.Deployment
	err := r.client.Get(ctx, client.ObjectKeyFromObject(want), &live)
	switch {
	case apierrors.IsNotFound(err):
		err := r.client.Create(ctx, want)
		switch {
		case err == nil:
			r.log.Info("created deployment", "deployment", describe(od), "apps/v1", want.Name, "replicas", *want.Spec.Replicas)
			return want, ctrl.Result{}, nil
		case apierrors.IsAlreadyExists(err):
			// Ours, which the cache does not show yet; one still being
			// deleted; or someone else's, which the cache never shows.
			var other appsv1.Deployment
			if err := r.reader.Get(ctx, client.ObjectKeyFromObject(want), &other); err == nil && other.DeletionTimestamp == nil {
				if ref := metav1.GetControllerOf(&other); ref == nil || ref.UID != od.UID {
					return nil, ctrl.Result{}, r.fail(ctx, od, ReasonNameConflict,
						fmt.Sprintf("Deployment %s/%s exists and is not this deployment's", other.Namespace, other.Name))
				}
			}
			return nil, ctrl.Result{RequeueAfter: conflictRetry}, nil
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
			return nil, ctrl.Result{}, r.fail(ctx, od, ReasonDeploymentRejected, fmt.Sprintf("Deployment %s: %v", want.Name, err))
		}
		return nil, ctrl.Result{}, fmt.Errorf("create Deployment %s/%s: %w", want.Namespace, want.Name, err)
	case err != nil:
		return nil, ctrl.Result{}, err
	}
	if ref := metav1.GetControllerOf(&live); ref == nil || ref.UID != od.UID {
		if live.DeletionTimestamp != nil {
			return nil, ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return nil, ctrl.Result{}, r.fail(ctx, od, ReasonNameConflict,
			fmt.Sprintf("Deployment %s/%s exists and is not this deployment's", live.Namespace, live.Name))
	}
	if !equality.Semantic.DeepEqual(live.Spec.Selector, want.Spec.Selector) {
		// A selector cannot change: the Deployment is made again.
		if err := r.client.Delete(ctx, &live, client.Preconditions{UID: &live.UID}); err != nil && !apierrors.IsNotFound(err) {
			return nil, ctrl.Result{}, err
		}
		return nil, ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	if live.Spec.Template.Annotations[AnnotationTemplate] == want.Spec.Template.Annotations[AnnotationTemplate] &&
		live.Spec.Replicas != nil && *live.Spec.Replicas == *want.Spec.Replicas && maps.Equal(live.Labels, want.Labels) {
		return &live, ctrl.Result{}, nil
	}
	from := int32(0)
	if live.Spec.Replicas != nil {
		from = *live.Spec.Replicas
	}
	rollout := live.Spec.Template.Annotations[AnnotationTemplate] != want.Spec.Template.Annotations[AnnotationTemplate]
	live.Labels = want.Labels
	live.Spec.Replicas = want.Spec.Replicas
	if rollout {
		live.Spec.Template = want.Spec.Template
	}
	if err := r.client.Update(ctx, &live); err != nil {
		if apierrors.IsInvalid(err) {
			return nil, ctrl.Result{}, r.fail(ctx, od, ReasonDeploymentRejected, fmt.Sprintf("Deployment %s: %v", live.Name, err))
		}
		return nil, ctrl.Result{}, err // a conflict included: the cache catches up, the retry reads it
	}
	r.log.Info("updated deployment", "deployment", describe(od), "apps/v1", live.Name, "replicas", fmt.Sprintf("%d -> %d", from, *live.Spec.Replicas),
		"newTemplate", rollout)
	return &live, ctrl.Result{}, nil
}

// pods are od's instances, as the cache has them.
func (r *reconciler) pods(ctx context.Context, od *v1alpha1.OnlineDeployment) ([]*corev1.Pod, error) {
	var list corev1.PodList
	labels := selector(od)
	labels[LabelOnlineDeployment] = od.Name
	if err := r.client.List(ctx, &list, client.InNamespace(od.Namespace), client.MatchingLabels(labels)); err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// fail records why od cannot run, keeping what its status says of its
// instances.
func (r *reconciler) fail(ctx context.Context, od *v1alpha1.OnlineDeployment, reason, message string) error {
	st := od.Status
	if st.LastScaleTime != nil {
		st.LastScaleTime = st.LastScaleTime.DeepCopy()
	}
	st.Phase, st.Reason, st.Message = api.ClusterDeploymentFailed, reason, message
	st.Replicas = desiredReplicas(od)
	st.ObservedGeneration = od.Generation
	return r.setStatus(ctx, od, st)
}

// setStatus writes st when it differs from od's.
func (r *reconciler) setStatus(ctx context.Context, od *v1alpha1.OnlineDeployment, st v1alpha1.OnlineDeploymentStatus) error {
	if equality.Semantic.DeepEqual(od.Status, st) {
		return nil
	}
	prev := od.Status
	next := od.DeepCopy()
	next.Status = st
	if err := r.client.Status().Update(ctx, next); err != nil {
		return fmt.Errorf("status of %s: %w", describe(od), err)
	}
	if st.Phase != prev.Phase || st.Reason != prev.Reason {
		r.log.Info("deployment phase", "deployment", describe(od), "phase", st.Phase, "reason", st.Reason, "message", st.Message,
			"ready", fmt.Sprintf("%d/%d", st.ReadyReplicas, st.Replicas))
		if r.events != nil {
			typ := corev1.EventTypeNormal
			if st.Phase == api.ClusterDeploymentFailed {
				typ = corev1.EventTypeWarning
			}
			r.events.Event(od, typ, st.Phase, phaseNote(st))
		}
	}
	return nil
}

func phaseNote(st v1alpha1.OnlineDeploymentStatus) string {
	switch {
	case st.Reason != "":
		return st.Reason + ": " + st.Message
	case st.Message != "":
		return st.Message
	}
	return fmt.Sprintf("%d of %d instances ready", st.ReadyReplicas, st.Replicas)
}

// describe names a deployment in logs.
func describe(od *v1alpha1.OnlineDeployment) string {
	return od.Namespace + "/" + od.Name
}
