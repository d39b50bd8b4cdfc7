package extension

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
)

const testExt = "arcml-extension"

var testOpts = RenderOptions{Name: testExt, Image: "outpost:v0.1.0", NodeCount: 1}

// The objects every install has, in apply order.
var (
	baseHead = []string{
		"Namespace/azureml",
		"CustomResourceDefinition/instancetypes.amlarc.azureml.com",
	}
	reporterSA = "ServiceAccount/cluster-status-reporter"
	// inferenceHead: inference only, no TrainingJobs.
	inferenceHead = head(false, true)
	// trainingHead: training only.
	trainingHead = head(true, false)
	// bothHead: training and inference.
	bothHead = head(true, true)
	baseRBAC = []string{
		"ClusterRole/" + testExt + "-cluster-status-reporter",
		"ClusterRoleBinding/" + testExt + "-cluster-status-reporter",
		"Role/cluster-status-reporter",
		"RoleBinding/cluster-status-reporter",
	}
	reporterID   = "Deployment/cluster-status-reporter"
	trainingRBAC = []string{
		"ClusterRole/" + testExt + "-training-operator",
		"ClusterRoleBinding/" + testExt + "-training-operator",
	}
	operatorID    = "Deployment/training-operator"
	inferenceRBAC = []string{
		"ClusterRole/" + testExt + "-inference-operator",
		"ClusterRoleBinding/" + testExt + "-inference-operator",
		"ClusterRole/" + testExt + "-azureml-fe",
		"ClusterRoleBinding/" + testExt + "-azureml-fe",
		"Role/azureml-fe",
		"RoleBinding/azureml-fe",
	}
	inferenceOperatorID = "Deployment/inference-operator"
	routerID            = "Deployment/azureml-fe"
	inferenceWorkloads  = []string{inferenceOperatorID, routerID}
)

// head is what every install has before its RBAC, in apply order: the
// namespace, the CRDs, the service accounts.
func head(training, inference bool) []string {
	out := slices.Clone(baseHead)
	if training {
		out = append(out, "CustomResourceDefinition/trainingjobs.training.outpost.dev")
	}
	if inference {
		out = append(out, "CustomResourceDefinition/onlineendpoints.inference.outpost.dev",
			"CustomResourceDefinition/onlinedeployments.inference.outpost.dev")
	}
	out = append(out, reporterSA)
	if training {
		out = append(out, "ServiceAccount/training-operator")
	}
	if inference {
		out = append(out, "ServiceAccount/inference-operator", "ServiceAccount/azureml-fe")
	}
	return out
}

func objList(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p)
		case []string:
			out = append(out, p...)
		}
	}
	return out
}

func objIDs(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

func findObj(t *testing.T, objs []*unstructured.Unstructured, id string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind()+"/"+o.GetName() == id {
			return o
		}
	}
	t.Fatalf("%s not rendered; got %v", id, objIDs(objs))
	return nil
}

// typed converts u into T, failing on fields T does not have, which is how a
// misspelt or misplaced field would show.
func asTyped[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, v, true); err != nil {
		t.Fatalf("%s/%s is not a well-formed %T: %v", u.GetKind(), u.GetName(), *v, err)
	}
	return v
}

func routerService(t *testing.T, objs []*unstructured.Unstructured) *corev1.Service {
	return asTyped[corev1.Service](t, findObj(t, objs, "Service/azureml-fe"))
}

func routerConfig(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	return asTyped[corev1.ConfigMap](t, findObj(t, objs, "ConfigMap/"+RouterConfigName)).Data
}

func wantServicePort(t *testing.T, svc *corev1.Service, name string, port, target int32) {
	t.Helper()
	want := []corev1.ServicePort{{Name: name, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}}
	if !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("service ports = %+v, want %+v", svc.Spec.Ports, want)
	}
}

var (
	testCertPEM = Secret("-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n")
	testKeyPEM  = Secret("-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n")
)

func httpInference() Settings {
	return Settings{EnableInference: true, AllowInsecureConnections: true, InferenceRouterServiceType: LoadBalancer, InferenceRouterHA: true}
}

func withSettings(s Settings, f func(*Settings)) Settings {
	f(&s)
	return s
}

type renderCase struct {
	name  string
	s     Settings
	o     RenderOptions // testOpts when zero
	want  []string      // Kind/name of every object, in order
	check func(t *testing.T, objs []*unstructured.Unstructured)
}

var renderCases = []renderCase{
	{
		name: "training only",
		s:    Settings{EnableTraining: true},
		want: objList(trainingHead, baseRBAC, trainingRBAC, reporterID, operatorID),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			d := asTyped[appsv1.Deployment](t, findObj(t, objs, reporterID))
			if d.Namespace != Namespace || *d.Spec.Replicas != 1 {
				t.Errorf("namespace %q replicas %d", d.Namespace, *d.Spec.Replicas)
			}
			pod := d.Spec.Template.Spec
			if pod.ServiceAccountName != "cluster-status-reporter" {
				t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
			}
			if pod.NodeSelector != nil {
				t.Errorf("nodeSelector = %v without nodeSelector settings", pod.NodeSelector)
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers", len(pod.Containers))
			}
			c := pod.Containers[0]
			if c.Image != "outpost:v0.1.0" {
				t.Errorf("image = %q", c.Image)
			}
			if want := []string{"extension", "status-reporter", "--listen=$(POD_IP):8080"}; !slices.Equal(c.Args, want) {
				t.Errorf("args = %q, want %q", c.Args, want)
			}
			if len(c.Command) != 0 {
				t.Errorf("command = %q: the outpost image's entrypoint must run", c.Command)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
					t.Errorf("env %s is not a fieldRef", e.Name)
					continue
				}
				env[e.Name] = e.ValueFrom.FieldRef.FieldPath
			}
			if want := map[string]string{"POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}; !reflect.DeepEqual(env, want) {
				t.Errorf("env = %v, want %v", env, want)
			}
			if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
				t.Errorf("ports = %+v", c.Ports)
			}
			p := c.ReadinessProbe
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromString("http") || p.PeriodSeconds != 2 {
				t.Errorf("readinessProbe = %+v", p)
			}
			if cpu, mem := c.Resources.Requests.Cpu().String(), c.Resources.Requests.Memory().String(); cpu != "10m" || mem != "32Mi" {
				t.Errorf("requests cpu %s memory %s", cpu, mem)
			}
			if got := d.Spec.Selector.MatchLabels; !reflect.DeepEqual(got, map[string]string{"app": "cluster-status-reporter"}) {
				t.Errorf("selector = %v", got)
			}

			cr := asTyped[rbacv1.ClusterRole](t, findObj(t, objs, baseRBAC[0]))
			want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes", "pods"}, Verbs: []string{"get", "list", "watch"}}}
			if !reflect.DeepEqual(cr.Rules, want) {
				t.Errorf("cluster role rules = %+v", cr.Rules)
			}
			crb := asTyped[rbacv1.ClusterRoleBinding](t, findObj(t, objs, baseRBAC[1]))
			subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "cluster-status-reporter", Namespace: Namespace}}
			if crb.RoleRef.Name != cr.Name || crb.RoleRef.Kind != "ClusterRole" || !reflect.DeepEqual(crb.Subjects, subject) {
				t.Errorf("cluster role binding = %+v", crb)
			}
			role := asTyped[rbacv1.Role](t, findObj(t, objs, baseRBAC[2]))
			want = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update", "patch"}}}
			if !reflect.DeepEqual(role.Rules, want) {
				t.Errorf("role rules = %+v", role.Rules)
			}
			rb := asTyped[rbacv1.RoleBinding](t, findObj(t, objs, baseRBAC[3]))
			if rb.RoleRef.Name != role.Name || rb.RoleRef.Kind != "Role" || !reflect.DeepEqual(rb.Subjects, subject) {
				t.Errorf("role binding = %+v", rb)
			}
		},
	},
	{
		name: "inference over HTTP behind a load balancer",
		s:    httpInference(),
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			svc := routerService(t, objs)
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				t.Errorf("type = %s", svc.Spec.Type)
			}
			if !reflect.DeepEqual(svc.Spec.Selector, map[string]string{"app": "azureml-fe"}) {
				t.Errorf("selector = %v", svc.Spec.Selector)
			}
			if len(svc.Annotations) != 0 {
				t.Errorf("annotations = %v on a public load balancer", svc.Annotations)
			}
			wantServicePort(t, svc, "http", 80, 9001)
			want := map[string]string{"serviceType": "LoadBalancer", "https": "false", "replicas": "1"}
			if got := routerConfig(t, objs); !reflect.DeepEqual(got, want) {
				t.Errorf("router config = %v, want %v", got, want)
			}
		},
	},
	{
		name: "HTTPS with PEMs",
		s: Settings{EnableInference: true, EnableTraining: true, InferenceRouterServiceType: LoadBalancer,
			SSLCertPEM: testCertPEM, SSLKeyPEM: testKeyPEM, SSLCname: "scoring.example.com"},
		want: objList(bothHead, baseRBAC, trainingRBAC, inferenceRBAC, "Secret/azureml-fe-tls", "ConfigMap/azureml-fe-config",
			reporterID, operatorID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			sec := asTyped[corev1.Secret](t, findObj(t, objs, "Secret/azureml-fe-tls"))
			if sec.Type != corev1.SecretTypeTLS || string(sec.Data["tls.crt"]) != string(testCertPEM) ||
				string(sec.Data["tls.key"]) != string(testKeyPEM) || len(sec.Data) != 2 {
				t.Errorf("secret type %s data %q", sec.Type, sec.Data)
			}
			wantServicePort(t, routerService(t, objs), "https", 443, 9443)
			want := map[string]string{"serviceType": "LoadBalancer", "https": "true", "replicas": "1",
				"cname": "scoring.example.com", "tlsSecret": "azureml-fe-tls"}
			if got := routerConfig(t, objs); !reflect.DeepEqual(got, want) {
				t.Errorf("router config = %v, want %v", got, want)
			}
		},
	},
	{
		name: "HTTPS with an existing secret",
		s:    Settings{EnableInference: true, InferenceRouterServiceType: LoadBalancer, SSLSecret: "my-tls"},
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantServicePort(t, routerService(t, objs), "https", 443, 9443)
			if got := routerConfig(t, objs)["tlsSecret"]; got != "my-tls" {
				t.Errorf("tlsSecret = %q", got)
			}
		},
	},
	{
		name: "NodePort",
		s:    withSettings(httpInference(), func(s *Settings) { s.InferenceRouterServiceType = NodePort }),
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			svc := routerService(t, objs)
			if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort != 0 {
				t.Errorf("type %s nodePort %d: want NodePort, the port left to the cluster", svc.Spec.Type, svc.Spec.Ports[0].NodePort)
			}
			if got := routerConfig(t, objs)["serviceType"]; got != "NodePort" {
				t.Errorf("serviceType = %q", got)
			}
		},
	},
	{
		name: "ClusterIP",
		s:    withSettings(httpInference(), func(s *Settings) { s.InferenceRouterServiceType = ClusterIP }),
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if typ := routerService(t, objs).Spec.Type; typ != corev1.ServiceTypeClusterIP {
				t.Errorf("type = %s", typ)
			}
		},
	},
	{
		name: "internal Azure load balancer",
		s:    withSettings(httpInference(), func(s *Settings) { s.InternalLoadBalancerProvider = "azure" }),
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			want := map[string]string{"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}
			if got := routerService(t, objs).Annotations; !reflect.DeepEqual(got, want) {
				t.Errorf("annotations = %v, want %v", got, want)
			}
		},
	},
	{
		name: "HA on one node runs one router",
		s:    httpInference(),
		o:    RenderOptions{Name: testExt, Image: "outpost:v0.1.0", NodeCount: 1},
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if got := routerConfig(t, objs)["replicas"]; got != "1" {
				t.Errorf("replicas = %s, want 1", got)
			}
		},
	},
	{
		name: "HA on three nodes runs three routers",
		s:    httpInference(),
		o:    RenderOptions{Name: testExt, Image: "outpost:v0.1.0", NodeCount: 3},
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if got := routerConfig(t, objs)["replicas"]; got != "3" {
				t.Errorf("replicas = %s, want 3", got)
			}
		},
	},
	{
		name: "no HA on many nodes runs one router",
		s:    withSettings(httpInference(), func(s *Settings) { s.InferenceRouterHA = false }),
		o:    RenderOptions{Name: testExt, Image: "outpost:v0.1.0", NodeCount: 10},
		want: objList(inferenceHead, baseRBAC, inferenceRBAC, "ConfigMap/azureml-fe-config", reporterID, inferenceWorkloads, "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if got := routerConfig(t, objs)["replicas"]; got != "1" {
				t.Errorf("replicas = %s, want 1", got)
			}
		},
	},
	{
		name: "device plugin when asked",
		s:    Settings{EnableTraining: true, InstallNvidiaDevicePlugin: true, NodeSelector: map[string]string{"gpu": "true"}},
		want: objList(trainingHead, baseRBAC, trainingRBAC, reporterID, operatorID, "DaemonSet/nvidia-device-plugin-daemonset"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			ds := asTyped[appsv1.DaemonSet](t, findObj(t, objs, "DaemonSet/nvidia-device-plugin-daemonset"))
			pod := ds.Spec.Template.Spec
			c := pod.Containers[0]
			if c.Image != "nvcr.io/nvidia/k8s-device-plugin:v0.17.0" || !slices.Equal(c.Command, []string{"nvidia-device-plugin"}) {
				t.Errorf("image %q command %q", c.Image, c.Command)
			}
			if len(pod.Volumes) != 1 || pod.Volumes[0].HostPath == nil || pod.Volumes[0].HostPath.Path != "/var/lib/kubelet/device-plugins" {
				t.Errorf("volumes = %+v", pod.Volumes)
			}
			if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != pod.Volumes[0].Name || c.VolumeMounts[0].MountPath != "/var/lib/kubelet/device-plugins" {
				t.Errorf("volumeMounts = %+v", c.VolumeMounts)
			}
			tolerated := false
			for _, tol := range pod.Tolerations {
				tolerated = tolerated || tol.ToleratesTaint(&corev1.Taint{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule})
			}
			if !tolerated {
				t.Errorf("tolerations %+v do not tolerate nvidia.com/gpu:NoSchedule", pod.Tolerations)
			}
		},
	},
	{
		name: "OpenShift, training only",
		s:    Settings{EnableTraining: true, OpenShift: true},
		want: objList(trainingHead, baseRBAC, trainingRBAC, "SecurityContextConstraints/"+testExt+"-azureml", reporterID, operatorID),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantSCCUsers(t, objs, "cluster-status-reporter", "default", "training-operator")
		},
	},
	{
		name: "OpenShift with inference and the device plugin",
		s: withSettings(httpInference(), func(s *Settings) {
			s.OpenShift, s.EnableTraining, s.InstallNvidiaDevicePlugin = true, true, true
		}),
		want: objList(bothHead, baseRBAC, trainingRBAC, inferenceRBAC, "SecurityContextConstraints/"+testExt+"-azureml",
			"ConfigMap/azureml-fe-config", reporterID, operatorID, inferenceWorkloads, "DaemonSet/nvidia-device-plugin-daemonset", "Service/azureml-fe"),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantSCCUsers(t, objs, "azureml-fe", "cluster-status-reporter", "default", "inference-operator", "training-operator")
			scc := findObj(t, objs, "SecurityContextConstraints/"+testExt+"-azureml")
			if scc.GetAPIVersion() != "security.openshift.io/v1" {
				t.Errorf("apiVersion = %s", scc.GetAPIVersion())
			}
			for _, f := range []string{"allowPrivilegedContainer", "allowHostDirVolumePlugin"} {
				if v, _, _ := unstructured.NestedBool(scc.Object, f); !v {
					t.Errorf("%s is not true: the seed grants the privileged SCC", f)
				}
			}
			for _, f := range []string{"runAsUser", "seLinuxContext", "fsGroup", "supplementalGroups"} {
				if v, _, _ := unstructured.NestedString(scc.Object, f, "type"); v != "RunAsAny" {
					t.Errorf("%s.type = %q, want RunAsAny", f, v)
				}
			}
			ds := asTyped[appsv1.DaemonSet](t, findObj(t, objs, "DaemonSet/nvidia-device-plugin-daemonset"))
			if sa := ds.Spec.Template.Spec.ServiceAccountName; sa != "" && sa != "default" {
				t.Errorf("device plugin runs as %q, which the SCC does not list", sa)
			}
		},
	},
}

func wantSCCUsers(t *testing.T, objs []*unstructured.Unstructured, accounts ...string) {
	t.Helper()
	scc := findObj(t, objs, "SecurityContextConstraints/"+testExt+"-azureml")
	users, _, err := unstructured.NestedStringSlice(scc.Object, "users")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, a := range accounts {
		want = append(want, "system:serviceaccount:azureml:"+a)
	}
	if !slices.Equal(users, want) {
		t.Errorf("SCC users = %q, want %q", users, want)
	}
	// Every rendered service account must be granted, or its pods would be
	// refused on OpenShift.
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" && !slices.Contains(users, "system:serviceaccount:azureml:"+o.GetName()) {
			t.Errorf("service account %s is not in the SCC", o.GetName())
		}
	}
}

func mustRender(t *testing.T, c renderCase) []*unstructured.Unstructured {
	t.Helper()
	o := c.o
	if o == (RenderOptions{}) {
		o = testOpts
	}
	objs, err := Render(c.s, o)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return objs
}

func TestRender(t *testing.T) {
	for _, c := range renderCases {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRender(t, c)
			if got := objIDs(objs); !slices.Equal(got, c.want) {
				t.Errorf("objects:\n got %q\nwant %q", got, c.want)
			}
			if c.check != nil {
				c.check(t, objs)
			}
		})
	}
}

// renderScheme knows every kind Render makes, but OpenShift's.
var renderScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// Every object must decode into its typed struct with no field left over,
// and encode back to the same content: a misspelt field or a wrong type
// would otherwise only surface when the agent applies it.
func TestRenderWellFormed(t *testing.T) {
	for _, c := range renderCases {
		t.Run(c.name, func(t *testing.T) {
			for _, u := range mustRender(t, c) {
				gvk := u.GroupVersionKind()
				if gvk.Group == "security.openshift.io" {
					continue // no typed struct in our dependencies; its content is checked above
				}
				obj, err := renderScheme.New(gvk)
				if err != nil {
					t.Errorf("%s: not a known kind: %v", gvk, err)
					continue
				}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
					t.Errorf("%s/%s: %v", u.GetKind(), u.GetName(), err)
					continue
				}
				back, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
				if err != nil {
					t.Fatal(err)
				}
				delete(back, "status")
				pruneNil(back)
				if !reflect.DeepEqual(back, u.Object) {
					a, _ := json.Marshal(u.Object)
					b, _ := json.Marshal(back)
					t.Errorf("%s/%s does not survive a round trip through %T:\n%s\n%s", u.GetKind(), u.GetName(), obj, a, b)
				}
			}
		})
	}
}

func TestRenderLabelsAndNamespaces(t *testing.T) {
	clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "SecurityContextConstraints": true,
		"CustomResourceDefinition": true}
	for _, c := range renderCases {
		t.Run(c.name, func(t *testing.T) {
			for _, o := range mustRender(t, c) {
				id := o.GetKind() + "/" + o.GetName()
				l := o.GetLabels()
				if l["app.kubernetes.io/managed-by"] != "outpost" || l["outpost.dev/extension"] != testExt {
					t.Errorf("%s labels = %v", id, l)
				}
				ns := o.GetNamespace()
				switch {
				case clusterScoped[o.GetKind()] && ns != "":
					t.Errorf("%s is cluster-scoped but has namespace %q", id, ns)
				case !clusterScoped[o.GetKind()] && ns != Namespace:
					t.Errorf("%s namespace = %q, want %s", id, ns, Namespace)
				}
				// A CRD's name is its resource and group; nothing else can name it.
				if clusterScoped[o.GetKind()] && o.GetKind() != "Namespace" && o.GetKind() != "CustomResourceDefinition" &&
					!strings.HasPrefix(o.GetName(), testExt+"-") {
					t.Errorf("cluster-scoped %s is not prefixed with the extension name", id)
				}
			}
		})
	}
}

func TestRenderNodeSelectorOnEveryPod(t *testing.T) {
	sel := map[string]string{"kubernetes.io/os": "linux", "pool": "ml"}
	for _, c := range renderCases {
		t.Run(c.name, func(t *testing.T) {
			c.s.NodeSelector = sel
			objs := mustRender(t, c)
			pods := 0
			for _, o := range objs {
				tmpl, found, err := unstructured.NestedMap(o.Object, "spec", "template")
				if err != nil || !found {
					continue
				}
				pods++
				var pt corev1.PodTemplateSpec
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pt); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(pt.Spec.NodeSelector, sel) {
					t.Errorf("%s/%s nodeSelector = %v, want %v", o.GetKind(), o.GetName(), pt.Spec.NodeSelector, sel)
				}
				l := pt.Labels
				if l["app.kubernetes.io/managed-by"] != "outpost" || l["outpost.dev/extension"] != testExt || l["app"] == "" {
					t.Errorf("%s/%s pod labels = %v", o.GetKind(), o.GetName(), l)
				}
			}
			if want := len(Components(objs)); pods != want {
				t.Errorf("%d pod templates for %d components", pods, want)
			}
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	s := withSettings(httpInference(), func(s *Settings) {
		s.EnableTraining, s.OpenShift, s.InstallNvidiaDevicePlugin = true, true, true
		s.NodeSelector = map[string]string{"c": "3", "a": "1", "b": "2"}
	})
	first, err := Render(s, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(first)
	for range 20 {
		again, err := Render(s, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(again); string(got) != string(want) {
			t.Fatalf("Render is not deterministic:\n%s\n%s", want, got)
		}
	}
	// The manifests must not alias the settings: the agent may keep them
	// while the settings change.
	s.NodeSelector["a"] = "changed"
	if got, _ := json.Marshal(first); string(got) != string(want) {
		t.Error("changing Settings.NodeSelector after Render changed the rendered objects")
	}
}

func TestComponents(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Settings
		want []string
	}{
		{"training", Settings{EnableTraining: true}, []string{"cluster-status-reporter", "training-operator"}},
		{"inference", httpInference(), []string{"cluster-status-reporter", "inference-operator", "azureml-fe"}},
		{"device plugin", Settings{EnableTraining: true, InstallNvidiaDevicePlugin: true},
			[]string{"cluster-status-reporter", "training-operator", "nvidia-device-plugin-daemonset"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs, err := Render(c.s, testOpts)
			if err != nil {
				t.Fatal(err)
			}
			if got := Components(objs); !slices.Equal(got, c.want) {
				t.Errorf("Components = %q, want %q", got, c.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Settings
		o    RenderOptions
		want string
	}{
		{"no name", Settings{EnableTraining: true}, RenderOptions{Image: "outpost"}, `extension name ""`},
		{"name not a DNS label", Settings{EnableTraining: true}, RenderOptions{Name: "Arc_ML", Image: "outpost"}, `extension name "Arc_ML"`},
		{"no image", Settings{EnableTraining: true}, RenderOptions{Name: "ml"}, "no outpost image"},
		{"nothing enabled", Settings{}, testOpts, "neither enableTraining nor enableInference"},
		{"inference without TLS or opt-out", Settings{EnableInference: true}, testOpts, "would serve nothing"},
		{"cert without key", Settings{EnableInference: true, SSLCertPEM: testCertPEM}, testOpts, "given together"},
		{"secret and PEM", Settings{EnableInference: true, SSLSecret: "x", SSLCertPEM: testCertPEM, SSLKeyPEM: testKeyPEM}, testOpts, "both as a secret and as PEM"},
		{"unknown service type", withSettings(httpInference(), func(s *Settings) { s.InferenceRouterServiceType = "Ingress" }), testOpts, `"Ingress"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs, err := Render(c.s, c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if objs != nil {
				t.Errorf("objects returned with an error")
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error shows PEM content: %v", err)
			}
		})
	}
}

func TestRenderFromParse(t *testing.T) {
	// Keys as a user types them; the defaults are Parse's business.
	s, err := Parse(map[string]string{
		"enableTraining": "True", "installNvidiaDevicePlugin": "true",
		"installVolcano": "True", "installPromOp": "False", "nodeSelector.pool": "gpu",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Render(s, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Components(objs), []string{"cluster-status-reporter", "training-operator", "nvidia-device-plugin-daemonset"}; !slices.Equal(got, want) {
		t.Errorf("Components = %q, want %q", got, want)
	}
	if got := Unsupported(s); len(got) != 1 || !strings.HasPrefix(got[0], "installVolcano=True") {
		t.Errorf("Unsupported = %q, want one warning, for installVolcano", got)
	}
}

func TestUnsupported(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Settings
		want []string
	}{
		{"none", Settings{EnableTraining: true, InstallNvidiaDevicePlugin: true}, nil},
		{"volcano", Settings{InstallVolcano: true}, []string{
			"installVolcano=True: Outpost does not deploy Volcano; the training operator places all the pods of a job at once or none of them"}},
		{"all", Settings{InstallPromOp: true, InstallVolcano: true, InstallDcgmExporter: true}, []string{
			"installPromOp=True: ", "installVolcano=True: ", "installDcgmExporter=True: "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Unsupported(c.s)
			if len(got) != len(c.want) {
				t.Fatalf("Unsupported = %q, want %d warnings", got, len(c.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("warning %d = %q, want it to start with %q", i, got[i], c.want[i])
				}
			}
		})
	}
}
