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
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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

// CheckProxy tells what is wrong with a proxy URL, if anything.
func CheckProxy(proxy string) error {
	u, err := url.Parse(proxy)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("proxy %q: want http://host:port or https://host:port", proxy)
	}
	return nil
}

// CheckNoProxy tells what is wrong with a NO_PROXY list. The proxy library
// ignores entries it cannot parse, so a typo would silently send traffic
// through the proxy: refuse URLs and malformed CIDRs instead.
func CheckNoProxy(noProxy string) error {
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
		case strings.Contains(e, "://"):
			return fmt.Errorf("proxy skip range entry %q: give a host, domain, IP address or CIDR, not a URL", e)
		case strings.Contains(e, "/"):
			if _, err := netip.ParsePrefix(e); err != nil {
				return fmt.Errorf("proxy skip range entry %q: not a CIDR such as 10.0.0.0/8", e)
			}
		case strings.ContainsAny(e, " \t"):
			return fmt.Errorf("proxy skip range entry %q: separate entries with commas", e)
		}
	}
	return nil
}

// proxyFunc is the agent's rule for reaching its workspace: NO_PROXY
// matching is golang.org/x/net's (domains, ports, CIDRs), except that a
// loopback target goes through the proxy too unless NoProxy names it. The
// library never proxies loopback, but here a workspace on a loopback address
// behind a proxy is a real setup: the local cluster's pods are host processes.
func proxyFunc(proxy, noProxy string) (func(*url.URL) (*url.URL, error), error) {
	if proxy == "" {
		return func(*url.URL) (*url.URL, error) { return nil, nil }, nil
	}
	if err := CheckProxy(proxy); err != nil {
		return nil, err
	}
	pu, err := url.Parse(proxy)
	if err != nil {
		return nil, err // CheckProxy parsed it already
	}
	lib := (&httpproxy.Config{HTTPSProxy: proxy, NoProxy: noProxy}).ProxyFunc()
	return func(u *url.URL) (*url.URL, error) {
		if u.Scheme != "https" {
			return lib(u) // --proxy-https is for HTTPS only, as HTTPS_PROXY is
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); (err == nil && ip.Unmap().IsLoopback()) || strings.EqualFold(host, "localhost") {
			if loopbackSkipped(host, u.Port(), noProxy) {
				return nil, nil
			}
			return pu, nil
		}
		return lib(u)
	}, nil
}

// loopbackSkipped applies NO_PROXY to a loopback host the way the library
// does to any other host: "*", an IP address or host name (with an optional
// port that must then match), or a CIDR holding the address.
func loopbackSkipped(host, port, noProxy string) bool {
	ip, ipErr := netip.ParseAddr(host)
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "*" {
			return true
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			if ipErr == nil && p.Contains(ip.Unmap()) {
				return true
			}
			continue
		}
		h, ePort := e, ""
		if eh, ep, err := net.SplitHostPort(e); err == nil {
			h, ePort = eh, ep
		}
		if ePort != "" && ePort != port {
			continue
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if ea, err := netip.ParseAddr(h); err == nil {
			if ipErr == nil && ea.Unmap() == ip.Unmap() {
				return true
			}
			continue
		}
		// A name matches itself; ".name" means subdomains only, as in the library.
		if h != "" && !strings.HasPrefix(h, ".") && strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// httpClient talks to the workspace, through the proxy by proxyFunc's rule,
// never by the process's environment.
func (c Config) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if len(c.CAPEM) > 0 && !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, fmt.Errorf("workspace CA: no certificate in the PEM data")
	}
	pf, err := proxyFunc(c.Proxy, c.NoProxy)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               func(r *http.Request) (*url.URL, error) { return pf(r.URL) },
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 2,
	}
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
