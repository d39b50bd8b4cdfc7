package inference

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/inference/v1alpha1"
)

// env is a reconciler over a fake API server.
type env struct {
	t *testing.T
	c client.Client
	r *reconciler
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for i := range testTypes {
		objs = append(objs, testTypes[i].DeepCopy())
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&v1alpha1.OnlineDeployment{}).Build()
	return &env{t: t, c: c, r: &reconciler{client: c, reader: c, image: "outpost:test", log: logr.Discard(), now: func() time.Time { return t0 }}}
}

func (e *env) reconcile(od *v1alpha1.OnlineDeployment) ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(od)})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) get(od *v1alpha1.OnlineDeployment) *v1alpha1.OnlineDeployment {
	e.t.Helper()
	var got v1alpha1.OnlineDeployment
	if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(od), &got); err != nil {
		e.t.Fatal(err)
	}
	return &got
}

func (e *env) deployment(ns, name string) (*appsv1.Deployment, error) {
	var d appsv1.Deployment
	err := e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &d)
	return &d, err
}

// The reconciler makes the Deployment, carries status.replicas to it,
// and rolls a new template only when the pods change.
func TestReconcileDeployment(t *testing.T) {
	od := testDeployment()
	od.Spec.Scale = v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 4}
	e := newEnv(t, od)
	e.reconcile(od)
	d, err := e.deployment("ml", "my-ep-blue")
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d, want min 1", *d.Spec.Replicas)
	}
	got := e.get(od)
	if got.Status.Phase != api.ClusterDeploymentCreating || got.Status.Replicas != 1 {
		t.Errorf("status %+v", got.Status)
	}
	digest := d.Spec.Template.Annotations[AnnotationTemplate]

	// The autoscaler asks for 3.
	got.Status.Replicas = 3
	if err := e.c.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	e.reconcile(od)
	d, _ = e.deployment("ml", "my-ep-blue")
	if *d.Spec.Replicas != 3 || d.Spec.Template.Annotations[AnnotationTemplate] != digest {
		t.Errorf("replicas %d digest %s -> %s: want 3 on the same template", *d.Spec.Replicas, digest, d.Spec.Template.Annotations[AnnotationTemplate])
	}

	// A new image rolls the pods.
	got = e.get(od)
	got.Spec.Image = "other:2"
	if err := e.c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	e.reconcile(od)
	d, _ = e.deployment("ml", "my-ep-blue")
	if d.Spec.Template.Spec.Containers[0].Image != "other:2" || d.Spec.Template.Annotations[AnnotationTemplate] == digest || *d.Spec.Replicas != 3 {
		t.Errorf("image %s digest %s replicas %d", d.Spec.Template.Spec.Containers[0].Image, d.Spec.Template.Annotations[AnnotationTemplate], *d.Spec.Replicas)
	}
}

// A Deployment of that name that is not the deployment's is left alone,
// and the deployment fails saying so.
func TestReconcileNameConflict(t *testing.T) {
	od := testDeployment()
	other := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "my-ep-blue", Labels: map[string]string{"app": "mine"}}}
	e := newEnv(t, od, other)
	e.reconcile(od)
	got := e.get(od)
	if got.Status.Phase != api.ClusterDeploymentFailed || got.Status.Reason != ReasonNameConflict || !strings.Contains(got.Status.Message, "ml/my-ep-blue") {
		t.Errorf("status %+v", got.Status)
	}
	d, _ := e.deployment("ml", "my-ep-blue")
	if d.Labels["app"] != "mine" || len(d.OwnerReferences) != 0 {
		t.Errorf("someone else's Deployment was changed: %+v", d.ObjectMeta)
	}
}

// An instance type that disappears fails the deployment but leaves its
// running Deployment alone; one that does not exist yet makes none.
func TestReconcileInvalidSpec(t *testing.T) {
	od := testDeployment()
	e := newEnv(t, od)
	e.reconcile(od)
	if _, err := e.deployment("ml", "my-ep-blue"); err != nil {
		t.Fatal(err)
	}
	got := e.get(od)
	got.Spec.InstanceType = "gone"
	if err := e.c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	e.reconcile(od)
	got = e.get(od)
	if got.Status.Phase != api.ClusterDeploymentFailed || got.Status.Reason != ReasonInstanceTypeNotFound {
		t.Errorf("status %+v", got.Status)
	}
	if _, err := e.deployment("ml", "my-ep-blue"); err != nil {
		t.Errorf("the running Deployment went: %v", err)
	}

	fresh := testDeployment()
	fresh.Name, fresh.Spec.Name, fresh.Spec.InstanceType = "my-ep-green", "green", "gone"
	if err := e.c.Create(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	e.reconcile(fresh)
	if _, err := e.deployment("ml", "my-ep-green"); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment for an unknown instance type: %v", err)
	}
	if got := e.get(fresh); got.Status.Reason != ReasonInstanceTypeNotFound {
		t.Errorf("status %+v", got.Status)
	}
}
