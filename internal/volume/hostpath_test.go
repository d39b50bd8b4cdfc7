package volume_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/volume"
)

func TestHostPathSymlinkToDirectory(t *testing.T) {
	// The bind mount exposes the target, so the type check is about the
	// target too, as on the kubelet.
	host := t.TempDir()
	target := filepath.Join(host, "real")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(host, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []corev1.HostPathType{corev1.HostPathDirectory, corev1.HostPathDirectoryOrCreate} {
		t.Run(string(typ), func(t *testing.T) {
			paths := prepare(t, volume.Options{}, newPod(hostPathVolume("host", link, typ)), t.TempDir())
			if paths["host"] != link {
				t.Errorf("path of host = %q, want %q", paths["host"], link)
			}
		})
	}
}

func TestHostPathDirectoryOrCreateDanglingSymlink(t *testing.T) {
	// A DirectoryOrCreate volume promises a directory at the path once
	// Prepare succeeds; the kubelet (os.MkdirAll) fails here with EEXIST.
	host := t.TempDir()
	link := filepath.Join(host, "link")
	if err := os.Symlink(filepath.Join(host, "missing"), link); err != nil {
		t.Fatal(err)
	}
	pod := newPod(hostPathVolume("host", link, corev1.HostPathDirectoryOrCreate))
	paths, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	if err != nil {
		checkErrContains(t, err, `volume "host"`, link)
		return
	}
	fi, statErr := os.Stat(paths["host"])
	if statErr != nil || !fi.IsDir() {
		t.Errorf("Prepare succeeded, but %s is not a directory (stat: %v); want an error naming the path or a directory there", paths["host"], statErr)
	}
}

func TestHostPathFileOrCreateDanglingSymlink(t *testing.T) {
	host := t.TempDir()
	link := filepath.Join(host, "link")
	if err := os.Symlink(filepath.Join(host, "missing"), link); err != nil {
		t.Fatal(err)
	}
	pod := newPod(hostPathVolume("host", link, corev1.HostPathFileOrCreate))
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	checkErrContains(t, err, `volume "host"`, link, "not a file")
	// The agent must not have created the symlink's target behind it.
	checkNotExist(t, filepath.Join(host, "missing"))
}

func TestHostPathSameMissingPathTwice(t *testing.T) {
	// Both volumes pass the check (nothing exists yet); the second one then
	// fails in the write phase, and the directory made for the first must
	// go again so the host looks as before.
	host := t.TempDir()
	path := filepath.Join(host, "shared")
	pod := newPod(
		hostPathVolume("dir", path, corev1.HostPathDirectoryOrCreate),
		hostPathVolume("file", path, corev1.HostPathFileOrCreate),
	)
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	checkErrContains(t, err, `volume "file"`, path, "not a file")
	checkNotExist(t, path)
}
