// Package inferenceha checks that an online endpoint keeps answering while
// the router's replicas are lost: on a local cluster of three nodes the ML
// extension runs azureml-fe with inferenceRouterHA (its default: three
// replicas, one a node), the example's blue deployment sits behind it, and
// a steady load of scoring requests goes through the router's Service (the
// endpoint's scoring URI) while one router pod is killed (kubectl delete
// --grace-period=0 --force) and another deleted gracefully. A package of
// its own: it needs three nodes, which no other e2e package starts.
package inferenceha

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/internal/clustertest"
)

func TestMain(m *testing.M) { clustertest.MainWith(m, clustertest.Options{Nodes: 3}) }

const (
	rg, ws, compute = "rg", "ws", "local-compute" // the example's endpoint.yml names local-compute
	ep              = "diabetes-endpoint"         // the example's
	routerNS        = "azureml"
	routerApp       = "azureml-fe"
	sample          = `{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}`

	// clients is the load's concurrency: each client sends one request
	// at a time, on a new connection (as curl does), so that the service
	// proxy spreads the requests over all the router's replicas.
	clients = 3
	// every is each client's pace: a steady load the two shared CPUs of a
	// test machine keep up with while the cluster replaces a replica.
	every = 20 * time.Millisecond
)

// fixture is a workspace with the 3-node cluster connected, the ML
// extension installed with inference over HTTP (the router on a node port,
// HA by default) and the cluster attached.
type fixture struct {
	*clustertest.Workspace
	dir string // the example's copy
}

func (f *fixture) mustML(args ...string) string {
	f.T.Helper()
	out, errOut, code := f.Outpost(append(append([]string{"ml"}, args...), "-g", rg, "-w", ws)...)
	if code != 0 {
		f.T.Fatalf("outpost ml %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestRouterReplicaLossUnderLoad(t *testing.T) {
	f := &fixture{Workspace: clustertest.StartWorkspace(t, time.Second), dir: t.TempDir()}
	_, file, _, _ := runtime.Caller(0)
	if out, err := exec.Command("cp", "-r", filepath.Join(filepath.Dir(file), "..", "..", "examples", "endpoints")+"/.", f.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the example: %v\n%s", err, out)
	}
	// Debian's python3, the one pods run (scripts/deps.sh installs
	// scikit-learn for it), whatever python3 comes first in PATH here.
	if out, err := exec.Command("/usr/bin/python3", filepath.Join(f.dir, "train.py")).CombinedOutput(); err != nil {
		t.Fatalf("train the example's model: %v\n%s", err, out)
	}
	f.Must("connectedk8s", "connect", "--name", "c1", "--resource-group", rg)
	t.Cleanup(func() {
		f.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", rg, "--yes")
	})
	// inferenceRouterHA is left at its default (True).
	f.Must("k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", rg, "--scope", "cluster",
		"--config", "enableInference=True", "allowInsecureConnections=True", "inferenceRouterServiceType=NodePort")
	f.Must("ml", "compute", "attach", "-g", rg, "-w", ws, "--name", compute, "--type", "Kubernetes",
		"--resource-id", "/resourceGroups/"+rg+"/connectedClusters/c1")

	routers := waitRouters(t, "the HA router's 3 replicas", nil)
	nodes := map[string]bool{}
	for _, p := range routers {
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("the 3 router replicas are on nodes %v: want one a node, so that a node's loss leaves two", slices.Sorted(maps.Keys(nodes)))
	}

	f.mustML("online-endpoint", "create", "-f", filepath.Join(f.dir, "endpoint.yml"))
	f.mustML("online-deployment", "create", "-f", filepath.Join(f.dir, "blue-deployment.yml"), "--all-traffic")
	uri := strings.TrimSpace(f.mustML("online-endpoint", "show", "-n", ep, "--query", "scoring_uri", "-o", "tsv"))
	key := strings.TrimSpace(f.mustML("online-endpoint", "get-credentials", "-n", ep, "--query", "primaryKey", "-o", "tsv"))
	if !strings.HasPrefix(uri, "http://127.0.0.1:") {
		t.Fatalf("scoring URI %q: want the router's node port over HTTP", uri)
	}
	curlScore(t, uri, key)

	l := startLoad(t, uri, key)
	l.waitOK(t, time.Now(), 50, "the load answered before any replica is lost")

	// A kill: the pod object goes at once and its process is killed; the
	// requests it was serving are lost with it.
	killed := routers[0].Name
	killAt := time.Now()
	clustertest.Kubectl(t, "delete", "pod", "-n", routerNS, killed, "--grace-period=0", "--force")
	waitRouters(t, "3 ready replicas again after the kill of "+killed, []string{killed})
	killUp := time.Now()
	l.waitOK(t, killUp, 50, "the load answered after the kill")

	// A graceful delete: the replica turns unready and keeps serving
	// (--shutdown-delay) until the service proxy sends it nothing new,
	// then drains what it holds.
	deleted := routers[1].Name
	deleteAt := time.Now()
	clustertest.Kubectl(t, "delete", "pod", "-n", routerNS, deleted)
	waitRouters(t, "3 ready replicas again after the delete of "+deleted, []string{killed, deleted})
	deleteUp := time.Now()
	l.waitOK(t, deleteUp, 50, "the load answered after the delete")
	l.stop()
	curlScore(t, uri, key)

	// Each client has one request in flight at a time, and neither the
	// client (a POST) nor the router (once a request reached an instance)
	// retries: a replica's loss can cost at most the requests in flight
	// on it, one a client. Anything new goes to a live replica: the
	// service proxy drops the gone pod's endpoint and, until it has,
	// moves on when a connect is refused. So the bound is the clients'
	// count for the kill; the graceful delete must cost nothing (that is
	// what the shutdown delay is for), and nothing may fail outside the
	// two windows.
	kill := l.window(killAt, killUp)
	del := l.window(deleteAt, deleteUp)
	outside := l.outside([][2]time.Time{{killAt, killUp}, {deleteAt, deleteUp}})
	t.Logf("load: %d requests from %d clients, one at a time each, every %s, each on a new connection", l.total(), clients, every)
	t.Logf("kill of %s (--grace-period=0 --force): 3 ready again in %s; %s", killed, killUp.Sub(killAt).Round(10*time.Millisecond), kill)
	t.Logf("graceful delete of %s: 3 ready again in %s; %s", deleted, deleteUp.Sub(deleteAt).Round(10*time.Millisecond), del)
	if kill.failed > clients {
		t.Errorf("the kill cost more than the %d requests that can be in flight on a replica: %s", clients, kill)
	}
	if del.failed > 0 {
		t.Errorf("the graceful delete cost requests, want none: %s", del)
	}
	if outside.failed > 0 {
		t.Errorf("requests failed with every replica serving: %s", outside)
	}
}

// waitRouters waits until the router's Deployment has 3 ready replicas,
// all of them up to date and none of them gone (one of the pods named),
// and returns those pods.
func waitRouters(t *testing.T, what string, gone []string) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	clustertest.Eventually(t, 90*time.Second, what, func() error {
		ctx := context.Background()
		d, err := clustertest.Cluster.Client.AppsV1().Deployments(routerNS).Get(ctx, routerApp, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			return fmt.Errorf("the Deployment asks for %v replicas", d.Spec.Replicas)
		}
		if s := d.Status; s.ReadyReplicas != 3 || s.UpdatedReplicas != 3 || s.ObservedGeneration != d.Generation {
			return fmt.Errorf("%d ready, %d updated", s.ReadyReplicas, s.UpdatedReplicas)
		}
		pods, err := clustertest.Cluster.Client.CoreV1().Pods(routerNS).List(ctx, metav1.ListOptions{LabelSelector: "app=" + routerApp})
		if err != nil {
			return err
		}
		ready = nil
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) && !slices.Contains(gone, p.Name) {
				ready = append(ready, p)
			}
		}
		if len(ready) != 3 {
			return fmt.Errorf("%d ready pods not being deleted, of %d", len(ready), len(pods.Items))
		}
		return nil
	})
	return ready
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// curlScore is a user's check: curl's POST of the sample with the key
// answers 200.
func curlScore(t *testing.T, uri, key string) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer "+key,
		"-H", "Content-Type: application/json", "--data-binary", sample, uri).CombinedOutput()
	if err != nil || string(out) != "200" {
		t.Fatalf("curl %s: %v: %s", uri, err, out)
	}
}

// result is one request of the load.
type result struct {
	start, end time.Time
	failure    string // "": a 200
}

// load is clients loops of scoring requests through the router.
type load struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	res  []result
}

func startLoad(t *testing.T, uri, key string) *load {
	l := &load{done: make(chan struct{})}
	// A new connection per request, as curl makes; the timeout is above
	// the deployment's request_timeout_ms (3 s), after which the router
	// answers 408 itself.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for range clients {
		l.wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-l.done:
					return
				case <-tick.C:
				}
				r := result{start: time.Now()}
				r.failure = score(c, uri, key)
				r.end = time.Now()
				l.mu.Lock()
				l.res = append(l.res, r)
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// score sends one request and says how it failed ("" for a 200).
func score(c *http.Client, uri, key string) string {
	req, err := http.NewRequest(http.MethodPost, uri, strings.NewReader(sample))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := c.Do(req)
	if err != nil {
		// The URL, and so the endpoint, is in the error; the key is not.
		return strings.TrimPrefix(err.Error(), `Post "`+uri+`": `)
	}
	defer res.Body.Close()
	// The whole answer must arrive too.
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return "reading the answer: " + err.Error()
	}
	if res.StatusCode != http.StatusOK {
		return "HTTP " + strconv.Itoa(res.StatusCode)
	}
	return ""
}

// waitOK waits until n requests sent at or after from have answered 200.
func (l *load) waitOK(t *testing.T, from time.Time, n int, what string) {
	t.Helper()
	clustertest.Eventually(t, 60*time.Second, what, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		ok, failed := 0, 0
		for _, r := range l.res {
			if r.start.Before(from) {
				continue
			}
			if r.failure == "" {
				ok++
			} else {
				failed++
			}
		}
		if ok < n {
			return fmt.Errorf("%d answered 200, %d failed, since %s", ok, failed, from.Format("15:04:05.000"))
		}
		return nil
	})
}

// tally is what the requests of a stretch of time came to.
type tally struct {
	requests, failed int
	why              map[string]int
}

func (s tally) String() string {
	if s.failed == 0 {
		return fmt.Sprintf("0 of %d requests failed", s.requests)
	}
	var why []string
	for _, w := range slices.Sorted(maps.Keys(s.why)) {
		why = append(why, fmt.Sprintf("%d x %s", s.why[w], w))
	}
	return fmt.Sprintf("%d of %d requests failed (%.2f%%): %s", s.failed, s.requests, 100*float64(s.failed)/float64(s.requests), strings.Join(why, "; "))
}

func (l *load) count(in func(r result) bool) tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := tally{why: map[string]int{}}
	for _, r := range l.res {
		if !in(r) {
			continue
		}
		s.requests++
		if r.failure != "" {
			s.failed++
			s.why[r.failure]++
		}
	}
	return s
}

// window counts the requests that ended from the disruption at from until
// the router was whole again at to: the ones it can have cost.
func (l *load) window(from, to time.Time) tally {
	return l.count(func(r result) bool { return !r.end.Before(from) && !r.end.After(to) })
}

// outside counts the requests that ended in none of the windows.
func (l *load) outside(windows [][2]time.Time) tally {
	return l.count(func(r result) bool {
		for _, w := range windows {
			if !r.end.Before(w[0]) && !r.end.After(w[1]) {
				return false
			}
		}
		return true
	})
}

func (l *load) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.res)
}
