package store

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

func paths(rows []FileRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Path)
	}
	return out
}

func TestFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "workspace.db")
	s := open(t, path)
	rev := s.Revision()
	names := []string{"a/b", "a/b/c", "a/bc", "a%/x", "a_/y", "ab", "b", "a/\xff\xff", "z\xff"}
	var rows []FileRow
	for _, n := range names {
		rows = append(rows, FileRow{Path: n, SHA256: "00", Size: 1, Mode: 0o644})
	}
	if err := s.PutFiles(ctx, "ds", rows); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFiles(ctx, "other", []FileRow{{Path: "a/b/c", SHA256: "11", Size: 2, Mode: 0o755}}); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != rev {
		t.Errorf("file writes moved the revision from %d to %d", rev, s.Revision())
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/b", "a/b/c", "a/bc", "a/\xff\xff"}},
		{"a/b/", []string{"a/b/c"}},
		// '%' and '_' are themselves, not LIKE's wildcards.
		{"a%", []string{"a%/x"}},
		{"a_", []string{"a_/y"}},
		{"z\xff", []string{"z\xff"}},
		{"", []string{"a%/x", "a/b", "a/b/c", "a/bc", "a/\xff\xff", "a_/y", "ab", "b", "z\xff"}},
		{"q", []string{}},
	} {
		got, err := s.ListFiles(ctx, "ds", tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(paths(got), tc.want) {
			t.Errorf("ListFiles(%q) = %q, want %q", tc.prefix, paths(got), tc.want)
		}
	}

	// A path already there is replaced.
	if err := s.PutFiles(ctx, "ds", []FileRow{{Path: "b", SHA256: "22", Size: 3, Mode: 0o755}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	f, err := s.GetFile(ctx, "ds", "b")
	if err != nil || f.SHA256 != "22" || f.Size != 3 || f.Mode != 0o755 || f.Updated.IsZero() {
		t.Fatalf("GetFile after replacing and reopening: %+v %v", f, err)
	}
	if f, err := s.GetFile(ctx, "other", "a/b/c"); err != nil || f.SHA256 != "11" {
		t.Fatalf("GetFile in another datastore: %+v %v", f, err)
	}
	if _, err := s.GetFile(ctx, "other", "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetFile of an absent file: %v, want ErrNotFound", err)
	}
}

func TestPutFilesAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "workspace.db"))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutFiles(cancelled, "ds", []FileRow{{Path: "x", SHA256: "00"}}); err == nil {
		t.Fatal("PutFiles with a cancelled context succeeded")
	}
	// A quiet write that fails after writing a row leaves no row behind.
	err := s.writeQuiet(ctx, func(w *wtx) error {
		if _, err := w.ExecContext(ctx, `INSERT INTO files (datastore, path, sha256, size, mode, updated) VALUES ('ds', 'y', '00', 0, 0, '')`); err != nil {
			return err
		}
		return errors.New("fail after the first row")
	})
	if err == nil {
		t.Fatal("a failing write succeeded")
	}
	if got, err := s.ListFiles(ctx, "ds", ""); err != nil || len(got) != 0 {
		t.Fatalf("after failed writes: %q %v, want nothing", paths(got), err)
	}
}
