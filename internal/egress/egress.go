// Package egress is how outpost's in-cluster processes (the cluster agent,
// the training job wrapper) dial out to the workspace: over TLS against the
// workspace's CA, through an optional HTTPS proxy with a skip range, and
// never by the process's environment (HTTPS_PROXY and NO_PROXY belong to
// the cluster's nodes and to the user's images).
//
// The settings are the agent's `connectedk8s connect --proxy-https` and
// `--proxy-skip-range`, which reach the agent and its jobs under their own
// names. Errors here do not name the setting: each caller says which one it
// read (a flag, an environment variable).
package egress

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
)

// CheckProxy tells what is wrong with a proxy URL, if anything; name is
// how the error begins (the setting, and the value where it may be shown:
// a proxy URL may hold a password).
func CheckProxy(name, proxy string) error {
	u, err := url.Parse(proxy)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%s: want http://host:port or https://host:port", name)
	}
	return nil
}

// CheckNoProxy tells what is wrong with a skip range (a NO_PROXY list),
// naming the setting by name. The proxy library ignores entries it cannot
// parse, so a typo would silently send traffic through the proxy: refuse
// URLs, malformed CIDRs and entries not separated by commas instead.
func CheckNoProxy(name, noProxy string) error {
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
		case strings.Contains(e, "://"):
			return fmt.Errorf("%s entry %q: give a host, domain, IP address or CIDR, not a URL", name, e)
		case strings.Contains(e, "/"):
			if _, err := netip.ParsePrefix(e); err != nil {
				return fmt.Errorf("%s entry %q: not a CIDR such as 10.0.0.0/8", name, e)
			}
		case strings.ContainsAny(e, " \t"):
			return fmt.Errorf("%s entry %q: separate entries with commas", name, e)
		}
	}
	return nil
}

// ProxyFunc is the rule for reaching the workspace: no proxy when proxy is
// empty; otherwise NO_PROXY matching is golang.org/x/net's (domains, ports,
// CIDRs), except that a loopback target goes through the proxy too unless
// noProxy names it. The library never proxies loopback, but here a
// workspace on a loopback address behind a proxy is a real setup: on the
// local Outpost node the cluster's pods are host processes. The proxy is
// for HTTPS only, as HTTPS_PROXY is.
//
// Callers check the settings first with CheckProxy and CheckNoProxy, to
// name them in the errors; a proxy that does not pass is refused here too.
func ProxyFunc(proxy, noProxy string) (func(*url.URL) (*url.URL, error), error) {
	if proxy == "" {
		return func(*url.URL) (*url.URL, error) { return nil, nil }, nil
	}
	if err := CheckProxy("proxy", proxy); err != nil {
		return nil, err
	}
	pu, err := url.Parse(proxy)
	if err != nil {
		return nil, err // CheckProxy parsed it already
	}
	lib := (&httpproxy.Config{HTTPSProxy: proxy, NoProxy: noProxy}).ProxyFunc()
	return func(u *url.URL) (*url.URL, error) {
		if u.Scheme != "https" {
			return lib(u)
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

// Transport reaches the workspace: TLS 1.2 or later against roots only,
// through proxy by ProxyFunc's rule (never the environment's), with the
// dial, handshake and idle timeouts every caller uses. Callers set what is
// theirs (idle connections per host, response timeouts, HTTP/2).
func Transport(roots *x509.CertPool, proxy, noProxy string) (*http.Transport, error) {
	pf, err := ProxyFunc(proxy, noProxy)
	if err != nil {
		return nil, err
	}
	return &http.Transport{
		Proxy:               func(r *http.Request) (*url.URL, error) { return pf(r.URL) },
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}, nil
}
