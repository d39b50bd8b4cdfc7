package workspace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

const (
	wsPath  = "/resourceGroups/rg/workspaces/ws"
	wsBlob  = "azureml://datastores/workspaceblobstore/paths/"
	pyImage = "python:3.11-slim"
)

// trainingFacts are what the fake agent reports: one node with 4 CPU and
// 8Gi, the built-in instance type and two more.
var trainingFacts = api.ClusterFacts{KubernetesVersion: "v1.34.4", TotalNodeCount: 1,
	Nodes: []api.NodeFacts{{Name: "n1", Ready: true, Labels: map[string]string{"kubernetes.io/hostname": "n1"},
		Allocatable: map[string]string{"cpu": "4", "memory": "8Gi"}}},
	InstanceTypes: []api.InstanceType{
		{Name: api.DefaultInstanceType, BuiltIn: true, Resources: api.InstanceTypeResources{
			Requests: map[string]string{"cpu": "100m", "memory": "2Gi"}, Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}},
		{Name: "big", Resources: api.InstanceTypeResources{
			Requests: map[string]string{"cpu": "8", "memory": "16Gi"}, Limits: map[string]string{"cpu": "8", "memory": "16Gi"}}},
		{Name: "gpupool", NodeSelector: map[string]string{"pool": "gpu"}, Resources: api.InstanceTypeResources{
			Requests: map[string]string{"cpu": "1", "memory": "1Gi"}, Limits: map[string]string{"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
	}}

// training is a workspace with cluster c1 connected, training enabled and
// attached as compute k8s, and its fake agent.
type training struct {
	t        *testing.T
	dir      string
	c, agent *client.Client
	rev      int64 // the desired state the agent has
	stop     func()
}

func newTraining(t *testing.T, heartbeat time.Duration) *training {
	t.Helper()
	return newTrainingWith(t, Options{Heartbeat: heartbeat})
}

func newTrainingWith(t *testing.T, opts Options) *training {
	t.Helper()
	dir := t.TempDir()
	opts.DataDir = dir
	c, stop := startWith(t, opts)
	tr := &training{t: t, dir: dir, c: c, stop: stop, agent: register(t, c, "rg", "c1")}
	tr.rev = installed(t, c, tr.agent, "rg", "c1", "default")
	if _, err := attachTo(t, c, "k8s", "c1", "default"); err != nil {
		t.Fatal(err)
	}
	tr.sync()
	waitCompute(t, c, "rg", "ws", "k8s", api.StateSucceeded, "")
	return tr
}

// sync has the agent take what changed and report, with its facts.
func (tr *training) sync(jobs ...api.JobReport) api.SyncResponse {
	tr.t.Helper()
	d := syncSince(tr.t, tr.agent, "rg", "c1", tr.rev)
	tr.rev = d.Revision
	tr.report(jobs...)
	return d
}

func (tr *training) report(jobs ...api.JobReport) {
	tr.t.Helper()
	report(tr.t, tr.agent, "rg", "c1", api.AgentReport{Revision: tr.rev, Facts: trainingFacts, Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}, Jobs: jobs})
}

// upload puts files into the datastore with the admin API, as the CLI does.
func upload(t *testing.T, c *client.Client, files map[string]string) {
	t.Helper()
	var commit api.CommitRequest
	for p, content := range files {
		sum := sha256.Sum256([]byte(content))
		digest := "sha256:" + hex.EncodeToString(sum[:])
		if code, body := rawBytes(t, c, "PUT", wsPath+"/blobs/"+digest, c.Config().Token, []byte(content)); code != http.StatusOK {
			t.Fatalf("blob %s: %d %s", p, code, body)
		}
		commit.Files = append(commit.Files, api.FileInfo{Path: p, Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:]), Mode: 0o644})
	}
	if err := c.Do(context.Background(), "POST", wsPath+"/datastores/workspaceblobstore/commit", commit, nil); err != nil {
		t.Fatal(err)
	}
}

// rawBytes sends body as it is with a bearer token (none when empty).
func rawBytes(t *testing.T, c *client.Client, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	return send(t, c, method, path, auth, body)
}

// doc is a job document as the CLI sends it.
type doc map[string]any

func helloJob() doc {
	return doc{"command": "echo hello", "environment": doc{"image": pyImage}}
}

func createJob(t *testing.T, c *client.Client, name string, d doc) (api.Job, error) {
	t.Helper()
	var j api.Job
	err := c.Do(context.Background(), "PUT", wsPath+"/jobs/"+name, d, &j)
	return j, err
}

func getJob(t *testing.T, c *client.Client, name string) api.Job {
	t.Helper()
	var j api.Job
	if err := c.Do(context.Background(), "GET", wsPath+"/jobs/"+name, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// waitJob waits until a job's status is state (and its message holds msg).
func waitJob(t *testing.T, c *client.Client, name, state, msg string) api.Job {
	t.Helper()
	var j api.Job
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Do(ctx, "GET", wsPath+"/jobs/"+name, nil, &j); err != nil {
			return false, err
		}
		return j.Status == state && strings.Contains(j.StatusMessage, msg), nil
	})
	if err != nil {
		t.Fatalf("job %s: %s %q (%v), want %s with %q", name, j.Status, j.StatusMessage, err, state, msg)
	}
	return j
}

// desiredJob finds a job in a sync answer.
func desiredJob(d api.SyncResponse, name string) *api.DesiredJob {
	for _, o := range d.Objects {
		if o.Kind == api.KindJob && o.Job != nil && o.Job.Name == name {
			return o.Job
		}
	}
	return nil
}

func deleted(d api.SyncResponse, id string) bool {
	for _, r := range d.Deleted {
		if r.Kind == api.KindJob && r.ID == id {
			return true
		}
	}
	return false
}

func jobRun(name string) string { return "/jobrun/v1" + wsPath + "/jobs/" + name }

func TestJobCreateRefusedWithReasons(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	c := tr.c
	ctx := context.Background()
	upload(t, c, map[string]string{"src/train.py": "print(1)\n", "data/iris.csv": "a,b\n1,2\n"})
	if err := c.Do(ctx, "PUT", wsPath+"/environments/myenv/versions/1", api.Environment{Image: pyImage}, nil); err != nil {
		t.Fatal(err)
	}
	// A compute whose namespace does not exist: Failed.
	if _, err := attachTo(t, c, "broken", "c1", "nowhere"); err != nil {
		t.Fatal(err)
	}
	tr.sync()
	waitCompute(t, c, "rg", "ws", "broken", api.StateFailed, "does not exist")

	with := func(f func(d doc)) doc {
		d := helloJob()
		d["compute"] = "azureml:k8s"
		f(d)
		return d
	}
	for _, tc := range []struct {
		name string
		doc  doc
		want []string
	}{
		{"unknown field named", with(func(d doc) { d["comand"] = "x" }), []string{"comand"}},
		{"sweep", with(func(d doc) { d["type"] = "sweep" }), []string{"sweep", "not supported"}},
		{"name differs from the URL", with(func(d doc) { d["name"] = "other" }), []string{"name", "other"}},
		{"compute missing", with(func(d doc) { d["compute"] = "azureml:gpu-cluster" }), []string{"compute gpu-cluster not found", "computes: broken, k8s"}},
		{"compute Failed", with(func(d doc) { d["compute"] = "azureml:broken" }), []string{"compute broken is Failed", `namespace "nowhere" does not exist`}},
		{"no compute and no default", helloJob(), []string{"no default compute", "computes: broken, k8s"}},
		{"unknown instance type, with the list", with(func(d doc) { d["resources"] = doc{"instance_type": "huge"} }),
			[]string{"resources.instance_type: instance type huge not found on cluster c1; instance types: big (cpu 8, memory 16Gi), defaultinstancetype (cpu 100m, memory 2Gi), gpupool (cpu 1, memory 1Gi, nvidia.com/gpu 1)"}},
		{"never fits, with the numbers", with(func(d doc) { d["resources"] = doc{"instance_type": "big"} }),
			[]string{"instance type big can never run on cluster c1: it requests 8 CPU, 16Gi and the largest node has 4 CPU, 8Gi"}},
		{"nodeSelector matches no node", with(func(d doc) { d["resources"] = doc{"instance_type": "gpupool"} }), []string{"no Ready node matches its nodeSelector {pool: gpu}"}},
		{"environment missing", with(func(d doc) { d["environment"] = "azureml:nope:1" }), []string{"environment nope not found"}},
		{"environment version missing", with(func(d doc) { d["environment"] = "azureml:myenv:2" }), []string{"environment myenv version 2 not found; versions: 1"}},
		{"data asset missing", with(func(d doc) { d["inputs"] = doc{"d": doc{"path": "azureml:iris:1"}} }), []string{"inputs.d.path", "data asset iris not found"}},
		{"datastore path missing", with(func(d doc) { d["inputs"] = doc{"d": doc{"path": wsBlob + "nothing/"}} }), []string{"inputs.d.path", "not found in datastore"}},
		{"uri_file naming a folder", with(func(d doc) { d["inputs"] = doc{"d": doc{"type": "uri_file", "path": wsBlob + "data"}} }), []string{"is a folder", "uri_file needs a file"}},
		{"code missing", with(func(d doc) { d["code"] = wsBlob + "LocalUpload/abc/src" }), []string{"code:", "not found in datastore"}},
		{"several problems at once", with(func(d doc) {
			d["environment"] = "azureml:nope@latest"
			d["inputs"] = doc{"d": doc{"path": wsBlob + "nothing/"}}
		}), []string{"environment nope not found", "inputs.d.path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := createJob(t, c, "job1", tc.doc)
			if statusOf(err) != http.StatusBadRequest {
				t.Fatalf("%v, want 400", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q, want it to say %q", err, w)
				}
			}
			var jobs []api.Job
			if err := c.Do(ctx, "GET", wsPath+"/jobs", nil, &jobs); err != nil || len(jobs) != 0 {
				t.Fatalf("something was stored: %v %v", jobs, err)
			}
		})
	}
	// None of them reached the agent.
	if d := syncSince(t, tr.agent, "rg", "c1", 0); desiredJob(d, "job1") != nil {
		t.Fatalf("a refused job was synced: %+v", d)
	}
	// The same names pass once the world has them.
	d := with(func(d doc) {
		d["environment"] = "azureml:myenv@latest"
		d["code"] = wsBlob + "src"
		d["inputs"] = doc{"d": doc{"type": "uri_file", "path": wsBlob + "data/iris.csv"}, "folder": doc{"path": wsBlob + "data/"}}
	})
	if _, err := createJob(t, c, "job1", d); err != nil {
		t.Fatal(err)
	}
	if _, err := createJob(t, c, "job1", d); statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("the same name again: %v, want 409", err)
	}
}

func TestJobRefusedWhenTrainingOffOrClusterOffline(t *testing.T) {
	tr := newTraining(t, time.Second)
	c := tr.c
	// Cluster c2: the ML extension for inference only.
	agent2 := register(t, c, "rg", "c2")
	if err := c.Do(context.Background(), "PUT", "/resourceGroups/rg/connectedClusters/c2/extensions/ml-inf",
		req(map[string]string{"enableInference": "True", "allowInsecureConnections": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := attachTo(t, c, "k8s2", "c2", "default"); err != nil {
		t.Fatal(err)
	}
	d := syncSince(t, agent2, "rg", "c2", 0)
	report(t, agent2, "rg", "c2", api.AgentReport{Revision: d.Revision, Facts: trainingFacts, Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml-inf", Generation: 1, InstallState: api.InstallInstalled}}})
	waitCompute(t, c, "rg", "ws", "k8s2", api.StateSucceeded, "")
	job := helloJob()
	job["compute"] = "azureml:k8s2"
	_, err := createJob(t, c, "j", job)
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "Training feature is not enabled on cluster c2 (extension ml-inf)") ||
		!strings.Contains(err.Error(), "enableTraining=True") {
		t.Fatalf("training off: %v", err)
	}

	// c1 stops reporting: Offline after two heartbeats and a half.
	job["compute"] = "azureml:k8s"
	err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		var cc api.ConnectedCluster
		if err := c.Do(context.Background(), "GET", "/resourceGroups/rg/connectedClusters/c1", nil, &cc); err != nil {
			return false, err
		}
		return cc.ConnectivityStatus == api.Offline, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = createJob(t, c, "j", job)
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "cluster rg/c1 is Offline (last seen") || !strings.Contains(err.Error(), "reconnect its agent") {
		t.Fatalf("cluster offline: %v", err)
	}
	// Back: accepted.
	tr.report()
	if _, err := createJob(t, c, "j", job); err != nil {
		t.Fatalf("after the cluster reported again: %v", err)
	}
}

// TestJobLifecycle follows a job from its submission to its end: what the
// agent gets, what the job's own credential reaches, and how reports move
// its state.
func TestJobLifecycle(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	c := tr.c
	ctx := context.Background()
	upload(t, c, map[string]string{"LocalUpload/1/src/train.py": "print('hi')\n", "LocalUpload/2/iris/iris.csv": "a,b\n1,2\n"})
	if err := c.Do(ctx, "PUT", wsPath+"/data/iris/versions/1", api.Data{Path: wsBlob + "LocalUpload/2/iris/"}, nil); err != nil {
		t.Fatal(err)
	}
	// No compute named: the only one.
	j, err := createJob(t, c, "train_1", doc{"$schema": "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json",
		"command": "python train.py --data ${{inputs.data}} --lr ${{inputs.lr}} --out ${{outputs.model}}", "code": wsBlob + "LocalUpload/1/src",
		"environment": doc{"image": pyImage}, "experiment_name": "iris", "tags": doc{"team": "a"},
		"inputs":  doc{"data": doc{"path": "azureml:iris@latest"}, "lr": 0.01},
		"outputs": doc{"model": doc{}}, "limits": doc{"timeout": 600}})
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.JobNotStarted || j.Compute != "azureml:k8s" || j.Resources.InstanceType != api.DefaultInstanceType ||
		j.Outputs["model"].Path != wsBlob+"azureml/train_1/model/" || j.Services["Studio"].Endpoint == "" || j.ID != wsPath+"/jobs/train_1" {
		t.Fatalf("created job: %+v", j)
	}

	// The agent gets it with its credential.
	d := tr.sync()
	dj := desiredJob(d, "train_1")
	if dj == nil || dj.Token == "" || dj.Image != pyImage || dj.Namespace != "default" || dj.InstanceType != api.DefaultInstanceType ||
		dj.InstanceCount != 1 || dj.TimeoutSeconds != 600 || dj.Cancel || dj.Compute != "k8s" {
		t.Fatalf("desired job: %+v in %+v", dj, d)
	}
	jc := as(c, dj.Token)
	var run api.JobRun
	if err := jc.Do(ctx, "GET", jobRun("train_1")+"/spec", nil, &run); err != nil {
		t.Fatal(err)
	}
	if run.Command != j.Command || run.Code != wsBlob+"LocalUpload/1/src" || run.ExperimentName != "iris" ||
		run.Inputs["data"].URI != wsBlob+"LocalUpload/2/iris/" || run.Inputs["data"].Type != "uri_folder" ||
		run.Inputs["lr"].Literal == nil || *run.Inputs["lr"].Literal != "0.01" ||
		run.Outputs["model"].URI != wsBlob+"azureml/train_1/model/" || run.Artifacts != wsBlob+"ExperimentRun/dcid.train_1/outputs/" {
		t.Fatalf("job run: %+v", run)
	}

	id := wsPath + "/jobs/train_1"
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobQueued, Message: "waiting for available resources: needs 1 x (0.1 CPU, 2Gi)"})
	waitJob(t, c, "train_1", api.JobQueued, "needs 1 x (0.1 CPU, 2Gi)")
	started := time.Now().UTC().Truncate(time.Second)
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobStarting, StartTime: &started})
	waitJob(t, c, "train_1", api.JobPreparing, "")
	phase := func(p string) {
		t.Helper()
		if err := jc.Do(ctx, "POST", jobRun("train_1")+"/phase", api.JobPhase{Phase: p}, nil); err != nil {
			t.Fatal(err)
		}
	}
	phase(api.JobPreparing)
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobRunning, StartTime: &started})
	if j := getJob(t, c, "train_1"); j.Status != api.JobPreparing {
		t.Fatalf("pods running, wrapper preparing: %s", j.Status)
	}
	phase(api.JobRunning)
	j = waitJob(t, c, "train_1", api.JobRunning, "")
	if j.StartTime == nil || j.EndTime != nil {
		t.Fatalf("running job times: %v %v", j.StartTime, j.EndTime)
	}
	phase(api.JobPreparing) // late: phases only go forward
	if j := getJob(t, c, "train_1"); j.Status != api.JobRunning {
		t.Fatalf("after a late Preparing: %s", j.Status)
	}
	if code, body := rawBytes(t, c, "POST", jobRun("train_1")+"/phase", dj.Token, []byte(`{"phase":"Done"}`)); code != http.StatusBadRequest {
		t.Fatalf("unknown phase: %d %s", code, body)
	}
	appendLog(t, c, dj.Token, "train_1", "user_logs/std_log.txt", 0, "hi\n", http.StatusOK)
	phase(api.JobFinalizing)
	waitJob(t, c, "train_1", api.JobFinalizing, "")
	// The wrapper keeps the outputs.
	putFile(t, c, dj.Token, "train_1", "azureml/train_1/model/model.pkl", "weights", http.StatusOK)
	putFile(t, c, dj.Token, "train_1", "ExperimentRun/dcid.train_1/outputs/metrics.json", "{}", http.StatusOK)

	// A report changes nothing the agent gets.
	d = syncAfter(t, tr, 200*time.Millisecond)
	if len(d.Objects) != 0 || len(d.Deleted) != 0 {
		t.Fatalf("reports came back to the agent: %+v", d)
	}
	ended := time.Now().UTC().Truncate(time.Second)
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobSucceeded, StartTime: &started, EndTime: &ended})
	j = waitJob(t, c, "train_1", api.JobCompleted, "")
	if j.EndTime == nil || !j.EndTime.Equal(ended) || j.StartTime == nil {
		t.Fatalf("completed job times: %v %v", j.StartTime, j.EndTime)
	}
	// Retired: the agent is told to delete it.
	d = tr.sync()
	if !deleted(d, id) {
		t.Fatalf("after the end: %+v, want the job deleted", d)
	}
	if d := syncSince(t, tr.agent, "rg", "c1", 0); desiredJob(d, "train_1") != nil {
		t.Fatalf("a reset still has the ended job: %+v", d)
	}
	// Later reports of it change nothing; the state stays.
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobFailed, Reason: "Error"})
	if j := getJob(t, c, "train_1"); j.Status != api.JobCompleted {
		t.Fatalf("a report after the end: %s", j.Status)
	}
	// Its credential reads on, and writes no more.
	if err := jc.Do(ctx, "GET", jobRun("train_1")+"/spec", nil, nil); err != nil {
		t.Fatalf("read after the end: %v", err)
	}
	appendLog(t, c, dj.Token, "train_1", "user_logs/std_log.txt", 3, "more\n", http.StatusConflict)
	if err := jc.Do(ctx, "POST", jobRun("train_1")+"/phase", api.JobPhase{Phase: api.JobFinalizing}, nil); statusOf(err) != http.StatusConflict {
		t.Fatalf("phase after the end: %v, want 409", err)
	}
	// The outputs are in the datastore for the user.
	var files []api.FileInfo
	if err := c.Do(ctx, "GET", wsPath+"/datastores/workspaceblobstore/files?prefix=azureml/train_1/", nil, &files); err != nil || len(files) != 1 || files[0].Path != "azureml/train_1/model/model.pkl" {
		t.Fatalf("outputs: %v %v", files, err)
	}

	// Tags change afterwards; nothing else does.
	var patched api.Job
	if err := c.Do(ctx, "PATCH", wsPath+"/jobs/train_1", doc{"tags": doc{"stage": "done", "team": nil}}, &patched); err != nil || len(patched.Tags) != 1 || patched.Tags["stage"] != "done" {
		t.Fatalf("tags: %v %v, want stage added and team removed", patched.Tags, err)
	}
	if err := c.Do(ctx, "PATCH", wsPath+"/jobs/train_1", doc{"compute": "azureml:other", "tags": doc{}}, nil); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "compute cannot be changed") {
		t.Fatalf("changing the compute: %v", err)
	}
	var list []api.Job
	if err := c.Do(ctx, "GET", wsPath+"/jobs", nil, &list); err != nil || len(list) != 1 || list[0].Name != "train_1" || list[0].Status != api.JobCompleted {
		t.Fatalf("list: %+v %v", list, err)
	}
}

// syncAfter is a sync that waits at most about d for a change.
func syncAfter(t *testing.T, tr *training, d time.Duration) api.SyncResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var resp api.SyncResponse
	err := tr.agent.Do(ctx, "GET", fmt.Sprintf("/agent/v1/resourceGroups/rg/connectedClusters/c1/sync?since=%d", tr.rev), nil, &resp)
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return resp
}

func appendLog(t *testing.T, c *client.Client, token, job, file string, off int64, data string, want int) []byte {
	t.Helper()
	code, body := rawBytes(t, c, "POST", fmt.Sprintf("%s/logs/%s?offset=%d", jobRun(job), file, off), token, []byte(data))
	if code != want {
		t.Fatalf("append %q at %d to %s: %d %s, want %d", data, off, file, code, body, want)
	}
	return body
}

// putFile uploads one file with a job's credential; want is the commit's answer.
func putFile(t *testing.T, c *client.Client, token, job, path, content string, want int) {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	h := hex.EncodeToString(sum[:])
	if code, body := rawBytes(t, c, "PUT", jobRun(job)+"/blobs/sha256:"+h, token, []byte(content)); code != http.StatusOK {
		t.Fatalf("blob: %d %s", code, body)
	}
	commit, err := json.Marshal(api.CommitRequest{Files: []api.FileInfo{{Path: path, Size: int64(len(content)), SHA256: h, Mode: 0o644}}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := rawBytes(t, c, "POST", jobRun(job)+"/datastores/workspaceblobstore/commit", token, commit); code != want {
		t.Fatalf("commit %s: %d %s, want %d", path, code, body, want)
	}
}

func TestJobEnvironments(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	c := tr.c
	ctx := context.Background()
	if err := c.Do(ctx, "PUT", wsPath+"/environments/built/versions/1", api.Environment{Build: &api.EnvironmentBuild{Path: wsBlob + "ctx/"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "PUT", wsPath+"/environments/mine/versions/3", api.Environment{Image: "registry.example.com/team/train:3"}, nil); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env   any
		image string
	}{
		"inline":           {doc{"image": pyImage, "conda_file": doc{"dependencies": []string{"python=3.11"}}}, pyImage},
		"build":            {doc{"build": doc{"path": wsBlob + "ctx/"}}, defaultBuildImage},
		"registered":       {"azureml:mine@latest", "registry.example.com/team/train:3"},
		"registered-build": {"azureml:built:1", defaultBuildImage},
		"curated":          {"azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest", "mcr.microsoft.com/azureml/curated/sklearn-1.0-ubuntu20.04-py38-cpu:latest"},
		"registry":         {"azureml://registries/azureml/environments/sklearn-1.5/labels/latest", "mcr.microsoft.com/azureml/curated/sklearn-1.5:latest"},
	} {
		d := helloJob()
		d["environment"] = tc.env
		if _, err := createJob(t, c, name, d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if dj := desiredJob(tr.sync(), name); dj == nil || dj.Image != tc.image {
			t.Fatalf("%s: %+v, want image %s", name, dj, tc.image)
		}
	}
}

// TestJobSurvivesRestart: a job, its credential and its state are the
// same after the workspace restarts, and its cluster's reports go on
// moving it to its end.
func TestJobSurvivesRestart(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	if _, err := createJob(t, tr.c, "durable", helloJob()); err != nil {
		t.Fatal(err)
	}
	id := wsPath + "/jobs/durable"
	tok := desiredJob(tr.sync(api.JobReport{ID: id, Phase: api.ClusterJobRunning}), "durable").Token
	tr.stop()
	c, _ := startWith(t, Options{DataDir: tr.dir, Heartbeat: 30 * time.Second})
	tr.c, tr.agent = c, as(c, tr.agent.Config().Token)
	if d := syncSince(t, tr.agent, "rg", "c1", 0); desiredJob(d, "durable") == nil || desiredJob(d, "durable").Token != tok {
		t.Fatalf("after a restart the agent gets %+v", d)
	}
	if err := as(c, tok).Do(context.Background(), "GET", jobRun("durable")+"/spec", nil, nil); err != nil {
		t.Fatalf("the job's credential after a restart: %v", err)
	}
	waitJob(t, c, "durable", api.JobPreparing, "")
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobSucceeded})
	waitJob(t, c, "durable", api.JobCompleted, "")
	if d := tr.sync(); !deleted(d, id) {
		t.Fatalf("after the end: %+v", d)
	}
}

func TestJobCancel(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	c := tr.c
	ctx := context.Background()

	// Before the cluster heard of it: Canceled at once, and the agent
	// deletes whatever it made of it.
	if _, err := createJob(t, c, "early", helloJob()); err != nil {
		t.Fatal(err)
	}
	d := tr.sync()
	if desiredJob(d, "early") == nil {
		t.Fatalf("sync: %+v", d)
	}
	var j api.Job
	if err := c.Do(ctx, "POST", wsPath+"/jobs/early/cancel", nil, &j); err != nil || (j.Status != api.JobCancelRequested && j.Status != api.JobCanceled) {
		t.Fatalf("cancel: %s %v", j.Status, err)
	}
	j = waitJob(t, c, "early", api.JobCanceled, "Canceled by user")
	if j.EndTime == nil {
		t.Fatal("a cancelled job without an end time")
	}
	if d := tr.sync(); !deleted(d, wsPath+"/jobs/early") {
		t.Fatalf("after cancelling: %+v, want the job deleted", d)
	}
	if err := c.Do(ctx, "POST", wsPath+"/jobs/early/cancel", nil, nil); statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "is Canceled; nothing to cancel") {
		t.Fatalf("cancel again: %v, want 409", err)
	}

	// Running on the cluster: the cluster ends it.
	if _, err := createJob(t, c, "late", helloJob()); err != nil {
		t.Fatal(err)
	}
	id := wsPath + "/jobs/late"
	d = tr.sync(api.JobReport{ID: id, Phase: api.ClusterJobRunning})
	waitJob(t, c, "late", api.JobPreparing, "")
	if err := c.Do(ctx, "POST", wsPath+"/jobs/late/cancel", nil, &j); err != nil || j.Status != api.JobCancelRequested {
		t.Fatalf("cancel a running job: %s %v", j.Status, err)
	}
	d = tr.sync()
	if dj := desiredJob(d, "late"); dj == nil || !dj.Cancel || dj.Token == "" {
		t.Fatalf("after cancel: %+v, want the job with cancel set", d)
	}
	if j := getJob(t, c, "late"); j.Status != api.JobCancelRequested {
		t.Fatalf("before the cluster ended it: %s", j.Status)
	}
	tr.report(api.JobReport{ID: id, Phase: api.ClusterJobCanceled})
	waitJob(t, c, "late", api.JobCanceled, "Canceled by user")
	if d := tr.sync(); !deleted(d, id) {
		t.Fatalf("after the cluster cancelled it: %+v", d)
	}

	// An ended job has nothing to cancel.
	if _, err := createJob(t, c, "done", helloJob()); err != nil {
		t.Fatal(err)
	}
	tr.sync(api.JobReport{ID: wsPath + "/jobs/done", Phase: api.ClusterJobSucceeded})
	waitJob(t, c, "done", api.JobCompleted, "")
	if err := c.Do(ctx, "POST", wsPath+"/jobs/done/cancel", nil, nil); statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "job done is Completed; nothing to cancel") {
		t.Fatalf("cancel a completed job: %v", err)
	}
	// A failure says why.
	if _, err := createJob(t, c, "bad", helloJob()); err != nil {
		t.Fatal(err)
	}
	tr.sync(api.JobReport{ID: wsPath + "/jobs/bad", Phase: api.ClusterJobFailed, Reason: "Error", Message: "exit code 1: Traceback ..."})
	waitJob(t, c, "bad", api.JobFailed, "Error: exit code 1: Traceback")
}

func TestJobCredentialScope(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	c := tr.c
	ctx := context.Background()
	upload(t, c, map[string]string{"codeA/main.py": "a", "codeB/main.py": "b", "in/x.csv": "x", "in/y.csv": "y", "secret/key.txt": "k"})
	jobA := helloJob()
	jobA["code"] = wsBlob + "codeA"
	jobA["inputs"] = doc{"x": doc{"type": "uri_file", "path": wsBlob + "in/x.csv"}}
	jobA["outputs"] = doc{"model": doc{}}
	jobB := helloJob()
	jobB["code"] = wsBlob + "codeB"
	for name, d := range map[string]doc{"a": jobA, "b": jobB} {
		if _, err := createJob(t, c, name, d); err != nil {
			t.Fatal(err)
		}
	}
	d := tr.sync()
	tokA, tokB := desiredJob(d, "a").Token, desiredJob(d, "b").Token
	admin := c.Config().Token
	get := func(token, job, path string) int {
		t.Helper()
		code, _ := rawBytes(t, c, "GET", jobRun(job)+path, token, nil)
		return code
	}
	for _, tc := range []struct {
		name, token, job, path string
		want                   int
	}{
		{"own spec", tokA, "a", "/spec", http.StatusOK},
		{"another job's credential", tokB, "a", "/spec", http.StatusUnauthorized},
		{"the admin token", admin, "a", "/spec", http.StatusUnauthorized},
		{"no token", "", "a", "/spec", http.StatusUnauthorized},
		{"a job that is not there", tokA, "zzz", "/spec", http.StatusUnauthorized},
		{"own code", tokA, "a", "/datastores/workspaceblobstore/files/codeA/main.py", http.StatusOK},
		{"own input file", tokA, "a", "/datastores/workspaceblobstore/files/in/x.csv", http.StatusOK},
		{"a file beside its input", tokA, "a", "/datastores/workspaceblobstore/files/in/y.csv", http.StatusForbidden},
		{"another job's code", tokA, "a", "/datastores/workspaceblobstore/files/codeB/main.py", http.StatusForbidden},
		{"elsewhere", tokA, "a", "/datastores/workspaceblobstore/files/secret/key.txt", http.StatusForbidden},
		{"a path that climbs", tokA, "a", "/datastores/workspaceblobstore/files/codeA/%2e%2e/secret/key.txt", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := get(tc.token, tc.job, tc.path); got != tc.want {
				t.Fatalf("GET %s with %s: %d, want %d", tc.path, tc.name, got, tc.want)
			}
		})
	}
	// A listing shows what the job may read only.
	var files []api.FileInfo
	if err := as(c, tokA).Do(ctx, "GET", jobRun("a")+"/datastores/workspaceblobstore/files?prefix=", nil, &files); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	if strings.Join(paths, " ") != "codeA/main.py in/x.csv" {
		t.Fatalf("listing with job a's credential: %v", paths)
	}
	// Writes: its outputs and artifacts, nothing else.
	putFile(t, c, tokA, "a", "azureml/a/model/m.bin", "m", http.StatusOK)
	putFile(t, c, tokA, "a", "ExperimentRun/dcid.a/outputs/o.txt", "o", http.StatusOK)
	putFile(t, c, tokA, "a", "codeA/main.py", "overwritten", http.StatusForbidden)
	putFile(t, c, tokA, "a", "azureml/b/model/m.bin", "m", http.StatusForbidden)
	putFile(t, c, tokB, "b", "azureml/a/model/m.bin", "m", http.StatusForbidden)
	// Another cluster's agent cannot report on the job.
	other := register(t, c, "rg", "c2")
	report(t, other, "rg", "c2", api.AgentReport{Jobs: []api.JobReport{{ID: wsPath + "/jobs/a", Phase: api.ClusterJobSucceeded}}})
	if j := getJob(t, c, "a"); j.Status != api.JobNotStarted {
		t.Fatalf("after another cluster reported on job a: %s", j.Status)
	}
	// Admin reads anything.
	if code, body := rawBytes(t, c, "GET", wsPath+"/datastores/workspaceblobstore/files/secret/key.txt", admin, nil); code != http.StatusOK || string(body) != "k" {
		t.Fatalf("admin read: %d %s", code, body)
	}
	// The credential never shows in what users see, nor in the log.
	var j api.Job
	if code, body := rawBytes(t, c, "GET", wsPath+"/jobs/a", admin, nil); code != http.StatusOK || bytes.Contains(body, []byte(tokA)) || json.Unmarshal(body, &j) != nil {
		t.Fatalf("job show: %d, holds the token or is not a job", code)
	}
	if strings.Contains(logs.String(), tokA) {
		t.Fatal("the job's token is in the log")
	}
}

func TestJobLogs(t *testing.T) {
	tr := newTrainingWith(t, Options{Heartbeat: 30 * time.Second, logFileLimit: 64})
	c := tr.c
	ctx := context.Background()
	if _, err := createJob(t, c, "logger", helloJob()); err != nil {
		t.Fatal(err)
	}
	tok := desiredJob(tr.sync(), "logger").Token
	const f = "user_logs/std_log.txt"

	// A reader waiting for the first bytes is woken by them.
	got := make(chan api.JobLogs, 1)
	go func() {
		var l api.JobLogs
		if err := c.Do(ctx, "GET", wsPath+"/jobs/logger/logs?wait=20", nil, &l); err != nil {
			t.Error(err)
		}
		got <- l
	}()
	// Whether the reader waits already or reads after the append, it
	// answers with the bytes.
	var first api.JobLogs
	appendLog(t, c, tok, "logger", f, 0, "line 1\n", http.StatusOK)
	select {
	case first = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll did not wake on an append")
	}
	if len(first.Chunks) != 1 || first.Chunks[0].File != f || string(first.Chunks[0].Data) != "line 1\n" || first.Done || first.Status != api.JobNotStarted {
		t.Fatalf("first answer: %+v", first)
	}

	appendLog(t, c, tok, "logger", f, 7, "line 2\n", http.StatusOK)
	// A retry of an append partly kept: only the new part is added.
	var res logAppendResult
	if err := json.Unmarshal(appendLog(t, c, tok, "logger", f, 7, "line 2\nline 3\n", http.StatusOK), &res); err != nil || res.Size != 21 {
		t.Fatalf("retry: %+v %v, want size 21", res, err)
	}
	// A retry of what is there: nothing added.
	appendLog(t, c, tok, "logger", f, 0, "line 1\n", http.StatusOK)
	// Different bytes at a kept offset, or a gap: refused with the size.
	var conflict logConflict
	if err := json.Unmarshal(appendLog(t, c, tok, "logger", f, 7, "LINE 2\n", http.StatusConflict), &conflict); err != nil || conflict.Size != 21 {
		t.Fatalf("conflicting append: %+v %v", conflict, err)
	}
	if err := json.Unmarshal(appendLog(t, c, tok, "logger", f, 100, "x", http.StatusConflict), &conflict); err != nil || conflict.Size != 21 {
		t.Fatalf("append past the end: %+v %v", conflict, err)
	}
	appendLog(t, c, tok, "logger", "outputs/model.txt", 0, "x", http.StatusBadRequest)
	appendLog(t, c, tok, "logger", "user_logs/std_log.log", 0, "x", http.StatusBadRequest)
	appendLog(t, c, tok, "logger", "system_logs/lifecycler/wrapper.txt", 0, "started\n", http.StatusOK)
	// Past the limit (64 bytes here): refused whole.
	appendLog(t, c, tok, "logger", "user_logs/big.txt", 0, strings.Repeat("x", 60), http.StatusOK)
	appendLog(t, c, tok, "logger", "user_logs/big.txt", 60, "12345", http.StatusRequestEntityTooLarge)
	if err := json.Unmarshal(appendLog(t, c, tok, "logger", "user_logs/big.txt", 60, "1234", http.StatusOK), &res); err != nil || res.Size != 64 {
		t.Fatalf("up to the limit: %+v %v", res, err)
	}

	// A reader at the end of one file gets the rest of the others.
	var l api.JobLogs
	if err := c.Do(ctx, "GET", wsPath+"/jobs/logger/logs?from="+f+":21,user_logs/big.txt:64", nil, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Chunks) != 1 || l.Chunks[0].File != "system_logs/lifecycler/wrapper.txt" {
		t.Fatalf("from the end of std_log: %+v", l)
	}
	if err := c.Do(ctx, "GET", wsPath+"/jobs/logger/logs?from="+f+":7,user_logs/big.txt:64", nil, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Chunks) != 2 || string(l.Chunks[1].Data) != "line 2\nline 3\n" || l.Chunks[1].Offset != 7 {
		t.Fatalf("from 7: %+v", l)
	}
	if err := c.Do(ctx, "GET", wsPath+"/jobs/logger/logs?from=nonsense", nil, nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("from=nonsense: %v", err)
	}

	// A state change wakes a reader that has every byte.
	all := "?wait=20&from=" + f + ":21,system_logs/lifecycler/wrapper.txt:8,user_logs/big.txt:64"
	go func() {
		var l api.JobLogs
		if err := c.Do(ctx, "GET", wsPath+"/jobs/logger/logs"+all, nil, &l); err != nil {
			t.Error(err)
		}
		got <- l
	}()
	// The report may come before or after the reader waits: both answer.
	tr.report(api.JobReport{ID: wsPath + "/jobs/logger", Phase: api.ClusterJobSucceeded})
	select {
	case l = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll did not wake on the state change")
	}
	if len(l.Chunks) != 0 || l.Status != api.JobCompleted || !l.Done {
		t.Fatalf("at the end: %+v, want done", l)
	}
	// Ended: the logs stay, whole.
	code, body := rawBytes(t, c, "GET", wsPath+"/jobs/logger/logs/"+f, c.Config().Token, nil)
	if code != http.StatusOK || string(body) != "line 1\nline 2\nline 3\n" {
		t.Fatalf("log file: %d %q", code, body)
	}
	if code, body := rawBytes(t, c, "GET", wsPath+"/jobs/logger/logs/user_logs/none.txt", c.Config().Token, nil); code != http.StatusNotFound || !strings.Contains(string(body), "user_logs/std_log.txt") {
		t.Fatalf("a missing log file: %d %s", code, body)
	}
	if err := c.Do(ctx, "GET", wsPath+"/jobs/logger/logs", nil, &l); err != nil || !l.Done || len(l.Chunks) != 3 {
		t.Fatalf("everything at once after the end: %+v %v", l, err)
	}
	fi, err := os.Stat(filepath.Join(tr.dir, "joblogs", "rg", "ws", "logger", "user_logs", "std_log.txt"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file mode: %v %v", fi, err)
	}
}

func TestAssetVersions(t *testing.T) {
	c, _ := startWith(t, Options{DataDir: t.TempDir()})
	ctx := context.Background()
	env := wsPath + "/environments/sk"
	var e api.Environment
	if err := c.Do(ctx, "PUT", env+"/versions/1", api.Environment{Image: pyImage, Description: "first"}, &e); err != nil || e.Version != "1" || e.Name != "sk" || e.OSType != "linux" || e.ID == "" {
		t.Fatalf("create: %+v %v", e, err)
	}
	// The same again: fine; other content: refused.
	if err := c.Do(ctx, "PUT", env+"/versions/1", api.Environment{Name: "sk", Image: pyImage, Description: "first"}, nil); err != nil {
		t.Fatalf("the same version again: %v", err)
	}
	if err := c.Do(ctx, "PUT", env+"/versions/1", api.Environment{Image: "python:3.12"}, nil); statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "versions are immutable") {
		t.Fatalf("other content: %v", err)
	}
	if err := c.Do(ctx, "PUT", env+"/versions/7", api.Environment{Build: &api.EnvironmentBuild{Path: wsBlob + "ctx/"}}, nil); err != nil {
		t.Fatal(err)
	}
	// Next: 1 + the highest.
	if err := c.Do(ctx, "POST", env+"/versions", api.Environment{Image: "python:3.13"}, &e); err != nil || e.Version != "8" {
		t.Fatalf("next version: %+v %v", e, err)
	}
	if err := c.Do(ctx, "GET", env+"?label=latest", nil, &e); err != nil || e.Version != "8" || e.Image != "python:3.13" {
		t.Fatalf("latest: %+v %v", e, err)
	}
	var vs []api.Environment
	if err := c.Do(ctx, "GET", env+"/versions", nil, &vs); err != nil || len(vs) != 3 || vs[0].Version != "8" {
		t.Fatalf("versions: %+v %v", vs, err)
	}
	if err := c.Do(ctx, "GET", env+"/versions/2", nil, nil); statusOf(err) != http.StatusNotFound || !strings.Contains(err.Error(), "versions: 1, 7, 8") {
		t.Fatalf("a missing version: %v", err)
	}
	for _, bad := range []struct {
		body any
		want string
	}{
		{api.Environment{}, "image or build is required"},
		{api.Environment{Image: pyImage, Build: &api.EnvironmentBuild{Path: "x"}}, "not both"},
		{map[string]any{"image": pyImage, "imagee": "x"}, "imagee"},
		{api.Environment{Name: "other", Image: pyImage}, "differs"},
	} {
		if err := c.Do(ctx, "PUT", env+"/versions/9", bad.body, nil); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("%+v: %v, want 400 with %q", bad.body, err, bad.want)
		}
	}
	if err := c.Do(ctx, "PUT", wsPath+"/environments/other/versions/1", api.Environment{Image: pyImage}, nil); err != nil {
		t.Fatal(err)
	}
	var all []api.Environment
	if err := c.Do(ctx, "GET", wsPath+"/environments", nil, &all); err != nil || len(all) != 2 || all[0].Name != "other" || all[1].Version != "8" {
		t.Fatalf("list: %+v %v", all, err)
	}

	// Data: the path must be there, as the type says.
	upload(t, c, map[string]string{"d/iris.csv": "a\n", "t/MLTable": "paths: []\n", "t/x.csv": "x\n"})
	for _, tc := range []struct {
		d    api.Data
		want string // "" accepted
	}{
		{api.Data{Path: wsBlob + "d/"}, ""},
		{api.Data{Type: "uri_file", Path: wsBlob + "d/iris.csv"}, ""},
		{api.Data{Type: "mltable", Path: wsBlob + "t/"}, ""},
		{api.Data{Type: "uri_file", Path: wsBlob + "d"}, "is a folder"},
		{api.Data{Type: "uri_folder", Path: wsBlob + "d/iris.csv"}, "is a file"},
		{api.Data{Type: "mltable", Path: wsBlob + "d/"}, "no MLTable file"},
		{api.Data{Path: wsBlob + "nothing/"}, "not found in datastore"},
		{api.Data{Path: "https://example.com/x"}, "not a datastore URI"},
		{api.Data{Path: "azureml://datastores/other/paths/d/"}, "datastore other not found"},
		{api.Data{Type: "tabular", Path: wsBlob + "d/"}, "use uri_folder"},
	} {
		var got api.Data
		err := c.Do(ctx, "POST", wsPath+"/data/iris/versions", tc.d, &got)
		switch {
		case tc.want == "" && err != nil:
			t.Fatalf("%+v: %v", tc.d, err)
		case tc.want != "" && (statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want)):
			t.Fatalf("%+v: %v, want 400 with %q", tc.d, err, tc.want)
		}
	}
	var data api.Data
	if err := c.Do(ctx, "GET", wsPath+"/data/iris", nil, &data); err != nil || data.Version != "3" || data.Type != "mltable" {
		t.Fatalf("latest data: %+v %v", data, err)
	}
}

func TestDefaultCompute(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	c := tr.c
	ctx := context.Background()
	var wsv workspaceView
	if err := c.Do(ctx, "GET", wsPath, nil, &wsv); err != nil || wsv.Name != "ws" || wsv.ResourceGroup != "rg" || wsv.DefaultCompute != "" {
		t.Fatalf("workspace: %+v %v", wsv, err)
	}
	if _, err := attachTo(t, c, "second", "c1", "default"); err != nil {
		t.Fatal(err)
	}
	tr.sync()
	waitCompute(t, c, "rg", "ws", "second", api.StateSucceeded, "")
	if _, err := createJob(t, c, "j1", helloJob()); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "computes: k8s, second") {
		t.Fatalf("two computes, no default: %v", err)
	}
	if err := c.Do(ctx, "PATCH", wsPath, doc{"default_compute": "nope"}, nil); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "computes: k8s, second") {
		t.Fatalf("default compute that is not there: %v", err)
	}
	if err := c.Do(ctx, "PATCH", wsPath, doc{"default_compute": "second"}, &wsv); err != nil || wsv.DefaultCompute != "second" {
		t.Fatalf("set the default: %+v %v", wsv, err)
	}
	if j, err := createJob(t, c, "j1", helloJob()); err != nil || j.Compute != "azureml:second" {
		t.Fatalf("job on the default compute: %v %v", j.Compute, err)
	}
	if err := c.Do(ctx, "PATCH", wsPath, doc{"default_compute": ""}, &wsv); err != nil || wsv.DefaultCompute != "" {
		t.Fatalf("clear the default: %+v %v", wsv, err)
	}
	// Compute show lists the cluster's instance types.
	var comp api.Compute
	if err := c.Do(ctx, "GET", wsPath+"/computes/k8s", nil, &comp); err != nil || len(comp.InstanceTypes) != 3 || comp.InstanceTypes[0].Name != api.DefaultInstanceType {
		t.Fatalf("compute show: %+v %v", comp.InstanceTypes, err)
	}
}

func TestOpenAPIDescribesJobs(t *testing.T) {
	spec := openAPI()
	schemas := spec["components"].(map[string]any)["schemas"].(map[string]any)
	job := schemas["Job"].(map[string]any)["properties"].(map[string]any)
	for _, p := range []string{"command", "inputs", "status", "services", "environment"} {
		if job[p] == nil {
			t.Errorf("Job schema lacks %s (embedded JobSpec fields must be flattened)", p)
		}
	}
	if job["JobSpec"] != nil {
		t.Error("Job schema has the embedded struct as a property")
	}
	paths := spec["paths"].(map[string]map[string]any)
	op := paths[jobRunPath+"/logs/{file...}"]["post"].(map[string]any)
	if sec := op["security"].([]any); len(sec) != 1 || sec[0].(map[string]any)["jobToken"] == nil {
		t.Errorf("job-run route security: %v", op["security"])
	}
	if params := op["parameters"].([]any); params[len(params)-1].(map[string]any)["name"] != "file" {
		t.Errorf("wildcard parameter: %v", params)
	}
}

func TestNotifierForgetsKeysNobodyWaitsOn(t *testing.T) {
	n := newNotifier()
	ch, release := n.wait("a")
	_, release2 := n.wait("a")
	n.notify("a")
	select {
	case <-ch:
	default:
		t.Fatal("notify did not wake the waiter")
	}
	release()
	release2()
	_, release3 := n.wait("b")
	release3()
	if len(n.watch) != 0 {
		t.Fatalf("keys kept: %v", n.watch)
	}
}
