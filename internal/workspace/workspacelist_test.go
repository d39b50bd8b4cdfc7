package workspace

import (
	"context"
	"reflect"
	"testing"
	"time"

	"outpost.dev/outpost/api"
)

func TestListWorkspaces(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	ctx := context.Background()
	var got []workspaceView
	if err := c.Do(ctx, "GET", "/workspaces", nil, &got); err != nil || len(got) != 0 {
		t.Fatalf("empty workspace: %v %+v", err, got)
	}
	attach := api.ComputeRequest{Type: "Kubernetes", ResourceID: "/resourceGroups/rg/connectedClusters/c1"}
	for _, p := range []string{"/resourceGroups/rg2/workspaces/b/computes/k8s", "/resourceGroups/rg2/workspaces/b/computes/other",
		"/resourceGroups/rg1/workspaces/a/computes/k8s"} {
		if err := c.Do(ctx, "PUT", p, attach, nil); err != nil {
			t.Fatalf("attach %s: %v", p, err)
		}
	}
	if err := c.Do(ctx, "PATCH", "/resourceGroups/rg1/workspaces/a", map[string]string{"default_compute": "k8s"}, nil); err != nil {
		t.Fatal(err)
	}
	// Settings alone make a workspace known too.
	if err := c.Do(ctx, "PATCH", "/resourceGroups/rg0/workspaces/z", map[string]string{"default_compute": ""}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "GET", "/workspaces", nil, &got); err != nil {
		t.Fatal(err)
	}
	want := []workspaceView{{Name: "z", ResourceGroup: "rg0"}, {Name: "a", ResourceGroup: "rg1", DefaultCompute: "k8s"}, {Name: "b", ResourceGroup: "rg2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("workspaces:\n got %+v\nwant %+v", got, want)
	}
	if err := as(c, "wrong-token-wrong-token-wrong-token").Do(ctx, "GET", "/workspaces", nil, &got); statusOf(err) != 401 {
		t.Fatalf("without the admin token: %v", err)
	}
}
