package volume_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/internal/volume"
)

func memoryVolume(name string, sizeLimit string) corev1.Volume {
	ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
	if sizeLimit != "" {
		q := resource.MustParse(sizeLimit)
		ed.SizeLimit = &q
	}
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: ed}}
}

// statTmpfs returns the size of the tmpfs at dir, failing the test when dir
// is on another file system.
func statTmpfs(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is on file system type %#x, want tmpfs", dir, st.Type)
	}
	return int64(st.Blocks) * st.Bsize
}

func TestMemoryEmptyDirIsSizedTmpfs(t *testing.T) {
	const gi = 1 << 30
	opts := volume.Options{NodeAllocatable: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}
	limited := newPod()
	limited.Spec.Containers[1].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		sizeLimit string
		want      int64
	}{
		{"sizeLimit", newPod(), "64Mi", 64 << 20},
		// The sidecar has no memory limit, so the pod's bound is the node.
		{"node allocatable", newPod(), "", 8 * gi},
		// 256Mi + 128Mi: the pod cannot use more memory than that anyway.
		{"pod limit", limited, "", 384 << 20},
		{"pod limit below sizeLimit", limited, "1Gi", 384 << 20},
		{"sizeLimit below pod limit", limited, "100Mi", 100 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.pod.Spec.Volumes = []corev1.Volume{memoryVolume("cache", tc.sizeLimit)}
			podDir := t.TempDir()
			t.Cleanup(func() { teardown(t, podDir) })
			cache := prepare(t, opts, tc.pod, podDir)["cache"]
			if got := statTmpfs(t, cache); got != tc.want {
				t.Errorf("tmpfs size %d, want %d", got, tc.want)
			}
			if m := dirMode(t, cache); m != 0o777 {
				t.Errorf("mode %#o, want 0777", m)
			}
			mustWrite(t, filepath.Join(cache, "data"), "in memory")

			// A second Prepare (agent restart) must not stack a new, empty
			// tmpfs over the one the containers use.
			prepare(t, opts, tc.pod, podDir)
			checkFiles(t, cache, map[string]wantFile{"data": {"in memory", 0o644}})

			teardown(t, podDir)
			var st unix.Statfs_t
			if err := unix.Statfs(cache, &st); err != nil {
				t.Fatal(err)
			}
			if st.Type == unix.TMPFS_MAGIC && int64(st.Blocks)*st.Bsize == tc.want {
				t.Errorf("tmpfs still mounted on %s after Teardown", cache)
			}
			// What Teardown is for: the pod directory can go.
			if err := os.RemoveAll(podDir); err != nil {
				t.Errorf("removing the pod directory after Teardown: %v", err)
			}
		})
	}
}

func TestMemoryEmptyDirRolledBack(t *testing.T) {
	// A failure later in Prepare must not leave the tmpfs mounted (and its
	// directory impossible to remove).
	client, _ := newClient(configMap("app-config", map[string]string{"k": "v"}, nil))
	podDir := t.TempDir()
	t.Cleanup(func() { teardown(t, podDir) })
	// The tmpfs is mounted before the configMap volume finds its directory
	// blocked.
	pod := newPod(memoryVolume("cache", "16Mi"), configMapVolume("cfg", "app-config", nil))
	mustWrite(t, filepath.Join(podDir, "volumes", "cfg"), "blocks the configMap volume")
	_, err := volume.Prepare(t.Context(), volume.Options{Client: client}, pod, podDir)
	checkErrContains(t, err, `volume "cfg"`)
	checkNotExist(t, filepath.Join(podDir, "volumes", "cache"))
}
