package training

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/training/v1alpha1"
)

// Reasons of the status, besides the kubelet's own (OOMKilled,
// DeadlineExceeded, Evicted, OutOfcpu, ...), which pass through.
const (
	ReasonCanceled             = "Canceled"
	ReasonUnschedulable        = "Unschedulable"
	ReasonInstanceTypeNotFound = "InstanceTypeNotFound"
	ReasonInvalidSpec          = "InvalidSpec"
	ReasonSecretNotFound       = "SecretNotFound"
	ReasonPodDeleted           = "PodDeleted"
	ReasonPodRejected          = "PodRejected"
	ReasonError                = "Error"
	ReasonOOMKilled            = "OOMKilled"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
)

func terminal(phase string) bool {
	switch phase {
	case api.ClusterJobSucceeded, api.ClusterJobFailed, api.ClusterJobCanceled:
		return true
	}
	return false
}

// podStatus derives the status of an admitted job from its pods: pods[i]
// is instance i's pod, nil when the cache has none. old is the status so
// far; its Instances tell which pods were seen, and so which missing pod
// was deleted rather than not created yet.
func podStatus(job *v1alpha1.TrainingJob, old *v1alpha1.TrainingJobStatus, pods []*corev1.Pod, now time.Time) v1alpha1.TrainingJobStatus {
	st := v1alpha1.TrainingJobStatus{
		StartTime:          old.StartTime,
		CompletionTime:     old.CompletionTime,
		ObservedGeneration: job.Generation,
	}
	var (
		failed                               *failure
		succeeded, running, waiting, missing int
		waitReason, waitMessage              string
	)
	for i, pod := range pods {
		prev := v1alpha1.InstanceStatus{Index: int32(i), Pod: PodName(job.Name, i)}
		if i < len(old.Instances) {
			prev = old.Instances[i]
		}
		if pod == nil {
			st.Instances = append(st.Instances, prev)
			switch prev.Phase {
			case "":
				missing++ // not created yet, or not in the cache yet
			case string(corev1.PodSucceeded):
				succeeded++ // its work is done; removing it harms nothing
			default:
				failed = failed.first(failure{i, ReasonPodDeleted, fmt.Sprintf("pod %s of instance %d was deleted while the job ran", prev.Pod, i)})
			}
			continue
		}
		st.Instances = append(st.Instances, instanceStatus(i, pod))
		switch {
		case pod.Status.Phase == corev1.PodFailed:
			failed = failed.first(podFailure(job, i, pod))
		case pod.Status.Phase == corev1.PodSucceeded:
			succeeded++
		case pod.DeletionTimestamp != nil:
			// Deleted by someone else (a cancel does not come here): the
			// instance is lost, and waiting for its end says no more.
			failed = failed.first(failure{i, ReasonPodDeleted, fmt.Sprintf("pod %s of instance %d was deleted while the job ran", pod.Name, i)})
		case pod.Status.Phase == corev1.PodRunning:
			running++
		default:
			waiting++
			if waitReason == "" {
				waitReason, waitMessage = waitingReason(pod)
				if waitReason != "" && len(pods) > 1 {
					waitMessage = fmt.Sprintf("instance %d: %s", i, waitMessage)
				}
			}
		}
	}
	if st.StartTime == nil {
		st.StartTime = started(pods)
	}
	switch {
	case failed != nil:
		st.Phase, st.Reason, st.Message = api.ClusterJobFailed, failed.reason, failed.message
		if len(pods) > 1 && failed.reason != ReasonPodDeleted && failed.reason != ReasonOOMKilled {
			st.Message = fmt.Sprintf("instance %d: %s", failed.instance, st.Message)
		}
	case succeeded == len(pods):
		st.Phase = api.ClusterJobSucceeded
	case waiting > 0 || missing > 0:
		st.Phase, st.Reason, st.Message = api.ClusterJobStarting, waitReason, waitMessage
	default:
		st.Phase = api.ClusterJobRunning
		if st.StartTime == nil {
			st.StartTime = &metav1.Time{Time: now}
		}
	}
	if terminal(st.Phase) && st.CompletionTime == nil {
		st.CompletionTime = finished(pods, now)
	}
	return st
}

type failure struct {
	instance        int
	reason, message string
}

// first keeps the failure of the lowest instance, so that the message does
// not change with the order the failures are seen in.
func (f *failure) first(g failure) *failure {
	if f != nil && f.instance <= g.instance {
		return f
	}
	return &g
}

func instanceStatus(i int, pod *corev1.Pod) v1alpha1.InstanceStatus {
	s := v1alpha1.InstanceStatus{Index: int32(i), Pod: pod.Name, Node: pod.Spec.NodeName, Phase: string(pod.Status.Phase), Reason: pod.Status.Reason}
	if t := containerTerminated(pod.Status.ContainerStatuses, JobName); t != nil {
		s.ExitCode = new(t.ExitCode)
		if t.Reason != "" {
			s.Reason = t.Reason
		}
	}
	return s
}

// podFailure says why instance i's failed pod failed.
func podFailure(job *v1alpha1.TrainingJob, i int, pod *corev1.Pod) failure {
	if pod.Status.Reason == ReasonDeadlineExceeded {
		return failure{i, ReasonDeadlineExceeded, fmt.Sprintf("timed out after limits.timeout=%d s", job.Spec.TimeoutSeconds)}
	}
	if t := containerTerminated(pod.Status.ContainerStatuses, JobName); t != nil && t.ExitCode != 0 {
		if t.Reason == ReasonOOMKilled {
			limit := "(none)"
			for _, c := range pod.Spec.Containers {
				if q, ok := c.Resources.Limits[corev1.ResourceMemory]; c.Name == JobName && ok {
					limit = q.String()
				}
			}
			return failure{i, ReasonOOMKilled, fmt.Sprintf("OOMKilled: instance %d exceeded its memory limit %s", i, limit)}
		}
		return failure{i, ReasonError, exitMessage(t)}
	}
	if t := containerTerminated(pod.Status.InitContainerStatuses, InstallName); t != nil && t.ExitCode != 0 {
		return failure{i, ReasonError, "installing the job's wrapper failed: " + exitMessage(t)}
	}
	if pod.Status.Reason != "" {
		// The kubelet refused or evicted the pod (OutOfcpu, Evicted, ...).
		return failure{i, pod.Status.Reason, pod.Status.Message}
	}
	msg := pod.Status.Message
	if msg == "" {
		msg = fmt.Sprintf("pod %s failed", pod.Name)
	}
	return failure{i, ReasonError, msg}
}

// exitMessage is the container's termination message, which the wrapper
// writes as "exit code N: <end of the log>", or the bare exit code.
func exitMessage(t *corev1.ContainerStateTerminated) string {
	if m := strings.TrimSpace(t.Message); m != "" {
		return m
	}
	return fmt.Sprintf("exit code %d", t.ExitCode)
}

func containerTerminated(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStateTerminated {
	for i := range statuses {
		if statuses[i].Name == name {
			return statuses[i].State.Terminated
		}
	}
	return nil
}

// waitingReason is why a pod that does not run yet waits, when it is
// something a user should see (a bad image, a missing secret), rather than
// the ordinary steps of a start.
func waitingReason(pod *corev1.Pod) (string, string) {
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range statuses {
			w := cs.State.Waiting
			if w == nil || w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
				continue
			}
			msg := w.Message
			if msg == "" {
				msg = "container " + cs.Name + " is waiting: " + w.Reason
			}
			return w.Reason, msg
		}
	}
	return "", ""
}

// started is when the first job container started, nil when none has.
func started(pods []*corev1.Pod) *metav1.Time {
	var first *metav1.Time
	for _, pod := range pods {
		if pod == nil {
			continue
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name != JobName {
				continue
			}
			var at metav1.Time
			switch {
			case cs.State.Running != nil:
				at = cs.State.Running.StartedAt
			case cs.State.Terminated != nil:
				at = cs.State.Terminated.StartedAt
			}
			if !at.IsZero() && (first == nil || at.Before(first)) {
				first = at.DeepCopy()
			}
		}
	}
	return first
}

// finished is when the last job container ended, now when none says.
func finished(pods []*corev1.Pod, now time.Time) *metav1.Time {
	var last *metav1.Time
	for _, pod := range pods {
		if pod == nil {
			continue
		}
		if t := containerTerminated(pod.Status.ContainerStatuses, JobName); t != nil && !t.FinishedAt.IsZero() &&
			(last == nil || last.Before(&t.FinishedAt)) {
			last = t.FinishedAt.DeepCopy()
		}
	}
	if last == nil {
		last = &metav1.Time{Time: now}
	}
	return last
}
