package extension

import (
	"reflect"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestTrainingOperator(t *testing.T) {
	objs := mustRender(t, renderCase{s: Settings{EnableTraining: true}})
	d := asTyped[appsv1.Deployment](t, findObj(t, objs, operatorID))
	if d.Namespace != Namespace || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("namespace %q replicas %d strategy %q, want azureml, 1, Recreate", d.Namespace, *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "training-operator" || len(pod.Containers) != 1 {
		t.Fatalf("serviceAccountName %q, %d containers", pod.ServiceAccountName, len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != testOpts.Image || len(c.Command) != 0 {
		t.Errorf("image %q command %q: want the outpost image and its entrypoint", c.Image, c.Command)
	}
	if want := []string{"extension", "training-operator", "--health-probe-bind-address=$(POD_IP):8081"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		default:
			env[e.Name] = e.Value
		}
	}
	wantEnv := map[string]string{"OUTPOST_IMAGE": testOpts.Image, "POD_NAMESPACE": "field:metadata.namespace", "POD_IP": "field:status.podIP"}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("env = %v, want %v", env, wantEnv)
	}
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromString("healthz") {
		t.Fatalf("readinessProbe = %+v", p)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "healthz" || c.Ports[0].ContainerPort != 8081 {
		t.Errorf("ports = %+v: the probe's port must be the one the operator listens on", c.Ports)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("requests = %v: the operator must not be best-effort", c.Resources.Requests)
	}

	cr := asTyped[rbacv1.ClusterRole](t, findObj(t, objs, trainingRBAC[0]))
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{"training.outpost.dev"}, Resources: []string{"trainingjobs", "trainingjobs/status"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"amlarc.azureml.com"}, Resources: []string{"instancetypes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
	}
	if !reflect.DeepEqual(cr.Rules, wantRules) {
		t.Errorf("rules = %+v\nwant %+v", cr.Rules, wantRules)
	}
	crb := asTyped[rbacv1.ClusterRoleBinding](t, findObj(t, objs, trainingRBAC[1]))
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "training-operator", Namespace: Namespace}}
	if crb.RoleRef.Name != cr.Name || crb.RoleRef.Kind != "ClusterRole" || !reflect.DeepEqual(crb.Subjects, subject) {
		t.Errorf("cluster role binding = %+v", crb)
	}
}

func TestNoTrainingWithoutTraining(t *testing.T) {
	objs := mustRender(t, renderCase{s: httpInference()})
	for _, o := range objs {
		if o.GetName() == "training-operator" || o.GetName() == TrainingJobCRD {
			t.Errorf("%s/%s rendered without enableTraining", o.GetKind(), o.GetName())
		}
	}
	findObj(t, objs, "CustomResourceDefinition/"+InstanceTypeCRD) // inference picks instance types too
}

func crd(t *testing.T, objs []*unstructured.Unstructured, name string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	return asTyped[apiextensionsv1.CustomResourceDefinition](t, findObj(t, objs, "CustomResourceDefinition/"+name))
}

type column struct{ name, typ, path string }

func columns(v apiextensionsv1.CustomResourceDefinitionVersion) []column {
	var out []column
	for _, c := range v.AdditionalPrinterColumns {
		out = append(out, column{c.Name, c.Type, c.JSONPath})
	}
	return out
}

func TestCRDs(t *testing.T) {
	objs := mustRender(t, renderCase{s: Settings{EnableTraining: true}})
	for _, c := range []struct {
		name       string
		group      string
		scope      apiextensionsv1.ResourceScope
		names      apiextensionsv1.CustomResourceDefinitionNames
		columns    []column
		withStatus bool
	}{
		{
			name: InstanceTypeCRD, group: "amlarc.azureml.com", scope: apiextensionsv1.ClusterScoped,
			names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "instancetypes", Singular: "instancetype", Kind: "InstanceType", ListKind: "InstanceTypeList", ShortNames: []string{"it"}},
			columns: []column{
				{"Node Selector", "string", ".spec.nodeSelector"},
				{"CPU", "string", ".spec.resources.limits.cpu"},
				{"GPU", "string", `.spec.resources.limits.nvidia\.com/gpu`},
				{"Memory", "string", ".spec.resources.limits.memory"},
				{"Age", "date", ".metadata.creationTimestamp"},
			},
		},
		{
			name: TrainingJobCRD, group: "training.outpost.dev", scope: apiextensionsv1.NamespaceScoped,
			names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "trainingjobs", Singular: "trainingjob", Kind: "TrainingJob", ListKind: "TrainingJobList", ShortNames: []string{"tj"}},
			columns: []column{
				{"Phase", "string", ".status.phase"},
				{"Instances", "integer", ".spec.instanceCount"},
				{"Reason", "string", ".status.reason"},
				{"Age", "date", ".metadata.creationTimestamp"},
			},
			withStatus: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := crd(t, objs, c.name)
			if got.Annotations[AnnotationOnRemove] != OnRemoveKeep {
				t.Errorf("annotations = %v: the agent would delete users' objects with the extension", got.Annotations)
			}
			if got.Spec.Group != c.group || got.Spec.Scope != c.scope || !reflect.DeepEqual(got.Spec.Names, c.names) {
				t.Errorf("group %s scope %s names %+v", got.Spec.Group, got.Spec.Scope, got.Spec.Names)
			}
			if len(got.Spec.Versions) != 1 {
				t.Fatalf("%d versions", len(got.Spec.Versions))
			}
			v := got.Spec.Versions[0]
			if v.Name != "v1alpha1" || !v.Served || !v.Storage || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				t.Errorf("version %+v", v)
			}
			if got := columns(v); !reflect.DeepEqual(got, c.columns) {
				t.Errorf("printer columns = %+v\nwant %+v", got, c.columns)
			}
			if hasStatus := v.Subresources != nil && v.Subresources.Status != nil; hasStatus != c.withStatus {
				t.Errorf("status subresource = %v, want %v", hasStatus, c.withStatus)
			}
		})
	}
}
