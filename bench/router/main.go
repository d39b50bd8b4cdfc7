// Command router measures what the inference router azureml-fe adds to a
// scoring call: one no-op HTTP backend on 127.0.0.1, and the same wrk load
// (same threads, connections, duration, request) sent straight to it,
// through Debian's nginx set up as a keep-alive reverse proxy, and through
// the router with key auth and a table of one endpoint, one deployment and
// one instance (max_concurrent_requests_per_instance high enough never to
// queue). The backend, nginx and the router each run in a process of their
// own, the router with the same server, transport, metrics and batched
// request log as `outpost extension inference-router` (only its table comes
// from code rather than from the cluster's informers).
//
// Two loads: one connection (the latency a request pays for the hop, the
// machine otherwise idle) and -connections connections (throughput with
// the CPUs saturated). Rounds alternate the three targets so that a noisy
// neighbour hurts all of them alike; each figure is the median of the
// rounds. Run it with `make bench-router`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/router"
)

const (
	benchKey  = "bench-key-0123456789abcdefghijklmnopqrstuv"
	scorePath = "/api/v1/endpoint/bench/score"
	body      = `{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}`
)

// Targets (the issue's).
const (
	targetAddedP50 = 300 * time.Microsecond
	targetAddedP99 = time.Millisecond
	targetRatio    = 1.0
)

func main() {
	serve := flag.String("serve", "", "internal: run as the bench's backend or router")
	addr := flag.String("addr", "", "internal: the address to serve")
	upstream := flag.String("upstream", "", "internal: the router's instance")
	logFile := flag.String("log", "", "internal: the router's request log")
	cpuProfile := flag.String("cpuprofile", "", "write the router's CPU profile (all loads) to this file")
	threads := flag.Int("threads", 2, "wrk threads")
	conns := flag.Int("connections", 64, "wrk connections of the throughput load")
	duration := flag.Duration("duration", 5*time.Second, "each wrk run")
	rounds := flag.Int("rounds", 3, "rounds over the three targets")
	flag.Parse()
	var err error
	switch *serve {
	case "backend":
		err = serveBackend(*addr)
	case "router":
		if *cpuProfile != "" {
			f, ferr := os.Create(*cpuProfile)
			if ferr != nil {
				err = ferr
				break
			}
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		err = serveRouter(*addr, *upstream, *logFile)
	case "":
		err = run(*threads, *conns, *duration, *rounds, *cpuProfile)
	default:
		err = fmt.Errorf("-serve %q: backend or router", *serve)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-router:", err)
		os.Exit(1)
	}
}

// serveBackend is the no-op instance: it reads the request and answers a
// small JSON document.
func serveBackend(addr string) error {
	answer := []byte(`{"result": [0.5]}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func serveRouter(addr, upstream, logFile string) error {
	f, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer f.Close()
	lw := router.NewLogWriter(f, 200*time.Millisecond)
	defer lw.Close()
	rt := router.New(router.Options{
		Replica:    "bench",
		RequestLog: lw,
		Registerer: prometheus.NewRegistry(),
	})
	err = rt.SetTable(&router.Table{Replicas: 1, Endpoints: map[string]*router.Endpoint{
		"bench": {
			Name: "bench", Namespace: "bench", AuthMode: api.AuthModeKey, Keys: []string{benchKey, "secondary-" + benchKey},
			Traffic: map[string]int{"blue": 100},
			Deployments: map[string]*router.Deployment{"blue": {
				Name: "blue", Timeout: 5 * time.Second, MaxConcurrent: 100000, MaxQueueWait: 500 * time.Millisecond,
				Instances: []router.Instance{{Name: "blue-0", Addr: upstream, ScoringPath: "/score"}},
			}},
		},
	}})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := router.NewServer(rt)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		// wrk has finished: no request is in flight.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.ShutdownWithContext(sctx)
	}()
	return srv.Serve(l)
}

type target struct {
	name string
	url  string
	pid  int // the proxy's process (nginx: its master), 0: none
}

type figures struct {
	p50, p99 time.Duration
	rps      float64
	// cpu is the CPU time the target's proxy process(es) spent per
	// request (0 for direct): unlike req/s, it hardly moves when other
	// work shares the machine. backend is the backend's.
	cpu, backend time.Duration
	// vsNginx is req/s over nginx's in the same round: the other
	// processes on the machine load a round's targets alike, but not one
	// round like the next, so the median of these paired ratios moves far
	// less than a ratio of medians.
	vsNginx float64
}

func run(threads, conns int, duration time.Duration, rounds int, cpuProfile string) error {
	for _, tool := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make deps installs it): %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "outpost-bench-router-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	backendAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	nginxAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	routerAddr := "127.0.0.1:" + strconv.Itoa(ports[2])

	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	start := func(name string, cmd *exec.Cmd, addr string) error {
		out, err := os.Create(filepath.Join(dir, name+".out"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		procs = append(procs, cmd)
		if err := waitListening(addr, 10*time.Second); err != nil {
			log, _ := os.ReadFile(out.Name())
			return fmt.Errorf("%s: %w\n%s", name, err, log)
		}
		return nil
	}
	if err := start("backend", exec.Command(self, "-serve", "backend", "-addr", backendAddr), backendAddr); err != nil {
		return err
	}
	ngx, err := nginxCommand(dir, nginxAddr, backendAddr)
	if err != nil {
		return err
	}
	if err := start("nginx", ngx, nginxAddr); err != nil {
		return err
	}
	routerArgs := []string{"-serve", "router", "-addr", routerAddr, "-upstream", backendAddr, "-log", filepath.Join(dir, "router-requests.log")}
	if cpuProfile != "" {
		abs, err := filepath.Abs(cpuProfile)
		if err != nil {
			return err
		}
		routerArgs = append(routerArgs, "-cpuprofile", abs)
	}
	if err := start("router", exec.Command(self, routerArgs...), routerAddr); err != nil {
		return err
	}
	script := filepath.Join(dir, "post.lua")
	// A static request (no request() function): wrk builds it once and
	// sends the same bytes to every target.
	if err := os.WriteFile(script, []byte(fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer %s\"\n", body, benchKey)), 0o644); err != nil {
		return err
	}
	targets := []target{
		{"direct", "http://" + backendAddr + scorePath, 0},
		{"nginx", "http://" + nginxAddr + scorePath, procs[1].Process.Pid},
		{"router", "http://" + routerAddr + scorePath, procs[2].Process.Pid},
	}
	// A request through each first: the router must answer 200 (the key
	// checked, the deployment picked), or there is nothing to measure.
	for _, t := range targets {
		if err := probe(t.url); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}

	fmt.Printf("bench-router: wrk -t%d -d%s --latency, POST %d-byte JSON with Authorization: Bearer <key>, %d rounds, medians\n",
		threads, duration, len(body), rounds)
	fmt.Printf("backend: Go net/http no-op; nginx %s: %s; router: key auth, 1 endpoint/1 deployment/1 instance\n",
		nginxVersion(), "worker_processes auto, upstream keepalive 256, proxy_http_version 1.1, buffered access log")
	fmt.Println("router: internal/router on its fasthttp server, batched request log; req/s vs nginx: the median of each round's ratio")
	loads := []struct {
		name  string
		conns int
		t     int
	}{{"1 connection", 1, 1}, {fmt.Sprintf("%d connections", conns), conns, threads}}
	results := map[string]map[string]figures{}
	for _, load := range loads {
		all := map[string][]figures{}
		for r := range rounds {
			for _, t := range targets {
				before, err := cpuTime(t.pid)
				if err != nil {
					return err
				}
				beBefore, err := cpuTime(procs[0].Process.Pid)
				if err != nil {
					return err
				}
				f, err := runWrk(script, t.url, load.t, load.conns, duration)
				if err == nil {
					var after, beAfter time.Duration
					after, err = cpuTime(t.pid)
					if err == nil {
						beAfter, err = cpuTime(procs[0].Process.Pid)
					}
					n := f.rps * duration.Seconds()
					f.cpu = time.Duration(float64(after-before) / n)
					f.backend = time.Duration(float64(beAfter-beBefore) / n)
				}
				if err != nil {
					return fmt.Errorf("%s, %s, round %d: %w", t.name, load.name, r+1, err)
				}
				all[t.name] = append(all[t.name], f)
			}
			nginx := all["nginx"][r].rps
			for _, t := range targets {
				all[t.name][r].vsNginx = all[t.name][r].rps / nginx
			}
		}
		results[load.name] = map[string]figures{}
		for _, t := range targets {
			results[load.name][t.name] = median(all[t.name])
		}
		report(load.name, load.t, load.conns, targets, results[load.name])
	}
	verdict(results[loads[0].name], results[loads[1].name], loads[1].name)
	return nil
}

func report(load string, threads, conns int, targets []target, res map[string]figures) {
	fmt.Printf("\n%s (wrk -t%d -c%d):\n", load, threads, conns)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tp50\tp99\treq/s\tadded p50\tadded p99\treq/s vs nginx\tproxy CPU/req\t")
	d := res["direct"]
	for _, t := range targets {
		f := res[t.name]
		added50, added99 := "-", "-"
		if t.name != "direct" {
			added50, added99 = ms(f.p50-d.p50), ms(f.p99-d.p99)
		}
		cpu := "-"
		if t.pid != 0 {
			cpu = fmt.Sprintf("%.1f us", float64(f.cpu)/float64(time.Microsecond))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%.2fx\t%s\t\n", t.name, ms(f.p50), ms(f.p99), f.rps, added50, added99, f.vsNginx, cpu)
	}
	tw.Flush()
	// What a Go net/http server costs on its own: the no-op backend
	// answering wrk straight.
	fmt.Printf("  (the no-op backend, a Go net/http server, took %.1f us of CPU per request when driven directly)\n",
		float64(d.backend)/float64(time.Microsecond))
}

func verdict(idle, busy map[string]figures, busyName string) {
	fmt.Println("\ntargets:")
	check := func(what string, ok bool) {
		v := "met"
		if !ok {
			v = "NOT met"
		}
		fmt.Printf("  %-62s %s\n", what, v)
	}
	a50 := idle["router"].p50 - idle["direct"].p50
	a99 := idle["router"].p99 - idle["direct"].p99
	check(fmt.Sprintf("added p50 %s <= %s (1 connection)", ms(a50), ms(targetAddedP50)), a50 <= targetAddedP50)
	check(fmt.Sprintf("added p99 %s <= %s (1 connection)", ms(a99), ms(targetAddedP99)), a99 <= targetAddedP99)
	ratio := busy["router"].vsNginx
	check(fmt.Sprintf("throughput %.2fx nginx >= %.1fx (%s)", ratio, targetRatio, busyName), ratio >= targetRatio)
	n50 := busy["router"].p50 - busy["nginx"].p50
	fmt.Printf("  (%s: router p50 %s vs nginx's; added over direct p50 %s, nginx's %s)\n", busyName, signedMs(n50),
		ms(busy["router"].p50-busy["direct"].p50), ms(busy["nginx"].p50-busy["direct"].p50))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func signedMs(d time.Duration) string {
	if d >= 0 {
		return "+" + ms(d)
	}
	return ms(d)
}

func median(fs []figures) figures {
	pick := func(get func(figures) float64) float64 {
		v := make([]float64, len(fs))
		for i, f := range fs {
			v[i] = get(f)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return figures{
		p50:     time.Duration(pick(func(f figures) float64 { return float64(f.p50) })),
		p99:     time.Duration(pick(func(f figures) float64 { return float64(f.p99) })),
		rps:     pick(func(f figures) float64 { return f.rps }),
		cpu:     time.Duration(pick(func(f figures) float64 { return float64(f.cpu) })),
		backend: time.Duration(pick(func(f figures) float64 { return float64(f.backend) })),
		vsNginx: pick(func(f figures) float64 { return f.vsNginx }),
	}
}

// cpuTime is the user and system time of pid and its children so far
// (nginx's workers are its master's children).
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th (in clock ticks, 100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	total := time.Duration(u+s) * 10 * time.Millisecond
	kids, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, k := range kids {
		c, _ := os.ReadFile(k)
		for _, s := range strings.Fields(string(c)) {
			child, _ := strconv.Atoi(s)
			t, err := cpuTime(child)
			if err != nil {
				return 0, err
			}
			total += t
		}
	}
	return total, nil
}

// nginxCommand writes a config that proxies everything to backend over
// pooled keep-alive connections and returns the command running it in the
// foreground, unprivileged.
func nginxCommand(dir, listen, backend string) (*exec.Cmd, error) {
	root := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(root, "logs"), 0o777); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log %[1]s/logs/access.log combined buffer=64k flush=200ms;
  client_body_temp_path %[1]s/client_body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream backend {
    server %[3]s;
    keepalive 256;
  }
  server {
    listen %[2]s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, root, listen, backend)
	path := filepath.Join(root, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-c", path, "-p", root, "-e", filepath.Join(root, "logs", "error.log")}
	if os.Geteuid() != 0 {
		return exec.Command("nginx", args...), nil
	}
	// As root nginx would keep a root master; drop to nobody for all of it.
	if err := chmodTree(dir, 0o777); err != nil {
		return nil, err
	}
	return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "nginx"}, args...)...), nil
}

func chmodTree(dir string, mode os.FileMode) error {
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return os.Chmod(p, mode)
		}
		return os.Chmod(p, 0o644)
	})
}

func nginxVersion() string {
	out, _ := exec.Command("nginx", "-v").CombinedOutput()
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
}

func probe(url string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("a probe request got %d: %s", res.StatusCode, b)
	}
	return nil
}

var (
	pctLine  = regexp.MustCompile(`^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$`)
	rpsLine  = regexp.MustCompile(`^Requests/sec:\s+([\d.]+)`)
	errLines = regexp.MustCompile(`^\s*(Non-2xx or 3xx responses|Socket errors):`)
)

func runWrk(script, url string, threads, conns int, d time.Duration) (figures, error) {
	cmd := exec.Command("wrk", "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns),
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return figures{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk --latency's report: the 50% and 99% lines of its
// latency distribution and Requests/sec. Any non-2xx answer or socket
// error fails the run: those requests were not the ones to measure.
func parseWrk(out string) (figures, error) {
	var f figures
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if errLines.MatchString(line) {
			return f, fmt.Errorf("wrk saw errors (%s):\n%s", strings.TrimSpace(line), out)
		}
		if m := pctLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return f, err
			}
			unit := map[string]float64{"us": float64(time.Microsecond), "ms": float64(time.Millisecond), "s": float64(time.Second)}[m[3]]
			d := time.Duration(v * unit)
			if m[1] == "50" {
				f.p50 = d
			} else {
				f.p99 = d
			}
		}
		if m := rpsLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return f, err
			}
			f.rps = v
		}
	}
	if f.p50 == 0 || f.p99 == 0 || f.rps == 0 {
		return f, fmt.Errorf("no latency distribution or Requests/sec in wrk's report:\n%s", out)
	}
	return f, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, within, err)
		}
		// The condition is a listener, which has no event to wait on
		// from another process: ask again shortly.
		time.Sleep(20 * time.Millisecond)
	}
}
