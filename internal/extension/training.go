package extension

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

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
	read := []string{"get", "list", "watch"}
	r.clusterRole(name,
		rbacv1.PolicyRule{APIGroups: []string{trainingv1alpha1.Group}, Resources: []string{trainingv1alpha1.Resource, trainingv1alpha1.Resource + "/status"},
			Verbs: []string{"get", "list", "watch", "update", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		// The headless Service of a multi-instance job: its instances' names.
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{amlarcv1alpha1.Group}, Resources: []string{amlarcv1alpha1.Resource}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		// Only to check that a job's credentials exist before its pods
		// are made; never listed, never cached.
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
	)
	r.component(component{
		name: name,
		args: []string{"extension", "training-operator", fmt.Sprintf("--%s=$(POD_IP):%d", TrainingProbeFlag, trainingProbePort)},
		// The jobs' install init container runs the operator's own image,
		// so that a job's wrapper is the operator's version.
		env:  []corev1.EnvVar{{Name: "OUTPOST_IMAGE", Value: r.o.Image}},
		port: corev1.ContainerPort{Name: "healthz", ContainerPort: trainingProbePort, Protocol: corev1.ProtocolTCP},
		cpu:  "20m", memory: "64Mi",
		// Never two at once, not even during an update: both would admit
		// jobs from their own view of the nodes' room.
		strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
	})
}
