package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// The agent's calls to its own apiserver never take the proxy, even with
// HTTPS_PROXY in its environment: client-go falls back to the environment
// whenever the rest.Config has no Proxy of its own.
func TestKubeRestConfigIgnoresProxyEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy.test:3128")
	t.Setenv("https_proxy", "http://proxy.test:3128")
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://apiserver.test:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := kubeRestConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Proxy == nil {
		t.Fatal("the agent's rest.Config has no Proxy: client-go would take HTTPS_PROXY from the environment")
	}
	if u, err := rc.Proxy(&http.Request{URL: &url.URL{Scheme: "https", Host: "apiserver.test:6443"}}); u != nil || err != nil {
		t.Fatalf("the agent's rest.Config proxies its apiserver: %v %v", u, err)
	}
	// And client-go uses it: record where it dials instead of dialing
	// (net/http reads the environment once per process, so this part alone
	// could pass by luck).
	var mu sync.Mutex
	var dialed []string
	rc.Dial = func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return nil, errors.New("test: no dialing")
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.Discovery().ServerVersion(); err == nil {
		t.Fatal("the request succeeded without a server")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) == 0 {
		t.Fatal("client-go dialed nothing")
	}
	for _, addr := range dialed {
		if addr != "apiserver.test:6443" {
			t.Fatalf("client-go dialed %s, want the apiserver apiserver.test:6443 directly (HTTPS_PROXY=%s)", addr, os.Getenv("HTTPS_PROXY"))
		}
	}
}

func TestInstallKeepsProxyToTheAgent(t *testing.T) {
	kube := fake.NewClientset()
	cfg := Config{WorkspaceURL: "https://ws.test:8443", ResourceGroup: "rg", Cluster: "c1", Token: "tok",
		Proxy: "http://proxy.test:3128", NoProxy: "10.0.0.0/8", Image: "outpost:test"}
	if err := Install(context.Background(), kube, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := kube.CoreV1().Secrets(Namespace).Get(context.Background(), agentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The Secret becomes the pod's environment: a proxy variable that
	// libraries honour would send the pod's apiserver calls through it.
	for k := range s.StringData {
		if up := strings.ToUpper(k); strings.HasSuffix(up, "_PROXY") && !strings.HasPrefix(up, "OUTPOST_") {
			t.Errorf("agent secret sets %s, which every library in the pod honours", k)
		}
	}
	if s.StringData[EnvProxy] != cfg.Proxy || s.StringData[EnvNoProxy] != cfg.NoProxy {
		t.Errorf("agent secret: %v, want the proxy settings under %s and %s", s.StringData, EnvProxy, EnvNoProxy)
	}
	for k, v := range s.StringData {
		t.Setenv(k, v)
	}
	if got := ConfigFromEnv(); got.Proxy != cfg.Proxy || got.NoProxy != cfg.NoProxy || got.Cluster != "c1" {
		t.Errorf("the agent reads %+v back", got)
	}

}

func TestInstalledReadsTheRegistration(t *testing.T) {
	kube := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: agentName, Namespace: Namespace},
		Data: map[string][]byte{EnvWorkspaceURL: []byte("https://ws.test:8443"), EnvResourceGroup: []byte("rg"), EnvCluster: []byte("c1")}})
	reg, err := Installed(context.Background(), kube)
	if err != nil || reg == nil || *reg != (Registration{WorkspaceURL: "https://ws.test:8443", ResourceGroup: "rg", Cluster: "c1"}) {
		t.Fatalf("Installed: %+v %v", reg, err)
	}
	if reg, err := Installed(context.Background(), fake.NewClientset()); reg != nil || err != nil {
		t.Fatalf("no agent: %+v %v", reg, err)
	}
}
