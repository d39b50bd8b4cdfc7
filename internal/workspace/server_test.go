package workspace

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/clustertest"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

// logs collects what the workspaces of a test log.
var logs clustertest.Log

// start runs a workspace on a free loopback port and returns an admin client.
func start(t *testing.T, dir string, heartbeat time.Duration) (*client.Client, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Options{Addr: "127.0.0.1:0", DataDir: dir, Heartbeat: heartbeat, Ready: ready,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("workspace did not start: %v", err)
	}
	tok, err := os.ReadFile(AdminTokenFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(CAFile(dir))
	c, err := client.New(client.Config{URL: "https://" + addr, Token: strings.TrimSpace(string(tok)), CA: string(ca)})
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	return c, stop
}

func as(c *client.Client, token string) *client.Client {
	cfg := c.Config()
	cfg.Token = token
	n, _ := client.New(cfg)
	return n
}

func statusOf(err error) int {
	if se, ok := err.(*client.StatusError); ok {
		return se.Code
	}
	return 0
}

func TestAuthAndAdminToken(t *testing.T) {
	dir := t.TempDir()
	c, stop := start(t, dir, time.Second)
	defer stop()
	fi, err := os.Stat(AdminTokenFile(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v, want mode 0600", fi, err)
	}
	ctx := context.Background()
	if err := as(c, "wrong").Do(ctx, "GET", "/connectedClusters", nil, nil); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v, want 401", err)
	}
	if err := as(c, "").Do(ctx, "GET", "/openapi.json", nil, nil); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("no token: %v, want 401", err)
	}
	var doc map[string]any
	if err := c.Do(ctx, "GET", "/openapi.json", nil, &doc); err != nil {
		t.Fatal(err)
	}
	paths, _ := doc["paths"].(map[string]any)
	if doc["openapi"] != "3.0.3" || paths["/resourceGroups/{rg}/connectedClusters/{cluster}/extensions/{name}"] == nil {
		t.Fatalf("openapi document lacks the extension path: %v", doc["paths"])
	}
	// The tokens are never written to the log.
	agent := register(t, c, "rg", "c1")
	report(t, agent, "rg", "c1", api.AgentReport{})
	if out := logs.String(); !strings.Contains(out, "workspace serving") || strings.Contains(out, c.Config().Token) || strings.Contains(out, agent.Config().Token) {
		t.Fatalf("log holds a token (or nothing at all):\n%s", out)
	}
}

// register connects a cluster and returns an agent client for it.
func register(t *testing.T, c *client.Client, rg, name string) *client.Client {
	t.Helper()
	var cc api.ConnectedCluster
	if err := c.Do(context.Background(), "PUT", "/resourceGroups/"+rg+"/connectedClusters/"+name, map[string]string{}, &cc); err != nil {
		t.Fatal(err)
	}
	if cc.AgentToken == "" || cc.ConnectivityStatus != api.Connecting {
		t.Fatalf("registration: %+v", cc)
	}
	return as(c, cc.AgentToken)
}

func report(t *testing.T, agent *client.Client, rg, name string, rep api.AgentReport) {
	t.Helper()
	if err := agent.Do(context.Background(), "POST", "/agent/v1/resourceGroups/"+rg+"/connectedClusters/"+name+"/report", rep, nil); err != nil {
		t.Fatal(err)
	}
}

func TestExtensionValidationStoresNothing(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	ctx := context.Background()
	register(t, c, "rg", "c1")
	cert, key := selfSigned(t)
	cases := []struct {
		name string
		req  api.ExtensionRequest
		want string
	}{
		{"neither training nor inference", req(map[string]string{"enableTraining": "False"}, nil), "enableTraining"},
		{"inference without TLS", req(map[string]string{"enableInference": "True"}, nil), "allowInsecureConnections"},
		{"key both plain and protected", req(map[string]string{"enableTraining": "True"}, map[string]string{"enableTraining": "True"}), "enableTraining"},
		{"NodePort with internal LB", req(map[string]string{"enableInference": "True", "allowInsecureConnections": "True",
			"inferenceRouterServiceType": "NodePort", "internalLoadBalancerProvider": "azure"}, nil), "NodePort"},
		{"unknown key", req(map[string]string{"enableTraining": "True", "enableTrainning": "True"}, nil), "enableTrainning"},
		{"bad value", req(map[string]string{"enableTraining": "yes"}, nil), "must be True or False"},
		{"namespace scope", func() api.ExtensionRequest {
			r := req(map[string]string{"enableTraining": "True"}, nil)
			r.Scope = "namespace"
			return r
		}(), "--scope namespace"},
		{"wrong type", func() api.ExtensionRequest {
			r := req(map[string]string{"enableTraining": "True"}, nil)
			r.ExtensionType = "Microsoft.Flux"
			return r
		}(), MLExtensionType},
		{"cert in plain config", req(map[string]string{"enableInference": "True", "sslCertPemFile": cert}, map[string]string{"sslKeyPemFile": key}), "--config-protected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", tc.req, nil)
			if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want 400 mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Fatalf("error echoes PEM data: %v", err)
			}
			var list []api.Extension
			if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/c1/extensions", nil, &list); err != nil || len(list) != 0 {
				t.Fatalf("something was stored: %v %v", list, err)
			}
		})
	}
}

func req(cfg, prot map[string]string) api.ExtensionRequest {
	return api.ExtensionRequest{ExtensionType: MLExtensionType, ClusterType: "connectedClusters", Scope: "cluster",
		ConfigurationSettings: cfg, ConfigurationProtectedSettings: prot}
}

func TestAgentProtocolAndPersistence(t *testing.T) {
	dir := t.TempDir()
	c, stop := start(t, dir, time.Second)
	ctx := context.Background()
	agent := register(t, c, "rg", "c1")
	other := register(t, c, "rg", "c2")
	cert, key := selfSigned(t)

	// A credential of another cluster is refused.
	if err := other.Do(ctx, "GET", "/agent/v1/resourceGroups/rg/connectedClusters/c1/sync", nil, nil); statusOf(err) != http.StatusForbidden {
		t.Fatalf("c2's token on c1: %v, want 403", err)
	}
	// The admin token is no agent token either.
	if err := c.Do(ctx, "GET", "/agent/v1/resourceGroups/rg/connectedClusters/c1/sync", nil, nil); statusOf(err) != http.StatusForbidden {
		t.Fatalf("admin token on the agent API: %v, want 403", err)
	}

	var e api.Extension
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/c1/extensions/ml",
		req(map[string]string{"enableInference": "True"}, map[string]string{"sslCertPemFile": cert, "sslKeyPemFile": key}), &e); err != nil {
		t.Fatal(err)
	}
	if e.InstallState != api.InstallPending || e.ConfigurationProtectedSettings["sslKeyPemFile"] != "<redacted>" {
		t.Fatalf("created extension: %+v", e)
	}

	d := syncSince(t, agent, "rg", "c1", 0)
	if len(d.Objects) != 1 || d.Objects[0].Extension == nil || d.Objects[0].Extension.Protected["sslKeyPemFile"] != key || d.Objects[0].Generation != 1 {
		t.Fatalf("desired state: %+v", d)
	}
	report(t, agent, "rg", "c1", api.AgentReport{Revision: d.Revision, Facts: api.ClusterFacts{KubernetesVersion: "v1.34.4", TotalNodeCount: 1, Distribution: "generic"},
		Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled, Message: "1/1 components ready"}}})
	var cc api.ConnectedCluster
	if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/c1", nil, &cc); err != nil || cc.ConnectivityStatus != api.Connected || cc.Facts.KubernetesVersion != "v1.34.4" {
		t.Fatalf("after a report: %+v %v", cc, err)
	}
	if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", nil, &e); err != nil || e.InstallState != api.InstallInstalled {
		t.Fatalf("extension after the agent reported Installed: %+v %v", e, err)
	}
	// No protected value in any answer a user sees.
	var all []api.Extension
	_ = c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/c1/extensions", nil, &all)
	if strings.Contains(strings.Join([]string{all[0].ConfigurationProtectedSettings["sslKeyPemFile"], all[0].Message}, ""), "BEGIN") {
		t.Fatal("protected setting shown")
	}

	// Attach: the namespace must exist; default does.
	var comp api.Compute
	attach := api.ComputeRequest{Type: "Kubernetes", ResourceID: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1"}
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws/computes/k8s", attach, &comp); err != nil || comp.ProvisioningState != api.StateCreating || comp.Namespace != "default" || comp.Identity.PrincipalID == "" {
		t.Fatalf("attach: %+v %v", comp, err)
	}
	// A user-assigned identity has its own principal and client ids, the
	// same on every compute that uses it.
	ua := attach
	ua.IdentityType, ua.UserAssignedIdentities = "UserAssigned", []string{"/subscriptions/x/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"}
	var ua1, ua2 api.Compute
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws/computes/k8s-ua1", ua, &ua1); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws/computes/k8s-ua2", ua, &ua2); err != nil {
		t.Fatal(err)
	}
	if d := ua1.Identity.UserAssignedIdentityDetails; len(d) != 1 || d[0].ResourceID != ua.UserAssignedIdentities[0] || d[0].PrincipalID == "" ||
		d[0].ClientID == "" || d[0].PrincipalID == d[0].ClientID || ua1.Identity.PrincipalID != "" ||
		!reflect.DeepEqual(d, ua2.Identity.UserAssignedIdentityDetails) {
		t.Fatalf("user-assigned identity: %+v and %+v", ua1.Identity, ua2.Identity)
	}
	for _, n := range []string{"k8s-ua1", "k8s-ua2"} {
		if err := c.Do(ctx, "DELETE", "/resourceGroups/rg/workspaces/ws/computes/"+n, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	attach.Namespace = "team-a"
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws/computes/k8s-team", attach, &comp); err != nil {
		t.Fatal(err)
	}
	// The agent has both computes and reports facts that fresh.
	d = syncSince(t, agent, "rg", "c1", d.Revision)
	report(t, agent, "rg", "c1", api.AgentReport{Revision: d.Revision, Facts: api.ClusterFacts{KubernetesVersion: "v1.34.4", TotalNodeCount: 1, Distribution: "generic"}})
	waitCompute(t, c, "rg", "ws", "k8s", api.StateSucceeded, "")
	waitCompute(t, c, "rg", "ws", "k8s-team", api.StateFailed, `namespace "team-a" does not exist`)
	// Cluster c2 has no extension.
	attach = api.ComputeRequest{Type: "Kubernetes", ResourceID: "/resourceGroups/rg/connectedClusters/c2"}
	report(t, other, "rg", "c2", api.AgentReport{Namespaces: []string{"default"}})
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws/computes/k8s-2", attach, &comp); err != nil {
		t.Fatal(err)
	}
	waitCompute(t, c, "rg", "ws", "k8s-2", api.StateFailed, "has no ML extension")

	// Offline after two missed heartbeats (of 1 s, plus half a heartbeat of slack).
	silent := time.Now()
	for {
		if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/c1", nil, &cc); err != nil {
			t.Fatal(err)
		}
		if cc.ConnectivityStatus == api.Offline {
			break
		}
		if time.Since(silent) > 10*time.Second {
			t.Fatalf("still %s 10 s after the last report, want Offline after two missed heartbeats", cc.ConnectivityStatus)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Everything acknowledged survives a restart.
	stop()
	c, stop = start(t, dir, time.Second)
	defer stop()
	if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", nil, &e); err != nil || e.InstallState != api.InstallInstalled {
		t.Fatalf("extension after restart: %+v %v", e, err)
	}
	if err := c.Do(ctx, "GET", "/resourceGroups/rg/workspaces/ws/computes/k8s", nil, &comp); err != nil || comp.ProvisioningState != api.StateSucceeded {
		t.Fatalf("compute after restart: %+v %v", comp, err)
	}
}

// selfSigned makes a certificate and key PEM for inference settings.
func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scoring.local"}, DNSNames: []string{"scoring.local"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}
