package api

// The deployment-run API: what a deployment's own pods call, with the
// deployment's credential, under
// /deployrun/v1/resourceGroups/{rg}/workspaces/{ws}/onlineEndpoints/{e}/deployments/{d}:
//
//	GET  /spec                               DeploymentRun
//	POST /logs/{instance}?offset=N           append to an instance's scoring log (N: its size before)
//	GET  /datastores/{ds}/files?prefix=P     []FileInfo (the deployment's model and code only)
//	GET  /datastores/{ds}/files/{path...}    a file's bytes
//
// The same datastore routes as the job-run API, so one client serves both.

// DeploymentRun is everything the scoring server's wrapper needs.
type DeploymentRun struct {
	Name          string `json:"name"`
	Endpoint      string `json:"endpoint"`
	ResourceGroup string `json:"resourceGroup"`
	Workspace     string `json:"workspace"`
	// Model is the model's datastore URI (a file or a folder), with its
	// name and version: the wrapper puts it under
	// azureml-models/<name>/<version>/ and sets AZUREML_MODEL_DIR there.
	// Empty ModelURI: the deployment has no model.
	ModelURI     string `json:"modelURI,omitempty"`
	ModelName    string `json:"modelName,omitempty"`
	ModelVersion string `json:"modelVersion,omitempty"`
	// ModelFolder is kept under AZUREML_MODEL_DIR: an inline model's
	// path ../model-1/model/ is opened as $AZUREML_MODEL_DIR/model/...
	ModelFolder string `json:"modelFolder,omitempty"`
	// Code is the datastore URI of the code folder; ScoringScript is
	// relative to it.
	Code                 string            `json:"code,omitempty"`
	ScoringScript        string            `json:"scoringScript,omitempty"`
	EnvironmentVariables map[string]string `json:"environmentVariables,omitempty"`
	RequestSettings      RequestSettings   `json:"requestSettings"`
}
