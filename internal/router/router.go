package router

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/endpointauth"
)

// HeaderDeployment picks a deployment by name, whatever its traffic; the
// router also answers with it, naming the deployment that served.
const HeaderDeployment = "azureml-model-deployment"

// canonicalRequestID identifies a request in the router's log and to
// the instance (x-request-id); a client's own is kept.
const canonicalRequestID = "X-Request-Id"

// DefaultMaxBodyBytes bounds a request body: larger ones get a 413. Azure
// ML's managed endpoints take 1.5 MB; a cluster's own router can afford
// more for images and batches of rows, not unbounded.
const DefaultMaxBodyBytes = 100 << 20

// maxAttempts bounds the instances one request tries: only a failed
// connection (nothing sent) moves a request to another instance.
const maxAttempts = 3

// Options configure a Router.
type Options struct {
	// Replica names this router replica (its pod) in /load.
	Replica string
	// MaxBodyBytes bounds request bodies (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// RequestLog gets one line per request (endpoint, deployment, method,
	// status, duration, request id; never keys, tokens or bodies), in the
	// format of slog's TextHandler, one Write a line. Nil: no request log.
	RequestLog io.Writer
	// Registerer gets the router's metrics (nil: none).
	Registerer prometheus.Registerer
	// Now is the clock aml_tokens are checked against (nil: time.Now).
	Now func() time.Time
}

// Router routes scoring requests by its current Table.
type Router struct {
	opts    Options
	snap    atomic.Pointer[snapshot]
	metrics *metrics
	ids     atomic.Uint64
	idBase  string

	mu    sync.Mutex // serializes SetTable
	pools map[poolKey]*pool
}

type poolKey struct{ namespace, endpoint, deployment string }

// snapshot is a Table compiled for routing; requests load one and use it
// throughout, so that none sees half of a change.
type snapshot struct {
	endpoints map[string]*endpointState
	replicas  int
}

type endpointState struct {
	*Endpoint
	deployments map[string]*deploymentState
	known       string // the deployment names, for the 404 of an unknown one
	traffic     []share
	total       int
}

// share is a run of the traffic's [0, total) range.
type share struct {
	upTo int // exclusive
	name string
	dep  *deploymentState // nil: traffic names a deployment not on the cluster
}

type deploymentState struct {
	name string
	// header is name as the value of the answer's HeaderDeployment.
	header []byte
	settings
	pool *pool
	// The table's instances and the per-instance limit at this replica.
	instances []*instance
	limit     int
	metrics   *deploymentMetrics
}

// New returns a Router with an empty table.
func New(opts Options) *Router {
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rt := &Router{opts: opts, pools: map[poolKey]*pool{}, idBase: requestIDBase(opts.Replica)}
	rt.snap.Store(&snapshot{endpoints: map[string]*endpointState{}, replicas: 1})
	rt.metrics = newMetrics(rt)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(rt.metrics.collectors()...)
	}
	return rt
}

// SetTable makes t the routing table. In-flight and queued requests keep
// their instances' counts; instances that left take no new requests.
func (rt *Router) SetTable(t *Table) error {
	if err := t.Validate(); err != nil {
		return err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	s := &snapshot{endpoints: make(map[string]*endpointState, len(t.Endpoints)), replicas: max(t.Replicas, 1)}
	live := map[poolKey]bool{}
	for name, e := range t.Endpoints {
		es := &endpointState{Endpoint: e, deployments: make(map[string]*deploymentState, len(e.Deployments))}
		for dn, d := range e.Deployments {
			k := poolKey{e.Namespace, name, dn}
			p := rt.pools[k]
			if p == nil {
				p = &pool{endpoint: name, deployment: dn, namespace: e.Namespace}
				rt.pools[k] = p
			}
			live[k] = true
			st := d.settings()
			limit := perReplicaLimit(st.maxConcurrent, s.replicas)
			ins := p.update(d.Instances, limit)
			es.deployments[dn] = &deploymentState{name: dn, header: []byte(dn), settings: st, pool: p, instances: ins, limit: limit,
				metrics: rt.metrics.forDeployment(name, dn)}
		}
		es.known = strings.Join(sortedNames(e.Deployments), ", ")
		for _, dn := range sortedNames(e.Traffic) {
			if w := e.Traffic[dn]; w > 0 {
				es.total += w
				es.traffic = append(es.traffic, share{upTo: es.total, name: dn, dep: es.deployments[dn]})
			}
		}
		s.endpoints[name] = es
	}
	for k, p := range rt.pools {
		if !live[k] {
			p.update(nil, 0) // its waiters learn at once
			delete(rt.pools, k)
		}
	}
	rt.snap.Store(s)
	return nil
}

// Load is the requests in flight and queued at this replica, per
// deployment.
func (rt *Router) Load() api.RouterLoad {
	out := api.RouterLoad{Replica: rt.opts.Replica, Deployments: []api.DeploymentLoad{}}
	for _, p := range rt.livePools() {
		inFlight, queued, _ := p.load()
		out.Deployments = append(out.Deployments, api.DeploymentLoad{
			Namespace: p.namespace, Endpoint: p.endpoint, Deployment: p.deployment, InFlight: inFlight, Queued: queued,
		})
	}
	return out
}

func (rt *Router) livePools() []*pool {
	rt.mu.Lock()
	ps := make([]*pool, 0, len(rt.pools))
	for _, p := range rt.pools {
		ps = append(ps, p)
	}
	rt.mu.Unlock()
	slices.SortFunc(ps, func(a, b *pool) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.endpoint, b.endpoint), cmp.Compare(a.deployment, b.deployment))
	})
	return ps
}

// A request's outcome, for the response, the log and the metrics.
type outcome struct {
	endpoint, deployment string
	metrics              *deploymentMetrics // the deployment's, once picked
}

// exchange is one request on its way through the router.
type exchange struct {
	ctx   *fasthttp.RequestCtx
	start time.Time
	o     outcome
	// status overrides the answer's status in the log and metrics
	// (statusClientClosed); 0: the answer's.
	status int
	// deadline is start + the deployment's request_timeout_ms, once picked.
	deadline time.Time
	// depHeader is the deployment's name for the answer's header.
	depHeader []byte
	// id is the request's X-Request-Id: the client's or one made here.
	id    []byte
	idBuf [64]byte
}

// Handle routes /api/v1/endpoint/{endpoint}/score and
// /api/v1/endpoint/{endpoint}/swagger.json: the handler of the server
// NewServer makes.
func (rt *Router) Handle(ctx *fasthttp.RequestCtx) {
	x := &exchange{ctx: ctx, start: ctx.Time()}
	defer func() {
		// net/http recovered a handler's panic for the server; fasthttp
		// does not, and one request's bug must not end the replica.
		if p := recover(); p != nil {
			log.Printf("router: panic serving %s: %v\n%s", ctx.RemoteAddr(), p, debug.Stack())
			ctx.Response.Reset()
			ctx.SetConnectionClose()
			writeError(ctx, http.StatusInternalServerError, "InternalError", "the router failed on this request")
			rt.done(x)
		}
	}()
	if rt.serve(x) {
		return // the answer streams: its end logs and counts the request
	}
	rt.stamp(x)
	rt.done(x)
}

const pathPrefix = "/api/v1/endpoint/"

// serve answers x's request; streamed says that the answer's body is still
// to come from the instance (see answerStream), which then finishes x.
func (rt *Router) serve(x *exchange) (streamed bool) {
	ctx := x.ctx
	rest, ok := bytes.CutPrefix(ctx.Path(), []byte(pathPrefix))
	name, op, _ := bytes.Cut(rest, []byte("/"))
	score, swagger := string(op) == "score", string(op) == "swagger.json"
	if !ok || len(name) == 0 || !(score || swagger) {
		writeError(ctx, http.StatusNotFound, "NotFound", "the router serves "+pathPrefix+"{endpoint}/score and "+pathPrefix+"{endpoint}/swagger.json")
		return false
	}
	snap := rt.snap.Load()
	ep := snap.endpoints[string(name)]
	if ep == nil {
		writeError(ctx, http.StatusNotFound, "EndpointNotFound", fmt.Sprintf("endpoint %q is not on this cluster", name))
		return false
	}
	x.o.endpoint = ep.Name
	method := ctx.Method()
	if swagger && !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		writeError(ctx, http.StatusMethodNotAllowed, "MethodNotAllowed", "swagger.json answers GET")
		return false
	}
	if ctx.IsConnect() || ctx.IsTrace() {
		writeError(ctx, http.StatusMethodNotAllowed, "MethodNotAllowed", string(method)+" is not routed")
		return false
	}
	if status, code, msg := rt.authenticate(ep, ctx.Request.Header.Peek("Authorization")); status != 0 {
		if status == http.StatusUnauthorized {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="`+ep.Name+`"`)
		}
		writeError(ctx, status, code, msg)
		return false
	}
	// -1: chunked; -2: no framing, which fasthttp reads as no body.
	contentLength := int64(ctx.Request.Header.ContentLength())
	if contentLength > rt.opts.MaxBodyBytes {
		writeError(ctx, http.StatusRequestEntityTooLarge, "RequestTooLarge", rt.tooLarge())
		linger(ctx, contentLength)
		return false
	}
	dep, status, code, msg := pickDeployment(ep, ctx.Request.Header.Peek(HeaderDeployment))
	if dep == nil {
		writeError(ctx, status, code, msg)
		return false
	}
	x.o.deployment, x.o.metrics, x.depHeader = dep.name, dep.metrics, dep.header
	x.id = ctx.Request.Header.Peek(canonicalRequestID)
	if len(x.id) == 0 {
		x.id = rt.appendRequestID(x.idBuf[:0])
	}

	x.deadline = x.start.Add(dep.timeout)
	c := &call{}
	switch {
	case contentLength > 0 && contentLength <= smallBody:
		// Read before the request takes room on an instance (a slow
		// client holds none), to go out with the request's head in one
		// write.
		bp := smallBodies.Get().(*[]byte)
		defer smallBodies.Put(bp)
		c.body = (*bp)[:contentLength]
		if contentLength > prefetched {
			// The rest comes from the connection: on time, or a 408.
			ctx.SetReadDeadline(x.deadline)
		}
		if _, err := io.ReadFull(ctx.RequestBodyStream(), c.body); err != nil {
			rt.clientFailed(x, dep, err)
			return false
		}
		if contentLength > prefetched && time.Now().After(x.deadline) {
			rt.timedOut(ctx, dep)
			return false
		}
	case contentLength != 0 && contentLength != -2:
		// Streamed to the instance once it has room. A client that sends
		// a long body slowly gets its 408 on time rather than hold the
		// instance's room.
		c.stream = true
		ctx.SetReadDeadline(x.deadline)
	}
	c.path = DefaultScoringPath
	var failed *instance // the last instance that refused the connection
	var lastErr error
	for attempt := 1; ; attempt++ {
		in, err := dep.pool.acquire(x.watchClient, dep.instances, dep.limit, x.start, x.start.Add(dep.maxQueueWait), x.deadline)
		if err != nil {
			if failed != nil && errors.Is(err, errAllRefused) {
				rt.proxyFailed(x, ep, dep, failed, lastErr)
				return false
			}
			rt.admissionError(x, ep, dep, err)
			return false
		}
		c.in, c.path = in, cmp.Or(in.ScoringPath, DefaultScoringPath)
		if swagger {
			c.path = "/swagger.json"
		}
		sent, streamed, err := rt.forward(x, dep, c)
		if streamed {
			return true // the stream releases the instance
		}
		dep.pool.release(in)
		if err == nil {
			return false
		}
		lastErr = err
		if !sent && attempt < maxAttempts && time.Now().Before(x.deadline) {
			// Nothing reached the instance: try again, elsewhere if it
			// refused the connection.
			var de *dialError
			if errors.As(err, &de) {
				dep.pool.refused(in)
				failed = in
			}
			continue
		}
		rt.proxyFailed(x, ep, dep, in, err)
		return false
	}
}

// prefetched is how much of a streamed request body fasthttp reads with
// the request's head, before the handler runs (readBodyWithStreaming).
const prefetched = 8 << 10

// smallBodies hold small request bodies while their requests are routed.
var smallBodies = sync.Pool{New: func() any { b := make([]byte, smallBody); return &b }}

// stamp adds the router's headers to an answer: the deployment that
// served (or would have), and the request's id unless the instance
// answered with one.
func (rt *Router) stamp(x *exchange) {
	if x.depHeader == nil {
		return // no deployment picked
	}
	h := &x.ctx.Response.Header
	h.SetCanonical(canonicalDeploymentKey, x.depHeader)
	if len(x.id) > 0 && h.Peek(canonicalRequestID) == nil {
		h.SetCanonical(canonicalRequestIDKey, x.id)
	}
}

var (
	// canonicalDeploymentKey is HeaderDeployment as fasthttp writes it.
	canonicalDeploymentKey = []byte(http.CanonicalHeaderKey(HeaderDeployment))
	canonicalRequestIDKey  = []byte(canonicalRequestID)
)

func (rt *Router) tooLarge() string {
	return fmt.Sprintf("the request body is larger than the router's limit of %d bytes", rt.opts.MaxBodyBytes)
}

// authenticate returns 0 or the status, code and reason of a refusal.
func (rt *Router) authenticate(ep *endpointState, header []byte) (int, string, string) {
	if len(header) == 0 {
		return http.StatusUnauthorized, "Unauthorized", "no Authorization header: send Authorization: Bearer <key or token>"
	}
	cred, ok := bearer(header)
	if !ok {
		return http.StatusUnauthorized, "Unauthorized", "the Authorization header is not Bearer <key or token>"
	}
	switch ep.AuthMode {
	case api.AuthModeAMLToken:
		if ep.TokenKey == "" {
			return http.StatusServiceUnavailable, "KeysNotReady", fmt.Sprintf("endpoint %q's token key (%s) is not on the cluster yet", ep.Name, ep.KeysSource)
		}
		switch err := endpointauth.VerifyToken(ep.TokenKey, ep.Name, string(cred), rt.opts.Now()); {
		case errors.Is(err, endpointauth.ErrExpiredToken):
			return http.StatusForbidden, "TokenExpired", "the aml_token has expired: get a new one with get-credentials"
		case err != nil:
			return http.StatusForbidden, "Forbidden", "the aml_token is not valid for endpoint " + ep.Name
		}
	default:
		if !slices.ContainsFunc(ep.Keys, func(k string) bool { return k != "" }) {
			return http.StatusServiceUnavailable, "KeysNotReady", fmt.Sprintf("endpoint %q's keys (%s) are not on the cluster yet", ep.Name, ep.KeysSource)
		}
		if !matchKey(string(cred), ep.Keys...) {
			return http.StatusForbidden, "Forbidden", "the key is not one of endpoint " + ep.Name + "'s keys"
		}
	}
	return 0, "", ""
}

// matchKey is endpointauth.MatchKey (constant time), a variable so that a
// test can see that it is what decides.
var matchKey = endpointauth.MatchKey

func bearer(h []byte) ([]byte, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(string(h[:len(scheme)]), scheme) {
		return nil, false
	}
	cred := bytes.TrimSpace(h[len(scheme):])
	return cred, len(cred) > 0
}

// pickDeployment takes the header's deployment, else one by traffic weight.
func pickDeployment(ep *endpointState, forced []byte) (*deploymentState, int, string, string) {
	if len(forced) > 0 {
		if d := ep.deployments[string(forced)]; d != nil {
			return d, 0, "", ""
		}
		known := ep.known
		if known == "" {
			known = "none"
		}
		return nil, http.StatusNotFound, "DeploymentNotFound",
			fmt.Sprintf("endpoint %q has no deployment %q (%s: %s)", ep.Name, forced, HeaderDeployment, known)
	}
	if ep.total == 0 {
		return nil, http.StatusServiceUnavailable, "NoTraffic",
			fmt.Sprintf("no deployment receives traffic: endpoint %q's traffic is empty or all 0 (name one with the %s header)", ep.Name, HeaderDeployment)
	}
	n := rand.IntN(ep.total)
	i, _ := slices.BinarySearchFunc(ep.traffic, n, func(s share, n int) int {
		if s.upTo <= n {
			return -1
		}
		return 1
	})
	s := ep.traffic[i]
	if s.dep == nil {
		return nil, http.StatusServiceUnavailable, "DeploymentNotReady",
			fmt.Sprintf("deployment %q of endpoint %q gets traffic but is not on the cluster yet", s.name, ep.Name)
	}
	return s.dep, 0, "", ""
}

func (rt *Router) admissionError(x *exchange, ep *endpointState, dep *deploymentState, err error) {
	switch {
	case errors.Is(err, errNoReadyInstance):
		writeError(x.ctx, http.StatusServiceUnavailable, "NoReadyInstance",
			fmt.Sprintf("deployment %q of endpoint %q has no ready instance", dep.name, ep.Name))
	case errors.Is(err, errAllRefused):
		writeError(x.ctx, http.StatusServiceUnavailable, "NoReadyInstance",
			fmt.Sprintf("deployment %q of endpoint %q has no ready instance: %v", dep.name, ep.Name, err))
	case errors.Is(err, errQueueTimeout):
		writeError(x.ctx, http.StatusTooManyRequests, "TooManyRequests",
			fmt.Sprintf("deployment %q's instances were busy for max_queue_wait_ms (%d ms)", dep.name, dep.maxQueueWait.Milliseconds()))
	case errors.Is(err, context.DeadlineExceeded):
		rt.timedOut(x.ctx, dep)
	default: // the client went away
		x.clientLeft()
	}
}

func (rt *Router) timedOut(ctx *fasthttp.RequestCtx, dep *deploymentState) {
	writeError(ctx, http.StatusRequestTimeout, "RequestTimeout",
		fmt.Sprintf("deployment %q did not answer within request_timeout_ms (%d ms)", dep.name, dep.timeout.Milliseconds()))
}

// proxyFailed answers a request whose exchange with in failed before its
// answer's head went to the client (the server writes it only once the
// handler returns; a failure after that cuts the connection, see
// answerStream).
func (rt *Router) proxyFailed(x *exchange, ep *endpointState, dep *deploymentState, in *instance, err error) {
	// Whatever of the instance's answer was read goes.
	x.ctx.Response.Reset()
	var ce *clientError
	switch {
	case errors.As(err, &ce):
		rt.clientFailed(x, dep, ce.error)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) || !time.Now().Before(x.deadline):
		// The connection's deadline, or a dial cut short by it.
		rt.timedOut(x.ctx, dep)
	default:
		var de *dialError
		what := fmt.Sprintf("instance %s (%s) failed before its answer was complete", in.Name, in.Addr)
		if errors.As(err, &de) {
			what = fmt.Sprintf("could not connect to instance %s (%s)", in.Name, in.Addr)
		}
		writeError(x.ctx, http.StatusBadGateway, "BadGateway",
			fmt.Sprintf("deployment %q of endpoint %q: %s: %v", dep.name, ep.Name, what, err))
	}
}

// clientFailed answers a request whose body could not be read.
func (rt *Router) clientFailed(x *exchange, dep *deploymentState, err error) {
	switch {
	case errors.Is(err, errTooLarge):
		writeError(x.ctx, http.StatusRequestEntityTooLarge, "RequestTooLarge", rt.tooLarge())
	case errors.Is(err, os.ErrDeadlineExceeded):
		rt.timedOut(x.ctx, dep)
	case clientGone(err):
		x.clientLeft()
	default:
		writeError(x.ctx, http.StatusBadRequest, "BadRequest", "reading the request body failed: "+err.Error())
	}
}

// clientGone reports whether a read of the client's connection failed
// because the client closed or reset it.
func clientGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// clientLeft: nobody reads the answer; the connection ends.
func (x *exchange) clientLeft() {
	x.status = statusClientClosed
	x.ctx.SetConnectionClose()
}

// statusClientClosed is what the log and metrics say of a request whose
// client left before the answer (nginx's 499).
const statusClientClosed = 499

// done logs and counts a request.
func (rt *Router) done(x *exchange) {
	status := x.status
	if status == 0 {
		status = x.ctx.Response.StatusCode()
	}
	d := time.Since(x.start)
	rt.metrics.observe(&x.o, status, d)
	if rt.opts.RequestLog != nil {
		bp := lines.Get().(*[]byte)
		*bp = appendRequestLine((*bp)[:0], x.start.Add(d), &x.o, x.ctx.Method(), status, d, x.id)
		rt.opts.RequestLog.Write(*bp)
		lines.Put(bp)
	}
}

func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	// Marshalling two strings cannot fail.
	b, _ := json.Marshal(api.Error{Code: code, Message: msg})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// call is a request's forwarding: where it goes, and its body.
type call struct {
	in   *instance
	path string
	body []byte // a small body, read before an instance was picked
	// stream: the body comes from the client's connection as it is sent.
	stream bool
}

func requestIDBase(replica string) string {
	if replica == "" {
		replica = "azureml-fe"
	}
	return replica + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-"
}

func (rt *Router) appendRequestID(b []byte) []byte {
	return strconv.AppendUint(append(b, rt.idBase...), rt.ids.Add(1), 36)
}

// lingerTime bounds how long a refused body is read and dropped.
const lingerTime = 5 * time.Second

// linger reads and drops up to n bytes of a refused request's body, for at
// most lingerTime, then has the connection closed, as nginx's lingering
// close does: closing a socket whose client is still sending resets it,
// and the client (curl among them) then reports a send failure instead
// of the 413 it was answered.
func linger(ctx *fasthttp.RequestCtx, n int64) {
	ctx.SetConnectionClose()
	conn := ctx.Conn()
	if err := conn.SetReadDeadline(time.Now().Add(lingerTime)); err != nil {
		return // the connection is already gone: nobody reads the answer
	}
	// An error here (the deadline, the client leaving) only ends the
	// draining early: the answer is sent either way.
	_, _ = io.CopyN(io.Discard, ctx.RequestBodyStream(), n)
}
