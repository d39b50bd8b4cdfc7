package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/cgroups"
	"outpost.dev/outpost/internal/clustertest"
)

// v1Mounts are this machine's cgroup v1 hierarchies; the test is skipped
// where the node cannot enforce limits with them.
func v1Mounts(t *testing.T) cgroups.Mounts {
	t.Helper()
	m, err := cgroups.ReadMounts()
	if err != nil || m.V1["memory"] == "" || m.V1["cpu"] == "" || m.V1["cpuacct"] == "" {
		t.Skipf("no cgroup v1 memory, cpu and cpuacct hierarchies here (%v)", err)
	}
	return m
}

func limited(c corev1.Container, limits, requests corev1.ResourceList) corev1.Container {
	c.Resources = corev1.ResourceRequirements{Limits: limits, Requests: requests}
	return c
}

// A container that allocates more than its memory limit is killed by the
// kernel and reported OOMKilled with exit code 137, as by the kubelet; the
// same program under the limit succeeds.
func TestMemoryLimitOOMKilled(t *testing.T) {
	v1Mounts(t)
	ns, c := namespace(t)
	limit := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi")}
	alloc := func(mib int) corev1.Container {
		return limited(corev1.Container{Name: "main", Image: "python:3.11",
			Command: []string{"python3", "-c", fmt.Sprintf("b = b'x' * (%d << 20); print('allocated', len(b) >> 20)", mib)}}, limit, nil)
	}
	hog := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hog"}, Spec: corev1.PodSpec{Containers: []corev1.Container{alloc(300)}}}
	fits := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "fits"}, Spec: corev1.PodSpec{Containers: []corev1.Container{alloc(20)}}}
	createPod(t, c, ns, hog)
	createPod(t, c, ns, fits)

	p := waitPod(t, c, ns, "hog", 60*time.Second, "finished", finished)
	if p.Status.Phase != corev1.PodFailed || len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("hog: phase %s, statuses %+v; want Failed", p.Status.Phase, p.Status.ContainerStatuses)
	}
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("hog: container state %+v, want terminated OOMKilled with exit code 137", p.Status.ContainerStatuses[0].State)
	}

	p = waitPod(t, c, ns, "fits", 60*time.Second, "finished", finished)
	if term := p.Status.ContainerStatuses[0].State.Terminated; p.Status.Phase != corev1.PodSucceeded || term == nil || term.Reason != "Completed" || term.ExitCode != 0 {
		t.Errorf("fits: phase %s, state %+v; want Succeeded, Completed", p.Status.Phase, p.Status.ContainerStatuses[0].State)
	}
	if out := clustertest.Kubectl(t, "-n", ns, "logs", "fits"); out != "allocated 20\n" {
		t.Errorf("fits printed %q", out)
	}
}

// ctrCgroups parses the /proc/self/cgroup a container printed: controller ->
// path in its hierarchy.
func ctrCgroups(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || f[1] == "" {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			out[c] = f[2]
		}
	}
	return out
}

// A CPU-limited busy loop gets about its quota, its cgroups hold the
// values of its resources (a container without them gets none), commands
// run in it by exec are in them too, and they are gone once the pod is.
func TestCPULimitAndCgroupsRemoved(t *testing.T) {
	mounts := v1Mounts(t)
	ns, c := namespace(t)
	ctx := context.Background()
	busy := limited(corev1.Container{Name: "busy", Image: "debian:12",
		Command: []string{"sh", "-c", "cat /proc/self/cgroup; echo end; while :; do :; done"}},
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")})
	plain := corev1.Container{Name: "plain", Image: "debian:12", Command: []string{"sh", "-c", "cat /proc/self/cgroup; echo end; exec sleep 3600"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "spin"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{busy, plain}, TerminationGracePeriodSeconds: ptr.To[int64](1)}}
	createPod(t, c, ns, pod)

	logs := func(ctr string) map[string]string {
		var out map[string]string
		clustertest.Eventually(t, 60*time.Second, ctr+" prints its cgroups", func() error {
			data, err := c.CoreV1().Pods(ns).GetLogs("spin", &corev1.PodLogOptions{Container: ctr}).DoRaw(ctx)
			if err != nil || !strings.Contains(string(data), "end\n") {
				return fmt.Errorf("logs %q: %v", data, err)
			}
			out = ctrCgroups(string(data))
			return nil
		})
		return out
	}
	mine := logs("busy")
	dir := func(controller string) string { return filepath.Join(mounts.V1[controller], mine[controller]) }
	for _, controller := range []string{"memory", "cpu", "cpuacct"} {
		if !strings.Contains(mine[controller], "/outpost/") || filepath.Base(mine[controller]) != "busy" {
			t.Fatalf("busy: %s cgroup %q, want the node's own for the container", controller, mine[controller])
		}
	}
	read := func(file string) string {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	for file, want := range map[string]string{
		filepath.Join(dir("memory"), "memory.limit_in_bytes"): "67108864",
		filepath.Join(dir("cpu"), "cpu.cfs_period_us"):        "100000",
		filepath.Join(dir("cpu"), "cpu.cfs_quota_us"):         "20000",
		filepath.Join(dir("cpu"), "cpu.shares"):               "102", // 100m requested
		filepath.Join(dir("cpu"), "..", "cpu.shares"):         "102", // the pod's: the sum of its requests
	} {
		if got := read(file); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	for controller, path := range logs("plain") {
		if strings.Contains(path, "/outpost/") {
			t.Errorf("plain, without resources, is in the %s cgroup %s", controller, path)
		}
	}
	// What exec runs in the container is under its limits too.
	if got := ctrCgroups(clustertest.Kubectl(t, "-n", ns, "exec", "spin", "-c", "busy", "--", "cat", "/proc/self/cgroup")); got["memory"] != mine["memory"] || got["cpu"] != mine["cpu"] {
		t.Errorf("exec runs in memory %q, cpu %q; want the container's %q, %q", got["memory"], got["cpu"], mine["memory"], mine["cpu"])
	}

	// Until it has used 0.4 s of CPU, the loop gets at most about its 0.2
	// CPU (some 2 s; unlimited, 0.4 s would take 0.4 s): a generous bound,
	// on a machine shared with other tests.
	usage := func() (time.Duration, time.Time) {
		n, err := strconv.ParseInt(read(filepath.Join(dir("cpuacct"), "cpuacct.usage")), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(n), time.Now()
	}
	u0, t0 := usage()
	var u1 time.Duration
	var t1 time.Time
	clustertest.Eventually(t, 30*time.Second, "the busy loop used 0.4 s of CPU", func() error {
		if u1, t1 = usage(); u1-u0 < 400*time.Millisecond {
			return fmt.Errorf("%v used", u1-u0)
		}
		return nil
	})
	share := float64(u1-u0) / float64(t1.Sub(t0))
	t.Logf("busy loop limited to 200m used %.3f CPU", share)
	if share > 1.5*0.2 || share <= 0 {
		t.Errorf("busy loop limited to 200m used %.3f CPU, want (0, 0.3]", share)
	}

	if err := c.CoreV1().Pods(ns).Delete(ctx, "spin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 60*time.Second, "pod spin gone", func() error {
		_, err := c.CoreV1().Pods(ns).Get(ctx, "spin", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	for _, controller := range []string{"memory", "cpu", "cpuacct"} {
		for _, d := range []string{dir(controller), filepath.Dir(dir(controller))} {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cgroup %s left after the pod was deleted (%v)", d, err)
			}
		}
	}
}
