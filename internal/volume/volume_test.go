package volume_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/internal/volume"
)

const supportedList = "emptyDir, configMap, secret, downwardAPI, projected, hostPath"

func emptyDirVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func hostPathVolume(name, path string, typ corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &typ}}}
}

func TestEmptyDirKeepsContentsAcrossPrepare(t *testing.T) {
	pod := newPod(emptyDirVolume("scratch"), corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory},
	}})
	podDir := t.TempDir()
	t.Cleanup(func() { teardown(t, podDir) })
	paths := prepare(t, volume.Options{}, pod, podDir)

	scratch := paths["scratch"]
	if want := filepath.Join(podDir, "volumes", "scratch"); scratch != want {
		t.Fatalf("path of scratch = %q, want %q", scratch, want)
	}
	if _, ok := paths["cache"]; !ok {
		t.Fatalf("no path for the Memory emptyDir: %v", paths)
	}
	checkFiles(t, scratch, map[string]wantFile{})
	// Any container uid must be able to write its scratch space.
	if m := dirMode(t, scratch); m != 0o777 {
		t.Errorf("emptyDir mode %#o, want 0777", m)
	}

	if err := os.MkdirAll(filepath.Join(scratch, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "sub", "state"), []byte("42"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A container that tightened its scratch dir expects it to stay so
	// across a restart.
	if err := os.Chmod(scratch, 0o700); err != nil {
		t.Fatal(err)
	}

	again := prepare(t, volume.Options{}, pod, podDir)
	if again["scratch"] != scratch {
		t.Errorf("second Prepare moved scratch to %q", again["scratch"])
	}
	checkFiles(t, scratch, map[string]wantFile{"sub/state": {"42", 0o600}})
	if m := dirMode(t, scratch); m != 0o700 {
		t.Errorf("emptyDir mode after second Prepare %#o, want the container's 0700", m)
	}
}

func TestEmptyDirHugePagesRefused(t *testing.T) {
	pod := newPod(corev1.Volume{Name: "huge", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumHugePagesPrefix + "2Mi"},
	}})
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	checkErrContains(t, err, `volume "huge"`, "HugePages")
}

func TestConfigMapRewrittenOnSecondPrepare(t *testing.T) {
	ctx := context.Background()
	client, _ := newClient(configMap("app-config", map[string]string{
		"keep":   "same",
		"change": "v1",
		"drop":   "gone soon",
	}, nil))
	pod := newPod(configMapVolume("cfg", "app-config", nil))
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["cfg"], map[string]wantFile{
		"keep":   {"same", 0o644},
		"change": {"v1", 0o644},
		"drop":   {"gone soon", 0o644},
	})

	cm, err := client.CoreV1().ConfigMaps(testNS).Get(ctx, "app-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"keep": "same", "change": "v2", "new": "hello"}
	if _, err := client.CoreV1().ConfigMaps(testNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	again := prepare(t, opts, pod, podDir)
	if again["cfg"] != paths["cfg"] {
		t.Errorf("second Prepare moved cfg from %q to %q", paths["cfg"], again["cfg"])
	}
	// A key removed from the ConfigMap must disappear, or a program would
	// keep reading stale configuration.
	checkFiles(t, again["cfg"], map[string]wantFile{
		"keep":   {"same", 0o644},
		"change": {"v2", 0o644},
		"new":    {"hello", 0o644},
	})
}

func TestConfigMapItemsChangeShape(t *testing.T) {
	// A path that was a file becomes a directory between two Prepare calls
	// (and back): the old entry must not block the new one.
	client, _ := newClient(configMap("app-config", map[string]string{"a": "1", "b": "2"}, nil))
	podDir := t.TempDir()
	opts := volume.Options{Client: client}

	pod := newPod(configMapVolume("cfg", "app-config", func(s *corev1.ConfigMapVolumeSource) {
		s.Items = []corev1.KeyToPath{{Key: "a", Path: "conf"}}
	}))
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["cfg"], map[string]wantFile{"conf": {"1", 0o644}})

	pod.Spec.Volumes[0].ConfigMap.Items = []corev1.KeyToPath{{Key: "a", Path: "conf/a"}, {Key: "b", Path: "conf/b"}}
	paths = prepare(t, opts, pod, podDir)
	checkFiles(t, paths["cfg"], map[string]wantFile{"conf/a": {"1", 0o644}, "conf/b": {"2", 0o644}})

	pod.Spec.Volumes[0].ConfigMap.Items = []corev1.KeyToPath{{Key: "b", Path: "conf"}}
	paths = prepare(t, opts, pod, podDir)
	checkFiles(t, paths["cfg"], map[string]wantFile{"conf": {"2", 0o644}})
}

func TestHostPath(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the host and returns the hostPath to use.
		setup   func(t *testing.T, host string) string
		typ     corev1.HostPathType
		wantErr []string
		// specErr marks errors about the pod spec rather than the host,
		// which need not name the host path.
		specErr bool
		// check inspects the host after a successful Prepare.
		check func(t *testing.T, path string)
	}{
		{
			name:  "DirectoryOrCreate creates missing parents",
			setup: func(t *testing.T, host string) string { return filepath.Join(host, "data", "app") + "/" },
			typ:   corev1.HostPathDirectoryOrCreate,
			check: func(t *testing.T, path string) { dirMode(t, path) },
		},
		{
			name: "DirectoryOrCreate keeps an existing directory",
			setup: func(t *testing.T, host string) string {
				mustWrite(t, filepath.Join(host, "data", "keep"), "x")
				return filepath.Join(host, "data")
			},
			typ: corev1.HostPathDirectoryOrCreate,
			check: func(t *testing.T, path string) {
				if b, err := os.ReadFile(filepath.Join(path, "keep")); err != nil || string(b) != "x" {
					t.Errorf("existing content changed: %q, %v", b, err)
				}
			},
		},
		{
			name:    "DirectoryOrCreate on a file",
			setup:   func(t *testing.T, host string) string { return mustWrite(t, filepath.Join(host, "f"), "") },
			typ:     corev1.HostPathDirectoryOrCreate,
			wantErr: []string{"not a directory", "it is a file"},
		},
		{
			name:    "Directory missing",
			setup:   func(t *testing.T, host string) string { return filepath.Join(host, "nope") },
			typ:     corev1.HostPathDirectory,
			wantErr: []string{"not a directory", "does not exist"},
		},
		{
			name:  "Directory exists",
			setup: func(t *testing.T, host string) string { return host },
			typ:   corev1.HostPathDirectory,
		},
		{
			name:  "File exists",
			setup: func(t *testing.T, host string) string { return mustWrite(t, filepath.Join(host, "app.sock"), "") },
			typ:   corev1.HostPathFile,
		},
		{
			name:    "File on a directory",
			setup:   func(t *testing.T, host string) string { return host },
			typ:     corev1.HostPathFile,
			wantErr: []string{"not a file", "it is a directory"},
		},
		{
			name:    "File missing",
			setup:   func(t *testing.T, host string) string { return filepath.Join(host, "nope") },
			typ:     corev1.HostPathFile,
			wantErr: []string{"not a file", "does not exist"},
		},
		{
			name:  "FileOrCreate creates an empty file",
			setup: func(t *testing.T, host string) string { return filepath.Join(host, "new.log") },
			typ:   corev1.HostPathFileOrCreate,
			check: func(t *testing.T, path string) {
				if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
					t.Errorf("want an empty regular file at %s: %v, %v", path, fi, err)
				}
			},
		},
		{
			// The kubelet does not create parents here; the error says so.
			name:    "FileOrCreate without parent",
			setup:   func(t *testing.T, host string) string { return filepath.Join(host, "no", "new.log") },
			typ:     corev1.HostPathFileOrCreate,
			wantErr: []string{"parent directory"},
		},
		{
			name:  "unset type does not check",
			setup: func(t *testing.T, host string) string { return filepath.Join(host, "nope") },
			typ:   corev1.HostPathUnset,
			check: func(t *testing.T, path string) {
				if _, err := os.Lstat(path); !os.IsNotExist(err) {
					t.Errorf("unset type created %s", path)
				}
			},
		},
		{
			name:    "Socket on a file",
			setup:   func(t *testing.T, host string) string { return mustWrite(t, filepath.Join(host, "f"), "") },
			typ:     corev1.HostPathSocket,
			wantErr: []string{"not a socket", "it is a file"},
		},
		{
			name:    "invalid type",
			setup:   func(t *testing.T, host string) string { return host },
			typ:     "Dir",
			wantErr: []string{`"Dir"`, "DirectoryOrCreate"},
			specErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := t.TempDir()
			path := tt.setup(t, host)
			pod := newPod(hostPathVolume("host", path, tt.typ))
			podDir := filepath.Join(t.TempDir(), "pod")
			paths, err := volume.Prepare(context.Background(), volume.Options{}, pod, podDir)
			if tt.wantErr != nil {
				want := append([]string{`volume "host"`}, tt.wantErr...)
				if !tt.specErr {
					want = append(want, filepath.Clean(path))
				}
				checkErrContains(t, err, want...)
				return
			}
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			// The bind mount source is the host path itself, cleaned.
			if paths["host"] != filepath.Clean(path) {
				t.Errorf("path of host = %q, want %q", paths["host"], filepath.Clean(path))
			}
			if tt.check != nil {
				tt.check(t, paths["host"])
			}
		})
	}
}

func TestHostPathMustBeAbsolute(t *testing.T) {
	pod := newPod(hostPathVolume("host", "relative/dir", corev1.HostPathDirectoryOrCreate))
	podDir := t.TempDir()
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, podDir)
	checkErrContains(t, err, `volume "host"`, "absolute")
	checkNotExist(t, filepath.Join(podDir, "relative"))
}

func mustWrite(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnsupportedVolumeType(t *testing.T) {
	tests := []struct {
		name string
		src  corev1.VolumeSource
		want string
	}{
		{
			name: "persistentVolumeClaim",
			src:  corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}},
			want: "type persistentVolumeClaim is not supported",
		},
		{
			name: "nfs",
			src:  corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/export"}},
			want: "type nfs is not supported",
		},
		{
			name: "no type",
			want: "no volume type set",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newPod(corev1.Volume{Name: "data", VolumeSource: tt.src})
			podDir := filepath.Join(t.TempDir(), "pod")
			_, err := volume.Prepare(context.Background(), volume.Options{}, pod, podDir)
			checkErrContains(t, err, `volume "data"`, tt.want, "supported: "+supportedList)
			checkNotExist(t, podDir)
		})
	}
}

func TestProjectedUnsupportedSource(t *testing.T) {
	pod := newPod(corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Path: "b"}}},
	}}})
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	checkErrContains(t, err, `volume "p"`, "clusterTrustBundle", "serviceAccountToken, configMap, secret, downwardAPI")
}

func TestBadVolumeNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", `a\b`} {
		t.Run(name, func(t *testing.T) {
			podDir := filepath.Join(t.TempDir(), "pod")
			pod := newPod(emptyDirVolume(name))
			_, err := volume.Prepare(context.Background(), volume.Options{}, pod, podDir)
			checkErrContains(t, err, "volume")
			checkNotExist(t, podDir)
		})
	}
}

func TestDuplicateVolumeName(t *testing.T) {
	pod := newPod(emptyDirVolume("x"), emptyDirVolume("x"))
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	checkErrContains(t, err, `volume "x"`, "more than once")
}

func TestAllVolumeErrorsReported(t *testing.T) {
	// Fixing one error at a time, one pod restart each, is slow; the user
	// should see every broken volume at once.
	client, _ := newClient()
	pod := newPod(
		configMapVolume("cfg", "app-config", nil),
		corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db-creds"}}},
		corev1.Volume{Name: "pvc", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}},
	)
	_, err := volume.Prepare(context.Background(), volume.Options{Client: client}, pod, t.TempDir())
	checkErrContains(t, err, `volume "cfg"`, "app-config", `volume "creds"`, "db-creds", `volume "pvc"`, "persistentVolumeClaim")
}

func TestNoClient(t *testing.T) {
	// A node agent run without API access still serves pods that need none;
	// a pod that does need it gets a clear error rather than a nil panic.
	pod := newPod(emptyDirVolume("scratch"), configMapVolume("cfg", "app-config", nil))
	_, err := volume.Prepare(context.Background(), volume.Options{}, pod, t.TempDir())
	checkErrContains(t, err, `volume "cfg"`, "no Kubernetes client")
}

func TestPrepareArgs(t *testing.T) {
	if _, err := volume.Prepare(context.Background(), volume.Options{}, nil, t.TempDir()); err == nil {
		t.Error("Prepare with a nil pod succeeded")
	}
	if _, err := volume.Prepare(context.Background(), volume.Options{}, newPod(), ""); err == nil {
		t.Error("Prepare with an empty podDir succeeded")
	}
}

func TestRelativePodDirGivesAbsolutePaths(t *testing.T) {
	// Bind mounts need absolute sources and the agent may chdir later.
	t.Chdir(t.TempDir())
	paths := prepare(t, volume.Options{}, newPod(emptyDirVolume("scratch")), "pod")
	if !filepath.IsAbs(paths["scratch"]) {
		t.Errorf("path %q is not absolute", paths["scratch"])
	}
	dirMode(t, paths["scratch"])
}

func TestRetryAfterMissingSecret(t *testing.T) {
	ctx := context.Background()
	client, _ := newClient(configMap("app-config", map[string]string{"app.yaml": "port: 8080\n"}, nil))
	hostRoot := t.TempDir()
	hostDir := filepath.Join(hostRoot, "var", "lib", "app")
	pod := newPod(
		emptyDirVolume("scratch"),
		configMapVolume("cfg", "app-config", nil),
		corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db-creds"}}},
		hostPathVolume("host", hostDir, corev1.HostPathDirectoryOrCreate),
	)
	podDir := filepath.Join(t.TempDir(), "pods", "uid-1234")
	opts := volume.Options{Client: client}

	_, err := volume.Prepare(ctx, opts, pod, podDir)
	checkErrContains(t, err, `volume "creds"`, "db-creds")
	// Nothing of the other volumes may exist yet: a half-made pod directory
	// or host directory would be mistaken for a prepared one.
	checkNotExist(t, filepath.Join(filepath.Dir(podDir)))
	checkNotExist(t, filepath.Join(hostRoot, "var"))

	if _, err := client.CoreV1().Secrets(testNS).Create(ctx, secret("db-creds", map[string][]byte{"password": []byte("pw")}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["scratch"], map[string]wantFile{})
	checkFiles(t, paths["cfg"], map[string]wantFile{"app.yaml": {"port: 8080\n", 0o644}})
	checkFiles(t, paths["creds"], map[string]wantFile{"password": {"pw", 0o644}})
	if paths["host"] != hostDir {
		t.Errorf("path of host = %q, want %q", paths["host"], hostDir)
	}
	dirMode(t, hostDir)
}

func TestRollbackAfterWriteFailure(t *testing.T) {
	// Planning cannot see that a volume's directory is blocked by a file;
	// the write phase fails and must take back what it already created.
	client, _ := newClient(configMap("app-config", map[string]string{"k": "v"}, nil))
	podDir := filepath.Join(t.TempDir(), "pod")
	hostDir := filepath.Join(t.TempDir(), "host", "dir")
	blocker := mustWrite(t, filepath.Join(podDir, "volumes", "cfg"), "not a dir")
	pod := newPod(
		emptyDirVolume("scratch"),
		configMapVolume("cfg", "app-config", nil),
		hostPathVolume("host", hostDir, corev1.HostPathDirectoryOrCreate),
	)
	opts := volume.Options{Client: client}

	_, err := volume.Prepare(context.Background(), opts, pod, podDir)
	checkErrContains(t, err, `volume "cfg"`, "not a directory")
	checkNotExist(t, filepath.Join(podDir, "volumes", "scratch"))
	checkNotExist(t, filepath.Dir(hostDir))
	// What existed before the call belongs to someone else.
	if b, err := os.ReadFile(blocker); err != nil || string(b) != "not a dir" {
		t.Errorf("pre-existing %s changed: %q, %v", blocker, b, err)
	}

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["cfg"], map[string]wantFile{"k": {"v", 0o644}})
	dirMode(t, paths["scratch"])
	dirMode(t, hostDir)
}

func TestVolumeRootNotWorldReadable(t *testing.T) {
	// Secrets and tokens live below podDir/volumes; other local users must
	// not be able to list or read them.
	client, _ := newClient(secret("db-creds", map[string][]byte{"password": []byte("pw")}))
	pod := newPod(corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db-creds"}}})
	podDir := t.TempDir()
	prepare(t, volume.Options{Client: client}, pod, podDir)
	if m := dirMode(t, filepath.Join(podDir, "volumes")); m&0o007 != 0 {
		t.Errorf("volumes directory mode %#o is accessible to others", m)
	}
}

func TestSupportedList(t *testing.T) {
	if got := strings.Join(volume.Supported, ", "); got != supportedList {
		t.Errorf("Supported = %q, want %q", got, supportedList)
	}
}

func TestPlantedSymlinksAreReplaced(t *testing.T) {
	// A container that can write into its volume may plant symlinks; the
	// next refresh must replace them with real files and never write
	// through them to the host.
	client, _ := newClient(configMap("app-config", map[string]string{"app.yaml": "new"}, nil))
	pod := newPod(configMapVolume("cfg", "app-config", func(s *corev1.ConfigMapVolumeSource) {
		s.Items = []corev1.KeyToPath{{Key: "app.yaml", Path: "app.yaml"}, {Key: "app.yaml", Path: "etc/app.yaml"}}
	}))
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	paths := prepare(t, opts, pod, podDir)
	vol := paths["cfg"]

	outside := t.TempDir()
	victim := mustWrite(t, filepath.Join(outside, "victim"), "host data")
	for _, p := range []string{"app.yaml", "etc"} {
		if err := os.RemoveAll(filepath.Join(vol, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, filepath.Join(vol, "app.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(vol, "etc")); err != nil {
		t.Fatal(err)
	}

	prepare(t, opts, pod, podDir)
	checkFiles(t, vol, map[string]wantFile{"app.yaml": {"new", 0o644}, "etc/app.yaml": {"new", 0o644}})
	if b, err := os.ReadFile(victim); err != nil || string(b) != "host data" {
		t.Errorf("file outside the volume changed: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "app.yaml")); !os.IsNotExist(err) {
		t.Errorf("Prepare wrote through a symlinked directory into %s", outside)
	}
}

func TestModeChangeOnSecondPrepare(t *testing.T) {
	// Unchanged contents are not rewritten, but a changed defaultMode with
	// the same contents still has to reach the file.
	client, _ := newClient(secret("db-creds", map[string][]byte{"password": []byte("pw")}))
	pod := newPod(corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db-creds"}}})
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["creds"], map[string]wantFile{"password": {"pw", 0o644}})

	pod.Spec.Volumes[0].Secret.DefaultMode = ptr[int32](0o400)
	paths = prepare(t, opts, pod, podDir)
	checkFiles(t, paths["creds"], map[string]wantFile{"password": {"pw", 0o400}})
}
