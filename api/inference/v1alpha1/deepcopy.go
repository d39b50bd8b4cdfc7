package v1alpha1

import (
	"maps"

	"k8s.io/apimachinery/pkg/runtime"
)

// Written by hand, as the other groups' are: every pointer, map and slice is
// copied, so a copy shares no memory with its original (deepcopy_test.go).

// DeepCopyInto copies in into out.
func (in *OnlineEndpoint) DeepCopyInto(out *OnlineEndpoint) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Traffic = maps.Clone(in.Spec.Traffic)
}

// DeepCopy returns a copy of in.
func (in *OnlineEndpoint) DeepCopy() *OnlineEndpoint {
	if in == nil {
		return nil
	}
	out := new(OnlineEndpoint)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *OnlineEndpoint) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyInto copies in into out.
func (in *OnlineEndpointList) DeepCopyInto(out *OnlineEndpointList) {
	*out = *in
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]OnlineEndpoint, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of in.
func (in *OnlineEndpointList) DeepCopy() *OnlineEndpointList {
	if in == nil {
		return nil
	}
	out := new(OnlineEndpointList)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *OnlineEndpointList) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyInto copies in into out.
func (in *OnlineDeployment) DeepCopyInto(out *OnlineDeployment) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if r := in.Spec.Resources; r != nil {
		out.Spec.Resources = &Resources{Requests: maps.Clone(r.Requests), Limits: maps.Clone(r.Limits)}
	}
	if c := in.Spec.InferenceConfig; c != nil {
		cc := *c
		out.Spec.InferenceConfig = &cc
	}
	out.Spec.EnvironmentVariables = maps.Clone(in.Spec.EnvironmentVariables)
	if t := in.Status.LastScaleTime; t != nil {
		out.Status.LastScaleTime = t.DeepCopy()
	}
}

// DeepCopy returns a copy of in.
func (in *OnlineDeployment) DeepCopy() *OnlineDeployment {
	if in == nil {
		return nil
	}
	out := new(OnlineDeployment)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *OnlineDeployment) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyInto copies in into out.
func (in *OnlineDeploymentList) DeepCopyInto(out *OnlineDeploymentList) {
	*out = *in
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]OnlineDeployment, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of in.
func (in *OnlineDeploymentList) DeepCopy() *OnlineDeploymentList {
	if in == nil {
		return nil
	}
	out := new(OnlineDeploymentList)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *OnlineDeploymentList) DeepCopyObject() runtime.Object { return in.DeepCopy() }
