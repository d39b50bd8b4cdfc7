package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"outpost.dev/outpost/api"
)

// Agent is a running cluster agent.
type Agent struct {
	cfg    Config
	http   *http.Client
	base   string
	log    *slog.Logger
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper

	mu sync.Mutex
	// objects is the local cache of what the workspace wants here, by kind
	// and id, complete up to revision (the last sync answer applied).
	objects   map[api.ObjectRef]api.DesiredObject
	revision  int64
	applied   map[string]applied // extension -> outcome of its last apply
	heartbeat time.Duration
	wake      chan struct{} // report now

	// acked is the last report the workspace acknowledged: later reports
	// carry only what differs from it. Only reportLoop touches it, and
	// lastInstanceTypes, the instance types last read.
	acked             api.AgentReport
	lastInstanceTypes []api.InstanceType

	jobWatch        jobWatch
	deploymentWatch deploymentWatch
	// bg holds the goroutines Run waits for before it returns.
	bg sync.WaitGroup
}

// Run connects to the workspace and keeps the cluster converged on what it
// wants until ctx ends. Connection failures are retried with backoff forever:
// an agent outlives any outage of its workspace.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	rc, err := kubeRestConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	kube, dyn, err := clients(rc)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return err
	}
	hc, err := cfg.httpClient()
	if err != nil {
		return err
	}
	a := &Agent{cfg: cfg, http: hc, log: log, kube: kube, dyn: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		base: fmt.Sprintf("%s/agent/v1/resourceGroups/%s/connectedClusters/%s", cfg.WorkspaceURL,
			url.PathEscape(cfg.ResourceGroup), url.PathEscape(cfg.Cluster)),
		objects: map[api.ObjectRef]api.DesiredObject{}, applied: map[string]applied{}, heartbeat: 10 * time.Second, wake: make(chan struct{}, 1)}
	a.bg.Go(func() { a.reportLoop(ctx) })
	a.syncLoop(ctx)
	a.bg.Wait()
	return nil
}

// clients makes the typed and dynamic clients the agent applies with.
func clients(rc *rest.Config) (kubernetes.Interface, dynamic.Interface, error) {
	rc = rest.CopyConfig(rc)
	// client-go's default (5 requests/s) would make pruning an extension of a
	// dozen objects take seconds, and a burst of submitted jobs costs about
	// eight requests each over its life (jobs.go).
	rc.QPS, rc.Burst = 200, 400
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	return kube, dyn, err
}

// syncLoop long-polls what changed in the desired state and applies it.
// Objects whose apply failed (a namespace still terminating, an API error)
// are applied again after a growing delay, changes or not.
func (a *Agent) syncLoop(ctx context.Context) {
	var since int64
	backoff := time.Second
	var retryDelay time.Duration
	retry := map[api.ObjectRef]bool{}
	for ctx.Err() == nil {
		wait := pollTimeout
		if len(retry) > 0 {
			wait = retryDelay
		}
		resp, err := a.poll(ctx, since, wait)
		if errors.Is(err, errPollCut) {
			resp, err = &api.SyncResponse{Revision: since}, nil // the retry is due; nothing new
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			jittered := backoff/2 + rand.N(backoff/2+1) // jitter: a workspace restart must not see every agent at once
			a.log.Warn("workspace unreachable; retrying", "err", err, "in", jittered.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return
			case <-time.After(jittered):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		if resp.HeartbeatSeconds > 0 {
			a.mu.Lock()
			a.heartbeat = secondsOf(resp.HeartbeatSeconds)
			a.mu.Unlock()
		}
		cs := a.take(resp)
		since = resp.Revision
		for ref := range retry {
			if _, ok := cs.changed[ref]; ok {
				continue
			}
			if o, ok := a.cached(ref); ok {
				cs.changed[ref] = o
			} else {
				cs.reset = true // a deleted extension whose prune failed: pruneRemoved finds it
			}
		}
		if len(cs.changed) == 0 && len(cs.deleted) == 0 && !cs.reset {
			a.setRevision(since)
			continue
		}
		retry = a.apply(ctx, cs)
		a.setRevision(since)
		a.kick()
		if len(retry) > 0 {
			retryDelay = min(max(2*retryDelay, 2*time.Second), 30*time.Second)
		} else {
			retryDelay = 0
		}
	}
}

// pollTimeout bounds one long poll: the workspace answers within 25 s.
const pollTimeout = 60 * time.Second

// errPollCut is a long poll the agent ended itself, to retry a failed apply.
var errPollCut = errors.New("long poll cut short")

// poll asks for what changed after revision since, waiting at most wait.
func (a *Agent) poll(ctx context.Context, since int64, wait time.Duration) (*api.SyncResponse, error) {
	pctx, cancel := context.WithTimeoutCause(ctx, wait, errPollCut)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, a.base+"/sync?since="+strconv.FormatInt(since, 10), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	resp, err := a.http.Do(req)
	if err != nil {
		if wait < pollTimeout && errors.Is(context.Cause(pctx), errPollCut) && ctx.Err() == nil {
			return nil, errPollCut
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, httpError(resp)
	}
	var d api.SyncResponse
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		if wait < pollTimeout && errors.Is(context.Cause(pctx), errPollCut) && ctx.Err() == nil {
			return nil, errPollCut
		}
		return nil, err
	}
	return &d, nil
}

func httpError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e api.Error
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return fmt.Errorf("%s: %s", resp.Status, e.Message)
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
}

func (a *Agent) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// reportLoop heartbeats: every heartbeat, every second while an extension is
// still rolling out (so that Installed shows up quickly), right after an
// apply, and as soon as a job's state changes (the changes that come while a
// report is made and sent go together in the next).
func (a *Agent) reportLoop(ctx context.Context) {
	for ctx.Err() == nil {
		full := a.report(ctx)
		if err := a.send(ctx, changedSince(a.acked, full)); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("report", "err", err)
			}
		} else {
			a.acked = full
		}
		a.mu.Lock()
		every := a.heartbeat
		a.mu.Unlock()
		for _, e := range full.Extensions {
			if e.InstallState == api.InstallPending {
				every = min(every, time.Second)
			}
		}
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-time.After(every):
		}
	}
}

func (a *Agent) send(ctx context.Context, rep api.AgentReport) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/report", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return httpError(resp)
	}
	return nil
}
