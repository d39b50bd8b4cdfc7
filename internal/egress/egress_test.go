package egress

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestProxyRule(t *testing.T) {
	const proxy = "http://proxy.test:3128"
	cases := []struct {
		target, noProxy string
		proxied         bool
	}{
		// Unlike net/http, loopback goes through the proxy unless listed.
		{"https://127.0.0.1:8443", "", true},
		{"https://localhost:8443", "", true},
		{"https://[::1]:8443", "", true},
		{"https://127.0.0.1:8443", "127.0.0.1", false},
		{"https://127.0.0.2:8443", "127.0.0.1", true},
		{"https://127.0.0.5:8443", "127.0.0.0/8", false},
		{"https://127.0.0.1:8443", "127.0.0.0/8", false},
		{"https://127.0.0.1:8443", "10.0.0.0/8", true},
		{"https://127.0.0.1:8443", "127.0.0.1:8443", false},
		{"https://127.0.0.1:8443", "127.0.0.1:9999", true},
		{"https://localhost:8443", "localhost", false},
		{"https://localhost:8443", ".localhost", true},
		{"https://localhost:8443", "localhost:8443", false},
		{"https://localhost:8443", "localhost:9999", true},
		{"https://[::1]:8443", "::1", false},
		{"https://[::1]:8443", "[::1]:8443", false},
		{"https://[::1]:8443", "::1/128", false},
		{"https://127.0.0.1:8443", "*", false},
		// Everything else is golang.org/x/net's NO_PROXY matching.
		{"https://10.1.2.3:8443", "10.0.0.0/8", false},
		{"https://11.0.0.1:8443", "10.0.0.0/8", true},
		{"https://[2001:db8::5]:8443", "2001:db8::/48", false},
		{"https://ws.example.com", "example.com", false},
		{"https://ws.example.com", ".example.com", false},
		{"https://example.com", ".example.com", true},
		{"https://example.com.evil", "example.com", true},
		{"https://ws.example.com", "other.com, ws.example.com", false},
		{"https://ws.example.com:443", "ws.example.com:443", false},
		{"https://ws.example.com:8443", "ws.example.com:443", true},
		{"https://anything.test", "*", false},
		{"https://ws.example.com", "", true},
		// --proxy-https is for HTTPS, as HTTPS_PROXY is.
		{"http://ws.example.com", "", false},
	}
	for _, tc := range cases {
		pf, err := ProxyFunc(proxy, tc.noProxy)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pf(u)
		if err != nil {
			t.Fatalf("%s with NO_PROXY %q: %v", tc.target, tc.noProxy, err)
		}
		if (got != nil) != tc.proxied || (got != nil && got.String() != proxy) {
			t.Errorf("%s with NO_PROXY %q: proxy %v, want proxied=%v", tc.target, tc.noProxy, got, tc.proxied)
		}
	}
	pf, err := ProxyFunc("", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pf(&url.URL{Scheme: "https", Host: "ws.example.com"}); got != nil || err != nil {
		t.Errorf("no proxy set: %v %v", got, err)
	}
}

func TestCheckNoProxy(t *testing.T) {
	for _, ok := range []string{"", "*", "10.0.0.0/8, example.com", ".svc,.cluster.local,127.0.0.1:8443", "[::1]:8443,::1/128"} {
		if err := CheckNoProxy("proxy skip range", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"http://proxy.local": "not a URL",
		"10.0.0.0/33":        "not a CIDR",
		"a.com b.com":        "separate entries with commas",
	} {
		if err := CheckNoProxy("proxy skip range", bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one saying %q", bad, err, want)
		}
	}
}

func TestCheckProxy(t *testing.T) {
	for _, ok := range []string{"http://proxy.test:3128", "https://proxy.test", "http://user:pw@proxy.test:3128"} {
		if err := CheckProxy("proxy", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://", "ftp://user:pw@proxy", "://"} {
		err := CheckProxy("OUTPOST_PROXY_HTTPS", bad)
		if err == nil || err.Error() != "OUTPOST_PROXY_HTTPS: want http://host:port or https://host:port" {
			t.Errorf("%q: error %v", bad, err)
		}
		if _, err := ProxyFunc(bad, ""); err == nil || !strings.Contains(err.Error(), "want http://host:port") || strings.Contains(err.Error(), "pw") {
			t.Errorf("ProxyFunc(%q): error %v", bad, err)
		}
	}
}

func TestTransportProxiesByTheRule(t *testing.T) {
	tr, err := Transport(nil, "http://proxy.test:3128", "10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{
		"https://127.0.0.1:8443/x": "http://proxy.test:3128",
		"https://10.1.2.3:8443/x":  "",
		"https://ws.example.com/x": "http://proxy.test:3128",
		"http://ws.example.com/x":  "",
	} {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tr.Proxy(&http.Request{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (want == "") || (got != nil && got.String() != want) {
			t.Errorf("%s: proxy %v, want %q", target, got, want)
		}
	}
	if tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS minimum version %x", tr.TLSClientConfig.MinVersion)
	}
}
