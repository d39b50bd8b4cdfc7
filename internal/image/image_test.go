package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// build writes an image of a small stand-in binary and returns the tarball.
func build(t *testing.T, bin []byte) string {
	t.Helper()
	dir := t.TempDir()
	binPath := filepath.Join(dir, "outpost")
	if err := os.WriteFile(binPath, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Build(Options{Binary: binPath, Version: "v1.2.3", Commit: "abc1234"})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := Tag("v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "outpost-image.tar")
	if err := Write(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

// The tarball is read back as a registry tool would: tag, config and the
// one layer with the binary, executable, at the entrypoint.
func TestImageTarballReadsBack(t *testing.T) {
	bin := []byte("#!not really outpost\n")
	out := build(t, bin)

	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"outpost:v1.2.3"}) {
		t.Fatalf("tarball manifest %+v, want one image tagged outpost:v1.2.3", m)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/outpost"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want entrypoint [/outpost] and no cmd", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if u := cf.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || u == "root" {
		t.Errorf("user %q, want a non-root user", u)
	}
	if l := cf.Config.Labels; l["org.opencontainers.image.version"] != "v1.2.3" || l["org.opencontainers.image.revision"] != "abc1234" {
		t.Errorf("labels %v, want version v1.2.3 and revision abc1234", l)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v), want 1", len(layers), err)
	}
	files := map[string]*tar.Header{}
	var got []byte
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Name == "outpost" {
			if got, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	h := files["outpost"]
	if h == nil {
		t.Fatalf("the image has no /outpost; it has %v", keys(files))
	}
	if h.FileInfo().Mode().Perm() != 0o755 || !h.FileInfo().Mode().IsRegular() || !bytes.Equal(got, bin) {
		t.Errorf("/outpost: mode %v, %d bytes, want a regular file with mode 0755 holding the binary's %d bytes",
			h.FileInfo().Mode(), len(got), len(bin))
	}
	if p := files["etc/passwd"]; p == nil {
		t.Errorf("the image has no /etc/passwd for its user; it has %v", keys(files))
	}
	if tmp := files["tmp/"]; tmp == nil || tmp.FileInfo().Mode().Perm() != 0o777 || tmp.FileInfo().Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp: %+v, want a sticky world-writable directory", tmp)
	}
}

// Building twice from the same binary gives the same image, so a release can
// be checked by rebuilding it.
func TestImageIsReproducible(t *testing.T) {
	digest := func() string {
		img, err := tarball.ImageFromPath(build(t, []byte("same binary")), nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	if a, b := digest(), digest(); a != b {
		t.Fatalf("two builds of the same binary: digests %s and %s", a, b)
	}
}

func TestBadInputIsRefused(t *testing.T) {
	for _, v := range []string{"v1+build", "", "-x", strings.Repeat("1", 129)} {
		if _, err := Tag(v); err == nil || !strings.Contains(err.Error(), "does not make an image tag") {
			t.Errorf("Tag(%q): %v, want an error naming the version", v, err)
		}
	}
	notELF := filepath.Join(t.TempDir(), "outpost")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckBinary(notELF); err == nil || !strings.Contains(err.Error(), "GOOS=linux GOARCH=amd64 CGO_ENABLED=0") {
		t.Errorf("CheckBinary(a shell script): %v, want an error that says how to build the binary", err)
	}
	if _, err := Build(Options{Binary: filepath.Join(t.TempDir(), "missing"), Version: "v1", Commit: "c"}); err == nil {
		t.Error("Build with a missing binary: no error")
	}
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
