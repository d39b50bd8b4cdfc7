package wrapper

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodMountsTheRunningBinarysCopy(t *testing.T) {
	t.Parallel()
	key, err := Key()
	if err != nil {
		t.Fatal(err)
	}
	init, volumes, mounts := Pod("outpost:test")
	if init.Image != "outpost:test" || init.Name != InstallName {
		t.Errorf("init container %s image %s", init.Name, init.Image)
	}
	if len(volumes) != 1 || volumes[0].HostPath == nil || volumes[0].HostPath.Path != HostDir {
		t.Fatalf("volumes %+v, want the hostPath %s", volumes, HostDir)
	}
	if len(mounts) != 1 || mounts[0].MountPath != Dir || mounts[0].SubPath != key || !mounts[0].ReadOnly {
		t.Errorf("mounts %+v, want %s read-only from subPath %s", mounts, Dir, key)
	}
	// What the install container writes is what the wrapper's container
	// sees at Path.
	dst := init.Args[len(init.Args)-1]
	rel, err := filepath.Rel(init.VolumeMounts[0].MountPath, dst)
	if err != nil || rel != filepath.Join(mounts[0].SubPath, strings.TrimPrefix(Path, Dir+"/")) {
		t.Errorf("install writes %s (%s in the volume), the container runs %s from subPath %s", dst, rel, Path, mounts[0].SubPath)
	}
}

func TestInstallOncePerBinary(t *testing.T) {
	t.Parallel()
	key, err := Key()
	if err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	dst := filepath.Join(store, key, "outpost")
	if err := Install(dst, io.Discard); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the installed binary differs from the running one")
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %o, want 755", fi.Mode().Perm())
	}
	// A second install leaves the copy alone (same inode) and marks it used.
	old := time.Now().Add(-2 * unusedFor)
	if err := os.Chtimes(filepath.Dir(dst), old, old); err != nil {
		t.Fatal(err)
	}
	if err := Install(dst, io.Discard); err != nil {
		t.Fatal(err)
	}
	fi2, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, fi2) {
		t.Error("the second install copied the binary again")
	}
	if d, err := os.Stat(filepath.Dir(dst)); err != nil || time.Since(d.ModTime()) > time.Minute {
		t.Errorf("the copy's folder was not marked used: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestInstallRefusesAnotherBinarysFolder(t *testing.T) {
	t.Parallel()
	other := strings.Repeat("0", 64)
	dst := filepath.Join(t.TempDir(), other, "outpost")
	err := Install(dst, io.Discard)
	if err == nil || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("got %v, want an error naming the sha256 asked for", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("something was installed: %v", err)
	}
}

func TestInstallRemovesUnusedCopiesOnly(t *testing.T) {
	t.Parallel()
	key, err := Key()
	if err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	old := time.Now().Add(-2 * unusedFor)
	mk := func(name string, age time.Time) string {
		dir := filepath.Join(store, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "outpost"), []byte("old binary"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dir, age, age); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	unused := mk(strings.Repeat("1", 64), old)
	recent := mk(strings.Repeat("2", 64), time.Now())
	held := mk(strings.Repeat("3", 64), old)
	notOurs := mk("data", old)
	// A wrapper running the held copy (Hold, from another open file).
	f, err := os.Open(filepath.Join(held, "outpost"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	if err := Install(filepath.Join(store, key, "outpost"), io.Discard); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{unused: false, recent: true, held: true, notOurs: true, filepath.Join(store, key): true} {
		_, err := os.Stat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s: there %t, want %t", filepath.Base(dir), got, want)
		}
	}
}

func TestCopies(t *testing.T) {
	t.Parallel()
	key := strings.Repeat("c", 64)
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	c := NewCopies()
	c.now = func() time.Time { return now }
	withInstall := func(node string, exit int32) *corev1.Pod {
		init, volumes, mounts := KeyedPod("outpost:test", key)
		p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: node, InitContainers: []corev1.Container{init}, Volumes: volumes,
			Containers: []corev1.Container{{Name: "main", VolumeMounts: mounts}}}}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: InstallName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, FinishedAt: metav1.NewTime(now)}}}}
		return p
	}
	if c.Has("n1", key) {
		t.Fatal("a copy known before any install")
	}
	c.Observe(withInstall("n1", 1))
	if c.Has("n1", key) {
		t.Fatal("a failed install vouches for the copy")
	}
	c.Observe(withInstall("n1", 0))
	if !c.Has("n1", key) || c.Has("n2", key) || c.Has("n1", strings.Repeat("d", 64)) {
		t.Fatal("a successful install vouches for its node's copy of its binary only")
	}
	// A pod without an install container whose container cannot start
	// (the copy is gone): the next pods install it again.
	volumes, mounts := InstalledPod(key)
	p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n1", Volumes: volumes, Containers: []corev1.Container{{Name: "main", VolumeMounts: mounts}}}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 128, Reason: "StartError", Message: "exec " + Path + ": no such file or directory"}}}}
	c.Observe(p)
	if c.Has("n1", key) {
		t.Fatal("a pod that could not start its wrapper left the copy trusted")
	}
	// Trust lasts a while only, and goes with the node.
	c.Observe(withInstall("n1", 0))
	now = now.Add(trusted + time.Second)
	if c.Has("n1", key) {
		t.Fatal("an old install still vouches for the copy")
	}
	c.Observe(withInstall("n1", 0))
	c.ForgetNode("n1")
	if c.Has("n1", key) {
		t.Fatal("a forgotten node's copy is still known")
	}
	var none *Copies
	if none.Has("n1", key) {
		t.Fatal("a nil Copies knows a copy")
	}
}
