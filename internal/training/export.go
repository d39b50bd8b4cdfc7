package training

import (
	"errors"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
)

// ResolveInstanceType finds name ("" meaning defaultinstancetype, the
// built-in one unless an object replaces it) among the cluster's
// InstanceTypes, as jobs resolve theirs. The inference operator places
// deployments' pods by the same rules.
func ResolveInstanceType(name string, objs []amlarcv1alpha1.InstanceType) (amlarcv1alpha1.InstanceTypeSpec, error) {
	return resolveInstanceType(name, objs)
}

// IsInstanceTypeNotFound tells whether err is ResolveInstanceType's answer
// for a name the cluster does not have; its message lists those it has.
func IsInstanceTypeNotFound(err error) bool {
	var nf errInstanceTypeNotFound
	return errors.As(err, &nf)
}
