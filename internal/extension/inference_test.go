package extension

import (
	"reflect"
	"slices"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

func TestInferenceOperator(t *testing.T) {
	objs := mustRender(t, renderCase{s: httpInference()})
	d := asTyped[appsv1.Deployment](t, findObj(t, objs, inferenceOperatorID))
	if d.Namespace != Namespace || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("namespace %q replicas %d strategy %q, want azureml, 1, Recreate", d.Namespace, *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "inference-operator" || len(pod.Containers) != 1 {
		t.Fatalf("serviceAccountName %q, %d containers", pod.ServiceAccountName, len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != testOpts.Image || len(c.Command) != 0 {
		t.Errorf("image %q command %q: want the outpost image and its entrypoint", c.Image, c.Command)
	}
	if want := []string{"extension", "inference-operator", "--health-probe-bind-address=$(POD_IP):8081"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	wantEnv := map[string]string{"OUTPOST_IMAGE": testOpts.Image, "POD_NAMESPACE": "field:metadata.namespace", "POD_IP": "field:status.podIP"}
	if env := envOf(c); !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("env = %v, want %v", env, wantEnv)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromString("healthz") {
		t.Fatalf("readinessProbe = %+v", p)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "healthz" || c.Ports[0].ContainerPort != 8081 {
		t.Errorf("ports = %+v: the probe's port must be the one the operator listens on", c.Ports)
	}

	cr := asTyped[rbacv1.ClusterRole](t, findObj(t, objs, inferenceRBAC[0]))
	read := []string{"get", "list", "watch"}
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{"inference.outpost.dev"}, Resources: []string{"onlinedeployments", "onlinedeployments/status"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{"inference.outpost.dev"}, Resources: []string{"onlineendpoints"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
		{APIGroups: []string{"amlarc.azureml.com"}, Resources: []string{"instancetypes"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	if !reflect.DeepEqual(cr.Rules, wantRules) {
		t.Errorf("rules = %+v\nwant %+v", cr.Rules, wantRules)
	}
	crb := asTyped[rbacv1.ClusterRoleBinding](t, findObj(t, objs, inferenceRBAC[1]))
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "inference-operator", Namespace: Namespace}}
	if crb.RoleRef.Name != cr.Name || crb.RoleRef.Kind != "ClusterRole" || !reflect.DeepEqual(crb.Subjects, subject) {
		t.Errorf("cluster role binding = %+v", crb)
	}
}

func TestRouterDeployment(t *testing.T) {
	for _, c := range []struct {
		name     string
		s        Settings
		nodes    int
		replicas int32
	}{
		{"one node", httpInference(), 1, 1},
		{"HA on three nodes", httpInference(), 3, 3},
		{"no HA on three nodes", withSettings(httpInference(), func(s *Settings) { s.InferenceRouterHA = false }), 3, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRender(t, renderCase{s: c.s, o: RenderOptions{Name: testExt, Image: testOpts.Image, NodeCount: c.nodes}})
			d := asTyped[appsv1.Deployment](t, findObj(t, objs, routerID))
			if *d.Spec.Replicas != c.replicas {
				t.Errorf("replicas = %d, want %d", *d.Spec.Replicas, c.replicas)
			}
			if got := routerConfig(t, objs)["replicas"]; got != strconv.Itoa(int(*d.Spec.Replicas)) {
				t.Errorf("ConfigMap replicas %s, Deployment %d: they must agree", got, *d.Spec.Replicas)
			}
			// The Service and the operator's load polling find the pods by
			// their app label.
			svc := routerService(t, objs)
			for k, v := range svc.Spec.Selector {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("pod labels %v do not match the Service's selector %v", d.Spec.Template.Labels, svc.Spec.Selector)
				}
			}
			if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, map[string]string{"app": "azureml-fe"}) {
				t.Errorf("selector = %v", d.Spec.Selector.MatchLabels)
			}
			if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1 {
				t.Errorf("strategy = %+v: a replica must be ready before another goes", d.Spec.Strategy)
			}
			pod := d.Spec.Template.Spec
			if pod.ServiceAccountName != "azureml-fe" || len(pod.Containers) != 1 {
				t.Fatalf("serviceAccountName %q, %d containers", pod.ServiceAccountName, len(pod.Containers))
			}
			if spread := pod.Affinity != nil && pod.Affinity.PodAntiAffinity != nil; spread != (c.replicas > 1) {
				t.Errorf("anti-affinity %+v with %d replicas", pod.Affinity, c.replicas)
			}
			ctr := pod.Containers[0]
			wantArgs := []string{"extension", "inference-router", "--namespace=azureml", "--http-port=9001", "--https-port=9443", "--admin-port=9002"}
			if ctr.Image != testOpts.Image || len(ctr.Command) != 0 || !slices.Equal(ctr.Args, wantArgs) {
				t.Errorf("image %q command %q args %q, want args %q", ctr.Image, ctr.Command, ctr.Args, wantArgs)
			}
			wantPorts := []corev1.ContainerPort{
				{Name: "http", ContainerPort: 9001, Protocol: corev1.ProtocolTCP},
				{Name: "https", ContainerPort: 9443, Protocol: corev1.ProtocolTCP},
				{Name: "admin", ContainerPort: 9002, Protocol: corev1.ProtocolTCP},
			}
			if !reflect.DeepEqual(ctr.Ports, wantPorts) {
				t.Errorf("ports = %+v", ctr.Ports)
			}
			// The Service's target ports are container ports.
			for _, sp := range svc.Spec.Ports {
				if !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == sp.TargetPort.IntVal }) {
					t.Errorf("service port %+v targets no container port", sp)
				}
			}
			p := ctr.ReadinessProbe
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port != intstr.FromString("admin") {
				t.Errorf("readinessProbe = %+v", p)
			}
			if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromString("admin") {
				t.Errorf("livenessProbe = %+v", p)
			}
			wantEnv := map[string]string{"POD_NAME": "field:metadata.name", "POD_NAMESPACE": "field:metadata.namespace", "POD_IP": "field:status.podIP"}
			if env := envOf(ctr); !reflect.DeepEqual(env, wantEnv) {
				t.Errorf("env = %v, want %v", env, wantEnv)
			}
			if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() {
				t.Errorf("requests = %v: the router must not be best-effort", ctr.Resources.Requests)
			}
		})
	}
}

func TestRouterRBAC(t *testing.T) {
	objs := mustRender(t, renderCase{s: httpInference()})
	read := []string{"get", "list", "watch"}
	cr := asTyped[rbacv1.ClusterRole](t, findObj(t, objs, inferenceRBAC[2]))
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{"inference.outpost.dev"}, Resources: []string{"onlineendpoints", "onlinedeployments"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
	}
	if !reflect.DeepEqual(cr.Rules, want) {
		t.Errorf("cluster role rules = %+v\nwant %+v", cr.Rules, want)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "azureml-fe", Namespace: Namespace}}
	crb := asTyped[rbacv1.ClusterRoleBinding](t, findObj(t, objs, inferenceRBAC[3]))
	if crb.RoleRef.Name != cr.Name || !reflect.DeepEqual(crb.Subjects, subject) {
		t.Errorf("cluster role binding = %+v", crb)
	}
	role := asTyped[rbacv1.Role](t, findObj(t, objs, inferenceRBAC[4]))
	if want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: read}}; !reflect.DeepEqual(role.Rules, want) {
		t.Errorf("role rules = %+v", role.Rules)
	}
	rb := asTyped[rbacv1.RoleBinding](t, findObj(t, objs, inferenceRBAC[5]))
	if rb.RoleRef.Name != role.Name || rb.RoleRef.Kind != "Role" || !reflect.DeepEqual(rb.Subjects, subject) {
		t.Errorf("role binding = %+v", rb)
	}
}

func TestNoInferenceWithoutInference(t *testing.T) {
	objs := mustRender(t, renderCase{s: Settings{EnableTraining: true}})
	for _, o := range objs {
		switch o.GetName() {
		case "inference-operator", "azureml-fe", OnlineEndpointCRD, OnlineDeploymentCRD:
			t.Errorf("%s/%s rendered without enableInference", o.GetKind(), o.GetName())
		}
	}
}

func TestInferenceCRDs(t *testing.T) {
	objs := mustRender(t, renderCase{s: httpInference()})
	for _, c := range []struct {
		name    string
		names   apiextensionsv1.CustomResourceDefinitionNames
		columns []column
	}{
		{
			name: OnlineEndpointCRD,
			names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "onlineendpoints", Singular: "onlineendpoint", Kind: "OnlineEndpoint",
				ListKind: "OnlineEndpointList", ShortNames: []string{"oe"}},
			columns: []column{
				{"Endpoint", "string", ".spec.name"}, {"Auth", "string", ".spec.authMode"}, {"Traffic", "string", ".spec.traffic"},
				{"Age", "date", ".metadata.creationTimestamp"},
			},
		},
		{
			name: OnlineDeploymentCRD,
			names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "onlinedeployments", Singular: "onlinedeployment", Kind: "OnlineDeployment",
				ListKind: "OnlineDeploymentList", ShortNames: []string{"od"}},
			columns: []column{
				{"Endpoint", "string", ".spec.endpoint"}, {"Deployment", "string", ".spec.name"}, {"Phase", "string", ".status.phase"},
				{"Ready", "integer", ".status.readyReplicas"}, {"Replicas", "integer", ".status.replicas"},
				{"Reason", "string", ".status.reason"}, {"Age", "date", ".metadata.creationTimestamp"},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := crd(t, objs, c.name)
			if got.Spec.Group != "inference.outpost.dev" || got.Spec.Scope != apiextensionsv1.NamespaceScoped || !reflect.DeepEqual(got.Spec.Names, c.names) {
				t.Errorf("group %s scope %s names %+v", got.Spec.Group, got.Spec.Scope, got.Spec.Names)
			}
			v := got.Spec.Versions[0]
			if v.Name != "v1alpha1" || !v.Served || !v.Storage || v.Subresources == nil || v.Subresources.Status == nil {
				t.Errorf("version %+v: want v1alpha1, served, stored, with a status subresource", v)
			}
			if got := columns(v); !reflect.DeepEqual(got, c.columns) {
				t.Errorf("printer columns = %+v\nwant %+v", got, c.columns)
			}
		})
	}
}

// The router reads whether it serves HTTPS, and from which Secret, when it
// starts: changing either rolls its pods; the replica count does not.
func TestRouterRollsOnModeChange(t *testing.T) {
	mode := func(s Settings, nodes int) string {
		t.Helper()
		objs := mustRender(t, renderCase{s: s, o: RenderOptions{Name: testExt, Image: testOpts.Image, NodeCount: nodes}})
		d := asTyped[appsv1.Deployment](t, findObj(t, objs, routerID))
		m := d.Spec.Template.Annotations[AnnotationRouterMode]
		if m == "" {
			t.Fatalf("no %s annotation on the router's pod template", AnnotationRouterMode)
		}
		return m
	}
	http := mode(httpInference(), 1)
	if got := mode(httpInference(), 3); got != http {
		t.Errorf("three replicas instead of one changed the pod template (%s -> %s)", http, got)
	}
	https := withSettings(httpInference(), func(s *Settings) { s.SSLCertPEM, s.SSLKeyPEM = testCertPEM, testKeyPEM })
	if got := mode(https, 1); got == http {
		t.Error("HTTP -> HTTPS left the router's pod template as it was")
	}
	other := withSettings(httpInference(), func(s *Settings) { s.SSLSecret = "my-tls" })
	if a, b := mode(other, 1), mode(https, 1); a == b {
		t.Error("another TLS Secret left the router's pod template as it was")
	}
}
