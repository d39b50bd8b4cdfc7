package extension

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	trainingv1alpha1 "outpost.dev/outpost/api/training/v1alpha1"
)

const (
	trainingOperatorName = "training-operator"
	trainingProbePort    = 8081

	// TrainingProbeFlag is the flag of `outpost extension training-operator`
	// that takes the address of its /healthz endpoint.
	TrainingProbeFlag = "health-probe-bind-address"
)

// trainingOperator renders the operator that runs TrainingJobs. It is the
// scheduler of the jobs' pods (it binds them to nodes itself, all of a job
// at once), so it reads every pod and node of the cluster.
func (r *renderer) trainingOperator() {
	name := trainingOperatorName
	r.serviceAccount(name)
	rbac := rbacv1.SchemeGroupVersion.String()
	read := []string{"get", "list", "watch"}
	r.rbac = append(r.rbac,
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "ClusterRole"},
			ObjectMeta: r.clusterMeta(name),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{trainingv1alpha1.Group}, Resources: []string{trainingv1alpha1.Resource, trainingv1alpha1.Resource + "/status"},
					Verbs: []string{"get", "list", "watch", "update", "patch"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: read},
				{APIGroups: []string{amlarcv1alpha1.Group}, Resources: []string{amlarcv1alpha1.Resource}, Verbs: read},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
				// Only to check that a job's credentials exist before its
				// pods are made; never listed, never cached.
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbac, Kind: "ClusterRoleBinding"},
			ObjectMeta: r.clusterMeta(name),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.o.Name + "-" + name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: Namespace}},
		},
	)

	field := func(env, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
		}}
	}
	pod := corev1.PodSpec{
		ServiceAccountName: name,
		Containers: []corev1.Container{{
			Name:  name,
			Image: r.o.Image,
			Args:  []string{"extension", "training-operator", fmt.Sprintf("--%s=$(POD_IP):%d", TrainingProbeFlag, trainingProbePort)},
			Env: []corev1.EnvVar{
				// The jobs' install init container runs the operator's own
				// image, so that a job's wrapper is the operator's version.
				{Name: "OUTPOST_IMAGE", Value: r.o.Image},
				field("POD_NAMESPACE", "metadata.namespace"),
				field("POD_IP", "status.podIP"),
			},
			Ports: []corev1.ContainerPort{{Name: "healthz", ContainerPort: trainingProbePort, Protocol: corev1.ProtocolTCP}},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromString("healthz"),
				}},
				PeriodSeconds: 2,
			},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("20m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			}},
		}},
	}
	r.workloads = append(r.workloads, &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: r.meta(name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			// Never two at once, not even during an update: both would
			// admit jobs from their own view of the nodes' room.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: r.podTemplate(name, pod),
		},
	})
}
