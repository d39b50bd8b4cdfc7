package workspace

import (
	"context"
	"net/http"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

// installed creates the ML extension on a cluster and has its agent report
// it Installed with the given namespaces; it returns the revision synced.
func installed(t *testing.T, c, agent *client.Client, rg, cluster string, namespaces ...string) int64 {
	t.Helper()
	if err := c.Do(context.Background(), "PUT", "/resourceGroups/"+rg+"/connectedClusters/"+cluster+"/extensions/ml",
		req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	d := syncSince(t, agent, rg, cluster, 0)
	for _, o := range d.Objects {
		if o.Kind == api.KindExtension {
			report(t, agent, rg, cluster, api.AgentReport{Revision: d.Revision, Namespaces: namespaces,
				Extensions: []api.ExtensionReport{{Name: "ml", Generation: o.Generation, InstallState: api.InstallInstalled}}})
			return d.Revision
		}
	}
	t.Fatalf("no extension in %+v", d)
	return 0
}

func attachTo(t *testing.T, c *client.Client, name, cluster, namespace string) (api.Compute, error) {
	t.Helper()
	var comp api.Compute
	err := c.Do(context.Background(), "PUT", "/resourceGroups/rg/workspaces/ws/computes/"+name,
		api.ComputeRequest{Type: "Kubernetes", ResourceID: "/resourceGroups/rg/connectedClusters/" + cluster, Namespace: namespace}, &comp)
	return comp, err
}

// TestComputeFollowsItsConditions walks a compute through every transition
// its cluster's conditions cause, each decided by the compute reconciler
// from what the agent reports and what the store holds.
func TestComputeFollowsItsConditions(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	ctx := context.Background()
	agent := register(t, c, "rg", "c1")
	rev := installed(t, c, agent, "rg", "c1", "default")
	// sync has the agent pick up what changed and confirm it with facts.
	sync := func(namespaces ...string) {
		t.Helper()
		rev = syncSince(t, agent, "rg", "c1", rev).Revision
		report(t, agent, "rg", "c1", api.AgentReport{Revision: rev, Namespaces: namespaces})
	}

	// A namespace missing at attach fails it, and creating the namespace
	// afterwards (kubectl create ns) makes it Succeeded, without a new attach.
	if comp, err := attachTo(t, c, "team", "c1", "team"); err != nil || comp.ProvisioningState != api.StateCreating {
		t.Fatalf("attach: %+v %v, want Creating", comp, err)
	}
	sync("default")
	waitCompute(t, c, "rg", "ws", "team", api.StateFailed, `namespace "team" does not exist`)
	report(t, agent, "rg", "c1", api.AgentReport{Revision: rev, Namespaces: []string{"default", "team"}})
	waitCompute(t, c, "rg", "ws", "team", api.StateSucceeded, "")

	// The namespace deleted: Failed again.
	report(t, agent, "rg", "c1", api.AgentReport{Revision: rev, Namespaces: []string{"default"}})
	waitCompute(t, c, "rg", "ws", "team", api.StateFailed, `namespace "team" does not exist`)

	// Attaching a Failed compute again replaces it; a Succeeded one is refused.
	comp, err := attachTo(t, c, "team", "c1", "default")
	if err != nil || comp.ProvisioningState != api.StateCreating || comp.Namespace != "default" || len(comp.ProvisioningErrors) != 0 {
		t.Fatalf("attach again after Failed: %+v %v, want a new attach, Creating", comp, err)
	}
	sync()
	waitCompute(t, c, "rg", "ws", "team", api.StateSucceeded, "")
	if _, err := attachTo(t, c, "team", "c1", "default"); statusOf(err) != http.StatusConflict {
		t.Fatalf("attach on a Succeeded compute: %v, want 409", err)
	}

	// The extension removed: Failed; installed again: Succeeded.
	if err := c.Do(ctx, "DELETE", "/resourceGroups/rg/connectedClusters/c1/extensions/ml", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitCompute(t, c, "rg", "ws", "team", api.StateFailed, "has no ML extension")
	rev = installed(t, c, agent, "rg", "c1")
	waitCompute(t, c, "rg", "ws", "team", api.StateSucceeded, "")

	// The extension failing fails the compute.
	report(t, agent, "rg", "c1", api.AgentReport{Revision: rev,
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallFailed, Message: "pod x: CrashLoopBackOff"}}})
	waitCompute(t, c, "rg", "ws", "team", api.StateFailed, "CrashLoopBackOff")

	// The cluster deleted: Failed.
	if err := c.Do(ctx, "DELETE", "/resourceGroups/rg/connectedClusters/c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitCompute(t, c, "rg", "ws", "team", api.StateFailed, "not found")
}

// TestAttachWaitsForFreshFacts: right after a workspace restart every
// cluster is Connecting; an attach then waits for the agent instead of
// failing for good, and a cluster that stays away fails it only after a
// grace, and passes it once it connects.
func TestAttachWaitsForFreshFacts(t *testing.T) {
	dir := t.TempDir()
	c, stop := start(t, dir, time.Second)
	agent := register(t, c, "rg", "c1")
	rev := installed(t, c, agent, "rg", "c1", "default")
	late := register(t, c, "rg", "c2")
	if err := c.Do(context.Background(), "PUT", "/resourceGroups/rg/connectedClusters/c2/extensions/ml", req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	stop()
	c, stop = start(t, dir, time.Second)
	defer stop()
	agent, late = as(c, agent.Config().Token), as(c, late.Config().Token)

	if comp, err := attachTo(t, c, "k8s", "c1", "default"); err != nil || comp.ProvisioningState != api.StateCreating {
		t.Fatalf("attach right after the restart: %+v %v, want Creating", comp, err)
	}
	if _, err := attachTo(t, c, "k8s-late", "c2", "default"); err != nil {
		t.Fatal(err)
	}
	var comp api.Compute
	if err := c.Do(context.Background(), "GET", "/resourceGroups/rg/workspaces/ws/computes/k8s", nil, &comp); err != nil || comp.ProvisioningState != api.StateCreating {
		t.Fatalf("before the agent reported: %+v %v, want Creating", comp, err)
	}
	// c1's agent comes back and confirms the compute.
	rev = syncSince(t, agent, "rg", "c1", rev).Revision
	report(t, agent, "rg", "c1", api.AgentReport{Revision: rev})
	waitCompute(t, c, "rg", "ws", "k8s", api.StateSucceeded, "")

	// c2's agent stays away past the grace: Failed, until it connects.
	waitCompute(t, c, "rg", "ws", "k8s-late", api.StateFailed, "is not connected")
	d := syncSince(t, late, "rg", "c2", 0)
	report(t, late, "rg", "c2", api.AgentReport{Revision: d.Revision, Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}})
	waitCompute(t, c, "rg", "ws", "k8s-late", api.StateSucceeded, "")
}
