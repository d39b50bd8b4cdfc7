// Package statusreporter is the extension's cluster-status-reporter: it
// publishes the cluster's health (nodes, allocatable resources, the
// extension's pods) in a ConfigMap, where the agent and users read it with
// nothing more than read access to one namespace.
package statusreporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"outpost.dev/outpost/internal/kubenode"
)

const (
	// ConfigMapName is the ConfigMap the report is written to.
	ConfigMapName = "cluster-status"
	// StatusKey is the key of the report in the ConfigMap's data.
	StatusKey = "status.json"
	// GPU is the resource NVIDIA's device plugin advertises.
	GPU corev1.ResourceName = "nvidia.com/gpu"

	// DefaultInterval is used when Options.Interval is not positive.
	DefaultInterval = 10 * time.Second

	// listPage bounds each list call, so that a large cluster is read in
	// pieces instead of one response the API server has to build at once.
	listPage = 500
)

// Status is the report, as stored under StatusKey.
type Status struct {
	Time  time.Time  `json:"time"`
	Nodes NodeCounts `json:"nodes"`
	// Allocatable sums cpu, memory and nvidia.com/gpu over the Ready nodes:
	// what the scheduler can place pods on now. Each is present, "0" when
	// there is none, so readers need not tell absent from zero.
	Allocatable map[corev1.ResourceName]resource.Quantity `json:"allocatable"`
	// Pods counts the pods of the namespace the reporter runs in, by phase.
	Pods PodCounts `json:"pods"`
	// NotReadyNodes is sorted, and [] rather than null when all are Ready.
	NotReadyNodes []string `json:"notReadyNodes"`
}

// NodeCounts counts the cluster's nodes.
type NodeCounts struct {
	Total int `json:"total"`
	Ready int `json:"ready"`
}

// PodCounts counts pods by phase; Succeeded and Unknown pods are not counted.
type PodCounts struct {
	Running int `json:"running"`
	Pending int `json:"pending"`
	Failed  int `json:"failed"`
}

// Options configure Run.
type Options struct {
	// Namespace holds the ConfigMap and the pods that are counted.
	Namespace string
	// Listen is the address of the /healthz endpoint, e.g. "$(POD_IP):8080".
	Listen string
	// Interval is the time between reports; DefaultInterval when not positive.
	Interval time.Duration
	// Logger receives errors and the first successful report; nil discards.
	Logger *slog.Logger
	// Ready, when not nil, receives the address Listen bound to once the
	// endpoint accepts connections, which is how a caller that passed port 0
	// learns the port.
	Ready chan<- string
}

// Run serves GET /healthz on o.Listen and writes a report to the ConfigMap
// ConfigMapName in o.Namespace at once and then every o.Interval, until ctx
// ends. /healthz answers 200 once a report has been written, and 503 with the
// reason before: the pod becomes ready only when its report can be read.
// A failed report is logged and retried at the next interval; only a failure
// to serve ends Run early. When ctx ends Run returns nil.
func Run(ctx context.Context, client kubernetes.Interface, o Options) error {
	if client == nil {
		return errors.New("statusreporter: no Kubernetes client")
	}
	if o.Namespace == "" {
		return errors.New("statusreporter: no namespace")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("statusreporter: health endpoint on %q: %w", o.Listen, err)
	}
	var h health
	h.set(errors.New("no report written yet"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.serve)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		// A probe in flight gets a moment to finish; the pod is going away.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	if o.Ready != nil {
		select {
		case o.Ready <- ln.Addr().String():
		case <-ctx.Done():
			return nil
		}
	}
	log.Info("serving health", "addr", ln.Addr().String(), "namespace", o.Namespace, "interval", o.Interval)

	r := reporter{client: client, ns: o.Namespace}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	written := false
	for {
		err := r.report(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Error("report cluster status", "err", err)
			if !written {
				h.set(err)
			}
		case !written:
			// Later reports are not logged: one a few seconds is noise.
			log.Info("first cluster status report written", "configmap", o.Namespace+"/"+ConfigMapName)
			written = true
			h.set(nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			return fmt.Errorf("statusreporter: serve health: %w", err)
		case <-tick.C:
		}
	}
}

// health is what /healthz answers: ok, or the reason there is no report yet.
// Once a report is written it stays ok: a report that later goes stale shows
// in its time, and flapping readiness on a transient API error would flip the
// extension's installState back and forth for nothing.
type health struct{ err atomic.Pointer[error] }

func (h *health) set(err error) {
	if err == nil {
		h.err.Store(nil)
		return
	}
	h.err.Store(&err)
}

func (h *health) serve(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if p := h.err.Load(); p != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", *p)
		return
	}
	fmt.Fprintln(w, "ok")
}

type reporter struct {
	client kubernetes.Interface
	ns     string
}

func (r *reporter) report(ctx context.Context) error {
	st, err := r.collect(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return r.write(ctx, data)
}

// collect builds the report from the nodes and the pods of the namespace.
func (r *reporter) collect(ctx context.Context) (*Status, error) {
	st := &Status{
		// Seconds are enough for a report written every few seconds, and
		// UTC keeps it comparable whatever the node's zone.
		Time:          time.Now().UTC().Truncate(time.Second),
		NotReadyNodes: []string{},
		Allocatable: map[corev1.ResourceName]resource.Quantity{
			corev1.ResourceCPU:    resource.MustParse("0"),
			corev1.ResourceMemory: resource.MustParse("0"),
			GPU:                   resource.MustParse("0"),
		},
	}
	err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (string, error) {
		nodes, err := r.client.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return "", fmt.Errorf("list nodes: %w", err)
		}
		for i := range nodes.Items {
			n := &nodes.Items[i]
			st.Nodes.Total++
			if !kubenode.Ready(n) {
				st.NotReadyNodes = append(st.NotReadyNodes, n.Name)
				continue
			}
			st.Nodes.Ready++
			for name, sum := range st.Allocatable {
				if q, ok := n.Status.Allocatable[name]; ok {
					sum.Add(q)
					st.Allocatable[name] = sum
				}
			}
		}
		return nodes.Continue, nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(st.NotReadyNodes)

	err = listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (string, error) {
		pods, err := r.client.CoreV1().Pods(r.ns).List(ctx, opts)
		if err != nil {
			return "", fmt.Errorf("list pods in %s: %w", r.ns, err)
		}
		for _, p := range pods.Items {
			switch p.Status.Phase {
			case corev1.PodRunning:
				st.Pods.Running++
			case corev1.PodPending:
				st.Pods.Pending++
			case corev1.PodFailed:
				st.Pods.Failed++
			}
		}
		return pods.Continue, nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func listAll(ctx context.Context, page func(context.Context, metav1.ListOptions) (string, error)) error {
	opts := metav1.ListOptions{Limit: listPage}
	for {
		next, err := page(ctx, opts)
		if err != nil || next == "" {
			return err
		}
		opts.Continue = next
	}
}

// write creates or updates the ConfigMap. Another writer (a second replica
// during a rollout, or a user's kubectl edit) can win the race; the retry
// reads the ConfigMap again and writes over it, since the newest report is
// the one worth keeping.
func (r *reporter) write(ctx context.Context, data []byte) error {
	cms := r.client.CoreV1().ConfigMaps(r.ns)
	retriable := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err := retry.OnError(retry.DefaultRetry, retriable, func() error {
		cm, err := cms.Get(ctx, ConfigMapName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				Name:      ConfigMapName,
				Namespace: r.ns,
				// Not labelled outpost.dev/extension: the agent prunes
				// what carries that label and was not rendered.
				Labels: map[string]string{"app.kubernetes.io/managed-by": "outpost", "app.kubernetes.io/name": "cluster-status-reporter"},
			}, Data: map[string]string{StatusKey: string(data)}}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[StatusKey] = string(data)
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("write configmap %s/%s: %w", r.ns, ConfigMapName, err)
	}
	return nil
}

// Read returns the report stored in cm, for the agent and the CLI.
func Read(cm *corev1.ConfigMap) (*Status, error) {
	raw, ok := cm.Data[StatusKey]
	if !ok {
		return nil, fmt.Errorf("configmap %s/%s has no %s", cm.Namespace, cm.Name, StatusKey)
	}
	var st Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %s: %w", cm.Namespace, cm.Name, StatusKey, err)
	}
	return &st, nil
}
