// Package connect drives the seed's flow with the outpost binary as a user
// would: serve a workspace, connect the local cluster, install the ML
// extension in each scenario, attach it as compute, and survive faults.
package connect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/pki"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// heartbeat of the test workspace: Offline shows after two missed ones.
const heartbeat = time.Second

type workspace = clustertest.Workspace

func startWorkspace(t *testing.T) *workspace { return clustertest.StartWorkspace(t, heartbeat) }

func showCluster(w *workspace, name string) api.ConnectedCluster {
	w.T.Helper()
	var c api.ConnectedCluster
	if err := json.Unmarshal([]byte(w.Must("connectedk8s", "show", "-n", name, "-g", "rg", "-o", "json")), &c); err != nil {
		w.T.Fatal(err)
	}
	return c
}

func showExtension(w *workspace, name string) api.Extension {
	w.T.Helper()
	var e api.Extension
	if err := json.Unmarshal([]byte(w.Must("k8s-extension", "show", "--name", name, "--cluster-type", "connectedClusters",
		"--cluster-name", "c1", "--resource-group", "rg", "-o", "json")), &e); err != nil {
		w.T.Fatal(err)
	}
	return e
}

// create runs the seed's create command with the given settings.
func create(w *workspace, name string, settings ...string) string {
	args := []string{"k8s-extension", "create", "--name", name, "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", "rg", "--scope", "cluster"}
	return w.Must(append(args, settings...)...)
}

// deleteAndWaitEmpty deletes the extension and waits until nothing of it is
// left in the cluster.
func deleteAndWaitEmpty(t *testing.T, w *workspace, name string) {
	w.Must("k8s-extension", "delete", "--name", name, "--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", "rg", "--yes")
	clustertest.Eventually(t, 60*time.Second, "namespace azureml gone", func() error {
		_, err := clustertest.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), "azureml", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

func allRunning(t *testing.T) {
	t.Helper()
	out := clustertest.Kubectl(t, "get", "pods", "-n", "azureml", "--no-headers")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !strings.Contains(l, "Running") || !strings.Contains(l, "1/1") {
			t.Fatalf("kubectl get pods -n azureml: not all Running and ready:\n%s", out)
		}
	}
	if len(lines) == 0 || lines[0] == "" {
		t.Fatal("no pods in azureml")
	}
}

// writePEMs makes a certificate and its key for the inference router, as
// files, the way users bring them.
func writePEMs(t *testing.T, dir string) (string, string) {
	t.Helper()
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := ca.Issue(pki.Request{CommonName: "scoring.local", DNSNames: []string{"scoring.local"}, Server: true}, cert, key); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestSeedFlow(t *testing.T) {
	w := startWorkspace(t)
	out := connectC1(t, w)
	if !strings.Contains(out, "Connected") {
		t.Fatalf("connect printed:\n%s", out)
	}
	c := showCluster(w, "c1")
	if c.ConnectivityStatus != api.Connected || !strings.HasPrefix(c.Facts.KubernetesVersion, "v1.34") || c.Facts.TotalNodeCount != 1 ||
		c.Facts.Distribution != "generic" || c.Facts.AllocatableCPU == "" || c.LastConnectivityTime == nil {
		t.Fatalf("connectedk8s show: %+v", c)
	}
	if out := w.Must("connectedk8s", "list", "-o", "table"); !strings.Contains(out, "c1") || !strings.Contains(out, "Connected") {
		t.Fatalf("connectedk8s list:\n%s", out)
	}

	cert, key := writePEMs(t, t.TempDir())
	scenarios := []struct {
		name     string
		settings []string
		check    func(t *testing.T)
	}{
		{"training", []string{"--config", "enableTraining=True"}, nil},
		{"inference over HTTP", []string{"--configuration-settings", "enableInference=True", "allowInsecureConnections=True"}, func(t *testing.T) {
			clustertest.Eventually(t, 20*time.Second, "router service with a load balancer address", func() error {
				// The local cluster's load balancer address is the service's
				// loopback cluster IP, where its port answers.
				out := clustertest.Kubectl(t, "get", "service", "azureml-fe", "-n", "azureml", "-o", "jsonpath={.spec.type} {.spec.ports[0].port} {.status.loadBalancer.ingress[0].ip}")
				ip := clustertest.Kubectl(t, "get", "service", "azureml-fe", "-n", "azureml", "-o", "jsonpath={.spec.clusterIP}")
				if out != "LoadBalancer 80 "+ip || !strings.HasPrefix(ip, "127.") {
					return fmt.Errorf("service: %q", out)
				}
				return nil
			})
		}},
		{"inference over HTTPS", []string{"--config", "enableInference=True", "--config-protected", "sslCertPemFile=" + cert, "sslKeyPemFile=" + key}, func(t *testing.T) {
			pem, _ := os.ReadFile(cert)
			got := clustertest.Kubectl(t, "get", "secret", "azureml-fe-tls", "-n", "azureml", "-o", "jsonpath={.data.tls\\.crt}")
			if !strings.Contains(string(mustDecode(t, got)), strings.TrimSpace(string(pem))) {
				t.Fatal("TLS secret does not hold the given certificate")
			}
		}},
		{"inference with NodePort", []string{"--config", "enableInference=True", "privateEndpointNodeport=True", "allowInsecureConnections=True"}, func(t *testing.T) {
			if out := clustertest.Kubectl(t, "get", "service", "azureml-fe", "-n", "azureml", "-o", "jsonpath={.spec.type}"); out != "NodePort" {
				t.Fatalf("service type %q", out)
			}
		}},
		{"training and inference", []string{"--config", "enableTraining=True", "enableInference=True", "--config-protected", "sslCertPemFile=" + cert, "sslKeyPemFile=" + key}, nil},
	}
	for i, sc := range scenarios {
		ok := t.Run(sc.name, func(t *testing.T) {
			w.T = t
			start := time.Now()
			out := create(w, "arcml-extension", sc.settings...)
			if !strings.Contains(out, "Installed") {
				t.Fatalf("create printed:\n%s", out)
			}
			t.Logf("create -> Installed in %.1fs", time.Since(start).Seconds())
			e := showExtension(w, "arcml-extension")
			if e.InstallState != api.InstallInstalled || e.ProvisioningState != api.StateSucceeded {
				t.Fatalf("show: %+v", e)
			}
			for _, v := range e.ConfigurationProtectedSettings {
				if v != "<redacted>" {
					t.Fatalf("show reveals a protected setting: %q", v)
				}
			}
			allRunning(t)
			if sc.check != nil {
				sc.check(t)
			}
			if i < len(scenarios)-1 {
				deleteAndWaitEmpty(t, w, "arcml-extension")
			}
		})
		if !ok {
			t.FailNow()
		}
	}
	w.T = t

	// A device plugin that runs already is reported, not doubled.
	t.Run("NVIDIA device plugin already running", func(t *testing.T) {
		w.T = t
		ds := `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"nvidia-device-plugin-daemonset","namespace":"kube-system"},
"spec":{"selector":{"matchLabels":{"app":"ndp"}},"template":{"metadata":{"labels":{"app":"ndp"}},
"spec":{"nodeSelector":{"gpu":"none"},"containers":[{"name":"p","image":"nvcr.io/nvidia/k8s-device-plugin:v0.17.0","command":["true"]}]}}}}`
		applyJSON(t, ds)
		defer clustertest.Kubectl(t, "delete", "daemonset", "nvidia-device-plugin-daemonset", "-n", "kube-system")
		out, errOut, code := w.Outpost("k8s-extension", "update", "--name", "arcml-extension", "--cluster-type", "connectedClusters",
			"--cluster-name", "c1", "--resource-group", "rg", "--config", "installNvidiaDevicePlugin=True")
		if code == 0 || !strings.Contains(errOut, "an NVIDIA device plugin already runs in this cluster (DaemonSet kube-system/nvidia-device-plugin-daemonset)") {
			t.Fatalf("update: exit %d\n%s\n%s", code, out, errOut)
		}
		if e := showExtension(w, "arcml-extension"); e.InstallState != api.InstallFailed {
			t.Fatalf("installState %s, want Failed", e.InstallState)
		}
		// The refused setting did not tear down what runs. Failed is the
		// agent's report of this very apply, which prunes before it reports:
		// whatever it would have removed is gone by now.
		allRunning(t)
		// Back to the working settings.
		w.Must("k8s-extension", "update", "--name", "arcml-extension", "--cluster-type", "connectedClusters",
			"--cluster-name", "c1", "--resource-group", "rg", "--config", "installNvidiaDevicePlugin=False")
	})
	w.T = t

	t.Run("a component that cannot run fails the install with its reason", func(t *testing.T) {
		w.T = t
		args := []string{"k8s-extension", "update", "--name", "arcml-extension", "--cluster-type", "connectedClusters",
			"--cluster-name", "c1", "--resource-group", "rg", "--config"}
		out, errOut, code := w.Outpost(append(args, "nodeSelector.pool=nowhere")...)
		if code == 0 || !strings.Contains(errOut, "cluster-status-reporter: pod cluster-status-reporter-") || !strings.Contains(errOut, "Unschedulable") {
			t.Fatalf("update to an impossible nodeSelector: exit %d\n%s\n%s", code, out, errOut)
		}
		// An empty value removes the key; the install recovers.
		w.Must(append(args, "nodeSelector.pool=")...)
		allRunning(t)
	})
	w.T = t

	// Attach the cluster with the extension of the last scenario installed.
	id := "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1"
	var comp api.Compute
	out = w.Must("ml", "compute", "attach", "--resource-group", "rg", "--workspace-name", "ws", "--name", "amlarc-compute",
		"--resource-id", id, "--type", "kubernetes", "--identity-type", "SystemAssigned", "-o", "json")
	if err := json.Unmarshal([]byte(out), &comp); err != nil || comp.ProvisioningState != api.StateSucceeded || comp.Namespace != "default" || comp.Identity.PrincipalID == "" {
		t.Fatalf("attach: %s (%v)", out, err)
	}
	if out := w.Must("ml", "compute", "list", "-g", "rg", "-w", "ws"); !strings.Contains(out, "amlarc-compute") || !strings.Contains(out, "Succeeded") {
		t.Fatalf("compute list:\n%s", out)
	}
	w.Must("ml", "compute", "detach", "-g", "rg", "-w", "ws", "-n", "amlarc-compute", "--yes")
	if _, errOut, code := w.Outpost("ml", "compute", "show", "-g", "rg", "-w", "ws", "-n", "amlarc-compute"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show after detach: exit %d %s", code, errOut)
	}
	deleteAndWaitEmpty(t, w, "arcml-extension")
	if out := clustertest.Kubectl(t, "get", "all", "-n", "azureml", "--no-headers"); strings.TrimSpace(out) != "" && !strings.Contains(out, "No resources") {
		t.Fatalf("left in azureml:\n%s", out)
	}
}

func applyJSON(t *testing.T, manifest string) {
	t.Helper()
	cmd := exec.Command("kubectl", "--kubeconfig", clustertest.Cluster.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

func mustDecode(t *testing.T, b64 string) []byte {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// connectC1 connects the test cluster as rg/c1 and, when the test ends,
// deletes it again and waits until its agent's namespace is gone.
func connectC1(t *testing.T, w *workspace, args ...string) string {
	t.Helper()
	out := w.Must(append([]string{"connectedk8s", "connect", "--name", "c1", "--resource-group", "rg"}, args...)...)
	t.Cleanup(func() {
		w.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", "rg", "--yes")
		clustertest.Eventually(t, 60*time.Second, "agent namespace gone", func() error {
			for _, ns := range []string{"azure-arc", "azureml"} {
				if _, err := clustertest.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("namespace %s still there (%v)", ns, err)
				}
			}
			return nil
		})
	})
	return out
}
