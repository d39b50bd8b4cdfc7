package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/api"
	amlarcv1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/internal/kubenode"
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
	f.InstanceTypes = a.instanceTypes(ctx)
	f.InferenceRouter = a.inferenceRouter(ctx)
	nodes, err := a.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return f
	}
	f.TotalNodeCount = len(nodes.Items)
	f.Nodes = nodeFacts(nodes.Items)
	cpu, mem, gpu := resource.Quantity{}, resource.Quantity{}, resource.Quantity{}
	for _, n := range nodes.Items {
		if !kubenode.Ready(&n) {
			continue
		}
		cpu.Add(n.Status.Allocatable[corev1.ResourceCPU])
		mem.Add(n.Status.Allocatable[corev1.ResourceMemory])
		gpu.Add(n.Status.Allocatable[gpuResource])
	}
	f.AllocatableCPU, f.AllocatableMemory, f.AllocatableGPU = cpu.String(), mem.String(), gpu.String()
	return f
}

// nodeFacts are the nodes' capacity, by name: what the workspace checks a
// job's instance type against.
func nodeFacts(nodes []corev1.Node) []api.NodeFacts {
	out := make([]api.NodeFacts, 0, len(nodes))
	for _, n := range nodes {
		alloc := map[string]string{}
		// Every key, "0" when absent: a node without GPUs has room for none.
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, gpuResource} {
			q := n.Status.Allocatable[r]
			alloc[string(r)] = q.String()
		}
		out = append(out, api.NodeFacts{Name: n.Name, Labels: n.Labels, Allocatable: alloc, Ready: kubenode.Ready(&n)})
	}
	slices.SortFunc(out, func(x, y api.NodeFacts) int { return strings.Compare(x.Name, y.Name) })
	return out
}

const gpuResource corev1.ResourceName = "nvidia.com/gpu"

var instanceTypesGVR = schema.GroupVersionResource{Group: amlarcv1.Group, Version: amlarcv1.Version, Resource: amlarcv1.Resource}

// builtInInstanceType is what a job without an instance type gets on a
// cluster that has no InstanceType of that name.
func builtInInstanceType() api.InstanceType {
	return api.InstanceType{Name: api.DefaultInstanceType, BuiltIn: true, Resources: api.InstanceTypeResources{
		Requests: map[string]string{"cpu": "100m", "memory": "2Gi"},
		Limits:   map[string]string{"cpu": "2", "memory": "2Gi"},
	}}
}

// instanceTypes reads the cluster's InstanceTypes. Before the CRD exists
// there is only the built-in one; when they cannot be read, the facts keep
// what was read last, so that a passing error does not make the workspace
// refuse jobs for instance types the cluster has.
func (a *Agent) instanceTypes(ctx context.Context) []api.InstanceType {
	list, err := a.dyn.Resource(instanceTypesGVR).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		a.lastInstanceTypes = instanceTypeFacts(nil)
	case err != nil:
		a.log.Warn("list instance types", "err", err)
		if a.lastInstanceTypes == nil {
			return instanceTypeFacts(nil)
		}
	default:
		var its []amlarcv1.InstanceType
		for _, o := range list.Items {
			var it amlarcv1.InstanceType
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &it); err != nil {
				a.log.Warn("unreadable instance type left out", "name", o.GetName(), "err", err)
				continue
			}
			its = append(its, it)
		}
		a.lastInstanceTypes = instanceTypeFacts(its)
	}
	return a.lastInstanceTypes
}

// instanceTypeFacts are the instance types its, with the built-in
// defaultinstancetype unless one of them has its name, by name.
func instanceTypeFacts(its []amlarcv1.InstanceType) []api.InstanceType {
	var out []api.InstanceType
	for _, it := range its {
		out = append(out, api.InstanceType{Name: it.Name, NodeSelector: it.Spec.NodeSelector, Resources: api.InstanceTypeResources{
			Requests: quantities(it.Spec.Resources.Requests), Limits: quantities(it.Spec.Resources.Limits)}})
	}
	if !slices.ContainsFunc(out, func(it api.InstanceType) bool { return it.Name == api.DefaultInstanceType }) {
		out = append(out, builtInInstanceType())
	}
	slices.SortFunc(out, func(x, y api.InstanceType) int { return strings.Compare(x.Name, y.Name) })
	return out
}

func quantities(rl corev1.ResourceList) map[string]string {
	if len(rl) == 0 {
		return nil
	}
	out := make(map[string]string, len(rl))
	for k, q := range rl {
		out[string(k)] = q.String()
	}
	return out
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
