package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/extension"
)

const (
	// downPolls is how many polls in a row a deployment's load must fit in
	// one instance fewer before it loses one: up at once, down slowly.
	downPolls = 20
	// defaultTargetPercent and defaultMaxConcurrent stand in for settings
	// left at 0 (Azure ML's defaults).
	defaultTargetPercent = 70
	defaultMaxConcurrent = 1
	// loadTimeout bounds one router replica's answer to GET /load.
	loadTimeout = 2 * time.Second
)

// scaleInput is what one autoscaling decision looks at.
type scaleInput struct {
	replicas      int32 // instances asked for now
	min, max      int32
	targetPercent int32
	maxConcurrent int32
	// load is the requests in flight and queued for the deployment, summed
	// over the router's replicas.
	load int64
	// below is how many polls in a row before this one the load fitted in
	// one instance fewer.
	below int
}

// scaleDecision is the autoscaler's answer: the instances to ask for, the
// count of polls below carried to the next, and why, for the log.
type scaleDecision struct {
	replicas int32
	below    int
	why      string
}

// decide is one autoscaling decision. utilization = load / (replicas x
// maxConcurrent). Above the target, scale up at once to the fewest
// instances that bring it to the target, ceil(load / (maxConcurrent x
// target)), at most max. Scale down one instance only after the load has
// fitted in one instance fewer at or under the target for downPolls polls
// in a row, never under min. Counting only polls whose load would still
// be at the target on one instance fewer keeps a load that sits between
// the two from scaling down and straight back up.
func decide(in scaleInput) scaleDecision {
	target := int64(in.targetPercent)
	if target <= 0 {
		target = defaultTargetPercent
	}
	mc := int64(in.maxConcurrent)
	if mc <= 0 {
		mc = defaultMaxConcurrent
	}
	lo, hi := max(in.min, 1), max(in.max, in.min, 1)
	r := in.replicas
	util := func(n int32) string {
		if n <= 0 {
			return "-"
		}
		return strconv.FormatInt(in.load*100/(int64(n)*mc), 10) + "%"
	}
	switch {
	case r < lo:
		return scaleDecision{replicas: lo, why: fmt.Sprintf("%d instances, under min %d", r, lo)}
	case r > hi:
		return scaleDecision{replicas: hi, why: fmt.Sprintf("%d instances, over max %d", r, hi)}
	}
	// load/(r*mc) > target/100, in integers.
	if in.load*100 > target*int64(r)*mc {
		want := int32(min((in.load*100+target*mc-1)/(target*mc), int64(hi)))
		if want > r {
			return scaleDecision{replicas: want, why: fmt.Sprintf("load %d on %d instances is %s, above the target %d%%: up to %d",
				in.load, r, util(r), target, want)}
		}
		return scaleDecision{replicas: r, why: fmt.Sprintf("load %d on %d instances is %s, above the target %d%%, at max %d", in.load, r, util(r), target, hi)}
	}
	if r > lo && in.load*100 <= target*int64(r-1)*mc {
		below := in.below + 1
		if below >= downPolls {
			return scaleDecision{replicas: r - 1, why: fmt.Sprintf("load %d would be %s on %d instances for %d polls: down to %d",
				in.load, util(r-1), r-1, below, r-1)}
		}
		return scaleDecision{replicas: r, below: below, why: fmt.Sprintf("load %d would be %s on %d instances (%d of %d polls)",
			in.load, util(r-1), r-1, below, downPolls)}
	}
	return scaleDecision{replicas: r, why: fmt.Sprintf("load %d on %d instances is %s, target %d%%", in.load, r, util(r), target)}
}

// loadKey names a deployment in the routers' load reports.
type loadKey struct{ namespace, endpoint, deployment string }

// scaleState is the autoscaler's memory of one deployment.
type scaleState struct {
	uid   types.UID
	below int
	next  time.Time // when it is polled next
}

// autoscaler polls the routers' load and scales the deployments of scale
// type target_utilization by their status.replicas, which the reconciler
// carries to their Deployments.
type autoscaler struct {
	client    client.Client // the caches
	reader    client.Reader // the API server: router pods are not cached
	namespace string        // the router's
	port      int           // the router's admin port
	http      *http.Client
	log       logr.Logger
	events    record.EventRecorder
	now       func() time.Time
	tick      time.Duration

	mu    sync.Mutex
	state map[types.NamespacedName]*scaleState
	// lastErr is the last trouble reading the load, logged once (only
	// the polling goroutine touches it).
	lastErr string
}

// Start polls until ctx ends (a manager.Runnable).
func (a *autoscaler) Start(ctx context.Context) error {
	t := time.NewTicker(a.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.poll(ctx)
		}
	}
}

func (a *autoscaler) forget(key types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.state, key)
}

// due returns the autoscaled deployments whose poll is due at now.
func (a *autoscaler) due(ctx context.Context, now time.Time) ([]*v1alpha1.OnlineDeployment, error) {
	var list v1alpha1.OnlineDeploymentList
	if err := a.client.List(ctx, &list); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*v1alpha1.OnlineDeployment
	for i := range list.Items {
		od := &list.Items[i]
		key := client.ObjectKeyFromObject(od)
		if od.Spec.Scale.Type != api.ScaleTargetUtilization || od.DeletionTimestamp != nil {
			delete(a.state, key)
			continue
		}
		s := a.state[key]
		if s == nil || s.uid != od.UID {
			s = &scaleState{uid: od.UID}
			a.state[key] = s
		}
		if !now.Before(s.next) {
			out = append(out, od)
		}
	}
	return out, nil
}

// poll makes one decision for every deployment whose poll is due.
func (a *autoscaler) poll(ctx context.Context) {
	now := a.now()
	due, err := a.due(ctx, now)
	if err != nil {
		a.log.Error(err, "autoscaler: list deployments")
		return
	}
	if len(due) == 0 {
		return
	}
	loads, err := a.routerLoad(ctx)
	if err != nil {
		// No decision on a partial sum: it would look like less load than
		// there is. The deployments are polled again at the next tick; the
		// same trouble is logged once.
		if msg := err.Error(); msg != a.lastErr {
			a.log.Info("autoscaler: no load to decide on", "err", msg)
			a.lastErr = msg
		}
		return
	}
	if a.lastErr != "" {
		a.log.Info("autoscaler: reading the routers' load again")
		a.lastErr = ""
	}
	for _, od := range due {
		a.scale(ctx, od, loads[loadKey{od.Namespace, od.Spec.Endpoint, od.Spec.Name}], now)
	}
}

func (a *autoscaler) scale(ctx context.Context, od *v1alpha1.OnlineDeployment, load int64, now time.Time) {
	key := client.ObjectKeyFromObject(od)
	a.mu.Lock()
	s := a.state[key]
	a.mu.Unlock()
	if s == nil {
		return
	}
	sc := od.Spec.Scale
	lo, hi := bounds(sc)
	cur := desiredReplicas(od)
	d := decide(scaleInput{replicas: cur, min: lo, max: hi, targetPercent: sc.TargetUtilizationPercent,
		maxConcurrent: od.Spec.Request.MaxConcurrentPerInstance, load: load, below: s.below})
	if d.replicas != cur {
		next := od.DeepCopy()
		next.Status.Replicas = d.replicas
		next.Status.LastScaleTime = &metav1.Time{Time: now}
		if err := a.client.Status().Update(ctx, next); err != nil {
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				a.log.Error(err, "autoscaler: record the decision", "deployment", key.String())
			}
			return // decided again at the next tick, on the fresh object
		}
		a.log.Info("autoscale", "deployment", key.String(), "from", cur, "to", d.replicas, "why", d.why)
		if a.events != nil {
			a.events.Eventf(od, corev1.EventTypeNormal, "Scaled", "%d -> %d instances: %s", cur, d.replicas, d.why)
		}
	} else {
		a.log.V(1).Info("autoscale: hold", "deployment", key.String(), "instances", d.replicas, "why", d.why)
	}
	interval := time.Duration(max(sc.PollingIntervalSeconds, 1)) * time.Second
	a.mu.Lock()
	// Due a quarter tick early: the ticker's ticks come a little late or
	// early, and a deployment due exactly one interval on would skip
	// every other tick (1 s polls taking 2 s), slowing scale-down twice.
	s.below, s.next = d.below, now.Add(interval-min(a.tick, interval)/4)
	a.mu.Unlock()
}

// routerLoad sums the load of every ready router replica, by deployment.
func (a *autoscaler) routerLoad(ctx context.Context) (map[loadKey]int64, error) {
	var pods corev1.PodList
	if err := a.reader.List(ctx, &pods, client.InNamespace(a.namespace), client.MatchingLabels{"app": extension.RouterApp}); err != nil {
		return nil, fmt.Errorf("list router pods: %w", err)
	}
	var ready []*corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Status.PodIP != "" && podReady(p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return nil, fmt.Errorf("no ready router replica (pods app=%s in %s)", extension.RouterApp, a.namespace)
	}
	answers := make([]*api.RouterLoad, len(ready))
	errs := make([]error, len(ready))
	var wg sync.WaitGroup
	for i, p := range ready {
		wg.Go(func() { answers[i], errs[i] = a.fetchLoad(ctx, p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := map[loadKey]int64{}
	for _, l := range answers {
		for _, d := range l.Deployments {
			out[loadKey{d.Namespace, d.Endpoint, d.Deployment}] += int64(max(d.InFlight, 0)) + int64(max(d.Queued, 0))
		}
	}
	return out, nil
}

func (a *autoscaler) fetchLoad(ctx context.Context, p *corev1.Pod) (*api.RouterLoad, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(a.port)) + "/load"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("router %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("router %s: GET /load: %s: %s", p.Name, resp.Status, body)
	}
	var l api.RouterLoad
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&l); err != nil {
		return nil, fmt.Errorf("router %s: GET /load: %w", p.Name, err)
	}
	return &l, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
