package inference

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/wrapper"
)

func res(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

func testDeployment() *v1alpha1.OnlineDeployment {
	return &v1alpha1.OnlineDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "my-ep-blue", Namespace: "ml", UID: "uid-1", Generation: 1},
		Spec: v1alpha1.OnlineDeploymentSpec{
			DeploymentID: "/rg/ws/onlineEndpoints/my-ep/deployments/blue", Name: "blue", Endpoint: "my-ep",
			Image: "mcr.microsoft.com/azureml/minimal:latest", InstanceType: "small",
			Scale:      v1alpha1.Scale{Type: api.ScaleDefault, InstanceCount: 2},
			Request:    v1alpha1.Request{TimeoutMS: 5000, MaxConcurrentPerInstance: 1, MaxQueueWaitMS: 500},
			Liveness:   v1alpha1.Probe{PeriodSeconds: 10, InitialDelaySeconds: 10, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 30},
			Readiness:  v1alpha1.Probe{PeriodSeconds: 5, InitialDelaySeconds: 3, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 4},
			SecretName: "my-ep-blue-credentials",
		},
	}
}

var testTypes = []amlarcv1alpha1.InstanceType{{
	ObjectMeta: metav1.ObjectMeta{Name: "small"},
	Spec: amlarcv1alpha1.InstanceTypeSpec{
		NodeSelector: map[string]string{"pool": "cpu"},
		Resources:    corev1.ResourceRequirements{Requests: res("500m", "1Gi"), Limits: res("2", "4Gi")},
	},
}}

func mustPrepare(t *testing.T, od *v1alpha1.OnlineDeployment) plan {
	t.Helper()
	p, err := prepare(od, "outpost:test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeploymentOfScoringServer(t *testing.T) {
	od := testDeployment()
	d := buildDeployment(od, mustPrepare(t, od))
	if d.Name != "my-ep-blue" || d.Namespace != "ml" || *d.Spec.Replicas != 2 {
		t.Errorf("name %s/%s replicas %d", d.Namespace, d.Name, *d.Spec.Replicas)
	}
	if ref := metav1.GetControllerOf(d); ref == nil || ref.UID != "uid-1" || ref.Kind != "OnlineDeployment" || ref.APIVersion != "inference.outpost.dev/v1alpha1" {
		t.Errorf("owner %+v", d.OwnerReferences)
	}
	wantSel := map[string]string{v1alpha1.LabelEndpoint: "my-ep", v1alpha1.LabelDeployment: "blue"}
	if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, wantSel) {
		t.Errorf("selector %v", d.Spec.Selector.MatchLabels)
	}
	tmpl := d.Spec.Template
	for k, v := range wantSel {
		if tmpl.Labels[k] != v {
			t.Errorf("pod labels %v lack %s=%s: the router finds instances by them", tmpl.Labels, k, v)
		}
	}
	if tmpl.Labels[LabelOnlineDeployment] != "my-ep-blue" || tmpl.Annotations[AnnotationTemplate] == "" {
		t.Errorf("pod labels %v annotations %v", tmpl.Labels, tmpl.Annotations)
	}
	pod := tmpl.Spec
	if !reflect.DeepEqual(pod.NodeSelector, map[string]string{"pool": "cpu"}) {
		t.Errorf("nodeSelector %v, want the instance type's", pod.NodeSelector)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("the pod gets the cluster's API token or the Services' variables")
	}
	install, _, wmounts := wrapper.Pod("outpost:test")
	if len(pod.InitContainers) != 1 || !reflect.DeepEqual(pod.InitContainers[0], install) {
		t.Errorf("init containers %+v, want the wrapper's install container", pod.InitContainers)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Name != "inference-server" || c.Image != od.Spec.Image {
		t.Errorf("container %s image %s", c.Name, c.Image)
	}
	if want := []string{wrapper.Path, "score", "serve", "--root", "/var/azureml-app"}; !slices.Equal(c.Command, want) {
		t.Errorf("command %q, want %q", c.Command, want)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "my-ep-blue-credentials" {
		t.Errorf("envFrom %+v, want the credentials Secret", c.EnvFrom)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "POD_NAME" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("env %+v, want POD_NAME from the pod's name", c.Env)
	}
	for _, m := range append([]corev1.VolumeMount{{Name: VolumeName, MountPath: "/var/azureml-app"}}, wmounts...) {
		if !slices.Contains(c.VolumeMounts, m) {
			t.Errorf("mounts %+v lack %+v", c.VolumeMounts, m)
		}
	}
	if c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
		t.Errorf("terminationMessagePolicy %s: init()'s traceback would be lost", c.TerminationMessagePolicy)
	}
	if !reflect.DeepEqual(c.Resources, corev1.ResourceRequirements{Requests: res("500m", "1Gi"), Limits: res("2", "4Gi")}) {
		t.Errorf("resources %+v, want the instance type's", c.Resources)
	}
	want := func(p *corev1.Probe, path string, s v1alpha1.Probe) {
		t.Helper()
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromInt32(5001) ||
			p.PeriodSeconds != s.PeriodSeconds || p.InitialDelaySeconds != s.InitialDelaySeconds || p.TimeoutSeconds != s.TimeoutSeconds ||
			p.SuccessThreshold != s.SuccessThreshold || p.FailureThreshold != s.FailureThreshold {
			t.Errorf("probe %+v, want GET %s on 5001 with %+v", p, path, s)
		}
	}
	want(c.LivenessProbe, "/", od.Spec.Liveness)
	want(c.ReadinessProbe, "/", od.Spec.Readiness)
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 5001 {
		t.Errorf("ports %+v", c.Ports)
	}
}

func TestDeploymentOfCustomContainer(t *testing.T) {
	od := testDeployment()
	od.Spec.InferenceConfig = &v1alpha1.InferenceConfig{
		Liveness:  v1alpha1.Route{Port: 8080, Path: "/healthz"},
		Readiness: v1alpha1.Route{Port: 8080, Path: "/ready"},
		Scoring:   v1alpha1.Route{Port: 8080, Path: "/v1/models/m:predict"},
	}
	od.Spec.ModelName, od.Spec.ModelVersion = "sklearn-model", "3"
	od.Spec.EnvironmentVariables = map[string]string{"MODEL_BASE_PATH": "/var/azureml-app/azureml-models/sklearn-model/3", "B": "2"}
	pod := buildDeployment(od, mustPrepare(t, od)).Spec.Template.Spec
	if len(pod.InitContainers) != 1 {
		t.Fatalf("init containers %+v", pod.InitContainers)
	}
	fetch := pod.InitContainers[0]
	if fetch.Name != "fetch" || fetch.Image != "outpost:test" || !slices.Equal(fetch.Args, []string{"score", "fetch", "--root", "/var/azureml-app"}) ||
		len(fetch.Command) != 0 {
		t.Errorf("fetch container %s image %s command %q args %q", fetch.Name, fetch.Image, fetch.Command, fetch.Args)
	}
	if len(fetch.EnvFrom) != 1 || fetch.EnvFrom[0].SecretRef.Name != od.Spec.SecretName {
		t.Errorf("fetch envFrom %+v", fetch.EnvFrom)
	}
	c := pod.Containers[0]
	if len(c.Command) != 0 || len(c.Args) != 0 {
		t.Errorf("command %q args %q: a custom container runs as its image says", c.Command, c.Args)
	}
	if len(c.EnvFrom) != 0 {
		t.Errorf("envFrom %+v: the credential must stay out of a custom container", c.EnvFrom)
	}
	env := map[string]string{}
	var names []string
	for _, e := range c.Env {
		env[e.Name] = e.Value
		names = append(names, e.Name)
	}
	if env["AZUREML_MODEL_DIR"] != "/var/azureml-app/azureml-models/sklearn-model/3" || env["B"] != "2" ||
		!slices.Equal(names, []string{"POD_NAME", "B", "MODEL_BASE_PATH", "AZUREML_MODEL_DIR"}) {
		t.Errorf("env %v (in order %q)", env, names)
	}
	if !slices.Contains(c.VolumeMounts, corev1.VolumeMount{Name: VolumeName, MountPath: "/var/azureml-app"}) ||
		!slices.Contains(fetch.VolumeMounts, corev1.VolumeMount{Name: VolumeName, MountPath: "/var/azureml-app"}) {
		t.Errorf("mounts: fetch %+v server %+v, want the shared volume in both", fetch.VolumeMounts, c.VolumeMounts)
	}
	if p := c.ReadinessProbe.HTTPGet; p.Path != "/ready" || p.Port != intstr.FromInt32(8080) {
		t.Errorf("readiness GET %s on %s", p.Path, p.Port.String())
	}
	if p := c.LivenessProbe.HTTPGet; p.Path != "/healthz" || p.Port != intstr.FromInt32(8080) {
		t.Errorf("liveness GET %s on %s", p.Path, p.Port.String())
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v", c.Ports)
	}

	// Without a model there is no AZUREML_MODEL_DIR.
	od.Spec.ModelName, od.Spec.ModelVersion = "", ""
	for _, e := range buildDeployment(od, mustPrepare(t, od)).Spec.Template.Spec.Containers[0].Env {
		if e.Name == "AZUREML_MODEL_DIR" {
			t.Errorf("AZUREML_MODEL_DIR=%s without a model", e.Value)
		}
	}
}

// The template's digest changes with what the pods run, not with the
// number of instances.
func TestTemplateDigest(t *testing.T) {
	od := testDeployment()
	base := buildDeployment(od, mustPrepare(t, od)).Spec.Template.Annotations[AnnotationTemplate]
	if again := buildDeployment(od, mustPrepare(t, od)).Spec.Template.Annotations[AnnotationTemplate]; again != base {
		t.Errorf("digest not stable: %s, %s", base, again)
	}
	od.Spec.Scale.InstanceCount = 5
	if got := buildDeployment(od, mustPrepare(t, od)).Spec.Template.Annotations[AnnotationTemplate]; got != base {
		t.Error("more instances changed the template: every pod would be replaced")
	}
	od.Spec.RunDigest = "new-model"
	tmpl := buildDeployment(od, mustPrepare(t, od)).Spec.Template
	if tmpl.Annotations[AnnotationTemplate] == base || tmpl.Annotations[AnnotationRun] != "new-model" {
		t.Errorf("a new model or code (run digest) left the template as it was: %v", tmpl.Annotations)
	}
	base = tmpl.Annotations[AnnotationTemplate]
	od.Spec.Image = "other:1"
	if got := buildDeployment(od, mustPrepare(t, od)).Spec.Template.Annotations[AnnotationTemplate]; got == base {
		t.Error("another image left the template's digest as it was")
	}
}

func TestReplicas(t *testing.T) {
	for _, c := range []struct {
		name  string
		scale v1alpha1.Scale
		st    int32
		want  int32
	}{
		{"default", v1alpha1.Scale{Type: api.ScaleDefault, InstanceCount: 3}, 0, 3},
		{"default, no count", v1alpha1.Scale{Type: api.ScaleDefault}, 0, 1},
		{"default ignores the autoscaler", v1alpha1.Scale{Type: api.ScaleDefault, InstanceCount: 2}, 5, 2},
		{"autoscaled starts at min", v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 2, MaxInstances: 5}, 0, 2},
		{"autoscaled follows the status", v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 5}, 4, 4},
		{"autoscaled within max", v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 3}, 4, 3},
		{"autoscaled within min", v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 2, MaxInstances: 3}, 1, 2},
		{"autoscaled min 0 is 1", v1alpha1.Scale{Type: api.ScaleTargetUtilization, MaxInstances: 3}, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			od := testDeployment()
			od.Spec.Scale, od.Status.Replicas = c.scale, c.st
			if got := desiredReplicas(od); got != c.want {
				t.Errorf("replicas %d, want %d", got, c.want)
			}
		})
	}
}

func TestResources(t *testing.T) {
	for _, c := range []struct {
		name     string
		own      *v1alpha1.Resources
		want     corev1.ResourceRequirements
		wantErrs []string
	}{
		{name: "the instance type's", want: corev1.ResourceRequirements{Requests: res("500m", "1Gi"), Limits: res("2", "4Gi")}},
		{
			name: "each amount given replaces the instance type's",
			own:  &v1alpha1.Resources{Requests: map[string]string{"cpu": "1"}, Limits: map[string]string{"memory": "2Gi"}},
			want: corev1.ResourceRequirements{Requests: res("1", "1Gi"), Limits: res("2", "2Gi")},
		},
		{
			name: "a lower limit takes the instance type's request down",
			own:  &v1alpha1.Resources{Limits: map[string]string{"cpu": "250m"}},
			want: corev1.ResourceRequirements{Requests: res("250m", "1Gi"), Limits: res("250m", "4Gi")},
		},
		{
			name:     "above the instance type's limits",
			own:      &v1alpha1.Resources{Requests: map[string]string{"cpu": "3"}, Limits: map[string]string{"memory": "8Gi"}},
			wantErrs: []string{"resources.requests.cpu 3 is above instance type small's limit 2", "resources.limits.memory 8Gi is above instance type small's limit 4Gi"},
		},
		{
			name:     "own request above own limit",
			own:      &v1alpha1.Resources{Requests: map[string]string{"cpu": "1500m"}, Limits: map[string]string{"cpu": "1"}},
			wantErrs: []string{"resources.requests.cpu 1500m is above the limit 1"},
		},
		{
			name:     "not a quantity",
			own:      &v1alpha1.Resources{Requests: map[string]string{"cpu": "lots"}},
			wantErrs: []string{`resources.requests.cpu "lots"`},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := instanceResources("small", testTypes[0].Spec, c.own)
			if len(c.wantErrs) > 0 {
				for _, w := range c.wantErrs {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err %v, want one saying %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("resources %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPrepareRefusals(t *testing.T) {
	od := testDeployment()
	od.Spec.InstanceType = "huge"
	_, err := prepare(od, "outpost:test", testTypes)
	var bad invalidSpec
	if !asInvalid(err, &bad) || bad.reason != ReasonInstanceTypeNotFound || !strings.Contains(err.Error(), `"huge" not found`) ||
		!strings.Contains(err.Error(), "small") {
		t.Errorf("unknown instance type: %v", err)
	}
	od = testDeployment()
	od.Spec.InstanceType = "" // the built-in default
	if _, err := prepare(od, "outpost:test", testTypes); err != nil {
		t.Errorf("defaultinstancetype: %v", err)
	}
	od.Spec.Image, od.Spec.SecretName = "", ""
	if _, err := prepare(od, "outpost:test", testTypes); !asInvalid(err, &bad) || bad.reason != ReasonInvalidSpec ||
		!strings.Contains(err.Error(), "no image") || !strings.Contains(err.Error(), "no secretName") {
		t.Errorf("no image nor secret: %v", err)
	}
}

func asInvalid(err error, bad *invalidSpec) bool {
	b, ok := err.(invalidSpec)
	*bad = b
	return ok
}
