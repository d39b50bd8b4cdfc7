package training

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/training/v1alpha1"
)

func testJob(name string, mod ...func(*v1alpha1.TrainingJob)) *v1alpha1.TrainingJob {
	j := &v1alpha1.TrainingJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: types.UID("uid-" + name), Generation: 1},
		Spec: v1alpha1.TrainingJobSpec{
			JobID: "/jobs/" + name, Image: "python:3.12", InstanceCount: 1, SecretName: name + "-credentials",
		},
	}
	for _, m := range mod {
		m(j)
	}
	return j
}

func TestBuildPod(t *testing.T) {
	job := testJob("train", func(j *v1alpha1.TrainingJob) {
		j.Spec.InstanceType = "gpu"
		j.Spec.Distribution = &v1alpha1.Distribution{Type: "pytorch"}
		j.Spec.TimeoutSeconds = 3600
		j.Spec.ShmSize = "1g"
	})
	it := amlarcv1alpha1.InstanceType{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: amlarcv1alpha1.InstanceTypeSpec{
			NodeSelector: map[string]string{"pool": "gpu"},
			Resources: corev1.ResourceRequirements{
				Requests: res("700m", "1500Mi"),
				Limits:   res("1", "2Gi", "1"),
			},
		},
	}
	plan, d, err := prepare(job, "outpost:v1", []amlarcv1alpha1.InstanceType{it})
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32)
	plan.wrapperKey = key
	got := buildPod(job, 0, "n1", *plan)
	want := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "train-0", Namespace: "ml",
			Labels: map[string]string{"training.outpost.dev/job": "train", "training.outpost.dev/instance": "0"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "training.outpost.dev/v1alpha1", Kind: "TrainingJob", Name: "train", UID: "uid-train", Controller: new(true),
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:                     "n1",
			NodeSelector:                 map[string]string{"pool": "gpu"},
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(false),
			EnableServiceLinks:           new(false),
			ActiveDeadlineSeconds:        new(int64(3600)),
			Hostname:                     "train-0",
			Subdomain:                    "train",
			Volumes: []corev1.Volume{
				{Name: "azureml", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "dshm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					Medium: corev1.StorageMediumMemory, SizeLimit: new(resource.MustParse("1Gi")),
				}}},
				// One copy of the wrapper per node, named after its sha256.
				{Name: "outpost-wrapper", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: "/var/lib/outpost/wrapper", Type: new(corev1.HostPathDirectoryOrCreate),
				}}},
			},
			InitContainers: []corev1.Container{{
				Name: "install", Image: "outpost:v1",
				Args:                     []string{"job", "install", "/outpost-wrapper-store/" + key + "/outpost"},
				VolumeMounts:             []corev1.VolumeMount{{Name: "outpost-wrapper", MountPath: "/outpost-wrapper-store"}},
				SecurityContext:          &corev1.SecurityContext{RunAsUser: new(int64(0)), RunAsGroup: new(int64(0))},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Containers: []corev1.Container{{
				Name: "job", Image: "python:3.12",
				Command: []string{"/outpost-wrapper/outpost", "job", "run"},
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "train-credentials"},
				}}},
				Env: []corev1.EnvVar{
					{Name: "OUTPOST_JOB_ROOT", Value: "/azureml"},
					{Name: "OUTPOST_FRAMEWORK", Value: "pytorch"},
					{Name: "OUTPOST_INSTANCE_INDEX", Value: "0"},
					{Name: "OUTPOST_INSTANCE_COUNT", Value: "1"},
					{Name: "OUTPOST_PROCESSES_PER_INSTANCE", Value: "1"},
					{Name: "OUTPOST_HOSTS", Value: "train-0"},
					{Name: "OUTPOST_FRAMEWORK_PORT", Value: "6105"},
					{Name: "OUTPOST_PARAMETER_SERVERS", Value: "0"},
					{Name: "MASTER_ADDR", Value: "train-0"},
					{Name: "MASTER_PORT", Value: "6105"},
					{Name: "WORLD_SIZE", Value: "1"},
					{Name: "NODE_RANK", Value: "0"},
					{Name: "AZUREML_CR_NODE_RANK", Value: "0"},
				},
				Ports:     []corev1.ContainerPort{{Name: "pytorch", ContainerPort: 6105, Protocol: corev1.ProtocolTCP}},
				Resources: corev1.ResourceRequirements{Requests: res("700m", "1500Mi"), Limits: res("1", "2Gi", "1")},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "azureml", MountPath: "/azureml"},
					{Name: "outpost-wrapper", MountPath: "/outpost-wrapper", SubPath: key, ReadOnly: true},
					{Name: "dshm", MountPath: "/dev/shm"},
				},
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
		},
	}
	if !equality.Semantic.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("pod:\n%s\nwant:\n%s", g, w)
	}
	// Admission counts what the pod will hold: the GPU from limits, a pod slot.
	if q := d.requests[GPU]; q.Value() != 1 {
		t.Errorf("demand GPU = %s", q.String())
	}
	if q := d.requests[corev1.ResourcePods]; q.Value() != 1 {
		t.Errorf("demand pods = %s", q.String())
	}
	if d.nodeSelector["pool"] != "gpu" || d.count != 1 || d.instanceType != "gpu" {
		t.Errorf("demand = %+v", d)
	}
}

func TestBuildPodDefaults(t *testing.T) {
	job := testJob("plain")
	plan, _, err := prepare(job, "outpost:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	pod := buildPod(job, 0, "n1", *plan)
	if pod.Spec.ActiveDeadlineSeconds != nil {
		t.Errorf("activeDeadlineSeconds = %d without a timeout", *pod.Spec.ActiveDeadlineSeconds)
	}
	if pod.Spec.NodeSelector != nil {
		t.Errorf("nodeSelector = %v", pod.Spec.NodeSelector)
	}
	if q := pod.Spec.Volumes[1].EmptyDir.SizeLimit; q == nil || q.Cmp(resource.MustParse("2Gi")) != 0 {
		t.Errorf("shm size = %v, want 2Gi (2g)", q)
	}
	c := pod.Spec.Containers[0]
	if c.Resources.Requests.Cpu().String() != "100m" || c.Resources.Limits.Cpu().String() != "2" ||
		c.Resources.Requests.Memory().String() != "2Gi" || c.Resources.Limits.Memory().String() != "2Gi" {
		t.Errorf("defaultinstancetype resources = %+v", c.Resources)
	}
	for _, e := range c.Env {
		if e.Name == "MASTER_ADDR" || e.Name == "AZUREML_CR_NODE_RANK" {
			t.Errorf("plain command job has %s", e.Name)
		}
		if e.Name == "OUTPOST_FRAMEWORK" && e.Value != "" {
			t.Errorf("OUTPOST_FRAMEWORK = %q", e.Value)
		}
	}
	if len(c.Ports) != 0 {
		t.Errorf("ports = %+v", c.Ports)
	}
}

func TestHosts(t *testing.T) {
	long := strings.Repeat("a", 60) + "-b1"
	for _, c := range []struct {
		job   string
		count int32
		want  []string
	}{
		{"j", 1, []string{"j-0"}},
		{"j", 2, []string{"j-0.j", "j-1.j"}},
		// 63 characters: the host name is cut to a DNS label, the pod's name is not.
		{long, 1, []string{strings.Repeat("a", 60) + "-0"}},
	} {
		job := testJob(c.job, func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = c.count })
		got := hosts(job)
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("hosts(%s x%d) = %q, want %q", c.job, c.count, got, c.want)
		}
		for _, h := range got {
			if len(strings.Split(h, ".")[0]) > 63 {
				t.Errorf("host %q is not a DNS label", h)
			}
		}
	}
}

func TestPrepareErrors(t *testing.T) {
	its := []amlarcv1alpha1.InstanceType{{ObjectMeta: metav1.ObjectMeta{Name: "small"}}}
	for _, c := range []struct {
		name     string
		mod      func(*v1alpha1.TrainingJob)
		notFound bool
		want     string
	}{
		{"unknown instance type", func(j *v1alpha1.TrainingJob) { j.Spec.InstanceType = "huge" }, true,
			`instance type "huge" not found; the cluster has defaultinstancetype, small`},
		{"no instances", func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 0 }, false, "instanceCount 0"},
		{"unknown framework", func(j *v1alpha1.TrainingJob) { j.Spec.Distribution = &v1alpha1.Distribution{Type: "ray"} }, false, `unknown distribution type "ray"`},
		{"bad shm", func(j *v1alpha1.TrainingJob) { j.Spec.ShmSize = "2 GB" }, false, `shm size "2 GB"`},
		{"bad distribution", func(j *v1alpha1.TrainingJob) {
			j.Spec.Distribution = &v1alpha1.Distribution{Type: "tensorflow", WorkerCount: 3}
		}, false, "must equal the 1 processes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := prepare(testJob("j", c.mod), "outpost", its)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			var nf errInstanceTypeNotFound
			var inv invalidSpec
			if isNF := asErr(err, &nf); isNF != c.notFound || (!c.notFound && !asErr(err, &inv)) {
				t.Errorf("err %T: not-found %v, want %v", err, isNF, c.notFound)
			}
		})
	}
}

func TestResolveInstanceType(t *testing.T) {
	mine := amlarcv1alpha1.InstanceType{ObjectMeta: metav1.ObjectMeta{Name: DefaultInstanceType}, Spec: amlarcv1alpha1.InstanceTypeSpec{
		Resources: corev1.ResourceRequirements{Requests: res("1", "1Gi"), Limits: res("1", "1Gi")},
	}}
	got, err := resolveInstanceType("", []amlarcv1alpha1.InstanceType{mine})
	if err != nil || got.Resources.Limits.Cpu().String() != "1" {
		t.Errorf("an object named defaultinstancetype must replace the built-in one: %+v %v", got, err)
	}
	got, err = resolveInstanceType("", nil)
	if err != nil || !equality.Semantic.DeepEqual(got, BuiltinDefault()) {
		t.Errorf("built-in default: %+v %v", got, err)
	}
}

func TestParseShmSize(t *testing.T) {
	for in, want := range map[string]string{"": "2Gi", "2g": "2Gi", "512m": "512Mi", "64K": "64Ki", "100b": "100", "1Gi": "1Gi"} {
		q, err := parseShmSize(in)
		if err != nil || q.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("parseShmSize(%q) = %s, %v; want %s", in, q.String(), err, want)
		}
	}
	for _, in := range []string{"0g", "2 GB", "-1", "g", "99999999999999999999g"} {
		if _, err := parseShmSize(in); err == nil {
			t.Errorf("parseShmSize(%q) succeeded", in)
		}
	}
}

func asErr[T error](err error, target *T) bool { return errors.As(err, target) }
