package api

// The job-run API: what a job's own pods call, with the job's credential,
// under /jobrun/v1/resourceGroups/{rg}/workspaces/{ws}/jobs/{name}:
//
//	GET  /spec                               JobRun
//	POST /phase                              JobPhase: the wrapper's progress
//	POST /logs/{file...}?offset=N            append to a log file (N: its size before)
//	GET  /datastores/{ds}/files?prefix=P     []FileInfo (the job's code and inputs only)
//	GET  /datastores/{ds}/files/{path...}    a file's bytes
//	HEAD /blobs/{digest}, PUT /blobs/{digest} a blob (digest "sha256:<hex>"), checked
//	POST /datastores/{ds}/commit             CommitRequest (the job's outputs and artifacts only)
//
// The workspace's own API has the same datastore and blob routes under
// /resourceGroups/{rg}/workspaces/{ws}, so one client serves both.

// JobRun is everything the wrapper in a job's pod needs to run it.
type JobRun struct {
	Name           string `json:"name"`
	ResourceGroup  string `json:"resourceGroup"`
	Workspace      string `json:"workspace"`
	ExperimentName string `json:"experimentName"`
	// Command is as submitted: the wrapper substitutes ${{inputs.x}} and
	// ${{outputs.y}} once it knows where they are.
	Command string `json:"command"`
	// Code is the datastore URI of the code folder (none when empty).
	Code                 string               `json:"code,omitempty"`
	Inputs               map[string]RunInput  `json:"inputs,omitempty"`
	Outputs              map[string]RunOutput `json:"outputs,omitempty"`
	EnvironmentVariables map[string]string    `json:"environmentVariables,omitempty"`
	// Artifacts is the datastore URI the cwd's ./outputs folder is kept at.
	Artifacts    string        `json:"artifacts"`
	Distribution *Distribution `json:"distribution,omitempty"`
}

// RunInput is an input resolved: a literal's text, or data at a URI.
type RunInput struct {
	Literal *string `json:"literal,omitempty"`
	Type    string  `json:"type,omitempty"` // uri_file, uri_folder, ...
	URI     string  `json:"uri,omitempty"`  // azureml://datastores/<ds>/paths/<p>
	Mode    string  `json:"mode,omitempty"` // ro_mount, download
}

// RunOutput is where an output goes.
type RunOutput struct {
	Type string `json:"type"`
	URI  string `json:"uri"`
	Mode string `json:"mode"`
}

// JobPhase is the wrapper's progress, reported by instance 0.
type JobPhase struct {
	Phase    string `json:"phase"` // Preparing, Running, Finalizing
	Instance int    `json:"instance"`
}
