package cgroups

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet's conversions (pkg/kubelet/cm, helper_linux.go).
const (
	// Period is cpu.cfs_period_us, the kubelet's default CFS period.
	Period = 100000
	// minQuota is the smallest cpu.cfs_quota_us the kubelet sets (1 ms).
	minQuota = 1000
	// MinShares and MaxShares bound cpu.shares.
	MinShares = 2
	MaxShares = 262144
)

// Limits are what a container's cgroups enforce, as file values. A zero
// field enforces nothing.
type Limits struct {
	// Memory is resources.limits.memory in bytes: memory.limit_in_bytes
	// (v1), memory.max (v2).
	Memory int64
	// CPUQuota is resources.limits.cpu as microseconds of CPU time per
	// Period: cpu.cfs_quota_us (v1), the first field of cpu.max (v2).
	CPUQuota int64
	// CPUShares comes from resources.requests.cpu (the limit when no request
	// is given, as the API defaults it): cpu.shares (v1), converted to
	// cpu.weight on v2.
	CPUShares int64
}

// None says that the limits enforce nothing.
func (l Limits) None() bool { return l == Limits{} }

// ForContainer reads a container's resources as cgroup values, as the
// kubelet does.
func ForContainer(c *corev1.Container) Limits {
	var l Limits
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && q.Sign() > 0 {
		l.Memory = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && q.Sign() > 0 {
		l.CPUQuota = MilliCPUToQuota(q.MilliValue(), Period)
	}
	if m, ok := cpuRequest(c); ok {
		l.CPUShares = MilliCPUToShares(m)
	}
	return l
}

// cpuRequest is the container's CPU request in milli-CPUs; the API defaults a
// missing request to the limit.
func cpuRequest(c *corev1.Container) (int64, bool) {
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		return q.MilliValue(), true
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		return q.MilliValue(), true
	}
	return 0, false
}

// PodCPUShares is the cpu.shares of a pod's cgroup, as the kubelet sets it:
// from the pod's effective CPU request (the sum of its containers' requests,
// or the largest init container's when that is more).
func PodCPUShares(pod *corev1.Pod) int64 {
	var sum, maxInit int64
	for i := range pod.Spec.Containers {
		m, _ := cpuRequest(&pod.Spec.Containers[i])
		sum += m
	}
	for i := range pod.Spec.InitContainers {
		m, _ := cpuRequest(&pod.Spec.InitContainers[i])
		maxInit = max(maxInit, m)
	}
	return MilliCPUToShares(max(sum, maxInit))
}

// MilliCPUToShares is the kubelet's conversion of a CPU request to
// cpu.shares: 1024 per CPU, at least MinShares, at most MaxShares.
func MilliCPUToShares(milliCPU int64) int64 {
	shares := milliCPU * 1024 / 1000
	return min(max(shares, MinShares), MaxShares)
}

// MilliCPUToQuota is the kubelet's conversion of a CPU limit to
// cpu.cfs_quota_us for the period: limit * period, at least 1 ms; 0 (no
// quota) for no limit.
func MilliCPUToQuota(milliCPU, period int64) int64 {
	if milliCPU <= 0 {
		return 0
	}
	return max(milliCPU*period/1000, minQuota)
}

// SharesToWeight converts cpu.shares ([2, 262144]) to cgroup v2's cpu.weight
// ([1, 10000]), as runc and the kubelet do.
func SharesToWeight(shares int64) int64 {
	if shares <= 0 {
		return 0
	}
	shares = min(max(shares, MinShares), MaxShares)
	return 1 + (shares-MinShares)*9999/(MaxShares-MinShares)
}

// setting is one file of a cgroup and the value written to it. Optional ones
// may be missing or refuse the value (memory.swappiness of a kernel that
// does not let it be set).
type setting struct {
	file, value string
	optional    bool
}

// v1Memory is what a container's v1 memory cgroup gets: the limit, and no
// swapping (swappiness 0), so that going over the limit ends in the OOM
// killer rather than in swap, as on a node without swap.
func (l Limits) v1Memory() []setting {
	if l.Memory == 0 {
		return nil
	}
	return []setting{
		{file: "memory.limit_in_bytes", value: strconv.FormatInt(l.Memory, 10)},
		{file: "memory.swappiness", value: "0", optional: true},
	}
}

// v1CPU is what a container's v1 cpu cgroup gets.
func (l Limits) v1CPU() []setting {
	var out []setting
	if l.CPUShares > 0 {
		out = append(out, setting{file: "cpu.shares", value: strconv.FormatInt(l.CPUShares, 10)})
	}
	if l.CPUQuota > 0 {
		out = append(out, setting{file: "cpu.cfs_period_us", value: strconv.Itoa(Period)},
			setting{file: "cpu.cfs_quota_us", value: strconv.FormatInt(l.CPUQuota, 10)})
	}
	return out
}

// v2 is what a container's cgroup on the unified hierarchy gets, for the
// controllers enforced there.
func (l Limits) v2(memory, cpu bool) []setting {
	var out []setting
	if memory && l.Memory > 0 {
		out = append(out, setting{file: "memory.max", value: strconv.FormatInt(l.Memory, 10)},
			setting{file: "memory.swap.max", value: "0", optional: true})
	}
	if cpu && l.CPUShares > 0 {
		out = append(out, setting{file: "cpu.weight", value: strconv.FormatInt(SharesToWeight(l.CPUShares), 10)})
	}
	if cpu && l.CPUQuota > 0 {
		out = append(out, setting{file: "cpu.max", value: strconv.FormatInt(l.CPUQuota, 10) + " " + strconv.Itoa(Period)})
	}
	return out
}
