// Package kubenode reads a Kubernetes Node's state as its status reports
// it, the same way for every component that looks at nodes (the cluster
// agent's facts, the status reporter, the training operator's admission).
package kubenode

import corev1 "k8s.io/api/core/v1"

// Ready tells whether the node's Ready condition is True; a node without
// one is not ready.
func Ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
