package kubenode

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestReady(t *testing.T) {
	node := func(cs ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: cs}}
	}
	for _, tc := range []struct {
		n    *corev1.Node
		want bool
	}{
		{node(), false},
		{node(corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}), true},
		{node(corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse}), false},
		{node(corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}), false},
	} {
		if got := Ready(tc.n); got != tc.want {
			t.Errorf("%+v: ready %v, want %v", tc.n.Status.Conditions, got, tc.want)
		}
	}
}
