package extension

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Namespace holds every namespaced object of the extension. It is fixed, as
// in the Azure ML extension, because its documentation, its OpenShift service
// account names and users' habits (kubectl get pods -n azureml) all assume it.
const Namespace = "azureml"

// Labels on every rendered object. LabelExtension is how the agent finds what
// an extension owns when it prunes, so it must be on cluster-scoped objects too.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "outpost"
	LabelExtension = "outpost.dev/extension"
)

// The ConfigMap that records how the inference router is to be run, and its
// keys. The router reads it rather than the Settings so that it needs no
// access to the extension's protected settings.
const (
	RouterConfigName = "azureml-fe-config"

	RouterConfigServiceType = "serviceType" // LoadBalancer, NodePort or ClusterIP
	RouterConfigHTTPS       = "https"       // "true" or "false"
	RouterConfigCname       = "cname"       // absent when sslCname was not given
	RouterConfigReplicas    = "replicas"    // decimal
	RouterConfigTLSSecret   = "tlsSecret"   // the kubernetes.io/tls secret; absent without HTTPS
)

const (
	statusReporterName = "cluster-status-reporter"
	statusReporterPort = 8080

	routerName      = "azureml-fe"
	routerTLSSecret = "azureml-fe-tls"
	routerHTTPPort  = 9001
	routerHTTPSPort = 9443

	devicePluginName  = "nvidia-device-plugin-daemonset"
	devicePluginImage = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"
	devicePluginDir   = "/var/lib/kubelet/device-plugins"

	// haReplicas is what the Azure ML extension runs with inferenceRouterHA;
	// it wants as many nodes, so that the replicas do not share a node and
	// fail together.
	haReplicas = 3
)

// RenderOptions are the facts about the install that are not settings.
type RenderOptions struct {
	// Name is the extension's name: it labels every object and prefixes the
	// names of cluster-scoped ones, as {EXTENSION-NAME} does in the seed.
	Name string
	// Image is the outpost image, e.g. "outpost:v0.1.0".
	Image string
	// NodeCount is the number of nodes in the cluster. The router runs one
	// replica when it is below 3 even with inferenceRouterHA, as the real CLI
	// does: more replicas than nodes would only pile up on the same node.
	NodeCount int
}

// Render returns the manifests of the extension for s, in apply order:
// namespace, custom resource definitions, service accounts, RBAC, secrets
// and configuration, workloads, services. Only components that do real work in Outpost are rendered; see
// Unsupported for the settings that ask for more.
//
// s is expected to come from Parse; Render still refuses the combinations
// that would produce objects the API server rejects or that do nothing.
func Render(s Settings, o RenderOptions) ([]*unstructured.Unstructured, error) {
	if err := checkRender(s, o); err != nil {
		return nil, err
	}
	r := renderer{s: s, o: o}
	// InstanceTypes are for training and inference alike (checkRender
	// ensures one of them is on).
	r.crds = append(r.crds, r.instanceTypeCRD())
	r.statusReporter()
	if s.EnableTraining {
		r.crds = append(r.crds, r.trainingJobCRD())
		r.trainingOperator()
	}
	if s.EnableInference {
		r.crds = append(r.crds, r.onlineEndpointCRD(), r.onlineDeploymentCRD())
		r.inferenceOperator()
		r.router()
	}
	if s.InstallNvidiaDevicePlugin {
		r.devicePlugin()
	}

	typed := []runtime.Object{r.namespace()}
	typed = append(typed, r.crds...)
	typed = append(typed, r.accounts...)
	typed = append(typed, r.rbac...)
	out, err := unstructuredAll(typed)
	if err != nil {
		return nil, err
	}
	if s.OpenShift {
		// Pods are checked against SCCs when they are created, so it has to
		// exist before any workload.
		out = append(out, r.scc())
	}
	rest := append(append(append([]runtime.Object{}, r.config...), r.workloads...), r.services...)
	more, err := unstructuredAll(rest)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

// Components returns the names of the workloads (Deployments and DaemonSets)
// among objs, in order: the extension is installed when all of them are ready.
func Components(objs []*unstructured.Unstructured) []string {
	var names []string
	for _, o := range objs {
		if o.GroupVersionKind().Group == "apps" && (o.GetKind() == "Deployment" || o.GetKind() == "DaemonSet") {
			names = append(names, o.GetName())
		}
	}
	return names
}

// Unsupported returns a warning for each setting that is True but asks for a
// component Outpost does not deploy yet. Render ignores these settings rather
// than fail, so that commands written for the Azure ML extension (where
// installPromOp and installVolcano default to True) keep working.
func Unsupported(s Settings) []string {
	var w []string
	if s.InstallPromOp {
		w = append(w, keyInstallPromOp+"=True: Outpost does not deploy the Prometheus operator yet; "+
			"job and endpoint metrics arrive with the metrics component")
	}
	if s.InstallVolcano {
		w = append(w, keyInstallVolcano+"=True: Outpost does not deploy Volcano; "+
			"the training operator places all the pods of a job at once or none of them (gang admission) in its stead")
	}
	if s.InstallDcgmExporter {
		w = append(w, keyInstallDcgmExporter+"=True: Outpost does not deploy the DCGM exporter yet; "+
			"GPU metrics arrive with the metrics component")
	}
	return w
}

func checkRender(s Settings, o RenderOptions) error {
	var errs []error
	if msgs := validation.IsDNS1123Label(o.Name); len(msgs) > 0 {
		// A DNS label is what fits both a label value and the prefix of an
		// object name.
		errs = append(errs, fmt.Errorf("extension name %q: %s", o.Name, explain(msgs)))
	}
	if o.Image == "" {
		errs = append(errs, errors.New("no outpost image to run the extension's components with"))
	}
	if !s.EnableTraining && !s.EnableInference {
		errs = append(errs, fmt.Errorf("neither %s nor %s is True", keyEnableTraining, keyEnableInference))
	}
	if (len(s.SSLCertPEM) > 0) != (len(s.SSLKeyPEM) > 0) {
		errs = append(errs, errors.New("the inference router's certificate and key must be given together"))
	}
	if s.SSLSecret != "" && len(s.SSLCertPEM) > 0 {
		errs = append(errs, errors.New("the inference router's certificate is given both as a secret and as PEM"))
	}
	if s.EnableInference {
		if !s.HTTPS() && !s.AllowInsecureConnections {
			errs = append(errs, errors.New("the inference router has neither TLS nor allowInsecureConnections, so it would serve nothing"))
		}
		switch s.InferenceRouterServiceType {
		case "", LoadBalancer, NodePort, ClusterIP:
		default:
			errs = append(errs, fmt.Errorf("unknown inference router service type %q", s.InferenceRouterServiceType))
		}
	}
	return errors.Join(errs...)
}

// renderer collects typed objects by apply stage.
type renderer struct {
	s Settings
	o RenderOptions

	crds      []runtime.Object
	accounts  []runtime.Object
	rbac      []runtime.Object
	config    []runtime.Object
	workloads []runtime.Object
	services  []runtime.Object
}

func (r *renderer) labels(extra map[string]string) map[string]string {
	l := map[string]string{LabelManagedBy: ManagedBy, LabelExtension: r.o.Name}
	maps.Copy(l, extra)
	return l
}

func (r *renderer) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: r.labels(nil)}
}

// clusterMeta names cluster-scoped objects after the extension, so that they
// cannot collide with another tool's objects of the same purpose.
func (r *renderer) clusterMeta(suffix string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: r.o.Name + "-" + suffix, Labels: r.labels(nil)}
}

func (r *renderer) namespace() *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: r.labels(nil)},
	}
}

func (r *renderer) serviceAccount(name string) {
	r.accounts = append(r.accounts, &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: r.meta(name),
	})
}

// podTemplate labels the pods like their workload, so that
// kubectl get pods -l outpost.dev/extension=<name> finds them, and applies
// the user's node selector, which is meant for every component.
func (r *renderer) podTemplate(app string, spec corev1.PodSpec) corev1.PodTemplateSpec {
	if len(r.s.NodeSelector) > 0 {
		spec.NodeSelector = maps.Clone(r.s.NodeSelector)
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: r.labels(map[string]string{"app": app})},
		Spec:       spec,
	}
}

// accountSubject is the service account a component runs as.
func accountSubject(name string) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: Namespace}}
}

// clusterRole grants the component name's service account rules across
// the cluster: a ClusterRole and its binding, named after the extension.
func (r *renderer) clusterRole(name string, rules ...rbacv1.PolicyRule) {
	rbac := rbacv1.SchemeGroupVersion.String()
	r.rbac = append(r.rbac,
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "ClusterRole"},
			ObjectMeta: r.clusterMeta(name),
			Rules:      rules,
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "ClusterRoleBinding"},
			ObjectMeta: r.clusterMeta(name),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.o.Name + "-" + name},
			Subjects:   accountSubject(name),
		},
	)
}

// component is one of the extension's own controllers: a single pod of
// the outpost image running as its own service account, ready when GET
// /healthz on its port answers.
type component struct {
	name string
	args []string // `outpost extension ...`; $(POD_IP) is there to use
	// env comes before POD_NAMESPACE and POD_IP, which every component has.
	env         []corev1.EnvVar
	port        corev1.ContainerPort
	cpu, memory string // what it requests
	strategy    appsv1.DeploymentStrategy
}

// component renders c's Deployment (its service account and RBAC are the
// caller's).
func (r *renderer) component(c component) {
	field := func(env, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
		}}
	}
	pod := corev1.PodSpec{
		ServiceAccountName: c.name,
		Containers: []corev1.Container{{
			Name:  c.name,
			Image: r.o.Image,
			Args:  c.args,
			// The Outpost node sets POD_IP on its own; other kubelets do
			// not, and $(POD_IP) in args only expands when env defines it.
			Env:   append(slices.Clip(c.env), field("POD_NAMESPACE", "metadata.namespace"), field("POD_IP", "status.podIP")),
			Ports: []corev1.ContainerPort{c.port},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromString(c.port.Name),
				}},
				// installState waits for the status reporter's probe; a
				// short period keeps "Installed" from lagging the first
				// report by long.
				PeriodSeconds: 2,
			},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(c.cpu),
				corev1.ResourceMemory: resource.MustParse(c.memory),
			}},
		}},
	}
	r.workloads = append(r.workloads, &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: r.meta(c.name),
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Strategy: c.strategy,
			// The selector is immutable, so it holds only the label that
			// will never change.
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": c.name}},
			Template: r.podTemplate(c.name, pod),
		},
	})
}

func (r *renderer) statusReporter() {
	name := statusReporterName
	r.serviceAccount(name)
	r.clusterRole(name, rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"nodes", "pods"}, Verbs: []string{"get", "list", "watch"},
	})
	rbac := rbacv1.SchemeGroupVersion.String()
	r.rbac = append(r.rbac,
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "Role"},
			ObjectMeta: r.meta(name),
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update", "patch"},
			}},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "RoleBinding"},
			ObjectMeta: r.meta(name),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   accountSubject(name),
		},
	)
	r.component(component{
		name: name,
		args: []string{"extension", "status-reporter", fmt.Sprintf("--listen=$(POD_IP):%d", statusReporterPort)},
		port: corev1.ContainerPort{Name: "http", ContainerPort: statusReporterPort, Protocol: corev1.ProtocolTCP},
		cpu:  "10m", memory: "32Mi",
	})
}

// routerReplicas follows the real CLI: HA asks for three replicas, but only a
// cluster with room to spread them gets them.
func (r *renderer) routerReplicas() int {
	if r.s.InferenceRouterHA && r.o.NodeCount >= haReplicas {
		return haReplicas
	}
	return 1
}

func (r *renderer) router() {
	s := r.s
	r.serviceAccount(routerName)
	r.routerRBAC()

	typ := s.InferenceRouterServiceType
	if typ == "" {
		typ = LoadBalancer
	}
	cfg := map[string]string{
		RouterConfigServiceType: string(typ),
		RouterConfigHTTPS:       strconv.FormatBool(s.HTTPS()),
		RouterConfigReplicas:    strconv.Itoa(r.routerReplicas()),
	}
	if s.SSLCname != "" {
		cfg[RouterConfigCname] = s.SSLCname
	}

	port := corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(routerHTTPPort), Protocol: corev1.ProtocolTCP}
	if s.HTTPS() {
		port = corev1.ServicePort{Name: "https", Port: 443, TargetPort: intstr.FromInt32(routerHTTPSPort), Protocol: corev1.ProtocolTCP}
		secret := s.SSLSecret
		if secret == "" {
			secret = routerTLSSecret
			r.config = append(r.config, &corev1.Secret{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
				ObjectMeta: r.meta(routerTLSSecret),
				Type:       corev1.SecretTypeTLS,
				Data: map[string][]byte{
					corev1.TLSCertKey:       slices.Clone([]byte(s.SSLCertPEM)),
					corev1.TLSPrivateKeyKey: slices.Clone([]byte(s.SSLKeyPEM)),
				},
			})
		}
		cfg[RouterConfigTLSSecret] = secret
	}
	r.config = append(r.config, &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: r.meta(RouterConfigName),
		Data:       cfg,
	})
	r.routerDeployment(map[string]string{RouterConfigHTTPS: cfg[RouterConfigHTTPS], RouterConfigTLSSecret: cfg[RouterConfigTLSSecret]})

	meta := r.meta(routerName)
	if typ == LoadBalancer && s.InternalLoadBalancerProvider == "azure" {
		meta.Annotations = map[string]string{"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}
	}
	r.services = append(r.services, &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceType(typ),
			Selector: map[string]string{"app": routerName},
			Ports:    []corev1.ServicePort{port},
		},
	})
}

func (r *renderer) devicePlugin() {
	const app = "nvidia-device-plugin"
	pod := corev1.PodSpec{
		// The plugin only talks to the kubelet over its socket.
		AutomountServiceAccountToken: new(false),
		// As in NVIDIA's own manifest: without the plugin, GPU pods cannot be
		// scheduled, so it must not be the first thing evicted.
		PriorityClassName: "system-node-critical",
		Tolerations: []corev1.Toleration{{
			Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
		}},
		Containers: []corev1.Container{{
			Name:    app,
			Image:   devicePluginImage,
			Command: []string{"nvidia-device-plugin"},
			// On a node without GPUs the plugin would otherwise exit and
			// crash-loop, failing the install of a mixed cluster.
			Env: []corev1.EnvVar{{Name: "FAIL_ON_INIT_ERROR", Value: "false"}},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "device-plugin", MountPath: devicePluginDir}},
		}},
		Volumes: []corev1.Volume{{
			Name: "device-plugin",
			VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: devicePluginDir, Type: new(corev1.HostPathDirectory),
			}},
		}},
	}
	r.workloads = append(r.workloads, &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: r.meta(devicePluginName),
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template:       r.podTemplate(app, pod),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
		},
	})
}

// scc grants the extension's service accounts what the seed asks OpenShift
// users to grant by hand (oc edit scc privileged). A separate object owned by
// the extension does the same without editing a cluster-wide default that
// other workloads rely on, and disappears with the extension. Only accounts
// whose components are rendered are listed, plus default, which the device
// plugin runs as.
func (r *renderer) scc() *unstructured.Unstructured {
	users := []string{"system:serviceaccount:" + Namespace + ":default"}
	for _, a := range r.accounts {
		users = append(users, "system:serviceaccount:"+Namespace+":"+a.(*corev1.ServiceAccount).Name)
	}
	slices.Sort(users)
	runAsAny := func() map[string]any { return map[string]any{"type": "RunAsAny"} }
	star := func() []any { return []any{"*"} }
	labels := map[string]any{}
	for k, v := range r.labels(nil) {
		labels[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.openshift.io/v1",
		"kind":       "SecurityContextConstraints",
		"metadata": map[string]any{
			"name":   r.o.Name + "-" + Namespace,
			"labels": labels,
		},
		// The fields of OpenShift's built-in privileged SCC.
		"allowHostDirVolumePlugin": true,
		"allowHostIPC":             true,
		"allowHostNetwork":         true,
		"allowHostPID":             true,
		"allowHostPorts":           true,
		"allowPrivilegeEscalation": true,
		"allowPrivilegedContainer": true,
		"allowedCapabilities":      star(),
		"allowedUnsafeSysctls":     star(),
		"readOnlyRootFilesystem":   false,
		"seccompProfiles":          star(),
		"volumes":                  star(),
		"fsGroup":                  runAsAny(),
		"runAsUser":                runAsAny(),
		"seLinuxContext":           runAsAny(),
		"supplementalGroups":       runAsAny(),
		"users":                    toAny(users),
		"groups":                   []any{},
	}}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func unstructuredAll(objs []runtime.Object) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("render %T: %w", obj, err)
		}
		// The empty status and the null creationTimestamps of a typed object
		// are noise in an applied manifest, and a status there would make the
		// agent's field manager claim fields the controllers own.
		delete(m, "status")
		pruneNil(m)
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

func pruneNil(m map[string]any) {
	for _, k := range slices.Collect(maps.Keys(m)) {
		switch v := m[k].(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			pruneNil(v)
		case []any:
			for _, e := range v {
				if em, ok := e.(map[string]any); ok {
					pruneNil(em)
				}
			}
		}
	}
}
