package statusreporter

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns = "azureml"

func node(name string, ready corev1.ConditionStatus, alloc map[corev1.ResourceName]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
			{Type: corev1.NodeReady, Status: ready},
		}
	}
	n.Status.Allocatable = corev1.ResourceList{}
	for k, v := range alloc {
		n.Status.Allocatable[k] = resource.MustParse(v)
	}
	return n
}

func pod(namespace, name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Status: corev1.PodStatus{Phase: phase}}
}

// cluster is a mixed cluster: two Ready nodes, one NotReady, one that has
// not reported a Ready condition yet, and pods of every phase.
func cluster() []runtime.Object {
	return []runtime.Object{
		node("gpu-1", corev1.ConditionTrue, map[corev1.ResourceName]string{"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1", "pods": "110"}),
		node("cpu-1", corev1.ConditionTrue, map[corev1.ResourceName]string{"cpu": "3500m", "memory": "8Gi"}),
		node("gpu-2", corev1.ConditionFalse, map[corev1.ResourceName]string{"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}),
		node("new-1", "", map[corev1.ResourceName]string{"cpu": "2", "memory": "4Gi"}),
		pod(ns, "a", corev1.PodRunning),
		pod(ns, "b", corev1.PodRunning),
		pod(ns, "c", corev1.PodPending),
		pod(ns, "d", corev1.PodFailed),
		pod(ns, "e", corev1.PodSucceeded),
		pod(ns, "f", corev1.PodUnknown),
		pod("default", "other", corev1.PodRunning),
		pod("default", "other-pending", corev1.PodPending),
	}
}

func TestCollect(t *testing.T) {
	zero := map[string]string{"cpu": "0", "memory": "0", "nvidia.com/gpu": "0"}
	for _, c := range []struct {
		name     string
		objs     []runtime.Object
		nodes    NodeCounts
		alloc    map[string]string
		pods     PodCounts
		notReady []string
	}{
		{name: "empty cluster", alloc: zero, notReady: []string{}},
		{
			name:     "mixed cluster",
			objs:     cluster(),
			nodes:    NodeCounts{Total: 4, Ready: 2},
			alloc:    map[string]string{"cpu": "7500m", "memory": "24Gi", "nvidia.com/gpu": "1"},
			pods:     PodCounts{Running: 2, Pending: 1, Failed: 1},
			notReady: []string{"gpu-2", "new-1"},
		},
		{
			name:     "no node ready",
			objs:     []runtime.Object{node("b", corev1.ConditionUnknown, map[corev1.ResourceName]string{"cpu": "1"}), node("a", corev1.ConditionFalse, nil)},
			nodes:    NodeCounts{Total: 2},
			alloc:    zero,
			notReady: []string{"a", "b"},
		},
		{
			name:     "pods elsewhere only",
			objs:     []runtime.Object{pod("default", "x", corev1.PodRunning), pod("kube-system", "y", corev1.PodFailed)},
			alloc:    zero,
			notReady: []string{},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := reporter{client: fake.NewClientset(c.objs...), ns: ns}
			before := time.Now().Add(-time.Second)
			st, err := r.collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Time.Before(before) || st.Time.After(time.Now()) || st.Time.Location() != time.UTC {
				t.Errorf("time = %v", st.Time)
			}
			if st.Nodes != c.nodes {
				t.Errorf("nodes = %+v, want %+v", st.Nodes, c.nodes)
			}
			alloc := map[string]string{}
			for k, q := range st.Allocatable {
				alloc[string(k)] = q.String()
			}
			if !reflect.DeepEqual(alloc, c.alloc) {
				t.Errorf("allocatable = %v, want %v", alloc, c.alloc)
			}
			if st.Pods != c.pods {
				t.Errorf("pods = %+v, want %+v", st.Pods, c.pods)
			}
			if !slices.Equal(st.NotReadyNodes, c.notReady) || st.NotReadyNodes == nil {
				t.Errorf("notReadyNodes = %#v, want %#v", st.NotReadyNodes, c.notReady)
			}
		})
	}
}

// start runs Run until the test ends and returns the health address.
func start(t *testing.T, client *fake.Clientset, interval time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Namespace: ns, Listen: "127.0.0.1:0", Interval: interval, Ready: ready})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	select {
	case addr := <-ready:
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
			t.Fatalf("bound to %s, not 127.0.0.1", addr)
		}
		return addr
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not report its address")
	}
	return ""
}

func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := healthz(t, addr)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d: %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stored(t *testing.T, client *fake.Clientset) (*corev1.ConfigMap, *Status) {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := Read(cm)
	if err != nil {
		t.Fatal(err)
	}
	return cm, st
}

func TestRunWritesTheReport(t *testing.T) {
	client := fake.NewClientset(cluster()...)
	addr := start(t, client, time.Hour) // only the first report, written at once
	waitHealthy(t, addr)

	cm, st := stored(t, client)
	var raw map[string]any
	if err := json.Unmarshal([]byte(cm.Data[StatusKey]), &raw); err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(raw)), []string{"allocatable", "nodes", "notReadyNodes", "pods", "time"}; !slices.Equal(got, want) {
		t.Errorf("status.json keys = %q, want %q", got, want)
	}
	wantAlloc := map[string]any{"cpu": "7500m", "memory": "24Gi", "nvidia.com/gpu": "1"}
	if !reflect.DeepEqual(raw["allocatable"], wantAlloc) {
		t.Errorf("allocatable = %v, want quantity strings %v", raw["allocatable"], wantAlloc)
	}
	wantNodes := map[string]any{"total": 4.0, "ready": 2.0}
	if !reflect.DeepEqual(raw["nodes"], wantNodes) {
		t.Errorf("nodes = %v, want %v", raw["nodes"], wantNodes)
	}
	wantPods := map[string]any{"running": 2.0, "pending": 1.0, "failed": 1.0}
	if !reflect.DeepEqual(raw["pods"], wantPods) {
		t.Errorf("pods = %v, want %v", raw["pods"], wantPods)
	}
	if _, err := time.Parse(time.RFC3339, raw["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if !slices.Equal(st.NotReadyNodes, []string{"gpu-2", "new-1"}) {
		t.Errorf("notReadyNodes = %q", st.NotReadyNodes)
	}
	if cm.Labels[extensionLabel] != "" {
		t.Errorf("the ConfigMap carries %s, so the agent would prune it", extensionLabel)
	}
}

const extensionLabel = "outpost.dev/extension"

func TestRunKeepsReporting(t *testing.T) {
	existing := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ConfigMapName},
		Data:       map[string]string{"note": "kept", StatusKey: "{}"},
	}
	client := fake.NewClientset(append(cluster(), existing)...)
	addr := start(t, client, 20*time.Millisecond)
	waitHealthy(t, addr)

	_, first := stored(t, client)
	if first.Nodes.Ready != 2 {
		t.Fatalf("first report: %+v", first.Nodes)
	}
	ctx := context.Background()
	if _, err := client.CoreV1().Nodes().Create(ctx, node("gpu-3", corev1.ConditionTrue,
		map[corev1.ResourceName]string{"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "4"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Pods(ns).Delete(ctx, "d", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cm, st := stored(t, client)
		if st.Nodes.Ready == 3 && st.Pods.Failed == 0 {
			gpu := st.Allocatable[GPU]
			if gpu.String() != "5" {
				t.Errorf("gpus = %s, want 5", gpu.String())
			}
			if cm.Data["note"] != "kept" {
				t.Errorf("the update dropped other keys: %v", cm.Data)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("report never showed the new node and the deleted pod: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHealthzWaitsForTheFirstReport(t *testing.T) {
	client := fake.NewClientset(cluster()...)
	var refuse atomic.Bool
	refuse.Store(true)
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refuse.Load() {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC not applied yet"))
		}
		return false, nil, nil
	})
	addr := start(t, client, 20*time.Millisecond)

	// The first report fails at once; give it time to be recorded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := healthz(t, addr)
		if code != http.StatusServiceUnavailable {
			t.Fatalf("/healthz = %d %q before any report was written", code, body)
		}
		if strings.Contains(body, "RBAC not applied yet") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz does not say why: %q", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), ConfigMapName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("ConfigMap written although nodes could not be listed: %v", err)
	}

	refuse.Store(false)
	waitHealthy(t, addr)
	stored(t, client)

	// A later failure leaves the endpoint ready: the report's time shows
	// its age, and readiness must not flap on a transient error.
	refuse.Store(true)
	time.Sleep(100 * time.Millisecond)
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Errorf("/healthz = %d %q after a later failure", code, body)
	}
}

func TestWriteRetries(t *testing.T) {
	for _, c := range []struct {
		name     string
		existing bool
		verb     string
		err      error
	}{
		{"update conflict", true, "update", apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, ConfigMapName, errors.New("changed"))},
		{"create race", false, "create", apierrors.NewAlreadyExists(schema.GroupResource{Resource: "configmaps"}, ConfigMapName)},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := cluster()
			if c.existing {
				objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ConfigMapName}})
			}
			client := fake.NewClientset(objs...)
			var calls atomic.Int32
			client.PrependReactor(c.verb, "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				if calls.Add(1) <= 2 {
					return true, nil, c.err
				}
				return false, nil, nil
			})
			r := reporter{client: client, ns: ns}
			if err := r.report(context.Background()); err != nil {
				t.Fatalf("report: %v", err)
			}
			if n := calls.Load(); n != 3 {
				t.Errorf("%d %s calls, want 3 (two refused, one accepted)", n, c.verb)
			}
			if _, st := stored(t, client); st.Nodes.Total != 4 {
				t.Errorf("stored %+v", st)
			}
		})
	}
}

func TestWriteGivesUpOnOtherErrors(t *testing.T) {
	client := fake.NewClientset(cluster()...)
	var calls atomic.Int32
	client.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, ConfigMapName, errors.New("no"))
	})
	r := reporter{client: client, ns: ns}
	err := r.report(context.Background())
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "azureml/cluster-status") {
		t.Errorf("err = %v, want Forbidden naming the ConfigMap", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d create calls: Forbidden is not worth retrying", calls.Load())
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Namespace: ns, Listen: "127.0.0.1:0", Interval: time.Hour, Ready: ready})
	}()
	addr := <-ready
	waitHealthy(t, addr)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil once its context ends", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Error("still listening after Run returned")
	}
}

func TestRunRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	client := fake.NewClientset()
	for _, c := range []struct {
		name   string
		client *fake.Clientset
		o      Options
		want   string
	}{
		{"no client", nil, Options{Namespace: ns, Listen: "127.0.0.1:0"}, "no Kubernetes client"},
		{"no namespace", client, Options{Listen: "127.0.0.1:0"}, "no namespace"},
		{"address in use", client, Options{Namespace: ns, Listen: busy.Addr().String()}, "address already in use"},
		{"bad address", client, Options{Namespace: ns, Listen: "127.0.0.1:http-alt-nope"}, `"127.0.0.1:http-alt-nope"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			if c.client == nil {
				err = Run(ctx, nil, c.o)
			} else {
				err = Run(ctx, c.client, c.o)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Run = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestRead(t *testing.T) {
	for _, c := range []struct {
		name string
		data map[string]string
		want string
	}{
		{"missing key", map[string]string{}, "has no status.json"},
		{"not JSON", map[string]string{StatusKey: "{"}, "status.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ConfigMapName}, Data: c.data})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Read = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
