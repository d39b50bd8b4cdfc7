package volume_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/internal/volume"
)

func refresh(t *testing.T, opts volume.Options, pod *corev1.Pod, podDir string) {
	t.Helper()
	if err := volume.Refresh(context.Background(), opts, pod, podDir); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}

func setConfigMap(t *testing.T, c kubernetes.Interface, name string, data map[string]string) {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = data
	if _, err := c.CoreV1().ConfigMaps(testNS).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// version is the content of every key at update n: large enough that a
// reader would catch a file being written in place.
func version(n int) string {
	return fmt.Sprintf("v%04d:", n) + strings.Repeat("x", 256<<10)
}

func TestRefreshSwapsEveryKeyAtOnce(t *testing.T) {
	// Readers that read two keys through one resolution of ..data (as a
	// program watching ..data does) must always see the same version of
	// both, and every read of a key must return a complete version.
	client, _ := newClient(configMap("app-config", map[string]string{"a": version(0), "b": version(0)}, nil))
	pod := newPod(configMapVolume("cfg", "app-config", nil))
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	vol := prepare(t, opts, pod, podDir)["cfg"]

	const updates = 60
	var stop atomic.Bool
	var pairs, singles atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				// A reader that resolved the old version just before the
				// writer removed it finds its files gone: the kubelet's
				// writer has the same window, and it is the only error
				// tolerated.
				data, err := os.OpenRoot(filepath.Join(vol, "..data"))
				if err != nil {
					report(err)
					return
				}
				a, errA := data.ReadFile("a")
				b, errB := data.ReadFile("b")
				data.Close()
				switch {
				case errors.Is(errA, fs.ErrNotExist) || errors.Is(errB, fs.ErrNotExist):
				case errA != nil || errB != nil:
					report(errors.Join(errA, errB))
					return
				case string(a[:6]) != string(b[:6]):
					report(fmt.Errorf("one version of the volume holds a=%s and b=%s", a[:6], b[:6]))
					return
				default:
					pairs.Add(1)
				}
				got, err := os.ReadFile(filepath.Join(vol, "a"))
				switch {
				case errors.Is(err, fs.ErrNotExist):
				case err != nil:
					report(err)
					return
				case len(got) != len(version(0)):
					report(fmt.Errorf("read a partial file: %d bytes of %d", len(got), len(version(0))))
					return
				default:
					singles.Add(1)
				}
			}
		}()
	}
	for n := 1; n <= updates; n++ {
		setConfigMap(t, client, "app-config", map[string]string{"a": version(n), "b": version(n)})
		refresh(t, opts, pod, podDir)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if pairs.Load() == 0 || singles.Load() == 0 {
		t.Errorf("readers completed %d pair reads and %d single reads: the test checked nothing", pairs.Load(), singles.Load())
	}
	checkFiles(t, vol, map[string]wantFile{"a": {version(updates), 0o644}, "b": {version(updates), 0o644}})
}

func TestRefreshRemovesDroppedKeysAndItems(t *testing.T) {
	client, _ := newClient(configMap("app-config", map[string]string{"keep": "1", "drop": "2", "item": "3"}, nil))
	optional := true
	pod := newPod(
		configMapVolume("all", "app-config", nil),
		configMapVolume("items", "app-config", func(s *corev1.ConfigMapVolumeSource) {
			s.Optional = &optional
			s.Items = []corev1.KeyToPath{{Key: "keep", Path: "conf/keep"}, {Key: "item", Path: "item"}}
		}),
	)
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["all"], map[string]wantFile{"keep": {"1", 0o644}, "drop": {"2", 0o644}, "item": {"3", 0o644}})
	checkFiles(t, paths["items"], map[string]wantFile{"conf/keep": {"1", 0o644}, "item": {"3", 0o644}})

	// An optional item whose key goes away loses its file; so does a key.
	setConfigMap(t, client, "app-config", map[string]string{"keep": "1b"})
	refresh(t, opts, pod, podDir)
	checkFiles(t, paths["all"], map[string]wantFile{"keep": {"1b", 0o644}})
	checkFiles(t, paths["items"], map[string]wantFile{"conf/keep": {"1b", 0o644}})
	for _, gone := range []string{filepath.Join(paths["all"], "drop"), filepath.Join(paths["items"], "item")} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("%s still exists (err %v)", gone, err)
		}
	}
}

func TestRefreshWithoutChangeKeepsTheVersion(t *testing.T) {
	// Programs watch ..data: it must only move when the contents change.
	client, _ := newClient(configMap("app-config", map[string]string{"k": "v"}, nil))
	pod := newPod(configMapVolume("cfg", "app-config", nil))
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	vol := prepare(t, opts, pod, podDir)["cfg"]
	before, err := os.Readlink(filepath.Join(vol, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, opts, pod, podDir)
	if after, err := os.Readlink(filepath.Join(vol, "..data")); err != nil || after != before {
		t.Errorf("..data moved from %s to %s (%v) without a change", before, after, err)
	}
	setConfigMap(t, client, "app-config", map[string]string{"k": "v2"})
	refresh(t, opts, pod, podDir)
	if after, err := os.Readlink(filepath.Join(vol, "..data")); err != nil || after == before {
		t.Errorf("..data still at %s (%v) after a change", after, err)
	}
	checkFiles(t, vol, map[string]wantFile{"k": {"v2", 0o644}})
}

func TestRefreshKeepsContentsWhenSourceGoes(t *testing.T) {
	// As on the kubelet: a volume whose (non-optional) source vanished keeps
	// its last contents, and the other volumes are refreshed all the same.
	ctx := context.Background()
	client, _ := newClient(
		configMap("app-config", map[string]string{"k": "v"}, nil),
		secret("db-creds", map[string][]byte{"password": []byte("pw")}),
	)
	pod := newPod(
		configMapVolume("cfg", "app-config", nil),
		corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db-creds"}}},
	)
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	paths := prepare(t, opts, pod, podDir)

	if err := client.CoreV1().ConfigMaps(testNS).Delete(ctx, "app-config", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := client.CoreV1().Secrets(testNS).Get(ctx, "db-creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"password": []byte("rotated")}
	if _, err := client.CoreV1().Secrets(testNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	err = volume.Refresh(ctx, opts, pod, podDir)
	checkErrContains(t, err, `volume "cfg"`, "app-config", "not found")
	checkFiles(t, paths["cfg"], map[string]wantFile{"k": {"v", 0o644}})
	checkFiles(t, paths["creds"], map[string]wantFile{"password": {"rotated", 0o644}})
}

func TestRefreshFollowsLabels(t *testing.T) {
	pod := newPod(corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
	}}})
	pod.Labels = map[string]string{"tier": "web"}
	podDir := t.TempDir()
	paths := prepare(t, volume.Options{}, pod, podDir)
	checkFiles(t, paths["info"], map[string]wantFile{"labels": {`tier="web"`, 0o644}})

	pod.Labels = map[string]string{"tier": "db"}
	refresh(t, volume.Options{}, pod, podDir)
	checkFiles(t, paths["info"], map[string]wantFile{"labels": {`tier="db"`, 0o644}})
}

func TestRefreshLeavesOtherVolumesAlone(t *testing.T) {
	// Refresh is periodic: it must neither touch emptyDir contents nor make
	// volumes (here a hostPath) that Prepare did not.
	hostDir := filepath.Join(t.TempDir(), "made-by-prepare-only")
	pod := newPod(emptyDirVolume("scratch"), hostPathVolume("host", hostDir, corev1.HostPathDirectoryOrCreate))
	podDir := t.TempDir()
	scratch := filepath.Join(podDir, "volumes", "scratch")
	if err := os.MkdirAll(scratch, 0o777); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(scratch, "state"), "42")
	refresh(t, volume.Options{}, pod, podDir)
	checkFiles(t, scratch, map[string]wantFile{"state": {"42", 0o644}})
	checkNotExist(t, hostDir)
}

func TestOldLayoutIsConverted(t *testing.T) {
	// A volume written by an agent from before versioned volumes (plain
	// files and directories) takes the new shape on the next refresh.
	client, _ := newClient(configMap("app-config", map[string]string{"app.yaml": "new"}, nil))
	pod := newPod(configMapVolume("cfg", "app-config", func(s *corev1.ConfigMapVolumeSource) {
		s.Items = []corev1.KeyToPath{{Key: "app.yaml", Path: "app.yaml"}, {Key: "app.yaml", Path: "etc/app.yaml"}}
	}))
	podDir := t.TempDir()
	vol := filepath.Join(podDir, "volumes", "cfg")
	mustWrite(t, filepath.Join(vol, "app.yaml"), "old")
	mustWrite(t, filepath.Join(vol, "etc", "app.yaml"), "old")
	mustWrite(t, filepath.Join(vol, "stale"), "old")
	refresh(t, volume.Options{Client: client}, pod, podDir)
	checkFiles(t, vol, map[string]wantFile{"app.yaml": {"new", 0o644}, "etc/app.yaml": {"new", 0o644}})
}
