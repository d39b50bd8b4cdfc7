package volume_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"outpost.dev/outpost/internal/volume"
)

const (
	testNS    = "team-a"
	testPod   = "web-0"
	testUID   = "uid-1234"
	testSA    = "web-sa"
	testToken = "tok-123"
)

// wantFile is what a program reading a mounted volume can observe of a file.
type wantFile struct {
	content string
	mode    os.FileMode
}

// tokenRecorder keeps the TokenRequests the fake API server received, so
// tests can check the token is bound to the pod and not just any token.
type tokenRecorder struct {
	mu   sync.Mutex
	reqs []tokenCall
}

type tokenCall struct {
	namespace string
	sa        string
	req       *authenticationv1.TokenRequest
}

func (r *tokenRecorder) calls() []tokenCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tokenCall(nil), r.reqs...)
}

// newClient returns a fake clientset holding objs. The fake's object tracker
// cannot serve the serviceaccounts/token subresource, hence the reactor.
func newClient(objs ...runtime.Object) (*fake.Clientset, *tokenRecorder) {
	client := fake.NewClientset(objs...)
	rec := &tokenRecorder{}
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		ca := a.(k8stesting.CreateActionImpl)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, tokenCall{
			namespace: ca.GetNamespace(),
			sa:        ca.Name,
			req:       ca.GetObject().(*authenticationv1.TokenRequest).DeepCopy(),
		})
		rec.mu.Unlock()
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: testToken}}, nil
	})
	return client, rec
}

// newPod gives the pod a memory limit and a service account because the
// downwardAPI and token tests need them; other tests ignore both.
func newPod(vols ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      testPod,
			Namespace: testNS,
			UID:       testUID,
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: testSA,
			Containers: []corev1.Container{{
				Name: "app",
				Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
			}, {
				Name: "sidecar",
			}},
			Volumes: vols,
		},
	}
}

func configMap(name string, data map[string]string, binary map[string][]byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Data:       data,
		BinaryData: binary,
	}
}

func secret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Data:       data,
	}
}

func ptr[T any](v T) *T { return &v }

func prepare(t *testing.T, opts volume.Options, pod *corev1.Pod, podDir string) map[string]string {
	t.Helper()
	paths, err := volume.Prepare(context.Background(), opts, pod, podDir)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return paths
}

// readVolume returns every file a program in the container can read below
// dir, following the symlinks a container follows. Volumes written from API
// data must have the kubelet's shape (see checkVersionedShape); anything else
// starting with ".." fails the test: a container would see leftover temporary
// files as part of its configuration.
func readVolume(t *testing.T, dir string) map[string]wantFile {
	t.Helper()
	versioned := false
	if _, err := os.Lstat(filepath.Join(dir, "..data")); err == nil {
		versioned = true
		checkVersionedShape(t, dir)
	}
	got := map[string]wantFile{}
	var walk func(rel string)
	walk = func(rel string) {
		entries, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("reading volume %s: %v", dir, err)
		}
		for _, e := range entries {
			name := filepath.Join(rel, e.Name())
			if strings.HasPrefix(e.Name(), "..") {
				if rel != "." || !versioned {
					t.Errorf("%s: leftover temporary file in volume", name)
				}
				continue
			}
			// Stat, not Lstat: what matters is what the program reads.
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			switch {
			case fi.IsDir():
				walk(name)
			case fi.Mode().IsRegular():
				data, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				got[name] = wantFile{content: string(data), mode: fi.Mode().Perm()}
			default:
				t.Errorf("%s: unexpected %v in volume", name, fi.Mode().Type())
			}
		}
	}
	walk(".")
	return got
}

// checkVersionedShape checks the on-disk shape the kubelet gives API-data
// volumes, which programs rely on to see updates atomically: "..data" links
// to the one version directory there is, and every other entry is a symlink
// through "..data".
func checkVersionedShape(t *testing.T, dir string) {
	t.Helper()
	version, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatalf("..data: %v", err)
	}
	if !strings.HasPrefix(version, "..") || strings.Contains(version, "/") {
		t.Errorf("..data links to %q, want a version directory beside it", version)
	}
	if fi, err := os.Lstat(filepath.Join(dir, version)); err != nil || !fi.IsDir() {
		t.Errorf("..data target %s is not a directory (%v)", version, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "..data" || n == version:
		case strings.HasPrefix(n, ".."):
			t.Errorf("%s: stale entry beside version %s", n, version)
		default:
			target, err := os.Readlink(filepath.Join(dir, n))
			if want := "..data/" + n; err != nil || target != want {
				t.Errorf("%s links to %q (%v), want %q", n, target, err, want)
			}
		}
	}
}

func checkFiles(t *testing.T, dir string, want map[string]wantFile) {
	t.Helper()
	got := readVolume(t, dir)
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: missing (have %v)", name, keys(got))
		case g.content != w.content:
			t.Errorf("%s: content %q, want %q", name, g.content, w.content)
		case g.mode != w.mode:
			t.Errorf("%s: mode %#o, want %#o", name, g.mode, w.mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected file in volume", name)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func checkErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Prepare succeeded, want an error containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// checkNotExist is how tests tell that a failed Prepare left nothing behind.
func checkNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed Prepare (err %v)", path, err)
	}
}

func dirMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() {
		t.Fatalf("%s is not a directory", path)
	}
	return fi.Mode().Perm()
}

// teardown unmounts a test pod's Memory emptyDirs, without which its
// temporary directory cannot be removed.
func teardown(t *testing.T, podDir string) {
	t.Helper()
	if err := volume.Teardown(podDir); err != nil {
		t.Errorf("Teardown: %v", err)
	}
}
