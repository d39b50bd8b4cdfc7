// Command relay measures the workspace's relay at scale: N simulated agents
// speaking the real protocol (long-polled desired state, periodic reports,
// each over its own TLS connections) against one `outpost workspace serve`.
// It prints the workspace's memory, how reports are handled, and how long a
// change in desired state takes to reach every agent, with the same change
// for a single agent as the baseline; then what one change costs on a
// cluster with 10,000 objects (-objects), against its whole state. Run it
// with `make bench-relay`.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
)

var objects *int

type bench struct {
	url, admin string
	pool       *x509.CertPool
	pid        int
}

func main() {
	n := flag.Int("agents", 1000, "simulated agents")
	heartbeat := flag.Duration("heartbeat", 10*time.Second, "report interval of every agent")
	window := flag.Duration("window", 20*time.Second, "how long to measure report handling")
	objects = flag.Int("objects", 10000, "objects on one cluster for the cost of a change")
	flag.Parse()
	if err := run(*n, *heartbeat, *window); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n int, heartbeat, window time.Duration) error {
	bin, err := clustertest.Binary()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outpost-relay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	ws := exec.Command(bin, "workspace", "serve", "--addr", addr, "--data-dir", dir, "--heartbeat", heartbeat.String())
	ws.Stderr = io.Discard
	if err := ws.Start(); err != nil {
		return err
	}
	defer func() { ws.Process.Kill(); ws.Wait() }()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 200 {
			return fmt.Errorf("workspace did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, _ := os.ReadFile(filepath.Join(dir, "admin-token"))
	caPEM, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.crt"))
	b := &bench{url: "https://" + addr, admin: strings.TrimSpace(string(tok)), pool: x509.NewCertPool(), pid: ws.Process.Pid}
	b.pool.AppendCertsFromPEM(caPEM)

	base, err := b.round(1, heartbeat, 0, 5)
	if err != nil {
		return err
	}
	fmt.Printf("baseline, 1 agent: change asked -> agent has it p50 %.1f ms, p99 %.1f ms; acknowledged -> agent p99 %.1f ms (5 changes)\n",
		ms(pct(base.latencies, 0.5)), ms(pct(base.latencies, 0.99)), ms(pct(base.propagation, 0.99)))

	res, err := b.round(n, heartbeat, window, 3)
	if err != nil {
		return err
	}
	fmt.Printf("%d agents connected in %.1fs (registration and first desired state)\n", n, res.connected.Seconds())
	fmt.Printf("reports (heartbeats) over %s: %d handled, %.0f/s, latency p50 %.1f ms, p99 %.1f ms, errors %d\n",
		window, len(res.reports), float64(len(res.reports))/window.Seconds(), ms(pct(res.reports, 0.5)), ms(pct(res.reports, 0.99)), res.errors)
	p50, p99, mx := pct(res.propagation, 0.5), pct(res.propagation, 0.99), pct(res.propagation, 1)
	fmt.Printf("change acknowledged -> agent has it (%d agents x 3 rounds, one change per cluster, 16 writers): p50 %.1f ms, p99 %.1f ms, max %.1f ms (target p99 <= 100 ms: %.2fx of target)\n",
		n, ms(p50), ms(p99), ms(mx), ms(p99)/100)
	fmt.Printf("change asked -> agent has it (includes queueing behind the other 999 writes): p50 %.1f ms, p99 %.1f ms; p99 / 1-agent p99 = %.1fx\n",
		ms(pct(res.latencies, 0.5)), ms(pct(res.latencies, 0.99)), ms(pct(res.latencies, 0.99))/ms(pct(base.latencies, 0.99)))
	fmt.Printf("workspace memory: RSS %.0f MB now, peak %.0f MB (target <= 500 MB: %.2fx of target)\n", res.rss, res.peak, res.peak/500)
	return b.changeCost(*objects)
}

// changeCost measures what one change costs an agent whose cluster has
// many objects: the sync answer after one object changed, against the
// whole state (what the agent gets from revision 0, and what every change
// cost before sync went per resource).
func (b *bench) changeCost(n int) error {
	var c api.ConnectedCluster
	if err := b.call(b.admin, "PUT", "/resourceGroups/bench/connectedClusters/big", map[string]string{}, &c); err != nil {
		return err
	}
	ext := "/resourceGroups/bench/connectedClusters/big/extensions/ml"
	body := api.ExtensionRequest{ExtensionType: "Microsoft.AzureML.Kubernetes", ClusterType: "connectedClusters",
		ConfigurationSettings: map[string]string{"enableTraining": "True"}}
	if err := b.call(b.admin, "PUT", ext, body, nil); err != nil {
		return err
	}
	t0 := time.Now()
	// Computes are the objects a cluster has many of today (jobs and
	// deployments will be): n-1 of them and the extension.
	if err := parallel(n-1, 16, func(i int) error {
		return b.call(b.admin, "PUT", fmt.Sprintf("/resourceGroups/bench/workspaces/ws/computes/c%d", i),
			api.ComputeRequest{Type: "Kubernetes", ResourceID: "/resourceGroups/bench/connectedClusters/big", Namespace: fmt.Sprintf("ns-%d", i)}, nil)
	}); err != nil {
		return err
	}
	fmt.Printf("%d objects on one cluster stored in %.1fs\n", n, time.Since(t0).Seconds())
	sync := func(since int64) (api.SyncResponse, int, time.Duration, error) {
		var d api.SyncResponse
		t := time.Now()
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/agent/v1/resourceGroups/bench/connectedClusters/big/sync?since=%d", b.url, since), nil)
		req.Header.Set("Authorization", "Bearer "+c.AgentToken)
		resp, err := adminClient(b.pool).Do(req)
		if err != nil {
			return d, 0, 0, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return d, 0, 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return d, 0, 0, fmt.Errorf("sync: %s %s", resp.Status, data)
		}
		return d, len(data), time.Since(t), json.Unmarshal(data, &d)
	}
	full, fullBytes, fullTime, err := sync(0)
	if err != nil {
		return err
	}
	if len(full.Objects) != n {
		return fmt.Errorf("full state has %d objects, want %d", len(full.Objects), n)
	}
	type answer struct {
		d     api.SyncResponse
		bytes int
		at    time.Time
		err   error
	}
	got := make(chan answer, 1)
	go func() {
		d, size, _, err := sync(full.Revision)
		got <- answer{d, size, time.Now(), err}
	}()
	// The agent's poll is waiting; one object changes.
	body.ConfigurationSettings["nodeSelector.pool"] = "a"
	asked := time.Now()
	if err := b.call(b.admin, "PATCH", ext, body, nil); err != nil {
		return err
	}
	a := <-got
	if a.err != nil {
		return a.err
	}
	if len(a.d.Objects) != 1 {
		return fmt.Errorf("after one change the answer has %d objects, want 1", len(a.d.Objects))
	}
	fmt.Printf("one change among %d objects on one cluster: sync answer %d bytes, change asked -> agent has it %.1f ms; "+
		"whole state (what every change cost before) %d bytes, answered in %.1f ms; whole / change = %.0fx in bytes\n",
		n, a.bytes, ms(a.at.Sub(asked)), fullBytes, ms(fullTime), float64(fullBytes)/float64(a.bytes))
	return nil
}

type result struct {
	connected   time.Duration
	reports     []time.Duration
	errors      int
	latencies   []time.Duration // change asked -> agent has it
	propagation []time.Duration // change acknowledged -> agent has it
	rss, peak   float64
}

// round registers n clusters, runs an agent for each, measures reports for
// window, then makes `changes` rounds of one change per cluster.
func (b *bench) round(n int, heartbeat, window time.Duration, changes int) (*result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := &result{}
	start := time.Now()
	prefix := fmt.Sprintf("b%d-", n)
	tokens := make([]string, n)
	if err := parallel(n, 16, func(i int) error {
		var c api.ConnectedCluster
		if err := b.call(b.admin, "PUT", fmt.Sprintf("/resourceGroups/bench/connectedClusters/%s%d", prefix, i), map[string]string{}, &c); err != nil {
			return err
		}
		tokens[i] = c.AgentToken
		return nil
	}); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	want := make([]int64, n)        // generation each agent waits for
	changed := make([]time.Time, n) // when its change was asked for
	acked := make([]time.Time, n)   // when the workspace acknowledged it
	received := make([]time.Time, n)
	got := make([]chan struct{}, n) // signalled when it has it
	ready := make(chan struct{}, n)
	for i := range got {
		got[i] = make(chan struct{}, 1)
	}
	for i := 0; i < n; i++ {
		// Spread the first reports over a heartbeat, as agents started at
		// different times would be.
		offset := heartbeat * time.Duration(i) / time.Duration(n)
		go b.agent(ctx, fmt.Sprintf("%s%d", prefix, i), tokens[i], heartbeat, offset, ready, func(d api.SyncResponse) {
			if len(d.Objects) == 0 {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if d.Objects[0].Generation == want[i] && !changed[i].IsZero() {
				res.latencies = append(res.latencies, time.Since(changed[i]))
				changed[i] = time.Time{}
				received[i] = time.Now()
				got[i] <- struct{}{}
			}
		}, func(d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.errors++
			} else {
				res.reports = append(res.reports, d)
			}
		})
	}
	for i := 0; i < n; i++ {
		<-ready
	}
	res.connected = time.Since(start)
	mu.Lock()
	res.reports = nil
	mu.Unlock()
	time.Sleep(window)
	mu.Lock()
	reports := res.reports
	mu.Unlock()
	for c := 1; c <= changes; c++ {
		err := parallel(n, 16, func(i int) error {
			mu.Lock()
			want[i] = int64(c)
			changed[i] = time.Now()
			mu.Unlock()
			path := fmt.Sprintf("/resourceGroups/bench/connectedClusters/%s%d/extensions/ml", prefix, i)
			body := api.ExtensionRequest{ExtensionType: "Microsoft.AzureML.Kubernetes", ClusterType: "connectedClusters",
				ConfigurationSettings: map[string]string{"enableTraining": "True", "nodeSelector.round": strconv.Itoa(c)}}
			method := "PUT"
			if c > 1 {
				method = "PATCH"
			}
			err := b.call(b.admin, method, path, body, nil)
			mu.Lock()
			acked[i] = time.Now()
			mu.Unlock()
			return err
		})
		if err != nil {
			return nil, err
		}
		for i := 0; i < n; i++ {
			select {
			case <-got[i]:
			case <-time.After(60 * time.Second):
				return nil, fmt.Errorf("agent %d did not receive change %d", i, c)
			}
		}
		mu.Lock()
		for i := 0; i < n; i++ {
			// The workspace wakes the agent before it answers the writer, so
			// an agent may have the change before the writer has its answer.
			res.propagation = append(res.propagation, max(0, received[i].Sub(acked[i])))
		}
		mu.Unlock()
	}
	res.reports = reports
	res.rss, res.peak = memory(b.pid)
	return res, nil
}

// agent speaks the agent protocol: long polls on one connection, reports
// on another, every heartbeat.
func (b *bench) agent(ctx context.Context, name, token string, heartbeat, offset time.Duration, ready chan<- struct{},
	onDesired func(api.SyncResponse), onReport func(time.Duration, error)) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}, MaxIdleConnsPerHost: 2}}
	base := b.url + "/agent/v1/resourceGroups/bench/connectedClusters/" + name
	go func() {
		time.Sleep(offset)
		for ctx.Err() == nil {
			t := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "POST", base+"/report", bytes.NewReader([]byte(`{"facts":{"kubernetesVersion":"v1.34.4","totalNodeCount":3},"extensions":[],"namespaces":["default"]}`)))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			if ctx.Err() == nil {
				onReport(time.Since(t), err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(heartbeat):
			}
		}
	}()
	var since int64
	first := true
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/sync?since="+strconv.FormatInt(since, 10), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode == http.StatusOK {
			var d api.SyncResponse
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				resp.Body.Close()
				time.Sleep(100 * time.Millisecond)
				continue
			}
			since = d.Revision
			onDesired(d)
			if first {
				first = false
				ready <- struct{}{}
			}
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func (b *bench) call(token, method, path string, in, out any) error {
	data, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, b.url+path, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := adminClient(b.pool).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, body)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

var (
	adminOnce sync.Once
	admin     *http.Client
)

func adminClient(pool *x509.CertPool) *http.Client {
	adminOnce.Do(func() {
		admin = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 32}}
	})
	return admin
}

func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// memory reads the workspace's resident set and its peak, in MB.
func memory(pid int) (float64, float64) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var rss, peak float64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				rss = kb / 1024
			} else {
				peak = kb / 1024
			}
		}
	}
	return rss, peak
}
