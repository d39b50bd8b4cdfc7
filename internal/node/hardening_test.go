package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

// holdTerminalStatus makes the apiserver refuse, in namespace ns, every status
// write that would end a pod labelled outpost-test/hold, as an apiserver that
// is down or answers conflicts would, until the returned release is called.
func holdTerminalStatus(t *testing.T, ns string) (release func()) {
	t.Helper()
	c := clustertest.Cluster.Client
	ctx := context.Background()
	name := "hold-status-" + ns
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"outpost-test/hold": "true"}},
				ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
						Resources: []string{"pods/status"}},
				}}},
			},
			Validations: []admissionv1.Validation{{
				Expression: "!has(object.status.phase) || !(object.status.phase in ['Succeeded', 'Failed'])",
				Message:    "outpost test: final pod status held back",
			}},
		},
	}
	if _, err := c.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	}
	if _, err := c.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	release = func() {
		err := c.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete binding: %v", err)
		}
	}
	t.Cleanup(func() {
		release()
		if err := c.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete policy: %v", err)
		}
	})
	return release
}

// A Job's pod that exits while the apiserver refuses its final status must
// still end Succeeded once the apiserver takes it, and the Job Complete. Before
// the fix the node gave up after the first failed write: the pod stayed
// Running and the Job never finished.
func TestJobEndsAfterRefusedStatusWrites(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	release := holdTerminalStatus(t, ns)
	exit := filepath.Join(hostDir(t), "exit")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "held"},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"outpost-test/hold": "true"}},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				// The container sees the host's files: it ends when the test says so.
				Containers: []corev1.Container{shell("main", "while [ ! -e "+exit+" ]; do sleep 0.1; done; echo done")},
			},
		}},
	}
	if _, err := c.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	clustertest.Eventually(t, 60*time.Second, "job pod running", func() error {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=held"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 || pods.Items[0].Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pods %d", len(pods.Items))
		}
		pod = &pods.Items[0]
		return nil
	})
	// The policy takes effect a moment after it is made: a dry run shows when.
	clustertest.Eventually(t, 30*time.Second, "final status refused", func() error {
		p := pod.DeepCopy()
		p.Status.Phase = corev1.PodSucceeded
		_, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "final pod status held back") {
			return fmt.Errorf("dry run: %v", err)
		}
		return nil
	})
	if err := os.WriteFile(exit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The node says that it could not write, and keeps trying.
	clustertest.Eventually(t, 30*time.Second, "node logs the refused write", func() error {
		log, err := os.ReadFile(clustertest.Cluster.Config.LogPath("node"))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "pod status not written yet") && strings.Contains(line, ns+"/"+pod.Name) &&
				strings.Contains(line, "final pod status held back") {
				return nil
			}
		}
		return fmt.Errorf("no such line in the node log")
	})
	if p, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodRunning {
		t.Fatalf("the policy did not hold the final status back: phase %v, err %v", p.Status.Phase, err)
	}
	release()

	clustertest.Eventually(t, 60*time.Second, "job complete", func() error {
		j, err := c.BatchV1().Jobs(ns).Get(ctx, "held", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range j.Status.Conditions {
			if cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", j.Status.Conditions)
	})
	p, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if term := p.Status.ContainerStatuses[0].State.Terminated; p.Status.Phase != corev1.PodSucceeded || term == nil || term.ExitCode != 0 {
		t.Fatalf("pod phase %s, state %+v; want Succeeded, exit code 0", p.Status.Phase, p.Status.ContainerStatuses[0].State)
	}
}

// Deleting a pod sends SIGTERM to every process of its containers, not only
// the first: a script's background workers shut down gracefully and the pod
// goes well before its grace period ends. Before the fix the workers never
// heard of it and were killed at the end of the grace period.
func TestDeletePodTerminatesEveryProcess(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	dir := hostDir(t)
	worker := func(name string) string {
		ready, stopped := filepath.Join(dir, name+".ready"), filepath.Join(dir, name+".stopped")
		return fmt.Sprintf(`sh -c 'trap "echo stopped > %s; exit 0" TERM; touch %s; sleep 1000 & wait'`, stopped, ready)
	}
	const grace = 30 * time.Second
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "workers"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To(int64(grace / time.Second)),
		Containers: []corev1.Container{shell("main",
			"trap 'wait; exit 0' TERM; "+worker("a")+" & "+worker("b")+" & (setsid "+worker("c")+" &); wait")},
	}}
	createPod(t, c, ns, pod)
	clustertest.Eventually(t, 30*time.Second, "workers ready", func() error {
		for _, w := range []string{"a", "b", "c"} {
			if _, err := os.Stat(filepath.Join(dir, w+".ready")); err != nil {
				return err
			}
		}
		return nil
	})
	t0 := time.Now()
	if err := c.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, grace/2, "pod gone well before its grace period ends", func() error {
		_, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there after %s (%v)", time.Since(t0).Round(time.Second), err)
	})
	for _, w := range []string{"a", "b", "c"} {
		if _, err := os.Stat(filepath.Join(dir, w+".stopped")); err != nil {
			t.Errorf("worker %s did not get SIGTERM: %v", w, err)
		}
	}
}

// The process node cannot run a container as another user or confined: a
// pod that asks for it is told so by a Warning event, not left to believe it.
func TestIgnoredSecurityContextIsReported(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	main := shell("main", "sleep 1000")
	main.SecurityContext = &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hardened"}, Spec: corev1.PodSpec{
		SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000)},
		Containers:                    []corev1.Container{main},
		TerminationGracePeriodSeconds: ptr.To[int64](1),
	}}
	createPod(t, c, ns, pod)
	clustertest.Eventually(t, 30*time.Second, "SecurityContextIgnored event", func() error {
		evs, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
			"involvedObject.name": pod.Name, "reason": "SecurityContextIgnored"}.String()})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return fmt.Errorf("no event")
		}
		msg := evs.Items[0].Message
		for _, f := range []string{"spec.securityContext.runAsUser", "spec.securityContext.runAsNonRoot",
			"container main: securityContext.capabilities.drop"} {
			if !strings.Contains(msg, f) || evs.Items[0].Type != corev1.EventTypeWarning {
				return fmt.Errorf("%s event %q does not name %s", evs.Items[0].Type, msg, f)
			}
		}
		// The node honours it (TestReadOnlyRootFilesystem): not to be reported.
		if strings.Contains(msg, "readOnlyRootFilesystem") {
			return fmt.Errorf("event %q names readOnlyRootFilesystem, which the node enforces", msg)
		}
		return nil
	})
	// A pod without such settings gets no such event.
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain-" + rand.String(4)}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{shell("main", "true")}}}
	createPod(t, c, ns, plain)
	waitPod(t, c, ns, plain.Name, 30*time.Second, "finished", finished)
	evs, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.name": plain.Name, "reason": "SecurityContextIgnored"}.String()})
	if err != nil || len(evs.Items) != 0 {
		t.Fatalf("events for a pod without securityContext: %v %v", evs, err)
	}
}
