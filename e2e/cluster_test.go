// Package e2e drives the outpost binary as a user would: cluster up, status,
// kubectl against it, down, and the errors bad input gets.
package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/clustertest"
)

var outpost string

func TestMain(m *testing.M) {
	b, err := clustertest.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outpost = b
	os.Exit(m.Run())
}

// run executes outpost and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return clustertest.Run(t, nil, outpost, args...)
}

// upArgs are the flags of a cluster in its own test slot.
func upArgs(t *testing.T, dir string) ([]string, cluster.Config) {
	t.Helper()
	slot, release, err := clustertest.Slot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	var c cluster.Config
	slot.Apply(&c)
	return []string{"cluster", "up", "--dir", dir, "--api-port", strconv.Itoa(c.APIPort), "--pod-cidr", c.PodCIDR,
		"--service-cidr", c.ServiceCIDR, "--node-port-range", c.NodePortRange}, c
}

func TestClusterLifecycle(t *testing.T) {
	dir := t.TempDir()
	args, cfg := upArgs(t, dir)
	t.Cleanup(func() { run(t, "cluster", "down", "--dir", dir) })

	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("cluster up failed (%d):\n%s\n%s", code, out, errOut)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	for _, want := range []string{"starting etcd", "starting node", "cluster ready in", "kubeconfig: " + kubeconfig} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster up output lacks %q:\n%s", want, out)
		}
	}

	out, _, code = run(t, args...)
	if code != 0 || !strings.Contains(out, "already running") {
		t.Errorf("second cluster up: exit %d, %q; want a no-op that says so", code, out)
	}
	if out, _, _ := run(t, "cluster", "kubeconfig", "--dir", dir); strings.TrimSpace(out) != kubeconfig {
		t.Errorf("cluster kubeconfig printed %q, want %q", out, kubeconfig)
	}

	out, _, code = run(t, "cluster", "status", "--dir", dir, "-o", "json")
	var st cluster.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("cluster status -o json: exit %d: %s", code, out)
	}
	if !st.Running() || !st.NodeReady || !strings.HasPrefix(st.Version, "v1.34") {
		t.Errorf("status: %+v; want every component running, the node Ready, version v1.34", st)
	}
	if out, _, _ := run(t, "cluster", "status", "--dir", dir); !strings.Contains(out, "kube-apiserver") || !strings.Contains(out, "Ready") {
		t.Errorf("cluster status table:\n%s", out)
	}

	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := kubectl("get", "nodes"); !strings.Contains(out, "outpost-node") || !strings.Contains(out, " Ready ") {
		t.Errorf("kubectl get nodes:\n%s", out)
	}
	manifest := filepath.Join(dir, "pod.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: debian:12, command: [sh, -c, "echo hello from $POD_IP; sleep 600"]}
`), 0o644)
	kubectl("apply", "-f", manifest)
	kubectl("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
	ip := strings.TrimSpace(kubectl("get", "pod", "hello", "-o", "jsonpath={.status.podIP}"))
	if out := kubectl("logs", "hello"); out != "hello from "+ip+"\n" {
		t.Errorf("kubectl logs: %q", out)
	}
	_, podNet, _ := net.ParseCIDR(cfg.PodCIDR)
	if !podNet.Contains(net.ParseIP(ip)) {
		t.Errorf("pod IP %s outside the pod CIDR %s", ip, cfg.PodCIDR)
	}

	out, errOut, code = run(t, "cluster", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "cluster stopped") {
		t.Fatalf("cluster down: exit %d\n%s\n%s", code, out, errOut)
	}
	if left := clustertest.Processes(dir); len(left) > 0 {
		t.Fatalf("processes left after cluster down:\n%s", strings.Join(left, "\n"))
	}
	if out, _, _ := run(t, "cluster", "status", "--dir", dir, "-o", "json"); json.Unmarshal([]byte(out), &st) != nil || st.Components[0].Running || st.Components[4].Running {
		t.Errorf("status after down: %s", out)
	}
}

func TestClusterUpBadInput(t *testing.T) {
	busyDir := t.TempDir()
	args, cfg := upArgs(t, busyDir)
	// Something else holds the etcd port the cluster would take.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.APIPort+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	fileInTheWay := filepath.Join(t.TempDir(), "file")
	os.WriteFile(fileInTheWay, nil, 0o644)

	cases := []struct {
		name string
		args []string
		dir  string
		want string
	}{
		{"busy port", args, busyDir, fmt.Sprintf("port %d (etcd (client)) on 127.0.0.1 is in use", cfg.APIPort+1)},
		{"dir not writable", []string{"cluster", "up", "--dir", filepath.Join(fileInTheWay, "cluster")}, "", "cannot be created"},
		{"pod CIDR not loopback", []string{"cluster", "up", "--dir", t.TempDir(), "--pod-cidr", "10.0.0.0/16"}, "", "--pod-cidr \"10.0.0.0/16\": must be an IPv4 CIDR inside 127.0.0.0/8"},
		{"CIDRs overlap", []string{"cluster", "up", "--dir", t.TempDir(), "--pod-cidr", "127.50.0.0/16", "--service-cidr", "127.50.0.0/20"}, "", "overlap"},
		{"bad node port range", []string{"cluster", "up", "--dir", t.TempDir(), "--node-port-range", "32000-31000"}, "", "--node-port-range \"32000-31000\": must be LOW-HIGH"},
		{"bad output format", []string{"cluster", "status", "--dir", t.TempDir(), "-o", "xml"}, "", `-o "xml": unknown output format; use one of table, json, yaml`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code := run(t, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want an error; output:\n%s", out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q lacks %q", errOut, tc.want)
			}
			if tc.dir != "" {
				if left := clustertest.Processes(tc.dir); len(left) > 0 {
					t.Fatalf("failed up left processes:\n%s", strings.Join(left, "\n"))
				}
			}
			if time.Since(start) > 30*time.Second {
				t.Errorf("took %s to fail", time.Since(start))
			}
		})
	}
}
