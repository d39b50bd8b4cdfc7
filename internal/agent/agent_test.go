package agent

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestBypass(t *testing.T) {
	cases := []struct {
		host, noProxy string
		want          bool
	}{
		{"127.0.0.1", "", false}, // unlike net/http, loopback goes through the proxy when one is set
		{"127.0.0.1", "127.0.0.1", true},
		{"ws.example.com", "example.com", true},
		{"ws.example.com", ".example.com", true},
		{"example.com.evil", "example.com", false},
		{"ws.example.com", "other.com, ws.example.com", true},
		{"anything", "*", true},
	}
	for _, tc := range cases {
		if got := bypass(tc.host, tc.noProxy); got != tc.want {
			t.Errorf("bypass(%q, %q) = %v, want %v", tc.host, tc.noProxy, got, tc.want)
		}
	}
}

func TestHTTPClientRejectsBadProxy(t *testing.T) {
	for _, p := range []string{"socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://"} {
		if _, err := (Config{Proxy: p}).httpClient(); err == nil || !strings.Contains(err.Error(), "want http://host:port") {
			t.Errorf("proxy %q: error %v", p, err)
		}
	}
}

func TestPodProblem(t *testing.T) {
	waiting := func(reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	crash := waiting("CrashLoopBackOff", "back-off")
	crash.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error", Message: "bad flag"}
	cases := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"running", corev1.Pod{}, ""},
		{"still creating", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("ContainerCreating", "")}}}, ""},
		{"crash loop", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{crash}}},
			"container c: CrashLoopBackOff (last exit code 2, Error: bad flag)"},
		{"no command", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("CreateContainerConfigError", "needs a command")}}},
			"container c: CreateContainerConfigError: needs a command"},
		{"unschedulable", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes match"}}}}, "Unschedulable: 0/1 nodes match"},
		{"init container", corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{waiting("ImagePullBackOff", "")}}},
			"container c: ImagePullBackOff"},
	}
	for _, tc := range cases {
		if got := podProblem(&tc.pod); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
