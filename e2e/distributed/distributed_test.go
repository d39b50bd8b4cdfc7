// Package distributed runs training jobs on a local cluster of two nodes,
// each with room for one instance of a big instance type: a gang of two
// spans both nodes (all placed at once), the PyTorch DDP example trains
// across them, a gang larger than the cluster is refused with the numbers,
// and an instance type's nodeSelector picks its node. A package of its own:
// the single-node tests of e2e/jobs size instance types by that node.
package distributed

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/clustertest"
)

const (
	rg      = "rg"
	ws      = "ws"
	compute = "local-compute"
	node0   = "outpost-node"
	node1   = "outpost-node-1"
)

func TestMain(m *testing.M) {
	clustertest.MainWith(m, clustertest.Options{Nodes: 2, NodeCPU: "2", NodeMemory: "4Gi",
		NodeLabels: map[string]map[string]string{node1: {"pool": "b"}}})
}

type fixture struct {
	*clustertest.Workspace
	root string
}

func (f *fixture) ml(args ...string) (string, string, int) {
	f.T.Helper()
	return f.Outpost(append(append([]string{"ml"}, args...), "-g", rg, "-w", ws)...)
}

func (f *fixture) mustML(args ...string) string {
	f.T.Helper()
	out, errOut, code := f.ml(args...)
	if code != 0 {
		f.T.Fatalf("outpost ml %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (f *fixture) status(name string) string {
	f.T.Helper()
	return strings.TrimSpace(f.mustML("job", "show", "-n", name, "--query", "status", "-o", "tsv"))
}

func (f *fixture) waitStatus(name, want string) {
	f.T.Helper()
	clustertest.Eventually(f.T, 90*time.Second, "job "+name+" "+want, func() error {
		if got := f.status(name); got != want {
			return fmt.Errorf("status %s", got)
		}
		return nil
	})
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file.yml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGangsAcrossNodes(t *testing.T) {
	w := clustertest.StartWorkspace(t, time.Second)
	_, file, _, _ := runtime.Caller(0)
	f := &fixture{Workspace: w, root: filepath.Join(filepath.Dir(file), "..", "..")}
	w.Must("connectedk8s", "connect", "--name", "c1", "--resource-group", rg)
	t.Cleanup(func() { w.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", rg, "--yes") })
	w.Must("k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", rg, "--scope", "cluster",
		"--config", "enableTraining=True")
	w.Must("ml", "compute", "attach", "-g", rg, "-w", ws, "--name", compute, "--type", "Kubernetes",
		"--resource-id", "/resourceGroups/"+rg+"/connectedClusters/c1")

	// 1.5 of a node's 2 CPUs: one instance per node.
	clustertest.Kubectl(t, "apply", "-f", writeFile(t, `apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: most-of-a-node}
spec:
  resources:
    requests: {cpu: 1500m, memory: 512Mi}
    limits: {cpu: "2", memory: 2Gi}
---
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata: {name: pool-b}
spec:
  nodeSelector: {pool: b}
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {cpu: "1", memory: 1Gi}
`))
	clustertest.Eventually(t, 30*time.Second, "instance types reported", func() error {
		if out := f.mustML("compute", "show", "-n", compute); !strings.Contains(out, "most-of-a-node") || !strings.Contains(out, "pool-b") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	run := func(name string, test func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			f.T = t
			defer func() { f.T = t }()
			test(t)
		})
	}

	run("a gang of two spans both nodes", func(t *testing.T) {
		name := strings.TrimSpace(f.mustML("job", "create", "-f", writeFile(t, "command: sleep 300\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: most-of-a-node, instance_count: 2}\n"),
			"--query", "name", "-o", "tsv"))
		f.waitStatus(name, "Running")
		nodes := map[string]bool{}
		for _, p := range clustertest.JobPods(t, name) {
			nodes[p.Spec.NodeName] = true
		}
		if !nodes[node0] || !nodes[node1] {
			t.Fatalf("the gang's pods are on %v, want one on each node", nodes)
		}
		f.mustML("job", "cancel", "-n", name)
		f.waitStatus(name, "Canceled")
	})

	run("the pytorch DDP example trains across the nodes", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/pytorch-ddp/job.yml"),
			"--set", "resources.instance_type=most-of-a-node", "--set", "inputs.epochs=3", "--stream")
		for _, want := range []string{"[rank 0] rank 0 of 2", "[rank 1] rank 1 of 2", "[rank 0] epoch 3: loss", "[rank 0] accuracy: "} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
	})

	run("a gang larger than the cluster is refused with the numbers", func(t *testing.T) {
		_, errOut, code := f.ml("job", "create", "-f", writeFile(t, "command: echo\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: most-of-a-node, instance_count: 3}\n"))
		want := fmt.Sprintf("its empty nodes hold at most 2 (%s 1, %s 1)", node0, node1)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("exit %d, want a refusal saying %q:\n%s", code, want, errOut)
		}
	})

	run("an instance type's nodeSelector picks its node", func(t *testing.T) {
		name := strings.TrimSpace(f.mustML("job", "create", "-f", writeFile(t, "command: sleep 300\nenvironment: {image: python}\ncompute: azureml:local-compute\nresources: {instance_type: pool-b}\n"),
			"--query", "name", "-o", "tsv"))
		f.waitStatus(name, "Running")
		p := clustertest.JobPods(t, name)
		if len(p) != 1 || p[0].Spec.NodeName != node1 {
			t.Fatalf("pods %v: want one on %s (pool=b)", p, node1)
		}
		f.mustML("job", "cancel", "-n", name)
		f.waitStatus(name, "Canceled")
	})
}
