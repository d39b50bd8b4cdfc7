package training

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/training/v1alpha1"
)

// slimPod is the pod cache's transform. The operator watches every pod of
// the cluster, as a scheduler does, but of the pods that are not jobs' it
// needs only what they hold on their node: their node, phase, containers'
// resources and overhead. Keeping just that makes a cached pod a few hundred
// bytes instead of several kilobytes, which on a large cluster is most of
// the operator's memory. Jobs' pods are kept whole (less managed fields):
// their status is the jobs'.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a deletion's tombstone: left as it is
	}
	p.ManagedFields = nil
	if _, ours := p.Labels[v1alpha1.LabelJob]; ours {
		return p, nil
	}
	resources := func(cs []corev1.Container) []corev1.Container {
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
		}
		return out
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{
			NodeName:       p.Spec.NodeName,
			Overhead:       p.Spec.Overhead,
			InitContainers: resources(p.Spec.InitContainers),
			Containers:     resources(p.Spec.Containers),
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}
