package store

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestDatabaseFilesOwnerOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "workspace.db")
	// What an older version left: files readable by everyone.
	s := open(t, path)
	if _, err := s.Create(ctx, Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}, json.RawMessage(`{}`), []byte(`{"secret":1}`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, path)
	if _, err := s.Get(ctx, Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}); err != nil {
		t.Fatalf("the data written before: %v", err)
	}
	if _, err := s.Create(ctx, Key{Kind: "connectedClusters", Group: "rg", Name: "c2"}, json.RawMessage(`{}`), []byte(`{"secret":2}`)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", filepath.Base(f), fi, err)
		}
	}

	// A new database: SQLite's -wal and -shm take the database file's mode.
	fresh := filepath.Join(dir, "fresh.db")
	s2 := open(t, fresh)
	if _, err := s2.Create(ctx, Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", filepath.Base(f), fi, err)
		}
	}
}

func TestRewriteProtectedLeavesNoOldData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "workspace.db")
	s := open(t, path)
	k := Key{Kind: "extensions", Group: "rg", Parent: "connectedClusters/c1", Name: "ml"}
	plain := []byte(`{"sslKeyPemFile":"PLAIN-SECRET-0123456789"}`)
	if _, err := s.Create(ctx, k, json.RawMessage(`{}`), plain); err != nil {
		t.Fatal(err)
	}
	other := Key{Kind: "connectedClusters", Group: "rg", Name: "c1"}
	if _, err := s.Create(ctx, other, json.RawMessage(`{}`), []byte("keep")); err != nil {
		t.Fatal(err)
	}
	n, err := s.RewriteProtected(ctx, func(key Key, data []byte) ([]byte, error) {
		if key != k {
			return nil, nil
		}
		return bytes.ReplaceAll(data, []byte("PLAIN-SECRET-0123456789"), []byte("sealed")), nil
	})
	if err != nil || n != 1 {
		t.Fatalf("rewrite: %d %v, want 1 replaced", n, err)
	}
	if got, err := s.Protected(ctx, k); err != nil || string(got) != `{"sslKeyPemFile":"sealed"}` {
		t.Fatalf("rewritten data %q %v", got, err)
	}
	if got, err := s.Protected(ctx, other); err != nil || string(got) != "keep" {
		t.Fatalf("data f left alone: %q %v", got, err)
	}
	for _, f := range []string{path, path + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("PLAIN-SECRET-0123456789")) {
			t.Errorf("%s still holds the old data", filepath.Base(f))
		}
	}
}
