package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

// A deleted pod that a finalizer keeps in the API ends as the kubelet ends it:
// its processes gone for good (restartPolicy Always does not bring them back),
// phase Failed, the container terminated with its exit code, Ready False; and
// it goes once the finalizer is removed. Before the fix the pod stayed Running
// and Ready, and the node started its container again.
func TestDeletedPodWithFinalizerReachesFinalStatus(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	marker := "marker-" + rand.String(8)
	const finalizer = "outpost.dev/test-hold"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{finalizer}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{Name: "main", Image: "debian:12",
				Command: []string{"python3", "-c", "import time; time.sleep(1000)", marker}}},
		},
	}
	createPod(t, c, ns, pod)
	// Without the finalizer removed, the namespace could never be deleted.
	t.Cleanup(func() { removeFinalizers(t, ns, pod.Name) })
	waitPod(t, c, ns, pod.Name, 30*time.Second, "ready", isReady)
	clustertest.Eventually(t, 10*time.Second, "container process visible", func() error {
		if n := len(clustertest.Processes(marker)); n != 1 {
			return fmt.Errorf("%d processes", n)
		}
		return nil
	})

	if err := c.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 15*time.Second, "processes gone", func() error {
		if pids := clustertest.Processes(marker); len(pids) > 0 {
			return fmt.Errorf("still running: %v", pids)
		}
		return nil
	})
	p := waitPod(t, c, ns, pod.Name, 15*time.Second, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if isReady(p) {
		t.Errorf("a Failed pod is still Ready: %+v", p.Status.Conditions)
	}
	if len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("container statuses %+v", p.Status.ContainerStatuses)
	}
	cs := p.Status.ContainerStatuses[0]
	// python3 dies of SIGTERM: 128 + 15.
	if term := cs.State.Terminated; term == nil || term.ExitCode != 143 || term.Reason != "Error" || term.FinishedAt.IsZero() || cs.Ready {
		t.Fatalf("container status %+v; want terminated, exit code 143, reason Error, finishedAt, not ready", cs)
	}

	// Nothing runs again while the finalizer holds the pod: the node must not
	// restart the container of a deleted pod. Observed for longer than the
	// node's first restart back-off (1 s) and a start.
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if pids := clustertest.Processes(marker); len(pids) > 0 {
			t.Fatalf("the deleted pod's container runs again: %v", pids)
		}
		p, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.State.Terminated == nil || p.Status.Phase != corev1.PodFailed {
			t.Fatalf("the deleted pod changed: phase %s, container %+v", p.Status.Phase, cs)
		}
	}

	removeFinalizers(t, ns, pod.Name)
	clustertest.Eventually(t, 15*time.Second, "pod gone once its finalizer is removed", func() error {
		_, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// removeFinalizers empties a pod's finalizers; a pod already gone is fine.
func removeFinalizers(t *testing.T, ns, name string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": nil}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = clustertest.Cluster.Client.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("remove finalizers of %s: %v", name, err)
	}
}

// An evicted Job pod (Job pods carry the job-tracking finalizer) is replaced
// by the Job controller and then disappears, as in upstream's conformance test
// of a pod failure policy that ignores disruptions: with such a policy the
// controller replaces a pod, and removes its finalizer, only once the pod has
// failed, so the node must give the deleted pod its final status. Before the
// fix the evicted pod stayed Running and Terminating forever, and the Job got
// no replacement.
func TestEvictedJobPodIsReplacedAndGoes(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "evicted"},
		Spec: batchv1.JobSpec{
			// A failure that the policy does not ignore would fail the Job.
			BackoffLimit: ptr.To[int32](0),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionIgnore,
				OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{
					Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
			}}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:                 corev1.RestartPolicyNever,
				TerminationGracePeriodSeconds: ptr.To[int64](5),
				Containers:                    []corev1.Container{shell("main", "sleep 1000")},
			}},
		},
	}
	if _, err := c.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Stop the Job at the end, so that its pods do not outlive the test.
	t.Cleanup(func() {
		_ = c.BatchV1().Jobs(ns).Delete(context.Background(), job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	})
	jobPods := func() ([]corev1.Pod, error) {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
		if err != nil {
			return nil, err
		}
		return pods.Items, nil
	}
	var first corev1.Pod
	clustertest.Eventually(t, 60*time.Second, "job pod running", func() error {
		pods, err := jobPods()
		if err != nil {
			return err
		}
		if len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
			return fmt.Errorf("%d pods", len(pods))
		}
		first = pods[0]
		return nil
	})
	if len(first.Finalizers) == 0 {
		t.Fatalf("job pod without finalizers: the test would not show what it is meant to")
	}
	if err := c.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: first.Name, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 60*time.Second, "a replacement runs and the evicted pod is gone", func() error {
		pods, err := jobPods()
		if err != nil {
			return err
		}
		var states []string
		replaced := false
		for _, p := range pods {
			states = append(states, fmt.Sprintf("%s %s deleting=%v", p.Name, p.Status.Phase, p.DeletionTimestamp != nil))
			if p.UID != first.UID && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				replaced = true
			}
		}
		if !replaced || len(pods) != 1 {
			return fmt.Errorf("pods %v", states)
		}
		return nil
	})
}
