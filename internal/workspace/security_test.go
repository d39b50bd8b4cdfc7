package workspace

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/store"
)

// startWith runs a workspace with opts (address, logger and Ready filled in)
// and returns an admin client.
func startWith(t *testing.T, opts Options) (*client.Client, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	opts.Addr, opts.Ready = "127.0.0.1:0", ready
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	go func() { done <- Serve(ctx, opts) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("workspace did not start: %v", err)
	}
	tok, err := os.ReadFile(AdminTokenFile(opts.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(CAFile(opts.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: "https://" + addr, Token: strings.TrimSpace(string(tok)), CA: string(ca)})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// serveErr runs Serve on dir and returns the error it stops with; it fails
// the test if the workspace starts.
func serveErr(t *testing.T, opts Options) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	opts.Addr, opts.Ready = "127.0.0.1:0", ready
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	go func() { done <- Serve(ctx, opts) }()
	select {
	case addr := <-ready:
		cancel()
		<-done
		t.Fatalf("the workspace started (on %s); want a refusal", addr)
		return nil
	case err := <-done:
		if err == nil {
			t.Fatal("Serve returned without an error")
		}
		return err
	}
}

// raw sends one request with the given Authorization header (none when
// empty) and body, and returns the status and the answer's text.
func raw(t *testing.T, c *client.Client, method, path, auth, body string) (int, string) {
	t.Helper()
	status, data := send(t, c, method, path, auth, []byte(body))
	var e api.Error
	if status/100 != 2 && json.Unmarshal(data, &e) == nil && e.Message != "" {
		return status, e.Code + ": " + e.Message
	}
	return status, string(data)
}

// send sends one request with the given Authorization header (none when
// empty) and body (none when empty), and returns the status and the
// answer.
func send(t *testing.T, c *client.Client, method, path, auth string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.Config().URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := httpClient(c).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func httpClient(c *client.Client) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(c.Config().CA))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(pool)}}
}

func TestRefusesToStartWithoutAStrongAdminToken(t *testing.T) {
	for _, tc := range []struct {
		name, token, want string
	}{
		{"empty", "", "is empty"},
		{"only a newline", "\n", "is empty"},
		{"short", "0123456789\n", "has 10 characters, fewer than 32"},
		{"with spaces", "0123456789 0123456789 0123456789 0123456789\n", "holds spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(AdminTokenFile(dir), []byte(tc.token), 0o600); err != nil {
				t.Fatal(err)
			}
			err := serveErr(t, Options{DataDir: dir})
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), AdminTokenFile(dir)) || !strings.Contains(err.Error(), "delete the file") {
				t.Fatalf("error %q, want it to name the file, say %q and how to fix it", err, tc.want)
			}
			if strings.TrimSpace(tc.token) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.token)) {
				t.Fatalf("the error shows the token: %q", err)
			}
		})
	}
	// A good token written by the user is used as it is.
	dir := t.TempDir()
	tok := strings.Repeat("x", 40)
	if err := os.WriteFile(AdminTokenFile(dir), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := startWith(t, Options{DataDir: dir})
	if code, body := raw(t, c, "GET", "/connectedClusters", "Bearer "+tok, ""); code != http.StatusOK {
		t.Fatalf("the user's token: %d %s", code, body)
	}
}

func TestAuthorizationMustBeBearer(t *testing.T) {
	c, _ := startWith(t, Options{DataDir: t.TempDir()})
	admin := c.Config().Token
	agent := register(t, c, "rg", "c1")
	agentTok := agent.Config().Token
	reportPath := "/agent/v1/resourceGroups/rg/connectedClusters/c1/report"
	for _, tc := range []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{"admin: raw token", "GET", "/connectedClusters", admin, "", http.StatusUnauthorized},
		{"admin: Basic scheme", "GET", "/connectedClusters", "Basic " + admin, "", http.StatusUnauthorized},
		{"admin: scheme glued to the token", "GET", "/connectedClusters", "Bearer" + admin, "", http.StatusUnauthorized},
		{"admin: empty bearer", "GET", "/connectedClusters", "Bearer ", "", http.StatusUnauthorized},
		{"admin: no header", "GET", "/connectedClusters", "", "", http.StatusUnauthorized},
		{"admin: Bearer", "GET", "/connectedClusters", "Bearer " + admin, "", http.StatusOK},
		{"admin: scheme in lower case", "GET", "/connectedClusters", "bearer " + admin, "", http.StatusOK},
		{"agent: raw token", "POST", reportPath, agentTok, "{}", http.StatusUnauthorized},
		{"agent: no header", "POST", reportPath, "", "{}", http.StatusUnauthorized},
		{"agent: the admin token", "POST", reportPath, "Bearer " + admin, "{}", http.StatusForbidden},
		{"agent: Bearer", "POST", reportPath, "Bearer " + agentTok, "{}", http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := raw(t, c, tc.method, tc.path, tc.auth, tc.body)
			if code != tc.want && !(tc.want == http.StatusNoContent && code/100 == 2) {
				t.Fatalf("%d %s, want %d", code, body, tc.want)
			}
		})
	}
}

func TestDataDirectoryIsOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	c, stop := startWith(t, Options{DataDir: dir})
	register(t, c, "rg", "c1")
	stop()
	// What an older version (or a careless copy) leaves: everything
	// readable by everyone.
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	c, _ = startWith(t, Options{DataDir: dir})
	register(t, c, "rg", "c2") // the database is open and written: -wal and -shm exist
	check := func(p string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	check(dir, 0o700)
	check(filepath.Join(dir, "tls"), 0o700)
	for _, f := range []string{"workspace.db", "workspace.db-wal", "workspace.db-shm", "admin-token", "secrets.key", "tls/ca.key", "tls/server.key"} {
		check(filepath.Join(dir, f), 0o600)
	}
}

func TestProtectedSettingsEncryptedAtRest(t *testing.T) {
	dir := t.TempDir()
	c, stop := startWith(t, Options{DataDir: dir})
	ctx := context.Background()
	agent := register(t, c, "rg", "c1")
	cert, key := selfSigned(t)
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", req(
		map[string]string{"enableInference": "True"},
		map[string]string{"sslCertPemFile": cert, "sslKeyPemFile": key}), nil); err != nil {
		t.Fatal(err)
	}
	// The agent, the only reader of protected settings, gets them back.
	if got := syncedProtected(t, agent); got["sslKeyPemFile"] != key || got["sslCertPemFile"] != cert {
		t.Fatalf("the agent got protected settings %v, want the ones given", got)
	}
	// An update merges into the stored protected settings: they are read
	// back, or the merged settings would lack the TLS pair and be refused.
	if err := c.Do(ctx, "PATCH", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", req(
		map[string]string{"inferenceRouterServiceType": "NodePort"}, nil), nil); err != nil {
		t.Fatalf("update after a read of the sealed settings: %v", err)
	}
	stop()
	keyLine := strings.Split(key, "\n")[1] // base64 of the private key
	for _, f := range []string{"workspace.db", "workspace.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(keyLine)) || bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Fatalf("%s holds the private key in plain", f)
		}
	}

	// Restarted with the same key, everything reads back.
	c, stop = startWith(t, Options{DataDir: dir})
	if got := syncedProtected(t, as(c, agent.Config().Token)); got["sslKeyPemFile"] != key {
		t.Fatalf("after a restart the agent got %v", got)
	}
	stop()

	// Another key: refused at start, saying which file and what to do.
	keyFile := filepath.Join(dir, "secrets.key")
	good, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := serveErr(t, Options{DataDir: dir, SecretsKeyFile: other}); !strings.Contains(err.Error(), "is not the key the protected settings in the database were sealed with") ||
		!strings.Contains(err.Error(), other) {
		t.Fatalf("wrong key: %v", err)
	}
	// No key: refused, and no new key is left behind to be mistaken for it.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := serveErr(t, Options{DataDir: dir}); !strings.Contains(err.Error(), "was missing") || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("a failed start left a key file: %v", err)
	}
	// A key file that is not a key.
	if err := os.WriteFile(keyFile, []byte("secret words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := serveErr(t, Options{DataDir: dir}); !strings.Contains(err.Error(), "want 64 hex digits") || strings.Contains(err.Error(), "secret words") {
		t.Fatalf("malformed key: %v", err)
	}
	// The key kept elsewhere (--secrets-key-file) works as well.
	elsewhere := filepath.Join(t.TempDir(), "kept-apart.key")
	if err := os.WriteFile(elsewhere, good, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ = startWith(t, Options{DataDir: dir, SecretsKeyFile: elsewhere})
	if got := syncedProtected(t, as(c, agent.Config().Token)); got["sslKeyPemFile"] != key {
		t.Fatalf("with the key kept apart the agent got %v", got)
	}
}

// A database of an older version holds protected data in plain: the
// workspace seals it at start, and it keeps working.
func TestPlainProtectedDataOfOlderVersionsIsSealed(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	// As the store's migrations do for the rows of older versions.
	st.SetTargets(syncTarget)
	ctx := context.Background()
	agentTok := newToken()
	creds, err := json.Marshal(clusterSecrets{TokenSHA256: hashToken(agentTok)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, clusterKey("rg", "c1"), json.RawMessage(`{}`), creds); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t)
	spec, err := json.Marshal(extensionSpec{ExtensionType: MLExtensionType, ClusterType: "connectedClusters", Scope: "cluster",
		Settings: map[string]string{"enableInference": "True"}, ProtectedKeys: []string{"sslCertPemFile", "sslKeyPemFile"}})
	if err != nil {
		t.Fatal(err)
	}
	prot, err := json.Marshal(map[string]string{"sslCertPemFile": cert, "sslKeyPemFile": key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, extensionKey("rg", "c1", "ml"), spec, prot); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	c, stop := startWith(t, Options{DataDir: dir})
	agent := as(c, agentTok)
	// The agent's credentials (protected data) are read: it is admitted.
	report(t, agent, "rg", "c1", api.AgentReport{})
	if got := syncedProtected(t, agent); got["sslKeyPemFile"] != key {
		t.Fatalf("the agent got %v, want the protected settings stored in plain before", got)
	}
	stop()
	keyLine := strings.Split(key, "\n")[1]
	for _, f := range []string{"workspace.db", "workspace.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(keyLine)) || bytes.Contains(data, []byte(hashToken(agentTok))) {
			t.Fatalf("%s still holds protected data in plain", f)
		}
	}
}

// syncedProtected returns the protected settings of the extension ml of
// rg/c1 as the agent gets them.
func syncedProtected(t *testing.T, agent *client.Client) map[string]string {
	t.Helper()
	var resp api.SyncResponse
	if err := agent.Do(context.Background(), "GET", "/agent/v1/resourceGroups/rg/connectedClusters/c1/sync?since=0", nil, &resp); err != nil {
		t.Fatal(err)
	}
	for _, o := range resp.Objects {
		if o.Extension != nil && o.Extension.Name == "ml" {
			return o.Extension.Protected
		}
	}
	t.Fatalf("no extension ml in %+v", resp)
	return nil
}

func TestInputIsCheckedBeforeItIsStored(t *testing.T) {
	c, _ := startWith(t, Options{DataDir: t.TempDir()})
	admin := "Bearer " + c.Config().Token
	register(t, c, "rg", "c1")
	long := strings.Repeat("a", 1000)
	compute := func(resourceID string) string {
		return `{"type":"Kubernetes","resourceId":` + quoteJSON(resourceID) + `}`
	}
	for _, tc := range []struct {
		name, method, path, body, want string
	}{
		{"resource group with escaped slashes", "PUT", "/resourceGroups/..%2F..%2Fetc/workspaces/w/computes/k", compute("/resourceGroups/rg/connectedClusters/c1"), "resource group"},
		{"resource group with a newline", "PUT", "/resourceGroups/r%0Ag/workspaces/w/computes/k", compute("/resourceGroups/rg/connectedClusters/c1"), "resource group"},
		{"resource group of 1,000 characters", "PUT", "/resourceGroups/" + long + "/workspaces/w/computes/k", compute("/resourceGroups/rg/connectedClusters/c1"), "1000 characters"},
		{"workspace with NUL", "PUT", "/resourceGroups/rg/workspaces/w%00/computes/k", compute("/resourceGroups/rg/connectedClusters/c1"), "workspace name"},
		{"compute name ending in a dot", "PUT", "/resourceGroups/rg/workspaces/w/computes/k.", compute("/resourceGroups/rg/connectedClusters/c1"), "compute name"},
		{"cluster name ending in a dot", "PUT", "/resourceGroups/rg/connectedClusters/c2.", `{}`, "cluster name"},
		{"cluster name with two dots", "PUT", "/resourceGroups/rg/connectedClusters/a..b", `{}`, "cluster name"},
		{"extension name with a space", "PUT", "/resourceGroups/rg/connectedClusters/c1/extensions/m%20l", `{}`, "extension name"},
		{"name in a read", "GET", "/resourceGroups/rg/connectedClusters/c1%0A", "", "cluster name"},
		{"name in an agent's path", "POST", "/agent/v1/resourceGroups/rg/connectedClusters/..%2Fc1/report", `{}`, "cluster name"},
		{"resource id with ..", "PUT", "/resourceGroups/rg/workspaces/w/computes/k", compute("/resourceGroups/../connectedClusters/c1"), "resource-id"},
		{"resource id with NUL", "PUT", "/resourceGroups/rg/workspaces/w/computes/k", compute("/resourceGroups/rg/connectedClusters/c1\x00"), "resource-id"},
		{"resource id ending in a dot", "PUT", "/resourceGroups/rg/workspaces/w/computes/k", compute("/resourceGroups/rg/connectedClusters/c1."), "resource-id"},
		{"proxy with another scheme", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{"proxy":"ftp://proxy:21"}`, "want http://host:port"},
		{"proxy that is not a URL", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{"proxy":"proxy:3128"}`, "want http://host:port"},
		{"proxy with a password", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{"proxy":"http://u:hunter2@proxy:3128"}`, "credentials"},
		{"proxy with a path", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{"proxy":"http://proxy:3128/x"}`, "without a path"},
		{"JSON with trailing data", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{} {"proxy":"http://p:1"}`, "after top-level value"},
		{"field name in another case", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{"Proxy":"http://p:1"}`, `unknown field "Proxy"`},
		{"field given twice", "PUT", "/resourceGroups/rg/connectedClusters/c2", `{"proxy":"http://p:1","proxy":"http://q:1"}`, "duplicate field"},
		{"field in another case in a compute", "PUT", "/resourceGroups/rg/workspaces/w/computes/k", `{"type":"Kubernetes","ResourceID":"/resourceGroups/rg/connectedClusters/c1"}`, `unknown field "ResourceID"`},
		{"empty body", "PUT", "/resourceGroups/rg/connectedClusters/c2", ``, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := raw(t, c, tc.method, tc.path, admin, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want 400 mentioning %q", code, body, tc.want)
			}
			if strings.Contains(body, "hunter2") {
				t.Fatalf("the answer shows the proxy's password: %s", body)
			}
			var clusters []api.ConnectedCluster
			if err := c.Do(context.Background(), "GET", "/connectedClusters", nil, &clusters); err != nil || len(clusters) != 1 {
				t.Fatalf("clusters after a refused request: %v %v", clusters, err)
			}
			var computes []api.Compute
			if err := c.Do(context.Background(), "GET", "/resourceGroups/rg/workspaces/w/computes", nil, &computes); err != nil || len(computes) != 0 {
				t.Fatalf("computes after a refused request: %v %v", computes, err)
			}
		})
	}
	// The same requests, well formed, pass.
	if code, body := raw(t, c, "PUT", "/resourceGroups/rg/connectedClusters/c2", admin, `{"proxy":"http://proxy:3128"}`); code != http.StatusCreated {
		t.Fatalf("a good registration: %d %s", code, body)
	}
	if code, body := raw(t, c, "PUT", "/resourceGroups/my.rg(1)/workspaces/w/computes/k", admin,
		compute("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1")); code != http.StatusCreated {
		t.Fatalf("a good attach: %d %s", code, body)
	}
}

func quoteJSON(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always encodes
	}
	return string(b)
}

// A client that announces a body and sends nothing is cut off: at once
// without a token (its body is never read), after BodyTimeout with one.
func TestSilentRequestBodyIsCutOff(t *testing.T) {
	const bodyTimeout = time.Second
	c, _ := startWith(t, Options{DataDir: t.TempDir(), BodyTimeout: bodyTimeout})
	for _, tc := range []struct {
		name, auth string
		status     int
		within     time.Duration
	}{
		{"no token", "", http.StatusUnauthorized, bodyTimeout / 2},
		{"a raw token", c.Config().Token, http.StatusUnauthorized, bodyTimeout / 2},
		{"the admin token", "Bearer " + c.Config().Token, http.StatusRequestTimeout, bodyTimeout + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := strings.TrimPrefix(c.Config().URL, "https://")
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(c.Config().CA))
			conn, err := tls.Dial("tcp", u, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			head := "PUT /resourceGroups/rg/connectedClusters/slow HTTP/1.1\r\nHost: " + u + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
			if tc.auth != "" {
				head += "Authorization: " + tc.auth + "\r\n"
			}
			began := time.Now()
			if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
				t.Fatal(err)
			}
			// The test's own limit, well beyond what the server may take.
			if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			// The connection is closed: a read ends at once, not at the
			// test's deadline.
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatal("the connection is still open")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server held the connection: %v", err)
			}
			if took := time.Since(began); took > tc.within {
				t.Fatalf("cut off after %s, want within %s", took, tc.within)
			}
		})
	}
	var clusters []api.ConnectedCluster
	if err := c.Do(context.Background(), "GET", "/connectedClusters", nil, &clusters); err != nil || len(clusters) != 0 {
		t.Fatalf("clusters after cut-off requests: %v %v", clusters, err)
	}
}

// The body deadline does not reach requests without a body: an agent's long
// poll outlives it and still gets the change it waits for.
func TestLongPollOutlivesTheBodyDeadline(t *testing.T) {
	const bodyTimeout = 200 * time.Millisecond
	c, _ := startWith(t, Options{DataDir: t.TempDir(), BodyTimeout: bodyTimeout})
	agent := register(t, c, "rg", "c1")
	var first api.SyncResponse
	if err := agent.Do(context.Background(), "GET", "/agent/v1/resourceGroups/rg/connectedClusters/c1/sync?since=0", nil, &first); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var next api.SyncResponse
	go func() {
		got <- agent.Do(context.Background(), "GET", fmt.Sprintf("/agent/v1/resourceGroups/rg/connectedClusters/c1/sync?since=%d", first.Revision), nil, &next)
	}()
	// Change the cluster's desired state only after the deadline a body
	// would have had, several times over.
	select {
	case err := <-got:
		t.Fatalf("the long poll answered before any change: %v %+v", err, next)
	case <-time.After(5 * bodyTimeout):
	}
	if err := c.Do(context.Background(), "PUT", "/resourceGroups/rg/connectedClusters/c1/extensions/ml",
		req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil || len(next.Objects) == 0 {
			t.Fatalf("long poll: %v %+v, want the new extension", err, next)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll did not answer the change")
	}
}
