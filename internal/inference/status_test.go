package inference

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/inference/v1alpha1"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// rolled is od's Deployment with ready of its replicas ready, all of the
// current template.
func rolled(od *v1alpha1.OnlineDeployment, replicas, ready int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(replicas),
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationTemplate: "cur"}}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: ready},
	}
}

type podMod func(*corev1.Pod)

func testPod(name string, mods ...podMod) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{AnnotationTemplate: "cur"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: ContainerName, Command: []string{"/outpost-wrapper/outpost", "score", "serve"}}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func unschedulable(msg string) podMod {
	return func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: msg})
	}
}

func server(cs corev1.ContainerStatus) podMod {
	return func(p *corev1.Pod) {
		cs.Name = ContainerName
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, cs)
	}
}

func initStatus(name string, cs corev1.ContainerStatus) podMod {
	return func(p *corev1.Pod) {
		cs.Name = name
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, cs)
	}
}

func running(startedAt time.Time, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(startedAt)}}}
}

func TestDeriveStatus(t *testing.T) {
	traceback := "Traceback (most recent call last):\n  File \"score.py\", line 3, in init\nValueError: no model"
	crashed := corev1.ContainerStatus{
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 10s"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error", Message: traceback}},
		RestartCount:         1,
	}
	crashedSilently := crashed
	crashedWithReason := crashed
	crashedWithReason.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
		Message: "the deployment's spec could not be read: 403"}}
	crashedSilently.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}
	restartedAfterInitFailed := running(t0, false)
	restartedAfterInitFailed.LastTerminationState = crashed.LastTerminationState
	imagePull := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
		Message: `Back-off pulling image "nope:1"`}}}
	fetchFailed := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1,
		Message: "the deployment's spec: 403 Forbidden"}}}
	succeeded := func(ready int32) *v1alpha1.OnlineDeploymentStatus {
		return &v1alpha1.OnlineDeploymentStatus{Phase: api.ClusterDeploymentSucceeded, ReadyReplicas: ready, ObservedGeneration: 1}
	}

	for _, c := range []struct {
		name        string
		replicas    int32 // the deployment's instanceCount
		prev        *v1alpha1.OnlineDeploymentStatus
		deploy      func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment
		pods        []*corev1.Pod
		now         time.Time
		phase       string
		reason      string
		message     string // contained
		wantReady   int32
		wantRecheck time.Duration
	}{
		{
			name: "no Deployment yet", replicas: 2,
			deploy: func(*v1alpha1.OnlineDeployment) *appsv1.Deployment { return nil },
			phase:  api.ClusterDeploymentCreating, message: "0 of 2 instances ready",
		},
		{
			name: "starting", replicas: 2, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 2, 1) },
			pods:  []*corev1.Pod{testPod("a", server(running(t0, true))), testPod("b", server(running(t0, false)))},
			now:   t0.Add(5 * time.Second),
			phase: api.ClusterDeploymentCreating, message: "1 of 2 instances ready", wantReady: 1,
			// readiness: initial delay 3 + period 5 x failure threshold 4.
			wantRecheck: 18 * time.Second,
		},
		{
			name: "all ready", replicas: 2, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 2, 2) },
			pods:  []*corev1.Pod{testPod("a", server(running(t0, true))), testPod("b", server(running(t0, true)))},
			phase: api.ClusterDeploymentSucceeded, wantReady: 2,
		},
		{
			name: "rolling out a new template", replicas: 1,
			deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment {
				d := rolled(od, 1, 1)
				d.Status.Replicas, d.Status.UpdatedReplicas = 2, 1 // the old pod serves; the new one starts
				return d
			},
			phase: api.ClusterDeploymentCreating, message: "1 of 1 instances ready", wantReady: 1,
		},
		{
			name: "init() raised", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", server(crashed))},
			phase: api.ClusterDeploymentFailed, reason: ReasonInitFailed, message: traceback,
		},
		{
			name: "init() raised, restarted since", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", server(restartedAfterInitFailed))},
			now:   t0.Add(time.Second),
			phase: api.ClusterDeploymentFailed, reason: ReasonInitFailed, message: "ValueError: no model",
		},
		{
			name: "the server failed before init() with its reason", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", server(crashedWithReason))},
			phase: api.ClusterDeploymentFailed, reason: ReasonContainerFailed, message: "the deployment's spec could not be read",
		},
		{
			name: "crash loop without a message", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", server(crashedSilently))},
			phase: api.ClusterDeploymentFailed, reason: ReasonCrashLoop, message: "keeps exiting (exit code 1; 1 restarts)",
		},
		{
			name: "image not pulled", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", server(imagePull))},
			phase: api.ClusterDeploymentFailed, reason: "ImagePullBackOff", message: `Back-off pulling image "nope:1"`,
		},
		{
			name: "model fetch failed", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", initStatus(FetchName, fetchFailed))},
			phase: api.ClusterDeploymentFailed, reason: ReasonFetchFailed, message: "fetching the model failed: the deployment's spec: 403 Forbidden",
		},
		{
			name: "no room", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", unschedulable("0/1 nodes are available: 1 Insufficient cpu."))},
			phase: api.ClusterDeploymentFailed, reason: ReasonUnschedulable, message: "0/1 nodes are available: 1 Insufficient cpu.",
		},
		{
			name: "no room for the third while creating", replicas: 3, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 3, 2) },
			pods: []*corev1.Pod{testPod("a", server(running(t0, true))), testPod("b", server(running(t0, true))),
				testPod("c", unschedulable("0/1 nodes are available: 1 Insufficient memory."))},
			phase: api.ClusterDeploymentFailed, reason: ReasonUnschedulable, message: "Insufficient memory", wantReady: 2,
		},
		{
			name: "no room for an instance added once up", replicas: 3, prev: succeeded(2),
			deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 3, 2) },
			pods: []*corev1.Pod{testPod("a", server(running(t0, true))), testPod("b", server(running(t0, true))),
				testPod("c", unschedulable("0/1 nodes are available: 1 Insufficient memory."))},
			phase: api.ClusterDeploymentSucceeded, reason: ReasonUnschedulable, message: "Insufficient memory", wantReady: 2,
		},
		{
			name: "instances being added once up", replicas: 3, prev: succeeded(1),
			deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 3, 2) },
			pods:   []*corev1.Pod{testPod("a", server(running(t0, true))), testPod("b", server(running(t0, true))), testPod("c")},
			phase:  api.ClusterDeploymentSucceeded, wantReady: 2,
		},
		{
			name: "an instance lost once up", replicas: 2, prev: succeeded(2),
			deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 2, 1) },
			pods:   []*corev1.Pod{testPod("a", server(running(t0, true))), testPod("b")},
			phase:  api.ClusterDeploymentCreating, message: "1 of 2 instances ready", wantReady: 1,
		},
		{
			name: "readiness never passed", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods:  []*corev1.Pod{testPod("a", server(running(t0, false)))},
			now:   t0.Add(23 * time.Second),
			phase: api.ClusterDeploymentFailed, reason: ReasonProbeFailed, message: "(GET / on port 5001) did not pass within 23s",
		},
		{
			name: "ready once, not now", replicas: 1, deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods: []*corev1.Pod{testPod("a", server(running(t0, false)), func(p *corev1.Pod) {
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse,
					LastTransitionTime: metav1.NewTime(t0.Add(time.Minute))})
			})},
			now:   t0.Add(2 * time.Minute),
			phase: api.ClusterDeploymentCreating, message: "0 of 1 instances ready",
		},
		{
			name: "a failing pod of the old template does not count", replicas: 1,
			deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 1) },
			pods: []*corev1.Pod{testPod("new", server(running(t0, true))), testPod("old", server(crashed), func(p *corev1.Pod) {
				p.Annotations[AnnotationTemplate] = "old"
			})},
			phase: api.ClusterDeploymentSucceeded, wantReady: 1,
		},
		{
			name: "a pod being deleted does not count", replicas: 1,
			deploy: func(od *v1alpha1.OnlineDeployment) *appsv1.Deployment { return rolled(od, 1, 0) },
			pods: []*corev1.Pod{testPod("a", server(crashed), func(p *corev1.Pod) {
				p.DeletionTimestamp = &metav1.Time{Time: t0}
			})},
			phase: api.ClusterDeploymentCreating,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			od := testDeployment()
			od.Spec.Scale.InstanceCount = c.replicas
			if c.prev != nil {
				od.Status = *c.prev
			}
			now := c.now
			if now.IsZero() {
				now = t0
			}
			st, recheck := deriveStatus(od, c.deploy(od), c.pods, now)
			if st.Phase != c.phase || st.Reason != c.reason || !strings.Contains(st.Message, c.message) {
				t.Errorf("status %s %q %q, want %s %q and a message with %q", st.Phase, st.Reason, st.Message, c.phase, c.reason, c.message)
			}
			if st.Replicas != c.replicas || st.ReadyReplicas != c.wantReady || st.ObservedGeneration != od.Generation {
				t.Errorf("replicas %d ready %d generation %d, want %d, %d, %d", st.Replicas, st.ReadyReplicas, st.ObservedGeneration,
					c.replicas, c.wantReady, od.Generation)
			}
			if recheck != c.wantRecheck {
				t.Errorf("recheck in %s, want %s", recheck, c.wantRecheck)
			}
		})
	}
}
