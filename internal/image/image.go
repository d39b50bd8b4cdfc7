// Package image builds the container image of outpost that `connectedk8s
// connect` deploys, without Docker or any container engine: one layer with the
// static binary, written as a tarball that `docker load`, `podman load`,
// `skopeo copy docker-archive:...` and `crane push` take, so it can go into
// any registry or straight into a node's containerd.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	// Entrypoint is where the binary lies in the image. The agent's and the
	// extension's pods give only args, so this is what runs.
	Entrypoint = "/outpost"
	// User is the unprivileged user the image runs as (the uid distroless
	// images use, so clusters that admit those admit this one).
	User = "65532:65532"
	uid  = 65532
)

// Options say what goes into the image.
type Options struct {
	// Binary is the outpost binary to ship: linux/amd64 and statically
	// linked (CGO_ENABLED=0), since the image has no C library.
	Binary string
	// Version and Commit are those stamped into the binary; the version makes
	// the tag, and both become labels.
	Version, Commit string
	// Created is the image's creation time. The zero value means the Unix
	// epoch, so the same binary always gives the same image digest.
	Created time.Time
}

// Tag is the reference the image is saved under: the image the CLI deploys
// (cli.Image), so a node that imports the tarball already has it.
func Tag(version string) (name.Tag, error) {
	bad := func(why string) error {
		return fmt.Errorf("version %q does not make an image tag (%s): give one of at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", version, why)
	}
	// The distribution spec's tag grammar; go-containerregistry is laxer
	// about the first character than registries are.
	if !tagPattern.MatchString(version) {
		return name.Tag{}, bad("not a valid tag")
	}
	t, err := name.NewTag("outpost:" + version)
	if err != nil {
		return name.Tag{}, bad(err.Error())
	}
	return t, nil
}

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// CheckBinary refuses a file that cannot run in the image: not ELF, not
// x86-64, or dynamically linked (it would look for a C library the image
// does not have and fail at start with a puzzling "no such file").
func CheckBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not a Linux executable (%v); build it with GOOS=linux GOARCH=amd64 CGO_ENABLED=0", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s: built for %s; the image is linux/amd64: build it with GOARCH=amd64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked; the image has no C library: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// Build assembles the image in memory.
func Build(o Options) (v1.Image, error) {
	if o.Version == "" || o.Commit == "" {
		return nil, errors.New("the image needs the binary's version and commit (for its tag and labels)")
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	layerTar, err := rootfs(bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: created.UTC()}
	cf.Config = v1.Config{
		Entrypoint: []string{Entrypoint},
		User:       User,
		WorkingDir: "/home/nonroot",
		// PATH=/ lets a pod spec that names the command `outpost` (as the
		// local node accepts) find the binary here too.
		Env: []string{"PATH=/", "HOME=/home/nonroot"},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "outpost",
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Commit,
			"org.opencontainers.image.created":  created.UTC().Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the image's only layer: the binary, and the few files a
// non-root process expects (its passwd entry, a home, a writable /tmp).
func rootfs(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		hdr  tar.Header
		data []byte
	}{
		{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "etc/passwd", Mode: 0o644}, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{hdr: tar.Header{Name: "etc/group", Mode: 0o644}, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{hdr: tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "home/nonroot/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: uid, Gid: uid}},
		{hdr: tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		// Owned by root so that the process cannot replace its own binary.
		{hdr: tar.Header{Name: Entrypoint[1:], Mode: 0o755}, data: bin},
	}
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.Size = int64(len(e.data))
		h.ModTime = mtime
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write saves img under tag as a tarball at path. It writes a temporary file
// beside path and renames it, so path is never a half-written image.
func Write(path string, tag name.Tag, img v1.Image) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".outpost-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tarball.Write(tag, img, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; an image is no secret.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
