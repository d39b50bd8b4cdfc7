// Package v1alpha1 is the InstanceType custom resource of the Azure ML
// extension (instancetypes.amlarc.azureml.com): named requests, limits and
// a node selector that jobs and deployments pick by name.
package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and version of the resource.
const (
	Group    = "amlarc.azureml.com"
	Version  = "v1alpha1"
	Kind     = "InstanceType"
	Resource = "instancetypes"
)

// GroupVersion is the API version of InstanceType.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// InstanceType is cluster-scoped.
type InstanceType struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              InstanceTypeSpec `json:"spec"`
}

// InstanceTypeSpec: cpu and memory requests and limits; nvidia.com/gpu as
// an integer under limits only.
type InstanceTypeSpec struct {
	NodeSelector map[string]string           `json:"nodeSelector,omitempty"`
	Resources    corev1.ResourceRequirements `json:"resources"`
}

// InstanceTypeList is a list of InstanceTypes.
type InstanceTypeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InstanceType `json:"items"`
}
