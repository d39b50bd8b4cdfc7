package training

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/training/framework"
	"outpost.dev/outpost/internal/wrapper"
)

const (
	// cancelGrace is how long a canceled or failed job's processes get to
	// end after SIGTERM: cancel must end a job within seconds.
	cancelGrace = 5
	// queuedRecheck is the safety net under the events that requeue a
	// waiting job (a pod ending, a node changing): a lost event delays a
	// job by this much at most.
	queuedRecheck = time.Minute
	// conflictRetry is how soon a pod whose name a pod of an earlier job of
	// the same name still holds is tried again.
	conflictRetry = 2 * time.Second
)

// placement is an admitted job's nodes and what its pods are made of. It is
// kept in memory from admission until the job ends, because the caches may
// not yet show the job's recorded admission (its status) nor its pods, and
// admission must neither run twice for a job nor give its room away.
type placement struct {
	uid      types.UID
	nodes    []string
	requests corev1.ResourceList // of one pod
	plan     *podPlan            // nil when rebuilt from the status after a restart
	// recorded: the job's status holds the admission (Starting, with
	// the instances' nodes).
	recorded bool
}

type reconciler struct {
	client client.Client // reads from the caches
	reader client.Reader // reads from the API server: Secrets are not cached
	image  string
	log    logr.Logger
	now    func() time.Time

	// wrapperKey names the nodes' copy of the image's binary (see
	// Options.WrapperKey), and copies says which nodes hold it.
	wrapperKey string
	copies     *wrapper.Copies
	// copyWrapper holds the namespaces whose policy refuses the nodes'
	// copy: their pods copy the wrapper each (see run).
	copyWrapper sync.Map

	mu         sync.Mutex
	placements map[types.NamespacedName]placement

	// admitting serialises admission passes, which decide on one view of
	// the cluster's room.
	admitting sync.Mutex
	// starts, when set, brings the jobs a pass admitted to their own
	// reconcile, which creates their pods.
	starts chan<- event.GenericEvent
}

func newReconciler(c client.Client, reader client.Reader, image string, log logr.Logger) *reconciler {
	return &reconciler{client: c, reader: reader, image: image, log: log, now: time.Now, placements: map[types.NamespacedName]placement{},
		copies: wrapper.NewCopies()}
}

// admissionPass is the request of a pass over every waiting job (see
// requeuePending): no TrainingJob has an empty name.
var admissionPass = ctrl.Request{}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req == admissionPass {
		r.admitting.Lock()
		defer r.admitting.Unlock()
		return ctrl.Result{}, r.pass(ctx, nil)
	}
	var job v1alpha1.TrainingJob
	if err := r.client.Get(ctx, req.NamespacedName, &job); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	owned, err := r.ownedPods(ctx, &job)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case terminal(job.Status.Phase):
		r.forget(req.NamespacedName)
		if job.Status.Phase != api.ClusterJobSucceeded {
			// Failed and Canceled jobs run nothing: a restart between
			// recording the phase and deleting the pods leaves some.
			return ctrl.Result{}, r.deletePods(ctx, running(owned))
		}
		return ctrl.Result{}, nil
	case job.Spec.Cancel:
		return r.cancel(ctx, &job, owned)
	}
	pl, ok := r.placementOf(&job)
	if !ok {
		if len(owned) == 0 {
			return r.admit(ctx, &job)
		}
		// Pods without a recorded admission: someone overwrote the status.
		// The pods say where the instances run; a missing one is lost.
		pl = placement{uid: job.UID, nodes: make([]string, job.Spec.InstanceCount), recorded: true}
		for _, p := range owned {
			if i := instanceOf(&job, p); i >= 0 {
				pl.nodes[i] = p.Spec.NodeName
			}
		}
	}
	if !pl.recorded {
		return r.start(ctx, &job, pl)
	}
	return r.run(ctx, &job, pl, owned)
}

// ownedPods are the pods job controls. Pods of an earlier job of the same
// name, still being removed, carry the same label but another owner.
func (r *reconciler) ownedPods(ctx context.Context, job *v1alpha1.TrainingJob) ([]*corev1.Pod, error) {
	var list corev1.PodList
	if err := r.client.List(ctx, &list, client.InNamespace(job.Namespace), client.MatchingLabels{v1alpha1.LabelJob: job.Name}); err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == job.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

func running(pods []*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

func (r *reconciler) deletePods(ctx context.Context, pods []*corev1.Pod) error {
	var errs []error
	for _, p := range pods {
		err := r.client.Delete(ctx, p, client.GracePeriodSeconds(cancelGrace), client.Preconditions{UID: &p.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.placements, key)
}

func (r *reconciler) remember(key types.NamespacedName, pl placement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.placements[key] = pl
}

// placementOf returns job's placement: the one in memory, or the one its
// status records (after a restart of the operator).
func (r *reconciler) placementOf(job *v1alpha1.TrainingJob) (placement, bool) {
	r.mu.Lock()
	pl, ok := r.placements[client.ObjectKeyFromObject(job)]
	r.mu.Unlock()
	if ok && pl.uid == job.UID {
		return pl, true
	}
	n := int(job.Spec.InstanceCount)
	if len(job.Status.Instances) != n || n == 0 {
		return placement{}, false
	}
	pl = placement{uid: job.UID, nodes: make([]string, n), recorded: true}
	for i, in := range job.Status.Instances {
		if in.Node == "" {
			return placement{}, false
		}
		pl.nodes[i] = in.Node
	}
	return pl, true
}

// admitted tells whether job has been admitted, as far as this operator
// knows: its pods may not be in the cache yet.
func (r *reconciler) admitted(job *v1alpha1.TrainingJob) bool {
	_, ok := r.placementOf(job)
	return ok
}

// pending tells whether job waits for admission.
func (r *reconciler) pending(job *v1alpha1.TrainingJob) bool {
	return !terminal(job.Status.Phase) && !job.Spec.Cancel && !r.admitted(job)
}

// setStatus writes st when it differs from job's.
func (r *reconciler) setStatus(ctx context.Context, job *v1alpha1.TrainingJob, st v1alpha1.TrainingJobStatus) error {
	st.ObservedGeneration = job.Generation
	if equality.Semantic.DeepEqual(job.Status, st) {
		return nil
	}
	prev := job.Status.Phase
	job.Status = st
	if err := r.client.Status().Update(ctx, job); err != nil {
		return fmt.Errorf("status of %s: %w", describeJob(job), err)
	}
	if st.Phase != prev {
		r.log.Info("job phase", "job", describeJob(job), "phase", st.Phase, "reason", st.Reason, "message", st.Message)
	}
	return nil
}

// fail ends a job that cannot run.
func (r *reconciler) fail(ctx context.Context, job *v1alpha1.TrainingJob, reason, message string) error {
	st := *job.Status.DeepCopy()
	st.Phase, st.Reason, st.Message = api.ClusterJobFailed, reason, message
	if st.CompletionTime == nil {
		st.CompletionTime = &metav1.Time{Time: r.now()}
	}
	return r.setStatus(ctx, job, st)
}

func (r *reconciler) cancel(ctx context.Context, job *v1alpha1.TrainingJob, owned []*corev1.Pod) (ctrl.Result, error) {
	var live []*corev1.Pod
	for _, p := range owned {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if pl, ok := r.placementOf(job); ok && len(owned) > 0 && len(live) == len(owned) {
		// A job whose pods all ended before the cancel reached them ended
		// on its own, and says how. Once the cancel has deleted pods, their
		// going is the cancel's doing, not a failure.
		st := podStatus(job, &job.Status, byInstance(job, owned), r.now())
		if st.Phase == api.ClusterJobSucceeded || (st.Phase == api.ClusterJobFailed && st.Reason != ReasonPodDeleted) {
			fillNodes(&st, pl)
			return ctrl.Result{}, r.setStatus(ctx, job, st)
		}
	}
	if len(owned) > 0 {
		// The pods' deletion events bring the job back; the delay is a
		// safety net.
		return ctrl.Result{RequeueAfter: 2 * cancelGrace * time.Second}, r.deletePods(ctx, live)
	}
	st := *job.Status.DeepCopy()
	st.Phase, st.Reason, st.Message = api.ClusterJobCanceled, ReasonCanceled, "canceled"
	if st.CompletionTime == nil {
		st.CompletionTime = &metav1.Time{Time: r.now()}
	}
	r.forget(client.ObjectKeyFromObject(job))
	return ctrl.Result{}, r.setStatus(ctx, job, st)
}

// invalidSpec is a job the operator cannot run as written.
type invalidSpec struct{ error }

// prepare resolves what job's pods are made of, and what each of them asks
// of a node.
func prepare(job *v1alpha1.TrainingJob, image string, its []amlarcv1alpha1.InstanceType) (*podPlan, demand, error) {
	var errs []error
	if job.Spec.InstanceCount < 1 {
		errs = append(errs, fmt.Errorf("instanceCount %d: a job runs on at least 1 instance", job.Spec.InstanceCount))
	}
	if job.Spec.Image == "" {
		errs = append(errs, errors.New("no image"))
	}
	if job.Spec.SecretName == "" {
		errs = append(errs, errors.New("no secretName"))
	}
	var typ string
	if job.Spec.Distribution != nil {
		typ = job.Spec.Distribution.Type
	}
	plugin, err := framework.For(typ)
	if err != nil {
		errs = append(errs, err)
	}
	shm, err := parseShmSize(job.Spec.ShmSize)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, demand{}, invalidSpec{err}
	}
	world, err := framework.NewWorld(plugin, job.Spec.Distribution, int(job.Spec.InstanceCount), hosts(job))
	if err != nil {
		return nil, demand{}, invalidSpec{err}
	}
	it, err := resolveInstanceType(job.Spec.InstanceType, its)
	if err != nil {
		return nil, demand{}, err
	}
	plan := &podPlan{image: image, instanceType: it, plugin: plugin, world: world, shm: shm}
	name := job.Spec.InstanceType
	if name == "" {
		name = DefaultInstanceType
	}
	return plan, demand{
		instanceType: name,
		count:        int(job.Spec.InstanceCount),
		requests:     podRequests(buildPod(job, 0, "", *plan)),
		nodeSelector: it.NodeSelector,
	}, nil
}

// prepare is prepare with the operator's image.
func (r *reconciler) prepare(job *v1alpha1.TrainingJob, its []amlarcv1alpha1.InstanceType) (*podPlan, demand, error) {
	plan, d, err := prepare(job, r.image, its)
	if plan != nil {
		plan.wrapperKey, plan.copies = r.wrapperKey, r.copies
		_, plan.copyWrapper = r.copyWrapper.Load(job.Namespace)
	}
	return plan, d, err
}

func (r *reconciler) instanceTypes(ctx context.Context) ([]amlarcv1alpha1.InstanceType, error) {
	var list amlarcv1alpha1.InstanceTypeList
	if err := r.client.List(ctx, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// failPrepare records why prepare refused job.
func (r *reconciler) failPrepare(ctx context.Context, job *v1alpha1.TrainingJob, err error) error {
	var nf errInstanceTypeNotFound
	if errors.As(err, &nf) {
		return r.fail(ctx, job, ReasonInstanceTypeNotFound, nf.msg)
	}
	return r.fail(ctx, job, ReasonInvalidSpec, err.Error())
}

// admit decides on a job that waits for admission, by a pass over every
// waiting job; a pass that ran meanwhile may have admitted it already.
func (r *reconciler) admit(ctx context.Context, job *v1alpha1.TrainingJob) (ctrl.Result, error) {
	r.admitting.Lock()
	pl, ok := r.placementOf(job)
	var err error
	if !ok {
		err = r.pass(ctx, job)
		pl, ok = r.placementOf(job)
	}
	r.admitting.Unlock()
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case !ok:
		// Queued (or failed): the pass wrote why.
		return ctrl.Result{RequeueAfter: queuedRecheck}, nil
	}
	return r.start(ctx, job, pl)
}

// pass decides, in queue order, for every job that waits for admission, on
// one view of the cluster: each that fits takes its room, one that does
// not waits without holding back the jobs behind it (see admit in
// admission.go). One view for all of them keeps the work of a burst of
// jobs, or of a burst of pods ending, proportional to the jobs rather than
// to the jobs squared. The jobs admitted go to their own reconcile, which
// starts them; for the job being reconciled (cur, nil for none) the
// caller does. Errors of writing other jobs' status are logged: each job's
// own recheck retries them. The caller holds r.admitting.
func (r *reconciler) pass(ctx context.Context, cur *v1alpha1.TrainingJob) error {
	its, err := r.instanceTypes(ctx)
	if err != nil {
		return err
	}
	cluster, err := r.cluster(ctx, its)
	if err != nil {
		return err
	}
	var jobs v1alpha1.TrainingJobList
	// Read only: status writes go to copies.
	if err := r.client.List(ctx, &jobs, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var queue []*v1alpha1.TrainingJob
	for i := range jobs.Items {
		if j := &jobs.Items[i]; r.pending(j) {
			queue = append(queue, j)
		}
	}
	slices.SortFunc(queue, queueOrder)
	var curErr error
	for _, j := range queue {
		isCur := cur != nil && j.UID == cur.UID
		var err error
		plan, d, perr := r.prepare(j, its)
		if perr != nil {
			err = r.failPrepare(ctx, j.DeepCopy(), perr)
		} else {
			switch v := place(cluster, d); {
			case v.never != "":
				err = r.fail(ctx, j.DeepCopy(), ReasonUnschedulable, v.never)
			case v.wait != "":
				st := v1alpha1.TrainingJobStatus{Phase: api.ClusterJobQueued, Reason: ReasonUnschedulable, Message: v.wait}
				err = r.setStatus(ctx, j.DeepCopy(), st)
			default:
				r.remember(client.ObjectKeyFromObject(j), placement{uid: j.UID, nodes: v.nodes, requests: d.requests, plan: plan})
				r.log.Info("job admitted", "job", describeJob(j), "nodes", v.nodes)
				if !isCur && r.starts != nil {
					select {
					case r.starts <- event.GenericEvent{Object: &v1alpha1.TrainingJob{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name}}}:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
		}
		switch {
		case isCur:
			curErr = err
		case err != nil:
			r.log.Error(err, "admission", "job", describeJob(j))
		}
	}
	return curErr
}

// start records an admission in the job's status, then creates the job's
// pods. The job's Secret is read only now, once: a job that waits costs the
// API server nothing.
func (r *reconciler) start(ctx context.Context, job *v1alpha1.TrainingJob, pl placement) (ctrl.Result, error) {
	var secret corev1.Secret
	if err := r.reader.Get(ctx, types.NamespacedName{Namespace: job.Namespace, Name: job.Spec.SecretName}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(client.ObjectKeyFromObject(job)) // its room goes back
			return ctrl.Result{}, r.fail(ctx, job, ReasonSecretNotFound,
				fmt.Sprintf("the job's credentials secret %q does not exist in namespace %s", job.Spec.SecretName, job.Namespace))
		}
		return ctrl.Result{}, err
	}
	// The status records the admission before any pod exists, so that a
	// restarted operator finishes the job's pods on the same nodes instead
	// of placing them anew.
	st := v1alpha1.TrainingJobStatus{Phase: api.ClusterJobStarting}
	for i, n := range pl.nodes {
		st.Instances = append(st.Instances, v1alpha1.InstanceStatus{Index: int32(i), Pod: PodName(job.Name, i), Node: n})
	}
	if err := r.setStatus(ctx, job, st); err != nil {
		return ctrl.Result{}, err
	}
	pl.recorded = true
	r.remember(client.ObjectKeyFromObject(job), pl)
	return r.run(ctx, job, pl, nil)
}

// run creates the pods an admitted job lacks and records its status.
func (r *reconciler) run(ctx context.Context, job *v1alpha1.TrainingJob, pl placement, owned []*corev1.Pod) (ctrl.Result, error) {
	pods := byInstance(job, owned)
	var result ctrl.Result
	serviceMade := false
	for i, p := range pods {
		seen := i < len(job.Status.Instances) && job.Status.Instances[i].Phase != ""
		if p != nil || seen {
			continue // there, or gone after it was seen (podStatus says so)
		}
		if pl.nodes[i] == "" {
			r.cleanup(ctx, job, owned)
			return ctrl.Result{}, r.fail(ctx, job, ReasonPodDeleted,
				fmt.Sprintf("pod %s of instance %d is gone and the job's admission is not recorded", PodName(job.Name, i), i))
		}
		if pl.plan == nil {
			its, err := r.instanceTypes(ctx)
			if err != nil {
				return ctrl.Result{}, err
			}
			plan, _, err := r.prepare(job, its)
			if err != nil {
				return ctrl.Result{}, r.failPrepare(ctx, job, err)
			}
			pl.plan = plan
		}
		if job.Spec.InstanceCount > 1 && !serviceMade {
			if err := r.ensureService(ctx, job); err != nil {
				return ctrl.Result{}, err
			}
			serviceMade = true
		}
		if _, refused := r.copyWrapper.Load(job.Namespace); refused && !pl.plan.copyWrapper {
			plan := *pl.plan // admitted before the namespace's refusal was known
			plan.copyWrapper = true
			pl.plan = &plan
		}
		pod := buildPod(job, i, pl.nodes[i], *pl.plan)
		err := r.client.Create(ctx, pod)
		if (apierrors.IsInvalid(err) || apierrors.IsForbidden(err)) && !pl.plan.copyWrapper {
			// Perhaps a policy that refuses the node's copy of the wrapper
			// (a hostPath volume, an install container that runs as root:
			// Pod Security's baseline and restricted levels, OpenShift's
			// SCCs). If a copy per pod passes, the namespace's pods make
			// one each from now on.
			plan := *pl.plan
			plan.copyWrapper = true
			copied := buildPod(job, i, pl.nodes[i], plan)
			if cerr := r.client.Create(ctx, copied); cerr == nil || apierrors.IsAlreadyExists(cerr) {
				r.log.Info("the namespace refuses the nodes' shared copy of the job wrapper; its pods copy it each", "namespace", job.Namespace, "refusal", err.Error())
				r.copyWrapper.Store(job.Namespace, true)
				pl.plan = &plan
				r.remember(client.ObjectKeyFromObject(job), pl)
				pod, err = copied, cerr
			}
		}
		switch {
		case err == nil:
		case apierrors.IsAlreadyExists(err):
			// Ours, which the cache does not show yet; or an earlier job's
			// of the same name, still going away: try again soon.
			result.RequeueAfter = conflictRetry
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
			// The instance type or the job asks for what the API server
			// refuses (limits below requests, a quota): no retry helps.
			r.cleanup(ctx, job, owned)
			return ctrl.Result{}, r.fail(ctx, job, ReasonPodRejected, fmt.Sprintf("pod %s: %v", pod.Name, err))
		default:
			return ctrl.Result{}, err
		}
	}
	st := podStatus(job, &job.Status, pods, r.now())
	fillNodes(&st, pl)
	if st.Phase == api.ClusterJobFailed {
		// One instance failing fails the job: the others would wait for
		// it forever.
		if err := r.deletePods(ctx, running(owned)); err != nil {
			return ctrl.Result{}, err
		}
	}
	if terminal(st.Phase) {
		r.forget(client.ObjectKeyFromObject(job))
	}
	return result, r.setStatus(ctx, job, st)
}

// ensureService makes the headless Service that gives the instances of a
// multi-instance job their stable names <pod>.<job> (see hosts). It lists
// not-ready addresses too: instances look each other up while starting.
// It goes with the job (owner reference).
func (r *reconciler) ensureService(ctx context.Context, job *v1alpha1.TrainingJob) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name, Namespace: job.Namespace, Labels: map[string]string{v1alpha1.LabelJob: job.Name},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, v1alpha1.GroupVersion.WithKind(v1alpha1.Kind))}},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 map[string]string{v1alpha1.LabelJob: job.Name},
			PublishNotReadyAddresses: true,
		},
	}
	if err := r.client.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("headless service of %s: %w", describeJob(job), err)
	}
	return nil
}

func (r *reconciler) cleanup(ctx context.Context, job *v1alpha1.TrainingJob, owned []*corev1.Pod) {
	if err := r.deletePods(ctx, running(owned)); err != nil {
		// The job's terminal phase brings it back here until they are gone.
		r.log.Error(err, "delete pods of failed job", "job", describeJob(job))
	}
}

// fillNodes keeps the admission's nodes for instances whose pods the cache
// does not show.
func fillNodes(st *v1alpha1.TrainingJobStatus, pl placement) {
	for i := range st.Instances {
		if st.Instances[i].Node == "" && i < len(pl.nodes) {
			st.Instances[i].Node = pl.nodes[i]
		}
	}
}

// byInstance indexes job's pods by instance; nil where there is none.
func byInstance(job *v1alpha1.TrainingJob, owned []*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, max(job.Spec.InstanceCount, 0))
	for _, p := range owned {
		if i := instanceOf(job, p); i >= 0 {
			out[i] = p
		}
	}
	return out
}

// cluster is the nodes with their free room: what the cached pods request,
// and what admitted jobs' pods that the cache does not show yet will.
func (r *reconciler) cluster(ctx context.Context, its []amlarcv1alpha1.InstanceType) ([]*nodeState, error) {
	// Read only, and every pod of the cluster: copies would cost more than
	// the admission itself.
	var nodes corev1.NodeList
	if err := r.client.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := r.client.List(ctx, &pods, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var jobs v1alpha1.TrainingJobList
	if err := r.client.List(ctx, &jobs, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	have := map[types.NamespacedName]bool{}
	for i := range pods.Items {
		have[client.ObjectKeyFromObject(&pods.Items[i])] = true
	}
	var reserved []reservation
	for i := range jobs.Items {
		job := &jobs.Items[i]
		pl, ok := r.placementOf(job)
		if !ok || terminal(job.Status.Phase) {
			continue
		}
		if pl.requests == nil {
			_, d, err := r.prepare(job, its)
			if err != nil {
				continue // it fails on its own reconcile; it holds nothing
			}
			pl.requests = d.requests
		}
		for n, node := range pl.nodes {
			if !have[types.NamespacedName{Namespace: job.Namespace, Name: PodName(job.Name, n)}] {
				reserved = append(reserved, reservation{node: node, requests: pl.requests})
			}
		}
	}
	return snapshot(nodes.Items, pods.Items, reserved), nil
}

// queueOrder is the order of admission: creation, then namespace and name.
func queueOrder(a, b *v1alpha1.TrainingJob) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
