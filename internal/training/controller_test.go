package training

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/wrapper"
)

// env is a reconciler over a fake API server.
type env struct {
	t       *testing.T
	c       client.Client
	r       *reconciler
	updates atomic.Int32 // status writes
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t}
	e.c = fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.TrainingJob{}, &corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				e.updates.Add(1)
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
		}).Build()
	e.r = newReconciler(e.c, e.c, "outpost:test", logr.Discard())
	e.r.now = func() time.Time { return now }
	return e
}

// restart is a new operator on the same API server: nothing in memory.
func (e *env) restart() {
	e.r = newReconciler(e.c, e.c, "outpost:test", logr.Discard())
	e.r.now = func() time.Time { return now }
}

func (e *env) reconcile(name string) ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ml", Name: name}})
	if err != nil {
		e.t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

func (e *env) job(name string) *v1alpha1.TrainingJob {
	e.t.Helper()
	var j v1alpha1.TrainingJob
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: name}, &j); err != nil {
		e.t.Fatal(err)
	}
	return &j
}

func (e *env) pods(job string) []corev1.Pod {
	e.t.Helper()
	var l corev1.PodList
	if err := e.c.List(context.Background(), &l, client.InNamespace("ml"), client.MatchingLabels{v1alpha1.LabelJob: job}); err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

func (e *env) setPod(name string, opts ...podOpt) {
	e.t.Helper()
	var p corev1.Pod
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: name}, &p); err != nil {
		e.t.Fatal(err)
	}
	for _, o := range opts {
		o(&p)
	}
	if err := e.c.Status().Update(context.Background(), &p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) wantPhase(name, phase, reason, msg string) *v1alpha1.TrainingJob {
	e.t.Helper()
	j := e.job(name)
	if j.Status.Phase != phase || j.Status.Reason != reason || !strings.Contains(j.Status.Message, msg) {
		e.t.Fatalf("%s: status %s %q %q, want %s %q containing %q", name, j.Status.Phase, j.Status.Reason, j.Status.Message, phase, reason, msg)
	}
	return j
}

func secret(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: name + "-credentials"}}
}

func jobAt(name string, created time.Time, mod ...func(*v1alpha1.TrainingJob)) *v1alpha1.TrainingJob {
	j := testJob(name, mod...)
	j.TypeMeta = metav1.TypeMeta{}
	j.CreationTimestamp = metav1.NewTime(created)
	return j
}

func nodeObj(name string, alloc corev1.ResourceList, opts ...nodeOpt) *corev1.Node {
	n := node(name, alloc, opts...)
	return &n
}

func instanceType(name string, req, lim corev1.ResourceList) *amlarcv1alpha1.InstanceType {
	return &amlarcv1alpha1.InstanceType{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: amlarcv1alpha1.InstanceTypeSpec{Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}
}

func TestReconcileLifecycle(t *testing.T) {
	two := func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 2; j.Spec.InstanceType = "small" }
	e := newEnv(t, nodeObj("n1", res("4", "8Gi")), nodeObj("n2", res("4", "8Gi")),
		instanceType("small", res("3", "1Gi"), res("3", "1Gi")), jobAt("a", t0, two), secret("a"))

	e.reconcile("a")
	j := e.wantPhase("a", api.ClusterJobStarting, "", "")
	if len(j.Status.Instances) != 2 || j.Status.Instances[0].Node != "n1" || j.Status.Instances[1].Node != "n2" {
		t.Fatalf("instances = %+v, want one on each node (3 CPU each)", j.Status.Instances)
	}
	pods := e.pods("a")
	if len(pods) != 2 {
		t.Fatalf("%d pods", len(pods))
	}
	for _, p := range pods {
		i := instanceOf(j, &p)
		if i < 0 || p.Spec.NodeName != j.Status.Instances[i].Node {
			t.Errorf("pod %s on %q, instance %d", p.Name, p.Spec.NodeName, i)
		}
	}

	// Nothing changed: nothing written.
	before := e.updates.Load()
	e.reconcile("a")
	if n := e.updates.Load() - before; n != 0 {
		t.Errorf("%d status writes without a change", n)
	}

	e.setPod("a-0", jobRunning(t0))
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobStarting, "", "")
	e.setPod("a-1", jobRunning(t0.Add(time.Second)))
	e.reconcile("a")
	j = e.wantPhase("a", api.ClusterJobRunning, "", "")
	if j.Status.StartTime == nil || !j.Status.StartTime.Time.Equal(t0) {
		t.Errorf("startTime = %v, want %v", j.Status.StartTime, t0)
	}
	e.setPod("a-0", jobExited(0, "Completed", "", t0.Add(time.Minute)))
	e.setPod("a-1", jobExited(0, "Completed", "", t0.Add(time.Minute)))
	e.reconcile("a")
	j = e.wantPhase("a", api.ClusterJobSucceeded, "", "")
	if j.Status.CompletionTime == nil || j.Status.ObservedGeneration != 1 {
		t.Errorf("completionTime %v observedGeneration %d", j.Status.CompletionTime, j.Status.ObservedGeneration)
	}

	// Terminal stays terminal, whatever the pods do next.
	for _, p := range e.pods("a") {
		if err := e.c.Delete(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
	}
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobSucceeded, "", "")
	if n := len(e.pods("a")); n != 0 {
		t.Errorf("%d pods made for a finished job", n)
	}
}

func TestReconcileQueuedThenAdmitted(t *testing.T) {
	busy := runningPod("busy", "n1", res("3500m", "1Gi"))
	e := newEnv(t, nodeObj("n1", res("4", "8Gi")), &busy,
		instanceType("two", res("2", "4Gi"), res("2", "4Gi")),
		jobAt("a", t0, func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "two" }), secret("a"))
	res := e.reconcile("a")
	e.wantPhase("a", api.ClusterJobQueued, ReasonUnschedulable, "waiting for available resources: needs 1 x (2 CPU, 4Gi), free now: n1 0.5 CPU, 7Gi")
	if res.RequeueAfter <= 0 {
		t.Error("a queued job has no safety-net requeue")
	}
	if n := len(e.pods("a")); n != 0 {
		t.Fatalf("%d pods for a queued job", n)
	}
	// The pod that held the room ends.
	busy.Status.Phase = corev1.PodSucceeded
	if err := e.c.Status().Update(context.Background(), &busy); err != nil {
		t.Fatal(err)
	}
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobStarting, "", "")
	if n := len(e.pods("a")); n != 1 {
		t.Fatalf("%d pods once admitted", n)
	}
}

func TestReconcileRefusals(t *testing.T) {
	for _, c := range []struct {
		name     string
		objs     []client.Object
		mod      func(*v1alpha1.TrainingJob)
		reason   string
		msg      string
		noSecret bool
	}{
		{
			name: "unknown instance type", mod: func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "huge" },
			objs:   []client.Object{instanceType("small", res("1", "1Gi"), res("1", "1Gi"))},
			reason: ReasonInstanceTypeNotFound, msg: `instance type "huge" not found; the cluster has defaultinstancetype, small`,
		},
		{
			name: "never fits", mod: func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "huge" },
			objs:   []client.Object{instanceType("huge", res("64", "1Ti"), res("64", "1Ti"))},
			reason: ReasonUnschedulable, msg: `instance type "huge" needs 1 x (64 CPU, 1Ti), but its nodes can hold 0 such pods even when empty: n1 4 CPU, 8Gi allocatable`,
		},
		{
			name: "bad distribution", mod: func(j *v1alpha1.TrainingJob) { j.Spec.Distribution = &v1alpha1.Distribution{Type: "ray"} },
			reason: ReasonInvalidSpec, msg: `unknown distribution type "ray"`,
		},
		{
			name: "no credentials", noSecret: true,
			reason: ReasonSecretNotFound, msg: `secret "a-credentials" does not exist in namespace ml`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			mods := []func(*v1alpha1.TrainingJob){}
			if c.mod != nil {
				mods = append(mods, c.mod)
			}
			objs := append([]client.Object{nodeObj("n1", res("4", "8Gi")), jobAt("a", t0, mods...)}, c.objs...)
			if !c.noSecret {
				objs = append(objs, secret("a"))
			}
			e := newEnv(t, objs...)
			e.reconcile("a")
			j := e.wantPhase("a", api.ClusterJobFailed, c.reason, c.msg)
			if j.Status.CompletionTime == nil {
				t.Error("no completionTime")
			}
			if n := len(e.pods("a")); n != 0 {
				t.Errorf("%d pods", n)
			}
		})
	}
}

func TestReconcileFIFO(t *testing.T) {
	big := func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "big" }
	small := func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "small" }
	t.Run("the earlier job goes first even when reconciled last", func(t *testing.T) {
		e := newEnv(t, nodeObj("n1", res("4", "8Gi")), instanceType("small", res("3", "1Gi"), res("3", "1Gi")),
			jobAt("early", t0, small), secret("early"), jobAt("late", t0.Add(time.Second), small), secret("late"))
		e.reconcile("late")
		e.wantPhase("late", api.ClusterJobQueued, ReasonUnschedulable, "free now: n1 1 CPU")
		e.reconcile("early")
		e.wantPhase("early", api.ClusterJobStarting, "", "")
	})
	t.Run("a later job that fits is not held back by an earlier one that does not", func(t *testing.T) {
		busy := runningPod("busy", "n1", res("2", "1Gi"))
		e := newEnv(t, nodeObj("n1", res("4", "8Gi")), &busy,
			instanceType("big", res("3", "1Gi"), res("3", "1Gi")), instanceType("small", res("1", "1Gi"), res("1", "1Gi")),
			jobAt("early", t0, big), secret("early"), jobAt("late", t0.Add(time.Second), small), secret("late"))
		e.reconcile("early")
		e.wantPhase("early", api.ClusterJobQueued, ReasonUnschedulable, "needs 1 x (3 CPU, 1Gi)")
		e.reconcile("late")
		e.wantPhase("late", api.ClusterJobStarting, "", "")
	})
}

// Pods the cache does not show yet hold their room: an admitted job whose
// pods are not visible must not see its room given to the next job.
func TestReconcileReservation(t *testing.T) {
	small := func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "small" }
	e := newEnv(t, nodeObj("n1", res("4", "8Gi")), instanceType("small", res("3", "1Gi"), res("3", "1Gi")),
		jobAt("a", t0, small), secret("a"), jobAt("b", t0.Add(time.Second), small), secret("b"))
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobStarting, "", "")
	// As if the cache had not seen a's pod yet.
	for _, p := range e.pods("a") {
		if err := e.c.Delete(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
	}
	e.reconcile("b")
	e.wantPhase("b", api.ClusterJobQueued, ReasonUnschedulable, "free now: n1 1 CPU")

	// After a restart, the status's record of a's admission holds the room.
	e.restart()
	e.reconcile("b")
	e.wantPhase("b", api.ClusterJobQueued, ReasonUnschedulable, "free now: n1 1 CPU")
	// And a's missing pod, never seen, is made again where it was admitted.
	e.reconcile("a")
	pods := e.pods("a")
	if len(pods) != 1 || pods[0].Spec.NodeName != "n1" {
		t.Fatalf("pods after restart = %+v", pods)
	}
}

// A restarted operator finishes an admission on the nodes it recorded, even
// if the nodes' room now says otherwise.
func TestReconcileRestartKeepsPlacement(t *testing.T) {
	job := jobAt("a", t0, func(j *v1alpha1.TrainingJob) {
		j.Spec.InstanceCount = 2
		j.Status = v1alpha1.TrainingJobStatus{Phase: api.ClusterJobStarting, Instances: []v1alpha1.InstanceStatus{
			{Index: 0, Pod: "a-0", Node: "n2"}, {Index: 1, Pod: "a-1", Node: "n2"},
		}}
	})
	e := newEnv(t, nodeObj("n1", res("64", "64Gi")), nodeObj("n2", res("4", "8Gi")), job, secret("a"))
	e.reconcile("a")
	pods := e.pods("a")
	if len(pods) != 2 {
		t.Fatalf("%d pods", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != "n2" {
			t.Errorf("pod %s on %s, admitted to n2", p.Name, p.Spec.NodeName)
		}
	}
}

func TestReconcileFailureEndsTheJob(t *testing.T) {
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0, func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 2 }), secret("a"))
	e.reconcile("a")
	e.setPod("a-0", jobRunning(t0))
	e.setPod("a-1", jobExited(1, "Error", "exit code 1: boom", t0))
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobFailed, ReasonError, "instance 1: exit code 1: boom")
	pods := e.pods("a")
	if len(pods) != 1 || pods[0].Name != "a-1" {
		t.Errorf("pods left = %d: the running instance must be deleted, the failed one kept for its logs", len(pods))
	}
}

func TestReconcilePodDeleted(t *testing.T) {
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"))
	e.reconcile("a")
	e.setPod("a-0", jobRunning(t0))
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobRunning, "", "")
	for _, p := range e.pods("a") {
		if err := e.c.Delete(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
	}
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobFailed, ReasonPodDeleted, "pod a-0 of instance 0 was deleted while the job ran")
	if n := len(e.pods("a")); n != 0 {
		t.Errorf("%d pods remade for a job whose pod was deleted", n)
	}
}

func TestReconcileCancel(t *testing.T) {
	cancel := func(e *env, name string) {
		j := e.job(name)
		j.Spec.Cancel = true
		if err := e.c.Update(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("queued", func(t *testing.T) {
		e := newEnv(t, nodeObj("n1", res("1", "1Gi")), jobAt("a", t0, func(j *v1alpha1.TrainingJob) { j.Spec.Cancel = true }), secret("a"))
		e.reconcile("a")
		e.wantPhase("a", api.ClusterJobCanceled, ReasonCanceled, "")
	})
	t.Run("running", func(t *testing.T) {
		e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"))
		e.reconcile("a")
		e.setPod("a-0", jobRunning(t0))
		e.reconcile("a")
		cancel(e, "a")
		e.reconcile("a")
		// The fake API server removes pods at once; a real one after the
		// grace period, and the job stays as it was until then.
		if n := len(e.pods("a")); n != 0 {
			t.Fatalf("%d pods after cancel", n)
		}
		e.reconcile("a")
		j := e.wantPhase("a", api.ClusterJobCanceled, ReasonCanceled, "")
		if j.Status.CompletionTime == nil {
			t.Error("no completionTime")
		}
		e.reconcile("a")
		if n := len(e.pods("a")); n != 0 {
			t.Errorf("%d pods made for a canceled job", n)
		}
	})
	t.Run("pods slow to go", func(t *testing.T) {
		e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"))
		e.reconcile("a")
		e.setPod("a-0", jobRunning(t0))
		e.reconcile("a")
		var p corev1.Pod
		if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: "a-0"}, &p); err != nil {
			t.Fatal(err)
		}
		p.Finalizers = []string{"test/slow"} // stands for the grace period
		if err := e.c.Update(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
		cancel(e, "a")
		if res := e.reconcile("a"); res.RequeueAfter <= 0 {
			t.Error("no safety-net requeue while the pods go")
		}
		// The pod is terminating: the cancel's doing, not a deletion from
		// under the job.
		e.reconcile("a")
		e.wantPhase("a", api.ClusterJobRunning, "", "")
		p.Finalizers = nil
		if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: "a-0"}, &p); err != nil {
			t.Fatal(err)
		}
		if p.DeletionTimestamp == nil {
			t.Fatal("the pod was not deleted")
		}
		p.Finalizers = nil
		if err := e.c.Update(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
		e.reconcile("a")
		e.wantPhase("a", api.ClusterJobCanceled, ReasonCanceled, "")
	})
	t.Run("after it ended on its own", func(t *testing.T) {
		e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"))
		e.reconcile("a")
		e.setPod("a-0", jobExited(0, "Completed", "", t0))
		cancel(e, "a")
		e.reconcile("a")
		e.wantPhase("a", api.ClusterJobSucceeded, "", "")
	})
}

func TestReconcileGone(t *testing.T) {
	e := newEnv(t)
	e.reconcile("nothing") // no error, no panic
	e.r.remember(types.NamespacedName{Namespace: "ml", Name: "nothing"}, placement{})
	e.reconcile("nothing")
	if len(e.r.placements) != 0 {
		t.Error("a deleted job's placement is kept")
	}
}

// A pod of an earlier job of the same name, still going away, is not the
// new job's: the new one waits for the name.
func TestReconcileNameTakenByEarlierJob(t *testing.T) {
	old := jobPod(testJob("a"), 0, jobRunning(t0), deleting)
	old.OwnerReferences[0].UID = "earlier"
	old.Finalizers = []string{"test/keep"} // the fake API server refuses a deleting object without one
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"), old)
	res := e.reconcile("a")
	e.wantPhase("a", api.ClusterJobStarting, "", "")
	if res.RequeueAfter <= 0 {
		t.Error("no retry while the name is taken")
	}
	var p corev1.Pod
	err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: "a-0"}, &p)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if p.OwnerReferences[0].UID != "earlier" {
		t.Errorf("the earlier job's pod was replaced")
	}
}

func TestReconcileHeadlessService(t *testing.T) {
	two := func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 2 }
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0, two), secret("a"), jobAt("b", t0.Add(time.Second)), secret("b"))
	e.reconcile("a")
	e.reconcile("b")
	var svc corev1.Service
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: "a"}, &svc); err != nil {
		t.Fatalf("the 2-instance job has no Service: %v", err)
	}
	s := svc.Spec
	if s.ClusterIP != corev1.ClusterIPNone || !s.PublishNotReadyAddresses || len(s.Selector) != 1 || s.Selector[v1alpha1.LabelJob] != "a" {
		t.Errorf("service spec %+v: want headless, not-ready addresses published, selecting the job's pods", s)
	}
	if ref := metav1.GetControllerOf(&svc); ref == nil || ref.Kind != v1alpha1.Kind || ref.Name != "a" {
		t.Errorf("service owner %+v: want the TrainingJob, so that it goes with the job", ref)
	}
	for _, p := range e.pods("a") {
		if p.Spec.Subdomain != "a" || p.Spec.Hostname != p.Name {
			t.Errorf("pod %s: hostname %q subdomain %q, want its name under the service", p.Name, p.Spec.Hostname, p.Spec.Subdomain)
		}
		if hosts := envOf(p, "OUTPOST_HOSTS"); hosts != "a-0.a,a-1.a" {
			t.Errorf("pod %s: OUTPOST_HOSTS=%q", p.Name, hosts)
		}
	}
	err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "ml", Name: "b"}, &corev1.Service{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("a single-instance job got a Service (err %v): it reaches itself by its own host name", err)
	}
}

func TestReconcileGangPodDeleted(t *testing.T) {
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0, func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 2 }), secret("a"))
	e.reconcile("a")
	e.setPod("a-0", jobRunning(t0))
	e.setPod("a-1", jobRunning(t0))
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobRunning, "", "")
	if err := e.c.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "a-1"}}); err != nil {
		t.Fatal(err)
	}
	e.reconcile("a")
	e.wantPhase("a", api.ClusterJobFailed, ReasonPodDeleted, "pod a-1 of instance 1 was deleted while the job ran")
	if n := len(e.pods("a")); n != 0 {
		t.Errorf("%d pods left: the whole job fails, its other instance ends and the deleted one is not remade", n)
	}
}

func envOf(p corev1.Pod, name string) string {
	for _, c := range p.Spec.Containers {
		for _, v := range c.Env {
			if v.Name == name {
				return v.Value
			}
		}
	}
	return ""
}

// Once a pod's install container has put the wrapper on a node, the next
// pods there go without one and mount that copy.
func TestReconcileInstallsOncePerNode(t *testing.T) {
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"), jobAt("b", t0.Add(time.Second)), secret("b"))
	key := strings.Repeat("e", 64)
	e.r.wrapperKey = key
	e.reconcile("a")
	first := e.pods("a")
	if len(first) != 1 || len(first[0].Spec.InitContainers) != 1 {
		t.Fatalf("the node's first pod: %+v", first)
	}
	e.setPod("a-0", func(p *corev1.Pod) {
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: InstallName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, FinishedAt: metav1.Now()}}}}
	})
	e.r.copies.Observe(&e.pods("a")[0]) // the pod watch's part
	e.reconcile("b")
	second := e.pods("b")
	if len(second) != 1 {
		t.Fatalf("%d pods of b", len(second))
	}
	p := second[0]
	if len(p.Spec.InitContainers) != 0 {
		t.Errorf("the node's second pod installs the wrapper again: %+v", p.Spec.InitContainers)
	}
	var path string
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil {
			path = v.HostPath.Path
		}
	}
	if path != wrapper.HostDir+"/"+key {
		t.Errorf("the second pod mounts %q, want the node's copy %s/%s", path, wrapper.HostDir, key)
	}
	if cmd := p.Spec.Containers[0].Command; len(cmd) == 0 || cmd[0] != wrapper.Path {
		t.Errorf("the job container runs %v", cmd)
	}
}

// Where a policy refuses the nodes' shared copy (hostPath volumes, root
// containers), the pods copy the wrapper each, as they did before.
func TestReconcileWrapperCopyWhereTheNodesCopyIsRefused(t *testing.T) {
	e := newEnv(t, nodeObj("n1", res("8", "8Gi")), jobAt("a", t0), secret("a"), jobAt("b", t0.Add(time.Second)), secret("b"))
	e.r.wrapperKey = strings.Repeat("e", 64)
	refused := 0
	e.c = interceptor.NewClient(e.c.(client.WithWatch), interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if p, ok := obj.(*corev1.Pod); ok {
				for _, v := range p.Spec.Volumes {
					if v.HostPath != nil {
						refused++
						return apierrors.NewForbidden(corev1.Resource("pods"), p.Name, errors.New("violates PodSecurity \"baseline:latest\": hostPath volumes"))
					}
				}
			}
			return c.Create(ctx, obj, opts...)
		},
	})
	e.r.client = e.c
	for _, name := range []string{"a", "b"} {
		e.reconcile(name)
		e.wantPhase(name, api.ClusterJobStarting, "", "")
		pods := e.pods(name)
		if len(pods) != 1 {
			t.Fatalf("%s: %d pods", name, len(pods))
		}
		for _, v := range pods[0].Spec.Volumes {
			if v.HostPath != nil {
				t.Errorf("%s: pod with hostPath %s", name, v.HostPath.Path)
			}
		}
		if cmd := pods[0].Spec.Containers[0].Command; cmd[0] != wrapper.Path || len(pods[0].Spec.InitContainers) != 1 {
			t.Errorf("%s: command %v, init containers %d", name, cmd, len(pods[0].Spec.InitContainers))
		}
	}
	if refused != 1 {
		t.Errorf("the shared copy was tried %d times, want once per namespace", refused)
	}
}
