package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/scoring"
	"outpost.dev/outpost/internal/training"
	"outpost.dev/outpost/internal/wrapper"
)

// The layout of a deployment's pods, which the scoring server (outpost
// score serve) and `outpost score fetch` rely on.
const (
	// Root is where the pod's own volume is mounted: the model
	// (azureml-models/<name>/<version>) and the code go there, as under
	// Azure ML's /var/azureml-app.
	Root = scoring.DefaultRoot
	// ModelsDir holds the models under Root.
	ModelsDir = Root + "/azureml-models"

	VolumeName = "azureml-app"
	// FetchName is the init container that fetches a custom container's
	// model (outpost score fetch).
	FetchName = "fetch"
	// ContainerName is the container that serves requests.
	ContainerName = "inference-server"

	// EnvModelDir is where the model's files are, as Azure ML sets it.
	EnvModelDir = "AZUREML_MODEL_DIR"
	// EnvOutpostImage is the operator's environment variable naming the
	// outpost image, which the install and fetch init containers run.
	EnvOutpostImage = training.EnvOutpostImage
)

// Kubernetes' defaults for a probe's settings left at 0.
const (
	defaultPeriod           = 10
	defaultTimeout          = 1
	defaultSuccessThreshold = 1
	defaultFailureThreshold = 3
)

// Reasons of a deployment's status besides the kubelet's own waiting
// reasons (ImagePullBackOff, ErrImagePull, CreateContainerConfigError,
// ...), which pass through.
const (
	ReasonInitFailed           = "InitFailed"
	ReasonContainerFailed      = "ContainerFailed"
	ReasonUnschedulable        = "Unschedulable"
	ReasonProbeFailed          = "ProbeFailed"
	ReasonCrashLoop            = "CrashLoopBackOff"
	ReasonInstallFailed        = "InstallFailed"
	ReasonFetchFailed          = "ModelFetchFailed"
	ReasonInstanceTypeNotFound = "InstanceTypeNotFound"
	ReasonInvalidSpec          = "InvalidSpec"
	ReasonNameConflict         = "NameConflict"
	ReasonDeploymentRejected   = "DeploymentRejected"
)

// invalidSpec is a deployment the operator cannot run as written; Reason
// says how (InstanceTypeNotFound or InvalidSpec).
type invalidSpec struct {
	reason string
	err    error
}

func (e invalidSpec) Error() string { return e.err.Error() }

// plan is what a deployment's pods are made of besides its spec.
type plan struct {
	image        string // the outpost image, for the install and fetch init containers
	wrapperKey   string // its binary's sha256; "" for the running binary's
	nodeSelector map[string]string
	resources    corev1.ResourceRequirements
}

// prepare resolves the instance type of od and its resources.
func prepare(od *v1alpha1.OnlineDeployment, image string, its []amlarcv1alpha1.InstanceType) (plan, error) {
	it, err := training.ResolveInstanceType(od.Spec.InstanceType, its)
	if err != nil {
		if training.IsInstanceTypeNotFound(err) {
			return plan{}, invalidSpec{ReasonInstanceTypeNotFound, err}
		}
		return plan{}, invalidSpec{ReasonInvalidSpec, err}
	}
	res, err := instanceResources(od.Spec.InstanceType, it, od.Spec.Resources)
	if err != nil {
		return plan{}, invalidSpec{ReasonInvalidSpec, err}
	}
	var errs []error
	if od.Spec.Image == "" {
		errs = append(errs, errors.New("no image"))
	}
	if od.Spec.SecretName == "" {
		errs = append(errs, errors.New("no secretName"))
	}
	if c := od.Spec.InferenceConfig; c != nil {
		for what, r := range map[string]v1alpha1.Route{"liveness": c.Liveness, "readiness": c.Readiness, "scoring": c.Scoring} {
			if r.Port < 1 || r.Port > 65535 {
				errs = append(errs, fmt.Errorf("inferenceConfig.%s port %d: want 1 to 65535", what, r.Port))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return plan{}, invalidSpec{ReasonInvalidSpec, err}
	}
	return plan{image: image, nodeSelector: maps.Clone(it.NodeSelector), resources: res}, nil
}

// instanceResources are the requests and limits of a deployment's scoring
// container: its instance type's, each amount the deployment gives
// replacing the instance type's. A request the instance type gives above
// a limit the deployment lowers follows that limit down; the deployment's
// own amounts may not exceed the instance type's limits.
func instanceResources(itName string, it amlarcv1alpha1.InstanceTypeSpec, own *v1alpha1.Resources) (corev1.ResourceRequirements, error) {
	out := *it.Resources.DeepCopy()
	if own == nil {
		return out, nil
	}
	if itName == "" {
		itName = training.DefaultInstanceType
	}
	var errs []error
	parse := func(section string, in map[string]string) corev1.ResourceList {
		rl := corev1.ResourceList{}
		for _, k := range slices.Sorted(maps.Keys(in)) {
			q, err := resource.ParseQuantity(in[k])
			if err != nil || q.Sign() < 0 {
				errs = append(errs, fmt.Errorf("resources.%s.%s %q: not a quantity of 0 or more", section, k, in[k]))
				continue
			}
			if lim, ok := it.Resources.Limits[corev1.ResourceName(k)]; ok && q.Cmp(lim) > 0 {
				errs = append(errs, fmt.Errorf("resources.%s.%s %s is above instance type %s's limit %s", section, k, q.String(), itName, lim.String()))
			}
			rl[corev1.ResourceName(k)] = q
		}
		return rl
	}
	reqs, lims := parse("requests", own.Requests), parse("limits", own.Limits)
	if err := errors.Join(errs...); err != nil {
		return corev1.ResourceRequirements{}, err
	}
	if out.Requests == nil {
		out.Requests = corev1.ResourceList{}
	}
	if out.Limits == nil {
		out.Limits = corev1.ResourceList{}
	}
	maps.Copy(out.Requests, reqs)
	maps.Copy(out.Limits, lims)
	for _, name := range slices.Sorted(maps.Keys(out.Requests)) {
		req := out.Requests[name]
		lim, ok := out.Limits[name]
		if !ok || req.Cmp(lim) <= 0 {
			continue
		}
		if _, mine := reqs[name]; mine {
			errs = append(errs, fmt.Errorf("resources.requests.%s %s is above the limit %s", name, req.String(), lim.String()))
			continue
		}
		out.Requests[name] = lim.DeepCopy()
	}
	return out, errors.Join(errs...)
}

// desiredReplicas is how many instances od asks for now: instanceCount
// (at least 1), or, autoscaled, what the autoscaler chose (status.replicas)
// within min and max, starting at min. Never 0: with no instance the
// router has no load to report, and nothing would scale it up again.
func desiredReplicas(od *v1alpha1.OnlineDeployment) int32 {
	s := od.Spec.Scale
	if s.Type != api.ScaleTargetUtilization {
		return max(s.InstanceCount, 1)
	}
	lo, hi := bounds(s)
	if r := od.Status.Replicas; r > 0 {
		return min(max(r, lo), hi)
	}
	return lo
}

// bounds are an autoscaled deployment's min and max instances.
func bounds(s v1alpha1.Scale) (int32, int32) {
	lo := max(s.MinInstances, 1)
	return lo, max(s.MaxInstances, lo)
}

// probeSettings fills in Kubernetes' defaults, so that the template says
// what runs and the status can count the probe's window.
func probeSettings(p v1alpha1.Probe) v1alpha1.Probe {
	if p.PeriodSeconds <= 0 {
		p.PeriodSeconds = defaultPeriod
	}
	if p.TimeoutSeconds <= 0 {
		p.TimeoutSeconds = defaultTimeout
	}
	if p.SuccessThreshold <= 0 {
		p.SuccessThreshold = defaultSuccessThreshold
	}
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = defaultFailureThreshold
	}
	p.InitialDelaySeconds = max(p.InitialDelaySeconds, 0)
	return p
}

func httpProbe(s v1alpha1.Probe, port int32, path string) *corev1.Probe {
	s = probeSettings(s)
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP}},
		InitialDelaySeconds: s.InitialDelaySeconds,
		PeriodSeconds:       s.PeriodSeconds,
		TimeoutSeconds:      s.TimeoutSeconds,
		SuccessThreshold:    s.SuccessThreshold,
		FailureThreshold:    s.FailureThreshold,
	}
}

// routes are where the serving container answers: Outpost's scoring
// server answers liveness and readiness on GET / (200 once init()
// returned) and scores on /score, on ScoringPort; a custom container where
// its inference_config says.
func routes(od *v1alpha1.OnlineDeployment) (liveness, readiness, scoring v1alpha1.Route) {
	if c := od.Spec.InferenceConfig; c != nil {
		return c.Liveness, c.Readiness, c.Scoring
	}
	r := v1alpha1.Route{Port: v1alpha1.ScoringPort, Path: "/"}
	return r, r, v1alpha1.Route{Port: v1alpha1.ScoringPort, Path: "/score"}
}

func podLabels(od *v1alpha1.OnlineDeployment) map[string]string {
	return map[string]string{
		v1alpha1.LabelEndpoint:   od.Spec.Endpoint,
		v1alpha1.LabelDeployment: od.Spec.Name,
		LabelOnlineDeployment:    od.Name,
	}
}

// selector picks a deployment's pods; it is immutable, so it holds only
// the names, which never change for a deployment.
func selector(od *v1alpha1.OnlineDeployment) map[string]string {
	return map[string]string{v1alpha1.LabelEndpoint: od.Spec.Endpoint, v1alpha1.LabelDeployment: od.Spec.Name}
}

func credentials(od *v1alpha1.OnlineDeployment) []corev1.EnvFromSource {
	return []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: od.Spec.SecretName},
	}}}
}

// podTemplate is the pod of every instance of od.
func podTemplate(od *v1alpha1.OnlineDeployment, p plan) corev1.PodTemplateSpec {
	volumes := []corev1.Volume{{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mounts := []corev1.VolumeMount{{Name: VolumeName, MountPath: Root}}
	podName := corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"},
	}}
	liveness, readiness, score := routes(od)
	server := corev1.Container{
		Name:           ContainerName,
		Image:          od.Spec.Image,
		Ports:          []corev1.ContainerPort{{Name: "scoring", ContainerPort: score.Port, Protocol: corev1.ProtocolTCP}},
		Resources:      p.resources,
		LivenessProbe:  httpProbe(od.Spec.Liveness, liveness.Port, liveness.Path),
		ReadinessProbe: httpProbe(od.Spec.Readiness, readiness.Port, readiness.Path),
		// The scoring server writes init()'s traceback there before it
		// exits; the status shows it.
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}
	var inits []corev1.Container
	if od.Spec.InferenceConfig == nil {
		// Outpost's scoring server runs in the environment's image: the
		// install init container brings the outpost binary, as it does to
		// a training job's pods.
		install, wvolumes, wmounts := wrapper.Pod(p.image)
		if p.wrapperKey != "" {
			install, wvolumes, wmounts = wrapper.KeyedPod(p.image, p.wrapperKey)
		}
		inits = append(inits, install)
		volumes = append(volumes, wvolumes...)
		server.Command = []string{wrapper.Path, "score", "serve", "--root", Root}
		server.EnvFrom = credentials(od)
		server.Env = []corev1.EnvVar{podName}
		server.VolumeMounts = append(slices.Clone(mounts), wmounts...)
	} else {
		// A custom container runs its own server, as its image says; only
		// the model comes from the workspace, fetched by the outpost image
		// itself, so that the credential stays out of the user's container.
		inits = append(inits, corev1.Container{
			Name:                     FetchName,
			Image:                    p.image,
			Args:                     []string{"score", "fetch", "--root", Root},
			EnvFrom:                  credentials(od),
			Env:                      []corev1.EnvVar{podName},
			VolumeMounts:             mounts,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		})
		server.VolumeMounts = mounts
		server.Env = []corev1.EnvVar{podName}
		for _, k := range slices.Sorted(maps.Keys(od.Spec.EnvironmentVariables)) {
			server.Env = append(server.Env, corev1.EnvVar{Name: k, Value: od.Spec.EnvironmentVariables[k]})
		}
		if od.Spec.ModelName != "" {
			// After the deployment's own variables: Azure ML's wins, as
			// the scoring server has it.
			server.Env = append(server.Env, corev1.EnvVar{Name: EnvModelDir, Value: path.Join(ModelsDir, od.Spec.ModelName, od.Spec.ModelVersion)})
		}
	}
	spec := corev1.PodSpec{
		NodeSelector: maps.Clone(p.nodeSelector),
		// The scoring server talks to the workspace with the deployment's
		// own credential, never to the cluster's API.
		AutomountServiceAccountToken: new(false),
		EnableServiceLinks:           new(false),
		Volumes:                      volumes,
		InitContainers:               inits,
		Containers:                   []corev1.Container{server},
	}
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: podLabels(od), Annotations: map[string]string{}}, Spec: spec}
	if od.Spec.RunDigest != "" {
		t.Annotations[AnnotationRun] = od.Spec.RunDigest
	}
	t.Annotations[AnnotationTemplate] = templateDigest(t)
	return t
}

// templateDigest is a digest of the template as the operator writes it.
func templateDigest(t corev1.PodTemplateSpec) string {
	data, err := json.Marshal(t)
	if err != nil {
		panic(err) // a PodTemplateSpec always marshals
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// buildDeployment is the apps/v1 Deployment that runs od.
func buildDeployment(od *v1alpha1.OnlineDeployment, p plan) *appsv1.Deployment {
	labels := podLabels(od)
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      DeploymentName(od.Spec.Endpoint, od.Spec.Name),
			Namespace: od.Namespace,
			Labels:    labels,
			// No blockOwnerDeletion: setting it needs update on
			// onlinedeployments/finalizers where
			// OwnerReferencesPermissionEnforcement is on (OpenShift).
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(),
				Kind:       v1alpha1.DeploymentKind,
				Name:       od.Name,
				UID:        od.UID,
				Controller: new(true),
			}},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(desiredReplicas(od)),
			Selector: &metav1.LabelSelector{MatchLabels: selector(od)},
			Template: podTemplate(od, p),
		},
	}
}
