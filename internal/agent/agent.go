package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

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

	mu        sync.Mutex
	desired   api.DesiredState
	applied   map[string]applied // extension -> outcome of its last apply
	heartbeat time.Duration
	wake      chan struct{} // report now
}

// Run connects to the workspace and keeps the cluster converged on what it
// wants until ctx ends. Connection failures are retried with backoff forever:
// an agent outlives any outage of its workspace.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	rc, err := restConfig(cfg.Kubeconfig)
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
		applied: map[string]applied{}, heartbeat: 10 * time.Second, wake: make(chan struct{}, 1)}
	go a.reportLoop(ctx)
	a.syncLoop(ctx)
	return nil
}

// clients makes the typed and dynamic clients the agent applies with.
func clients(rc *rest.Config) (kubernetes.Interface, dynamic.Interface, error) {
	rc = rest.CopyConfig(rc)
	// client-go's default (5 requests/s) would make pruning an extension of a
	// dozen objects take seconds.
	rc.QPS, rc.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	return kube, dyn, err
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// syncLoop long-polls the desired state and applies each new one.
func (a *Agent) syncLoop(ctx context.Context) {
	etag := ""
	backoff := time.Second
	var retry time.Duration
	for ctx.Err() == nil {
		d, tag, err := a.poll(ctx, etag)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff/2 + rand.N(backoff/2+1) // jitter: a workspace restart must not see every agent at once
			a.log.Warn("workspace unreachable; retrying", "err", err, "in", wait.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		if d == nil {
			continue // 304: nothing changed
		}
		etag = tag
		if a.apply(ctx, *d) {
			// Something failed (a namespace still terminating, an API error):
			// ask again after a while, which applies the same state again.
			etag = ""
			retry = min(max(2*retry, 2*time.Second), 30*time.Second)
			a.kick()
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			continue
		}
		retry = 0
		a.kick()
	}
}

// poll asks for the desired state; nil without error means unchanged.
func (a *Agent) poll(ctx context.Context, etag string) (*api.DesiredState, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/desired", nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, nil
	case http.StatusOK:
		var d api.DesiredState
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return nil, "", err
		}
		return &d, resp.Header.Get("ETag"), nil
	}
	return nil, "", httpError(resp)
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
// still rolling out (so that Installed shows up quickly), and right after an
// apply.
func (a *Agent) reportLoop(ctx context.Context) {
	for ctx.Err() == nil {
		rep := a.report(ctx)
		if err := a.send(ctx, rep); err != nil && ctx.Err() == nil {
			a.log.Warn("report", "err", err)
		}
		a.mu.Lock()
		every := a.heartbeat
		a.mu.Unlock()
		for _, e := range rep.Extensions {
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
