// Package router is the inference router azureml-fe: it authenticates a
// scoring request against its online endpoint's keys or aml_tokens, picks
// one of the endpoint's deployments by traffic weight (or by the
// azureml-model-deployment header), and proxies the request to the ready
// instance of that deployment with the fewest outstanding requests, within
// the deployment's request settings (concurrency per instance, queue wait,
// timeout). It knows nothing of Kubernetes: a source (package kubesource in
// the cluster) hands it whole routing tables, which it swaps atomically.
package router

import (
	"fmt"
	"slices"
	"time"
)

// Table is everything the router routes by. A Table handed to SetTable is
// owned by the router from then on: the caller builds a new one for every
// change.
type Table struct {
	// Endpoints by name (the {endpoint} of the scoring URI, unique in the
	// cluster).
	Endpoints map[string]*Endpoint
	// Replicas is the number of ready router replicas (R) sharing each
	// instance's concurrency budget; below 1 counts as 1.
	Replicas int
}

// Endpoint is an online endpoint.
type Endpoint struct {
	Name      string
	Namespace string
	// AuthMode is api.AuthModeKey or api.AuthModeAMLToken.
	AuthMode string
	// Keys are the primary and secondary keys (auth mode key); TokenKey
	// signs the aml_tokens (auth mode aml_token). Empty while the
	// endpoint's Secret is not on the cluster: requests then get a 503.
	Keys     []string
	TokenKey string
	// KeysSource names where the keys come from (namespace/secret), for
	// the reason of that 503; never the keys.
	KeysSource string
	// Traffic maps deployment names to percents.
	Traffic map[string]int
	// Deployments of the endpoint on the cluster, by name.
	Deployments map[string]*Deployment
}

// Deployment is one deployment of an endpoint.
type Deployment struct {
	Name string
	// Request settings: Timeout runs from the request's arrival at the
	// router; MaxConcurrent is per instance across all router replicas;
	// MaxQueueWait is how long a request may wait for room.
	Timeout       time.Duration
	MaxConcurrent int
	MaxQueueWait  time.Duration
	// Instances are the ready ones.
	Instances []Instance
}

// Instance is a ready pod of a deployment.
type Instance struct {
	// Name identifies it in logs (the pod's name).
	Name string
	// Addr is host:port of its scoring server.
	Addr string
	// ScoringPath is where scoring requests go (/score, or a custom
	// container's scoring route).
	ScoringPath string
}

// Defaults of a deployment's request settings, as Azure ML's, for settings
// a source leaves at zero.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxConcurrent = 1
	DefaultMaxQueueWait  = 500 * time.Millisecond
	DefaultScoringPath   = "/score"
)

// Validate reports the first thing in t the router cannot route by.
func (t *Table) Validate() error {
	for name, e := range t.Endpoints {
		if e == nil || e.Name != name {
			return fmt.Errorf("endpoint %q: the table's key and the endpoint's name differ", name)
		}
		for dn, d := range e.Deployments {
			if d == nil || d.Name != dn {
				return fmt.Errorf("endpoint %q deployment %q: the table's key and the deployment's name differ", name, dn)
			}
			if d.Timeout < 0 || d.MaxConcurrent < 0 || d.MaxQueueWait < 0 {
				return fmt.Errorf("endpoint %q deployment %q: request settings must not be negative", name, dn)
			}
			for _, in := range d.Instances {
				if in.Addr == "" {
					return fmt.Errorf("endpoint %q deployment %q instance %q has no address", name, dn, in.Name)
				}
			}
		}
		for dn, w := range e.Traffic {
			if w < 0 {
				return fmt.Errorf("endpoint %q: traffic of deployment %q is negative (%d)", name, dn, w)
			}
		}
	}
	return nil
}

// settings are a deployment's request settings with the defaults filled.
type settings struct {
	timeout       time.Duration
	maxConcurrent int
	maxQueueWait  time.Duration
}

func (d *Deployment) settings() settings {
	s := settings{timeout: d.Timeout, maxConcurrent: d.MaxConcurrent, maxQueueWait: d.MaxQueueWait}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.maxConcurrent == 0 {
		s.maxConcurrent = DefaultMaxConcurrent
	}
	// Zero means "not given" here as in the CLI's documents, where an
	// omitted max_queue_wait_ms and 0 read the same.
	if s.maxQueueWait == 0 {
		s.maxQueueWait = DefaultMaxQueueWait
	}
	return s
}

// perReplicaLimit is how many requests one router replica lets reach one
// instance at once: the deployment's max_concurrent_requests_per_instance
// shared by the R ready replicas, rounded up so that every replica can
// always send at least one. The total across replicas is therefore at
// most R*ceil(m/R) <= m+R-1: exact when R divides m, and never starving a
// replica when m < R.
func perReplicaLimit(maxConcurrent, replicas int) int {
	if replicas < 1 {
		replicas = 1
	}
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	return (maxConcurrent + replicas - 1) / replicas
}

// sortedNames returns m's keys in order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
