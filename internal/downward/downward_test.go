package downward

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "web-0",
			Namespace: "shop",
			UID:       "1234-abcd",
			Labels:    map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{
				"note":              "say \"hi\"\nbye",
				"example.com/owner": "team-a",
			},
		},
		Spec: corev1.PodSpec{
			NodeName:           "outpost-node",
			ServiceAccountName: "web-sa",
			Containers: []corev1.Container{
				{
					Name: "app",
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{
							corev1.ResourceCPU:              resource.MustParse("250m"),
							corev1.ResourceMemory:           resource.MustParse("64Mi"),
							corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
							"nvidia.com/gpu":                resource.MustParse("1"),
						},
						Limits: corev1.ResourceList{
							corev1.ResourceCPU:     resource.MustParse("1500m"),
							corev1.ResourceMemory:  resource.MustParse("128Mi"),
							"hugepages-2Mi":        resource.MustParse("4Mi"),
							"nvidia.com/gpu":       resource.MustParse("1"),
							corev1.ResourceStorage: resource.MustParse("0"),
						},
					},
				},
				{Name: "sidecar"},
			},
			InitContainers: []corev1.Container{
				{
					Name: "init",
					Resources: corev1.ResourceRequirements{
						Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
					},
				},
			},
		},
		Status: corev1.PodStatus{
			HostIP:  "10.0.0.1",
			HostIPs: []corev1.HostIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}},
			PodIP:   "10.244.0.5",
			PodIPs:  []corev1.PodIP{{IP: "10.244.0.5"}, {IP: "fd00:244::5"}},
		},
	}
}

func TestFieldValue(t *testing.T) {
	pod := testPod()
	bare := &corev1.Pod{Status: corev1.PodStatus{HostIP: "192.168.1.1", PodIP: "10.1.1.1"}}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		path    string
		want    string
		wantErr string
	}{
		{name: "name", path: "metadata.name", want: "web-0"},
		{name: "namespace", path: "metadata.namespace", want: "shop"},
		{name: "uid", path: "metadata.uid", want: "1234-abcd"},
		{name: "labels", path: "metadata.labels", want: "app=\"web\"\ntier=\"front\""},
		{name: "annotations are sorted and quoted", path: "metadata.annotations",
			want: "example.com/owner=\"team-a\"\nnote=\"say \\\"hi\\\"\\nbye\""},
		{name: "one label", path: "metadata.labels['tier']", want: "front"},
		{name: "missing label is empty", path: "metadata.labels['nope']", want: ""},
		{name: "one annotation", path: "metadata.annotations['example.com/owner']", want: "team-a"},
		{name: "node", path: "spec.nodeName", want: "outpost-node"},
		{name: "service account", path: "spec.serviceAccountName", want: "web-sa"},
		{name: "hostIP", path: "status.hostIP", want: "10.0.0.1"},
		{name: "hostIPs", path: "status.hostIPs", want: "10.0.0.1,fd00::1"},
		{name: "podIP", path: "status.podIP", want: "10.244.0.5"},
		{name: "podIPs", path: "status.podIPs", want: "10.244.0.5,fd00:244::5"},
		{name: "singular hostIP only", pod: bare, path: "status.hostIPs", want: "192.168.1.1"},
		{name: "singular podIP only", pod: bare, path: "status.podIP", want: "10.1.1.1"},
		{name: "empty maps", pod: bare, path: "metadata.labels", want: ""},
		{name: "unknown path", path: "spec.hostname",
			wantErr: `unsupported fieldPath "spec.hostname" (supported: metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.labels['<key>'], metadata.annotations, metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs)`},
		{name: "subscript on non-map", path: "metadata.name['x']",
			wantErr: `fieldPath "metadata.name['x']" does not support a subscript`},
		{name: "bad label key", path: "metadata.labels['a b']",
			wantErr: `invalid key subscript in fieldPath "metadata.labels['a b']"`},
		{name: "no pod", pod: nil, path: "metadata.name", wantErr: "no pod"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pod
			if p == nil && tc.name != "no pod" {
				p = pod
			}
			got, err := FieldValue(p, tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FieldValue(%q) error = %v, want it to contain %q", tc.path, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("FieldValue(%q): %v", tc.path, err)
			}
			if got != tc.want {
				t.Errorf("FieldValue(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestResourceValue(t *testing.T) {
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		"nvidia.com/gpu":                resource.MustParse("8"),
	}
	podLevel := testPod()
	podLevel.Spec.Resources = &corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	q := resource.MustParse
	tests := []struct {
		name      string
		pod       *corev1.Pod
		container string
		ref       corev1.ResourceFieldSelector
		want      string
		wantErr   string
	}{
		{name: "cpu limit rounds up to whole cores", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.cpu"}, want: "2"},
		{name: "cpu limit in millicores", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.cpu", Divisor: q("1m")}, want: "1500"},
		{name: "cpu request rounds up", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "requests.cpu"}, want: "1"},
		{name: "memory limit bytes", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.memory"}, want: "134217728"},
		{name: "memory limit in Mi", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: q("1Mi")}, want: "128"},
		{name: "memory request in M rounds up", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "requests.memory", Divisor: q("1M")}, want: "68"},
		{name: "ephemeral request", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "requests.ephemeral-storage", Divisor: q("1Mi")}, want: "1024"},
		{name: "unset ephemeral limit falls back to node allocatable", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.ephemeral-storage", Divisor: q("1Gi")}, want: "100"},
		{name: "unset cpu limit falls back to node allocatable", container: "sidecar",
			ref: corev1.ResourceFieldSelector{Resource: "limits.cpu"}, want: "4"},
		{name: "unset memory limit falls back to pod-level limit", pod: podLevel, container: "sidecar",
			ref: corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: q("1Mi")}, want: "1024"},
		{name: "unset request is zero", container: "sidecar",
			ref: corev1.ResourceFieldSelector{Resource: "requests.memory"}, want: "0"},
		{name: "ref containerName wins over context", container: "sidecar",
			ref: corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.cpu", Divisor: q("1m")}, want: "1500"},
		{name: "volume context names the container in the ref",
			ref: corev1.ResourceFieldSelector{ContainerName: "app", Resource: "requests.cpu", Divisor: q("1m")}, want: "250"},
		{name: "init container", container: "init",
			ref: corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: q("1Mi")}, want: "32"},
		{name: "hugepages", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.hugepages-2Mi", Divisor: q("1Mi")}, want: "4"},
		{name: "extended limit", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "limits.nvidia.com/gpu"}, want: "1"},
		{name: "extended request", container: "app",
			ref: corev1.ResourceFieldSelector{Resource: "requests.nvidia.com/gpu"}, want: "1"},
		{name: "unset extended limit does not fall back to the node", container: "sidecar",
			ref: corev1.ResourceFieldSelector{Resource: "limits.nvidia.com/gpu"}, want: "0"},
		{name: "unknown container", container: "nope",
			ref:     corev1.ResourceFieldSelector{Resource: "limits.cpu"},
			wantErr: `resourceFieldRef "limits.cpu": container "nope" not found in pod shop/web-0`},
		{name: "no container at all",
			ref:     corev1.ResourceFieldSelector{Resource: "limits.cpu"},
			wantErr: `resourceFieldRef "limits.cpu": no containerName given`},
		{name: "unknown resource", container: "app",
			ref:     corev1.ResourceFieldSelector{Resource: "limits.pods"},
			wantErr: `unsupported resourceFieldRef resource "limits.pods" (supported: limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage, limits.hugepages-<size>, requests.hugepages-<size>, limits.<domain>/<name>, requests.<domain>/<name>)`},
		{name: "neither limits nor requests", container: "app",
			ref:     corev1.ResourceFieldSelector{Resource: "cpu"},
			wantErr: `unsupported resourceFieldRef resource "cpu"`},
		{name: "negative divisor", container: "app",
			ref:     corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: q("-1")},
			wantErr: `resourceFieldRef "limits.memory": divisor "-1" must be positive`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pod
			if p == nil {
				p = testPod()
			}
			ref := tc.ref
			got, err := ResourceValue(p, tc.container, &ref, alloc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ResourceValue(%q) error = %v, want it to contain %q", tc.ref.Resource, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResourceValue(%q): %v", tc.ref.Resource, err)
			}
			if got != tc.want {
				t.Errorf("ResourceValue(%q) = %q, want %q", tc.ref.Resource, got, tc.want)
			}
		})
	}
}

func TestResourceValueDoesNotMutatePod(t *testing.T) {
	pod := testPod()
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
	if _, err := ResourceValue(pod, "sidecar", &corev1.ResourceFieldSelector{Resource: "limits.cpu"}, alloc); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.Containers[1].Resources.Limits != nil {
		t.Errorf("sidecar limits were filled in on the caller's pod: %v", pod.Spec.Containers[1].Resources.Limits)
	}
}
