package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Machine learning resources of a workspace: jobs, environments, data
// assets and the files of its datastore. Their JSON is that of the Azure ML
// CLI v2 (snake_case, the YAML documents users bring), so that
// `--query status` and the like work as with `az ml`.

// Job states, as Azure ML names them.
const (
	JobNotStarted      = "NotStarted"
	JobQueued          = "Queued"
	JobPreparing       = "Preparing"
	JobRunning         = "Running"
	JobFinalizing      = "Finalizing"
	JobCompleted       = "Completed"
	JobFailed          = "Failed"
	JobCancelRequested = "CancelRequested"
	JobCanceled        = "Canceled"
)

// JobTerminal tells the states a job never leaves.
func JobTerminal(state string) bool {
	return state == JobCompleted || state == JobFailed || state == JobCanceled
}

// DefaultDatastore is the datastore outputs, uploads and logs go to.
const DefaultDatastore = "workspaceblobstore"

// DefaultInstanceType is used when a job names none and the cluster has no
// InstanceType of that name.
const DefaultInstanceType = "defaultinstancetype"

// JobSpec is a command job document (CLI v2 YAML, as JSON). Local paths
// (code, inputs) have been uploaded by the client and replaced by datastore
// URIs (azureml://datastores/<ds>/paths/<path>) before it reaches the API;
// everything else is as the user wrote it.
type JobSpec struct {
	Schema               string             `json:"$schema,omitempty"`
	Type                 string             `json:"type,omitempty"` // command (the default)
	Name                 string             `json:"name,omitempty"`
	DisplayName          string             `json:"display_name,omitempty"`
	ExperimentName       string             `json:"experiment_name,omitempty"`
	Description          string             `json:"description,omitempty"`
	Tags                 map[string]string  `json:"tags,omitempty"`
	Properties           map[string]string  `json:"properties,omitempty"`
	Code                 string             `json:"code,omitempty"`
	Command              string             `json:"command,omitempty"`
	Environment          *EnvironmentRef    `json:"environment,omitempty"`
	EnvironmentVariables map[string]string  `json:"environment_variables,omitempty"`
	Compute              string             `json:"compute,omitempty"`
	Resources            *JobResources      `json:"resources,omitempty"`
	Distribution         *Distribution      `json:"distribution,omitempty"`
	Limits               *JobLimits         `json:"limits,omitempty"`
	Inputs               map[string]*Input  `json:"inputs,omitempty"`
	Outputs              map[string]*Output `json:"outputs,omitempty"`
	Identity             *JobIdentity       `json:"identity,omitempty"`
}

// JobResources are where and how wide a job runs.
type JobResources struct {
	InstanceType  string            `json:"instance_type,omitempty"`
	InstanceCount int               `json:"instance_count,omitempty"` // 1 when 0
	ShmSize       string            `json:"shm_size,omitempty"`       // 2g when empty
	Properties    map[string]string `json:"properties,omitempty"`
}

// Distribution is how processes of a distributed job are wired.
type Distribution struct {
	Type                    string `json:"type"` // pytorch, mpi, tensorflow
	ProcessCountPerInstance int    `json:"process_count_per_instance,omitempty"`
	WorkerCount             int    `json:"worker_count,omitempty"`
	ParameterServerCount    int    `json:"parameter_server_count,omitempty"`
}

// JobLimits bound a job.
type JobLimits struct {
	Timeout int64 `json:"timeout,omitempty"` // seconds
}

// JobIdentity is recorded: the job runs with its own credential whatever it says.
type JobIdentity struct {
	Type     string `json:"type"` // user_identity, managed, aml_token
	ClientID string `json:"client_id,omitempty"`
}

// Input is a job input: a literal (string, number or boolean: Value holds
// its JSON) or data (Type, Path, Mode).
type Input struct {
	Value       json.RawMessage `json:"-"`
	Type        string          `json:"type,omitempty"` // uri_folder (the default), uri_file, mltable, ...
	Path        string          `json:"path,omitempty"`
	Mode        string          `json:"mode,omitempty"` // ro_mount (the default), download
	Description string          `json:"description,omitempty"`
	Optional    bool            `json:"optional,omitempty"`
	Default     json.RawMessage `json:"default,omitempty"`
}

type inputObject Input

// UnmarshalJSON takes a literal or an object.
func (in *Input) UnmarshalJSON(data []byte) error {
	d := bytes.TrimSpace(data)
	if len(d) > 0 && d[0] == '{' {
		var o inputObject
		dec := json.NewDecoder(bytes.NewReader(d))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return err
		}
		*in = Input(o)
		return nil
	}
	if len(d) > 0 && (d[0] == '[' || string(d) == "null") {
		return fmt.Errorf("an input is a literal (string, number, boolean) or an object with type and path, not %s", d)
	}
	*in = Input{Value: append(json.RawMessage(nil), d...)}
	return nil
}

// MarshalJSON writes a literal as itself.
func (in Input) MarshalJSON() ([]byte, error) {
	if in.Value != nil {
		return in.Value, nil
	}
	return json.Marshal(inputObject(in))
}

// Literal tells an input that is a value rather than data.
func (in *Input) Literal() bool { return in != nil && in.Value != nil }

// Output is a job output. An empty one is a uri_folder in rw_mount mode
// under the job's own path in the default datastore.
type Output struct {
	Type        string `json:"type,omitempty"` // uri_folder (the default), uri_file, mlflow_model, custom_model
	Path        string `json:"path,omitempty"` // azureml://datastores/<ds>/paths/<p>; the job's own when empty
	Mode        string `json:"mode,omitempty"` // rw_mount (the default), upload
	Description string `json:"description,omitempty"`
}

// EnvironmentRef is a job's environment: a reference (azureml:NAME:VERSION,
// azureml:NAME@latest, azureml://registries/...) or an inline environment.
type EnvironmentRef struct {
	Ref    string       `json:"-"`
	Inline *Environment `json:"-"`
}

// UnmarshalJSON takes a string or an object.
func (e *EnvironmentRef) UnmarshalJSON(data []byte) error {
	return unmarshalRefOrInline(data, &e.Ref, &e.Inline)
}

// unmarshalRefOrInline decodes a reference (a JSON string) into ref, or an
// inline document (an object, strictly: unknown fields are errors) into
// inline.
func unmarshalRefOrInline[T any](data []byte, ref *string, inline **T) error {
	d := bytes.TrimSpace(data)
	if len(d) > 0 && d[0] == '"' {
		return json.Unmarshal(d, ref)
	}
	v := new(T)
	dec := json.NewDecoder(bytes.NewReader(d))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	*inline = v
	return nil
}

// MarshalJSON writes the reference or the inline environment.
func (e EnvironmentRef) MarshalJSON() ([]byte, error) {
	if e.Inline != nil {
		return json.Marshal(e.Inline)
	}
	return json.Marshal(e.Ref)
}

// Environment is an environment asset (or an inline environment, which has
// no name or version).
type Environment struct {
	Schema          string            `json:"$schema,omitempty"`
	ID              string            `json:"id,omitempty"`
	Name            string            `json:"name,omitempty"`
	Version         string            `json:"version,omitempty"`
	Description     string            `json:"description,omitempty"`
	Tags            map[string]string `json:"tags,omitempty"`
	Image           string            `json:"image,omitempty"`
	CondaFile       json.RawMessage   `json:"conda_file,omitempty"` // the conda YAML, as an object
	Build           *EnvironmentBuild `json:"build,omitempty"`
	OSType          string            `json:"os_type,omitempty"`
	InferenceConfig json.RawMessage   `json:"inference_config,omitempty"`
	CreationContext *CreationContext  `json:"creation_context,omitempty"`
}

// EnvironmentBuild is a Docker build context, recorded (an uploaded folder).
type EnvironmentBuild struct {
	Path           string `json:"path"`
	DockerfilePath string `json:"dockerfile_path,omitempty"`
}

// Data is a data asset: a named, versioned datastore path.
type Data struct {
	Schema          string            `json:"$schema,omitempty"`
	ID              string            `json:"id,omitempty"`
	Name            string            `json:"name"`
	Version         string            `json:"version,omitempty"`
	Type            string            `json:"type,omitempty"` // uri_folder (the default), uri_file, mltable
	Path            string            `json:"path"`           // azureml://datastores/<ds>/paths/<p>
	Description     string            `json:"description,omitempty"`
	Tags            map[string]string `json:"tags,omitempty"`
	CreationContext *CreationContext  `json:"creation_context,omitempty"`
}

// CreationContext says when a resource was made.
type CreationContext struct {
	CreatedAt    time.Time `json:"created_at"`
	CreatedBy    string    `json:"created_by,omitempty"`
	LastModified time.Time `json:"last_modified_at,omitempty"`
}

// Job is a job as the workspace shows it: the document as submitted (with
// the defaults filled in) and its state.
type Job struct {
	JobSpec
	ID            string `json:"id"`
	ResourceGroup string `json:"resource_group"`
	Workspace     string `json:"workspace"`
	Status        string `json:"status"`
	// StatusMessage says why a job waits (Queued: what it needs, what is
	// free) or why it failed (exit code and the end of its log, OOMKilled,
	// timeout).
	StatusMessage   string           `json:"status_message,omitempty"`
	CreationContext *CreationContext `json:"creation_context,omitempty"`
	StartTime       *time.Time       `json:"start_time,omitempty"`
	EndTime         *time.Time       `json:"end_time,omitempty"`
	// Services are how to reach the job; Studio is the workspace's job URL.
	Services map[string]JobService `json:"services,omitempty"`
}

// JobService is an endpoint of a job.
type JobService struct {
	Endpoint       string `json:"endpoint"`
	JobServiceType string `json:"job_service_type,omitempty"`
}

// JobLogs answers GET .../jobs/{name}/logs?from=FILE:OFFSET,...&wait=S: the
// bytes of each log file beyond the offsets given (a file not named is read
// from 0), after waiting up to S seconds for some. Done is set once the job
// has ended and every byte of every log has been returned.
type JobLogs struct {
	Status        string        `json:"status"`
	StatusMessage string        `json:"status_message,omitempty"`
	Chunks        []JobLogChunk `json:"chunks"`
	Done          bool          `json:"done"`
}

// JobLogChunk is the bytes of one log file from Offset.
type JobLogChunk struct {
	File   string `json:"file"` // e.g. user_logs/std_log.txt
	Offset int64  `json:"offset"`
	Data   []byte `json:"data"`
}

// FileInfo is one file of a datastore.
type FileInfo struct {
	Path   string `json:"path"` // relative to the datastore's root, slash-separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`         // hex
	Mode   uint32 `json:"mode,omitempty"` // permission bits (0644, 0755)
}

// CommitRequest records files, whose blobs were uploaded before, in a
// datastore at once: all of them or none.
type CommitRequest struct {
	Files []FileInfo `json:"files"`
}

// InstanceType is a cluster's instance type (the InstanceType custom
// resource, or the built-in defaultinstancetype when the cluster has no
// object of that name).
type InstanceType struct {
	Name         string                `json:"name"`
	NodeSelector map[string]string     `json:"nodeSelector,omitempty"`
	Resources    InstanceTypeResources `json:"resources"`
	// BuiltIn marks defaultinstancetype when no object replaces it.
	BuiltIn bool `json:"builtIn,omitempty"`
}

// InstanceTypeResources are requests and limits: cpu and memory in both,
// nvidia.com/gpu in limits only.
type InstanceTypeResources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// NodeFacts are one node's capacity, as the agent reports it.
type NodeFacts struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Allocatable cpu, memory and nvidia.com/gpu, as Kubernetes quantities.
	Allocatable map[string]string `json:"allocatable"`
	Ready       bool              `json:"ready"`
}
