package volume_test

import (
	"context"
	"io/fs"
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

// readVolume returns every regular file below dir. Anything else that is not
// a directory fails the test: a container would see leftover temporary files
// or symlinks as part of its configuration.
func readVolume(t *testing.T, dir string) map[string]wantFile {
	t.Helper()
	got := map[string]wantFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			t.Errorf("%s: unexpected %v in volume", rel, d.Type())
			return nil
		}
		if strings.HasPrefix(d.Name(), "..") {
			t.Errorf("%s: leftover temporary file in volume", rel)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		got[rel] = wantFile{content: string(data), mode: fi.Mode().Perm()}
		return nil
	})
	if err != nil {
		t.Fatalf("reading volume %s: %v", dir, err)
	}
	return got
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
