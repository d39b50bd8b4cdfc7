package v1alpha1

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// full has every field of every type set, so that a field DeepCopy forgets
// to copy, or shares, shows.
func full() *TrainingJob {
	code := int32(3)
	ts := metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	return &TrainingJob{
		TypeMeta: metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "ml", Labels: map[string]string{"a": "b"},
			Annotations: map[string]string{AnnotationJobName: "my_job"}, Finalizers: []string{"f"}},
		Spec: TrainingJobSpec{
			JobID: "/jobs/j", Image: "python", InstanceType: "small", InstanceCount: 2,
			Distribution: &Distribution{Type: "pytorch", ProcessCountPerInstance: 2, WorkerCount: 1, ParameterServerCount: 1},
			ShmSize:      "2g", TimeoutSeconds: 60, SecretName: "s", Cancel: true,
		},
		Status: TrainingJobStatus{
			Phase: "Failed", Reason: "Error", Message: "exit code 3", StartTime: &ts, CompletionTime: &ts,
			Instances:          []InstanceStatus{{Index: 0, Pod: "j-0", Node: "n1", Phase: "Failed", ExitCode: &code, Reason: "Error"}},
			ObservedGeneration: 4,
		},
	}
}

// shared reports a pointer, slice or map that a and b share.
func shared(path string, a, b reflect.Value) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(path, a.Elem(), b.Elem())
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := 0; i < a.Len(); i++ {
			if p := shared(path+"[]", a.Index(i), b.Index(i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeOf(time.Time{}) {
			return "" // its *Location is shared by design
		}
		for i := 0; i < a.NumField(); i++ {
			if p := shared(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i)); p != "" {
				return p
			}
		}
	}
	return ""
}

func TestDeepCopy(t *testing.T) {
	in := full()
	out := in.DeepCopy()
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("copy differs:\n%+v\n%+v", in, out)
	}
	if p := shared("TrainingJob", reflect.ValueOf(in), reflect.ValueOf(out)); p != "" {
		t.Errorf("copy shares %s with the original", p)
	}
	list := &TrainingJobList{Items: []TrainingJob{*full()}}
	lc := list.DeepCopyObject().(*TrainingJobList)
	if !reflect.DeepEqual(list, lc) {
		t.Fatal("list copy differs")
	}
	if p := shared("TrainingJobList", reflect.ValueOf(list), reflect.ValueOf(lc)); p != "" {
		t.Errorf("list copy shares %s with the original", p)
	}
	var nilJob *TrainingJob
	if nilJob.DeepCopy() != nil || nilJob.DeepCopyObject() != nil {
		t.Error("copy of nil is not nil")
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]runtime.Object{Kind: &TrainingJob{}, Kind + "List": &TrainingJobList{}} {
		obj, err := s.New(GroupVersion.WithKind(kind))
		if err != nil || reflect.TypeOf(obj) != reflect.TypeOf(want) {
			t.Errorf("scheme.New(%s) = %T, %v", kind, obj, err)
		}
	}
	gvks, _, err := s.ObjectKinds(&TrainingJob{})
	if err != nil || len(gvks) != 1 || gvks[0] != GroupVersion.WithKind(Kind) {
		t.Errorf("ObjectKinds = %v, %v", gvks, err)
	}
}
