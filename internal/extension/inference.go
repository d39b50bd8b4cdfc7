package extension

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	inferencev1alpha1 "outpost.dev/outpost/api/inference/v1alpha1"
)

// Names of the inference CustomResourceDefinitions.
const (
	OnlineEndpointCRD   = inferencev1alpha1.EndpointResource + "." + inferencev1alpha1.Group
	OnlineDeploymentCRD = inferencev1alpha1.DeploymentResource + "." + inferencev1alpha1.Group
)

const (
	inferenceOperatorName = "inference-operator"
	inferenceProbePort    = 8081

	// InferenceProbeFlag is the flag of `outpost extension
	// inference-operator` that takes the address of its /healthz endpoint.
	InferenceProbeFlag = "health-probe-bind-address"

	// RouterApp is the app label of the router's pods: the Service selects
	// them by it, and the inference operator finds them by it to read their
	// load.
	RouterApp = routerName
	// RouterAdminPort serves the router's /readyz, /metrics and /load.
	RouterAdminPort = 9002

	routerCPU, routerMemory = "50m", "64Mi"
)

// routerArgs is the command line of `outpost extension inference-router`.
func routerArgs() []string {
	return []string{"extension", "inference-router",
		"--namespace=" + Namespace,
		"--http-port=" + strconv.Itoa(routerHTTPPort),
		"--https-port=" + strconv.Itoa(routerHTTPSPort),
		"--admin-port=" + strconv.Itoa(RouterAdminPort),
	}
}

// inferenceOperator renders the operator that runs OnlineDeployments as
// apps/v1 Deployments and autoscales them from the routers' load.
func (r *renderer) inferenceOperator() {
	name := inferenceOperatorName
	r.serviceAccount(name)
	read := []string{"get", "list", "watch"}
	r.clusterRole(name,
		rbacv1.PolicyRule{APIGroups: []string{inferencev1alpha1.Group},
			Resources: []string{inferencev1alpha1.DeploymentResource, inferencev1alpha1.DeploymentResource + "/status"},
			Verbs:     []string{"get", "list", "watch", "update", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{inferencev1alpha1.Group}, Resources: []string{inferencev1alpha1.EndpointResource}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		// The deployments' pods, for their status; the router's pods in
		// azureml, for their load.
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{amlarcv1alpha1.Group}, Resources: []string{amlarcv1alpha1.Resource}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	)
	r.component(component{
		name: name,
		args: []string{"extension", "inference-operator", fmt.Sprintf("--%s=$(POD_IP):%d", InferenceProbeFlag, inferenceProbePort)},
		// The deployments' install init container runs the operator's own
		// image, so that their scoring server is the operator's version.
		env:  []corev1.EnvVar{{Name: "OUTPOST_IMAGE", Value: r.o.Image}},
		port: corev1.ContainerPort{Name: "healthz", ContainerPort: inferenceProbePort, Protocol: corev1.ProtocolTCP},
		cpu:  "20m", memory: "64Mi",
		// One autoscaler: two would each count their own below-target
		// polls and scale down twice as fast.
		strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
	})
}

// routerRBAC lets the router read what it routes: endpoints, deployments,
// their instances, the endpoints' keys (it reads only Secrets labelled
// with an endpoint, and its TLS Secret) and its settings.
func (r *renderer) routerRBAC() {
	read := []string{"get", "list", "watch"}
	r.clusterRole(routerName,
		rbacv1.PolicyRule{APIGroups: []string{inferencev1alpha1.Group},
			Resources: []string{inferencev1alpha1.EndpointResource, inferencev1alpha1.DeploymentResource}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
	)
	rbac := rbacv1.SchemeGroupVersion.String()
	r.rbac = append(r.rbac,
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "Role"},
			ObjectMeta: r.meta(routerName),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: read}},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "RoleBinding"},
			ObjectMeta: r.meta(routerName),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: routerName},
			Subjects:   accountSubject(routerName),
		},
	)
}

// routerDeployment renders azureml-fe's pods, which the Service
// selects by its app label. mode is what of the router's settings it
// reads only when it starts (HTTP or HTTPS, and the TLS Secret's name):
// a digest of it on the pod template rolls the replicas when it changes.
func (r *renderer) routerDeployment(mode map[string]string) {
	field := func(env, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
		}}
	}
	pod := corev1.PodSpec{
		ServiceAccountName: routerName,
		Containers: []corev1.Container{{
			Name:  routerName,
			Image: r.o.Image,
			Args:  routerArgs(),
			Env: []corev1.EnvVar{
				field("POD_NAME", "metadata.name"), field("POD_NAMESPACE", "metadata.namespace"), field("POD_IP", "status.podIP"),
			},
			Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: routerHTTPPort, Protocol: corev1.ProtocolTCP},
				{Name: "https", ContainerPort: routerHTTPSPort, Protocol: corev1.ProtocolTCP},
				{Name: "admin", ContainerPort: RouterAdminPort, Protocol: corev1.ProtocolTCP},
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/readyz", Port: intstr.FromString("admin"),
				}},
				PeriodSeconds: 2,
			},
			LivenessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromString("admin"),
				}},
				PeriodSeconds: 10, FailureThreshold: 3,
			},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(routerCPU),
				corev1.ResourceMemory: resource.MustParse(routerMemory),
			}},
		}},
	}
	if r.routerReplicas() > 1 {
		// HA replicas on different nodes, so that one node's loss leaves
		// the others serving; preferred, so that a cluster short of nodes
		// still runs them all.
		pod.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": routerName}},
					TopologyKey:   corev1.LabelHostname,
				},
			}},
		}}
	}
	tmpl := r.podTemplate(routerName, pod)
	tmpl.Annotations = map[string]string{AnnotationRouterMode: digest(mode)}
	r.workloads = append(r.workloads, &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: r.meta(routerName),
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(r.routerReplicas())),
			// A new replica serves before an old one goes: the router is
			// the endpoints' only way in.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: new(intstr.FromInt32(0)), MaxSurge: new(intstr.FromInt32(1)),
			}},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": routerName}},
			Template: tmpl,
		},
	})
}

// AnnotationRouterMode is on the router's pod template: a digest of the
// settings the router reads when it starts.
const AnnotationRouterMode = "outpost.dev/router-mode"

// digest is a short, stable digest of m.
func digest(m map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(h, "%q=%q\n", k, m[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// labelValuePattern is a deployment or endpoint name as a label value: the
// router and the operator select pods by these names.
const labelValuePattern = `^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`

func labelValue(desc string) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "string", Description: desc, Pattern: labelValuePattern, MaxLength: new(int64(63))}
}

func bounded(desc string, min, max float64) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int32", Description: desc, Minimum: &min, Maximum: &max}
}

// onlineEndpointCRD is the endpoint resource the agent creates and the
// router serves (api/inference/v1alpha1).
func (r *renderer) onlineEndpointCRD() *apiextensionsv1.CustomResourceDefinition {
	spec := apiextensionsv1.JSONSchemaProps{
		Type:     "object",
		Required: []string{"endpointId", "name", "authMode", "secretName"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"endpointId": str("The workspace's resource id of the endpoint."),
			"name":       labelValue("The endpoint's name in its scoring URI (/api/v1/endpoint/{name}/score); unique in the cluster."),
			"authMode": {Type: "string", Description: "key or aml_token.",
				Enum: []apiextensionsv1.JSON{{Raw: []byte(`"key"`)}, {Raw: []byte(`"aml_token"`)}}},
			"secretName": {Type: "string", Description: "The Secret with the endpoint's keys.", MinLength: new(int64(1))},
			"traffic": {
				Type:        "object",
				Description: "Percent of the requests each deployment gets: they sum to 100, or are all 0.",
				// Bounds the cost of the rule below.
				MaxProperties:        new(int64(64)),
				AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: new(bounded("", 0, 100))},
				XValidations: []apiextensionsv1.ValidationRule{{
					Rule:    "self.all(k, self[k] == 0) || self.map(k, self[k]).sum() == 100",
					Message: "traffic must sum to 100, or be 0 for every deployment",
				}},
			},
		},
	}
	status := apiextensionsv1.JSONSchemaProps{
		Type:       "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{"observedGeneration": {Type: "integer", Format: "int64"}},
	}
	return r.crd(crdDef{
		name: OnlineEndpointCRD, group: inferencev1alpha1.Group, version: inferencev1alpha1.Version,
		scope:  apiextensionsv1.NamespaceScoped,
		plural: inferencev1alpha1.EndpointResource, singular: "onlineendpoint", kind: inferencev1alpha1.EndpointKind, shortName: "oe",
		spec: spec, status: &status,
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			{Name: "Endpoint", Type: "string", JSONPath: ".spec.name"},
			{Name: "Auth", Type: "string", JSONPath: ".spec.authMode"},
			{Name: "Traffic", Type: "string", JSONPath: ".spec.traffic"},
			{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
		},
	})
}

// probeSchema is a probe's settings; 0 takes Kubernetes' default.
func probeSchema(desc string, rules ...apiextensionsv1.ValidationRule) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{
		Type:        "object",
		Description: desc,
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"periodSeconds":       integer("", 0),
			"initialDelaySeconds": integer("", 0),
			"timeoutSeconds":      integer("", 0),
			"successThreshold":    integer("", 0),
			"failureThreshold":    integer("", 0),
		},
		XValidations: rules,
	}
}

func routeSchema(desc string) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{
		Type:        "object",
		Description: desc,
		Required:    []string{"port", "path"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"port": bounded("", 1, 65535),
			"path": {Type: "string", Pattern: "^/", MaxLength: new(int64(2048))},
		},
	}
}

// deploymentResources are a deployment's own requests and limits: cpu,
// memory and nvidia.com/gpu, any of them.
func deploymentResources() apiextensionsv1.JSONSchemaProps {
	m := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{
			Type:                 "object",
			Description:          desc,
			MaxProperties:        new(int64(16)),
			AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: new(quantityValue())},
			XValidations: []apiextensionsv1.ValidationRule{
				{Rule: "self.all(k, k in ['cpu', 'memory', 'nvidia.com/gpu'])", Message: "may name only 'cpu', 'memory', 'nvidia.com/gpu'"},
				{Rule: "!('nvidia.com/gpu' in self) || string(self['nvidia.com/gpu']).matches('^[0-9]+$')",
					Message: "nvidia.com/gpu must be a whole number of GPUs"},
			},
		}
	}
	return apiextensionsv1.JSONSchemaProps{
		Type:        "object",
		Description: "Requests and limits of each instance, over its instance type's.",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"requests": m("What the scheduler reserves for each instance."),
			"limits":   m("What each instance may use."),
		},
		XValidations: []apiextensionsv1.ValidationRule{notAbove("cpu"), notAbove("memory")},
	}
}

// onlineDeploymentCRD is the deployment resource the agent creates and the
// inference operator runs (api/inference/v1alpha1).
func (r *renderer) onlineDeploymentCRD() *apiextensionsv1.CustomResourceDefinition {
	spec := apiextensionsv1.JSONSchemaProps{
		Type:     "object",
		Required: []string{"deploymentId", "name", "endpoint", "image", "scale", "request", "secretName"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"deploymentId": str("The workspace's resource id of the deployment."),
			"name":         labelValue("The deployment's name."),
			"endpoint":     labelValue("Its endpoint's name (an OnlineEndpoint's spec.name)."),
			"image":        {Type: "string", Description: "The environment's image; the scoring server runs in it.", MinLength: new(int64(1))},
			"instanceType": str("An InstanceType's name; defaultinstancetype when empty."),
			"resources":    deploymentResources(),
			"scale": {
				Type:     "object",
				Required: []string{"type"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"type": {Type: "string", Description: "default (instanceCount instances) or target_utilization (autoscaled).",
						Enum: []apiextensionsv1.JSON{{Raw: []byte(`"default"`)}, {Raw: []byte(`"target_utilization"`)}}},
					"instanceCount":            integer("Instances of scale type default.", 0),
					"minInstances":             integer("", 0),
					"maxInstances":             integer("", 0),
					"pollingIntervalSeconds":   integer("How often the autoscaler reads the routers' load.", 0),
					"targetUtilizationPercent": bounded("", 0, 100),
				},
				XValidations: []apiextensionsv1.ValidationRule{{
					Rule: "self.type != 'target_utilization' || " +
						"(has(self.maxInstances) && self.maxInstances >= 1 && (!has(self.minInstances) || self.minInstances <= self.maxInstances))",
					Message: "target_utilization needs maxInstances of at least 1 and not below minInstances",
				}},
			},
			"request": {
				Type: "object",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"timeoutMs":                integer("", 1),
					"maxConcurrentPerInstance": integer("", 1),
					"maxQueueWaitMs":           integer("", 0),
				},
			},
			"liveness": probeSchema("Liveness probe settings (seconds).", apiextensionsv1.ValidationRule{
				// The API server refuses any other on a pod: a liveness
				// probe that passes once is alive.
				Rule: "!has(self.successThreshold) || self.successThreshold <= 1", Message: "a liveness probe's successThreshold must be 1",
			}),
			"readiness": probeSchema("Readiness probe settings (seconds)."),
			"inferenceConfig": {
				Type:        "object",
				Description: "A custom container's routes; without it Outpost's scoring server runs.",
				Required:    []string{"liveness", "readiness", "scoring"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"liveness":  routeSchema(""),
					"readiness": routeSchema(""),
					"scoring":   routeSchema(""),
				},
			},
			"secretName":   {Type: "string", Description: "The Secret with the deployment's credentials.", MinLength: new(int64(1))},
			"runDigest":    str("Names what the pods fetch from the workspace (model, code): a new one rolls the pods."),
			"modelName":    str("The model's name: a custom container's AZUREML_MODEL_DIR is azureml-models/<name>/<version>."),
			"modelVersion": str("The model's version."),
			"environmentVariables": {
				Type:                 "object",
				Description:          "The deployment's environment variables, which a custom container gets.",
				AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: new(str(""))},
			},
		},
	}
	status := apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"phase":              str("Creating, Succeeded or Failed."),
			"reason":             str(""),
			"message":            str(""),
			"replicas":           {Type: "integer", Format: "int32", Description: "Instances asked for now (the autoscaler moves it)."},
			"readyReplicas":      {Type: "integer", Format: "int32"},
			"lastScaleTime":      {Type: "string", Format: "date-time"},
			"observedGeneration": {Type: "integer", Format: "int64"},
		},
	}
	return r.crd(crdDef{
		name: OnlineDeploymentCRD, group: inferencev1alpha1.Group, version: inferencev1alpha1.Version,
		scope:  apiextensionsv1.NamespaceScoped,
		plural: inferencev1alpha1.DeploymentResource, singular: "onlinedeployment", kind: inferencev1alpha1.DeploymentKind, shortName: "od",
		spec: spec, status: &status,
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			{Name: "Endpoint", Type: "string", JSONPath: ".spec.endpoint"},
			{Name: "Deployment", Type: "string", JSONPath: ".spec.name"},
			{Name: "Phase", Type: "string", JSONPath: ".status.phase"},
			{Name: "Ready", Type: "integer", JSONPath: ".status.readyReplicas"},
			{Name: "Replicas", Type: "integer", JSONPath: ".status.replicas"},
			{Name: "Reason", Type: "string", JSONPath: ".status.reason"},
			{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
		},
	})
}
