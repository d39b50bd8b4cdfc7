package volume_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	"outpost.dev/outpost/internal/volume"
)

func configMapVolume(name, cmName string, mutate func(*corev1.ConfigMapVolumeSource)) corev1.Volume {
	src := &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cmName}}
	if mutate != nil {
		mutate(src)
	}
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: src}}
}

func TestConfigMap(t *testing.T) {
	appConfig := configMap("app-config",
		map[string]string{"app.yaml": "port: 8080\n", "log-level": "debug"},
		map[string][]byte{"logo.bin": {0x00, 0xff, 0x10, '\n'}},
	)
	tests := []struct {
		name   string
		objs   []runtime.Object
		mutate func(*corev1.ConfigMapVolumeSource)
		want   map[string]wantFile
	}{
		{
			name: "every key becomes a file, binaryData included",
			objs: []runtime.Object{appConfig},
			want: map[string]wantFile{
				"app.yaml":  {"port: 8080\n", 0o644},
				"log-level": {"debug", 0o644},
				"logo.bin":  {"\x00\xff\x10\n", 0o644},
			},
		},
		{
			name:   "defaultMode applies to every file",
			objs:   []runtime.Object{appConfig},
			mutate: func(s *corev1.ConfigMapVolumeSource) { s.DefaultMode = ptr[int32](0o440) },
			want: map[string]wantFile{
				"app.yaml":  {"port: 8080\n", 0o440},
				"log-level": {"debug", 0o440},
				"logo.bin":  {"\x00\xff\x10\n", 0o440},
			},
		},
		{
			name: "items select keys, with nested paths and per-item modes",
			objs: []runtime.Object{appConfig},
			mutate: func(s *corev1.ConfigMapVolumeSource) {
				s.DefaultMode = ptr[int32](0o640)
				s.Items = []corev1.KeyToPath{
					{Key: "app.yaml", Path: "etc/app/config.yaml", Mode: ptr[int32](0o400)},
					{Key: "logo.bin", Path: "static/logo"},
				}
			},
			want: map[string]wantFile{
				"etc/app/config.yaml": {"port: 8080\n", 0o400},
				"static/logo":         {"\x00\xff\x10\n", 0o640},
			},
		},
		{
			name: "binaryData only",
			objs: []runtime.Object{configMap("app-config", nil, map[string][]byte{"blob": {1, 2, 3}})},
			want: map[string]wantFile{"blob": {"\x01\x02\x03", 0o644}},
		},
		{
			// The kubelet mounts an empty volume so the pod can start and
			// pick the data up once the ConfigMap appears.
			name:   "optional and missing gives an empty directory",
			mutate: func(s *corev1.ConfigMapVolumeSource) { s.Optional = ptr(true) },
			want:   map[string]wantFile{},
		},
		{
			name: "optional with a missing item key skips the item",
			objs: []runtime.Object{appConfig},
			mutate: func(s *corev1.ConfigMapVolumeSource) {
				s.Optional = ptr(true)
				s.Items = []corev1.KeyToPath{{Key: "log-level", Path: "level"}, {Key: "nope", Path: "nope"}}
			},
			want: map[string]wantFile{"level": {"debug", 0o644}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, _ := newClient(tt.objs...)
			pod := newPod(configMapVolume("cfg", "app-config", tt.mutate))
			podDir := t.TempDir()
			paths := prepare(t, volume.Options{Client: client}, pod, podDir)

			wantPath := filepath.Join(podDir, "volumes", "cfg")
			if paths["cfg"] != wantPath {
				t.Fatalf("path of cfg = %q, want %q", paths["cfg"], wantPath)
			}
			checkFiles(t, wantPath, tt.want)
			// Containers may run as any uid and must be able to reach the
			// files, whatever the agent's umask.
			if m := dirMode(t, wantPath); m != 0o755 {
				t.Errorf("volume directory mode %#o, want 0755", m)
			}
			for name := range tt.want {
				for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
					if m := dirMode(t, filepath.Join(wantPath, d)); m != 0o755 {
						t.Errorf("directory %s mode %#o, want 0755", d, m)
					}
				}
			}
		})
	}
}

func TestConfigMapErrors(t *testing.T) {
	appConfig := configMap("app-config", map[string]string{"app.yaml": "x"}, nil)
	tests := []struct {
		name   string
		objs   []runtime.Object
		mutate func(*corev1.ConfigMapVolumeSource)
		want   []string
	}{
		{
			name: "missing and not optional",
			want: []string{`volume "cfg"`, "app-config", "not found"},
		},
		{
			name: "explicitly not optional",
			// Optional: false must behave like unset, not like "true".
			mutate: func(s *corev1.ConfigMapVolumeSource) { s.Optional = ptr(false) },
			want:   []string{`volume "cfg"`, "app-config", "not found"},
		},
		{
			name: "item names a missing key",
			objs: []runtime.Object{appConfig},
			mutate: func(s *corev1.ConfigMapVolumeSource) {
				s.Items = []corev1.KeyToPath{{Key: "app.yaml", Path: "a"}, {Key: "missing-key", Path: "b"}}
			},
			want: []string{`volume "cfg"`, "app-config", `"missing-key"`},
		},
		{
			// An item path is the one place the pod spec chooses where the
			// agent writes; it must not reach outside the volume.
			name: "item path escapes the volume",
			objs: []runtime.Object{appConfig},
			mutate: func(s *corev1.ConfigMapVolumeSource) {
				s.Items = []corev1.KeyToPath{{Key: "app.yaml", Path: "../../escape"}}
			},
			want: []string{`volume "cfg"`, "../../escape"},
		},
		{
			name: "item mode out of range",
			objs: []runtime.Object{appConfig},
			mutate: func(s *corev1.ConfigMapVolumeSource) {
				s.Items = []corev1.KeyToPath{{Key: "app.yaml", Path: "a", Mode: ptr[int32](0o4755)}}
			},
			want: []string{`volume "cfg"`, "mode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, _ := newClient(tt.objs...)
			pod := newPod(configMapVolume("cfg", "app-config", tt.mutate))
			podDir := filepath.Join(t.TempDir(), "pod")
			_, err := volume.Prepare(context.Background(), volume.Options{Client: client}, pod, podDir)
			checkErrContains(t, err, tt.want...)
			checkNotExist(t, podDir)
			checkNotExist(t, filepath.Join(filepath.Dir(podDir), "escape"))
		})
	}
}

func TestSecret(t *testing.T) {
	creds := secret("db-creds", map[string][]byte{"username": []byte("admin"), "password": []byte("s3cr3t\n")})
	tests := []struct {
		name string
		src  corev1.SecretVolumeSource
		want map[string]wantFile
	}{
		{
			// 0644 is the API server's default; pods from a file may omit
			// defaultMode and must get the same.
			name: "default mode",
			src:  corev1.SecretVolumeSource{SecretName: "db-creds"},
			want: map[string]wantFile{
				"username": {"admin", 0o644},
				"password": {"s3cr3t\n", 0o644},
			},
		},
		{
			name: "defaultMode",
			src:  corev1.SecretVolumeSource{SecretName: "db-creds", DefaultMode: ptr[int32](0o400)},
			want: map[string]wantFile{
				"username": {"admin", 0o400},
				"password": {"s3cr3t\n", 0o400},
			},
		},
		{
			name: "items with mode",
			src: corev1.SecretVolumeSource{
				SecretName:  "db-creds",
				DefaultMode: ptr[int32](0o440),
				Items: []corev1.KeyToPath{
					{Key: "password", Path: "db/password", Mode: ptr[int32](0o600)},
					{Key: "username", Path: "db/user"},
				},
			},
			want: map[string]wantFile{
				"db/password": {"s3cr3t\n", 0o600},
				"db/user":     {"admin", 0o440},
			},
		},
		{
			name: "optional and missing",
			src:  corev1.SecretVolumeSource{SecretName: "absent", Optional: ptr(true)},
			want: map[string]wantFile{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, _ := newClient(creds)
			src := tt.src
			pod := newPod(corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &src}})
			podDir := t.TempDir()
			paths := prepare(t, volume.Options{Client: client}, pod, podDir)
			checkFiles(t, paths["creds"], tt.want)
		})
	}
}

func TestSecretMissing(t *testing.T) {
	client, _ := newClient()
	pod := newPod(corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: "db-creds"},
	}})
	podDir := filepath.Join(t.TempDir(), "pod")
	_, err := volume.Prepare(context.Background(), volume.Options{Client: client}, pod, podDir)
	checkErrContains(t, err, `volume "creds"`, "secret", testNS+"/db-creds", "not found")
	checkNotExist(t, podDir)
}

// kubeAPIAccess is the volume the API server injects into every pod that
// does not opt out of automountServiceAccountToken.
func kubeAPIAccess(defaultMode *int32) corev1.Volume {
	return corev1.Volume{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: defaultMode,
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr[int64](3607), Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path:     "namespace",
					FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
		},
	}}
}

func TestProjectedKubeAPIAccess(t *testing.T) {
	const caPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name        string
		defaultMode *int32
		tokenMode   os.FileMode
		otherMode   os.FileMode
	}{
		// Without a defaultMode the token stays private; pods from the API
		// server carry 0644, which has to win as on the kubelet.
		{name: "no defaultMode", tokenMode: 0o600, otherMode: 0o644},
		{name: "defaultMode 0644 as the API server injects", defaultMode: ptr[int32](0o644), tokenMode: 0o644, otherMode: 0o644},
		{name: "defaultMode 0440", defaultMode: ptr[int32](0o440), tokenMode: 0o440, otherMode: 0o440},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, rec := newClient(configMap("kube-root-ca.crt", map[string]string{"ca.crt": caPEM}, nil))
			vol := kubeAPIAccess(tt.defaultMode)
			pod := newPod(vol)
			paths := prepare(t, volume.Options{Client: client}, pod, t.TempDir())
			checkFiles(t, paths[vol.Name], map[string]wantFile{
				"token":     {testToken, tt.tokenMode},
				"ca.crt":    {caPEM, tt.otherMode},
				"namespace": {testNS, tt.otherMode},
			})

			calls := rec.calls()
			if len(calls) != 1 {
				t.Fatalf("%d token requests, want 1", len(calls))
			}
			c := calls[0]
			if c.namespace != testNS || c.sa != testSA {
				t.Errorf("token requested for %s/%s, want %s/%s", c.namespace, c.sa, testNS, testSA)
			}
			// A token bound to the pod dies with it; an unbound one would
			// stay valid for its whole lifetime after the pod is gone.
			ref := c.req.Spec.BoundObjectRef
			if ref == nil || ref.Kind != "Pod" || ref.Name != testPod || string(ref.UID) != testUID {
				t.Errorf("token bound to %+v, want Pod %s uid %s", ref, testPod, testUID)
			}
			if e := c.req.Spec.ExpirationSeconds; e == nil || *e != 3607 {
				t.Errorf("token expirationSeconds %v, want 3607", e)
			}
			if len(c.req.Spec.Audiences) != 0 {
				t.Errorf("token audiences %v, want none (the API server's)", c.req.Spec.Audiences)
			}
		})
	}
}

func TestProjectedTokenAudienceAndRefresh(t *testing.T) {
	client, rec := newClient()
	pod := newPod(corev1.Volume{Name: "vault", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: "vault", Path: "tokens/vault",
		}}},
	}}})
	podDir := t.TempDir()
	opts := volume.Options{Client: client}
	prepare(t, opts, pod, podDir)
	paths := prepare(t, opts, pod, podDir)
	checkFiles(t, paths["vault"], map[string]wantFile{"tokens/vault": {testToken, 0o600}})

	// Each Prepare is a refresh, so each must fetch a fresh token.
	calls := rec.calls()
	if len(calls) != 2 {
		t.Fatalf("%d token requests over two Prepare calls, want 2", len(calls))
	}
	if a := calls[0].req.Spec.Audiences; len(a) != 1 || a[0] != "vault" {
		t.Errorf("audiences %v, want [vault]", a)
	}
	if e := calls[0].req.Spec.ExpirationSeconds; e == nil || *e != 3600 {
		t.Errorf("expirationSeconds %v, want the API default 3600", e)
	}
}

func TestProjectedTokenNeedsServiceAccount(t *testing.T) {
	client, _ := newClient()
	vol := kubeAPIAccess(nil)
	pod := newPod(vol)
	pod.Spec.ServiceAccountName = ""
	_, err := volume.Prepare(context.Background(), volume.Options{Client: client}, pod, t.TempDir())
	checkErrContains(t, err, vol.Name, "serviceAccountName")
}

func TestDownwardAPI(t *testing.T) {
	pod := newPod(corev1.Volume{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			{Path: "app", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}},
			{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}, Mode: ptr[int32](0o600)},
			{Path: "limits/app-mem", ResourceFieldRef: &corev1.ResourceFieldSelector{
				ContainerName: "app", Resource: "limits.memory", Divisor: resource.MustParse("1Mi"),
			}},
			// The sidecar sets no limit, so what it can really use is the
			// node's allocatable memory.
			{Path: "limits/sidecar-mem", ResourceFieldRef: &corev1.ResourceFieldSelector{
				ContainerName: "sidecar", Resource: "limits.memory", Divisor: resource.MustParse("1Mi"),
			}},
		},
	}}})
	pod.Labels = map[string]string{"tier": "frontend", "app": "web"}
	pod.Annotations = map[string]string{"example.com/owner": "team-a", "note": "say \"hi\"\nbye"}

	opts := volume.Options{NodeAllocatable: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}}
	paths := prepare(t, opts, pod, t.TempDir())
	// Sorted key="quoted value" lines without a trailing newline is the
	// kubelet's format, which existing parsers expect.
	checkFiles(t, paths["podinfo"], map[string]wantFile{
		"labels":             {"app=\"web\"\ntier=\"frontend\"", 0o644},
		"annotations":        {"example.com/owner=\"team-a\"\nnote=\"say \\\"hi\\\"\\nbye\"", 0o644},
		"app":                {"web", 0o644},
		"name":               {testPod, 0o600},
		"limits/app-mem":     {"256", 0o644},
		"limits/sidecar-mem": {"2048", 0o644},
	})
}

func TestDownwardAPIErrors(t *testing.T) {
	tests := []struct {
		name string
		item corev1.DownwardAPIVolumeFile
		want []string
	}{
		{
			name: "unknown fieldPath",
			item: corev1.DownwardAPIVolumeFile{Path: "x", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.bogus"}},
			want: []string{"spec.bogus"},
		},
		{
			// A volume is shared by all containers, so it cannot guess one.
			name: "resourceFieldRef without containerName",
			item: corev1.DownwardAPIVolumeFile{Path: "x", ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}},
			want: []string{"containerName"},
		},
		{
			name: "neither ref",
			item: corev1.DownwardAPIVolumeFile{Path: "x"},
			want: []string{"neither"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newPod(corev1.Volume{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{tt.item},
			}}})
			podDir := filepath.Join(t.TempDir(), "pod")
			_, err := volume.Prepare(context.Background(), volume.Options{}, pod, podDir)
			checkErrContains(t, err, append([]string{`volume "podinfo"`, `"x"`}, tt.want...)...)
			checkNotExist(t, podDir)
		})
	}
}
