package training

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// GPU is the resource NVIDIA's device plugin advertises; instance types ask
// for it under limits.
const GPU corev1.ResourceName = "nvidia.com/gpu"

// containerRequests is what the scheduler counts for a container: its
// requests, and its limits for resources it requests nothing of, since the
// API server defaults a missing request to the limit.
func containerRequests(c *corev1.Container) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, q := range c.Resources.Requests {
		out[name] = q.DeepCopy()
	}
	for name, q := range c.Resources.Limits {
		if _, ok := out[name]; !ok {
			out[name] = q.DeepCopy()
		}
	}
	return out
}

// podRequests is what a pod holds on its node, as the scheduler counts it:
// the sum of its containers and restartable init containers (sidecars, which
// run alongside), or the largest need of a one-off init container together
// with the sidecars started before it, whichever is larger; plus the pod's
// overhead; plus one of the node's pod slots.
func podRequests(pod *corev1.Pod) corev1.ResourceList {
	total := corev1.ResourceList{}
	for i := range pod.Spec.Containers {
		addTo(total, containerRequests(&pod.Spec.Containers[i]))
	}
	sidecars := corev1.ResourceList{}
	initPeak := corev1.ResourceList{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		req := containerRequests(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addTo(sidecars, req)
			addTo(total, req)
			continue
		}
		addTo(req, sidecars)
		maxInto(initPeak, req)
	}
	maxInto(total, initPeak)
	addTo(total, pod.Spec.Overhead)
	total[corev1.ResourcePods] = *resource.NewQuantity(1, resource.DecimalSI)
	return total
}

func addTo(dst, src corev1.ResourceList) {
	for name, q := range src {
		cur := dst[name]
		cur.Add(q)
		dst[name] = cur
	}
}

func subFrom(dst, src corev1.ResourceList) {
	for name, q := range src {
		cur := dst[name]
		cur.Sub(q)
		dst[name] = cur
	}
}

func maxInto(dst, src corev1.ResourceList) {
	for name, q := range src {
		if cur, ok := dst[name]; !ok || q.Cmp(cur) > 0 {
			dst[name] = q.DeepCopy()
		}
	}
}

// fits tells whether need fits in free. A node that does not list its pod
// slots is not limited by them; any other resource it does not list, it has
// none of.
func fits(need, free corev1.ResourceList) bool {
	for name, q := range need {
		have, ok := free[name]
		if !ok && name == corev1.ResourcePods {
			continue
		}
		if q.Cmp(have) > 0 {
			return false
		}
	}
	return true
}

// howMany is how many times need fits in have.
func howMany(need, have corev1.ResourceList) int64 {
	n := int64(math.MaxInt64)
	for name, q := range need {
		if q.Sign() <= 0 {
			continue
		}
		h, ok := have[name]
		if !ok && name == corev1.ResourcePods {
			continue
		}
		if h.Sign() <= 0 {
			return 0
		}
		if name == corev1.ResourceCPU {
			// Milli-units keep fractional CPUs exact.
			n = min(n, h.MilliValue()/q.MilliValue())
		} else {
			n = min(n, h.Value()/q.Value())
		}
	}
	return n
}

// describe prints the resources of a job's pod as people read them:
// "2 CPU, 4Gi" and ", 1 GPU" when it has some.
func describe(need corev1.ResourceList) string {
	cpu, mem := need[corev1.ResourceCPU], need[corev1.ResourceMemory]
	s := formatCPU(cpu) + ", " + mem.String()
	if gpu, ok := need[GPU]; ok && gpu.Sign() > 0 {
		s += ", " + gpu.String() + " GPU"
	}
	return s
}

// describeFree prints a node's free resources, rounding down so that it
// never shows more than there is; GPUs only when the job needs some.
func describeFree(free corev1.ResourceList, withGPU bool) string {
	cpu, mem := free[corev1.ResourceCPU], free[corev1.ResourceMemory]
	s := formatCPU(cpu) + ", " + formatMemory(mem)
	if withGPU {
		gpu := free[GPU]
		s += ", " + strconv.FormatInt(max(gpu.Value(), 0), 10) + " GPU"
	}
	return s
}

func formatCPU(q resource.Quantity) string {
	m := max(q.MilliValue(), 0)
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) + " CPU"
}

func formatMemory(q resource.Quantity) string {
	b := max(q.Value(), 0)
	const mi, gi = 1 << 20, 1 << 30
	switch {
	case b >= gi:
		tenths := b * 10 / gi
		return strings.TrimSuffix(fmt.Sprintf("%d.%d", tenths/10, tenths%10), ".0") + "Gi"
	case b >= mi:
		return strconv.FormatInt(b/mi, 10) + "Mi"
	default:
		return strconv.FormatInt(b, 10) + "B"
	}
}
