package api

import (
	"encoding/json"
	"time"
)

// Models, online endpoints and online deployments, in the Azure ML CLI v2
// shapes (snake_case JSON of the YAML documents users bring). Routes, under
// /resourceGroups/{rg}/workspaces/{ws}:
//
//	/models[/{name}[/versions/{version}]]       Model (as environments and data)
//	/onlineEndpoints[/{name}]                   OnlineEndpoint: GET, PUT, PATCH, DELETE
//	/onlineEndpoints/{name}/listKeys            POST -> EndpointKeys
//	/onlineEndpoints/{name}/regenerateKeys      POST RegenerateKeysRequest -> EndpointKeys
//	/onlineEndpoints/{name}/token               POST -> EndpointToken (aml_token endpoints)
//	/onlineEndpoints/{name}/deployments[/{d}]   OnlineDeployment: GET, PUT, PATCH, DELETE
//	/onlineEndpoints/{name}/deployments/{d}/logs?lines=N  DeploymentLogs

// Endpoint auth modes (compared case-insensitively on input, stored lower case).
const (
	AuthModeKey      = "key"
	AuthModeAMLToken = "aml_token"
)

// Model types.
const (
	ModelCustom = "custom_model"
	ModelMLflow = "mlflow_model"
	ModelTriton = "triton_model"
)

// Model is a model asset: a named, versioned file or folder in the
// workspace's datastore.
type Model struct {
	Schema      string            `json:"$schema,omitempty"`
	ID          string            `json:"id,omitempty"`
	Name        string            `json:"name"`
	Version     string            `json:"version,omitempty"`
	Type        string            `json:"type,omitempty"` // custom_model (the default), mlflow_model, triton_model
	Path        string            `json:"path"`           // azureml://datastores/<ds>/paths/<p>
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Stage is "Archived" once archived: archived versions are not what
	// @latest resolves to, and are listed only when asked for.
	Stage           string           `json:"stage,omitempty"`
	CreationContext *CreationContext `json:"creation_context,omitempty"`
}

// ModelArchived is Model.Stage of an archived version.
const ModelArchived = "Archived"

// OnlineEndpoint is an online endpoint (kind Kubernetes: its compute names
// an attached Kubernetes compute).
type OnlineEndpoint struct {
	Schema      string            `json:"$schema,omitempty"`
	ID          string            `json:"id,omitempty"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	AuthMode    string            `json:"auth_mode,omitempty"` // key (the default), aml_token
	Compute     string            `json:"compute,omitempty"`   // azureml:NAME
	Identity    json.RawMessage   `json:"identity,omitempty"`  // recorded
	// Traffic maps deployment names to percents: they sum to 100, or all 0.
	// It cannot be given at creation (as in Azure ML).
	Traffic map[string]int `json:"traffic,omitempty"`
	// MirrorTraffic is refused: Kubernetes endpoints do not mirror.
	MirrorTraffic map[string]int `json:"mirror_traffic,omitempty"`
	Kind          string         `json:"kind,omitempty"` // always "K8s" when shown

	// Shown, never taken from a document.
	ScoringURI        string `json:"scoring_uri,omitempty"`
	SwaggerURI        string `json:"swagger_uri,omitempty"`
	ProvisioningState string `json:"provisioning_state,omitempty"`
	// StatusMessage says why an endpoint Failed (its cluster has no
	// inference router, its registration is gone).
	StatusMessage   string           `json:"status_message,omitempty"`
	CreationContext *CreationContext `json:"creation_context,omitempty"`
	ResourceGroup   string           `json:"resource_group,omitempty"`
	Workspace       string           `json:"workspace,omitempty"`
}

// EndpointKeys answers listKeys and regenerateKeys. The JSON names are the
// ones `az ml online-endpoint get-credentials --query primaryKey` reads.
type EndpointKeys struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// EndpointToken is an aml_token endpoint's credential.
type EndpointToken struct {
	AccessToken      string    `json:"accessToken"`
	TokenType        string    `json:"tokenType"` // Bearer
	ExpiryTimeUTC    time.Time `json:"expiryTimeUtc"`
	RefreshAfterTime time.Time `json:"refreshAfterTimeUtc"`
}

// RegenerateKeysRequest names the key to replace: primary or secondary.
type RegenerateKeysRequest struct {
	KeyType string `json:"keyType"`
}

// Scale settings types.
const (
	ScaleDefault           = "default"
	ScaleTargetUtilization = "target_utilization"
)

// OnlineDeployment is a deployment of an online endpoint on Kubernetes.
type OnlineDeployment struct {
	Schema               string             `json:"$schema,omitempty"`
	ID                   string             `json:"id,omitempty"`
	Name                 string             `json:"name"`
	EndpointName         string             `json:"endpoint_name,omitempty"`
	Type                 string             `json:"type,omitempty"` // kubernetes
	Description          string             `json:"description,omitempty"`
	Tags                 map[string]string  `json:"tags,omitempty"`
	Model                *ModelRef          `json:"model,omitempty"`
	CodeConfiguration    *CodeConfiguration `json:"code_configuration,omitempty"`
	Environment          *EnvironmentRef    `json:"environment,omitempty"`
	EnvironmentVariables map[string]string  `json:"environment_variables,omitempty"`
	InstanceType         string             `json:"instance_type,omitempty"`
	InstanceCount        int                `json:"instance_count,omitempty"`
	AppInsightsEnabled   bool               `json:"app_insights_enabled,omitempty"`
	ScaleSettings        *ScaleSettings     `json:"scale_settings,omitempty"`
	RequestSettings      *RequestSettings   `json:"request_settings,omitempty"`
	LivenessProbe        *ProbeSettings     `json:"liveness_probe,omitempty"`
	ReadinessProbe       *ProbeSettings     `json:"readiness_probe,omitempty"`
	// Resources are the pods' own requests and limits, within the
	// instance type's limits.
	Resources *InstanceTypeResources `json:"resources,omitempty"`

	// Shown, never taken from a document.
	ProvisioningState string `json:"provisioning_state,omitempty"`
	// StatusMessage says why a deployment failed (init() raised: its
	// traceback; no room: the numbers; a probe that never passed).
	StatusMessage   string           `json:"status_message,omitempty"`
	ReadyInstances  int              `json:"ready_instance_count,omitempty"`
	CreationContext *CreationContext `json:"creation_context,omitempty"`
}

// ModelRef is a deployment's model: a reference (azureml:NAME:VERSION,
// azureml:NAME@latest) or an inline model ({path: ...}).
type ModelRef struct {
	Ref    string `json:"-"`
	Inline *Model `json:"-"`
}

// UnmarshalJSON takes a string or an object.
func (m *ModelRef) UnmarshalJSON(data []byte) error {
	return unmarshalRefOrInline(data, &m.Ref, &m.Inline)
}

// MarshalJSON writes the reference or the inline model.
func (m ModelRef) MarshalJSON() ([]byte, error) {
	if m.Inline != nil {
		return json.Marshal(m.Inline)
	}
	return json.Marshal(m.Ref)
}

// CodeConfiguration is a deployment's scoring code.
type CodeConfiguration struct {
	Code          string `json:"code"`           // a local folder (uploaded by the client) or a datastore URI
	ScoringScript string `json:"scoring_script"` // relative to Code
}

// ScaleSettings: type default (instance_count instances) or
// target_utilization (between min and max instances).
type ScaleSettings struct {
	Type                        string `json:"type,omitempty"`
	MinInstances                int    `json:"min_instances,omitempty"`
	MaxInstances                int    `json:"max_instances,omitempty"`
	PollingInterval             int    `json:"polling_interval,omitempty"` // seconds
	TargetUtilizationPercentage int    `json:"target_utilization_percentage,omitempty"`
}

// RequestSettings bound each request.
type RequestSettings struct {
	RequestTimeoutMS                 int `json:"request_timeout_ms,omitempty"`
	MaxConcurrentRequestsPerInstance int `json:"max_concurrent_requests_per_instance,omitempty"`
	MaxQueueWaitMS                   int `json:"max_queue_wait_ms,omitempty"`
}

// ProbeSettings of a deployment's liveness and readiness probes (seconds).
type ProbeSettings struct {
	Period           int `json:"period,omitempty"`
	InitialDelay     int `json:"initial_delay,omitempty"`
	Timeout          int `json:"timeout,omitempty"`
	SuccessThreshold int `json:"success_threshold,omitempty"`
	FailureThreshold int `json:"failure_threshold,omitempty"`
}

// DeploymentLogs answers get-logs: the end of the scoring server's log of
// one instance.
type DeploymentLogs struct {
	Instance string `json:"instance"`
	Content  string `json:"content"`
}

// InferenceRouter is where a cluster's azureml-fe answers, as the agent
// reports it: the scoring URIs of its endpoints start with BaseURL.
type InferenceRouter struct {
	// BaseURL is scheme://host:port (the load balancer's address, the
	// node port, or the cluster IP, by the Service's type).
	BaseURL string `json:"baseURL"`
	// CertificatePEM is the router's serving certificate (HTTPS only):
	// clients that do not trust its issuer may pin it.
	CertificatePEM string `json:"certificatePEM,omitempty"`
	Ready          bool   `json:"ready"`
}

// RouterLoad answers GET /load on a router replica's admin port: the
// requests in flight and queued at that replica, per deployment. The
// inference operator sums it over the replicas to autoscale.
type RouterLoad struct {
	Replica     string           `json:"replica"` // the router pod's name
	Deployments []DeploymentLoad `json:"deployments"`
}

// DeploymentLoad is one deployment's load at one router replica.
type DeploymentLoad struct {
	Namespace  string `json:"namespace"`
	Endpoint   string `json:"endpoint"`
	Deployment string `json:"deployment"`
	InFlight   int    `json:"inFlight"`
	Queued     int    `json:"queued"`
}
