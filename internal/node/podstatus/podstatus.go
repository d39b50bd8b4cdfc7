// Package podstatus writes the statuses of a node's pods to the API, as the
// kubelet's status manager does: the node records the status each pod should
// have, and a syncer pushes the latest one until it lands. A write that fails
// (the apiserver restarting, a conflict, an admission error) is retried with
// back-off rather than lost, so a pod that has ended always ends Succeeded or
// Failed in the API, which is what a Job's controller waits for.
package podstatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// Retry back-off of a pod whose write failed: from RetryMin doubling up to
// RetryMax, so a pod's status lands within RetryMax of the apiserver coming back.
const (
	RetryMin = 100 * time.Millisecond
	RetryMax = 10 * time.Second
)

// requestTimeout bounds one call to the apiserver: a hung connection must not
// hold a pod's writes up forever.
const requestTimeout = 15 * time.Second

// Ref names one pod object; the UID tells it from a later pod of the same name.
type Ref struct {
	Namespace, Name string
	UID             types.UID
}

// RefOf is the Ref of a pod.
func RefOf(pod *corev1.Pod) Ref {
	return Ref{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Manager keeps the status each pod should have and writes it.
type Manager struct {
	client kubernetes.Interface
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[types.UID]
	now    func() metav1.Time

	mu   sync.Mutex
	pods map[types.UID]*entry
}

type entry struct {
	ref     Ref
	status  *corev1.PodStatus // the latest wanted; nil: nothing to write
	version uint64            // bumped whenever status changes
	written uint64            // the version the API has
	remove  bool              // delete the pod object once status is written
	// last is the pod as the last write left it, the base of the next
	// write: the node writes a pod's status several times as it starts,
	// and a read before each would double the calls. A write on a stale
	// base fails with a conflict, and the retry reads.
	last *corev1.Pod
}

func (e *entry) idle() bool { return (e.status == nil || e.written == e.version) && !e.remove }

// New returns a manager; Run makes it write.
func New(client kubernetes.Interface, log *slog.Logger) *Manager {
	return &Manager{
		client: client,
		log:    log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.UID](RetryMin, RetryMax),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: "podstatus"}),
		now:  metav1.Now,
		pods: map[types.UID]*entry{},
	}
}

// Run writes statuses with the given number of concurrent writers until ctx
// ends. Writes pending then are dropped: call Flush first to give them a chance.
func (m *Manager) Run(ctx context.Context, writers int) {
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for m.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	m.queue.ShutDown()
	wg.Wait()
}

// Set records the status the pod should have. The caller computes it under
// its own lock and calls Set under that lock too, so that of two concurrent
// changes the later one is the one that stays.
func (m *Manager) Set(ref Ref, status corev1.PodStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.pods[ref.UID]
	if e == nil {
		e = &entry{ref: ref}
		m.pods[ref.UID] = e
	}
	if e.status != nil && apiequality.Semantic.DeepEqual(*e.status, status) {
		return
	}
	e.status = status.DeepCopy()
	e.version++
	m.queue.Add(ref.UID)
}

// Delete removes the pod object from the API once the latest status set for it
// is written (or at once when none was): the pod's final phase must be seen
// before the pod goes, as the kubelet does it.
func (m *Manager) Delete(ref Ref) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.pods[ref.UID]
	if e == nil {
		e = &entry{ref: ref}
		m.pods[ref.UID] = e
	}
	e.remove = true
	m.queue.Add(ref.UID)
}

// Forget drops what is known of a pod that is gone from the API.
func (m *Manager) Forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pods, uid)
}

// Flush waits until every status set so far is written and every pod to
// delete is deleted, or ctx ends.
func (m *Manager) Flush(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, e := range m.pods {
			if !e.idle() {
				return false, nil
			}
		}
		return true, nil
	})
}

func (m *Manager) next(ctx context.Context) bool {
	uid, quit := m.queue.Get()
	if quit {
		return false
	}
	defer m.queue.Done(uid)
	if err := m.sync(ctx, uid); err != nil {
		if ctx.Err() != nil {
			return true // stopping: the node writes the pods' statuses again when it comes back
		}
		m.log.Warn("pod status not written yet; retrying", "pod", m.ref(uid).String(),
			"attempt", m.queue.NumRequeues(uid)+1, "err", err)
		m.queue.AddRateLimited(uid)
		return true
	}
	m.queue.Forget(uid)
	return true
}

func (m *Manager) ref(uid types.UID) Ref {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.pods[uid]; e != nil {
		return e.ref
	}
	return Ref{UID: uid}
}

// errGone is a pod whose object is no longer the one the status was meant for.
var errGone = errors.New("pod gone")

// sync brings the API up to date with what is wanted for one pod.
func (m *Manager) sync(ctx context.Context, uid types.UID) error {
	m.mu.Lock()
	e := m.pods[uid]
	if e == nil {
		m.mu.Unlock()
		return nil
	}
	ref, version, remove, last := e.ref, e.version, e.remove, e.last
	var status *corev1.PodStatus
	if e.status != nil && e.written != e.version {
		status = e.status.DeepCopy()
	}
	m.mu.Unlock()

	if status != nil {
		pod, err := m.write(ctx, ref, status, last)
		if errors.Is(err, errGone) || apierrors.IsNotFound(err) {
			m.drop(e)
			return nil
		}
		if err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		m.mu.Lock()
		e.written = max(e.written, version)
		e.last = pod
		pending := e.written != e.version
		m.mu.Unlock()
		if pending {
			// A newer status came meanwhile; Set queued the pod again, and
			// the delete waits for that one.
			return nil
		}
	}
	if remove {
		err := m.client.CoreV1().Pods(ref.Namespace).Delete(ctx, ref.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &ref.UID},
		})
		// Conflict: the UID precondition failed, the name belongs to a new pod.
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete pod: %w", err)
		}
		m.drop(e)
	}
	return nil
}

func (m *Manager) drop(e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pods[e.ref.UID] == e {
		delete(m.pods, e.ref.UID)
	}
}

// write puts the wanted status on the pod's latest version, and returns the
// pod as written. An update, not a patch: a conflict (someone else changed
// the pod meanwhile, or base is stale) re-reads and reapplies, keeping the
// conditions other components own. base, when set, is the pod as this
// manager last wrote it, which saves the read.
func (m *Manager) write(ctx context.Context, ref Ref, wanted *corev1.PodStatus, base *corev1.Pod) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	pods := m.client.CoreV1().Pods(ref.Namespace)
	var written *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		pod := base
		base = nil // a retry reads
		if pod == nil {
			var err error
			if pod, err = pods.Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		} else {
			pod = pod.DeepCopy()
		}
		if pod.UID != ref.UID {
			return errGone
		}
		pod.Status = merge(pod.Status, *wanted, m.now())
		var err error
		written, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	return written, err
}

// merge is the status to write: the fields the node owns from wanted, the
// others (qosClass, set by the apiserver; nominatedNodeName, by the scheduler)
// and the conditions the node does not set (DisruptionTarget, readiness gates')
// as they are; a condition's transition time kept while its status stays; and
// a phase that never leaves Succeeded or Failed, which the API treats as final.
func merge(current, wanted corev1.PodStatus, now metav1.Time) corev1.PodStatus {
	out := *current.DeepCopy()
	w := wanted.DeepCopy()
	out.Phase, out.StartTime = w.Phase, w.StartTime
	out.HostIP, out.HostIPs, out.PodIP, out.PodIPs = w.HostIP, w.HostIPs, w.PodIP, w.PodIPs
	out.InitContainerStatuses, out.ContainerStatuses = w.InitContainerStatuses, w.ContainerStatuses
	if w.Reason != "" { // why the node ended the pod (DeadlineExceeded)
		out.Reason, out.Message = w.Reason, w.Message
	}
	ours := map[corev1.PodConditionType]bool{}
	for i, c := range w.Conditions {
		ours[c.Type] = true
		w.Conditions[i].LastTransitionTime = now
		for _, old := range current.Conditions {
			if old.Type == c.Type && old.Status == c.Status && !old.LastTransitionTime.IsZero() {
				w.Conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	out.Conditions = w.Conditions
	for _, old := range current.Conditions {
		if !ours[old.Type] {
			out.Conditions = append(out.Conditions, old)
		}
	}
	if final(current.Phase) && !final(out.Phase) {
		out.Phase = current.Phase
	}
	return out
}

func final(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }
