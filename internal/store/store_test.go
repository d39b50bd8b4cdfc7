package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLifecycleAndPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "workspace.db")
	s := open(t, path)
	cluster := Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}
	ext := Key{Kind: "extensions", Group: "rg", Parent: "connectedClusters/c1", Name: "ml"}

	if _, err := s.Create(ctx, cluster, json.RawMessage(`{"a":1}`), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, cluster, json.RawMessage(`{"a":2}`), nil); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	o, err := s.Create(ctx, ext, json.RawMessage(`{"enableTraining":"True"}`), []byte(`{"key":"secret"}`))
	if err != nil || o.Generation != 1 {
		t.Fatalf("create extension: %+v %v", o, err)
	}
	if _, err := s.UpdateSpec(ctx, ext, json.RawMessage(`{"enableTraining":"False"}`), nil, 2); !errors.Is(err, ErrConflict) {
		t.Fatalf("update with a stale generation: %v, want ErrConflict", err)
	}
	o, err = s.UpdateSpec(ctx, ext, json.RawMessage(`{"enableTraining":"False"}`), nil, 1)
	if err != nil || o.Generation != 2 {
		t.Fatalf("update: %+v %v", o, err)
	}
	if _, err := s.UpdateStatus(ctx, ext, json.RawMessage(`{"installState":"Installed"}`)); err != nil {
		t.Fatal(err)
	}
	rev := s.Revision()
	s.Close()

	// Everything acknowledged is there after a reopen (and migrations run once).
	s = open(t, path)
	if s.Revision() != rev {
		t.Fatalf("revision %d after reopen, want %d", s.Revision(), rev)
	}
	o, err = s.Get(ctx, ext)
	if err != nil || string(o.Spec) != `{"enableTraining":"False"}` || string(o.Status) != `{"installState":"Installed"}` || o.Generation != 2 {
		t.Fatalf("after reopen: %+v %v", o, err)
	}
	if p, _ := s.Protected(ctx, ext); string(p) != `{"key":"secret"}` {
		t.Fatalf("protected data %q", p)
	}
	all, err := s.List(ctx, "extensions", "", "*")
	if err != nil || len(all) != 1 {
		t.Fatalf("list: %v %v", all, err)
	}

	// Deleting the cluster removes what belongs to it.
	if err := s.Delete(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ext); !errors.Is(err, ErrNotFound) {
		t.Fatalf("extension after its cluster was deleted: %v", err)
	}
	if p, _ := s.Protected(ctx, ext); p != nil {
		t.Fatalf("protected data left behind: %q", p)
	}
	if err := s.Delete(ctx, cluster); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestWaitWakesOnWrite(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "w.db"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	since := s.Revision()
	got := make(chan int64)
	go func() { got <- s.Wait(ctx, since) }()
	time.Sleep(50 * time.Millisecond)
	if _, err := s.Create(ctx, Key{Kind: "k", Group: "g", Name: "n"}, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case rev := <-got:
		if rev <= since {
			t.Fatalf("Wait returned %d, want > %d", rev, since)
		}
	case <-ctx.Done():
		t.Fatal("Wait did not wake on a write")
	}
}

// TestConcurrentWritesCommitTogether checks group commit: many writers at
// once, some of which fail, each get their own outcome and nothing of a
// failed one is stored.
func TestConcurrentWritesCommitTogether(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "g.db"))
	if _, err := s.Create(ctx, Key{Kind: "k", Group: "g", Name: "taken"}, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	start := s.Revision()
	const n = 200
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			name := "n" + strconv.Itoa(i)
			if i%10 == 0 {
				name = "taken" // fails: exists
			}
			_, err := s.Create(ctx, Key{Kind: "k", Group: "g", Name: name}, json.RawMessage(`{"i":`+strconv.Itoa(i)+`}`), []byte("p"))
			errs <- err
		}()
	}
	failed := 0
	for i := 0; i < n; i++ {
		if err := <-errs; errors.Is(err, ErrExists) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, "k", "g", "")
	if err != nil {
		t.Fatal(err)
	}
	if failed != n/10 || len(list) != n-n/10+1 {
		t.Fatalf("%d failed, %d stored; want %d failed, %d stored", failed, len(list), n/10, n-n/10+1)
	}
	// Each successful write advanced the revision once; failed ones not at all.
	if got := s.Revision() - start; got != int64(n-n/10) {
		t.Fatalf("revision advanced by %d, want %d", got, n-n/10)
	}
	if p, _ := s.Protected(ctx, Key{Kind: "k", Group: "g", Name: "taken"}); p != nil {
		t.Fatalf("a failed create left protected data: %q", p)
	}
}
