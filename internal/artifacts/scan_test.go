package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// writeTree makes files (path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func rels(files []LocalFile) []string {
	out := []string{}
	for _, f := range files {
		out = append(out, f.Rel)
	}
	return out
}

func TestScanIgnore(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		".git/config":    "[core]",
		".gitignore":     "*.log\n/build/\n!keep.log\n# a comment\n\n",
		"a.log":          "x",
		"keep.log":       "x",
		"build/out":      "x",
		"main.py":        "print(1)",
		"sub/build/out":  "x", // /build/ is anchored to the root
		"sub/.amlignore": "data/\r\n!z.log\n",
		"sub/.gitignore": "*.py\n", // sub has a .amlignore: not read
		"sub/x.py":       "x",
		"sub/y.log":      "x", // the root's *.log applies below it
		"sub/z.log":      "x", // and sub's !z.log takes it back
		"sub/data/big":   "x",
		"other/data/big": "x", // sub's data/ applies to sub only
		"other/.git":     "gitdir: elsewhere",
	})
	got, err := Scan(dir, UploadOptions{Ignore: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".gitignore", "keep.log", "main.py", "other/data/big", "sub/.amlignore", "sub/.gitignore", "sub/build/out", "sub/x.py", "sub/z.log"}
	if !reflect.DeepEqual(rels(got), want) {
		t.Errorf("Scan with ignore files:\n got %q\nwant %q", rels(got), want)
	}

	got, err = Scan(dir, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{".gitignore", "a.log", "build/out", "keep.log", "main.py", "other/data/big", "sub/.amlignore", "sub/.gitignore", "sub/build/out", "sub/data/big", "sub/x.py", "sub/y.log", "sub/z.log"}
	if !reflect.DeepEqual(rels(got), want) {
		t.Errorf("Scan without ignore files (.git still left out):\n got %q\nwant %q", rels(got), want)
	}
}

func TestScanAmlignoreWinsAtTheRoot(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		".amlignore": "*.bin\ne/\n!e/x\n",
		".gitignore": "*.py\n", // the folder has a .amlignore: not read
		"a.bin":      "x",
		"a.py":       "x",
		// A nested file takes back what its parent's excluded...
		"d/.amlignore": "!c.bin\n",
		"d/c.bin":      "x",
		// ...but a file in an excluded folder stays out, as with git.
		"e/x": "x",
	})
	got, err := Scan(dir, UploadOptions{Ignore: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".amlignore", ".gitignore", "a.py", "d/.amlignore", "d/c.bin"}
	if !reflect.DeepEqual(rels(got), want) {
		t.Errorf("got %q, want %q", rels(got), want)
	}
}

func TestScanFiles(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.txt": "hello", "run.sh": "#!/bin/sh\n"})
	if err := os.Chmod(filepath.Join(dir, "run.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "shared.txt")
	if err := os.WriteFile(outside, []byte("shared"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	got, err := Scan(dir, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []LocalFile{
		// sha256 of "hello"
		{Rel: "a.txt", Abs: filepath.Join(dir, "a.txt"), Size: 5, SHA256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", Mode: 0o644},
		// a link to a file is the file (its mode normalised too)
		{Rel: "link.txt", Abs: filepath.Join(dir, "link.txt"), Size: 6, SHA256: hashOf("shared"), Mode: 0o644},
		{Rel: "run.sh", Abs: filepath.Join(dir, "run.sh"), Size: 10, SHA256: hashOf("#!/bin/sh\n"), Mode: 0o755},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestScanRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		err   string
	}{
		{"a link to a folder", func(t *testing.T, dir string) {
			if err := os.Symlink(t.TempDir(), filepath.Join(dir, "venv")); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link to a folder is not uploaded"},
		{"a dangling link", func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "gone")); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link whose target cannot be read"},
		{"a named pipe", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "a named pipe cannot be uploaded"},
		{"a file with a backslash", func(t *testing.T, dir string) {
			writeTree(t, dir, map[string]string{`a\b`: "x"})
		}, "backslash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{"ok.txt": "x"})
			tc.setup(t, dir)
			if _, err := Scan(dir, UploadOptions{}); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Scan: %v, want an error with %q", err, tc.err)
			}
			// What is ignored is not refused.
			writeTree(t, dir, map[string]string{".amlignore": "venv\ngone\npipe\na\\\\b\n"})
			if _, err := Scan(dir, UploadOptions{Ignore: true}); err != nil {
				t.Fatalf("Scan with the entry ignored: %v", err)
			}
		})
	}
}

func TestScanMaxBytes(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"small": "x", "data/big.bin": strings.Repeat("x", 3000), "mid": strings.Repeat("x", 100)})
	_, err := Scan(dir, UploadOptions{MaxBytes: 2048})
	if err == nil {
		t.Fatal("a folder over the limit was accepted")
	}
	for _, want := range []string{"3.0 KiB in 3 files", "limit of 2.0 KiB", "data/big.bin (2.9 KiB)", ".amlignore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := Scan(dir, UploadOptions{MaxBytes: 4096}); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
}

func TestTreeDigest(t *testing.T) {
	base := []LocalFile{
		{Rel: "a", SHA256: hashOf("a"), Mode: 0o644},
		{Rel: "b/c", SHA256: hashOf("c"), Mode: 0o755},
	}
	d := TreeDigest(base)
	// Pinned: uploads are named by it (LocalUpload/<digest>/), so a change
	// of the format sends every folder again. It is
	// printf '<sha256> <octal mode> <len>:<path>\n'... | sha256sum.
	if want := "d7e4e2950fa86d602f16fd4edd89811bda989292ab4b0004077f087526d3d5bb"; d != want {
		t.Fatalf("TreeDigest = %s, want %s", d, want)
	}
	// Where the files are read from and their order do not matter.
	swapped := []LocalFile{base[1], base[0]}
	swapped[0].Abs = "/elsewhere"
	if TreeDigest(swapped) != d {
		t.Error("the digest depends on the order of the files or where they are")
	}
	for name, change := range map[string]func(f []LocalFile){
		"a name":    func(f []LocalFile) { f[0].Rel = "A" },
		"a mode":    func(f []LocalFile) { f[1].Mode = 0o644 },
		"a content": func(f []LocalFile) { f[0].SHA256 = hashOf("A") },
		// Names holding the separators must not collide with others.
		"a split": func(f []LocalFile) { f[0].Rel = "a\n" + f[1].SHA256 },
	} {
		f := append([]LocalFile(nil), base...)
		change(f)
		if TreeDigest(f) == d {
			t.Errorf("changing %s keeps the digest", name)
		}
	}
	if TreeDigest(base[:1]) == d || TreeDigest(nil) == d {
		t.Error("fewer files, same digest")
	}
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
