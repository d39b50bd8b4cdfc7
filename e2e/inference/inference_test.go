// Package inference drives online endpoints with the outpost binary and curl
// as a data scientist would: the example's model is registered, an endpoint
// and its blue and green deployments are created from the Azure ML files on
// a compute attached to the local cluster, and the scoring URI answers over
// HTTPS through the extension's router, with keys, tokens, traffic splits,
// limits and the failures a user meets.
package inference

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/endpointauth"
	"outpost.dev/outpost/internal/pki"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

const (
	rg      = "rg"
	ws      = "ws"
	compute = "local-compute"
)

// fixture is a workspace with the local cluster connected, the ML extension
// installed with inference over HTTPS (the router on a node port, so that
// its address, 127.0.0.1, is known before its certificate is made), the
// cluster attached as
// local-compute, and a copy of examples/endpoints with its model trained.
type fixture struct {
	*clustertest.Workspace
	dir    string // the example's copy
	caFile string // the CA of the router's certificate, for curl
}

func setup(t *testing.T) *fixture {
	w := clustertest.StartWorkspace(t, time.Second)
	_, file, _, _ := runtime.Caller(0)
	f := &fixture{Workspace: w, dir: t.TempDir()}
	example := filepath.Join(filepath.Dir(file), "..", "..", "examples", "endpoints")
	if out, err := exec.Command("cp", "-r", example+"/.", f.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the example: %v\n%s", err, out)
	}
	// Debian's python3, the one pods run (scripts/deps.sh installs
	// scikit-learn for it), whatever python3 comes first in PATH here.
	if out, err := exec.Command("/usr/bin/python3", filepath.Join(f.dir, "train.py")).CombinedOutput(); err != nil {
		t.Fatalf("train the example's model: %v\n%s", err, out)
	}

	certs := t.TempDir()
	ca, err := pki.NewCA("scoring-ca")
	if err != nil {
		t.Fatal(err)
	}
	f.caFile = filepath.Join(certs, "ca.pem")
	if err := ca.WriteFiles(f.caFile, filepath.Join(certs, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem")
	if err := ca.Issue(pki.Request{CommonName: "scoring.local", DNSNames: []string{"scoring.local"},
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}, cert, key); err != nil {
		t.Fatal(err)
	}

	w.Must("connectedk8s", "connect", "--name", "c1", "--resource-group", rg)
	t.Cleanup(func() {
		w.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", rg, "--yes")
	})
	w.Must("k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", rg, "--scope", "cluster",
		"--config", "enableInference=True", "inferenceRouterServiceType=NodePort",
		"--config-protected", "sslCertPemFile="+cert, "sslKeyPemFile="+key)
	w.Must("ml", "compute", "attach", "-g", rg, "-w", ws, "--name", compute, "--type", "Kubernetes",
		"--resource-id", "/resourceGroups/"+rg+"/connectedClusters/c1")
	return f
}

// ml runs `outpost ml ...` in the workspace rg/ws.
func (f *fixture) ml(args ...string) (string, string, int) {
	f.T.Helper()
	return f.Outpost(append(append([]string{"ml"}, args...), "-g", rg, "-w", ws)...)
}

func (f *fixture) mustML(args ...string) string {
	f.T.Helper()
	out, errOut, code := f.ml(args...)
	if code != 0 {
		f.T.Fatalf("outpost ml %s: exit %d\n%s\n%s\n--- workspace log (end) ---\n%s", strings.Join(args, " "), code, out, errOut, tail(f.Log(), 40))
	}
	return out
}

// refused runs a command that must fail and returns its stderr.
func (f *fixture) refused(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := f.ml(args...)
	if code == 0 {
		t.Fatalf("outpost ml %s succeeded, want an error:\n%s", strings.Join(args, " "), out)
	}
	return errOut
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func (f *fixture) endpoint(t *testing.T, name string) api.OnlineEndpoint {
	t.Helper()
	var e api.OnlineEndpoint
	if err := json.Unmarshal([]byte(f.mustML("online-endpoint", "show", "-n", name, "-o", "json")), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) deployment(t *testing.T, endpoint, name string) api.OnlineDeployment {
	t.Helper()
	var d api.OnlineDeployment
	if err := json.Unmarshal([]byte(f.mustML("online-deployment", "show", "-n", name, "-e", endpoint, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) primaryKey(t *testing.T, endpoint string) string {
	t.Helper()
	return strings.TrimSpace(f.mustML("online-endpoint", "get-credentials", "-n", endpoint, "--query", "primaryKey", "-o", "tsv"))
}

// answer is what curl got.
type answer struct {
	code       int
	body       string
	deployment string // the azureml-model-deployment response header
}

// curl sends body to uri (GETs it when body is empty) with the headers, through the router's HTTPS with
// its CA, as a user's client would.
func (f *fixture) curl(t *testing.T, uri, body string, headers ...string) answer {
	t.Helper()
	args := []string{"-sS", "--cacert", f.caFile, "-o", "-", "-D", "/dev/stderr", "-w", "\n%{http_code}"}
	if body != "" { // a POST of the body; a GET without one
		args = append(args, "-H", "Content-Type: application/json", "--data-binary", "@-")
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	cmd := exec.Command("curl", append(args, uri)...)
	cmd.Stdin = strings.NewReader(body)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %s: %v\n%s", uri, err, stderr.String())
	}
	out := stdout.String()
	i := strings.LastIndexByte(out, '\n')
	code, err := strconv.Atoi(out[i+1:])
	if err != nil {
		t.Fatalf("curl: no status in %q", out)
	}
	a := answer{code: code, body: out[:i]}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "azureml-model-deployment") {
			a.deployment = strings.TrimSpace(v)
		}
	}
	return a
}

func (f *fixture) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const sample = `{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}`

func TestEndpoints(t *testing.T) {
	f := setup(t)
	const ep = "diabetes-endpoint"
	ex := func(name string) string { return filepath.Join(f.dir, name) }

	start := time.Now()
	f.mustML("online-endpoint", "create", "-f", ex("endpoint.yml"))
	e := f.endpoint(t, ep)
	if e.ProvisioningState != api.StateSucceeded || !strings.HasPrefix(e.ScoringURI, "https://127.0.0.1:") ||
		!strings.HasSuffix(e.ScoringURI, "/api/v1/endpoint/"+ep+"/score") || e.AuthMode != api.AuthModeKey {
		t.Fatalf("endpoint after create: %+v", e)
	}
	f.mustML("online-deployment", "create", "-f", ex("blue-deployment.yml"), "--all-traffic")
	t.Logf("endpoint and blue deployment Succeeded in %s", time.Since(start).Round(time.Millisecond))
	uri := e.ScoringURI
	key := f.primaryKey(t, ep)

	t.Run("example answers through invoke and curl", func(t *testing.T) {
		if got := f.endpoint(t, ep).Traffic; got["blue"] != 100 {
			t.Fatalf("traffic after --all-traffic: %v", got)
		}
		var preds []float64
		out := f.mustML("online-endpoint", "invoke", "-n", ep, "--request-file", ex("sample-request.json"))
		if err := json.Unmarshal([]byte(out), &preds); err != nil || len(preds) != 2 {
			t.Fatalf("invoke: %q (%v), want two predictions", out, err)
		}
		a := f.curl(t, uri, sample, "Authorization: Bearer "+key)
		if a.code != 200 || a.deployment != "blue" {
			t.Fatalf("curl with the key: %d from %q: %s", a.code, a.deployment, a.body)
		}
		var viaCurl []float64
		if err := json.Unmarshal([]byte(a.body), &viaCurl); err != nil || len(viaCurl) != 2 || viaCurl[0] != preds[0] {
			t.Fatalf("curl's answer %q differs from invoke's %v", a.body, preds)
		}
		swagger := f.curl(t, strings.TrimSuffix(uri, "/score")+"/swagger.json", "", "Authorization: Bearer "+key)
		if swagger.code != 200 || !strings.Contains(swagger.body, "/score") {
			t.Errorf("swagger: %d %s", swagger.code, swagger.body)
		}
		clustertest.Eventually(t, 30*time.Second, "the request in blue's log", func() error {
			logs := f.mustML("online-deployment", "get-logs", "-n", "blue", "-e", ep, "--lines", "50")
			if !strings.Contains(logs, "POST /score 200") {
				return fmt.Errorf("log:\n%s", logs)
			}
			if strings.Contains(logs, key) {
				t.Fatal("the key is in the deployment's log")
			}
			return nil
		})
	})

	t.Run("bad model input is the script's 500", func(t *testing.T) {
		a := f.curl(t, uri, `{"data": [[1, 2]]}`, "Authorization: Bearer "+key)
		if a.code != 500 || !strings.Contains(a.body, "ValueError") {
			t.Fatalf("rows of 2 numbers: %d %s", a.code, a.body)
		}
	})

	t.Run("keys", func(t *testing.T) {
		if a := f.curl(t, uri, sample); a.code != 401 {
			t.Errorf("no key: %d %s", a.code, a.body)
		}
		if a := f.curl(t, uri, sample, "Authorization: Bearer not-the-key"); a.code != 403 {
			t.Errorf("wrong key: %d %s", a.code, a.body)
		}
		secondary := strings.TrimSpace(f.mustML("online-endpoint", "get-credentials", "-n", ep, "--query", "secondaryKey", "-o", "tsv"))
		if a := f.curl(t, uri, sample, "Authorization: Bearer "+secondary); a.code != 200 {
			t.Errorf("secondary key: %d %s", a.code, a.body)
		}
		f.mustML("online-endpoint", "regenerate-keys", "-n", ep, "--key-type", "primary")
		fresh := f.primaryKey(t, ep)
		if fresh == key {
			t.Fatal("regenerate-keys kept the primary key")
		}
		// regenerate-keys returns once the cluster has the new key.
		if a := f.curl(t, uri, sample, "Authorization: Bearer "+key); a.code != 403 {
			t.Errorf("the old primary key after regenerate-keys: %d %s", a.code, a.body)
		}
		if a := f.curl(t, uri, sample, "Authorization: Bearer "+fresh); a.code != 200 {
			t.Errorf("the new primary key: %d %s", a.code, a.body)
		}
		key = fresh
	})

	t.Run("traffic split and the deployment header", func(t *testing.T) {
		f.mustML("online-deployment", "create", "-f", ex("green-deployment.yml"))
		f.mustML("online-endpoint", "update", "-n", ep, "--traffic", "blue=90 green=10")
		if got := f.endpoint(t, ep).Traffic; got["blue"] != 90 || got["green"] != 10 {
			t.Fatalf("traffic: %v", got)
		}
		for _, bad := range []struct{ traffic, want string }{
			{"blue=90 green=20", "100"},
			{"blue=100 purple=0", "purple"},
			{"blue=abc", "blue"},
		} {
			if msg := f.refused(t, "online-endpoint", "update", "-n", ep, "--traffic", bad.traffic); !strings.Contains(msg, bad.want) {
				t.Errorf("traffic %q: %s (want it to name %q)", bad.traffic, msg, bad.want)
			}
		}
		if msg := f.refused(t, "online-endpoint", "update", "-n", ep, "--mirror-traffic", "green=10"); !strings.Contains(msg, "not supported on Kubernetes") {
			t.Errorf("mirror traffic: %s", msg)
		}
		f.mustML("online-endpoint", "update", "-n", ep, "--traffic", "blue=100 green=0")
		for range 5 {
			if a := f.curl(t, uri, sample, "Authorization: Bearer "+key); a.code != 200 || a.deployment != "blue" {
				t.Fatalf("green at 0%%: %d from %q", a.code, a.deployment)
			}
		}
		a := f.curl(t, uri, sample, "Authorization: Bearer "+key, "azureml-model-deployment: green")
		if a.code != 200 || a.deployment != "green" {
			t.Fatalf("the header naming green (at 0%%): %d from %q: %s", a.code, a.deployment, a.body)
		}
		if a := f.curl(t, uri, sample, "Authorization: Bearer "+key, "azureml-model-deployment: purple"); a.code != 404 {
			t.Errorf("the header naming no deployment: %d %s", a.code, a.body)
		}
		if msg := f.refused(t, "online-deployment", "delete", "-n", "blue", "-e", ep, "--yes"); !strings.Contains(msg, "traffic") {
			t.Errorf("deleting a deployment with traffic: %s", msg)
		}
	})

	t.Run("bad files are refused before anything is stored", func(t *testing.T) {
		cases := []struct{ name, yaml, want string }{
			{"bad yaml", "name: bad-one\nendpoint_name: " + ep + "\nmodel: [\n", "line"},
			{"unknown model", "name: bad-one\nendpoint_name: " + ep + "\nmodel: azureml:no-such-model:1\ncode_configuration: {code: ./onlinescoring, scoring_script: score.py}\nenvironment: {image: python:3.11}\ninstance_count: 1\n", "no-such-model"},
			{"unknown field", "name: bad-one\nendpoint_name: " + ep + "\nmodel: {path: ./model}\ninstance_cnt: 1\n", "instance_cnt"},
			{"instance type too big", "name: bad-one\nendpoint_name: " + ep + "\nmodel: {path: ./model}\ncode_configuration: {code: ./onlinescoring, scoring_script: score.py}\nenvironment: {image: python:3.11}\ninstance_count: 1\nresources: {requests: {cpu: \"1\", memory: 1Gi}, limits: {cpu: \"64\", memory: 1Gi}}\n", "limit"},
		}
		for _, c := range cases {
			if msg := f.refused(t, "online-deployment", "create", "-f", f.file(t, "bad-"+strings.ReplaceAll(c.name, " ", "-")+".yml", c.yaml)); !strings.Contains(msg, c.want) {
				t.Errorf("%s: %s (want it to say %q)", c.name, msg, c.want)
			}
		}
		out := f.mustML("online-deployment", "list", "-e", ep, "--query", "[].name", "-o", "tsv")
		if strings.Contains(out, "x") {
			t.Errorf("a refused deployment was stored: %s", out)
		}
		if msg := f.refused(t, "online-endpoint", "create", "-n", "e2", "-f", f.file(t, "bad-endpoint.yml", "name: e2\nauth_mode: aad_token\ncompute: azureml:"+compute+"\n")); !strings.Contains(msg, "aad_token") {
			t.Errorf("aad_token: %s", msg)
		}
		big := strings.Repeat("x", 120<<20)
		if a := f.curl(t, uri, big, "Authorization: Bearer "+key); a.code != 413 {
			t.Errorf("a 120 MiB body: %d", a.code)
		}
	})

	t.Run("queue limit and request timeout", func(t *testing.T) {
		f.file(t, "slow/score.py", `import json, time
def init():
    pass
def run(raw_data):
    time.sleep(json.loads(raw_data)["sleep"])
    return "slept"
`)
		f.file(t, "slow.yml", `name: slow
endpoint_name: `+ep+`
model: {path: ./model}
code_configuration: {code: ./slow, scoring_script: score.py}
environment: {image: python:3.11}
instance_count: 1
request_settings: {request_timeout_ms: 3000, max_concurrent_requests_per_instance: 1, max_queue_wait_ms: 300}
`)
		f.mustML("online-deployment", "create", "-f", ex("slow.yml"))
		hdr := []string{"Authorization: Bearer " + key, "azureml-model-deployment: slow"}
		// One request holds the instance for two seconds; the other, sent
		// once the router counts the first in flight, waits 300 ms in the
		// router's queue and is turned away.
		codes := make([]int, 2)
		var wg sync.WaitGroup
		wg.Go(func() { codes[0] = f.curl(t, uri, `{"sleep": 2}`, hdr...).code })
		clustertest.Eventually(t, 10*time.Second, "the first request in flight at the router", func() error {
			if n := inFlight(t, "slow"); n != 1 {
				return fmt.Errorf("%d in flight", n)
			}
			return nil
		})
		codes[1] = f.curl(t, uri, `{"sleep": 1}`, hdr...).code
		wg.Wait()
		if codes[0] != 200 || codes[1] != 429 {
			t.Errorf("two requests on one instance that takes one at a time: %v, want [200 429]", codes)
		}
		if a := f.curl(t, uri, `{"sleep": 5}`, hdr...); a.code != 408 {
			t.Errorf("a request running past request_timeout_ms: %d %s", a.code, a.body)
		}
	})

	t.Run("init failure fails the deployment with its traceback", func(t *testing.T) {
		f.file(t, "broken/score.py", "def init():\n    raise RuntimeError('the model is missing a layer')\n\ndef run(raw_data):\n    return 0\n")
		f.file(t, "broken.yml", `name: broken
endpoint_name: `+ep+`
model: {path: ./model}
code_configuration: {code: ./broken, scoring_script: score.py}
environment: {image: python:3.11}
instance_count: 1
`)
		msg := f.refused(t, "online-deployment", "create", "-f", ex("broken.yml"))
		d := f.deployment(t, ep, "broken")
		if d.ProvisioningState != api.StateFailed || !strings.Contains(d.StatusMessage, "the model is missing a layer") ||
			!strings.Contains(d.StatusMessage, "Traceback") || !strings.Contains(msg, "the model is missing a layer") {
			t.Fatalf("deployment %s: %q; create said %s", d.ProvisioningState, d.StatusMessage, msg)
		}
		f.mustML("online-deployment", "delete", "-n", "broken", "-e", ep, "--yes")
	})

	t.Run("aml_token endpoint", func(t *testing.T) {
		f.mustML("online-endpoint", "create", "-n", "tok-endpoint", "-f", f.file(t, "tok.yml", "name: tok-endpoint\nauth_mode: AMLToken\ncompute: azureml:"+compute+"\n"))
		f.mustML("online-deployment", "create", "-f", ex("blue-deployment.yml"), "--set", "endpoint_name=tok-endpoint", "--all-traffic")
		var tok api.EndpointToken
		if err := json.Unmarshal([]byte(f.mustML("online-endpoint", "get-credentials", "-n", "tok-endpoint", "-o", "json")), &tok); err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken == "" || time.Until(tok.ExpiryTimeUTC) < 50*time.Minute {
			t.Fatalf("token %+v", tok)
		}
		turi := f.endpoint(t, "tok-endpoint").ScoringURI
		if a := f.curl(t, turi, sample, "Authorization: Bearer "+tok.AccessToken); a.code != 200 {
			t.Errorf("with the token: %d %s", a.code, a.body)
		}
		if a := f.curl(t, turi, sample, "Authorization: Bearer "+key); a.code != 403 {
			t.Errorf("another endpoint's key: %d %s", a.code, a.body)
		}
		// A token that expired an hour ago, signed with the endpoint's own
		// key as read from the cluster: the router refuses it as expired,
		// not as foreign. Waiting out the hour's lifetime is not an option.
		signKey := clustertest.Kubectl(t, "get", "secrets", "-A", "-l", "inference.outpost.dev/onlineendpoint=tok-endpoint",
			"-o", "jsonpath={.items[0].data.tokenKey}")
		raw, err := base64.StdEncoding.DecodeString(signKey)
		if err != nil || len(raw) == 0 {
			t.Fatalf("the endpoint's token key from its Secret: %q %v", signKey, err)
		}
		expired, _, err := endpointauth.IssueToken(string(raw), "tok-endpoint", time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if a := f.curl(t, turi, sample, "Authorization: Bearer "+expired); a.code != 403 || !strings.Contains(a.body, "expired") {
			t.Errorf("an expired token: %d %s, want 403 saying it expired", a.code, a.body)
		}
		f.mustML("online-endpoint", "delete", "-n", "tok-endpoint", "--yes")
		if a := f.curl(t, turi, sample, "Authorization: Bearer "+tok.AccessToken); a.code != 404 {
			t.Errorf("a deleted endpoint: %d %s", a.code, a.body)
		}
	})

	t.Run("delete", func(t *testing.T) {
		f.mustML("online-endpoint", "delete", "-n", ep, "--yes")
		if _, _, code := f.ml("online-endpoint", "show", "-n", ep); code == 0 {
			t.Fatal("the endpoint is still shown after delete")
		}
		clustertest.Eventually(t, 60*time.Second, "the deployments' pods gone", func() error {
			out := clustertest.Kubectl(t, "get", "pods", "-A", "-l", "inference.outpost.dev/endpoint="+ep, "-o", "name")
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("pods left: %s", out)
			}
			return nil
		})
	})
}

// inFlight is the requests the router holds for a deployment now, from its
// /load on the admin port, read through the API server's pod proxy.
func inFlight(t *testing.T, deployment string) int {
	t.Helper()
	pod := clustertest.Kubectl(t, "get", "pods", "-n", "azureml", "-l", "app=azureml-fe", "-o", "jsonpath={.items[0].metadata.name}")
	var load api.RouterLoad
	raw := clustertest.Kubectl(t, "get", "--raw", "/api/v1/namespaces/azureml/pods/"+pod+":9002/proxy/load")
	if err := json.Unmarshal([]byte(raw), &load); err != nil {
		t.Fatalf("router load %q: %v", raw, err)
	}
	n := 0
	for _, d := range load.Deployments {
		if d.Deployment == deployment {
			n += d.InFlight
		}
	}
	return n
}
