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
	// AgentToken is in the answer to the registration only: the workspace
	// keeps just its hash.
	AgentToken string `json:"agentToken,omitempty"`
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
}

// Identity of a compute.
type Identity struct {
	Type                   string   `json:"type"` // SystemAssigned, UserAssigned or None
	PrincipalID            string   `json:"principalId,omitempty"`
	UserAssignedIdentities []string `json:"userAssignedIdentities,omitempty"`
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

// DesiredState is what the workspace wants on one cluster. The agent polls
// it with the ETag of the last one it applied and gets an answer when it
// differs (or 304 after a while).
type DesiredState struct {
	Extensions []DesiredExtension `json:"extensions"`
	// Namespaces the workspace wants to exist (attach --create-namespace).
	Namespaces []string `json:"namespaces,omitempty"`
	// HeartbeatSeconds is how often the agent should report.
	HeartbeatSeconds int `json:"heartbeatSeconds"`
}

// DesiredExtension carries the settings, protected ones included: the agent
// needs them to render the extension. It travels only to that cluster's agent.
type DesiredExtension struct {
	Name          string            `json:"name"`
	ExtensionType string            `json:"extensionType"`
	Generation    int64             `json:"generation"`
	Settings      map[string]string `json:"settings"`
	Protected     map[string]string `json:"protected"`
}

// AgentReport is the heartbeat of an agent: facts and the state of what it applied.
type AgentReport struct {
	Facts      ClusterFacts      `json:"facts"`
	Extensions []ExtensionReport `json:"extensions"`
	Namespaces []string          `json:"namespaces"`
}

// ExtensionReport is the state of one extension in the cluster.
type ExtensionReport struct {
	Name         string            `json:"name"`
	Generation   int64             `json:"generation"`
	InstallState string            `json:"installState"`
	Message      string            `json:"message,omitempty"`
	Components   []ComponentStatus `json:"components,omitempty"`
}
