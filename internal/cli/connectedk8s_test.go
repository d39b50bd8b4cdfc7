package cli

import (
	"strings"
	"testing"
)

// A cluster's agent names its workspace by the URL connect was given; the
// same workspace written another way must still count as the same, or a
// second connect to it would pass as "another workspace".
func TestSameWorkspace(t *testing.T) {
	cases := []struct {
		a, b string
		same bool
	}{
		{"https://127.0.0.1:8443", "https://127.0.0.1:8443", true},
		{"https://127.0.0.1:8443/", "https://127.0.0.1:8443", true},
		{"HTTPS://WS.example.com:8443", "https://ws.example.com:8443", true},
		{"https://127.0.0.1:8443", "https://127.0.0.1:8444", false},
		{"https://ws.example.com", "https://ws2.example.com", false},
		{"https://ws.example.com/a", "https://ws.example.com/b", false},
	}
	for _, tc := range cases {
		if got := sameWorkspace(tc.a, tc.b); got != tc.same {
			t.Errorf("sameWorkspace(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

// The workspace shows a cluster's proxy to every user: the password of an
// authenticated proxy goes to the agent only.
func TestProxyWithoutCredentials(t *testing.T) {
	cases := map[string]string{
		"":                               "",
		"http://proxy:3128":              "http://proxy:3128",
		"http://user:secret@proxy:3128":  "http://proxy:3128",
		"https://user@proxy.example:443": "https://proxy.example:443",
	}
	for in, want := range cases {
		if got := proxyWithoutCredentials(in); got != want {
			t.Errorf("proxyWithoutCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

// A bad --image is refused before anything is registered: there is no
// workspace here, so reaching it would fail differently.
func TestConnectRefusesABadImage(t *testing.T) {
	noWorkspace(t)
	_, _, err := run(t, "connectedk8s", "connect", "--name", "c", "--resource-group", "rg", "--image", "Not An/Image::ref")
	if err == nil || !strings.Contains(err.Error(), `--image "Not An/Image::ref"`) {
		t.Fatalf("connect --image with a bad reference: %v; want an error naming --image", err)
	}
}
