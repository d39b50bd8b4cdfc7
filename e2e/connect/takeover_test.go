package connect

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
)

// agentSecret is the agent's Secret in the test cluster: which registration
// it serves, and its version.
func agentSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := clustertest.Cluster.Client.CoreV1().Secrets("azure-arc").Get(context.Background(), "outpost-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("agent secret: %v", err)
	}
	return s
}

func serves(s *corev1.Secret) string {
	return string(s.Data["OUTPOST_RESOURCE_GROUP"]) + "/" + string(s.Data["OUTPOST_CLUSTER"]) + " of " + string(s.Data["OUTPOST_WORKSPACE_URL"])
}

func agentGone(t *testing.T) {
	t.Helper()
	clustertest.Eventually(t, 60*time.Second, "agent namespace gone", func() error {
		for _, ns := range []string{"azure-arc", "azureml"} {
			if _, err := clustertest.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s still there (%v)", ns, err)
			}
		}
		return nil
	})
}

// notFound asserts that the CLI says a resource does not exist.
func notFound(t *testing.T, w *workspace, what string, args ...string) {
	t.Helper()
	out, errOut, code := w.Outpost(args...)
	if code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("%s: exit %d, want not found\n%s\n%s", what, code, out, errOut)
	}
}

// A cluster connected under one name is not taken over by connecting it
// under another, in the same workspace or another: refused, naming the
// registration it has, with nothing changed; --force takes it over and the
// first registration goes; after `delete` it connects again without force.
func TestConnectTakeover(t *testing.T) {
	w := startWorkspace(t)
	w2 := startWorkspace(t)
	t.Cleanup(func() {
		// Each delete removes the agent only if it serves that registration.
		for _, d := range []struct {
			w    *workspace
			name string
		}{{w, "a"}, {w, "b"}, {w2, "c"}} {
			d.w.Outpost("connectedk8s", "delete", "--name", d.name, "--resource-group", "rg", "--yes")
		}
		agentGone(t)
	})
	kubeSystem, err := clustertest.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	w.Must("connectedk8s", "connect", "--name", "a", "--resource-group", "rg")
	if c := showCluster(w, "a"); c.ConnectivityStatus != api.Connected || c.ClusterIdentity != string(kubeSystem.UID) {
		t.Fatalf("connected as a: %+v, want Connected with identity %s", c, kubeSystem.UID)
	}
	ext := func(cluster string, args ...string) []string {
		return append([]string{"k8s-extension", args[0], "--name", "ml", "--cluster-type", "connectedClusters",
			"--cluster-name", cluster, "--resource-group", "rg"}, args[1:]...)
	}
	if out := w.Must(ext("a", "create", "--extension-type", "Microsoft.AzureML.Kubernetes", "--scope", "cluster",
		"--config", "enableTraining=True")...); !strings.Contains(out, "Installed") {
		t.Fatalf("extension on a:\n%s", out)
	}
	before := agentSecret(t)

	// Refused, in this workspace and in another one, before anything is
	// registered or installed.
	urlA := "https://" + w.Addr
	for _, tc := range []struct {
		w    *workspace
		name string
	}{{w, "b"}, {w2, "c"}} {
		out, errOut, code := tc.w.Outpost("connectedk8s", "connect", "--name", tc.name, "--resource-group", "rg")
		if code == 0 || !strings.Contains(errOut, "already connected as rg/a to workspace "+urlA) || !strings.Contains(errOut, "--force") ||
			!strings.Contains(errOut, "connectedk8s delete --name a --resource-group rg") {
			t.Fatalf("connect the cluster as %s: exit %d, want a refusal naming rg/a of %s\n%s\n%s", tc.name, code, urlA, out, errOut)
		}
		if strings.Contains(errOut, "registering") {
			t.Fatalf("refused connect registered first:\n%s", errOut)
		}
		notFound(t, tc.w, "the refused registration", "connectedk8s", "show", "--name", tc.name, "--resource-group", "rg")
	}
	if after := agentSecret(t); after.ResourceVersion != before.ResourceVersion || serves(after) != serves(before) {
		t.Fatalf("a refused connect changed the agent's secret: serves %s (version %s), was %s (version %s)",
			serves(after), after.ResourceVersion, serves(before), before.ResourceVersion)
	}
	if c := showCluster(w, "a"); c.ConnectivityStatus != api.Connected {
		t.Fatalf("a after the refusals: %+v", c)
	}
	var e api.Extension
	if err := json.Unmarshal([]byte(w.Must(ext("a", "show", "-o", "json")...)), &e); err != nil || e.InstallState != api.InstallInstalled {
		t.Fatalf("a's extension after the refusals: %+v (%v)", e, err)
	}

	// --force in the same workspace: b serves, a is deleted with its
	// extension, so nothing of it claims to be Installed.
	_, errOut, code := w.Outpost("connectedk8s", "connect", "--name", "b", "--resource-group", "rg", "--force")
	if code != 0 || !strings.Contains(errOut, "--force: deleted registration /resourceGroups/rg/connectedClusters/a") {
		t.Fatalf("connect --force as b: exit %d\n%s\n--- workspace log ---\n%s", code, errOut, w.Log())
	}
	if c := showCluster(w, "b"); c.ConnectivityStatus != api.Connected {
		t.Fatalf("b after --force: %+v", c)
	}
	if s := agentSecret(t); serves(s) != "rg/b of "+urlA {
		t.Fatalf("after --force the agent serves %s, want rg/b of %s", serves(s), urlA)
	}
	notFound(t, w, "a after --force", "connectedk8s", "show", "--name", "a", "--resource-group", "rg")
	notFound(t, w, "a's extension after --force", ext("a", "show")...)
	var list []api.ConnectedCluster
	if err := json.Unmarshal([]byte(w.Must("connectedk8s", "list", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].Name != "b" {
		t.Fatalf("list after --force: %+v (%v), want b alone", list, err)
	}

	// delete removes the agent; connecting again right away works without
	// --force (it waits for the old agent's namespace to go).
	if out := w.Must("connectedk8s", "delete", "--name", "b", "--resource-group", "rg", "--yes"); !strings.Contains(out, "removed its agent") {
		t.Fatalf("delete b:\n%s", out)
	}
	w.Must("connectedk8s", "connect", "--name", "a", "--resource-group", "rg")
	if c := showCluster(w, "a"); c.ConnectivityStatus != api.Connected {
		t.Fatalf("a after delete and connect: %+v", c)
	}

	// --force from another workspace: that workspace's registration cannot
	// be deleted with this login, so it stays, and the CLI says so.
	_, errOut, code = w2.Outpost("connectedk8s", "connect", "--name", "c", "--resource-group", "rg", "--force")
	if code != 0 || !strings.Contains(errOut, "registration rg/a of workspace "+urlA+" no longer has an agent") {
		t.Fatalf("connect --force from another workspace: exit %d\n%s", code, errOut)
	}
	if s := agentSecret(t); serves(s) != "rg/c of https://"+w2.Addr {
		t.Fatalf("after --force from another workspace the agent serves %s", serves(s))
	}
	// Deleting the left registration must not remove the agent that now
	// serves the other workspace.
	out := w.Must("connectedk8s", "delete", "--name", "a", "--resource-group", "rg", "--yes")
	if !strings.Contains(out, "nothing removed from the cluster") || !strings.Contains(out, "rg/c of workspace https://"+w2.Addr) {
		t.Fatalf("delete of the left registration:\n%s", out)
	}
	if s := agentSecret(t); serves(s) != "rg/c of https://"+w2.Addr || s.DeletionTimestamp != nil {
		t.Fatalf("deleting the left registration touched the agent: serves %s", serves(s))
	}
	if c := showCluster(w2, "c"); c.ConnectivityStatus != api.Connected {
		t.Fatalf("c after the old registration's delete: %+v", c)
	}
}
