// Package jobs drives training jobs with the outpost binary as a data
// scientist would: the examples' job files run unchanged on a compute
// attached to the local cluster, their logs stream, their outputs download,
// bad files are refused before anything is stored, and jobs (gangs too)
// survive kill -9 of the workspace, the agent and the training operator.
package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

const (
	rg      = "rg"
	ws      = "ws"
	compute = "local-compute"
)

// fixture is a workspace with the local cluster connected, the ML extension
// installed with training, and the cluster attached as local-compute.
type fixture struct {
	*clustertest.Workspace
	root string // the repository, for examples/
}

func setup(t *testing.T) *fixture {
	w := clustertest.StartWorkspace(t, time.Second)
	_, file, _, _ := runtime.Caller(0)
	f := &fixture{Workspace: w, root: filepath.Join(filepath.Dir(file), "..", "..")}
	w.Must("connectedk8s", "connect", "--name", "c1", "--resource-group", rg)
	t.Cleanup(func() {
		w.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", rg, "--yes")
	})
	w.Must("k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", rg, "--scope", "cluster",
		"--config", "enableTraining=True")
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

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func (f *fixture) job(name string) api.Job {
	f.T.Helper()
	var j api.Job
	if err := json.Unmarshal([]byte(f.mustML("job", "show", "-n", name, "-o", "json")), &j); err != nil {
		f.T.Fatal(err)
	}
	return j
}

// waitState waits until the job is in state.
func (f *fixture) waitState(name, state string, timeout time.Duration) api.Job {
	f.T.Helper()
	var j api.Job
	clustertest.Eventually(f.T, timeout, "job "+name+" "+state, func() error {
		j = f.job(name)
		if j.Status != state {
			return fmt.Errorf("status %s (%s)", j.Status, j.StatusMessage)
		}
		return nil
	})
	return j
}

// writeJob writes a job file in a fresh directory and returns its path.
func writeJob(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "job.yml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// create submits a job file and returns its name.
func (f *fixture) create(file string, args ...string) string {
	f.T.Helper()
	return strings.TrimSpace(f.mustML(append([]string{"job", "create", "-f", file, "--query", "name", "-o", "tsv"}, args...)...))
}

// subtest runs test as a subtest of t, the fixture's helpers failing it.
func (f *fixture) subtest(t *testing.T, name string, test func(t *testing.T)) {
	t.Run(name, func(st *testing.T) {
		f.T = st
		defer func() { f.T = t }()
		test(st)
	})
}

func TestJobs(t *testing.T) {
	f := setup(t)
	run := func(name string, test func(t *testing.T)) { f.subtest(t, name, test) }

	run("hello world example streams and completes", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/hello-world/job.yml"), "--stream")
		for _, want := range []string{"RunId: ", "hello world", "Python 3", "Execution Summary"} {
			if !strings.Contains(out, want) {
				t.Fatalf("create --stream printed no %q:\n%s", want, out)
			}
		}
		name := strings.TrimSpace(strings.TrimPrefix(strings.Split(out, "\n")[0], "RunId: "))
		if got := strings.TrimSpace(f.mustML("job", "show", "-n", name, "--query", "status", "-o", "tsv")); got != api.JobCompleted {
			t.Fatalf("status %q", got)
		}
		if !strings.Contains(out, "run "+name) {
			t.Fatalf("AZUREML_RUN_ID is not the job's name in:\n%s", out)
		}
		// The cluster is left clean once the workspace has the result.
		clustertest.Eventually(t, 30*time.Second, "the job's pods removed", func() error {
			if p := clustertest.JobPods(t, name); len(p) > 0 {
				return fmt.Errorf("%d pods left (%s %s); trainingjobs: %s", len(p), p[0].Name, p[0].Status.Phase,
					clustertest.Kubectl(t, "get", "trainingjobs", "-A", "-o", "wide"))
			}
			return nil
		})
	})

	run("scikit-learn example trains and its model downloads", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/sklearn-iris/job.yml"), "--stream")
		if !strings.Contains(out, "loaded 150 rows") || !strings.Contains(out, "accuracy: ") {
			t.Fatalf("stream:\n%s", out)
		}
		name := strings.TrimSpace(strings.TrimPrefix(strings.Split(out, "\n")[0], "RunId: "))
		dir := t.TempDir()
		f.mustML("job", "download", "-n", name, "--all", "--download-path", dir)
		model := filepath.Join(dir, "named-outputs", "model", "model.pkl")
		predict := exec.Command("/usr/bin/python3", "-c", "import pickle,sys; m=pickle.load(open(sys.argv[1],'rb')); print(m.predict([[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]))", model)
		got, err := predict.CombinedOutput()
		if err != nil || !strings.Contains(string(got), "setosa") || !strings.Contains(string(got), "virginica") {
			t.Fatalf("the downloaded model does not predict: %v\n%s", err, got)
		}
		metrics, err := os.ReadFile(filepath.Join(dir, "artifacts", "outputs", "metrics.json"))
		if err != nil || !strings.Contains(string(metrics), `"rows": 150`) {
			t.Fatalf("artifacts/outputs/metrics.json: %v %s", err, metrics)
		}
		log, err := os.ReadFile(filepath.Join(dir, "artifacts", "user_logs", "std_log.txt"))
		if err != nil || !strings.Contains(string(log), "accuracy: ") {
			t.Fatalf("artifacts/user_logs/std_log.txt: %v %s", err, log)
		}
		// Another job takes the model from the first one's output path in
		// the datastore.
		predictJob := writeJob(t, fmt.Sprintf(`command: >-
  python -c "import pickle,sys; m=pickle.load(open(sys.argv[1],'rb')); print('prediction', m.predict([[5.0,3.4,1.5,0.2]])[0])"
  ${{inputs.model}}/model.pkl
environment: {image: python}
compute: azureml:local-compute
inputs:
  model:
    type: uri_folder
    path: azureml://datastores/workspaceblobstore/paths/azureml/%s/model/
    mode: download
`, name))
		if out := f.mustML("job", "create", "-f", predictJob, "--stream"); !strings.Contains(out, "prediction setosa") {
			t.Fatalf("the model from the datastore path did not predict:\n%s", out)
		}
		// The same code again is not uploaded again.
		_, errOut, code := f.ml("job", "create", "-f", filepath.Join(f.root, "examples/jobs/sklearn-iris/job.yml"), "--set", "display_name=again")
		if code != 0 || !strings.Contains(errOut, "reusing") {
			t.Fatalf("second create: exit %d\n%s", code, errOut)
		}
	})

	run("bad job files are refused before anything is stored", func(t *testing.T) {
		// Names only: jobs of the tests before may still change state.
		names := func() string { return f.mustML("job", "list", "--query", "[].name", "-o", "tsv") }
		before := names()
		cases := []struct{ name, yaml, want string }{
			{"bad yaml", "command: echo\nenvironment:\n  image: python\n bad: [\n", "line "},
			{"unknown field", "command: echo\nenvironment: {image: python}\ncompute: azureml:local-compute\ncomand_typo: x\n", "comand_typo"},
			{"sweep", "type: sweep\ncompute: azureml:local-compute\n", "sweep"},
			{"pipeline", "type: pipeline\njobs: {}\n", "pipeline"},
			{"unknown instance type", "command: echo\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: huge}\n", "defaultinstancetype"},
			{"unknown compute", "command: echo\nenvironment: {image: python}\ncompute: azureml:nowhere\n", "local-compute"},
			{"a gang that never fits", "command: echo\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_count: 500}\n", "placed all at once"},
			{"tensorflow tasks that are not one per instance", "command: echo\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_count: 2}\ndistribution: {type: tensorflow, worker_count: 3}\n", "one task per instance"},
			{"unknown input reference", "command: echo ${{inputs.missing}}\nenvironment: {image: python}\ncompute: azureml:local-compute\n", "missing"},
			{"local input that is not there", "command: echo ${{inputs.d}}\nenvironment: {image: python}\ncompute: azureml:local-compute\ninputs:\n  d: {type: uri_folder, path: ./nothing-here}\n", "nothing-here"},
			{"unknown environment", "command: echo\nenvironment: azureml:no-such-env:1\ncompute: azureml:local-compute\n", "no-such-env"},
		}
		for _, c := range cases {
			out, errOut, code := f.ml("job", "create", "-f", writeJob(t, c.yaml))
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("%s: exit %d, want an error naming %q\n%s\n%s", c.name, code, c.want, out, errOut)
			}
		}
		if after := names(); after != before {
			t.Fatalf("a refused job was stored:\nbefore %s\nafter %s", before, after)
		}
	})

	run("instance types apply with kubectl and shape the pods", func(t *testing.T) {
		node := clustertest.Kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
		clustertest.Kubectl(t, "label", "node", node, "outpost.test/pool=train", "--overwrite")
		manifest := filepath.Join(t.TempDir(), "it.yaml")
		os.WriteFile(manifest, []byte(`apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata:
  name: small
spec:
  nodeSelector:
    outpost.test/pool: train
  resources:
    limits:
      cpu: "1"
      memory: "1Gi"
    requests:
      cpu: "200m"
      memory: "256Mi"
---
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata:
  name: enormous
spec:
  resources:
    limits: {cpu: "512", memory: "4Ti"}
    requests: {cpu: "256", memory: "2Ti"}
`), 0o644)
		clustertest.Kubectl(t, "apply", "-f", manifest)
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(bad, []byte(`apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: gpu-in-requests}
spec:
  resources:
    requests: {cpu: "1", memory: "1Gi", nvidia.com/gpu: 1}
    limits: {cpu: "1", memory: "1Gi"}
`), 0o644)
		if out, err := exec.Command("kubectl", "--kubeconfig", clustertest.Cluster.Kubeconfig, "apply", "-f", bad).CombinedOutput(); err == nil {
			t.Fatalf("an InstanceType with a GPU request was accepted:\n%s", out)
		}
		clustertest.Eventually(t, 30*time.Second, "compute show lists the instance types", func() error {
			out := f.mustML("compute", "show", "-n", compute)
			for _, want := range []string{"defaultinstancetype", "small", "enormous"} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("no %s in:\n%s", want, out)
				}
			}
			return nil
		})
		_, errOut, code := f.ml("job", "create", "-f", writeJob(t, "command: echo\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: enormous}\n"))
		if code == 0 || !strings.Contains(errOut, "256") {
			t.Fatalf("a job that can never fit: exit %d\n%s", code, errOut)
		}
		name := f.create(writeJob(t, "command: sleep 30\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: small}\n"))
		clustertest.Eventually(t, 60*time.Second, "the job's pod runs", func() error {
			if p := clustertest.JobPods(t, name); len(p) != 1 || p[0].Status.Phase != corev1.PodRunning {
				return fmt.Errorf("pods: %d", len(p))
			}
			return nil
		})
		p := clustertest.JobPods(t, name)[0]
		var job *corev1.Container
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == "job" {
				job = &p.Spec.Containers[i]
			}
		}
		if job == nil || job.Resources.Requests.Cpu().String() != "200m" || job.Resources.Limits.Memory().String() != "1Gi" ||
			p.Spec.NodeSelector["outpost.test/pool"] != "train" {
			t.Fatalf("the pod does not carry the instance type: %+v %+v", p.Spec.NodeSelector, job)
		}
		f.mustML("job", "cancel", "-n", name)
		f.waitState(name, api.JobCanceled, 30*time.Second)
	})

	run("a distribution of one runs with its framework's variables", func(t *testing.T) {
		for _, c := range []struct{ dist, want string }{
			{"{type: pytorch}", "WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 NODE_RANK=0 MASTER_PORT=6105"},
			{"{type: tensorflow, worker_count: 1}", `{"type": "worker", "index": 0}`},
			{"{type: mpi, process_count_per_instance: 1}", "OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=1"},
		} {
			job := writeJob(t, `command: >-
  python -c "import os, json; e = os.environ;
  print('WORLD_SIZE=%s RANK=%s LOCAL_RANK=%s NODE_RANK=%s MASTER_PORT=%s' % tuple(e.get(k) for k in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'NODE_RANK', 'MASTER_PORT')));
  print('OMPI_COMM_WORLD_RANK=%s OMPI_COMM_WORLD_SIZE=%s' % (e.get('OMPI_COMM_WORLD_RANK'), e.get('OMPI_COMM_WORLD_SIZE')));
  print(json.dumps(json.loads(e.get('TF_CONFIG', '{}')).get('task')))"
environment: {image: python}
compute: azureml:local-compute
distribution: `+c.dist+"\n")
			out := f.mustML("job", "create", "-f", job, "--stream")
			if !strings.Contains(out, c.want) {
				t.Fatalf("distribution %s: no %q in\n%s", c.dist, c.want, out)
			}
		}
	})

	run("a failing command fails the job with its exit code and the end of its log", func(t *testing.T) {
		name := f.create(writeJob(t, "command: python -c \"import sys; print('something broke'); sys.exit(3)\"\nenvironment: {image: python}\ncompute: azureml:local-compute\n"))
		j := f.waitState(name, api.JobFailed, 60*time.Second)
		if !strings.Contains(j.StatusMessage, "exit code 3") || !strings.Contains(j.StatusMessage, "something broke") {
			t.Fatalf("status message %q", j.StatusMessage)
		}
		out, errOut, code := f.ml("job", "stream", "-n", name)
		if code == 0 || !strings.Contains(out, "something broke") {
			t.Fatalf("stream of a failed job: exit %d\n%s\n%s", code, out, errOut)
		}
		name = f.create(writeJob(t, "command: no-such-program --help\nenvironment: {image: python}\ncompute: azureml:local-compute\n"))
		j = f.waitState(name, api.JobFailed, 60*time.Second)
		if !strings.Contains(j.StatusMessage, "command not found") {
			t.Fatalf("status message %q", j.StatusMessage)
		}
	})

	run("limits.timeout fails a job that runs too long", func(t *testing.T) {
		name := f.create(writeJob(t, "command: sleep 120\nenvironment: {image: python}\ncompute: azureml:local-compute\nlimits: {timeout: 5}\n"))
		j := f.waitState(name, api.JobFailed, 60*time.Second)
		if !strings.Contains(j.StatusMessage, "timed out") {
			t.Fatalf("status message %q", j.StatusMessage)
		}
	})

	run("cancel ends the job's pods within seconds", func(t *testing.T) {
		name := f.create(writeJob(t, "command: echo started && sleep 300\nenvironment: {image: python}\ncompute: azureml:local-compute\n"))
		f.waitState(name, api.JobRunning, 60*time.Second)
		start := time.Now()
		f.mustML("job", "cancel", "-n", name)
		f.waitState(name, api.JobCanceled, 30*time.Second)
		clustertest.Eventually(t, 30*time.Second, "pods gone", func() error {
			if p := clustertest.JobPods(t, name); len(p) > 0 {
				return fmt.Errorf("%d pods left", len(p))
			}
			return nil
		})
		t.Logf("cancel -> pods gone in %.1fs", time.Since(start).Seconds())
	})

	run("a job waits Queued with the reason and starts when room frees", func(t *testing.T) {
		node := clustertest.Kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].status.allocatable.cpu}")
		cpu, err := strconv.ParseFloat(strings.TrimSuffix(node, "m"), 64)
		if err != nil {
			t.Fatalf("node cpu %q", node)
		}
		if strings.HasSuffix(node, "m") {
			cpu /= 1000
		}
		// An instance type of more than half the node: two never fit at once.
		half := fmt.Sprintf("%dm", int(cpu*1000*0.6))
		manifest := filepath.Join(t.TempDir(), "it.yaml")
		os.WriteFile(manifest, []byte(fmt.Sprintf(`apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: most}
spec:
  resources:
    requests: {cpu: %q, memory: 256Mi}
    limits: {cpu: %q, memory: 1Gi}
`, half, half)), 0o644)
		clustertest.Kubectl(t, "apply", "-f", manifest)
		clustertest.Eventually(t, 30*time.Second, "instance type most reported", func() error {
			if out := f.mustML("compute", "show", "-n", compute); !strings.Contains(out, "most") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		job := "command: sleep 300\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: most}\n"
		first := f.create(writeJob(t, job))
		f.waitState(first, api.JobRunning, 60*time.Second)
		second := f.create(writeJob(t, strings.Replace(job, "sleep 300", "echo second ran", 1)))
		j := f.waitState(second, api.JobQueued, 30*time.Second)
		if !strings.Contains(j.StatusMessage, "waiting for available resources") {
			t.Fatalf("queued without the reason: %q", j.StatusMessage)
		}
		f.mustML("job", "cancel", "-n", first)
		f.waitState(second, api.JobCompleted, 90*time.Second)
	})

	run("environments and data assets are versioned and resolve in jobs", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "env.yml"), []byte("$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: py-env\nimage: python:3.11\ndescription: a plain Python\n"), 0o644)
		f.mustML("environment", "create", "-f", filepath.Join(dir, "env.yml"))
		f.mustML("environment", "create", "-f", filepath.Join(dir, "env.yml"), "--set", "image=python:3.12")
		if v := strings.TrimSpace(f.mustML("environment", "show", "-n", "py-env", "--label", "latest", "--query", "version", "-o", "tsv")); v != "2" {
			t.Fatalf("latest environment version %q", v)
		}
		os.MkdirAll(filepath.Join(dir, "numbers"), 0o755)
		os.WriteFile(filepath.Join(dir, "numbers", "a.txt"), []byte("41\n"), 0o644)
		f.mustML("data", "create", "--name", "numbers", "--version", "1", "--path", filepath.Join(dir, "numbers"), "--type", "uri_folder")
		job := writeJob(t, `command: echo "value $(( $(cat ${{inputs.n}}/a.txt) + 1 ))"
environment: azureml:py-env@latest
compute: azureml:local-compute
inputs:
  n:
    type: uri_folder
    path: azureml:numbers:1
    mode: download
`)
		name := f.create(job)
		f.waitState(name, api.JobCompleted, 60*time.Second)
		if out := f.mustML("job", "stream", "-n", name); !strings.Contains(out, "value 42") {
			t.Fatalf("stream:\n%s", out)
		}
	})

	run("jobs are refused where they cannot run", func(t *testing.T) {
		job := writeJob(t, "command: echo\nenvironment: {image: python}\ncompute: azureml:%s\n")
		submit := func(compute string) (string, int) {
			data, err := os.ReadFile(job)
			if err != nil {
				t.Fatal(err)
			}
			p := writeJob(t, fmt.Sprintf(string(data), compute))
			_, errOut, code := f.ml("job", "create", "-f", p)
			return errOut, code
		}
		// A compute whose attach failed (its namespace does not exist).
		_, _, code := f.ml("compute", "attach", "--name", "broken", "--type", "Kubernetes", "--namespace", "no-such-namespace",
			"--resource-id", "/resourceGroups/"+rg+"/connectedClusters/c1")
		if code == 0 {
			t.Fatal("attaching to a missing namespace succeeded")
		}
		if errOut, code := submit("broken"); code == 0 || !strings.Contains(errOut, "Failed") {
			t.Fatalf("a job on a Failed compute: exit %d\n%s", code, errOut)
		}
		f.mustML("compute", "detach", "--name", "broken", "--yes")

		// The cluster offline: its agent stopped.
		clustertest.Kubectl(t, "scale", "deployment", "outpost-agent", "-n", "azure-arc", "--replicas=0")
		clustertest.Eventually(t, 60*time.Second, "cluster Offline", func() error {
			if out := f.Must("connectedk8s", "show", "-n", "c1", "-g", rg, "--query", "connectivityStatus", "-o", "tsv"); strings.TrimSpace(out) != api.Offline {
				return fmt.Errorf("connectivity %s", out)
			}
			return nil
		})
		errOut, code := submit(compute)
		clustertest.Kubectl(t, "scale", "deployment", "outpost-agent", "-n", "azure-arc", "--replicas=1")
		if code == 0 || !strings.Contains(errOut, "Offline") {
			t.Fatalf("a job on an offline cluster: exit %d\n%s", code, errOut)
		}
		clustertest.Eventually(t, 60*time.Second, "cluster Connected again", func() error {
			if out := f.Must("connectedk8s", "show", "-n", "c1", "-g", rg, "--query", "connectivityStatus", "-o", "tsv"); strings.TrimSpace(out) != api.Connected {
				return fmt.Errorf("connectivity %s", out)
			}
			return nil
		})

		// Training turned off on the cluster's extension.
		ext := []string{"k8s-extension", "update", "--name", "arcml-extension", "--cluster-type", "connectedClusters",
			"--cluster-name", "c1", "--resource-group", rg, "--config"}
		f.Must(append(ext, "enableTraining=False", "enableInference=True", "allowInsecureConnections=True")...)
		errOut, code = submit(compute)
		f.Must(append(ext, "enableTraining=True")...)
		if code == 0 || !strings.Contains(errOut, "enableTraining=True") {
			t.Fatalf("a job on a cluster without training: exit %d\n%s", code, errOut)
		}
		// Training back on, jobs run again.
		name := f.create(writeJob(t, "command: echo back\nenvironment: {image: python}\ncompute: azureml:local-compute\n"))
		f.waitState(name, api.JobCompleted, 90*time.Second)
	})

	distributed(t, f, run)

	run("jobs survive kill -9 of workspace agent and operator", func(t *testing.T) {
		// The job counts its starts in a file of the host: a second start
		// (a job run twice) would leave two lines.
		// Not under /tmp: each pod has a /tmp of its own.
		dir, err := os.MkdirTemp("/var/tmp", "outpost-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		marks := filepath.Join(dir, "starts")
		name := f.create(writeJob(t, fmt.Sprintf("command: echo start >> %s && sleep 8 && echo finished\nenvironment: {image: python}\ncompute: azureml:local-compute\n", marks)))
		f.waitState(name, api.JobRunning, 60*time.Second)
		f.Kill9()
		killPod9(t, "azure-arc", "app=outpost-agent")
		killPod9(t, "azureml", "app=training-operator")
		f.Serve()
		j := f.waitState(name, api.JobCompleted, 90*time.Second)
		data, err := os.ReadFile(marks)
		if err != nil || strings.Count(string(data), "start") != 1 {
			t.Fatalf("the job started %d times (%v)", strings.Count(string(data), "start"), err)
		}
		if out := f.mustML("job", "stream", "-n", j.Name); strings.Count(out, "finished") != 1 {
			t.Fatalf("log:\n%s", out)
		}
		// A job submitted while the operator is down waits and then runs.
		killPod9(t, "azureml", "app=training-operator")
		name = f.create(writeJob(t, "command: echo after the faults\nenvironment: {image: python}\ncompute: azureml:local-compute\n"))
		f.waitState(name, api.JobCompleted, 90*time.Second)
	})

	run("a gang survives kill -9 of workspace agent and operator, never partly placed", func(t *testing.T) {
		// Room for three instances: the running gang takes two, the queued
		// one fits only once the first has ended.
		third := fractionOfNodeCPU(t, 0.3)
		applyManifest(t, fmt.Sprintf(`apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: gang-third}
spec:
  resources:
    requests: {cpu: %q, memory: 128Mi}
    limits: {cpu: %q, memory: 1Gi}
`, third, third))
		f.waitInstanceType(t, "gang-third")
		dir, err := os.MkdirTemp("/var/tmp", "outpost-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		marks := filepath.Join(dir, "starts")
		gang := "environment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: gang-third, instance_count: 2}\ndistribution: {type: pytorch}\n"
		running := f.create(writeJob(t, fmt.Sprintf("command: echo start $NODE_RANK >> %s && sleep 10 && echo finished\n", marks)+gang))
		f.waitState(running, api.JobRunning, 60*time.Second)
		overlap := watchGangs(t, running)
		queued := f.create(writeJob(t, "command: echo second gang ran\n"+gang))
		j := f.waitState(queued, api.JobQueued, 30*time.Second)
		if !strings.Contains(j.StatusMessage, "needs 2 x") {
			t.Fatalf("the second gang waits without saying for what: %q", j.StatusMessage)
		}
		f.Kill9()
		killPod9(t, "azure-arc", "app=outpost-agent")
		killPod9(t, "azureml", "app=training-operator")
		f.Serve()
		f.waitState(running, api.JobCompleted, 90*time.Second)
		f.waitState(queued, api.JobCompleted, 90*time.Second)
		data, err := os.ReadFile(marks)
		if err != nil {
			t.Fatal(err)
		}
		if starts := strings.Fields(strings.ReplaceAll(string(data), "start", "")); len(starts) != 2 || starts[0] == starts[1] {
			t.Fatalf("the gang's instances started as %q, want each of 0 and 1 once", data)
		}
		if out := f.mustML("job", "stream", "-n", running); strings.Count(out, "finished") != 2 {
			t.Fatalf("log of the first gang:\n%s", out)
		}
		if o := overlap(); o != "" {
			t.Fatal(o)
		}
	})
}

// watchGangs follows the pods of the training jobs from its call on, and
// returns a function that says what went wrong: a pod of another job placed
// while both pods of first, a gang of two on room for three instances,
// hold their room. Beside them there is room for one instance only, so
// that pod would be half a gang.
func watchGangs(t *testing.T, first string) func() string {
	t.Helper()
	cr := strings.ReplaceAll(strings.ToLower(first), "_", "-")
	var mu sync.Mutex
	live := map[string]string{} // placed, not ended pods -> their job
	var wrong []string
	note := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			delete(live, p.Name)
			return
		}
		live[p.Name] = p.Labels["training.outpost.dev/job"]
		var firsts, others []string
		for pod, job := range live {
			if strings.HasPrefix(job, cr) {
				firsts = append(firsts, pod)
			} else {
				others = append(others, pod)
			}
		}
		if len(firsts) == 2 && len(others) > 0 && len(wrong) < 5 {
			slices.Sort(others)
			wrong = append(wrong, fmt.Sprintf("pods %v placed beside both pods of %s", others, first))
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(clustertest.Cluster.Client, 0, informers.WithNamespace("default"),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "training.outpost.dev/job" }))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: note, UpdateFunc: func(_, o any) { note(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				mu.Lock()
				delete(live, p.Name)
				mu.Unlock()
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("pod watch not synced")
	}
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(wrong, "; ")
	}
}

// killPod9 kills every process of the pods matching selector with SIGKILL,
// as a crash would: the node restarts their containers.
func killPod9(t *testing.T, namespace, selector string) {
	t.Helper()
	pods, err := clustertest.Cluster.Client.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods %s in %s: %v (%d)", selector, namespace, err, len(pods.Items))
	}
	killed := 0
	for _, p := range pods.Items {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
			if err != nil || !strings.Contains(string(cg), string(p.UID)) {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	if killed == 0 {
		t.Fatalf("no process of %s in %s found to kill", selector, namespace)
	}
}
