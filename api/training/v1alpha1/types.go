// Package v1alpha1 is the TrainingJob custom resource
// (trainingjobs.training.outpost.dev): a workspace job on a cluster, which
// the cluster agent creates and the training operator runs.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and version of the resource.
const (
	Group    = "training.outpost.dev"
	Version  = "v1alpha1"
	Kind     = "TrainingJob"
	Resource = "trainingjobs"
)

// GroupVersion is the API version of TrainingJob.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Labels and annotations on TrainingJobs, their Secrets and their pods.
const (
	// LabelJob is the TrainingJob's name on everything made for it.
	LabelJob = "training.outpost.dev/job"
	// LabelInstance is a pod's instance index (0..InstanceCount-1).
	LabelInstance = "training.outpost.dev/instance"
	// AnnotationJobName is the workspace job's name, which may not be a
	// valid object name (Azure ML names have underscores).
	AnnotationJobName = "training.outpost.dev/job-name"
)

// Keys of the credentials Secret (SecretName), which the job's pods get as
// environment variables.
const (
	EnvJobURL   = "OUTPOST_JOB_URL"   // the job-run API base of this job
	EnvJobToken = "OUTPOST_JOB_TOKEN" // its credential
	EnvJobCA    = "OUTPOST_JOB_CA"    // PEM of the workspace's CA
	EnvProxy    = "OUTPOST_PROXY_HTTPS"
	EnvNoProxy  = "OUTPOST_PROXY_SKIP_RANGE"
)

// TrainingJob is a workspace job on this cluster.
type TrainingJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TrainingJobSpec   `json:"spec"`
	Status            TrainingJobStatus `json:"status,omitempty"`
}

// TrainingJobSpec says what to run and where.
type TrainingJobSpec struct {
	// JobID is the workspace's resource id of the job: reports name it.
	JobID string `json:"jobId"`
	// Image is the environment's image; the job's wrapper runs in it.
	Image string `json:"image"`
	// InstanceType names an InstanceType (defaultinstancetype when empty).
	InstanceType  string `json:"instanceType,omitempty"`
	InstanceCount int32  `json:"instanceCount"`
	// Distribution wires the processes of a distributed job (none: a
	// plain command).
	Distribution *Distribution `json:"distribution,omitempty"`
	ShmSize      string        `json:"shmSize,omitempty"`
	// TimeoutSeconds ends the job as Failed when it runs longer.
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
	// SecretName is the Secret in the job's namespace with the job's
	// credentials (the Env* keys).
	SecretName string `json:"secretName"`
	// Cancel ends the job's pods; the job becomes Canceled.
	Cancel bool `json:"cancel,omitempty"`
}

// Distribution is the CLI v2 distribution of a job.
type Distribution struct {
	Type                    string `json:"type"` // pytorch, mpi, tensorflow
	ProcessCountPerInstance int32  `json:"processCountPerInstance,omitempty"`
	WorkerCount             int32  `json:"workerCount,omitempty"`
	ParameterServerCount    int32  `json:"parameterServerCount,omitempty"`
}

// TrainingJobStatus is what the operator reports. Phase is one of
// api.ClusterJob* (Queued, Starting, Running, Succeeded, Failed, Canceled).
type TrainingJobStatus struct {
	Phase              string           `json:"phase,omitempty"`
	Reason             string           `json:"reason,omitempty"`
	Message            string           `json:"message,omitempty"`
	StartTime          *metav1.Time     `json:"startTime,omitempty"`
	CompletionTime     *metav1.Time     `json:"completionTime,omitempty"`
	Instances          []InstanceStatus `json:"instances,omitempty"`
	ObservedGeneration int64            `json:"observedGeneration,omitempty"`
}

// InstanceStatus is one pod of the job.
type InstanceStatus struct {
	Index    int32  `json:"index"`
	Pod      string `json:"pod"`
	Node     string `json:"node,omitempty"`
	Phase    string `json:"phase,omitempty"` // the pod's phase
	ExitCode *int32 `json:"exitCode,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// TrainingJobList is a list of TrainingJobs.
type TrainingJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrainingJob `json:"items"`
}
