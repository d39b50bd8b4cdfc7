// Package sdk runs the Python SDK's live tests (sdk/python/tests/live)
// against a real workspace and the local cluster: the SDK is installed with
// pip from a copy of sdk/python, the seed's Python script attaches the
// cluster, a failed attach gives the workspace's reason, a job from
// examples/jobs is submitted with MLClient and streamed, the endpoint of
// examples/endpoints is invoked through its router, and what the SDK
// reports is checked against what the CLI shows.
package sdk

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/pki"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

const (
	rg = "rg"
	ws = "ws"
	// The connected cluster in Azure's form, as the seed's script writes it.
	clusterID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" + rg +
		"/providers/Microsoft.Kubernetes/connectedClusters/c1"
)

// python is the interpreter the SDK supports and is tested with (Debian's).
const python = "/usr/bin/python3"

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// installSDK installs the SDK with pip, offline, from a copy of
// sdk/python (a build writes into the folder it builds), and returns the
// folder it went to.
func installSDK(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "python")
	if err := os.CopyFS(src, os.DirFS(filepath.Join(repoRoot(), "sdk", "python"))); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "site")
	cmd := exec.Command(python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index", "--target", target, src)
	cmd.Env = append(os.Environ(), "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_ROOT_USER_ACTION=ignore")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pip install ./sdk/python: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(target, "outpost", "core", "compute.py")); err != nil {
		t.Fatalf("pip installed no outpost package: %v", err)
	}
	return target
}

var (
	// What the live tests print for this test to check; unittest's own
	// lines may share a line with them.
	principalRE    = regexp.MustCompile(`SDK-LIVE-PRINCIPAL (\S+)`)
	jobRE          = regexp.MustCompile(`SDK-LIVE-JOB (\S+)`)
	failedAttachRE = regexp.MustCompile(`(?m)SDK-LIVE-FAILED-ATTACH (.+)$`)
	answerRE       = regexp.MustCompile(`(?m)SDK-LIVE-ANSWER (.+)$`)
)

// routerCertificate makes the inference router's serving certificate,
// issued by a CA this machine does not trust: the SDK trusts the router
// only because the certificate is the one its cluster reported.
func routerCertificate(t *testing.T) (cert, key string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("sdk-test-scoring-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := ca.Issue(pki.Request{CommonName: "scoring.local", DNSNames: []string{"scoring.local"},
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}, cert, key); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// deployExample deploys the scikit-learn model of examples/endpoints (from
// a copy, where its model is trained) with the CLI, and returns the copy.
func deployExample(t *testing.T, w *clustertest.Workspace) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repoRoot(), "examples", "endpoints"))); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(python, filepath.Join(dir, "train.py")).CombinedOutput(); err != nil {
		t.Fatalf("train the example's model: %v\n%s", err, out)
	}
	w.Must("ml", "online-endpoint", "create", "-f", filepath.Join(dir, "endpoint.yml"), "-g", rg, "-w", ws)
	w.Must("ml", "online-deployment", "create", "-f", filepath.Join(dir, "blue-deployment.yml"), "--all-traffic", "-g", rg, "-w", ws)
	return dir
}

func TestSDKLive(t *testing.T) {
	site := installSDK(t)
	w := clustertest.StartWorkspace(t, time.Second)
	w.Must("connectedk8s", "connect", "--name", "c1", "--resource-group", rg)
	t.Cleanup(func() {
		w.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", rg, "--yes")
	})
	cert, key := routerCertificate(t)
	w.Must("k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", rg, "--scope", "cluster",
		"--config", "enableTraining=True", "enableInference=True", "inferenceRouterServiceType=NodePort",
		"--config-protected", "sslCertPemFile="+cert, "sslKeyPemFile="+key)
	// The examples' compute, which their jobs and endpoint name, attached
	// with the CLI: the SDK attaches computes of its own.
	w.Must("ml", "compute", "attach", "-g", rg, "-w", ws, "--name", "local-compute", "--type", "Kubernetes",
		"--resource-id", "/resourceGroups/"+rg+"/connectedClusters/c1")
	endpoints := deployExample(t, w)

	// The tests run from a folder of their own: the current folder comes
	// first on Python's path, and it must not hold another outpost package.
	cwd := t.TempDir()
	live := filepath.Join(repoRoot(), "sdk", "python", "tests", "live")
	cmd := exec.Command(python, "-m", "unittest", "discover", "-v", "-s", live, "-t", live)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "PYTHONPATH="+site, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
		"OUTPOST_CONFIG="+w.Login, "OUTPOST_SDK_LIVE_RG="+rg, "OUTPOST_SDK_LIVE_WORKSPACE="+ws,
		"OUTPOST_SDK_LIVE_CLUSTER_ID="+clusterID, "OUTPOST_SDK_LIVE_EXAMPLES="+filepath.Join(repoRoot(), "examples"),
		"OUTPOST_SDK_LIVE_ENDPOINT=diabetes-endpoint", "OUTPOST_SDK_LIVE_REQUEST="+filepath.Join(endpoints, "sample-request.json"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest discover %s (%s):\n%s", live, time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("the SDK's live tests failed: %v\n--- workspace log (end) ---\n%s", err, tail(w.Log(), 40))
	}
	text := string(out)
	if strings.Contains(text, "skipped") || !strings.Contains(text, "\nOK") {
		t.Fatalf("the live tests did not all run:\n%s", text)
	}

	// What the SDK reported is what the CLI shows.
	var c api.Compute
	if err := json.Unmarshal([]byte(w.Must("ml", "compute", "show", "-n", "sdk-system", "-g", rg, "-w", ws, "-o", "json")), &c); err != nil {
		t.Fatal(err)
	}
	m := principalRE.FindStringSubmatch(text)
	if m == nil || c.ProvisioningState != api.StateSucceeded || c.Identity.PrincipalID != m[1] {
		t.Errorf("the SDK printed principal %v; the CLI shows %+v", m, c)
	}
	m = jobRE.FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the live tests named no job")
	}
	if got := strings.TrimSpace(w.Must("ml", "job", "show", "-n", m[1], "-g", rg, "-w", ws, "--query", "status", "-o", "tsv")); got != api.JobCompleted {
		t.Errorf("job %s: the CLI shows %s", m[1], got)
	}
	var failed api.Compute
	if err := json.Unmarshal([]byte(w.Must("ml", "compute", "show", "-n", "sdk-failed", "-g", rg, "-w", ws, "-o", "json")), &failed); err != nil {
		t.Fatal(err)
	}
	m = failedAttachRE.FindStringSubmatch(text)
	if m == nil || failed.ProvisioningState != api.StateFailed || len(failed.ProvisioningErrors) == 0 ||
		m[1] != strings.ReplaceAll(failed.ProvisioningErrors[0], "\n", " ") {
		t.Errorf("the SDK's failed attach said %v; the CLI shows %+v", m, failed)
	}
	m = answerRE.FindStringSubmatch(text)
	cliAnswer := strings.TrimSpace(w.Must("ml", "online-endpoint", "invoke", "-n", "diabetes-endpoint", "--request-file",
		filepath.Join(endpoints, "sample-request.json"), "-g", rg, "-w", ws))
	if m == nil || m[1] != cliAnswer {
		t.Errorf("the SDK's invoke answered %v; the CLI's %q", m, cliAnswer)
	}
	if _, _, code := w.Outpost("ml", "compute", "show", "-n", "amlarc-compute", "-g", rg, "-w", ws); code == 0 {
		t.Error("amlarc-compute is still attached after the SDK detached it")
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
