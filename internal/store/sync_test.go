package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// byParent syncs extensions to the cluster of their parent, as the workspace does.
func byParent(k Key, _ json.RawMessage) string {
	if k.Kind == "extensions" {
		return k.Group + "/" + k.Parent[len("connectedClusters/"):]
	}
	if k.Kind == "connectedClusters" {
		return k.Group + "/" + k.Name
	}
	return ""
}

func names(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

func TestChangesSince(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "workspace.db"))
	s.SetTargets(byParent)
	kinds := []string{"extensions"}
	cluster := Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}
	ext := func(name string) Key {
		return Key{Kind: "extensions", Group: "rg", Parent: "connectedClusters/c1", Name: name}
	}
	if _, err := s.Create(ctx, cluster, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if _, err := s.Create(ctx, ext(n), json.RawMessage(`{}`), nil); err != nil {
			t.Fatal(err)
		}
	}
	full, err := s.ChangesSince(ctx, "rg/c1", kinds, 0)
	if err != nil || !full.Reset || !slices.Equal(names(full.Objects), []string{"a", "b", "c"}) {
		t.Fatalf("from 0: %+v %v, want a reset with a, b, c", full, err)
	}

	// A status write (the agent's report) is no change for the agent.
	if _, err := s.UpdateStatus(ctx, ext("a"), json.RawMessage(`{"installState":"Installed"}`)); err != nil {
		t.Fatal(err)
	}
	ch, err := s.ChangesSince(ctx, "rg/c1", kinds, full.Revision)
	if err != nil || ch.Reset || len(ch.Objects) != 0 || len(ch.Deleted) != 0 || ch.Revision <= full.Revision {
		t.Fatalf("after a status write: %+v %v, want nothing at a later revision", ch, err)
	}

	// A spec change and a deletion are.
	woke := make(chan struct{})
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s.WaitTarget(wctx, "rg/c1", ch.Revision)
		close(woke)
	}()
	if _, err := s.UpdateSpec(ctx, ext("b"), json.RawMessage(`{"x":1}`), nil, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitTarget did not wake on a spec change of its target")
	}
	if err := s.Delete(ctx, ext("c")); err != nil {
		t.Fatal(err)
	}
	ch2, err := s.ChangesSince(ctx, "rg/c1", kinds, ch.Revision)
	if err != nil || ch2.Reset || !slices.Equal(names(ch2.Objects), []string{"b"}) || len(ch2.Deleted) != 1 || ch2.Deleted[0] != ext("c") {
		t.Fatalf("after an update of b and a delete of c: %+v %v", ch2, err)
	}
	// Other targets see none of it.
	if other, err := s.ChangesSince(ctx, "rg/c2", kinds, ch.Revision); err != nil || len(other.Objects)+len(other.Deleted) != 0 {
		t.Fatalf("another cluster: %+v %v", other, err)
	}

	// Deleting the cluster leaves tombstones for its cascaded extensions.
	if err := s.Delete(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	ch3, err := s.ChangesSince(ctx, "rg/c1", kinds, ch2.Revision)
	if err != nil || len(ch3.Deleted) != 2 {
		t.Fatalf("after deleting the cluster: %+v %v, want tombstones for a and b", ch3, err)
	}

	// Once tombstones are compacted, an agent from before gets a reset.
	if err := s.CompactTombstones(ctx, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ch4, err := s.ChangesSince(ctx, "rg/c1", kinds, ch2.Revision)
	if err != nil || !ch4.Reset || len(ch4.Objects) != 0 {
		t.Fatalf("after compaction: %+v %v, want an empty reset", ch4, err)
	}
	// An agent that is up to date is not reset.
	ch5, err := s.ChangesSince(ctx, "rg/c1", kinds, ch4.Revision)
	if err != nil || ch5.Reset {
		t.Fatalf("up to date after compaction: %+v %v", ch5, err)
	}
}

func TestTouchedSince(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "workspace.db"))
	s.SetTargets(byParent)
	cluster := Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}
	if _, err := s.Create(ctx, cluster, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	rev := s.Revision()
	if _, err := s.UpdateStatus(ctx, cluster, json.RawMessage(`{"namespaces":["default"]}`)); err != nil {
		t.Fatal(err)
	}
	got, rev2, err := s.TouchedSince(ctx, rev)
	if err != nil || len(got) != 1 || got[0].Key != cluster || got[0].Target != "rg/c1" || got[0].Deleted || rev2 != s.Revision() {
		t.Fatalf("after a status write: %+v %d %v", got, rev2, err)
	}
	if err := s.Delete(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	got, _, err = s.TouchedSince(ctx, rev2)
	if err != nil || len(got) != 1 || !got[0].Deleted || got[0].Target != "rg/c1" {
		t.Fatalf("after a delete: %+v %v", got, err)
	}
}
