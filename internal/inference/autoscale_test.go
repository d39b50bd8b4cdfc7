package inference

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/inference/v1alpha1"
)

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		name        string
		in          scaleInput
		want        int32
		wantBelow   int
		whyContains string
	}{
		{"up at once", scaleInput{replicas: 1, min: 1, max: 5, targetPercent: 70, maxConcurrent: 1, load: 3}, 5, 0, "above the target 70%: up to 5"},
		{"up, capped at max", scaleInput{replicas: 1, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1, load: 10}, 3, 0, "up to 3"},
		{"up by concurrency", scaleInput{replicas: 1, min: 1, max: 10, targetPercent: 70, maxConcurrent: 4, load: 6}, 3, 0, "150%"},
		{"at max", scaleInput{replicas: 3, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1, load: 10, below: 4}, 3, 0, "at max 3"},
		{"at the target exactly", scaleInput{replicas: 1, min: 1, max: 3, targetPercent: 70, maxConcurrent: 10, load: 7}, 1, 0, "70%"},
		{"below, counting", scaleInput{replicas: 3, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1, load: 1, below: 5}, 3, 6, "6 of 20 polls"},
		{"below for 20 polls: one down", scaleInput{replicas: 3, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1, load: 1, below: 19}, 2, 0, "down to 2"},
		{"one fewer would be above: hold, count again", scaleInput{replicas: 2, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1, load: 1, below: 12}, 2, 0, "50%"},
		{"never under min", scaleInput{replicas: 2, min: 2, max: 3, targetPercent: 70, maxConcurrent: 1, load: 0, below: 30}, 2, 0, ""},
		{"over max after a settings change", scaleInput{replicas: 5, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1}, 3, 0, "over max 3"},
		{"under min after a settings change", scaleInput{replicas: 1, min: 2, max: 3, targetPercent: 70, maxConcurrent: 1, load: 0}, 2, 0, "under min 2"},
		{"defaults for settings at 0", scaleInput{replicas: 1, min: 1, max: 4, load: 2}, 3, 0, "above the target 70%"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := decide(c.in)
			if d.replicas != c.want || d.below != c.wantBelow || !strings.Contains(d.why, c.whyContains) {
				t.Errorf("decide(%+v) = %+v, want %d instances, %d below, why with %q", c.in, d, c.want, c.wantBelow, c.whyContains)
			}
		})
	}
}

// A burst takes a deployment from 1 to 3 instances at the first poll; the
// quiet after it takes it back one instance per 20 polls.
func TestDecideUpFastDownSlowly(t *testing.T) {
	in := scaleInput{replicas: 1, min: 1, max: 3, targetPercent: 70, maxConcurrent: 1, load: 3}
	d := decide(in)
	if d.replicas != 3 {
		t.Fatalf("after the burst: %d instances, want 3", d.replicas)
	}
	in.replicas, in.load = 3, 0
	var steps []int
	for poll := 1; poll <= 60 && in.replicas > 1; poll++ {
		d := decide(in)
		if d.replicas != in.replicas {
			steps = append(steps, poll)
		}
		in.replicas, in.below = d.replicas, d.below
	}
	if in.replicas != 1 || len(steps) != 2 || steps[0] != 20 || steps[1] != 40 {
		t.Errorf("down to %d at polls %v, want 1 at polls 20 and 40", in.replicas, steps)
	}
}

// loadServer answers GET /load as a router replica at addr.
func loadServer(t *testing.T, addr string, answer func() (int, api.RouterLoad)) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/load" {
			http.NotFound(w, r)
			return
		}
		code, l := answer()
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(l)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func routerPod(name, ip string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "azureml", Labels: map[string]string{"app": "azureml-fe"}},
		Status: corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

// The autoscaler sums the load of every ready router replica and records
// its decision in the deployment's status; a replica that does not answer
// holds every decision back.
func TestAutoscalerPoll(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var mu sync.Mutex
	inFlight, failing := 2, false
	loadServer(t, "127.0.0.1:"+strconv.Itoa(port), func() (int, api.RouterLoad) {
		mu.Lock()
		defer mu.Unlock()
		return http.StatusOK, api.RouterLoad{Replica: "fe-0", Deployments: []api.DeploymentLoad{
			{Namespace: "ml", Endpoint: "my-ep", Deployment: "blue", InFlight: inFlight, Queued: 1},
			{Namespace: "ml", Endpoint: "my-ep", Deployment: "green", InFlight: 50},
		}}
	})
	loadServer(t, "127.0.0.2:"+strconv.Itoa(port), func() (int, api.RouterLoad) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return http.StatusServiceUnavailable, api.RouterLoad{}
		}
		return http.StatusOK, api.RouterLoad{Replica: "fe-1", Deployments: []api.DeploymentLoad{
			{Namespace: "ml", Endpoint: "my-ep", Deployment: "blue", InFlight: 1},
		}}
	})

	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	od := testDeployment()
	od.Spec.Scale = v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 10, PollingIntervalSeconds: 1, TargetUtilizationPercent: 70}
	od.Spec.Request.MaxConcurrentPerInstance = 1
	od.Status.Replicas = 1
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&v1alpha1.OnlineDeployment{}).
		WithObjects(od, routerPod("fe-0", "127.0.0.1", true), routerPod("fe-1", "127.0.0.2", true), routerPod("fe-2", "127.0.0.3", false)).Build()
	now := t0
	a := &autoscaler{client: c, reader: c, namespace: "azureml", port: port, http: &http.Client{}, log: logr.Discard(),
		now: func() time.Time { return now }, tick: time.Second, state: map[types.NamespacedName]*scaleState{}}
	ctx := context.Background()
	get := func() *v1alpha1.OnlineDeployment {
		var got v1alpha1.OnlineDeployment
		if err := c.Get(ctx, client.ObjectKeyFromObject(od), &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}

	// 2 in flight + 1 queued + 1 in flight elsewhere = 4 on 1 instance of
	// concurrency 1, target 70%: ceil(4/0.7) = 6. fe-2 is not ready: not asked.
	a.poll(ctx)
	got := get()
	if got.Status.Replicas != 6 || got.Status.LastScaleTime == nil || !got.Status.LastScaleTime.Time.Equal(t0) {
		t.Fatalf("after the first poll: replicas %d lastScaleTime %v, want 6 at %s", got.Status.Replicas, got.Status.LastScaleTime, t0)
	}

	// Not due again before its polling interval.
	mu.Lock()
	inFlight = 20
	mu.Unlock()
	now = t0.Add(500 * time.Millisecond)
	a.poll(ctx)
	if got := get(); got.Status.Replicas != 6 {
		t.Errorf("polled again within the interval: replicas %d", got.Status.Replicas)
	}

	// A replica that fails: no decision on what the others say.
	mu.Lock()
	failing = true
	mu.Unlock()
	now = t0.Add(2 * time.Second)
	a.poll(ctx)
	if got := get(); got.Status.Replicas != 6 {
		t.Errorf("decided on a partial load: replicas %d", got.Status.Replicas)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	a.poll(ctx)
	if got := get(); got.Status.Replicas != 10 {
		t.Errorf("22 in flight on 6: replicas %d, want 10 (max)", got.Status.Replicas)
	}
}

// Ticks that come a little early or late still poll a deployment once per
// polling interval: none is skipped.
func TestAutoscalerDueOnJitteringTicks(t *testing.T) {
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	od := testDeployment()
	od.Spec.Scale = v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 3, PollingIntervalSeconds: 1, TargetUtilizationPercent: 70}
	od.Status.Replicas = 1
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&v1alpha1.OnlineDeployment{}).WithObjects(od).Build()
	now := t0
	a := &autoscaler{client: c, reader: c, log: logr.Discard(), now: func() time.Time { return now },
		tick: time.Second, state: map[types.NamespacedName]*scaleState{}}
	ctx := context.Background()
	jitter := []time.Duration{3 * time.Millisecond, -2 * time.Millisecond, 5 * time.Millisecond, -4 * time.Millisecond}
	for i := 0; i < 20; i++ {
		now = t0.Add(time.Duration(i)*time.Second + jitter[i%len(jitter)])
		due, err := a.due(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != 1 {
			t.Fatalf("tick %d at %s: %d deployments due, want 1 (polling interval 1 s, ticks every second)", i, now.Sub(t0), len(due))
		}
		a.scale(ctx, due[0], 0, now)
	}
}
