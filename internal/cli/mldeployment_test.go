package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/deploymentspec"
)

const deploymentYAML = `$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
name: blue
type: kubernetes
endpoint_name: my-endpoint
model:
  path: ../model-1/model/
code_configuration:
  code: ../model-1/onlinescoring/
  scoring_script: score.py
environment:
  conda_file: ../model-1/environment/conda.yml
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
request_settings:
  request_timeout_ms: 3000
  max_queue_wait_ms: 3000
resources:
  requests:
    cpu: "0.1"
    memory: "0.1Gi"
  limits:
    cpu: "0.2"
    memory: "200Mi"
tags:
  tag1: deployment-tag1-value
instance_count: 1
scale_settings:
  type: default
`

// endpointsDir is the layout of Azure ML's Kubernetes endpoint example.
func endpointsDir(t *testing.T) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"model-1/model/sklearn_regression_model.pkl": "model bytes",
		"model-1/onlinescoring/score.py":             "def init():\n    pass\n",
		"model-1/environment/conda.yml":              "name: model-env\ndependencies: [python=3.11, scikit-learn]\n",
		"kubernetes/kubernetes-endpoint.yml":         "name: my-endpoint\ncompute: azureml:k8s\nauth_mode: Key\ntags:\n  tag1: endpoint-tag1-value\n",
		"kubernetes/kubernetes-blue-deployment.yml":  deploymentYAML,
	})
	return dir
}

func TestPrepareDeploymentResolvesLocalPaths(t *testing.T) {
	dir := endpointsDir(t)
	pd, err := prepareDeployment(filepath.Join(dir, "kubernetes", "kubernetes-blue-deployment.yml"), []string{"instance_count=2"}, "", "other-ep")
	if err != nil {
		t.Fatal(err)
	}
	if pd.name != "blue" || pd.endpoint != "other-ep" || pd.m["endpoint_name"] != "other-ep" {
		t.Fatalf("names: %s %s", pd.name, pd.endpoint)
	}
	model := pd.m["model"].(map[string]any)["path"].(string)
	code := pd.m["code_configuration"].(map[string]any)["code"].(string)
	if !strings.HasPrefix(model, "azureml://datastores/workspaceblobstore/paths/LocalUpload/") || !strings.HasSuffix(model, "/model/") ||
		!strings.HasSuffix(code, "/onlinescoring/") {
		t.Fatalf("model %s, code %s", model, code)
	}
	env := pd.m["environment"].(map[string]any)
	if _, ok := env["conda_file"].(map[string]any); !ok {
		t.Fatalf("the conda file is not inlined: %v", env)
	}
	up := &fakeUploader{}
	if err := pd.res.upload(context.Background(), up, io.Discard); err != nil {
		t.Fatal(err)
	}
	if len(up.dirs) != 2 || up.dirs[strings.TrimPrefix(model, "azureml://datastores/workspaceblobstore/paths/")] != filepath.Join(dir, "model-1", "model") {
		t.Fatalf("uploads: %v", up.dirs)
	}
	d, err := deploymentDoc(pd.m)
	if err != nil || d.InstanceCount != 2 || d.RequestSettings.RequestTimeoutMS != 3000 {
		t.Fatalf("document: %+v %v", d, err)
	}
}

func TestPrepareDeploymentErrors(t *testing.T) {
	dir := endpointsDir(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, "kubernetes", name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, yaml string
		sets       []string
		want       string
	}{
		{"a misspelt field", strings.Replace(deploymentYAML, "instance_count: 1", "instance_cout: 1", 1), nil, `, line 25: instance_cout: unknown field "instance_cout"`},
		{"a bad value", deploymentYAML, []string{"scale_settings.type=manual"}, `scale_settings.type: "manual"`},
		{"limits under requests", strings.Replace(deploymentYAML, `cpu: "0.2"`, `cpu: "0.05"`, 1), nil, "line 18: resources.requests.cpu: 100m is above its limit 50m"},
		{"a missing code folder", strings.Replace(deploymentYAML, "onlinescoring/", "nope/", 1), nil, "line 8: code_configuration.code: "},
		{"a model given as a local string", strings.Replace(deploymentYAML, "model:\n  path: ../model-1/model/", "model: ../model-1/model/", 1), nil, "line 5: model: \"../model-1/model/\": a registered model is azureml:NAME:VERSION"},
		{"no endpoint", strings.Replace(deploymentYAML, "endpoint_name: my-endpoint\n", "", 1), nil, "endpoint_name: required"},
		{"bad YAML", deploymentYAML + "  bad indent: [\n", nil, "line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prepareDeployment(write("d.yml", tc.yaml), tc.sets, "", "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestTrafficFlag(t *testing.T) {
	got := strings.Join(rewriteMultiValue(strings.Fields("ml online-endpoint update -n e --traffic blue=90 green=10 -g rg")), " ")
	if want := "ml online-endpoint update -n e --traffic blue=90 --traffic green=10 -g rg"; got != want {
		t.Fatalf("rewrite: %q", got)
	}
	for _, tc := range []struct{ in, want string }{
		{"blue=90 green=10", "blue=90 green=10"},
		{"blue=90,green=10", "blue=90 green=10"},
		{"blue=x", "the percent must be a whole number"},
		{"blue", "is not DEPLOYMENT=PERCENT"},
		{"blue=1 blue=2", "blue given twice"},
	} {
		m, err := deploymentspec.ParseTraffic(tc.in)
		got := deploymentspec.TrafficString(m)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// fakeCluster is a connected cluster whose agent is a loop in the test:
// it applies what the workspace sends at once and reports every
// deployment ready, with a router answering at router.
type fakeCluster struct {
	router   *httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

// serveCluster connects cluster c9 with the ML extension serving
// inference, attached as compute k8s of workspace ws, and runs its agent
// until the test ends.
func serveCluster(t *testing.T) *fakeCluster {
	t.Helper()
	ws, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fc := &fakeCluster{}
	fc.router = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc.mu.Lock()
		fc.requests = append(fc.requests, r)
		fc.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, `{"path": %q, "deployment": %q, "auth": %q, "body": %s}`, r.URL.Path, r.Header.Get("azureml-model-deployment"), r.Header.Get("Authorization"), body)
	}))
	t.Cleanup(fc.router.Close)
	var cc api.ConnectedCluster
	if err := ws.Do(ctx, "PUT", clusterPath("rg", "c9"), map[string]string{}, &cc); err != nil {
		t.Fatal(err)
	}
	cfg := ws.Config()
	cfg.Token = cc.AgentToken
	agent, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Do(ctx, "PUT", extensionPath("rg", "c9", "ml"), api.ExtensionRequest{ExtensionType: "Microsoft.AzureML.Kubernetes", ClusterType: "connectedClusters",
		Scope: "cluster", ConfigurationSettings: map[string]string{"enableInference": "True", "allowInsecureConnections": "True"}}, nil); err != nil {
		t.Fatal(err)
	}
	facts := api.ClusterFacts{TotalNodeCount: 1,
		Nodes: []api.NodeFacts{{Name: "n1", Ready: true, Allocatable: map[string]string{"cpu": "4", "memory": "8Gi"}}},
		InstanceTypes: []api.InstanceType{{Name: api.DefaultInstanceType, BuiltIn: true, Resources: api.InstanceTypeResources{
			Requests: map[string]string{"cpu": "100m", "memory": "2Gi"}, Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}}},
		InferenceRouter: &api.InferenceRouter{BaseURL: fc.router.URL, Ready: true,
			CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fc.router.Certificate().Raw}))}}
	base := "/agent/v1" + clusterPath("rg", "c9")
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rev int64
		for ctx.Err() == nil {
			var d api.SyncResponse
			if err := agent.Do(ctx, "GET", fmt.Sprintf("%s/sync?since=%d", base, rev), nil, &d); err != nil {
				select { // the workspace is starting or stopping
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			rev = d.Revision
			rep := api.AgentReport{Revision: rev, Facts: facts, Namespaces: []string{"default"},
				Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}}
			for _, o := range d.Objects {
				if dep := o.OnlineDeployment; dep != nil {
					rep.Deployments = append(rep.Deployments, api.DeploymentReport{ID: o.ID, Phase: api.ClusterDeploymentSucceeded, Instances: dep.InstanceCount, ReadyInstances: dep.InstanceCount})
				}
			}
			// A lost report is sent again on the next round (the loop
			// reports every revision it sees), as the real agent does;
			// the test waits on the states the reports produce.
			if err := agent.Do(ctx, "POST", base+"/report", rep, nil); err != nil && ctx.Err() == nil {
				t.Logf("fake agent: report: %v (sent again next round)", err)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	if _, _, err := run(t, "ml", "compute", "attach", "-g", "rg", "-w", "ws", "-n", "k8s", "--type", "Kubernetes", "--resource-id", "/resourceGroups/rg/connectedClusters/c9"); err != nil {
		t.Fatal(err)
	}
	return fc
}

// A data scientist's flow, as with az: register a model, create an
// endpoint and a deployment from Azure ML's example files, send it the
// traffic, call it, read its logs, and delete it all.
func TestEndpointsAgainstAWorkspace(t *testing.T) {
	serve(t)
	fc := serveCluster(t)
	dir := endpointsDir(t)
	ws := []string{"-g", "rg", "-w", "ws"}
	cmd := func(args ...string) (string, string, error) {
		t.Helper()
		return run(t, append(args, ws...)...)
	}

	// Models.
	stdout, stderr, err := cmd("ml", "model", "create", "--name", "sk", "--version", "1", "--path", filepath.Join(dir, "model-1", "model"), "--query", "path", "-o", "tsv")
	if err != nil || !strings.HasSuffix(strings.TrimSpace(stdout), "/model/") || !strings.Contains(stderr, "Uploading path") {
		t.Fatalf("model create: %q %q %v", stdout, stderr, err)
	}
	if _, _, err := cmd("ml", "model", "create", "--name", "sk", "--path", filepath.Join(dir, "model-1", "model", "sklearn_regression_model.pkl"), "--type", "MLflow_Model"); err == nil ||
		!strings.Contains(err.Error(), "no MLmodel file") {
		t.Fatalf("an mlflow model that is not one: %v", err)
	}
	if _, _, err := cmd("ml", "model", "archive", "--name", "sk", "--version", "1"); err != nil {
		t.Fatal(err)
	}
	if stdout, _, err = cmd("ml", "model", "list", "-o", "json"); err != nil || strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("list with sk archived: %s %v", stdout, err)
	}
	if stdout, _, err = cmd("ml", "model", "list", "--include-archived", "--query", "[0].stage", "-o", "tsv"); err != nil || strings.TrimSpace(stdout) != "Archived" {
		t.Fatalf("list --include-archived: %s %v", stdout, err)
	}
	if _, _, err := cmd("ml", "model", "restore", "--name", "sk"); err != nil {
		t.Fatal(err)
	}
	dl := t.TempDir()
	if _, _, err := cmd("ml", "model", "download", "--name", "sk", "--version", "1", "--download-path", dl); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dl, "sk", "model", "sklearn_regression_model.pkl")); err != nil || string(got) != "model bytes" {
		t.Fatalf("downloaded model: %q %v", got, err)
	}

	// The endpoint, waited for.
	stdout, stderr, err = cmd("ml", "online-endpoint", "create", "--name", "my-endpoint", "-f", filepath.Join(dir, "kubernetes", "kubernetes-endpoint.yml"), "-o", "json")
	if err != nil {
		t.Fatalf("endpoint create: %v\n%s", err, stderr)
	}
	var e api.OnlineEndpoint
	if err := json.Unmarshal([]byte(stdout), &e); err != nil || e.ProvisioningState != api.StateSucceeded || e.AuthMode != "key" || e.ScoringURI != fc.router.URL+"/api/v1/endpoint/my-endpoint/score" {
		t.Fatalf("endpoint: %+v %v", e, err)
	}
	if _, _, err := cmd("ml", "online-endpoint", "create", "--name", "mirror-ep", "--set", "compute=azureml:k8s", "--set", "auth_mode=aad_token"); err == nil ||
		!strings.Contains(err.Error(), "aad_token is not supported on Kubernetes online endpoints") {
		t.Fatalf("aad_token: %v", err)
	}

	// The deployment, from the example file, with all the traffic.
	stdout, stderr, err = cmd("ml", "online-deployment", "create", "--name", "blue", "--endpoint", "my-endpoint", "-f", filepath.Join(dir, "kubernetes", "kubernetes-blue-deployment.yml"),
		"--set", "model=azureml:sk@latest", "--all-traffic", "--query", "provisioning_state", "-o", "tsv")
	if err != nil || strings.TrimSpace(stdout) != api.StateSucceeded || !strings.Contains(stderr, "traffic of online endpoint my-endpoint: blue=100") {
		t.Fatalf("deployment create: %q %q %v", stdout, stderr, err)
	}
	if stdout, _, err = cmd("ml", "online-endpoint", "show", "-n", "my-endpoint", "--query", "traffic.blue", "-o", "tsv"); err != nil || strings.TrimSpace(stdout) != "100" {
		t.Fatalf("traffic: %q %v", stdout, err)
	}
	_, _, err = cmd("ml", "online-endpoint", "update", "-n", "my-endpoint", "--traffic", "blue=90", "green=10")
	if err == nil || !strings.Contains(err.Error(), "no deployment green in this endpoint") {
		t.Fatalf("traffic to an unknown deployment: %v", err)
	}
	_, _, err = cmd("ml", "online-endpoint", "update", "-n", "my-endpoint", "--mirror-traffic", "blue=10")
	if err == nil || !strings.Contains(err.Error(), "mirror traffic is not supported on Kubernetes online endpoints") {
		t.Fatalf("mirror traffic: %v", err)
	}
	if stdout, _, err = cmd("ml", "online-endpoint", "update", "-n", "my-endpoint", "--set", "description=served", "--query", "description", "-o", "tsv"); err != nil || strings.TrimSpace(stdout) != "served" {
		t.Fatalf("update --set description: %q %v", stdout, err)
	}
	if stdout, _, err = cmd("ml", "online-deployment", "update", "-n", "blue", "-e", "my-endpoint", "--set", "instance_count=2", "--query", "instance_count", "-o", "tsv"); err != nil || strings.TrimSpace(stdout) != "2" {
		t.Fatalf("deployment update --set instance_count=2: %q %v", stdout, err)
	}

	// Keys, and a call through the router (its certificate pinned).
	stdout, _, err = cmd("ml", "online-endpoint", "get-credentials", "-n", "my-endpoint", "--query", "primaryKey", "-o", "tsv")
	key := strings.TrimSpace(stdout)
	if err != nil || len(key) != 43 {
		t.Fatalf("get-credentials: %q %v", stdout, err)
	}
	req := filepath.Join(dir, "sample-request.json")
	if err := os.WriteFile(req, []byte(`{"data": [[1,2,3,4,5,6,7,8,9,10]]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = cmd("ml", "online-endpoint", "invoke", "--name", "my-endpoint", "--request-file", req, "--deployment-name", "blue", "-o", "json")
	var answer map[string]any
	if err != nil || json.Unmarshal([]byte(stdout), &answer) != nil || answer["path"] != "/api/v1/endpoint/my-endpoint/score" ||
		answer["deployment"] != "blue" || answer["auth"] != "Bearer "+key {
		t.Fatalf("invoke: %q %v", stdout, err)
	}
	if _, _, err := cmd("ml", "online-endpoint", "regenerate-keys", "-n", "my-endpoint", "--key-type", "Primary"); err != nil {
		t.Fatal(err)
	}
	if stdout, _, _ = cmd("ml", "online-endpoint", "get-credentials", "-n", "my-endpoint", "--query", "primaryKey", "-o", "tsv"); strings.TrimSpace(stdout) == key {
		t.Fatal("regenerate-keys kept the primary key")
	}
	if stdout, stderr, err = cmd("ml", "online-deployment", "get-logs", "-n", "blue", "-e", "my-endpoint", "--lines", "10"); err != nil || stdout != "" || !strings.Contains(stderr, "no log yet") {
		t.Fatalf("get-logs with none: %q %q %v", stdout, stderr, err)
	}

	// Deleting: the deployment takes traffic, then the endpoint goes with it.
	if _, _, err := cmd("ml", "online-deployment", "delete", "-n", "blue", "-e", "my-endpoint", "--yes"); err == nil || !strings.Contains(err.Error(), "takes 100%") {
		t.Fatalf("deleting a deployment with traffic: %v", err)
	}
	stdout, _, err = cmd("ml", "online-endpoint", "delete", "-n", "my-endpoint", "--yes", "--query", "provisioning_state", "-o", "tsv")
	if err != nil || strings.TrimSpace(stdout) != "Deleted" {
		t.Fatalf("endpoint delete: %q %v", stdout, err)
	}
	if _, _, err := cmd("ml", "online-endpoint", "show", "-n", "my-endpoint"); err == nil {
		t.Fatal("the endpoint is still there")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.requests) != 1 {
		t.Fatalf("the router got %d requests, want 1", len(fc.requests))
	}
}
