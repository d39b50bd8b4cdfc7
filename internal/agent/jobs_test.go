package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/api"
	amlarcv1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	trainingv1 "outpost.dev/outpost/api/training/v1alpha1"
)

func hash6(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])[:6]
}

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestCRName(t *testing.T) {
	long := strings.Repeat("a", 63)
	cases := []struct{ name, want string }{
		{"hello-world", "hello-world"},
		{"job1", "job1"},
		{long, long},
		{"Hello_World", "hello-world-" + hash6("Hello_World")},
		{"hello_world", "hello-world-" + hash6("hello_world")},
		{"sklearn.train v2", "sklearn-train-v2-" + hash6("sklearn.train v2")},
		{"_leading_and_trailing_", "leading-and-trailing-" + hash6("_leading_and_trailing_")},
		{"Ünïcode", "n-code-" + hash6("Ünïcode")},
		{"___", "job-" + hash6("___")},
		{long + "a", strings.Repeat("a", 56) + "-" + hash6(long+"a")},
		// The cut must not leave a '-' before the suffix.
		{strings.Repeat("a", 55) + "_bcd", strings.Repeat("a", 55) + "-" + hash6(strings.Repeat("a", 55)+"_bcd")},
	}
	for _, tc := range cases {
		got := crName(tc.name)
		if got != tc.want {
			t.Errorf("crName(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if len(got) > 63 || !dns1123Label.MatchString(got) {
			t.Errorf("crName(%q) = %q: not a DNS-1123 label", tc.name, got)
		}
	}
	if crName("a_b") == crName("a-b") || crName("A-b") == crName("a-b") {
		t.Error("names that differ only in case or punctuation share an object name")
	}
}

func TestCheckJob(t *testing.T) {
	good := func() *api.DesiredJob {
		return &api.DesiredJob{Name: "j", Namespace: "ns", Token: "tok", Image: "python:3.12", InstanceCount: 1}
	}
	cases := []struct {
		name string
		edit func(*api.DesiredJob)
		want string
	}{
		{"good", func(*api.DesiredJob) {}, ""},
		{"no name", func(j *api.DesiredJob) { j.Name = "" }, "without a name"},
		{"no namespace", func(j *api.DesiredJob) { j.Namespace = "" }, "no namespace"},
		{"no token", func(j *api.DesiredJob) { j.Token = "" }, "no credential"},
		{"no image", func(j *api.DesiredJob) { j.Image = "" }, "no image"},
		{"negative count", func(j *api.DesiredJob) { j.InstanceCount = -1 }, "instance count -1"},
		{"huge process count", func(j *api.DesiredJob) {
			j.Distribution = &api.Distribution{Type: "pytorch", ProcessCountPerInstance: 1 << 40}
		}, "process_count_per_instance"},
	}
	for _, tc := range cases {
		j := good()
		tc.edit(j)
		err := checkJob(j)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if err := checkJob(nil); err == nil {
		t.Error("a job object without payload passed")
	}
}

func testJob() *api.DesiredJob {
	return &api.DesiredJob{Name: "Train_Model", ResourceGroup: "my rg", Workspace: "ws/1", Compute: "k8s", Namespace: "team-a",
		Token: "secret-token", Image: "python:3.12", InstanceType: "gpu-small", InstanceCount: 1,
		Distribution: &api.Distribution{Type: "pytorch", ProcessCountPerInstance: 2}, ShmSize: "2g", TimeoutSeconds: 600}
}

func TestBuildTrainingJob(t *testing.T) {
	const id = "/resourceGroups/rg/workspaces/ws/jobs/Train_Model"
	j := testJob()
	cr := "train-model-" + hash6("Train_Model")
	got := buildTrainingJob(id, j)
	want := &trainingv1.TrainingJob{
		TypeMeta: metav1.TypeMeta{APIVersion: "training.outpost.dev/v1alpha1", Kind: "TrainingJob"},
		ObjectMeta: metav1.ObjectMeta{Name: cr, Namespace: "team-a",
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "outpost-agent", trainingv1.LabelJob: cr},
			Annotations: map[string]string{trainingv1.AnnotationJobName: "Train_Model"}},
		Spec: trainingv1.TrainingJobSpec{JobID: id, Image: "python:3.12", InstanceType: "gpu-small", InstanceCount: 1,
			Distribution: &trainingv1.Distribution{Type: "pytorch", ProcessCountPerInstance: 2},
			ShmSize:      "2g", TimeoutSeconds: 600, SecretName: cr + "-credentials"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TrainingJob\n%+v\nwant\n%+v", got, want)
	}

	j.Cancel, j.InstanceCount, j.Distribution = true, 0, nil
	got = buildTrainingJob(id, j)
	if !got.Spec.Cancel || got.Spec.InstanceCount != 1 || got.Spec.Distribution != nil {
		t.Errorf("cancelled job without count or distribution: %+v", got.Spec)
	}
}

func TestJobSecretData(t *testing.T) {
	j := testJob()
	cfg := Config{WorkspaceURL: "https://ws.example.com:8443/", CAPEM: []byte("-----BEGIN CERTIFICATE-----\n..."),
		Proxy: "http://proxy:3128", NoProxy: "10.0.0.0/8"}
	got := jobSecretData(cfg, j)
	want := map[string]string{
		trainingv1.EnvJobURL:   "https://ws.example.com:8443/jobrun/v1/resourceGroups/my%20rg/workspaces/ws%2F1/jobs/Train_Model",
		trainingv1.EnvJobToken: "secret-token",
		trainingv1.EnvJobCA:    "-----BEGIN CERTIFICATE-----\n...",
		trainingv1.EnvProxy:    "http://proxy:3128",
		trainingv1.EnvNoProxy:  "10.0.0.0/8",
	}
	if len(got) != len(want) {
		t.Errorf("keys %v, want %v", got, want)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	got = jobSecretData(Config{WorkspaceURL: "https://ws"}, j)
	for _, k := range []string{trainingv1.EnvJobCA, trainingv1.EnvProxy, trainingv1.EnvNoProxy} {
		if _, ok := got[k]; ok {
			t.Errorf("%s set although the agent has none", k)
		}
	}
}

func TestJobReportOf(t *testing.T) {
	tj := obj(t, `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: j, namespace: ns},
		spec: {jobId: /jobs/j, image: x, instanceCount: 1, secretName: s},
		status: {phase: Failed, reason: OOMKilled, message: "instance 0 ran out of memory",
		startTime: "2026-03-01T10:00:00Z", completionTime: "2026-03-01T10:05:00Z", instances: [{index: 0, pod: j-0, exitCode: 137}]}}`)
	got, ok, err := jobReportOf(tj)
	if err != nil || !ok {
		t.Fatalf("report %v %v", ok, err)
	}
	start, end := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 10, 5, 0, 0, time.UTC)
	want := api.JobReport{ID: "/jobs/j", Phase: "Failed", Reason: "OOMKilled", Message: "instance 0 ran out of memory", StartTime: &start, EndTime: &end}
	if !jobReportEqual(got, want) || got.StartTime.Location() != time.UTC {
		t.Errorf("report %+v, want %+v", got, want)
	}
	for name, manifest := range map[string]string{
		"no phase yet":  `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: j}, spec: {jobId: /jobs/j}}`,
		"not a job's":   `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: j}, status: {phase: Running}}`,
		"empty phase":   `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: j}, spec: {jobId: /jobs/j}, status: {}}`,
		"without state": `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: j}}`,
	} {
		if _, ok, err := jobReportOf(obj(t, manifest)); ok || err != nil {
			t.Errorf("%s: reported (%v)", name, err)
		}
	}
	if _, ok, err := jobReportOf(obj(t, `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: j},
		spec: {jobId: /jobs/j}, status: {phase: Running, startTime: yesterday}}`)); ok || err == nil {
		t.Errorf("a bad startTime: reported %v, error %v", ok, err)
	}
}

func TestChangedJobs(t *testing.T) {
	at := func(s int) *time.Time { return ptr.To(time.Date(2026, 3, 1, 10, 0, s, 0, time.UTC)) }
	queued := api.JobReport{ID: "a", Phase: "Queued", Message: "waiting for available resources"}
	running := api.JobReport{ID: "a", Phase: "Running", StartTime: at(1)}
	other := api.JobReport{ID: "b", Phase: "Running", StartTime: at(2)}
	cases := []struct {
		name        string
		acked, full []api.JobReport
		want        []api.JobReport
	}{
		{"first report carries every job", nil, []api.JobReport{queued, other}, []api.JobReport{queued, other}},
		{"nothing changed", []api.JobReport{running, other}, []api.JobReport{running, other}, nil},
		{"a phase changed", []api.JobReport{queued, other}, []api.JobReport{running, other}, []api.JobReport{running}},
		{"only the message changed", []api.JobReport{queued}, []api.JobReport{{ID: "a", Phase: "Queued", Message: "other"}},
			[]api.JobReport{{ID: "a", Phase: "Queued", Message: "other"}}},
		{"the same instant in another zone", []api.JobReport{running},
			[]api.JobReport{{ID: "a", Phase: "Running", StartTime: ptr.To(at(1).In(time.FixedZone("X", 3600)))}}, nil},
		{"an end time came", []api.JobReport{running}, []api.JobReport{{ID: "a", Phase: "Running", StartTime: at(1), EndTime: at(9)}},
			[]api.JobReport{{ID: "a", Phase: "Running", StartTime: at(1), EndTime: at(9)}}},
		{"a job deleted is not reported", []api.JobReport{running, other}, []api.JobReport{other}, nil},
	}
	for _, tc := range cases {
		got := changedSince(api.AgentReport{Jobs: tc.acked}, api.AgentReport{Jobs: tc.full}).Jobs
		if len(got) != len(tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if !jobReportEqual(got[i], tc.want[i]) {
				t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
			}
		}
	}
}

func TestNodeFacts(t *testing.T) {
	node := func(name string, ready corev1.ConditionStatus, alloc corev1.ResourceList) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}},
			Status: corev1.NodeStatus{Allocatable: alloc, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	got := nodeFacts([]corev1.Node{
		node("n2", corev1.ConditionFalse, corev1.ResourceList{"cpu": resource.MustParse("2"), "memory": resource.MustParse("4Gi")}),
		node("n1", corev1.ConditionTrue, corev1.ResourceList{"cpu": resource.MustParse("7500m"), "memory": resource.MustParse("16283848Ki"),
			"nvidia.com/gpu": resource.MustParse("2"), "pods": resource.MustParse("110")}),
	})
	want := []api.NodeFacts{
		{Name: "n1", Labels: map[string]string{"pool": "n1"}, Ready: true,
			Allocatable: map[string]string{"cpu": "7500m", "memory": "16283848Ki", "nvidia.com/gpu": "2"}},
		{Name: "n2", Labels: map[string]string{"pool": "n2"}, Ready: false,
			Allocatable: map[string]string{"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "0"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nodes\n%+v\nwant\n%+v", got, want)
	}
}

func TestInstanceTypeFacts(t *testing.T) {
	it := func(name string, sel map[string]string, req, lim corev1.ResourceList) amlarcv1.InstanceType {
		return amlarcv1.InstanceType{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: amlarcv1.InstanceTypeSpec{NodeSelector: sel, Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}
	}
	builtIn := api.InstanceType{Name: "defaultinstancetype", BuiltIn: true, Resources: api.InstanceTypeResources{
		Requests: map[string]string{"cpu": "100m", "memory": "2Gi"}, Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}}
	gpu := it("gpu-small", map[string]string{"accelerator": "t4"},
		corev1.ResourceList{"cpu": resource.MustParse("1"), "memory": resource.MustParse("4Gi")},
		corev1.ResourceList{"cpu": resource.MustParse("2"), "memory": resource.MustParse("8Gi"), "nvidia.com/gpu": resource.MustParse("1")})
	gpuFacts := api.InstanceType{Name: "gpu-small", NodeSelector: map[string]string{"accelerator": "t4"}, Resources: api.InstanceTypeResources{
		Requests: map[string]string{"cpu": "1", "memory": "4Gi"}, Limits: map[string]string{"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}}}
	cases := []struct {
		name string
		its  []amlarcv1.InstanceType
		want []api.InstanceType
	}{
		{"no CRD or no objects: the built-in one", nil, []api.InstanceType{builtIn}},
		{"objects and the built-in one, by name", []amlarcv1.InstanceType{gpu, it("cpu", nil, nil, nil)},
			[]api.InstanceType{{Name: "cpu"}, builtIn, gpuFacts}},
		{"an object replaces the built-in one", []amlarcv1.InstanceType{
			it("defaultinstancetype", nil, corev1.ResourceList{"cpu": resource.MustParse("500m")}, nil), gpu},
			[]api.InstanceType{{Name: "defaultinstancetype", Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "500m"}}}, gpuFacts}},
	}
	for _, tc := range cases {
		if got := instanceTypeFacts(tc.its); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n%+v\nwant\n%+v", tc.name, got, tc.want)
		}
	}
}
