// Package agent is the cluster agent: installed once per cluster by
// `outpost connectedk8s connect`, it dials OUT to the workspace (through an
// HTTPS proxy when one is set), long-polls the cluster's desired state,
// applies it with server-side apply, and reports cluster facts and the state
// of what it applied on every heartbeat. The workspace never needs a way in.
package agent

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"outpost.dev/outpost/internal/egress"
)

// Config is how an agent reaches its workspace.
type Config struct {
	WorkspaceURL  string
	ResourceGroup string
	Cluster       string
	Token         string
	CAPEM         []byte
	// Proxy is an http:// or https:// proxy URL for HTTPS CONNECT; NoProxy
	// lists what is reached directly, as NO_PROXY does: hosts and domains
	// (optionally with a port), IP addresses, CIDRs, or "*".
	Proxy   string
	NoProxy string
	// Kubeconfig is empty in a pod (in-cluster config).
	Kubeconfig string
	// Image is the outpost image the extension's components run.
	Image string
}

// httpClient talks to the workspace, through the proxy by egress's rule,
// never by the process's environment.
func (c Config) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if len(c.CAPEM) > 0 && !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, fmt.Errorf("workspace CA: no certificate in the PEM data")
	}
	if c.Proxy != "" {
		if err := egress.CheckProxy(fmt.Sprintf("proxy %q", c.Proxy), c.Proxy); err != nil {
			return nil, err
		}
	}
	tr, err := egress.Transport(pool, c.Proxy, c.NoProxy)
	if err != nil {
		return nil, err
	}
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{Transport: tr}, nil
}

// kubeRestConfig is how the agent reaches its own cluster's apiserver:
// in-cluster, or by a kubeconfig when one is given. It never goes through a
// proxy: the proxy settings are for the workspace only, and client-go would
// otherwise honour HTTPS_PROXY from the environment (a cluster's nodes often
// have one set for pulling images).
func kubeRestConfig(kubeconfig string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	if rc.Proxy == nil { // a kubeconfig's own proxy-url is the user's explicit choice
		rc.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	}
	return rc, nil
}
