package router

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/endpointauth"
)

const (
	key1 = "primary-key-0123456789"
	key2 = "secondary-key-9876543210"
)

// backend is a real HTTP server on 127.0.0.1 standing for an instance.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	// hold, when set, keeps each request until it is closed or a value
	// comes; arrived gets the request's x-test header as it arrives.
	hold    chan struct{}
	arrived chan string
	mu      sync.Mutex
	last    http.Header
	paths   []string
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name, arrived: make(chan string, 100)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.last = r.Header.Clone()
		b.paths = append(b.paths, r.URL.Path)
		hold := b.hold
		b.mu.Unlock()
		select {
		case b.arrived <- r.Header.Get("x-test"):
		default: // only tests of a few requests read arrivals
		}
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("x-instance", b.name)
		fmt.Fprintf(w, "%s:%s:%s", b.name, r.URL.Path, body)
	}))
	t.Cleanup(func() {
		b.mu.Lock()
		if b.hold != nil {
			select {
			case <-b.hold:
			default:
				close(b.hold)
			}
		}
		b.mu.Unlock()
		b.srv.Close()
	})
	return b
}

func (b *backend) holdRequests() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = make(chan struct{})
	return b.hold
}

func (b *backend) instance() Instance {
	return Instance{Name: b.name, Addr: strings.TrimPrefix(b.srv.URL, "http://"), ScoringPath: "/score"}
}

func deployment(name string, bs ...*backend) *Deployment {
	d := &Deployment{Name: name, Timeout: 5 * time.Second, MaxConcurrent: 100, MaxQueueWait: time.Second}
	for _, b := range bs {
		d.Instances = append(d.Instances, b.instance())
	}
	return d
}

func endpoint(name string, traffic map[string]int, ds ...*Deployment) *Endpoint {
	e := &Endpoint{Name: name, Namespace: "ns", AuthMode: api.AuthModeKey, Keys: []string{key1, key2},
		KeysSource: "ns/" + name + "-keys", Traffic: traffic, Deployments: map[string]*Deployment{}}
	for _, d := range ds {
		e.Deployments[d.Name] = d
	}
	return e
}

func table(replicas int, es ...*Endpoint) *Table {
	t := &Table{Endpoints: map[string]*Endpoint{}, Replicas: replicas}
	for _, e := range es {
		t.Endpoints[e.Name] = e
	}
	return t
}

type harness struct {
	rt  *Router
	srv *routerServer
	reg *prometheus.Registry
	log *bytes.Buffer
}

// routerServer is rt served as a replica serves it (NewServer), on
// 127.0.0.1.
type routerServer struct {
	URL  string
	Addr string
}

func serveRouter(t *testing.T, rt *Router, tlsConfig *tls.Config) *routerServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &routerServer{URL: "http://" + l.Addr().String(), Addr: l.Addr().String()}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
		rs.URL = "https://" + rs.Addr
	}
	srv := NewServer(rt)
	srv.Logger = log.New(io.Discard, "", 0)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.ShutdownWithContext(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return rs
}

func newHarness(t *testing.T, tab *Table, opts Options) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), log: &bytes.Buffer{}}
	opts.Registerer = h.reg
	opts.RequestLog = &lockedWriter{w: h.log}
	h.rt = New(opts)
	if err := h.rt.SetTable(tab); err != nil {
		t.Fatal(err)
	}
	h.srv = serveRouter(t, h.rt, nil)
	return h
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type result struct {
	failed     error // of a request sent by async
	status     int
	body       string
	deployment string
	header     http.Header
	err        api.Error
}

// call sends method to the endpoint's op with the key (if any) and
// headers given as name, value pairs.
func (h *harness) call(t *testing.T, method, ep, op, key, body string, hdr ...string) result {
	t.Helper()
	r, err := h.do(method, ep, op, key, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *harness) do(method, ep, op, key, body string, hdr ...string) (result, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+"/api/v1/endpoint/"+ep+"/"+op, rd)
	if err != nil {
		return result{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := result{status: res.StatusCode, body: string(b), deployment: res.Header.Get(HeaderDeployment), header: res.Header}
	if res.StatusCode >= 400 {
		if err := json.Unmarshal(b, &r.err); err != nil {
			return r, fmt.Errorf("%d answer is not an api.Error: %q", res.StatusCode, b)
		}
	}
	return r, nil
}

func (h *harness) score(t *testing.T, ep, key string, hdr ...string) result {
	t.Helper()
	return h.call(t, http.MethodPost, ep, "score", key, `{"data":[[1,2]]}`, hdr...)
}

func wantStatus(t *testing.T, r result, status int, reason string) {
	t.Helper()
	if r.failed != nil {
		t.Fatal(r.failed)
	}
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	if reason != "" && !strings.Contains(r.err.Message, reason) {
		t.Fatalf("reason %q does not say %q", r.err.Message, reason)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) load(ep, dep string) api.DeploymentLoad {
	for _, d := range h.rt.Load().Deployments {
		if d.Endpoint == ep && d.Deployment == dep {
			return d
		}
	}
	return api.DeploymentLoad{}
}

func TestKeyAuth(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{})

	r := h.score(t, "ep", "")
	wantStatus(t, r, http.StatusUnauthorized, "Authorization")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without a Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
	}
	wantStatus(t, h.score(t, "ep", "", "Authorization", "Basic dXNlcjpwYXNz"), http.StatusUnauthorized, "Bearer")
	wantStatus(t, h.score(t, "ep", "wrong-key"), http.StatusForbidden, "not one of")
	wantStatus(t, h.score(t, "ep", key1[:len(key1)-1]), http.StatusForbidden, "")
	if b.hits.Load() != 0 {
		t.Fatalf("refused requests reached the instance %d times", b.hits.Load())
	}
	for _, k := range []string{key1, key2} {
		r := h.score(t, "ep", k)
		wantStatus(t, r, http.StatusOK, "")
		if r.body != `blue-0:/score:{"data":[[1,2]]}` || r.deployment != "blue" {
			t.Fatalf("answer %q from deployment %q", r.body, r.deployment)
		}
	}
	// Bearer is case-insensitive, as in RFC 6750.
	wantStatus(t, h.score(t, "ep", "", "Authorization", "bearer "+key1), http.StatusOK, "")
	if got := b.last.Get("Authorization"); got != "" {
		t.Fatalf("the instance got the endpoint's credential: %q", got)
	}
}

func TestKeyCompareIsConstantTime(t *testing.T) {
	// The router compares keys only through endpointauth.MatchKey
	// (subtle.ConstantTimeCompare); count that it is what decides.
	var calls atomic.Int64
	real := matchKey
	matchKey = func(presented string, keys ...string) bool {
		calls.Add(1)
		return endpointauth.MatchKey(presented, keys...)
	}
	t.Cleanup(func() { matchKey = real })
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{})
	wantStatus(t, h.score(t, "ep", "nope"), http.StatusForbidden, "")
	wantStatus(t, h.score(t, "ep", key2), http.StatusOK, "")
	if calls.Load() != 2 {
		t.Fatalf("MatchKey decided %d of 2 requests", calls.Load())
	}
}

func TestTokenAuth(t *testing.T) {
	b := newBackend(t, "blue-0")
	e := endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))
	e.AuthMode, e.Keys, e.TokenKey = api.AuthModeAMLToken, nil, "token-signing-key"
	now := time.Now()
	clock := atomic.Pointer[time.Time]{}
	clock.Store(&now)
	h := newHarness(t, table(1, e), Options{Now: func() time.Time { return *clock.Load() }})

	tok, exp, err := endpointauth.IssueToken(e.TokenKey, "ep", now)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.score(t, "ep", tok), http.StatusOK, "")
	other, _, _ := endpointauth.IssueToken(e.TokenKey, "other", now)
	wantStatus(t, h.score(t, "ep", other), http.StatusForbidden, "not valid")
	forged, _, _ := endpointauth.IssueToken("another-key", "ep", now)
	wantStatus(t, h.score(t, "ep", forged), http.StatusForbidden, "not valid")
	wantStatus(t, h.score(t, "ep", key1), http.StatusForbidden, "not valid")
	later := exp.Add(time.Second)
	clock.Store(&later)
	r := h.score(t, "ep", tok)
	wantStatus(t, r, http.StatusForbidden, "expired")
	if r.err.Code != "TokenExpired" {
		t.Fatalf("code %q", r.err.Code)
	}
}

func TestKeysNotOnClusterYet(t *testing.T) {
	b := newBackend(t, "blue-0")
	e := endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))
	e.Keys = nil
	h := newHarness(t, table(1, e), Options{})
	wantStatus(t, h.score(t, "ep", key1), http.StatusServiceUnavailable, "ns/ep-keys")
}

func TestUnknownEndpointAndPath(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{})
	wantStatus(t, h.score(t, "nope", key1), http.StatusNotFound, `endpoint "nope" is not on this cluster`)
	wantStatus(t, h.call(t, http.MethodPost, "ep", "other", key1, "x"), http.StatusNotFound, "/score")
	wantStatus(t, h.call(t, http.MethodPost, "ep", "swagger.json", key1, "x"), http.StatusMethodNotAllowed, "GET")
}

func TestTrafficSplit(t *testing.T) {
	blue, green := newBackend(t, "blue-0"), newBackend(t, "green-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 80, "green": 20},
		deployment("blue", blue), deployment("green", green))), Options{})
	const n = 1000
	got := map[string]int{}
	for range n {
		r := h.score(t, "ep", key1)
		wantStatus(t, r, http.StatusOK, "")
		if !strings.HasPrefix(r.body, r.deployment+"-0:") {
			t.Fatalf("deployment %q answered by %q", r.deployment, r.body)
		}
		got[r.deployment]++
	}
	// Binomial(1000, 0.2): mean 200, sd 12.6; 6 sd either side.
	if got["green"] < 125 || got["green"] > 275 || got["blue"]+got["green"] != n {
		t.Fatalf("split %v of %d, want about blue=800 green=200", got, n)
	}
}

func TestHeaderOverride(t *testing.T) {
	blue, green := newBackend(t, "blue-0"), newBackend(t, "green-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100, "green": 0},
		deployment("blue", blue), deployment("green", green))), Options{})
	for range 20 {
		r := h.score(t, "ep", key1, HeaderDeployment, "green")
		wantStatus(t, r, http.StatusOK, "")
		if r.deployment != "green" || !strings.HasPrefix(r.body, "green-0:") {
			t.Fatalf("the header asked for green, %q answered (%q)", r.deployment, r.body)
		}
	}
	if blue.hits.Load() != 0 {
		t.Fatalf("blue got %d requests meant for green", blue.hits.Load())
	}
	r := h.score(t, "ep", key1, HeaderDeployment, "red")
	wantStatus(t, r, http.StatusNotFound, `no deployment "red"`)
	if !strings.Contains(r.err.Message, "blue, green") {
		t.Fatalf("the 404 does not name the known deployments: %q", r.err.Message)
	}
}

func TestNoTraffic(t *testing.T) {
	blue := newBackend(t, "blue-0")
	for _, traffic := range []map[string]int{nil, {"blue": 0}} {
		h := newHarness(t, table(1, endpoint("ep", traffic, deployment("blue", blue))), Options{})
		wantStatus(t, h.score(t, "ep", key1), http.StatusServiceUnavailable, "no deployment receives traffic")
		wantStatus(t, h.score(t, "ep", key1, HeaderDeployment, "blue"), http.StatusOK, "")
	}
}

func TestNoReadyInstance(t *testing.T) {
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue"))), Options{})
	wantStatus(t, h.score(t, "ep", key1), http.StatusServiceUnavailable, `deployment "blue" of endpoint "ep" has no ready instance`)
	h2 := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100})), Options{})
	wantStatus(t, h2.score(t, "ep", key1), http.StatusServiceUnavailable, `"blue" of endpoint "ep" gets traffic but is not on the cluster`)
}

// async sends a scoring request in the background, tagged with x-test.
func (h *harness) async(t *testing.T, tag string, hdr ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := h.do(http.MethodPost, "ep", "score", key1, "{}", append([]string{"x-test", tag}, hdr...)...)
		r.failed = err
		ch <- r
	}()
	return ch
}

func TestQueueWaitThen429(t *testing.T) {
	b := newBackend(t, "blue-0")
	release := b.holdRequests()
	d := deployment("blue", b)
	d.MaxConcurrent, d.MaxQueueWait = 1, 200*time.Millisecond
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})

	first := h.async(t, "first")
	if tag := <-b.arrived; tag != "first" {
		t.Fatalf("%q arrived", tag)
	}
	start := time.Now()
	r := h.score(t, "ep", key1, "x-test", "second")
	wantStatus(t, r, http.StatusTooManyRequests, "max_queue_wait_ms (200 ms)")
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("429 after %v, before max_queue_wait_ms", waited)
	}
	if b.hits.Load() != 1 {
		t.Fatalf("the instance got %d requests with room for 1", b.hits.Load())
	}
	close(release)
	wantStatus(t, <-first, http.StatusOK, "")
	eventually(t, "nothing in flight", func() bool {
		return h.load("ep", "blue") == api.DeploymentLoad{Namespace: "ns", Endpoint: "ep", Deployment: "blue"}
	})
}

func TestQueueIsFIFO(t *testing.T) {
	b := newBackend(t, "blue-0")
	release := b.holdRequests()
	d := deployment("blue", b)
	d.MaxConcurrent, d.MaxQueueWait = 1, 5*time.Second
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})

	var results []<-chan result
	results = append(results, h.async(t, "r0"))
	<-b.arrived
	for i := 1; i < 4; i++ {
		results = append(results, h.async(t, fmt.Sprint("r", i)))
		eventually(t, "queued", func() bool { return h.load("ep", "blue").Queued == i })
	}
	if l := h.load("ep", "blue"); l.InFlight != 1 || l.Queued != 3 {
		t.Fatalf("load %+v, want 1 in flight and 3 queued", l)
	}
	for i := 1; i < 4; i++ {
		release <- struct{}{}
		if tag := <-b.arrived; tag != fmt.Sprint("r", i) {
			t.Fatalf("%q got the room before r%d", tag, i)
		}
	}
	close(release)
	for _, ch := range results {
		wantStatus(t, <-ch, http.StatusOK, "")
	}
}

func TestTimeout408(t *testing.T) {
	b1, b2 := newBackend(t, "blue-0"), newBackend(t, "blue-1")
	b1.holdRequests()
	b2.holdRequests()
	d := deployment("blue", b1, b2)
	d.Timeout = 300 * time.Millisecond
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	start := time.Now()
	r := h.score(t, "ep", key1)
	wantStatus(t, r, http.StatusRequestTimeout, "request_timeout_ms (300 ms)")
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("408 after %v", took)
	}
	if n := b1.hits.Load() + b2.hits.Load(); n != 1 {
		t.Fatalf("a timed-out request reached %d instances", n)
	}
	eventually(t, "nothing in flight", func() bool { return h.load("ep", "blue").InFlight == 0 })
}

func TestTimeoutWhileQueued(t *testing.T) {
	b := newBackend(t, "blue-0")
	release := b.holdRequests()
	d := deployment("blue", b)
	d.MaxConcurrent, d.Timeout, d.MaxQueueWait = 1, 200*time.Millisecond, 5*time.Second
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	first := h.async(t, "first")
	<-b.arrived
	// Queued, then out of time long before the queue wait: 408, not 429.
	wantStatus(t, h.score(t, "ep", key1), http.StatusRequestTimeout, "request_timeout_ms")
	wantStatus(t, <-first, http.StatusRequestTimeout, "")
	close(release)
}

func TestNoRetryAfterReachingAnInstance(t *testing.T) {
	// bad reads each request, then drops the connection without answering.
	var badHits atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		io.ReadAll(r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	t.Cleanup(bad.Close)
	good := newBackend(t, "blue-1")
	d := deployment("blue", good)
	d.Instances = append(d.Instances, Instance{Name: "blue-0", Addr: strings.TrimPrefix(bad.URL, "http://"), ScoringPath: "/score"})
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	const n = 40
	failed := 0
	for range n {
		// GET too: the transport's own retries of idempotent requests
		// must not apply either.
		for _, m := range []string{http.MethodPost, http.MethodGet} {
			r := h.call(t, m, "ep", "score", key1, "")
			if r.status == http.StatusBadGateway {
				failed++
				if !strings.Contains(r.err.Message, "blue-0") {
					t.Fatalf("502 does not name the instance: %q", r.err.Message)
				}
			} else {
				wantStatus(t, r, http.StatusOK, "")
			}
		}
	}
	if badHits.Load() == 0 || failed != int(badHits.Load()) || good.hits.Load()+badHits.Load() != 2*n {
		t.Fatalf("%d requests: %d reached the failing instance, %d failed, %d reached the good one",
			2*n, badHits.Load(), failed, good.hits.Load())
	}
}

func TestRefusedConnectionGoesToAnotherInstance(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	good := newBackend(t, "blue-1")
	d := deployment("blue", good)
	d.Instances = append([]Instance{{Name: "blue-0", Addr: closed, ScoringPath: "/score"}}, d.Instances...)
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	for range 10 {
		wantStatus(t, h.score(t, "ep", key1), http.StatusOK, "")
	}
	if good.hits.Load() != 10 {
		t.Fatalf("the good instance got %d of 10", good.hits.Load())
	}
	// With nowhere else to go, the refusal is the answer.
	only := deployment("blue")
	only.Instances = []Instance{{Name: "blue-0", Addr: closed, ScoringPath: "/score"}}
	h2 := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, only)), Options{})
	wantStatus(t, h2.score(t, "ep", key1), http.StatusBadGateway, "could not connect to instance blue-0")
	wantStatus(t, h2.score(t, "ep", key1), http.StatusServiceUnavailable, "refused a connection just now")
}

func TestLeastOutstanding(t *testing.T) {
	b0, b1 := newBackend(t, "blue-0"), newBackend(t, "blue-1")
	r0, r1 := b0.holdRequests(), b1.holdRequests()
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b0, b1))), Options{})
	var pending []<-chan result
	// Each new request goes where fewer are outstanding: they alternate.
	for i := range 6 {
		pending = append(pending, h.async(t, fmt.Sprint(i)))
		eventually(t, "arrival", func() bool { return b0.hits.Load()+b1.hits.Load() == int64(i+1) })
		if d := b0.hits.Load() - b1.hits.Load(); d < -1 || d > 1 {
			t.Fatalf("after %d requests: %d on blue-0, %d on blue-1", i+1, b0.hits.Load(), b1.hits.Load())
		}
	}
	// Free blue-1: the next three go there, not to the busy blue-0.
	close(r1)
	eventually(t, "blue-1 drained", func() bool { return h.load("ep", "blue").InFlight == 3 })
	for range 3 {
		r := h.score(t, "ep", key1)
		if !strings.HasPrefix(r.body, "blue-1:") {
			t.Fatalf("%q answered while blue-0 had 3 outstanding and blue-1 none", r.body)
		}
	}
	close(r0)
	for _, ch := range pending {
		wantStatus(t, <-ch, http.StatusOK, "")
	}
}

func TestConcurrencySharedByReplicas(t *testing.T) {
	for _, c := range []struct{ m, r, want int }{{1, 1, 1}, {1, 3, 1}, {3, 2, 2}, {4, 2, 2}, {10, 3, 4}, {5, 0, 5}} {
		if got := perReplicaLimit(c.m, c.r); got != c.want {
			t.Errorf("perReplicaLimit(%d, %d) = %d, want %d", c.m, c.r, got, c.want)
		}
	}
	b := newBackend(t, "blue-0")
	release := b.holdRequests()
	d := deployment("blue", b)
	d.MaxConcurrent = 3
	h := newHarness(t, table(2, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	var rs []<-chan result
	for i := range 3 {
		rs = append(rs, h.async(t, fmt.Sprint(i)))
	}
	eventually(t, "2 in flight, 1 queued", func() bool {
		l := h.load("ep", "blue")
		return l.InFlight == 2 && l.Queued == 1
	})
	// One router replica left: this one may use the whole budget.
	t2 := table(1, endpoint("ep", map[string]int{"blue": 100}, d))
	if err := h.rt.SetTable(t2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "3 in flight", func() bool { return h.load("ep", "blue").InFlight == 3 })
	close(release)
	for _, ch := range rs {
		wantStatus(t, <-ch, http.StatusOK, "")
	}
}

func TestKeyRotationAndInstanceChangeBySwap(t *testing.T) {
	b0, b1 := newBackend(t, "blue-0"), newBackend(t, "blue-1")
	release := b0.holdRequests()
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b0))), Options{})
	inFlight := h.async(t, "old")
	<-b0.arrived

	const rotated = "rotated-primary-key-42"
	e := endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b1))
	e.Keys = []string{rotated, key2}
	if err := h.rt.SetTable(table(1, e)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.score(t, "ep", key1), http.StatusForbidden, "")
	r := h.score(t, "ep", rotated)
	wantStatus(t, r, http.StatusOK, "")
	if !strings.HasPrefix(r.body, "blue-1:") {
		t.Fatalf("%q answered after blue-0 left the table", r.body)
	}
	// The request on the instance that left finishes and is counted out.
	close(release)
	wantStatus(t, <-inFlight, http.StatusOK, "")
	eventually(t, "nothing in flight", func() bool { return h.load("ep", "blue").InFlight == 0 })

	// A deployment that leaves fails its waiters at once.
	release = b1.holdRequests()
	d := deployment("blue", b1)
	d.MaxConcurrent = 1
	e.Deployments["blue"] = d
	h.rt.SetTable(table(1, e))
	held := h.async(t, "held", "Authorization", "Bearer "+rotated)
	for tag := ""; tag != "held"; tag = <-b1.arrived {
	}
	queued := h.async(t, "queued", "Authorization", "Bearer "+rotated)
	eventually(t, "queued", func() bool { return h.load("ep", "blue").Queued == 1 })
	e2 := endpoint("ep", map[string]int{"blue": 100}, deployment("blue"))
	e2.Keys = e.Keys
	h.rt.SetTable(table(1, e2))
	wantStatus(t, <-queued, http.StatusServiceUnavailable, "no ready instance")
	close(release)
	wantStatus(t, <-held, http.StatusOK, "")
}

func TestSwapUnderLoadSeesWholeTables(t *testing.T) {
	// Each table pairs a key with a deployment; a request must never get
	// through with one table's key to another table's deployment.
	blue, green := newBackend(t, "blue-0"), newBackend(t, "green-0")
	tabs := make([]*Table, 2)
	for i, name := range []string{"blue", "green"} {
		b := []*backend{blue, green}[i]
		e := endpoint("ep", map[string]int{name: 100}, deployment(name, b))
		e.Keys = []string{"key-" + name}
		tabs[i] = table(1, e)
	}
	h := newHarness(t, tabs[0], Options{})
	stop := make(chan struct{})
	var swaps sync.WaitGroup
	swaps.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.rt.SetTable(tabs[i%2])
		}
	})
	for i := range 400 {
		name := []string{"blue", "green"}[i%2]
		r := h.score(t, "ep", "key-"+name)
		if r.status == http.StatusOK && r.deployment != name {
			t.Fatalf("key of the %s table routed to %s", name, r.deployment)
		}
		if r.status != http.StatusOK && r.status != http.StatusForbidden {
			wantStatus(t, r, http.StatusOK, "")
		}
	}
	close(stop)
	swaps.Wait()
}

func TestBodyLimit(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{MaxBodyBytes: 1000})
	wantStatus(t, h.call(t, http.MethodPost, "ep", "score", key1, strings.Repeat("x", 1000)), http.StatusOK, "")
	wantStatus(t, h.call(t, http.MethodPost, "ep", "score", key1, strings.Repeat("x", 1001)), http.StatusRequestEntityTooLarge, "1000 bytes")
	if b.hits.Load() != 1 {
		t.Fatalf("a body over the limit by its Content-Length reached the instance")
	}
	// Without a Content-Length the limit cuts the body as it streams.
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1/endpoint/ep/score", io.MultiReader(strings.NewReader(strings.Repeat("y", 5000))))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+key1)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a chunked body over the limit got %d", res.StatusCode)
	}
}

func TestSwagger(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{})
	wantStatus(t, h.call(t, http.MethodGet, "ep", "swagger.json", "", ""), http.StatusUnauthorized, "")
	r := h.call(t, http.MethodGet, "ep", "swagger.json", key1, "")
	wantStatus(t, r, http.StatusOK, "")
	if r.body != "blue-0:/swagger.json:" {
		t.Fatalf("swagger answered %q", r.body)
	}
}

func TestCustomScoringPathAndQuery(t *testing.T) {
	b := newBackend(t, "blue-0")
	d := deployment("blue", b)
	d.Instances[0].ScoringPath = "/v1/predict"
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1/endpoint/ep/score?verbose=1", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+key1)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "blue-0:/v1/predict:x" {
		t.Fatalf("answer %q", body)
	}
}

func TestLogAndMetrics(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{})
	const secretBody = "SECRET-PAYLOAD-7f3a"
	for range 3 {
		wantStatus(t, h.call(t, http.MethodPost, "ep", "score", key1, secretBody), http.StatusOK, "")
	}
	wantStatus(t, h.score(t, "ep", "wrong-secret-key"), http.StatusForbidden, "")
	wantStatus(t, h.score(t, "made-up", key1), http.StatusNotFound, "")

	log := h.log.String()
	for _, secret := range []string{key1, "wrong-secret-key", secretBody} {
		if strings.Contains(log, secret) {
			t.Fatalf("the log shows %q:\n%s", secret, log)
		}
	}
	if n := strings.Count(log, "endpoint=ep deployment=blue method=POST status=200 duration="); n != 3 {
		t.Fatalf("%d lines of the 3 requests in the log:\n%s", n, log)
	}

	got := gather(t, h.reg)
	for series, want := range map[string]float64{
		`azureml_fe_requests_total{code="200",deployment="blue",endpoint="ep"}`:         3,
		`azureml_fe_requests_total{code="403",deployment="",endpoint="ep"}`:             1,
		`azureml_fe_requests_total{code="404",deployment="",endpoint=""}`:               1,
		`azureml_fe_request_duration_seconds_count{deployment="blue",endpoint="ep"}`:    3,
		`azureml_fe_instances_ready{deployment="blue",endpoint="ep",namespace="ns"}`:    1,
		`azureml_fe_queue_length{deployment="blue",endpoint="ep",namespace="ns"}`:       0,
		`azureml_fe_requests_in_flight{deployment="blue",endpoint="ep",namespace="ns"}`: 0,
		`azureml_fe_replicas_ready`: 1,
	} {
		v, ok := got[series]
		if !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

// gather flattens a registry's samples to "name{labels}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			lbl := ""
			if len(ls) > 0 {
				lbl = "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name+lbl] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+lbl] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+lbl] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func TestAdmin(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{Replica: "azureml-fe-abc"})
	var ready atomic.Bool
	admin := httptest.NewServer(AdminHandler(h.rt, h.reg, func() error {
		if !ready.Load() {
			return fmt.Errorf("informers not synced")
		}
		return nil
	}))
	t.Cleanup(admin.Close)
	get := func(path string) (int, string) {
		res, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "not synced") {
		t.Fatalf("/readyz before sync: %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	wantStatus(t, h.score(t, "ep", key1), http.StatusOK, "")
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `azureml_fe_requests_total{code="200",deployment="blue",endpoint="ep"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	code, body = get("/load")
	var l api.RouterLoad
	if err := json.Unmarshal([]byte(body), &l); code != 200 || err != nil {
		t.Fatalf("/load: %d %q %v", code, body, err)
	}
	want := api.RouterLoad{Replica: "azureml-fe-abc", Deployments: []api.DeploymentLoad{{Namespace: "ns", Endpoint: "ep", Deployment: "blue"}}}
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Fatalf("/load = %+v, want %+v", l, want)
	}
}

func TestTLS(t *testing.T) {
	var c Certificate
	pem1, key1PEM := selfSigned(t, "one")
	if err := c.Set(pem1, key1PEM); err != nil {
		t.Fatal(err)
	}
	if err := c.Set([]byte("not a cert"), key1PEM); err == nil {
		t.Fatal("a bad certificate was taken")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The TLS 1.1 attempt below fails its handshake on purpose.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(l, c.TLSConfig()))
	t.Cleanup(func() { srv.Close() })

	commonName := func(maxVersion uint16) (string, error) {
		conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := commonName(0); err != nil || cn != "one" {
		t.Fatalf("served %q, %v", cn, err)
	}
	if _, err := commonName(tls.VersionTLS11); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	pem2, key2PEM := selfSigned(t, "two")
	if err := c.Set(pem2, key2PEM); err != nil {
		t.Fatal(err)
	}
	if cn, err := commonName(0); err != nil || cn != "two" {
		t.Fatalf("after the reload served %q, %v", cn, err)
	}
}

func selfSigned(t *testing.T, cn string) ([]byte, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func TestBodiesAndFraming(t *testing.T) {
	// The instance echoes the body's length and its first and last bytes.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		switch r.Header.Get("x-answer") {
		case "close":
			w.Header().Set("Connection", "close")
		case "empty":
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprintf(w, "%d %s %s te=%q", len(b), b[:min(1, len(b))], b[max(0, len(b)-1):], r.TransferEncoding)
	}))
	t.Cleanup(srv.Close)
	d := deployment("blue")
	d.Instances = []Instance{{Name: "blue-0", Addr: strings.TrimPrefix(srv.URL, "http://"), ScoringPath: "/score"}}
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	send := func(body string, chunked bool, hdr ...string) result {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1/endpoint/ep/score", strings.NewReader(body))
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(strings.NewReader(body))
		}
		req.Header.Set("Authorization", "Bearer "+key1)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return result{status: res.StatusCode, body: string(b)}
	}
	big := "a" + strings.Repeat("x", 100<<10) + "z"
	for _, c := range []struct {
		name, body string
		chunked    bool
		want       string
	}{
		{"small", "a-small-body-z", false, `14 a z te=[]`},
		{"large, streamed", big, false, fmt.Sprintf(`%d a z te=[]`, len(big))},
		{"chunked", big, true, fmt.Sprintf(`%d a z te=["chunked"]`, len(big))},
		{"empty", "", false, `0   te=[]`},
	} {
		for range 3 { // again on the kept connection
			if r := send(c.body, c.chunked); r.status != 200 || r.body != c.want {
				t.Fatalf("%s: %d %q, want %q", c.name, r.status, r.body, c.want)
			}
		}
	}
	for range 3 {
		if r := send("x", false, "x-answer", "close"); r.status != 200 || r.body != `1 x x te=[]` {
			t.Fatalf("Connection: close answers: %d %q", r.status, r.body)
		}
		if r := send("x", false, "x-answer", "empty"); r.status != http.StatusNoContent || r.body != "" {
			t.Fatalf("204: %d %q", r.status, r.body)
		}
	}
	if r := h.call(t, http.MethodHead, "ep", "score", key1, ""); r.status != 200 || r.body != "" {
		t.Fatalf("HEAD: %d %q", r.status, r.body)
	}
}

func TestIdleConnectionClosedByInstance(t *testing.T) {
	// The instance closes keep-alive connections idle for 1 ms; the router
	// must not send the next request into the closed one.
	closed := make(chan struct{}, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	srv.Config.IdleTimeout = time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	d := deployment("blue")
	d.Instances = []Instance{{Name: "blue-0", Addr: strings.TrimPrefix(srv.URL, "http://"), ScoringPath: "/score"}}
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	// Look at every connection before its reuse, however short its idle.
	was := probeAfter
	probeAfter = 0
	t.Cleanup(func() { probeAfter = was })
	for range 5 {
		wantStatus(t, h.score(t, "ep", key1), http.StatusOK, "")
		<-closed
	}
}

func TestStreamedAnswer(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first;"))
		w.(http.Flusher).Flush()
		<-next
		w.Write([]byte("second"))
	}))
	t.Cleanup(srv.Close)
	d := deployment("blue")
	d.Instances = []Instance{{Name: "blue-0", Addr: strings.TrimPrefix(srv.URL, "http://"), ScoringPath: "/score"}}
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1/endpoint/ep/score", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+key1)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "first;" {
		t.Fatalf("the first piece did not come through before the second was written: %q %v", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(res.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

func TestForwardedHeaders(t *testing.T) {
	var seen atomic.Pointer[http.Header]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		seen.Store(&h)
		// Hop-by-hop answer headers are the router's to drop.
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	d := deployment("blue")
	d.Instances = []Instance{{Name: "blue-0", Addr: strings.TrimPrefix(srv.URL, "http://"), ScoringPath: "/score"}}
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})

	r := h.score(t, "ep", key1, "Connection", "X-Private", "X-Private", "secret", "X-Custom", "kept")
	wantStatus(t, r, http.StatusOK, "")
	got := *seen.Load()
	for k, want := range map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host": strings.TrimPrefix(h.srv.URL, "http://"), "X-Custom": "kept", "X-Private": "", "Authorization": ""} {
		if got.Get(k) != want {
			t.Errorf("the instance got %s %q, want %q", k, got.Get(k), want)
		}
	}
	id := r.header.Get("X-Request-Id")
	if id == "" || got.Get("X-Request-Id") != id || len(got.Values("X-Request-Id")) != 1 {
		t.Errorf("request id: answer %q, instance %q", id, got.Values("X-Request-Id"))
	}
	for _, k := range []string{"X-Hop", "Keep-Alive"} {
		if v := r.header.Get(k); v != "" {
			t.Errorf("the answer has the instance's hop-by-hop %s: %q", k, v)
		}
	}
	if c := r.header.Values("Set-Cookie"); len(c) != 2 {
		t.Errorf("Set-Cookie %q, want both", c)
	}
	if !strings.Contains(h.log.String(), "id="+id) {
		t.Errorf("the log does not name request %s:\n%s", id, h.log.String())
	}

	// A client's own id is kept.
	r = h.score(t, "ep", key1, "X-Request-Id", "client-id-1")
	if r.header.Get("X-Request-Id") != "client-id-1" || seen.Load().Get("X-Request-Id") != "client-id-1" {
		t.Errorf("the client's id became %q (instance %q)", r.header.Get("X-Request-Id"), seen.Load().Get("X-Request-Id"))
	}
}

func TestClientLeavesQueue(t *testing.T) {
	b := newBackend(t, "blue-0")
	release := b.holdRequests()
	d := deployment("blue", b)
	d.MaxConcurrent, d.MaxQueueWait = 1, 10*time.Second
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	first := h.async(t, "first")
	<-b.arrived

	// The second waits in the queue, then its client goes away.
	c, err := net.Dial("tcp", h.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /api/v1/endpoint/ep/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 2\r\n\r\n{}", key1)
	eventually(t, "queued", func() bool { return h.load("ep", "blue").Queued == 1 })
	c.Close()
	eventually(t, "the queue emptied", func() bool { return h.load("ep", "blue").Queued == 0 })
	close(release)
	wantStatus(t, <-first, http.StatusOK, "")
	if b.hits.Load() != 1 {
		t.Fatalf("the instance got %d requests: the one whose client left went on", b.hits.Load())
	}
	eventually(t, "its 499 in the log", func() bool {
		return strings.Contains(gatherString(t, h), `code="499"`)
	})
	// The connections of requests that found room are not disturbed
	// by a watch they never needed.
	for range 3 {
		wantStatus(t, h.score(t, "ep", key1), http.StatusOK, "")
	}
}

func gatherString(t *testing.T, h *harness) string {
	var sb strings.Builder
	for k, v := range gather(t, h.reg) {
		fmt.Fprintf(&sb, "%s %v\n", k, v)
	}
	return sb.String()
}

func TestServedOverTLS(t *testing.T) {
	b := newBackend(t, "blue-0")
	var c Certificate
	certPEM, keyPEM := selfSigned(t, "router")
	if err := c.Set(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	h := &harness{reg: prometheus.NewRegistry(), log: &bytes.Buffer{}}
	h.rt = New(Options{Registerer: h.reg, RequestLog: &lockedWriter{w: h.log}})
	if err := h.rt.SetTable(table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b)))); err != nil {
		t.Fatal(err)
	}
	rs := serveRouter(t, h.rt, c.TLSConfig())
	// A client that would take HTTP/2 gets HTTP/1.1.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	for range 3 { // again on the kept connection
		req, _ := http.NewRequest(http.MethodPost, rs.URL+"/api/v1/endpoint/ep/score", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+key1)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(body) != "blue-0:/score:x" || res.ProtoMajor != 1 || res.TLS == nil {
			t.Fatalf("%s %d %q", res.Proto, res.StatusCode, body)
		}
	}
	b.mu.Lock()
	proto := b.last.Get("X-Forwarded-Proto")
	b.mu.Unlock()
	if proto != "https" {
		t.Fatalf("X-Forwarded-Proto %q", proto)
	}
}

func TestHeadTooLarge(t *testing.T) {
	b := newBackend(t, "blue-0")
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, deployment("blue", b))), Options{})
	r := h.score(t, "ep", key1, "X-Big", strings.Repeat("x", 20<<10))
	wantStatus(t, r, http.StatusRequestHeaderFieldsTooLarge, "")
	if b.hits.Load() != 0 {
		t.Fatal("the request reached the instance")
	}
	wantStatus(t, h.score(t, "ep", key1, "X-Big", strings.Repeat("x", 8<<10)), http.StatusOK, "")
}

func TestLongAndCutAnswers(t *testing.T) {
	big := strings.Repeat("0123456789", 30<<10) // past what the router buffers
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.Header.Get("x-answer") {
		case "big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		case "big-chunked":
			io.WriteString(w, big[:len(big)/2])
			w.(http.Flusher).Flush()
			io.WriteString(w, big[len(big)/2:])
		case "cut":
			// A length promised, part of the body, then the instance dies.
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big[:100<<10])
			w.(http.Flusher).Flush()
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		}
	}))
	t.Cleanup(srv.Close)
	d := deployment("blue")
	d.Instances = []Instance{{Name: "blue-0", Addr: strings.TrimPrefix(srv.URL, "http://"), ScoringPath: "/score"}}
	h := newHarness(t, table(1, endpoint("ep", map[string]int{"blue": 100}, d)), Options{})
	for range 3 {
		for _, a := range []string{"big", "big-chunked"} {
			r := h.score(t, "ep", key1, "x-answer", a)
			if r.status != 200 || r.body != big || r.deployment != "blue" {
				t.Fatalf("%s: %d, %d bytes, deployment %q", a, r.status, len(r.body), r.deployment)
			}
		}
	}
	if n := strings.Count(h.log.String(), "status=200"); n != 6 {
		t.Fatalf("%d of 6 streamed answers logged:\n%s", n, h.log.String())
	}
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1/endpoint/ep/score", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+key1)
	req.Header.Set("x-answer", "cut")
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("an answer cut short by the instance read as whole")
	}
	eventually(t, "nothing in flight", func() bool { return h.load("ep", "blue").InFlight == 0 })
	wantStatus(t, h.score(t, "ep", key1, "x-answer", "big"), http.StatusOK, "")
}
