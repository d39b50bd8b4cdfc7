package podstatus

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var podsResource = schema.GroupResource{Resource: "pods"}

func testPod(uid types.UID) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job-abc", UID: uid},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBestEffort, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Unix(1000, 0))},
		}},
	}
}

func succeeded() corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodSucceeded, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "PodCompleted"},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}, ContainerStatuses: []corev1.ContainerStatus{{Name: "main", State: corev1.ContainerState{
		Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}}}
}

// statusWrites makes the fake apiserver answer the first n status writes with
// what fail returns, and counts every status write.
func statusWrites(client *fake.Clientset, n int32, fail func(attempt int32) error) *atomic.Int32 {
	var count atomic.Int32
	client.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		if c := count.Add(1); c <= n {
			return true, nil, fail(c)
		}
		return false, nil, nil // on to the object tracker: the write lands
	})
	return &count
}

// start runs a manager on client and returns it with what it logged.
func start(t *testing.T, client *fake.Clientset) (*Manager, *syncBuffer) {
	t.Helper()
	var log syncBuffer
	m := New(client, slog.New(slog.NewTextHandler(&log, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done })
	return m, &log
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) { return cond() })
	if err != nil {
		t.Fatalf("%s: not true after %s: %v", what, timeout, err)
	}
}

func getPod(t *testing.T, client *fake.Clientset) *corev1.Pod {
	t.Helper()
	p, err := client.CoreV1().Pods("ns").Get(context.Background(), "job-abc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A pod's final status must reach the API even when the apiserver fails the
// first writes, each failure logged: a Job waits for that phase.
func TestFinalStatusLandsAfterFailedWrites(t *testing.T) {
	client := fake.NewClientset(testPod("uid-1"))
	writes := statusWrites(client, 4, func(attempt int32) error {
		if attempt%2 == 1 {
			return apierrors.NewServiceUnavailable("apiserver restarting")
		}
		return apierrors.NewInternalError(context.DeadlineExceeded)
	})
	m, log := start(t, client)
	m.Set(Ref{Namespace: "ns", Name: "job-abc", UID: "uid-1"}, succeeded())

	eventually(t, 10*time.Second, "pod Succeeded in the API", func() (bool, error) {
		return getPod(t, client).Status.Phase == corev1.PodSucceeded, nil
	})
	if n := writes.Load(); n != 5 {
		t.Errorf("%d status writes; want 4 failed and 1 that landed", n)
	}
	if got := strings.Count(log.String(), "pod status not written yet"); got != 4 {
		t.Errorf("%d failures logged, want 4; log:\n%s", got, log.String())
	}
	if !strings.Contains(log.String(), "apiserver restarting") || !strings.Contains(log.String(), "pod=ns/job-abc") {
		t.Errorf("the log does not say which pod failed and why:\n%s", log.String())
	}
}

// A conflict means the pod changed meanwhile: the write re-reads it and keeps
// what others set: the DisruptionTarget condition a Job's podFailurePolicy
// looks at, the apiserver's qosClass.
func TestConflictRereadsAndKeepsOthersConditions(t *testing.T) {
	client := fake.NewClientset(testPod("uid-1"))
	statusWrites(client, 1, func(int32) error {
		p, err := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), "ns", "job-abc")
		if err != nil {
			return err
		}
		pod := p.(*corev1.Pod).DeepCopy()
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
			Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager"})
		if err := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), pod, "ns"); err != nil {
			return err
		}
		return apierrors.NewConflict(podsResource, "job-abc", nil)
	})
	m, _ := start(t, client)
	m.Set(Ref{Namespace: "ns", Name: "job-abc", UID: "uid-1"}, succeeded())

	eventually(t, 10*time.Second, "pod Succeeded in the API", func() (bool, error) {
		return getPod(t, client).Status.Phase == corev1.PodSucceeded, nil
	})
	conds := map[corev1.PodConditionType]corev1.PodCondition{}
	for _, c := range getPod(t, client).Status.Conditions {
		conds[c.Type] = c
	}
	if c, ok := conds[corev1.DisruptionTarget]; !ok || c.Status != corev1.ConditionTrue {
		t.Errorf("DisruptionTarget lost: conditions %+v", conds)
	}
	if c := conds[corev1.PodReady]; c.Status != corev1.ConditionFalse || c.LastTransitionTime.IsZero() {
		t.Errorf("Ready condition %+v; want False with a transition time", c)
	}
	if q := getPod(t, client).Status.QOSClass; q != corev1.PodQOSBestEffort {
		t.Errorf("qosClass %q; want the apiserver's BestEffort kept", q)
	}
	// Unchanged since the scheduler set it: its transition time stays.
	if c := conds[corev1.PodScheduled]; !c.LastTransitionTime.Time.Equal(time.Unix(1000, 0)) {
		t.Errorf("PodScheduled transition time %s; want the one the pod had", c.LastTransitionTime)
	}
}

// The node deletes a finished pod's object only after its final status is
// written, however long that takes; before the fix the object could go with
// its phase still Running.
func TestDeleteWaitsForTheFinalStatus(t *testing.T) {
	client := fake.NewClientset(testPod("uid-1"))
	writes := statusWrites(client, 3, func(int32) error { return apierrors.NewServiceUnavailable("down") })
	var mu sync.Mutex
	var order []string
	client.PrependReactor("*", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if a.GetVerb() == "update" || a.GetVerb() == "delete" {
			order = append(order, a.GetVerb()+"/"+a.GetSubresource())
		}
		return false, nil, nil
	})
	m, _ := start(t, client)
	ref := Ref{Namespace: "ns", Name: "job-abc", UID: "uid-1"}
	m.Set(ref, succeeded())
	m.Delete(ref)

	eventually(t, 10*time.Second, "pod object deleted", func() (bool, error) {
		_, err := client.CoreV1().Pods("ns").Get(context.Background(), "job-abc", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	mu.Lock()
	defer mu.Unlock()
	// The reactor added last runs first: order has the failed writes too.
	if strings.Join(order, " ") != "update/status update/status update/status update/status delete/" || writes.Load() != 4 {
		t.Errorf("calls %v after %d status writes; want the status written (after 3 failures), then the delete", order, writes.Load())
	}
}

// A status meant for a pod that was deleted and made again under the same
// name (a StatefulSet's pod) must not land on the new pod.
func TestStatusOfAReplacedPodIsDropped(t *testing.T) {
	client := fake.NewClientset(testPod("uid-new"))
	writes := statusWrites(client, 0, nil)
	m, _ := start(t, client)
	old := Ref{Namespace: "ns", Name: "job-abc", UID: "uid-old"}
	m.Set(old, succeeded())
	m.Delete(old)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	p := getPod(t, client)
	if p.Status.Phase != corev1.PodRunning || writes.Load() != 0 {
		t.Errorf("the new pod got the old one's status (phase %s, %d writes)", p.Status.Phase, writes.Load())
	}
}

// syncBuffer is a log destination that writers on several goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
