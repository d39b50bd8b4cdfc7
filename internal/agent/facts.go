package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// report gathers the heartbeat: facts about the cluster and the state of
// every extension of the last applied desired state.
func (a *Agent) report(ctx context.Context) api.AgentReport {
	rep := api.AgentReport{Facts: a.facts(ctx), Extensions: []api.ExtensionReport{}}
	if nss, err := a.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		for _, ns := range nss.Items {
			rep.Namespaces = append(rep.Namespaces, ns.Name)
		}
	}
	a.mu.Lock()
	d, outcomes := a.desired, a.applied
	a.mu.Unlock()
	for _, e := range d.Extensions {
		rep.Extensions = append(rep.Extensions, a.evaluate(ctx, e, outcomes[e.Name]))
	}
	return rep
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
