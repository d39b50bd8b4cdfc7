package node

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

var everything = labels.Everything()

// apiSources reads ConfigMaps and Secrets for env vars straight from the API:
// a pod start needs a handful, not a cache of every Secret in the cluster.
type apiSources struct{ client kubernetes.Interface }

func (s apiSources) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return s.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s apiSources) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return s.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// publishLocked hands the pod's status as it now stands to the status
// manager, which writes it. Called with w.mu held, so that the manager always
// ends with the latest of two concurrent changes.
func (w *podWorker) publishLocked() {
	w.a.statuses.Set(w.ref, w.statusLocked())
}

// statusLocked derives the pod's status from what the worker knows, the way
// the kubelet computes phase and conditions.
func (w *podWorker) statusLocked() corev1.PodStatus {
	st := corev1.PodStatus{StartTime: &w.started, HostIP: "127.0.0.1", HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}},
		Reason: w.reason, Message: w.message}
	if w.ip != "" {
		st.PodIP, st.PodIPs = w.ip, []corev1.PodIP{{IP: w.ip}}
	}
	// The conditions name the containers that hold them back, as the
	// kubelet's do ("containers with unready status: [a b]").
	var incomplete, unready []string
	for _, s := range w.initStates {
		ok := s.done && s.state.Terminated != nil && s.state.Terminated.ExitCode == 0
		st.InitContainerStatuses = append(st.InitContainerStatuses, s.status(ok))
		if !ok {
			incomplete = append(incomplete, s.spec.Name)
		}
	}
	allReady, anyStarted := true, false
	for _, s := range w.states {
		st.ContainerStatuses = append(st.ContainerStatuses, s.status(s.ready))
		allReady = allReady && s.ready
		anyStarted = anyStarted || s.state.Waiting == nil || s.restarts > 0
		if !s.ready {
			unready = append(unready, s.spec.Name)
		}
	}
	switch {
	case w.final != "":
		st.Phase = w.final
	case w.initDone && anyStarted:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}

	// Transition times are left to the status manager, which sees the
	// conditions' previous statuses in the API.
	cond := func(t corev1.PodConditionType, ok bool, reason, message string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: message}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		return c
	}
	list := func(what string, names []string) string {
		if len(names) == 0 {
			return ""
		}
		return fmt.Sprintf("containers with %s status: [%s]", what, strings.Join(names, " "))
	}
	done := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	notReady, unreadyMsg := "ContainersNotReady", list("unready", unready)
	if done {
		notReady, unreadyMsg = "PodCompleted", ""
	}
	ready := allReady && !done && len(w.states) > 0
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.ready2start, "", ""),
		cond(corev1.PodInitialized, w.initDone, "ContainersNotInitialized", list("incomplete", incomplete)),
		cond(corev1.PodReady, ready, notReady, unreadyMsg),
		cond(corev1.ContainersReady, ready, notReady, unreadyMsg),
		cond(corev1.PodScheduled, true, "", ""),
	}
	return st
}

func (s *ctrState) status(ready bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{
		Name:                 s.spec.Name,
		State:                s.state,
		LastTerminationState: s.last,
		Ready:                ready,
		RestartCount:         s.restarts,
		Image:                s.spec.Image,
		ImageID:              "outpost://" + s.spec.Image,
		Started:              &s.started,
	}
	if s.state.Running != nil || s.state.Terminated != nil {
		cs.ContainerID = s.containerID()
	}
	if s.state.Running == nil {
		f := false
		cs.Started = &f
	}
	return cs
}
