// Package api holds the types of the workspace's HTTP API and of the protocol
// cluster agents speak with it. Resources are addressed as in Azure Resource
// Manager: /resourceGroups/{rg}/connectedClusters/{name},
// .../connectedClusters/{name}/extensions/{ext},
// /resourceGroups/{rg}/workspaces/{ws}/computes/{name}.
package api

import "time"

// Connectivity states of a connected cluster.
const (
	Connecting = "Connecting"
	Connected  = "Connected"
	Offline    = "Offline"
)

// Provisioning and install states.
const (
	StateCreating  = "Creating"
	StateSucceeded = "Succeeded"
	StateFailed    = "Failed"
	StateDeleting  = "Deleting"

	InstallPending   = "Pending"
	InstallInstalled = "Installed"
	InstallFailed    = "Failed"
)

// ConnectedCluster is a Kubernetes cluster whose agent dials the workspace.
type ConnectedCluster struct {
	ID                   string       `json:"id"`
	Name                 string       `json:"name"`
	ResourceGroup        string       `json:"resourceGroup"`
	ConnectivityStatus   string       `json:"connectivityStatus"`
	LastConnectivityTime *time.Time   `json:"lastConnectivityTime,omitempty"`
	Facts                ClusterFacts `json:"facts"`
	ProvisioningState    string       `json:"provisioningState"`
	Proxy                string       `json:"proxy,omitempty"`
	Created              time.Time    `json:"created"`
	// ClusterIdentity is the UID of the cluster's kube-system namespace: a
	// workspace registers one cluster once.
	ClusterIdentity string `json:"clusterIdentity,omitempty"`
	// AgentToken is in the answer to the registration only: the workspace
	// keeps just its hash.
	AgentToken string `json:"agentToken,omitempty"`
	// Replaced is in the answer to a forced registration only: the ids of
	// the registrations of the same cluster it deleted.
	Replaced []string `json:"replaced,omitempty"`
}

// ClusterFacts are what the agent reports about its cluster.
type ClusterFacts struct {
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	Distribution      string `json:"distribution,omitempty"` // generic or openshift
	TotalNodeCount    int    `json:"totalNodeCount"`
	AllocatableCPU    string `json:"allocatableCPU,omitempty"`
	AllocatableMemory string `json:"allocatableMemory,omitempty"`
	AllocatableGPU    string `json:"allocatableGPU,omitempty"`
	AgentVersion      string `json:"agentVersion,omitempty"`
	// Nodes are the cluster's nodes with their capacity, and InstanceTypes
	// its instance types (defaultinstancetype always among them): the
	// workspace checks jobs against them when they are submitted.
	Nodes         []NodeFacts    `json:"nodes,omitempty"`
	InstanceTypes []InstanceType `json:"instanceTypes,omitempty"`
	// InferenceRouter is where azureml-fe answers (nil until the
	// extension with inference has rendered its Service).
	InferenceRouter *InferenceRouter `json:"inferenceRouter,omitempty"`
}

// Extension is the ML extension (or another) installed in a connected cluster.
type Extension struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	ResourceGroup string `json:"resourceGroup"`
	ClusterName   string `json:"clusterName"`
	ClusterType   string `json:"clusterType"`
	ExtensionType string `json:"extensionType"`
	Scope         string `json:"scope"`
	// ConfigurationSettings are shown; protected settings never are: only
	// their keys, in ConfigurationProtectedSettings with the value "<redacted>".
	ConfigurationSettings          map[string]string `json:"configurationSettings"`
	ConfigurationProtectedSettings map[string]string `json:"configurationProtectedSettings,omitempty"`
	ProvisioningState              string            `json:"provisioningState"`
	InstallState                   string            `json:"installState"`
	Message                        string            `json:"message,omitempty"`
	Components                     []ComponentStatus `json:"components,omitempty"`
	Warnings                       []string          `json:"warnings,omitempty"`
	Generation                     int64             `json:"generation"`
}

// ExtensionRequest creates or updates an extension.
type ExtensionRequest struct {
	ExtensionType                  string            `json:"extensionType"`
	ClusterType                    string            `json:"clusterType"`
	Scope                          string            `json:"scope"`
	ConfigurationSettings          map[string]string `json:"configurationSettings"`
	ConfigurationProtectedSettings map[string]string `json:"configurationProtectedSettings"`
}

// ComponentStatus is one deployed component of an extension.
type ComponentStatus struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Ready   bool   `json:"ready"`
	Message string `json:"message,omitempty"`
}

// Compute is a connected cluster attached to a workspace as compute target.
type Compute struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	ResourceGroup      string   `json:"resourceGroup"`
	Workspace          string   `json:"workspace"`
	Type               string   `json:"type"`
	ResourceID         string   `json:"resourceId"`
	Namespace          string   `json:"namespace"`
	Identity           Identity `json:"identity"`
	ProvisioningState  string   `json:"provisioningState"`
	ProvisioningErrors []string `json:"provisioningErrors,omitempty"`
	Warnings           []string `json:"warnings,omitempty"`
	// InstanceTypes are those of the attached cluster, as last reported.
	InstanceTypes []InstanceType `json:"instanceTypes,omitempty"`
}

// Identity of a compute.
type Identity struct {
	Type                   string   `json:"type"` // SystemAssigned, UserAssigned or None
	PrincipalID            string   `json:"principalId,omitempty"`
	UserAssignedIdentities []string `json:"userAssignedIdentities,omitempty"`
	// UserAssignedIdentityDetails are the principal and client ids of
	// each user-assigned identity, what Azure shows under
	// identity.userAssignedIdentities.<id>: what permissions are granted to.
	UserAssignedIdentityDetails []UserAssignedIdentity `json:"userAssignedIdentityDetails,omitempty"`
}

// UserAssignedIdentity is a user-assigned identity's ids.
type UserAssignedIdentity struct {
	ResourceID  string `json:"resourceId"`
	PrincipalID string `json:"principalId"`
	ClientID    string `json:"clientId"`
}

// ComputeRequest attaches a cluster.
type ComputeRequest struct {
	Type                   string   `json:"type"`
	ResourceID             string   `json:"resourceId"`
	Namespace              string   `json:"namespace"`
	IdentityType           string   `json:"identityType"`
	UserAssignedIdentities []string `json:"userAssignedIdentities"`
	CreateNamespace        bool     `json:"createNamespace"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Kinds of the objects the workspace syncs to a cluster's agent.
const (
	KindExtension = "Extension"
	KindCompute   = "Compute"
	KindJob       = "Job"
	// An online endpoint (DesiredOnlineEndpoint) and a deployment of one
	// (DesiredOnlineDeployment), both in their compute's namespace.
	KindOnlineEndpoint   = "OnlineEndpoint"
	KindOnlineDeployment = "OnlineDeployment"
)

// SyncResponse answers an agent's long poll GET .../sync?since=R: the
// objects of its cluster whose spec changed after revision R and those
// deleted since, so that a change costs what it changes. With Reset set the
// objects are the cluster's whole desired state (R was 0 or older than the
// deletions the workspace keeps): the agent drops every object it has that
// the answer lacks. An answer with no objects after the long poll's wait
// means nothing changed; the agent asks again from Revision.
type SyncResponse struct {
	Revision int64           `json:"revision"`
	Reset    bool            `json:"reset,omitempty"`
	Objects  []DesiredObject `json:"objects"`
	Deleted  []ObjectRef     `json:"deleted,omitempty"`
	// HeartbeatSeconds is how often the agent should report.
	HeartbeatSeconds int `json:"heartbeatSeconds"`
}

// ObjectRef names a synced object: its kind and its resource id.
type ObjectRef struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// DesiredObject is one object the workspace wants on the cluster, with the
// payload of its kind.
type DesiredObject struct {
	Kind       string            `json:"kind"`
	ID         string            `json:"id"`
	Generation int64             `json:"generation"`
	Extension  *DesiredExtension `json:"extension,omitempty"`
	Compute    *DesiredCompute   `json:"compute,omitempty"`
	Job        *DesiredJob       `json:"job,omitempty"`
	// OnlineEndpoint and OnlineDeployment, for their kinds.
	OnlineEndpoint   *DesiredOnlineEndpoint   `json:"onlineEndpoint,omitempty"`
	OnlineDeployment *DesiredOnlineDeployment `json:"onlineDeployment,omitempty"`
}

// Ref names the object.
func (o DesiredObject) Ref() ObjectRef { return ObjectRef{Kind: o.Kind, ID: o.ID} }

// DesiredExtension carries the settings, protected ones included: the agent
// needs them to render the extension. It travels only to that cluster's agent.
type DesiredExtension struct {
	Name          string            `json:"name"`
	ExtensionType string            `json:"extensionType"`
	Generation    int64             `json:"generation"`
	Settings      map[string]string `json:"settings"`
	Protected     map[string]string `json:"protected"`
}

// DesiredCompute is a compute attached to the cluster: its workloads run in
// Namespace, which the agent creates when CreateNamespace is set.
type DesiredCompute struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace"`
	CreateNamespace bool   `json:"createNamespace,omitempty"`
}

// DesiredJob is a job the workspace wants run on the cluster: the agent
// makes a TrainingJob of it in Namespace, with a Secret holding the job's
// credential, which reaches that job's files on the workspace only. The
// command, inputs and outputs are not here: the job's pods fetch them with
// the credential (api.JobRun).
type DesiredJob struct {
	Name          string        `json:"name"` // the job's name in its workspace
	ResourceGroup string        `json:"resourceGroup"`
	Workspace     string        `json:"workspace"`
	Compute       string        `json:"compute"`
	Namespace     string        `json:"namespace"`
	Token         string        `json:"token"`
	Image         string        `json:"image"`
	InstanceType  string        `json:"instanceType"` // defaultinstancetype when the job named none
	InstanceCount int           `json:"instanceCount"`
	Distribution  *Distribution `json:"distribution,omitempty"`
	ShmSize       string        `json:"shmSize,omitempty"`
	// TimeoutSeconds is limits.timeout: the job fails when it runs longer.
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
	// Cancel asks the cluster to end the job's pods.
	Cancel bool `json:"cancel,omitempty"`
}

// Phases of a job on a cluster, as its training operator reports them.
const (
	ClusterJobQueued    = "Queued"    // waiting for room (Message says for what)
	ClusterJobStarting  = "Starting"  // pods placed, not all running yet
	ClusterJobRunning   = "Running"   // every pod runs
	ClusterJobSucceeded = "Succeeded" // every pod ended with 0
	ClusterJobFailed    = "Failed"    // Reason and Message say why
	ClusterJobCanceled  = "Canceled"  // cancelled; its pods are gone
)

// JobReport is the state of one job on the cluster.
type JobReport struct {
	ID        string     `json:"id"` // the job's resource id
	Phase     string     `json:"phase"`
	Reason    string     `json:"reason,omitempty"` // OOMKilled, DeadlineExceeded, Error, ...
	Message   string     `json:"message,omitempty"`
	StartTime *time.Time `json:"startTime,omitempty"`
	EndTime   *time.Time `json:"endTime,omitempty"`
}

// AgentReport is the heartbeat of an agent: the cluster's facts, and what
// changed since the last report the workspace acknowledged.
type AgentReport struct {
	// Revision is the sync revision whose objects the agent has applied:
	// facts in this report are at least that fresh.
	Revision int64        `json:"revision,omitempty"`
	Facts    ClusterFacts `json:"facts"`
	// Extensions whose state changed since the last acknowledged report.
	Extensions []ExtensionReport `json:"extensions,omitempty"`
	// Namespaces of the cluster, when they changed since the last
	// acknowledged report (nil otherwise: a cluster always has some).
	Namespaces []string `json:"namespaces,omitempty"`
	// Jobs whose state on the cluster changed since the last acknowledged
	// report.
	Jobs []JobReport `json:"jobs,omitempty"`
	// Deployments whose state on the cluster changed since the last
	// acknowledged report.
	Deployments []DeploymentReport `json:"deployments,omitempty"`
}

// ExtensionReport is the state of one extension in the cluster.
type ExtensionReport struct {
	Name         string            `json:"name"`
	Generation   int64             `json:"generation"`
	InstallState string            `json:"installState"`
	Message      string            `json:"message,omitempty"`
	Components   []ComponentStatus `json:"components,omitempty"`
}

// DesiredOnlineEndpoint is an online endpoint the workspace wants served by
// the cluster's inference router: the agent makes an OnlineEndpoint object
// of it in Namespace, and a Secret holding its keys.
type DesiredOnlineEndpoint struct {
	Name          string `json:"name"` // the endpoint's name, unique in the cluster's endpoints
	ResourceGroup string `json:"resourceGroup"`
	Workspace     string `json:"workspace"`
	Compute       string `json:"compute"`
	Namespace     string `json:"namespace"`
	AuthMode      string `json:"authMode"` // key, aml_token
	// PrimaryKey and SecondaryKey are the keys of a key endpoint;
	// TokenKey signs (and checks) the aml_tokens of an aml_token one.
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
	TokenKey     string `json:"tokenKey,omitempty"`
	// Traffic maps deployment names to percents (sum 100, or all 0).
	Traffic map[string]int `json:"traffic,omitempty"`
}

// DesiredOnlineDeployment is a deployment the workspace wants run: the agent
// makes an OnlineDeployment object of it in Namespace, with a Secret
// holding the deployment's credential, which reaches that deployment's
// model and code on the workspace only (api.DeploymentRun).
type DesiredOnlineDeployment struct {
	Name          string `json:"name"`
	Endpoint      string `json:"endpoint"`
	ResourceGroup string `json:"resourceGroup"`
	Workspace     string `json:"workspace"`
	Compute       string `json:"compute"`
	Namespace     string `json:"namespace"`
	Token         string `json:"token"`
	Image         string `json:"image"`
	InstanceType  string `json:"instanceType"` // defaultinstancetype when none was named
	// Resources are the deployment's own requests and limits (nil: its
	// instance type's).
	Resources *InstanceTypeResources `json:"resources,omitempty"`
	// InstanceCount is the instances of scale type default; the min of
	// target_utilization (the autoscaler starts there).
	InstanceCount   int             `json:"instanceCount"`
	ScaleSettings   ScaleSettings   `json:"scaleSettings"`   // defaults filled in
	RequestSettings RequestSettings `json:"requestSettings"` // defaults filled in
	LivenessProbe   ProbeSettings   `json:"livenessProbe"`   // defaults filled in
	ReadinessProbe  ProbeSettings   `json:"readinessProbe"`  // defaults filled in
	// InferenceConfig is a bring-your-own-container environment's routes
	// (nil: Outpost's scoring server runs the deployment's score.py).
	InferenceConfig *InferenceConfig `json:"inferenceConfig,omitempty"`
	// ModelName and ModelVersion name the deployment's model (empty: it
	// has none), and EnvironmentVariables are its environment_variables.
	// A custom container (InferenceConfig) gets them from its pod:
	// AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/<name>/<version>
	// and the variables. Outpost's scoring server reads both from the
	// deployment-run API instead.
	ModelName            string            `json:"modelName,omitempty"`
	ModelVersion         string            `json:"modelVersion,omitempty"`
	EnvironmentVariables map[string]string `json:"environmentVariables,omitempty"`
	// RunDigest names what the pods fetch with the credential (the
	// DeploymentRun: model, code, scoring script, variables), which the
	// fields above do not all show: the operator puts it on the pod
	// template so that a new model or code rolls the pods.
	RunDigest string `json:"runDigest,omitempty"`
}

// InferenceConfig is environment.inference_config: where a custom
// container answers.
type InferenceConfig struct {
	LivenessRoute  Route `json:"liveness_route"`
	ReadinessRoute Route `json:"readiness_route"`
	ScoringRoute   Route `json:"scoring_route"`
}

// Route is a port and path in a container.
type Route struct {
	Port int    `json:"port"`
	Path string `json:"path"`
}

// Phases of a deployment on a cluster, as the inference operator reports
// them.
const (
	ClusterDeploymentCreating  = "Creating"  // instances starting, not all ready yet
	ClusterDeploymentSucceeded = "Succeeded" // the instances asked for are ready
	ClusterDeploymentFailed    = "Failed"    // Reason and Message say why
)

// DeploymentReport is the state of one deployment on the cluster.
type DeploymentReport struct {
	ID             string `json:"id"` // the deployment's resource id
	Phase          string `json:"phase"`
	Reason         string `json:"reason,omitempty"` // InitFailed, Unschedulable, ProbeFailed, ...
	Message        string `json:"message,omitempty"`
	Instances      int    `json:"instances"` // pods asked for now (the autoscaler moves it)
	ReadyInstances int    `json:"readyInstances"`
}
