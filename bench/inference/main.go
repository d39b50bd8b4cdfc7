// Command inference measures online endpoints end to end on a fresh local
// cluster, driven as a user drives them: the outpost binary deploys
// examples/endpoints (its model trained first, into a copy) on the local
// cluster attached to a workspace, with the extension's router serving
// HTTP on a node port, and wrk sends the scoring requests to the
// endpoint's scoring URI with the endpoint's key.
//
// Two figures:
//
//   - requests/s, p50 and p99 of the scikit-learn blue deployment through
//     the router, with as many connections as the deployment takes
//     requests at once (max_concurrent_requests_per_instance x
//     instance_count), so that every request is scored rather than queued;
//   - autoscale: a deployment whose score.py sleeps 50 ms, with
//     scale_settings target_utilization (min 1, max 3, polling 1 s, target
//     70 %), loaded by wrk until 3 instances are ready, then left idle
//     until it is back to 1: the times from load start to 2 and 3 ready
//     instances, and from load stop to 2 and 1, each as the autoscaler
//     asked (the apps/v1 Deployment's replicas), as the cluster has them
//     ready (its readyReplicas) and as the workspace shows them
//     (ready_instance_count, after the agent's report).
//
// Run `make bench-inference`; Ctrl-C stops it and cleans up (a second
// Ctrl-C exits at once).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/bench/benchenv"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/cluster"
)

const (
	rg, ws, computeName = "rg", "ws", "local-compute" // the example's endpoint.yml names local-compute
	endpointName        = "diabetes-endpoint"         // the example's
	scaleName           = "scale"
	// scaleSleep is how long the autoscaled deployment's run() takes.
	scaleSleep = 50 * time.Millisecond
	// downPolls is internal/inference's: how many polls in a row a load
	// must fit in one instance fewer before the autoscaler removes one.
	downPolls = 20
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "the wrk run against blue")
	flag.IntVar(&o.connections, "connections", 0, "wrk connections against blue (0: the requests blue takes at once)")
	flag.IntVar(&o.scaleConns, "autoscale-connections", 4, "wrk connections of the autoscale load (each keeps one request in flight or queued)")
	flag.DurationVar(&o.scaleWithin, "autoscale-within", 3*time.Minute, "how long each autoscale phase may take before the bench gives up on it")
	flag.StringVar(&o.logs, "logs", "", "folder to keep the workspace's, agent's, operator's and router's logs in (default: none kept)")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		signal.Stop(sigs) // a second Ctrl-C ends the program at once
		fmt.Fprintln(os.Stderr, "bench: stopping and cleaning up (Ctrl-C again to exit at once)")
		cancel()
	}()
	err := run(ctx, o)
	cancel()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	duration    time.Duration
	connections int
	scaleConns  int
	scaleWithin time.Duration
	logs        string
}

// bench is the cluster, the workspace, a login to it and the example's copy.
type bench struct {
	env     *benchenv.Env
	dir     string
	example string
	bin     string
	cfg     *cluster.Config
	kube    kubernetes.Interface
	ws      *client.Client
}

func run(ctx context.Context, o options) error {
	for _, tool := range []string{"wrk", "kubectl", "/usr/bin/python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make deps installs it): %w", tool, err)
		}
	}
	b, cleanup, err := setup(ctx)
	defer cleanup()
	if err != nil {
		return err
	}
	if o.logs != "" {
		defer b.keepLogs(o.logs) // before cleanup, which removes them
	}

	start := time.Now()
	if _, err := b.ml(ctx, "online-endpoint", "create", "-f", b.file("endpoint.yml")); err != nil {
		return err
	}
	if _, err := b.ml(ctx, "online-deployment", "create", "-f", b.file("blue-deployment.yml"), "--all-traffic"); err != nil {
		return err
	}
	deployed := time.Since(start)
	var ep api.OnlineEndpoint
	if err := b.mlJSON(ctx, &ep, "online-endpoint", "show", "-n", endpointName); err != nil {
		return err
	}
	var blue api.OnlineDeployment
	if err := b.mlJSON(ctx, &blue, "online-deployment", "show", "-n", "blue", "-e", endpointName); err != nil {
		return err
	}
	key, err := b.ml(ctx, "online-endpoint", "get-credentials", "-n", endpointName, "--query", "primaryKey", "-o", "tsv")
	if err != nil {
		return err
	}
	key = strings.TrimSpace(key)
	body, err := os.ReadFile(b.file("sample-request.json"))
	if err != nil {
		return err
	}
	if err := probe(ctx, ep.ScoringURI, key, "", body); err != nil {
		return fmt.Errorf("a first request to blue: %w", err)
	}
	fmt.Printf("\nbench-inference: examples/endpoints on a fresh local cluster (1 node, %d CPUs); azureml-fe (1 replica) over HTTP on a node port\n", runtime.NumCPU())
	fmt.Printf("endpoint %s and deployment blue created (Succeeded) in %s; scoring URI %s\n", endpointName, deployed.Round(100*time.Millisecond), ep.ScoringURI)

	// (a) blue end to end.
	perInstance := 1 // Azure ML's default
	if rs := blue.RequestSettings; rs != nil && rs.MaxConcurrentRequestsPerInstance > 0 {
		perInstance = rs.MaxConcurrentRequestsPerInstance
	}
	conns := o.connections
	if conns <= 0 {
		conns = max(blue.InstanceCount, 1) * perInstance
	}
	script, err := b.wrkScript("blue.lua", key, "", body)
	if err != nil {
		return err
	}
	fmt.Printf("\n(a) blue: %d instance(s), max_concurrent_requests_per_instance %d: wrk -t%d -c%d -d%s --latency, POST sample-request.json (%d bytes), Authorization: Bearer <key>\n",
		blue.InstanceCount, perInstance, wrkThreads(conns), conns, o.duration, len(body))
	thr, err := runWrk(ctx, script, ep.ScoringURI, conns, o.duration, nil)
	if err != nil {
		return err
	}
	printWrk(thr)

	// (b) autoscale.
	sc, err := b.autoscale(ctx, o, ep.ScoringURI, key, body)
	if err != nil {
		return err
	}

	fmt.Printf("\nsummary (1 node, %d CPUs shared with whatever else runs; router 1 replica, HTTP)\n", runtime.NumCPU())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  blue end to end\twrk -c%d %s\t%.0f req/s\tp50 %s\tp99 %s\t%d requests, %d non-2xx, %d socket errors\n",
		conns, o.duration, thr.rps, ms(thr.p50), ms(thr.p99), thr.requests, thr.non2xx, thr.socketErrors)
	tw.Flush()
	fmt.Printf("  autoscale: score.py sleeps %s; min 1, max 3, polling 1 s, target 70 %%; wrk -c%d through the router (header azureml-model-deployment: %s)\n",
		scaleSleep, o.scaleConns, scaleName)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "    \tasked\tready (cluster)\tready_instance_count (workspace)\t")
	for _, e := range sc.events {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t\n", e.name, since(e.asked), since(e.ready), since(e.shown))
	}
	tw.Flush()
	if len(sc.events) == 4 && sc.events[0].asked == sc.events[1].asked {
		fmt.Printf("    (2 and 3 at once: the autoscaler scales up in one step to the fewest instances that bring the load to the target, here max 3)\n")
	}
	fmt.Printf("    load: %d requests in %s (%.0f req/s), p50 %s, p99 %s, %d non-2xx (%s), %d socket errors\n",
		sc.load.requests, sc.load.elapsed.Round(100*time.Millisecond), sc.load.rps, ms(sc.load.p50), ms(sc.load.p99),
		sc.load.non2xx, sc.load.statusSummary(), sc.load.socketErrors)
	if down := sc.events[3].asked - sc.events[2].asked; sc.events[2].asked >= 0 && sc.events[3].asked >= 0 {
		// The step from 2 to 1 is all polls below target: its length
		// over the polls it waits is how often the autoscaler polled.
		fmt.Printf("    scale-down: each instance goes after %d polls below target; 2 -> 1 took %s, %.2f s a poll (polling_interval 1 s)\n",
			downPolls, since(down), down.Seconds()/downPolls)
	}
	return nil
}

func setup(ctx context.Context) (*bench, func(), error) {
	e, err := benchenv.Start(ctx, benchenv.Options{Name: "inference", ResourceGroup: rg, Workspace: ws, Compute: computeName, Heartbeat: "1s",
		Extension: []string{"--scope", "cluster", "--config", "enableInference=True", "allowInsecureConnections=True", "inferenceRouterServiceType=NodePort"}})
	if err != nil {
		return nil, func() {}, err
	}
	// The example's copy, its model trained with Debian's python3: the one
	// the pods run (scripts/deps.sh installs scikit-learn for it).
	_, self, _, _ := runtime.Caller(0)
	example := filepath.Join(e.Dir, "example")
	if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(filepath.Dir(self), "..", "..", "examples", "endpoints"), example).CombinedOutput(); err != nil {
		e.Close()
		return nil, func() {}, fmt.Errorf("copy examples/endpoints: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join(example, "train.py")).CombinedOutput(); err != nil {
		e.Close()
		return nil, func() {}, fmt.Errorf("train the example's model: %v\n%s", err, out)
	}
	b := &bench{env: e, dir: e.Dir, example: example, bin: e.Bin, cfg: e.Cluster, kube: e.Kube, ws: e.WS}
	return b, e.Close, nil
}

// file is a path in the example's copy.
func (b *bench) file(name string) string { return filepath.Join(b.example, name) }

func (b *bench) outpost(ctx context.Context, args ...string) (string, error) {
	return b.env.Outpost(ctx, args...)
}

// ml runs `outpost ml ...` in the workspace rg/ws.
func (b *bench) ml(ctx context.Context, args ...string) (string, error) {
	return b.outpost(ctx, append(append([]string{"ml"}, args...), "-g", rg, "-w", ws)...)
}

func (b *bench) mlJSON(ctx context.Context, out any, args ...string) error {
	s, err := b.ml(ctx, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return fmt.Errorf("outpost ml %s: %w\n%s", strings.Join(args, " "), err, s)
	}
	return nil
}

// keepLogs copies the workspace's log and the agent's, operator's and
// router's pod logs into dir.
func (b *bench) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
		return
	}
	for name, path := range map[string]string{"workspace.log": filepath.Join(b.dir, "workspace.log"), "node.log": b.cfg.LogPath("node")} {
		data, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
		}
	}
	for _, c := range []struct{ name, ns, selector string }{
		{"agent", "azure-arc", "app=outpost-agent"},
		{"inference-operator", "azureml", "app=inference-operator"},
		{"router", "azureml", "app=azureml-fe"},
	} {
		out, err := exec.Command("kubectl", "--kubeconfig", b.cfg.KubeconfigPath(), "logs", "-n", c.ns, "-l", c.selector, "--tail=-1", "--timestamps").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s log: %v\n%s", c.name, err, out)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, c.name+".log"), out, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
		}
	}
	fmt.Fprintf(os.Stderr, "logs kept in %s\n", dir)
}

// probe sends one scoring request and wants a 200.
func probe(ctx context.Context, uri, key, deployment string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	if deployment != "" {
		req.Header.Set("azureml-model-deployment", deployment)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", res.Status, answer)
	}
	return nil
}

// wrkScript writes a wrk script that POSTs body with the key (and the
// header naming deployment, when given), and counts the answers by status:
// wrk itself only counts "non-2xx or 3xx", and a 429 (queue full) reads
// differently from a 5xx.
func (b *bench) wrkScript(name, key, deployment string, body []byte) (string, error) {
	var s strings.Builder
	fmt.Fprintf(&s, "wrk.method = \"POST\"\nwrk.body = %q\n", body)
	fmt.Fprintf(&s, "wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer %s\"\n", key)
	if deployment != "" {
		fmt.Fprintf(&s, "wrk.headers[\"azureml-model-deployment\"] = %q\n", deployment)
	}
	s.WriteString(`local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do all[code] = (all[code] or 0) + n end
  end
  for code, n in pairs(all) do io.write(string.format("status %d %d\n", code, n)) end
end
`)
	path := filepath.Join(b.dir, name)
	return path, os.WriteFile(path, []byte(s.String()), 0o600) // it holds the key
}

// wrkResult is what wrk reported.
type wrkResult struct {
	p50, p99     time.Duration
	rps          float64
	requests     int
	elapsed      time.Duration
	non2xx       int
	socketErrors int
	statuses     map[int]int
}

func (r wrkResult) statusSummary() string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(r.statuses)) {
		parts = append(parts, fmt.Sprintf("%d x%d", code, r.statuses[code]))
	}
	return strings.Join(parts, ", ")
}

// wrkThreads is wrk's threads for conns connections: one a CPU of the
// machine's two at most, as bench-router's.
func wrkThreads(conns int) int { return min(conns, 2) }

// runWrk runs wrk for d, or until stop is closed (then it is interrupted
// and reports what it measured so far, as on Ctrl-C).
func runWrk(ctx context.Context, script, url string, conns int, d time.Duration, stop <-chan struct{}) (wrkResult, error) {
	cmd := exec.Command("wrk", "-t"+strconv.Itoa(wrkThreads(conns)), "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(int(d.Seconds()))+"s",
		"--timeout", "10s", "--latency", "-s", script, url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return wrkResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-stop:
		if serr := cmd.Process.Signal(os.Interrupt); serr != nil {
			return wrkResult{}, fmt.Errorf("stop wrk: %w", serr)
		}
		err = <-done
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return wrkResult{}, ctx.Err()
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	return parseWrk(out.String())
}

var (
	pctLine      = regexp.MustCompile(`^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$`)
	rpsLine      = regexp.MustCompile(`^Requests/sec:\s+([\d.]+)`)
	totalLine    = regexp.MustCompile(`^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	non2xxLine   = regexp.MustCompile(`^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	socketLine   = regexp.MustCompile(`^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	statusLine   = regexp.MustCompile(`^status (\d+) (\d+)$`)
	durationUnit = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}
)

func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{statuses: map[int]int{}}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n } // the patterns admit digits only
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := pctLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return r, err
			}
			d := time.Duration(v * float64(durationUnit[m[3]]))
			if m[1] == "50" {
				r.p50 = d
			} else {
				r.p99 = d
			}
		}
		if m := rpsLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return r, err
			}
			r.rps = v
		}
		if m := totalLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return r, err
			}
			r.requests, r.elapsed = atoi(m[1]), time.Duration(v*float64(durationUnit[m[3]]))
		}
		if m := non2xxLine.FindStringSubmatch(line); m != nil {
			r.non2xx = atoi(m[1])
		}
		if m := socketLine.FindStringSubmatch(line); m != nil {
			r.socketErrors = atoi(m[1]) + atoi(m[2]) + atoi(m[3]) + atoi(m[4])
		}
		if m := statusLine.FindStringSubmatch(line); m != nil {
			r.statuses[atoi(m[1])] += atoi(m[2])
		}
	}
	if r.rps == 0 || r.requests == 0 {
		return r, fmt.Errorf("no Requests/sec or request count in wrk's report:\n%s", out)
	}
	return r, nil
}

func printWrk(r wrkResult) {
	fmt.Printf("  %.0f req/s, p50 %s, p99 %s; %d requests in %s, %d non-2xx (%s), %d socket errors\n",
		r.rps, ms(r.p50), ms(r.p99), r.requests, r.elapsed.Round(10*time.Millisecond), r.non2xx, r.statusSummary(), r.socketErrors)
}

// event is one autoscale step: when it was asked for, ready on the
// cluster and shown by the workspace, each measured from its phase's
// start (load start or load stop); negative: not seen.
type event struct {
	name                string
	asked, ready, shown time.Duration
}

type scaleResult struct {
	events []event
	load   wrkResult
}

// sample is the scaled deployment's state at one instant.
type sample struct {
	at                  time.Time
	asked, ready, shown int // shown: the workspace's ready_instance_count (-1: not read)
}

// watch samples the autoscaled deployment on the cluster every 100 ms and
// in the workspace every 250 ms until ctx ends.
type watch struct {
	mu      sync.Mutex
	cluster []sample
	shown   []sample
	err     error
}

func (w *watch) add(s sample, toCluster bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if toCluster {
		w.cluster = append(w.cluster, s)
	} else {
		w.shown = append(w.shown, s)
	}
}

func (w *watch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// last is the latest cluster sample and the first error.
func (w *watch) last() (sample, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cluster) == 0 {
		return sample{}, w.err
	}
	return w.cluster[len(w.cluster)-1], w.err
}

// first is the first instant at or after from when pick holds, or the zero
// time.
func first(samples []sample, from time.Time, pick func(sample) bool) time.Time {
	for _, s := range samples {
		if !s.at.Before(from) && pick(s) {
			return s.at
		}
	}
	return time.Time{}
}

func (b *bench) watchScale(ctx context.Context, w *watch) {
	sel := v1alpha1.LabelEndpoint + "=" + endpointName + "," + v1alpha1.LabelDeployment + "=" + scaleName
	path := "/resourceGroups/" + rg + "/workspaces/" + ws + "/onlineEndpoints/" + endpointName + "/deployments/" + scaleName
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			l, err := b.kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: sel})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				w.fail(fmt.Errorf("list the Deployment of %s: %w", scaleName, err))
			case len(l.Items) != 1:
				w.fail(fmt.Errorf("%d Deployments labelled %s, want 1", len(l.Items), sel))
			default:
				d := l.Items[0]
				w.add(sample{at: time.Now(), asked: int(*d.Spec.Replicas), ready: int(d.Status.ReadyReplicas)}, true)
			}
			if sleep(ctx, 100*time.Millisecond) != nil {
				return
			}
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			var d api.OnlineDeployment
			err := b.ws.Do(ctx, http.MethodGet, path, nil, &d)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				w.fail(fmt.Errorf("GET %s from the workspace: %w", path, err))
			default:
				w.add(sample{at: time.Now(), shown: d.ReadyInstances}, false)
			}
			if sleep(ctx, 250*time.Millisecond) != nil {
				return
			}
		}
	})
	wg.Wait()
}

// until waits for cond on the latest cluster sample, for at most within.
func (w *watch) until(ctx context.Context, within time.Duration, what string, cond func(sample) bool) error {
	deadline := time.Now().Add(within)
	for {
		s, err := w.last()
		if err != nil {
			return err
		}
		if !s.at.IsZero() && cond(s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s (last: %d asked, %d ready)", what, within, s.asked, s.ready)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *bench) autoscale(ctx context.Context, o options, uri, key string, body []byte) (scaleResult, error) {
	var res scaleResult
	code := fmt.Sprintf(`import time


def init():
    pass


def run(raw_data):
    # The bench's autoscaled deployment: every request holds its instance
    # (one request at a time) for a fixed time.
    time.sleep(%g)
    return "slept"
`, scaleSleep.Seconds())
	if err := os.MkdirAll(b.file(scaleName), 0o755); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(b.file(scaleName), "score.py"), []byte(code), 0o644); err != nil {
		return res, err
	}
	yml := fmt.Sprintf(`name: %[1]s
endpoint_name: %[2]s
model: {path: ./model}
code_configuration: {code: ./%[1]s, scoring_script: score.py}
environment: {image: python:3.11}
instance_type: defaultinstancetype
scale_settings:
  type: target_utilization
  min_instances: 1
  max_instances: 3
  polling_interval: 1
  target_utilization_percentage: 70
request_settings:
  request_timeout_ms: 5000
  max_concurrent_requests_per_instance: 1
  max_queue_wait_ms: 1000
`, scaleName, endpointName)
	if err := os.WriteFile(b.file(scaleName+".yml"), []byte(yml), 0o644); err != nil {
		return res, err
	}
	if _, err := b.ml(ctx, "online-deployment", "create", "-f", b.file(scaleName+".yml")); err != nil {
		return res, err
	}
	if err := probe(ctx, uri, key, scaleName, body); err != nil {
		return res, fmt.Errorf("a first request to %s: %w", scaleName, err)
	}
	script, err := b.wrkScript(scaleName+".lua", key, scaleName, body)
	if err != nil {
		return res, err
	}

	wctx, stopWatch := context.WithCancel(ctx)
	w := &watch{}
	watched := make(chan struct{})
	go func() { b.watchScale(wctx, w); close(watched) }()
	defer func() { stopWatch(); <-watched }()
	if err := w.until(ctx, 30*time.Second, "the deployment at 1 ready instance before the load", func(s sample) bool { return s.asked == 1 && s.ready == 1 }); err != nil {
		return res, err
	}

	fmt.Printf("\n(b) autoscale: deployment %s (score.py sleeps %s, one request at a time; min 1, max 3, polling 1 s, target 70 %%),\n", scaleName, scaleSleep)
	fmt.Printf("    wrk -c%d with azureml-model-deployment: %s until 3 instances are ready, then idle until 1\n", o.scaleConns, scaleName)
	stop := make(chan struct{})
	type wrkDone struct {
		r   wrkResult
		err error
	}
	loadDone := make(chan wrkDone, 1)
	loadStart := time.Now()
	go func() {
		r, err := runWrk(ctx, script, uri, o.scaleConns, 30*time.Minute, stop)
		loadDone <- wrkDone{r, err}
	}()
	upErr := w.until(ctx, o.scaleWithin, "3 ready instances under load", func(s sample) bool { return s.ready >= 3 })
	close(stop)
	loadStop := time.Now()
	ld := <-loadDone
	if ld.err != nil {
		return res, ld.err
	}
	res.load = ld.r
	if upErr != nil {
		return res, upErr
	}
	fmt.Printf("    3 instances ready %s after the load started; load stopped\n", since(loadStop.Sub(loadStart)))
	printWrk(ld.r)
	fmt.Printf("    waiting for the scale-down (%d polls per instance)...\n", downPolls)
	if err := w.until(ctx, o.scaleWithin, "back to 1 instance after the load", func(s sample) bool { return s.asked == 1 && s.ready == 1 }); err != nil {
		return res, err
	}
	// The workspace learns of it at the agent's next report.
	deadline := time.Now().Add(30 * time.Second)
	for {
		w.mu.Lock()
		shown := first(w.shown, loadStop, func(s sample) bool { return s.shown == 1 })
		w.mu.Unlock()
		if !shown.IsZero() || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	stopWatch()
	<-watched
	if w.err != nil {
		return res, w.err
	}

	at := func(from, t time.Time) time.Duration {
		if t.IsZero() {
			return -1
		}
		return t.Sub(from)
	}
	step := func(name string, from time.Time, n int, up bool) event {
		reached := func(v int) bool { return (up && v >= n) || (!up && v <= n) }
		return event{name: name,
			asked: at(from, first(w.cluster, from, func(s sample) bool { return reached(s.asked) })),
			ready: at(from, first(w.cluster, from, func(s sample) bool { return reached(s.ready) })),
			shown: at(from, first(w.shown, from, func(s sample) bool { return reached(s.shown) })),
		}
	}
	res.events = []event{
		step("load start -> 2 instances", loadStart, 2, true),
		step("load start -> 3 instances", loadStart, 3, true),
		step("load stop -> 2 instances", loadStop, 2, false),
		step("load stop -> 1 instance", loadStop, 1, false),
	}
	b.printScaled(ctx)
	return res, nil
}

// printScaled prints the autoscaler's decisions with its reasons, from the
// OnlineDeployment's events.
func (b *bench) printScaled(ctx context.Context) {
	l, err := b.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "reason=Scaled"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: the autoscaler's events:", err)
		return
	}
	evs := l.Items
	slices.SortFunc(evs, func(a, b corev1.Event) int { return a.LastTimestamp.Compare(b.LastTimestamp.Time) })
	fmt.Println("    the autoscaler's decisions (events Scaled):")
	for _, e := range evs {
		if e.InvolvedObject.Kind == v1alpha1.DeploymentKind {
			fmt.Printf("      %s  %s\n", e.LastTimestamp.Format("15:04:05"), e.Message)
		}
	}
}

func since(d time.Duration) string {
	if d < 0 {
		return "not seen"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
