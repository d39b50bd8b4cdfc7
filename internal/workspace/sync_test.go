package workspace

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

// syncSince is one long poll of the agent protocol.
func syncSince(t *testing.T, agent *client.Client, rg, cluster string, since int64) api.SyncResponse {
	t.Helper()
	var d api.SyncResponse
	if err := agent.Do(context.Background(), "GET", fmt.Sprintf("/agent/v1/resourceGroups/%s/connectedClusters/%s/sync?since=%d", rg, cluster, since), nil, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// waitCompute waits until a compute is in state with a reason containing want.
func waitCompute(t *testing.T, c *client.Client, rg, ws, name, state, want string) api.Compute {
	t.Helper()
	var comp api.Compute
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		if last = c.Do(ctx, "GET", "/resourceGroups/"+rg+"/workspaces/"+ws+"/computes/"+name, nil, &comp); last != nil {
			return false, nil
		}
		return comp.ProvisioningState == state && strings.Contains(strings.Join(comp.ProvisioningErrors, ""), want), nil
	})
	if err != nil {
		t.Fatalf("compute %s: %+v (%v), want %s with %q", name, comp, last, state, want)
	}
	return comp
}

func TestSyncSendsWhatChanged(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	ctx := context.Background()
	agent := register(t, c, "rg", "c1")
	register(t, c, "rg", "c2")

	first := syncSince(t, agent, "rg", "c1", 0)
	if !first.Reset || len(first.Objects) != 0 || first.HeartbeatSeconds != 1 {
		t.Fatalf("first sync: %+v, want an empty reset", first)
	}

	// The long poll wakes on a change of its cluster, with that object only.
	got := make(chan api.SyncResponse, 1)
	go func() {
		var d api.SyncResponse
		err := agent.Do(ctx, "GET", fmt.Sprintf("/agent/v1/resourceGroups/rg/connectedClusters/c1/sync?since=%d", first.Revision), nil, &d)
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	// Changes of another cluster do not wake it.
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/c2/extensions/ml", req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	var d api.SyncResponse
	select {
	case d = <-got:
		t.Logf("change reached the agent after %s", time.Since(changed))
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not wake on the change")
	}
	if d.Reset || len(d.Objects) != 1 || d.Objects[0].Kind != api.KindExtension || d.Objects[0].ID != "/resourceGroups/rg/connectedClusters/c1/extensions/ml" ||
		d.Objects[0].Extension.Settings["enableTraining"] != "True" {
		t.Fatalf("after creating the extension: %+v, want just it", d)
	}

	// The agent's report (a status write) is no change for it; an attach is.
	report(t, agent, "rg", "c1", api.AgentReport{Revision: d.Revision, Namespaces: []string{"default", "team"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}})
	attach := api.ComputeRequest{Type: "Kubernetes", ResourceID: "/resourceGroups/rg/connectedClusters/c1", Namespace: "team", CreateNamespace: true}
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws/computes/k8s", attach, nil); err != nil {
		t.Fatal(err)
	}
	d2 := syncSince(t, agent, "rg", "c1", d.Revision)
	if len(d2.Objects) != 1 || d2.Objects[0].Compute == nil || d2.Objects[0].Compute.Namespace != "team" || !d2.Objects[0].Compute.CreateNamespace {
		t.Fatalf("after an attach and a report: %+v, want just the compute", d2)
	}

	// Deletions come as such.
	if err := c.Do(ctx, "DELETE", "/resourceGroups/rg/workspaces/ws/computes/k8s", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "DELETE", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", nil, nil); err != nil {
		t.Fatal(err)
	}
	d3 := syncSince(t, agent, "rg", "c1", d2.Revision)
	if len(d3.Objects) != 0 || len(d3.Deleted) != 2 || d3.Deleted[0].Kind != api.KindCompute || d3.Deleted[1].Kind != api.KindExtension {
		t.Fatalf("after a detach and an extension delete: %+v", d3)
	}
	// An agent starting over gets the whole (now empty) state.
	if d4 := syncSince(t, agent, "rg", "c1", 0); !d4.Reset || len(d4.Objects) != 0 {
		t.Fatalf("from 0: %+v", d4)
	}
	if err := agent.Do(ctx, "GET", "/agent/v1/resourceGroups/rg/connectedClusters/c1/sync?since=x", nil, nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("since=x: %v, want 400", err)
	}
}
