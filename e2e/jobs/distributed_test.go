package jobs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
)

// distributed runs the multi-instance cases as subtests of TestJobs, on its
// fixture.
func distributed(t *testing.T, f *fixture, run func(string, func(*testing.T))) {
	run("pytorch DDP example trains on two instances", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/pytorch-ddp/job.yml"), "--stream")
		for _, want := range []string{"[rank 0] rank 0 of 2", "[rank 1] rank 1 of 2", "[rank 0] epoch 10: loss", "[rank 0] accuracy: "} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
		// Rank 0 kept the model, in the job's named output.
		name := strings.TrimSpace(strings.TrimPrefix(strings.Split(out, "\n")[0], "RunId: "))
		dir := t.TempDir()
		f.mustML("job", "download", "-n", name, "--output-name", "model", "--download-path", dir)
		load := exec.Command("/usr/bin/python3", "-c", "import sys, torch; print(sorted(torch.load(sys.argv[1]).keys()))", filepath.Join(dir, "named-outputs", "model", "model.pt"))
		if got, err := load.CombinedOutput(); err != nil || !strings.Contains(string(got), "0.weight") {
			t.Fatalf("the downloaded model does not load: %v\n%s", err, got)
		}
	})

	run("pytorch DDP example on one instance with two processes", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/pytorch-ddp/job.yml"),
			"--set", "resources.instance_count=1", "--set", "distribution.process_count_per_instance=2", "--set", "inputs.epochs=2", "--stream")
		for _, want := range []string{"[rank 0] rank 0 of 2", "[rank 1] rank 1 of 2", "[rank 0] epoch 2: loss", "[rank 0] accuracy: "} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
	})

	run("tensorflow example: workers meet at the addresses of TF_CONFIG", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/tensorflow-config/job.yml"), "--stream")
		for _, want := range []string{"this is worker 0", "this is worker 1", "worker 0 heard: hello from worker 1", "worker 1 got: welcome", "all tasks checked in"} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
	})

	run("tensorflow example with a parameter server", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/tensorflow-config/job.yml"),
			"--set", "resources.instance_count=3", "--set", "distribution.parameter_server_count=1", "--stream")
		for _, want := range []string{"2 workers", "1 parameter servers", "this is ps 0", "worker 0 heard: hello from ps 0", "ps 0 got: welcome", "all tasks checked in"} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
	})

	run("two processes on one instance", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", writeJob(t, `command: python -c "import os; print('rank', os.environ['RANK'], 'local', os.environ['LOCAL_RANK'], 'of', os.environ['WORLD_SIZE'])"
environment: {image: python}
compute: azureml:local-compute
distribution: {type: pytorch, process_count_per_instance: 2}
`), "--stream")
		for _, want := range []string{"[rank 0] rank 0 local 0 of 2", "[rank 1] rank 1 local 1 of 2"} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
	})

	run("a gang whose pod dies fails as a whole", func(t *testing.T) {
		name := f.create(writeJob(t, "command: sleep 300\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_count: 2}\n"))
		f.waitState(name, api.JobRunning, 60*time.Second)
		pods := clustertest.JobPods(t, name)
		if len(pods) != 2 {
			t.Fatalf("%d pods, want 2", len(pods))
		}
		clustertest.Kubectl(t, "delete", "pod", pods[1].Name, "--wait=false")
		j := f.waitState(name, api.JobFailed, 60*time.Second)
		if !strings.Contains(j.StatusMessage, pods[1].Name) && !strings.Contains(j.StatusMessage, "instance 1") {
			t.Fatalf("status message %q names neither the pod nor its instance", j.StatusMessage)
		}
		clustertest.Eventually(t, 30*time.Second, "the other pod ended too", func() error {
			for _, p := range clustertest.JobPods(t, name) {
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
					return fmt.Errorf("pod %s still running", p.Name)
				}
			}
			return nil
		})
	})

	run("two gangs on room for three instances both finish", func(t *testing.T) {
		third := fractionOfNodeCPU(t, 0.3)
		applyManifest(t, fmt.Sprintf(`apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: third}
spec:
  resources:
    requests: {cpu: %q, memory: 128Mi}
    limits: {cpu: %q, memory: 1Gi}
`, third, third))
		f.waitInstanceType(t, "third")
		job := "command: sleep 3\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: third, instance_count: 2}\n"
		first, second := f.create(writeJob(t, job)), f.create(writeJob(t, job))
		j := f.waitState(second, api.JobQueued, 30*time.Second)
		if !strings.Contains(j.StatusMessage, "needs 2 x") {
			t.Fatalf("the second gang waits without saying for what: %q", j.StatusMessage)
		}
		if p := clustertest.JobPods(t, second); len(p) != 0 {
			t.Fatalf("a queued gang holds %d pods", len(p))
		}
		f.waitState(first, api.JobCompleted, 60*time.Second)
		f.waitState(second, api.JobCompleted, 60*time.Second)
	})

	run("a job over its memory limit fails OOMKilled", func(t *testing.T) {
		applyManifest(t, `apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: small-memory}
spec:
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {cpu: "1", memory: 256Mi}
`)
		f.waitInstanceType(t, "small-memory")
		name := f.create(writeJob(t, "command: python -c \"b = b'x' * (1024 ** 3); print(len(b))\"\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: small-memory}\n"))
		j := f.waitState(name, api.JobFailed, 60*time.Second)
		if !strings.Contains(j.StatusMessage, "OOMKilled") {
			t.Fatalf("status message %q", j.StatusMessage)
		}
	})

	run("cancel of a multi-instance job ends every pod", func(t *testing.T) {
		name := f.create(writeJob(t, "command: sleep 300\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_count: 2}\n"))
		f.waitState(name, api.JobRunning, 60*time.Second)
		f.mustML("job", "cancel", "-n", name)
		f.waitState(name, api.JobCanceled, 30*time.Second)
		clustertest.Eventually(t, 20*time.Second, "pods gone", func() error {
			if p := clustertest.JobPods(t, name); len(p) > 0 {
				return fmt.Errorf("%d pods left", len(p))
			}
			return nil
		})
	})
}

// fractionOfNodeCPU is that share of the node's allocatable CPU, in millicores.
func fractionOfNodeCPU(t *testing.T, share float64) string {
	t.Helper()
	q, err := resource.ParseQuantity(clustertest.Kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].status.allocatable.cpu}"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%dm", int64(float64(q.MilliValue())*share))
}

func applyManifest(t *testing.T, manifest string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(p, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	clustertest.Kubectl(t, "apply", "-f", p)
}

// waitInstanceType waits until the compute lists the instance type: the
// workspace checks jobs against what the agent reported.
func (f *fixture) waitInstanceType(t *testing.T, name string) {
	t.Helper()
	clustertest.Eventually(t, 30*time.Second, "instance type "+name+" reported", func() error {
		if out := f.mustML("compute", "show", "-n", compute); !strings.Contains(out, name) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}
