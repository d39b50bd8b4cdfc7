package v1alpha1

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func full() *InstanceType {
	return &InstanceType{
		TypeMeta:   metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{Name: "gpu", Labels: map[string]string{"a": "b"}},
		Spec: InstanceTypeSpec{
			NodeSelector: map[string]string{"pool": "gpu"},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("700m"), corev1.ResourceMemory: resource.MustParse("1500Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), "nvidia.com/gpu": resource.MustParse("1")},
			},
		},
	}
}

func TestDeepCopy(t *testing.T) {
	in := full()
	out := in.DeepCopy()
	if !equality.Semantic.DeepEqual(in, out) {
		t.Fatalf("copy differs:\n%+v\n%+v", in, out)
	}
	// Changing the copy's maps must leave the original as it was.
	out.Spec.NodeSelector["pool"] = "cpu"
	out.Spec.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
	out.Labels["a"] = "c"
	if !equality.Semantic.DeepEqual(in, full()) {
		t.Errorf("changing the copy changed the original: %+v", in)
	}
	list := &InstanceTypeList{Items: []InstanceType{*full()}}
	lc := list.DeepCopyObject().(*InstanceTypeList)
	lc.Items[0].Spec.NodeSelector["pool"] = "cpu"
	if list.Items[0].Spec.NodeSelector["pool"] != "gpu" {
		t.Error("list copy shares its items' maps")
	}
	var nilIT *InstanceType
	if nilIT.DeepCopy() != nil || nilIT.DeepCopyObject() != nil {
		t.Error("copy of nil is not nil")
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]runtime.Object{Kind: &InstanceType{}, Kind + "List": &InstanceTypeList{}} {
		obj, err := s.New(GroupVersion.WithKind(kind))
		if err != nil || reflect.TypeOf(obj) != reflect.TypeOf(want) {
			t.Errorf("scheme.New(%s) = %T, %v", kind, obj, err)
		}
	}
}
