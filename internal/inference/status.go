package inference

import (
	"outpost.dev/outpost/internal/scoring"

	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/inference/v1alpha1"
)

// Waiting reasons of a container that no wait cures: the deployment fails
// with them as its reason.
var hardWaiting = map[string]bool{
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
}

// problem is what holds one instance back. hard problems fail the
// deployment; the others (no room) fail it only while it has never been
// up at its current generation.
type problem struct {
	hard            bool
	reason, message string
}

// deriveStatus is od's status from its apps/v1 Deployment (nil when it
// does not exist yet) and its pods, at now. recheck, when not 0, is when
// the status changes without any object changing: a readiness probe's
// window ends.
//
// Creating until every instance asked for is ready (the Deployment rolled
// out), then Succeeded. A deployment that has Succeeded at its generation
// stays Succeeded while instances are added (the autoscaler's: Replicas
// and ReadyReplicas tell how far they are); when it loses a ready
// instance it goes back to Creating until it has them all again.
// Failed, whatever came before, when an instance of the current template
// cannot run: init() raised (InitFailed, its traceback), the image cannot
// be pulled, the container crash-loops, the readiness probe never passes
// in its window (ProbeFailed); and Failed with Unschedulable (the
// scheduler's message) when an instance finds no room while the deployment
// has never been up at this generation.
func deriveStatus(od *v1alpha1.OnlineDeployment, deploy *appsv1.Deployment, pods []*corev1.Pod, now time.Time) (st v1alpha1.OnlineDeploymentStatus, recheck time.Duration) {
	want := desiredReplicas(od)
	st = v1alpha1.OnlineDeploymentStatus{
		Replicas:           want,
		LastScaleTime:      od.Status.LastScaleTime,
		ObservedGeneration: od.Generation,
	}
	if deploy == nil {
		st.Phase, st.Message = api.ClusterDeploymentCreating, fmt.Sprintf("0 of %d instances ready", want)
		return st, 0
	}
	st.ReadyReplicas = deploy.Status.ReadyReplicas
	current := deploy.Spec.Template.Annotations[AnnotationTemplate]
	var hard, soft *problem
	for _, p := range sortedPods(pods) {
		if p.DeletionTimestamp != nil || p.Annotations[AnnotationTemplate] != current {
			continue // going, or of an earlier template
		}
		pr, after := podProblem(od, p, now)
		if after > 0 && (recheck == 0 || after < recheck) {
			recheck = after
		}
		switch {
		case pr == nil:
		case pr.hard && hard == nil:
			hard = pr
		case !pr.hard && soft == nil:
			soft = pr
		}
	}
	s := deploy.Status
	rolledOut := s.ObservedGeneration >= deploy.Generation && deploy.Spec.Replicas != nil && *deploy.Spec.Replicas == want &&
		s.UpdatedReplicas == want && s.Replicas == want && s.ReadyReplicas >= want
	prev := od.Status
	established := prev.Phase == api.ClusterDeploymentSucceeded && prev.ObservedGeneration == od.Generation &&
		s.ReadyReplicas >= min(prev.ReadyReplicas, want)
	switch {
	case hard != nil:
		st.Phase, st.Reason, st.Message = api.ClusterDeploymentFailed, hard.reason, hard.message
	case rolledOut:
		st.Phase = api.ClusterDeploymentSucceeded
	case established:
		st.Phase = api.ClusterDeploymentSucceeded
		if soft != nil {
			st.Reason, st.Message = soft.reason, soft.message
		}
	case soft != nil:
		st.Phase, st.Reason, st.Message = api.ClusterDeploymentFailed, soft.reason, soft.message
	default:
		st.Phase, st.Message = api.ClusterDeploymentCreating, fmt.Sprintf("%d of %d instances ready", min(s.ReadyReplicas, want), want)
	}
	return st, recheck
}

func sortedPods(pods []*corev1.Pod) []*corev1.Pod {
	out := slices.Clone(pods)
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// podProblem is what holds pod back, nil when nothing does (it is ready,
// or on its way). after, when not 0, is how long until its readiness
// probe's window ends.
func podProblem(od *v1alpha1.OnlineDeployment, pod *corev1.Pod, now time.Time) (pr *problem, after time.Duration) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return &problem{reason: ReasonUnschedulable, message: c.Message}, 0
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if pr := initProblem(cs); pr != nil {
			return pr, 0
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		if pr := serverProblem(pod, cs); pr != nil {
			return pr, 0
		}
		return readinessProblem(od, pod, cs, now)
	}
	return nil, 0
}

func terminatedOf(cs corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if t := cs.State.Terminated; t != nil {
		return t
	}
	return cs.LastTerminationState.Terminated
}

func waitingProblem(cs corev1.ContainerStatus) *problem {
	w := cs.State.Waiting
	if w == nil || !hardWaiting[w.Reason] {
		return nil
	}
	msg := w.Message
	if msg == "" {
		msg = fmt.Sprintf("container %s is waiting: %s", cs.Name, w.Reason)
	}
	return &problem{hard: true, reason: w.Reason, message: msg}
}

// initProblem: an init container that cannot start or failed.
func initProblem(cs corev1.ContainerStatus) *problem {
	if pr := waitingProblem(cs); pr != nil {
		return pr
	}
	t := terminatedOf(cs)
	if t == nil || t.ExitCode == 0 {
		return nil
	}
	reason, what := ReasonInstallFailed, "installing the scoring server"
	if cs.Name == FetchName {
		reason, what = ReasonFetchFailed, "fetching the model"
	}
	return &problem{hard: true, reason: reason, message: what + " failed: " + exitMessage(t)}
}

// serverProblem: the serving container cannot start, failed at its start
// (init() raised: the scoring server writes the traceback as the
// termination message and exits), or keeps failing.
func serverProblem(pod *corev1.Pod, cs corev1.ContainerStatus) *problem {
	if pr := waitingProblem(cs); pr != nil {
		return pr
	}
	t := terminatedOf(cs)
	if t == nil {
		return nil
	}
	if msg := strings.TrimSpace(t.Message); msg != "" && t.ExitCode != 0 {
		// Only the scoring server's own exit code means init() raised; it
		// also leaves a message when the spec or the model cannot be
		// fetched, and a custom container may leave one on any exit.
		reason := ReasonContainerFailed
		if t.ExitCode == scoring.ExitInitFailed && isScoringServer(pod) {
			reason = ReasonInitFailed
		}
		return &problem{hard: true, reason: reason, message: msg}
	}
	if t.Reason == "OOMKilled" {
		limit := "(none)"
		for _, c := range pod.Spec.Containers {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; c.Name == ContainerName && ok {
				limit = q.String()
			}
		}
		return &problem{hard: true, reason: "OOMKilled", message: fmt.Sprintf("OOMKilled: an instance exceeded its memory limit %s", limit)}
	}
	if w := cs.State.Waiting; w != nil && w.Reason == ReasonCrashLoop {
		return &problem{hard: true, reason: ReasonCrashLoop,
			message: fmt.Sprintf("container %s keeps exiting (%s; %d restarts)", cs.Name, exitMessage(t), cs.RestartCount)}
	}
	return nil
}

// readinessProblem: a running container whose readiness probe has not
// passed within initialDelay + period*failureThreshold of its start. One
// that was ready since it started and lost it is not: it is overloaded or
// its liveness probe will restart it.
func readinessProblem(od *v1alpha1.OnlineDeployment, pod *corev1.Pod, cs corev1.ContainerStatus, now time.Time) (*problem, time.Duration) {
	r := cs.State.Running
	if r == nil || cs.Ready || r.StartedAt.IsZero() {
		return nil, 0
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse && c.LastTransitionTime.After(r.StartedAt.Time) {
			return nil, 0
		}
	}
	p := probeSettings(od.Spec.Readiness)
	window := time.Duration(p.InitialDelaySeconds+p.PeriodSeconds*p.FailureThreshold) * time.Second
	deadline := r.StartedAt.Add(window)
	if now.Before(deadline) {
		return nil, deadline.Sub(now)
	}
	_, readiness, _ := routes(od)
	return &problem{hard: true, reason: ReasonProbeFailed, message: fmt.Sprintf(
		"the readiness probe (GET %s on port %d) did not pass within %s of the container's start (initial delay %d s + period %d s x failure threshold %d)",
		readiness.Path, readiness.Port, window, p.InitialDelaySeconds, p.PeriodSeconds, p.FailureThreshold)}, 0
}

// exitMessage is a terminated container's message, or its exit code.
func exitMessage(t *corev1.ContainerStateTerminated) string {
	if m := strings.TrimSpace(t.Message); m != "" {
		return m
	}
	if t.Reason != "" && t.Reason != "Error" {
		return fmt.Sprintf("exit code %d (%s)", t.ExitCode, t.Reason)
	}
	return fmt.Sprintf("exit code %d", t.ExitCode)
}

// isScoringServer tells whether the pod's serving container runs Outpost's
// scoring server (not a custom container's own command).
func isScoringServer(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerName {
			return len(c.Command) > 0
		}
	}
	return false
}
