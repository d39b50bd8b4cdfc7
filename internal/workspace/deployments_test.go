package workspace

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

// scoreDeployment is a deployment of the model and code that tests upload
// (model/m.pkl, code/score.py).
func scoreDeployment() doc {
	return doc{"model": doc{"path": wsBlob + "model/"}, "code_configuration": doc{"code": wsBlob + "code/", "scoring_script": "score.py"},
		"environment": doc{"image": pyImage}, "instance_count": 1}
}

func (sv *serving) createDeployment(e, name string, d doc) (api.OnlineDeployment, error) {
	sv.t.Helper()
	var dep api.OnlineDeployment
	err := sv.c.Do(context.Background(), "PUT", epPath+e+"/deployments/"+name, d, &dep)
	return dep, err
}

func (sv *serving) deployment(e, name string) api.OnlineDeployment {
	sv.t.Helper()
	var dep api.OnlineDeployment
	if err := sv.c.Do(context.Background(), "GET", epPath+e+"/deployments/"+name, nil, &dep); err != nil {
		sv.t.Fatal(err)
	}
	return dep
}

func deploymentID(e, name string) string {
	return wsPath + "/onlineEndpoints/" + e + "/deployments/" + name
}

func with(d doc, kv ...any) doc {
	out := doc{}
	for k, v := range d {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestDeploymentCreateRefusedWithReasons(t *testing.T) {
	sv := newServing(t)
	upload(t, sv.c, map[string]string{"code/score.py": "def init(): pass\n", "model/m.pkl": "m"})
	if err := sv.c.Do(context.Background(), "PUT", wsPath+"/models/sk/versions/1", doc{"path": wsBlob + "model/"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatal(err)
	}
	good := scoreDeployment()
	for _, tc := range []struct {
		name  string
		d     doc
		wants []string
	}{
		{"an unknown model", with(good, "model", "azureml:nope:1"), []string{"model: model nope not found in workspace ws; models: sk"}},
		{"an unknown model version", with(good, "model", "azureml:sk:9"), []string{"model: model sk version 9 not found; versions: 1"}},
		{"a registry model", with(good, "model", "azureml://registries/r/models/m/versions/1"), []string{"registry models are not available"}},
		{"a model path not uploaded", with(good, "model", doc{"path": wsBlob + "nothere/"}), []string{"model.path", "not found in datastore"}},
		{"an unknown instance type", with(good, "instance_type", "tiny"), []string{"instance_type: instance type tiny not found on cluster c1; instance types: big (cpu 8, memory 16Gi), defaultinstancetype"}},
		{"an instance type no node fits", with(good, "instance_type", "big"), []string{"instance_type: not enough room: instance type big can never run on cluster c1: it requests 8 CPU, 16Gi and the largest node has 4 CPU, 8Gi"}},
		{"more instances than fit", with(good, "instance_count", 5), []string{"instance_count: not enough room: 5 instances of defaultinstancetype (each requesting 0.1 CPU, 2Gi) never fit cluster c1, whose empty Ready nodes hold at most 4 (n1 4)"}},
		{"autoscale from more than fit", with(good, "instance_count", nil, "scale_settings", doc{"type": "target_utilization", "min_instances": 5, "max_instances": 6}), []string{"scale_settings.min_instances: not enough room: 5 instances"}},
		{"limits above the instance type's", with(good, "resources", doc{"limits": doc{"cpu": "4", "memory": "1Gi"}}), []string{"resources.limits.cpu: 4 is above the limit of instance type defaultinstancetype (2)"}},
		{"a GPU the instance type lacks", with(good, "resources", doc{"limits": doc{"nvidia.com/gpu": 1}}), []string{"resources.limits.nvidia.com/gpu: 1: instance type defaultinstancetype gives no nvidia.com/gpu"}},
		{"requests above limits", with(good, "resources", doc{"requests": doc{"cpu": "2"}, "limits": doc{"cpu": "1"}}), []string{"resources.requests.cpu: 2 is above its limit 1"}},
		{"requests above the instance type's limits", with(good, "resources", doc{"requests": doc{"memory": "3Gi"}}), []string{"resources.requests.memory: 3Gi is above the limit 2Gi"}},
		{"an unknown resource", with(good, "resources", doc{"limits": doc{"disk": "1Gi"}}), []string{`resources.limits.disk: unknown resource "disk"`}},
		{"a misspelt field", with(good, "instance_typ", "x"), []string{`instance_typ: unknown field "instance_typ"`}},
		{"a field of the wrong type", with(good, "instance_count", "two"), []string{"instance_count: must be a whole number"}},
		{"no environment", with(good, "environment", nil), []string{"environment: required"}},
		{"an unknown environment", with(good, "environment", "azureml:nope:1"), []string{"environment: environment nope not found in workspace ws; environments: none"}},
		{"no scoring script", with(good, "code_configuration", nil), []string{"code_configuration: required"}},
		{"a scoring script not in the code", with(good, "code_configuration", doc{"code": wsBlob + "code/", "scoring_script": "nope.py"}), []string{"code_configuration.scoring_script: nope.py is not in the code folder"}},
		{"a scoring script that climbs", with(good, "code_configuration", doc{"code": wsBlob + "code/", "scoring_script": "../x.py"}), []string{"code_configuration.scoring_script", "within code"}},
		{"a managed deployment", with(good, "type", "managed"), []string{"type: managed online deployments run in Azure"}},
		{"a negative timeout", with(good, "request_settings", doc{"request_timeout_ms": -1}), []string{"request_settings.request_timeout_ms: must be above 0"}},
		{"a negative probe period", with(good, "liveness_probe", doc{"period": -1}), []string{"liveness_probe.period: must be 0 or more"}},
		{"autoscale settings on type default", with(good, "scale_settings", doc{"type": "default", "max_instances": 3}), []string{"scale_settings.max_instances: goes with scale_settings.type target_utilization"}},
		{"an unknown scale type", with(good, "scale_settings", doc{"type": "manual"}), []string{`scale_settings.type: "manual"`}},
		{"max below min", with(good, "instance_count", nil, "scale_settings", doc{"type": "target_utilization", "min_instances": 2, "max_instances": 1}), []string{"scale_settings.max_instances: 1 is below min_instances (2)"}},
		{"another endpoint in the body", with(good, "endpoint_name", "other"), []string{`endpoint_name: "other" differs`}},
		{"a custom container without routes", with(good, "code_configuration", nil, "environment", doc{"image": "nginx", "inference_config": doc{"scoring_route": doc{"port": 0, "path": "score"}}}),
			[]string{"environment.inference_config.liveness_route: required", "environment.inference_config.scoring_route.port: 0: a port from 1 to 65535"}},
		{"a shown field", with(good, "provisioning_state", "Succeeded"), []string{"provisioning_state: shown by the workspace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sv.createDeployment("sk-ep", "blue", tc.d)
			wantErr(t, tc.name, err, http.StatusBadRequest, tc.wants...)
		})
	}
	_, err := sv.createDeployment("sk-ep", "x", good)
	wantErr(t, "a name too short", err, http.StatusBadRequest, "3-32 characters")
	_, err = sv.createDeployment("nope", "blue", good)
	wantErr(t, "an unknown endpoint", err, http.StatusNotFound, "online endpoint nope not found")
	var all []api.OnlineDeployment
	if err := sv.c.Do(context.Background(), "GET", epPath+"sk-ep/deployments", nil, &all); err != nil || len(all) != 0 {
		t.Fatalf("after refusals: %v %v", all, err)
	}
	if d := sv.sync(); desiredObject(d, api.KindOnlineDeployment, "blue") != nil {
		t.Fatal("a refused deployment reached the agent")
	}
}

func TestDeploymentLifecycle(t *testing.T) {
	sv := newServing(t)
	ctx := context.Background()
	upload(t, sv.c, map[string]string{"code/score.py": "def init(): pass\n", "model/m.pkl": "m", "model2/m.pkl": "m2"})
	for v, p := range map[string]string{"1": "model/", "2": "model2/m.pkl"} {
		if err := sv.c.Do(ctx, "PUT", wsPath+"/models/sk/versions/"+v, doc{"path": wsBlob + p}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// @latest passes over an archived version.
	if err := sv.c.Do(ctx, "POST", wsPath+"/models/sk/versions/2/archive", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatal(err)
	}
	dep, err := sv.createDeployment("sk-ep", "blue", with(scoreDeployment(), "model", "azureml:sk@latest", "environment_variables", doc{"N": 1}, "tags", doc{"t": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if dep.ProvisioningState != api.StateCreating || dep.InstanceType != api.DefaultInstanceType || dep.Type != "kubernetes" || dep.EndpointName != "sk-ep" ||
		*dep.RequestSettings != (api.RequestSettings{RequestTimeoutMS: 5000, MaxConcurrentRequestsPerInstance: 1, MaxQueueWaitMS: 500}) ||
		*dep.LivenessProbe != (api.ProbeSettings{Period: 10, InitialDelay: 10, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 30}) ||
		dep.ScaleSettings.Type != api.ScaleDefault || dep.InstanceCount != 1 {
		t.Fatalf("created: %+v", dep)
	}
	_, err = sv.createDeployment("sk-ep", "Blue", scoreDeployment())
	wantErr(t, "the same name in another case", err, http.StatusConflict, "already exists")

	d := sv.sync()
	obj := desiredObject(d, api.KindOnlineDeployment, "blue")
	if obj == nil {
		t.Fatalf("no deployment in %+v", d)
	}
	dd := obj.OnlineDeployment
	if obj.ID != deploymentID("sk-ep", "blue") || dd.Endpoint != "sk-ep" || dd.Namespace != "default" || dd.Token == "" || dd.Image != pyImage ||
		dd.InstanceType != api.DefaultInstanceType || dd.InstanceCount != 1 || dd.ScaleSettings.Type != api.ScaleDefault ||
		dd.RequestSettings.RequestTimeoutMS != 5000 || dd.ReadinessProbe.FailureThreshold != 30 || dd.ModelName != "sk" || dd.ModelVersion != "1" ||
		dd.EnvironmentVariables["N"] != "1" || dd.RunDigest == "" || dd.InferenceConfig != nil {
		t.Fatalf("desired deployment: %+v", dd)
	}
	// What its pods fetch with the credential.
	var run api.DeploymentRun
	if err := as(sv.c, dd.Token).Do(ctx, "GET", "/deployrun/v1"+deploymentID("sk-ep", "blue")+"/spec", nil, &run); err != nil {
		t.Fatal(err)
	}
	if run.ModelURI != wsBlob+"model/" || run.ModelName != "sk" || run.ModelVersion != "1" || run.ModelFolder != "model" ||
		run.Code != wsBlob+"code/" || run.ScoringScript != "score.py" || run.RequestSettings.MaxQueueWaitMS != 500 {
		t.Fatalf("deployment run: %+v", run)
	}

	// States follow the cluster's reports.
	sv.report(api.DeploymentReport{ID: obj.ID, Phase: api.ClusterDeploymentCreating, Instances: 1})
	if dep := sv.deployment("sk-ep", "blue"); dep.ProvisioningState != api.StateCreating || dep.StatusMessage != "0 of 1 instances ready" {
		t.Fatalf("reported Creating: %s %q", dep.ProvisioningState, dep.StatusMessage)
	}
	// Another cluster cannot report on it.
	other := register(t, sv.c, "rg", "c2")
	report(t, other, "rg", "c2", api.AgentReport{Revision: 1 << 40, Deployments: []api.DeploymentReport{{ID: obj.ID, Phase: api.ClusterDeploymentFailed, Message: "no"}}})
	sv.report(api.DeploymentReport{ID: obj.ID, Phase: api.ClusterDeploymentSucceeded, Instances: 1, ReadyInstances: 1})
	if dep := sv.deployment("sk-ep", "blue"); dep.ProvisioningState != api.StateSucceeded || dep.ReadyInstances != 1 {
		t.Fatalf("reported Succeeded: %s %d", dep.ProvisioningState, dep.ReadyInstances)
	}

	// An update is Updating until the cluster reports on the new spec: a
	// report sent before it applied it does not count.
	var up api.OnlineDeployment
	if err := sv.c.Do(ctx, "PATCH", epPath+"sk-ep/deployments/blue", doc{"instance_count": 2}, &up); err != nil {
		t.Fatal(err)
	}
	if up.ProvisioningState != "Updating" || up.InstanceCount != 2 || up.Tags["t"] != "1" {
		t.Fatalf("updated: %s %d %v", up.ProvisioningState, up.InstanceCount, up.Tags)
	}
	sv.report(api.DeploymentReport{ID: obj.ID, Phase: api.ClusterDeploymentSucceeded, Instances: 1, ReadyInstances: 1})
	if dep := sv.deployment("sk-ep", "blue"); dep.ProvisioningState != "Updating" {
		t.Fatalf("after a report on the spec before: %s", dep.ProvisioningState)
	}
	d = sv.sync(api.DeploymentReport{ID: obj.ID, Phase: api.ClusterDeploymentSucceeded, Instances: 2, ReadyInstances: 2})
	if dd := desiredObject(d, api.KindOnlineDeployment, "blue").OnlineDeployment; dd.InstanceCount != 2 {
		t.Fatalf("the agent's instance count: %d", dd.InstanceCount)
	}
	if dep := sv.deployment("sk-ep", "blue"); dep.ProvisioningState != api.StateSucceeded || dep.ReadyInstances != 2 {
		t.Fatalf("after the report on the new spec: %s %d", dep.ProvisioningState, dep.ReadyInstances)
	}
	// Labels reach no pod: the deployment stays Succeeded.
	if err := sv.c.Do(ctx, "PATCH", epPath+"sk-ep/deployments/blue", doc{"tags": doc{"t": "2"}}, &up); err != nil || up.ProvisioningState != api.StateSucceeded || up.Tags["t"] != "2" {
		t.Fatalf("a tags update: %s %v %v", up.ProvisioningState, up.Tags, err)
	}
	err = sv.c.Do(ctx, "PATCH", epPath+"sk-ep/deployments/blue", doc{"instance_count": 9}, nil)
	wantErr(t, "an update that does not fit", err, http.StatusBadRequest, "instance_count: not enough room: 9 instances")
	err = sv.c.Do(ctx, "PATCH", epPath+"sk-ep/deployments/blue", doc{"endpoint_name": "other"}, nil)
	wantErr(t, "moving a deployment", err, http.StatusBadRequest, "endpoint_name", "cannot change")

	// A failure says why.
	sv.sync(api.DeploymentReport{ID: obj.ID, Phase: api.ClusterDeploymentFailed, Reason: "InitFailed", Message: "Traceback: ValueError: no model", Instances: 2})
	if dep := sv.deployment("sk-ep", "blue"); dep.ProvisioningState != api.StateFailed || dep.StatusMessage != "InitFailed: Traceback: ValueError: no model" {
		t.Fatalf("reported Failed: %s %q", dep.ProvisioningState, dep.StatusMessage)
	}
	// The credential is in no answer a user sees.
	var list []json.RawMessage
	if err := sv.c.Do(ctx, "GET", epPath+"sk-ep/deployments", nil, &list); err != nil || len(list) != 1 || strings.Contains(string(list[0]), dd.Token) {
		t.Fatalf("list: %d deployments, %v", len(list), err)
	}

	// Deleting: out of the cluster's desired state at once, gone once
	// the agent confirms.
	var del api.OnlineDeployment
	if err := sv.c.Do(ctx, "DELETE", epPath+"sk-ep/deployments/blue", nil, &del); err != nil || del.ProvisioningState != api.StateDeleting {
		t.Fatalf("delete: %s %v", del.ProvisioningState, err)
	}
	if _, err := sv.patchEndpoint("sk-ep", doc{"traffic": doc{"blue": 100}}); err == nil {
		t.Fatal("traffic to a deployment being deleted was accepted")
	}
	d = sv.sync()
	if !deletedRef(d, api.KindOnlineDeployment, obj.ID) {
		t.Fatalf("no deletion in %+v", d.Deleted)
	}
	waitGone(t, sv.c, epPath+"sk-ep/deployments/blue")
}

// waitGone waits until GET path answers 404.
func waitGone(t *testing.T, c *client.Client, path string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		err := c.Do(ctx, "GET", path, nil, nil)
		if client.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("%s is still there: %v", path, err)
	}
}

func TestDeploymentDefaultsAndCustomContainers(t *testing.T) {
	sv := newServing(t)
	ctx := context.Background()
	upload(t, sv.c, map[string]string{"code/score.py": "def init(): pass\n", "model/m.pkl": "m"})
	if err := sv.c.Do(ctx, "PUT", wsPath+"/environments/byoc/versions/1", doc{"image": "nginx:1.27",
		"inference_config": doc{"liveness_route": doc{"port": 8080, "path": "/health"}, "readiness_route": doc{"port": 8080, "path": "/ready"}, "scoring_route": doc{"port": 8080, "path": "/score"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatal(err)
	}
	// No scale_settings and no instance_count: target_utilization with its
	// defaults.
	auto, err := sv.createDeployment("sk-ep", "auto", with(scoreDeployment(), "instance_count", nil))
	if err != nil {
		t.Fatal(err)
	}
	if s := auto.ScaleSettings; s.Type != api.ScaleTargetUtilization || s.MinInstances != 1 || s.MaxInstances != 1 || s.TargetUtilizationPercentage != 70 || s.PollingInterval != 1 || auto.InstanceCount != 1 {
		t.Fatalf("autoscale defaults: %+v, instances %d", s, auto.InstanceCount)
	}
	// A custom container from a registered environment: no scoring
	// script, its routes to the cluster; a model file is kept as a file.
	byoc, err := sv.createDeployment("sk-ep", "byoc", doc{"environment": "azureml:byoc:1", "model": doc{"path": wsBlob + "model/m.pkl"}})
	if err != nil {
		t.Fatal(err)
	}
	if byoc.CodeConfiguration != nil {
		t.Fatalf("byoc: %+v", byoc)
	}
	d := sv.sync()
	dd := desiredObject(d, api.KindOnlineDeployment, "byoc").OnlineDeployment
	if dd.InferenceConfig == nil || dd.InferenceConfig.ScoringRoute != (api.Route{Port: 8080, Path: "/score"}) || dd.Image != "nginx:1.27" || dd.ModelName != "sk-ep-byoc" {
		t.Fatalf("desired byoc: %+v", dd)
	}
	var run api.DeploymentRun
	if err := as(sv.c, dd.Token).Do(ctx, "GET", "/deployrun/v1"+deploymentID("sk-ep", "byoc")+"/spec", nil, &run); err != nil || run.ModelFolder != "" || run.ModelURI != wsBlob+"model/m.pkl" {
		t.Fatalf("byoc run: %+v %v", run, err)
	}
	if dd := desiredObject(d, api.KindOnlineDeployment, "auto").OnlineDeployment; dd.InstanceCount != 1 || dd.ScaleSettings.MaxInstances != 1 {
		t.Fatalf("desired autoscale: %+v", dd)
	}
}

func TestDeploymentCredentialScope(t *testing.T) {
	sv := newServing(t)
	c := sv.c
	ctx := context.Background()
	upload(t, c, map[string]string{"codeA/score.py": "a", "codeB/score.py": "b", "modelA/m.pkl": "ma", "modelA2/m.pkl": "x", "secret/key.txt": "k"})
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]doc{
		"dep-a": {"model": doc{"path": wsBlob + "modelA"}, "code_configuration": doc{"code": wsBlob + "codeA", "scoring_script": "score.py"}, "environment": doc{"image": pyImage}},
		"dep-b": {"code_configuration": doc{"code": wsBlob + "codeB", "scoring_script": "score.py"}, "environment": doc{"image": pyImage}},
	} {
		if _, err := sv.createDeployment("sk-ep", name, d); err != nil {
			t.Fatal(err)
		}
	}
	d := sv.sync()
	tokA, tokB := desiredObject(d, api.KindOnlineDeployment, "dep-a").OnlineDeployment.Token, desiredObject(d, api.KindOnlineDeployment, "dep-b").OnlineDeployment.Token
	run := func(dep string) string { return "/deployrun/v1" + deploymentID("sk-ep", dep) }
	for _, tc := range []struct {
		name, token, method, path string
		want                      int
	}{
		{"own spec", tokA, "GET", run("dep-a") + "/spec", http.StatusOK},
		{"another deployment's credential", tokB, "GET", run("dep-a") + "/spec", http.StatusUnauthorized},
		{"the admin token", c.Config().Token, "GET", run("dep-a") + "/spec", http.StatusUnauthorized},
		{"no token", "", "GET", run("dep-a") + "/spec", http.StatusUnauthorized},
		{"a deployment that is not there", tokA, "GET", run("zzz") + "/spec", http.StatusUnauthorized},
		{"own model", tokA, "GET", run("dep-a") + "/datastores/workspaceblobstore/files/modelA/m.pkl", http.StatusOK},
		{"own code", tokA, "GET", run("dep-a") + "/datastores/workspaceblobstore/files/codeA/score.py", http.StatusOK},
		{"a folder beside its model", tokA, "GET", run("dep-a") + "/datastores/workspaceblobstore/files/modelA2/m.pkl", http.StatusForbidden},
		{"another deployment's code", tokA, "GET", run("dep-a") + "/datastores/workspaceblobstore/files/codeB/score.py", http.StatusForbidden},
		{"elsewhere", tokA, "GET", run("dep-a") + "/datastores/workspaceblobstore/files/secret/key.txt", http.StatusForbidden},
		{"a path that climbs", tokA, "GET", run("dep-a") + "/datastores/workspaceblobstore/files/codeA/%2e%2e/secret/key.txt", http.StatusBadRequest},
		{"a blob upload", tokA, "PUT", run("dep-a") + "/blobs/sha256:" + strings.Repeat("0", 64), http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := rawBytes(t, c, tc.method, tc.path, tc.token, nil); code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
			}
		})
	}
	var files []api.FileInfo
	if err := as(c, tokA).Do(ctx, "GET", run("dep-a")+"/datastores/workspaceblobstore/files?prefix=", nil, &files); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	if strings.Join(paths, " ") != "codeA/score.py modelA/m.pkl" {
		t.Fatalf("listing with dep-a's credential: %v", paths)
	}

	// Logs: each instance appends its own, get-logs shows the end of the
	// one written last.
	appendLogAs := func(tok, dep, instance string, off int, data string, want int) {
		t.Helper()
		code, body := rawBytes(t, c, "POST", run(dep)+"/logs/"+instance+"?offset="+strconv.Itoa(off), tok, []byte(data))
		if code != want {
			t.Fatalf("append to %s: %d %s, want %d", instance, code, body, want)
		}
	}
	appendLogAs(tokA, "dep-a", "dep-a-7f9c-abcde", 0, "old 1\nold 2\n", http.StatusOK)
	appendLogAs(tokA, "dep-a", "dep-a-7f9c-fghij", 0, "line 1\nline 2\n", http.StatusOK)
	appendLogAs(tokA, "dep-a", "dep-a-7f9c-fghij", 14, "line 3\n", http.StatusOK)
	appendLogAs(tokA, "dep-a", "dep-a-7f9c-fghij", 14, "line 3\n", http.StatusOK) // a retry
	appendLogAs(tokA, "dep-a", "dep-a-7f9c-fghij", 3, "xx", http.StatusConflict)
	appendLogAs(tokA, "dep-a", "Bad_Name", 0, "x", http.StatusBadRequest)
	appendLogAs(tokB, "dep-a", "dep-a-7f9c-fghij", 21, "forged\n", http.StatusUnauthorized)
	var logsA api.DeploymentLogs
	if err := c.Do(ctx, "GET", epPath+"sk-ep/deployments/dep-a/logs?lines=2", nil, &logsA); err != nil {
		t.Fatal(err)
	}
	if logsA.Instance != "dep-a-7f9c-fghij" || logsA.Content != "line 2\nline 3\n" {
		t.Fatalf("get-logs --lines 2: %+v", logsA)
	}
	if err := c.Do(ctx, "GET", epPath+"sk-ep/deployments/dep-a/logs?instance=dep-a-7f9c-abcde", nil, &logsA); err != nil || logsA.Content != "old 1\nold 2\n" {
		t.Fatalf("get-logs of an instance: %+v %v", logsA, err)
	}
	var none api.DeploymentLogs
	if err := c.Do(ctx, "GET", epPath+"sk-ep/deployments/dep-b/logs", nil, &none); err != nil || none.Instance != "" || none.Content != "" {
		t.Fatalf("get-logs with none shipped: %+v %v", none, err)
	}
	if strings.Contains(logs.String(), tokA) {
		t.Fatal("a deployment's token is in the log")
	}
}
