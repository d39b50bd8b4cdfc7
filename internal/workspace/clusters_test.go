package workspace

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// A workspace registers a cluster (by its kube-system UID) once: a second
// name is refused and stores nothing; force deletes the first registration
// with its extensions, and its agent is refused from then on.
func TestClusterRegisteredOnceByIdentity(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	ctx := context.Background()
	const uid = "6a4c1b9e-0f3d-4d7e-9a51-2b8f3c9d0e11"
	var a api.ConnectedCluster
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/a", map[string]string{"clusterIdentity": uid}, &a); err != nil {
		t.Fatal(err)
	}
	if a.ClusterIdentity != uid {
		t.Fatalf("registration does not show the identity: %+v", a)
	}
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/a/extensions/ml", req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}

	err := c.Do(ctx, "PUT", "/resourceGroups/rg2/connectedClusters/b", map[string]string{"clusterIdentity": uid}, nil)
	if statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "already connected as rg/a") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second name for one cluster: %v, want 409 naming rg/a", err)
	}
	if err := c.Do(ctx, "GET", "/resourceGroups/rg2/connectedClusters/b", nil, nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("refused registration was stored: %v", err)
	}
	// Another cluster's name is not taken over, even with force.
	err = c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/a?force=true", map[string]string{"clusterIdentity": "other-uid"}, nil)
	if statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("force onto another cluster's name: %v, want 409 already exists", err)
	}
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/c?force=yes", map[string]string{"clusterIdentity": uid}, nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("force=yes: %v, want 400", err)
	}

	var b api.ConnectedCluster
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg2/connectedClusters/b?force=true", map[string]string{"clusterIdentity": uid}, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Replaced) != 1 || b.Replaced[0] != "/resourceGroups/rg/connectedClusters/a" {
		t.Fatalf("forced registration says it replaced %v, want rg/a", b.Replaced)
	}
	if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/a", nil, nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("replaced registration still there: %v", err)
	}
	if err := c.Do(ctx, "GET", "/resourceGroups/rg/connectedClusters/a/extensions/ml", nil, nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("replaced registration's extension still there: %v", err)
	}
	if err := as(c, a.AgentToken).Do(ctx, "POST", "/agent/v1/resourceGroups/rg/connectedClusters/a/report", api.AgentReport{}, nil); statusOf(err) != http.StatusForbidden {
		t.Fatalf("the replaced registration's agent: %v, want 403", err)
	}
	report(t, as(c, b.AgentToken), "rg2", "b", api.AgentReport{})

	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/x", map[string]string{"clusterIdentity": "bad/uid"}, nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("malformed identity: %v, want 400", err)
	}
}

// A stored cluster whose status does not decode is reported as corrupt,
// not shown as a cluster that never reported.
func TestCorruptClusterStatusReported(t *testing.T) {
	dir := t.TempDir()
	c, stop := start(t, dir, time.Second)
	ctx := context.Background()
	if err := c.Do(ctx, "PUT", "/resourceGroups/rg/connectedClusters/a", map[string]string{}, nil); err != nil {
		t.Fatal(err)
	}
	stop()
	st, err := store.Open(filepath.Join(dir, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateStatus(ctx, clusterKey("rg", "a"), []byte(`{"facts": [`)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	c, stop = start(t, dir, time.Second)
	defer stop()
	for _, path := range []string{"/resourceGroups/rg/connectedClusters/a", "/resourceGroups/rg/connectedClusters"} {
		err := c.Do(ctx, "GET", path, nil, nil)
		if statusOf(err) != http.StatusInternalServerError || !strings.Contains(err.Error(), "stored status of") {
			t.Errorf("GET %s: %v, want 500 saying the stored status is unreadable", path, err)
		}
	}
}
