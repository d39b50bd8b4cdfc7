// Package v1alpha1 is the inference custom resources
// (onlineendpoints.inference.outpost.dev and
// onlinedeployments.inference.outpost.dev): a workspace's online endpoints
// and deployments on a cluster. The cluster agent creates them; the
// inference operator runs a deployment's instances; the inference router
// (azureml-fe) routes an endpoint's requests to them.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and version of the resources.
const (
	Group              = "inference.outpost.dev"
	Version            = "v1alpha1"
	EndpointKind       = "OnlineEndpoint"
	EndpointResource   = "onlineendpoints"
	DeploymentKind     = "OnlineDeployment"
	DeploymentResource = "onlinedeployments"
)

// GroupVersion is the API version of the resources.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Labels on everything made for an endpoint or a deployment (the
// deployment's apps/v1 Deployment, its pods, its Secret).
const (
	LabelEndpoint   = "inference.outpost.dev/endpoint"   // the endpoint's name
	LabelDeployment = "inference.outpost.dev/deployment" // the deployment's name
)

// Keys of an endpoint's Secret (OnlineEndpointSpec.SecretName).
const (
	SecretPrimaryKey   = "primaryKey"
	SecretSecondaryKey = "secondaryKey"
	SecretTokenKey     = "tokenKey" // signs aml_tokens
)

// Keys of a deployment's credentials Secret, which its pods get as
// environment variables (as a training job's: the same CA and proxy keys).
const (
	EnvDeploymentURL   = "OUTPOST_DEPLOYMENT_URL"   // the deployment-run API base of this deployment
	EnvDeploymentToken = "OUTPOST_DEPLOYMENT_TOKEN" // its credential
	EnvDeploymentCA    = "OUTPOST_DEPLOYMENT_CA"    // PEM of the workspace's CA
)

// ScoringPort is where Outpost's scoring server listens in an instance
// (azmlinfsrv's port).
const ScoringPort = 5001

// OnlineEndpoint is an endpoint the router serves.
type OnlineEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              OnlineEndpointSpec   `json:"spec"`
	Status            OnlineEndpointStatus `json:"status,omitempty"`
}

// OnlineEndpointSpec is the endpoint as the workspace wants it.
type OnlineEndpointSpec struct {
	// EndpointID is the workspace's resource id of the endpoint.
	EndpointID string `json:"endpointId"`
	// Name is the endpoint's name in the scoring URI
	// (/api/v1/endpoint/{name}/score); unique among the cluster's
	// endpoints.
	Name     string `json:"name"`
	AuthMode string `json:"authMode"` // key, aml_token
	// SecretName is the Secret with the endpoint's keys (Secret* keys).
	SecretName string `json:"secretName"`
	// Traffic maps the endpoint's deployment names to percents.
	Traffic map[string]int32 `json:"traffic,omitempty"`
}

// OnlineEndpointStatus is reserved for what the router observes.
type OnlineEndpointStatus struct {
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// OnlineEndpointList is a list of OnlineEndpoints.
type OnlineEndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OnlineEndpoint `json:"items"`
}

// OnlineDeployment is a deployment the inference operator runs.
type OnlineDeployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              OnlineDeploymentSpec   `json:"spec"`
	Status            OnlineDeploymentStatus `json:"status,omitempty"`
}

// OnlineDeploymentSpec says what to run and how requests reach it.
type OnlineDeploymentSpec struct {
	// DeploymentID is the workspace's resource id of the deployment.
	DeploymentID string `json:"deploymentId"`
	Name         string `json:"name"`     // the deployment's name
	Endpoint     string `json:"endpoint"` // its endpoint's name (OnlineEndpointSpec.Name)
	// Image is the environment's image; the scoring server runs in it
	// (or, with InferenceConfig, its own server does).
	Image        string `json:"image"`
	InstanceType string `json:"instanceType,omitempty"` // defaultinstancetype when empty
	// Resources override the instance type's requests and limits.
	Resources *Resources `json:"resources,omitempty"`
	// Scale: Type default runs InstanceCount instances; target_utilization
	// moves between MinInstances and MaxInstances.
	Scale   Scale   `json:"scale"`
	Request Request `json:"request"`
	// Probes (seconds).
	Liveness  Probe `json:"liveness"`
	Readiness Probe `json:"readiness"`
	// InferenceConfig is a custom container's routes (nil: Outpost's
	// scoring server on ScoringPort).
	InferenceConfig *InferenceConfig `json:"inferenceConfig,omitempty"`
	// SecretName is the Secret with the deployment's credentials (the
	// EnvDeployment* keys).
	SecretName string `json:"secretName"`
	// ModelName and ModelVersion name the model (empty: none): a custom
	// container's AZUREML_MODEL_DIR is azureml-models/<name>/<version>
	// under the pod's /var/azureml-app. EnvironmentVariables are the
	// deployment's, which a custom container gets in its pod (Outpost's
	// scoring server reads both from the deployment-run API).
	ModelName            string            `json:"modelName,omitempty"`
	ModelVersion         string            `json:"modelVersion,omitempty"`
	EnvironmentVariables map[string]string `json:"environmentVariables,omitempty"`
	// RunDigest names what the pods fetch with the credential (the model,
	// the code, the scoring script, the variables: the workspace's
	// DeploymentRun): the operator puts it on the pod template, so that a
	// new model or code rolls the pods.
	RunDigest string `json:"runDigest,omitempty"`
}

// Resources are requests and limits, as Kubernetes quantities.
type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// Scale settings.
type Scale struct {
	Type                     string `json:"type"` // default, target_utilization
	InstanceCount            int32  `json:"instanceCount,omitempty"`
	MinInstances             int32  `json:"minInstances,omitempty"`
	MaxInstances             int32  `json:"maxInstances,omitempty"`
	PollingIntervalSeconds   int32  `json:"pollingIntervalSeconds,omitempty"`
	TargetUtilizationPercent int32  `json:"targetUtilizationPercent,omitempty"`
}

// Request bounds each request at the router.
type Request struct {
	TimeoutMS                int32 `json:"timeoutMs"`
	MaxConcurrentPerInstance int32 `json:"maxConcurrentPerInstance"`
	MaxQueueWaitMS           int32 `json:"maxQueueWaitMs"`
}

// Probe settings, in seconds.
type Probe struct {
	PeriodSeconds       int32 `json:"periodSeconds"`
	InitialDelaySeconds int32 `json:"initialDelaySeconds"`
	TimeoutSeconds      int32 `json:"timeoutSeconds"`
	SuccessThreshold    int32 `json:"successThreshold"`
	FailureThreshold    int32 `json:"failureThreshold"`
}

// InferenceConfig is a custom container's routes.
type InferenceConfig struct {
	Liveness  Route `json:"liveness"`
	Readiness Route `json:"readiness"`
	Scoring   Route `json:"scoring"`
}

// Route is a port and path in a container.
type Route struct {
	Port int32  `json:"port"`
	Path string `json:"path"`
}

// Phases of a deployment: api.ClusterDeployment* (Creating, Succeeded,
// Failed).

// OnlineDeploymentStatus is what the inference operator reports.
type OnlineDeploymentStatus struct {
	Phase   string `json:"phase,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Replicas is the instances asked for now (the autoscaler moves it
	// within min and max); ReadyReplicas those ready.
	Replicas      int32 `json:"replicas"`
	ReadyReplicas int32 `json:"readyReplicas"`
	// LastScaleTime is when the autoscaler last changed Replicas.
	LastScaleTime      *metav1.Time `json:"lastScaleTime,omitempty"`
	ObservedGeneration int64        `json:"observedGeneration,omitempty"`
}

// OnlineDeploymentList is a list of OnlineDeployments.
type OnlineDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OnlineDeployment `json:"items"`
}
