package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/version"
)

func secondsOf(n int) time.Duration { return time.Duration(n) * time.Second }

func (a *Agent) nodeCount(ctx context.Context) int {
	nodes, err := a.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 1
	}
	return len(nodes.Items)
}

// facts are what `connectedk8s show` tells about the cluster.
func (a *Agent) facts(ctx context.Context) api.ClusterFacts {
	f := api.ClusterFacts{AgentVersion: version.Version, Distribution: "generic"}
	if v, err := a.kube.Discovery().ServerVersion(); err == nil {
		f.KubernetesVersion = v.GitVersion
	}
	if groups, err := a.kube.Discovery().ServerGroups(); err == nil {
		for _, g := range groups.Groups {
			// OpenShift serves its own API groups; their presence is the tell.
			if g.Name == "config.openshift.io" || g.Name == "route.openshift.io" || g.Name == "security.openshift.io" {
				f.Distribution = "openshift"
			}
		}
	}
	nodes, err := a.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return f
	}
	f.TotalNodeCount = len(nodes.Items)
	cpu, mem, gpu := resource.Quantity{}, resource.Quantity{}, resource.Quantity{}
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			continue
		}
		cpu.Add(n.Status.Allocatable[corev1.ResourceCPU])
		mem.Add(n.Status.Allocatable[corev1.ResourceMemory])
		gpu.Add(n.Status.Allocatable["nvidia.com/gpu"])
	}
	f.AllocatableCPU, f.AllocatableMemory, f.AllocatableGPU = cpu.String(), mem.String(), gpu.String()
	return f
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ClusterIdentity is the UID of namespace kube-system, which Azure Arc also
// takes for a cluster's identity: it is made with the cluster, survives
// restarts and upgrades, and differs between clusters even when their
// kubeconfigs look alike.
func ClusterIdentity(ctx context.Context, kube kubernetes.Interface) (string, error) {
	ns, err := kube.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read namespace kube-system, the cluster's identity: %w", err)
	}
	return string(ns.UID), nil
}
