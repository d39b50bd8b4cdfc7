package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var (
	// SchemeBuilder registers the endpoint and deployment types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the group's types to a scheme, for typed clients and
	// controller-runtime caches.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &OnlineEndpoint{}, &OnlineEndpointList{}, &OnlineDeployment{}, &OnlineDeploymentList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
