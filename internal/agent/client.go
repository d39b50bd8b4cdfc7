// Package agent is the cluster agent: installed once per cluster by
// `outpost connectedk8s connect`, it dials OUT to the workspace (through an
// HTTPS proxy when one is set), long-polls the cluster's desired state,
// applies it with server-side apply, and reports cluster facts and the state
// of what it applied on every heartbeat. The workspace never needs a way in.
package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config is how an agent reaches its workspace.
type Config struct {
	WorkspaceURL  string
	ResourceGroup string
	Cluster       string
	Token         string
	CAPEM         []byte
	// Proxy is an http:// or https:// proxy URL for HTTPS CONNECT; NoProxy
	// lists hosts (or .domain suffixes) reached directly.
	Proxy   string
	NoProxy string
	// Kubeconfig is empty in a pod (in-cluster config).
	Kubeconfig string
	// Image is the outpost image the extension's components run.
	Image string
}

// httpClient talks to the workspace. Its proxy rule is ours, not
// net/http's from the environment, which never proxies loopback targets:
// here a workspace on a loopback address behind a proxy is a real setup.
func (c Config) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if len(c.CAPEM) > 0 && !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, fmt.Errorf("workspace CA: no certificate in the PEM data")
	}
	var proxy func(*http.Request) (*url.URL, error)
	if c.Proxy != "" {
		pu, err := url.Parse(c.Proxy)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			return nil, fmt.Errorf("proxy %q: want http://host:port or https://host:port", c.Proxy)
		}
		proxy = func(r *http.Request) (*url.URL, error) {
			if bypass(r.URL.Hostname(), c.NoProxy) {
				return nil, nil
			}
			return pu, nil
		}
	}
	tr := &http.Transport{
		Proxy:               proxy,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 2,
	}
	return &http.Client{Transport: tr}, nil
}

// bypass applies a NO_PROXY list: "*", exact hosts, and ".suffix" or
// "suffix" domain matches.
func bypass(host, noProxy string) bool {
	for _, entry := range strings.Split(noProxy, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if entry == "*" || entry == host || strings.HasSuffix(host, "."+strings.TrimPrefix(entry, ".")) {
			return true
		}
	}
	return false
}
