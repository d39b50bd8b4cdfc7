package cgroups

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func resources(limits, requests map[corev1.ResourceName]string) corev1.ResourceRequirements {
	list := func(m map[corev1.ResourceName]string) corev1.ResourceList {
		if m == nil {
			return nil
		}
		out := corev1.ResourceList{}
		for k, v := range m {
			out[k] = resource.MustParse(v)
		}
		return out
	}
	return corev1.ResourceRequirements{Limits: list(limits), Requests: list(requests)}
}

func TestForContainer(t *testing.T) {
	for _, tc := range []struct {
		name                string
		limits, requests    map[corev1.ResourceName]string
		want                Limits
		v1Memory, v1CPU, v2 []setting
	}{
		{name: "none", want: Limits{}},
		{name: "memory only requested", requests: map[corev1.ResourceName]string{"memory": "1Gi"}, want: Limits{}},
		{
			name: "memory limit", limits: map[corev1.ResourceName]string{"memory": "100Mi"},
			want:     Limits{Memory: 100 << 20},
			v1Memory: []setting{{"memory.limit_in_bytes", "104857600", false}, {"memory.swappiness", "0", true}},
			v2:       []setting{{"memory.max", "104857600", false}, {"memory.swap.max", "0", true}},
		},
		{
			name: "decimal memory", limits: map[corev1.ResourceName]string{"memory": "1G"},
			want: Limits{Memory: 1e9},
		},
		{
			// The API defaults a missing request to the limit.
			name: "cpu limit", limits: map[corev1.ResourceName]string{"cpu": "500m"},
			want:  Limits{CPUQuota: 50000, CPUShares: 512},
			v1CPU: []setting{{"cpu.shares", "512", false}, {"cpu.cfs_period_us", "100000", false}, {"cpu.cfs_quota_us", "50000", false}},
			v2:    []setting{{"cpu.weight", "20", false}, {"cpu.max", "50000 100000", false}},
		},
		{
			name: "cpu limit and request", limits: map[corev1.ResourceName]string{"cpu": "2"}, requests: map[corev1.ResourceName]string{"cpu": "250m"},
			want: Limits{CPUQuota: 200000, CPUShares: 256},
		},
		{
			name: "cpu request only", requests: map[corev1.ResourceName]string{"cpu": "100m"},
			want:  Limits{CPUShares: 102},
			v1CPU: []setting{{"cpu.shares", "102", false}},
			v2:    []setting{{"cpu.weight", "4", false}},
		},
		{
			// At least 1 ms per period and 2 shares, as the kubelet.
			name: "tiny cpu", limits: map[corev1.ResourceName]string{"cpu": "1m"},
			want: Limits{CPUQuota: 1000, CPUShares: 2},
		},
		{
			name: "huge cpu request", requests: map[corev1.ResourceName]string{"cpu": "1000"},
			want: Limits{CPUShares: MaxShares},
		},
		{
			name: "zero limits", limits: map[corev1.ResourceName]string{"cpu": "0", "memory": "0"},
			want: Limits{CPUShares: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &corev1.Container{Resources: resources(tc.limits, tc.requests)}
			got := ForContainer(c)
			if got != tc.want {
				t.Fatalf("ForContainer = %+v, want %+v", got, tc.want)
			}
			if got.None() != (tc.want == Limits{}) {
				t.Errorf("None() = %v", got.None())
			}
			if tc.v1Memory != nil && !reflect.DeepEqual(got.v1Memory(), tc.v1Memory) {
				t.Errorf("v1 memory files = %v, want %v", got.v1Memory(), tc.v1Memory)
			}
			if tc.v1CPU != nil && !reflect.DeepEqual(got.v1CPU(), tc.v1CPU) {
				t.Errorf("v1 cpu files = %v, want %v", got.v1CPU(), tc.v1CPU)
			}
			if tc.v2 != nil && !reflect.DeepEqual(got.v2(true, true), tc.v2) {
				t.Errorf("v2 files = %v, want %v", got.v2(true, true), tc.v2)
			}
		})
	}
}

func TestV2OnlyEnforcedControllers(t *testing.T) {
	l := Limits{Memory: 1 << 20, CPUQuota: 1000, CPUShares: 2}
	if got := l.v2(false, true); len(got) != 2 || got[0].file != "cpu.weight" || got[1].file != "cpu.max" {
		t.Errorf("v2 with cpu only = %v", got)
	}
	if got := l.v2(true, false); len(got) != 2 || got[0].file != "memory.max" {
		t.Errorf("v2 with memory only = %v", got)
	}
	if got := (Limits{}).v1CPU(); got != nil {
		t.Errorf("no cpu limits: %v", got)
	}
	if got := (Limits{}).v1Memory(); got != nil {
		t.Errorf("no memory limit: %v", got)
	}
}

func TestConversions(t *testing.T) {
	for milli, want := range map[int64]int64{0: 2, 1: 2, 2: 2, 100: 102, 1000: 1024, 1500: 1536, 300000: MaxShares} {
		if got := MilliCPUToShares(milli); got != want {
			t.Errorf("MilliCPUToShares(%d) = %d, want %d", milli, got, want)
		}
	}
	for milli, want := range map[int64]int64{0: 0, 1: 1000, 10: 1000, 250: 25000, 1000: 100000, 3500: 350000} {
		if got := MilliCPUToQuota(milli, Period); got != want {
			t.Errorf("MilliCPUToQuota(%d) = %d, want %d", milli, got, want)
		}
	}
	// runc's conversion: 2 -> 1, 1024 -> 39, 262144 -> 10000.
	for shares, want := range map[int64]int64{0: 0, 2: 1, 1024: 39, MaxShares: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestPodCPUShares(t *testing.T) {
	cpu := func(req string) corev1.Container {
		if req == "" {
			return corev1.Container{}
		}
		return corev1.Container{Resources: resources(nil, map[corev1.ResourceName]string{"cpu": req})}
	}
	pod := func(init []corev1.Container, ctrs ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{InitContainers: init, Containers: ctrs}}
	}
	for _, tc := range []struct {
		pod  *corev1.Pod
		want int64
	}{
		{pod(nil, cpu("")), 2},
		{pod(nil, cpu("250m"), cpu("250m"), cpu("")), 512},
		{pod([]corev1.Container{cpu("2")}, cpu("500m")), 2048},
		{pod([]corev1.Container{cpu("100m")}, cpu("1")), 1024},
	} {
		if got := PodCPUShares(tc.pod); got != tc.want {
			t.Errorf("PodCPUShares(%+v) = %d, want %d", tc.pod.Spec, got, tc.want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	// This machine's layout (cpu and cpuacct apart), a co-mounted cpu,cpuacct
	// after a bind of a cgroup inside the memory hierarchy, and escapes.
	data := []byte(`31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
90 31 0:32 /inner /mnt/inner\040memory rw - cgroup cgroup rw,memory
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
91 31 0:32 /other /mnt/other rw - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
92 31 0:38 /x /mnt/x rw - cgroup2 cgroup2 rw
`)
	m := parseMountinfo(data)
	want := map[string]string{"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "memory": "/sys/fs/cgroup/memory"}
	for c, mnt := range want {
		if m.V1[c] != mnt {
			t.Errorf("parseMountinfo: %s at %q, want %q", c, m.V1[c], mnt)
		}
	}
	if _, ok := m.V1["name=systemd"]; ok || m.V2 != "/sys/fs/cgroup/unified" {
		t.Errorf("parseMountinfo = %+v, want V2 /sys/fs/cgroup/unified", m)
	}

	m = parseMountinfo([]byte(`25 1 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 1 0:23 /sub /mnt/my\040mem rw - cgroup cgroup rw,memory
`))
	if m.V1["cpu"] != "/sys/fs/cgroup/cpu,cpuacct" || m.V1["cpuacct"] != m.V1["cpu"] || m.V1["memory"] != "/mnt/my mem" || m.V2 != "" {
		t.Errorf("parseMountinfo = %+v", m)
	}

	m = parseMountinfo([]byte("29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"))
	if len(m.V1) != 0 || m.V2 != "/sys/fs/cgroup" {
		t.Errorf("v2 only: %+v", m)
	}
}

func TestParseCounter(t *testing.T) {
	v1 := []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	if n, ok := parseCounter(v1, "oom_kill"); !ok || n != 3 {
		t.Errorf("oom_kill of %q = %d, %v", v1, n, ok)
	}
	old := []byte("oom_kill_disable 0\nunder_oom 0\n")
	if _, ok := parseCounter(old, "oom_kill"); ok {
		t.Errorf("a kernel without the counter: found one")
	}
	v2 := []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
	if n, ok := parseCounter(v2, "oom_kill"); !ok || n != 1 {
		t.Errorf("oom_kill of %q = %d, %v", v2, n, ok)
	}
}

func TestNilIsNothing(t *testing.T) {
	var m *Manager
	cg, err := m.Add("uid", "c", Limits{Memory: 1}, 2)
	if cg != nil || err != nil {
		t.Fatalf("nil Manager Add = %v, %v", cg, err)
	}
	if cg.Procs() != nil || cg.FD() != nil || cg.Dirs() != nil || cg.OOMKilled(137) || cg.Close() != nil {
		t.Error("a nil Cgroup is not empty")
	}
	if m.RemovePod("uid") != nil || m.Close() != nil {
		t.Error("a nil Manager fails")
	}
	if mem, cpu := m.Enforced(); mem || cpu {
		t.Error("a nil Manager enforces")
	}
}
