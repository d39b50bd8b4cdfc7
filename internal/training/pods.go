package training

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/training/framework"
	"outpost.dev/outpost/internal/wrapper"
)

// The layout of a job's pods, which the job's wrapper (outpost job run)
// relies on.
const (
	// Root is where the job's own volume is mounted in its container.
	Root = "/azureml"

	VolumeName      = "azureml"
	ShmVolumeName   = "dshm"
	InstallName     = wrapper.InstallName
	JobName         = "job"
	EnvJobRoot      = "OUTPOST_JOB_ROOT"
	EnvOutpostImage = "OUTPOST_IMAGE"
)

// PodName is the name of instance i's pod.
func PodName(job string, i int) string { return job + "-" + strconv.Itoa(i) }

// hostname is instance i's host name: the pod's name, cut to a DNS label
// when it is longer (job names may take all 63 characters).
func hostname(job string, i int) string {
	suffix := "-" + strconv.Itoa(i)
	if len(job)+len(suffix) > 63 {
		job = strings.TrimRight(job[:63-len(suffix)], "-")
	}
	return job + suffix
}

// hosts are the names the instances reach each other by. A world of one
// reaches itself by its own host name, which the pod's /etc/hosts holds;
// larger worlds use host.subdomain names, which resolve through the
// headless Service that multi-instance jobs get (ensureService), and on the
// pod itself through its /etc/hosts.
func hosts(job *v1alpha1.TrainingJob) []string {
	n := int(job.Spec.InstanceCount)
	out := make([]string, n)
	for i := range n {
		out[i] = hostname(job.Name, i)
		if n > 1 {
			out[i] += "." + job.Name
		}
	}
	return out
}

// podPlan is everything a pod of the job is made of besides its index and
// node.
type podPlan struct {
	image        string // the outpost image, for the install init container
	instanceType amlarcv1alpha1.InstanceTypeSpec
	plugin       framework.Plugin
	world        framework.World
	shm          resource.Quantity

	// wrapperKey is the image's binary's sha256 ("" for the running
	// binary's); copies says which nodes hold that binary already: pods
	// there go without the install container.
	wrapperKey string
	copies     *wrapper.Copies
	// copyWrapper: each pod copies the wrapper for itself (the namespace
	// refuses the nodes' copy).
	copyWrapper bool
}

// buildPod makes instance i's pod, bound to node.
func buildPod(job *v1alpha1.TrainingJob, i int, node string, p podPlan) *corev1.Pod {
	var inits []corev1.Container
	var wrapperVolumes []corev1.Volume
	var wrapperMounts []corev1.VolumeMount
	switch {
	case p.copyWrapper:
		var install corev1.Container
		install, wrapperVolumes, wrapperMounts = wrapper.CopyPod(p.image)
		inits = append(inits, install)
	case p.wrapperKey == "":
		var install corev1.Container
		install, wrapperVolumes, wrapperMounts = wrapper.Pod(p.image)
		inits = append(inits, install)
	case p.copies.Has(node, p.wrapperKey):
		wrapperVolumes, wrapperMounts = wrapper.InstalledPod(p.wrapperKey)
	default:
		var install corev1.Container
		install, wrapperVolumes, wrapperMounts = wrapper.KeyedPod(p.image, p.wrapperKey)
		inits = append(inits, install)
	}
	mounts := append([]corev1.VolumeMount{{Name: VolumeName, MountPath: Root}}, wrapperMounts...)
	env := []corev1.EnvVar{{Name: EnvJobRoot, Value: Root}}
	env = append(env, framework.Env(p.plugin.Name(), p.world, i)...)
	env = append(env, p.plugin.PodEnv(p.world, i)...)

	spec := corev1.PodSpec{
		NodeName:      node,
		NodeSelector:  maps.Clone(p.instanceType.NodeSelector),
		RestartPolicy: corev1.RestartPolicyNever,
		// The job talks to the workspace with its own credential, never to
		// the cluster's API.
		AutomountServiceAccountToken: new(false),
		// The job's environment is its own: no variables for every Service
		// of the namespace.
		EnableServiceLinks: new(false),
		Hostname:           hostname(job.Name, i),
		Subdomain:          job.Name,
		Volumes: append([]corev1.Volume{
			{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: ShmVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				Medium: corev1.StorageMediumMemory, SizeLimit: new(p.shm.DeepCopy()),
			}}},
		}, wrapperVolumes...),
		InitContainers: inits,
		Containers: []corev1.Container{{
			Name:    JobName,
			Image:   job.Spec.Image,
			Command: []string{wrapper.Path, "job", "run"},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: job.Spec.SecretName},
			}}},
			Env:       env,
			Ports:     p.plugin.Ports(p.world),
			Resources: jobResources(p.instanceType),
			VolumeMounts: append(mounts, corev1.VolumeMount{
				Name: ShmVolumeName, MountPath: "/dev/shm",
			}),
			// The wrapper writes "exit code N: <end of the log>" there.
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		}},
	}
	if job.Spec.TimeoutSeconds > 0 {
		spec.ActiveDeadlineSeconds = new(job.Spec.TimeoutSeconds)
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      PodName(job.Name, i),
			Namespace: job.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelJob:      job.Name,
				v1alpha1.LabelInstance: strconv.Itoa(i),
			},
			// No blockOwnerDeletion: setting it needs update on
			// trainingjobs/finalizers where OwnerReferencesPermissionEnforcement
			// is on (OpenShift), and nothing waits on a foreground deletion.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(),
				Kind:       v1alpha1.Kind,
				Name:       job.Name,
				UID:        job.UID,
				Controller: new(true),
			}},
		},
		Spec: spec,
	}
}

// instanceOf returns the instance index of one of job's pods, -1 when the
// pod is not one of them.
func instanceOf(job *v1alpha1.TrainingJob, pod *corev1.Pod) int {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.UID != job.UID {
		return -1
	}
	i, err := strconv.Atoi(pod.Labels[v1alpha1.LabelInstance])
	if err != nil || i < 0 || i >= int(job.Spec.InstanceCount) || pod.Name != PodName(job.Name, i) {
		return -1
	}
	return i
}

// describeJob names a job in logs.
func describeJob(job *v1alpha1.TrainingJob) string {
	return fmt.Sprintf("%s/%s", job.Namespace, job.Name)
}
