package training

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// res builds a resource list: res("2", "4Gi") or res("2", "4Gi", "1") with GPUs.
func res(cpu, mem string, gpu ...string) corev1.ResourceList {
	l := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	if len(gpu) > 0 {
		l[GPU] = resource.MustParse(gpu[0])
	}
	return l
}

func withPods(l corev1.ResourceList, n string) corev1.ResourceList {
	l = l.DeepCopy()
	l[corev1.ResourcePods] = resource.MustParse(n)
	return l
}

type nodeOpt func(*corev1.Node)

func notReady(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }
func cordoned(n *corev1.Node) { n.Spec.Unschedulable = true }
func labelled(k, v string) nodeOpt {
	return func(n *corev1.Node) { n.Labels[k] = v }
}

func node(name string, alloc corev1.ResourceList, opts ...nodeOpt) corev1.Node {
	n := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{
			Allocatable: withPods(alloc, "110"),
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func runningPod(name, nodeName string, req corev1.ResourceList) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "other"},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{
			Name: "c", Resources: corev1.ResourceRequirements{Requests: req},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func want(count int, req corev1.ResourceList, sel map[string]string) demand {
	return demand{instanceType: "it", count: count, requests: withPods(req, "1"), nodeSelector: sel}
}

func TestPlace(t *testing.T) {
	for _, c := range []struct {
		name   string
		nodes  []corev1.Node
		pods   []corev1.Pod
		res    []reservation
		ahead  []demand
		d      demand
		placed []string // placement wanted
		wait   string   // or the Queued message
		never  string   // or the Failed message
	}{
		{
			name:   "fits one node",
			nodes:  []corev1.Node{node("n1", res("4", "8Gi"))},
			d:      want(1, res("2", "4Gi"), nil),
			placed: []string{"n1"},
		},
		{
			name:   "gang spread over nodes, first fit by name",
			nodes:  []corev1.Node{node("n2", res("4", "8Gi")), node("n1", res("4", "8Gi"))},
			d:      want(3, res("2", "4Gi"), nil),
			placed: []string{"n1", "n1", "n2"},
		},
		{
			name:  "other pods take room: waits with the numbers",
			nodes: []corev1.Node{node("n1", res("4", "8Gi"))},
			pods:  []corev1.Pod{runningPod("busy", "n1", res("3500m", "6800Mi"))},
			d:     want(1, res("2", "4Gi"), nil),
			wait:  "waiting for available resources: needs 1 x (2 CPU, 4Gi), free now: n1 0.5 CPU, 1.3Gi",
		},
		{
			name:  "finished pods and other nodes' pods take no room",
			nodes: []corev1.Node{node("n1", res("4", "8Gi")), node("n2", res("1", "1Gi"))},
			pods: []corev1.Pod{
				func() corev1.Pod {
					p := runningPod("done", "n1", res("4", "8Gi"))
					p.Status.Phase = corev1.PodSucceeded
					return p
				}(),
				func() corev1.Pod {
					p := runningPod("failed", "n1", res("4", "8Gi"))
					p.Status.Phase = corev1.PodFailed
					return p
				}(),
				runningPod("elsewhere", "n2", res("1", "1Gi")),
				runningPod("unbound", "", res("4", "8Gi")),
			},
			d:      want(1, res("4", "8Gi"), nil),
			placed: []string{"n1"},
		},
		{
			name:  "all or nothing: 2 fit, 3 wanted",
			nodes: []corev1.Node{node("n1", res("4", "8Gi")), node("n2", res("2", "8Gi"))},
			pods:  []corev1.Pod{runningPod("busy", "n1", res("2", "1Gi"))},
			d:     want(3, res("2", "4Gi"), nil),
			wait:  "waiting for available resources: needs 3 x (2 CPU, 4Gi), free now: n1 2 CPU, 7Gi; n2 2 CPU, 8Gi",
		},
		{
			name:  "GPUs shown when asked for",
			nodes: []corev1.Node{node("g1", res("8", "32Gi", "1"))},
			pods:  []corev1.Pod{runningPod("gpu-user", "g1", res("1", "1Gi", "1"))},
			d:     want(1, res("1", "1Gi", "1"), nil),
			wait:  "needs 1 x (1 CPU, 1Gi, 1 GPU), free now: g1 7 CPU, 31Gi, 0 GPU",
		},
		{
			name:  "never: above every node's allocatable",
			nodes: []corev1.Node{node("n1", res("4", "8Gi")), node("n2", res("8", "4Gi"))},
			d:     want(1, res("6", "6Gi"), nil),
			never: `instance type "it" needs 1 x (6 CPU, 6Gi), but its nodes can hold 0 such pods even when empty: n1 4 CPU, 8Gi allocatable; n2 8 CPU, 4Gi allocatable`,
		},
		{
			name:  "never: the gang is larger than the empty cluster",
			nodes: []corev1.Node{node("n1", res("4", "8Gi"))},
			d:     want(3, res("2", "4Gi"), nil),
			never: "can hold 2 such pods even when empty",
		},
		{
			name:  "never: a GPU where no node has one",
			nodes: []corev1.Node{node("n1", res("64", "256Gi"))},
			d:     want(1, res("1", "1Gi", "1"), nil),
			never: "can hold 0 such pods",
		},
		{
			name:  "never: no node matches the selector",
			nodes: []corev1.Node{node("n1", res("4", "8Gi")), node("n2", res("4", "8Gi"))},
			d:     want(1, res("1", "1Gi"), map[string]string{"pool": "gpu"}),
			never: `no node has the labels of instance type "it" (nodeSelector pool=gpu); the nodes are n1; n2`,
		},
		{
			name:   "selector picks the node",
			nodes:  []corev1.Node{node("a", res("4", "8Gi")), node("b", res("4", "8Gi"), labelled("pool", "gpu"))},
			d:      want(1, res("1", "1Gi"), map[string]string{"pool": "gpu"}),
			placed: []string{"b"},
		},
		{
			name:  "not ready and cordoned nodes wait, not fail",
			nodes: []corev1.Node{node("a", res("4", "8Gi"), notReady), node("b", res("4", "8Gi"), cordoned)},
			d:     want(1, res("1", "1Gi"), nil),
			wait:  "waiting for available resources: needs 1 x (1 CPU, 1Gi), unavailable: a not ready; b cordoned",
		},
		{
			name: "no node yet: wait",
			d:    want(1, res("1", "1Gi"), nil),
			wait: "the cluster has no node yet",
		},
		{
			name:  "reservations of pods the cache does not show yet take room",
			nodes: []corev1.Node{node("n1", res("4", "8Gi"))},
			res:   []reservation{{node: "n1", requests: withPods(res("3", "1Gi"), "1")}},
			d:     want(1, res("2", "1Gi"), nil),
			wait:  "free now: n1 1 CPU, 7Gi",
		},
		{
			name:  "FIFO: the job ahead that fits goes first",
			nodes: []corev1.Node{node("n1", res("4", "8Gi"))},
			ahead: []demand{want(1, res("3", "1Gi"), nil)},
			d:     want(1, res("2", "1Gi"), nil),
			wait:  "free now: n1 1 CPU, 7Gi",
		},
		{
			name:   "BestEffortFIFO: a job ahead that does not fit does not block a later one that does",
			nodes:  []corev1.Node{node("n1", res("4", "8Gi"))},
			pods:   []corev1.Pod{runningPod("busy", "n1", res("2", "1Gi"))},
			ahead:  []demand{want(2, res("2", "1Gi"), nil), want(1, res("1", "1Gi"), nil)},
			d:      want(1, res("1", "1Gi"), nil),
			placed: []string{"n1"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := admit(snapshot(c.nodes, c.pods, c.res), c.ahead, c.d)
			switch {
			case c.placed != nil:
				if !slices.Equal(v.nodes, c.placed) {
					t.Errorf("verdict %+v, want placement %q", v, c.placed)
				}
			case c.wait != "":
				if v.nodes != nil || v.never != "" || !strings.Contains(v.wait, c.wait) {
					t.Errorf("verdict %+v, want a wait containing %q", v, c.wait)
				}
			default:
				if v.nodes != nil || v.wait != "" || !strings.Contains(v.never, c.never) {
					t.Errorf("verdict %+v, want never containing %q", v, c.never)
				}
			}
		})
	}
}

// Admitting a job takes its room: the next job sees less.
func TestPlaceTakesRoom(t *testing.T) {
	cluster := snapshot([]corev1.Node{node("n1", res("4", "8Gi"))}, nil, nil)
	d := want(1, res("3", "1Gi"), nil)
	if v := place(cluster, d); len(v.nodes) != 1 {
		t.Fatalf("first: %+v", v)
	}
	if v := place(cluster, d); v.wait == "" {
		t.Fatalf("second: %+v, want a wait", v)
	}
	// A verdict that waits takes nothing.
	if v := place(cluster, want(1, res("1", "1Gi"), nil)); len(v.nodes) != 1 {
		t.Fatalf("third: %+v", v)
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			{Name: "big-init", Resources: corev1.ResourceRequirements{Requests: res("3", "100Mi")}},
			{Name: "sidecar", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: res("500m", "50Mi")}},
		},
		Containers: []corev1.Container{
			{Name: "a", Resources: corev1.ResourceRequirements{Requests: res("1", "1Gi")}},
			// No requests: the limits are what the API server defaults them to.
			{Name: "b", Resources: corev1.ResourceRequirements{Limits: res("1", "1Gi", "2")}},
		},
		Overhead: res("100m", "10Mi"),
	}}
	got := podRequests(pod)
	// containers 2 CPU + sidecar 0.5 = 2.5 < init 3 (started before the sidecar) => 3; + overhead.
	for name, want := range map[corev1.ResourceName]string{
		corev1.ResourceCPU: "3100m", corev1.ResourceMemory: "2108Mi", GPU: "2", corev1.ResourcePods: "1",
	} {
		q := got[name]
		if q.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("%s = %s, want %s", name, q.String(), want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{formatCPU(resource.MustParse("500m")), "0.5 CPU"},
		{formatCPU(resource.MustParse("2")), "2 CPU"},
		{formatCPU(resource.MustParse("-1")), "0 CPU"},
		{formatMemory(resource.MustParse("1.25Gi")), "1.2Gi"},
		{formatMemory(resource.MustParse("4Gi")), "4Gi"},
		{formatMemory(resource.MustParse("1500Mi")), "1.4Gi"},
		{formatMemory(resource.MustParse("100Mi")), "100Mi"},
		{formatMemory(resource.MustParse("1000")), "1000B"},
		{describe(res("100m", "2Gi")), "0.1 CPU, 2Gi"},
		{describe(res("1", "1500Mi", "0")), "1 CPU, 1500Mi"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// The pod cache keeps of other pods what admission counts, and jobs' pods whole.
func TestSlimPod(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	full := runningPod("web", "n1", res("1", "1Gi"))
	full.Labels = map[string]string{"app": "web"}
	full.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	full.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
	full.Spec.InitContainers = []corev1.Container{{Name: "side", RestartPolicy: &always,
		Resources: corev1.ResourceRequirements{Requests: res("500m", "10Mi")}}}
	full.Spec.Overhead = res("100m", "1Mi")
	want := podRequests(&full)

	out, err := slimPod(full.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Pod)
	if got := podRequests(slim); !equalResources(got, want) {
		t.Errorf("slim pod requests %v, the pod %v", got, want)
	}
	if slim.Spec.NodeName != "n1" || slim.Status.Phase != corev1.PodRunning || slim.Name != "web" || slim.Namespace != "other" {
		t.Errorf("slim pod lost what the cache keys on: %+v", slim)
	}
	if slim.Annotations != nil || slim.ManagedFields != nil || slim.Spec.Containers[0].Env != nil {
		t.Errorf("slim pod kept what admission does not need: %+v", slim)
	}

	job := testJob("j")
	ours := jobPod(job, 0, jobRunning(t0))
	ours.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	out, err = slimPod(ours.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	kept := out.(*corev1.Pod)
	ours.ManagedFields = nil
	if !equality.Semantic.DeepEqual(kept, ours) {
		t.Error("a job's pod was cut down")
	}
}
