package framework

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/api/training/v1alpha1"
)

// PyTorchPort is Azure ML's MASTER_PORT.
const PyTorchPort = 6105

// pytorch sets what torch.distributed's env:// rendezvous reads: the
// master's address and the world's size per pod, the ranks per process.
// No GLOO_SOCKET_IFNAME: gloo binds the address the pod's host name resolves
// to, which the pod's /etc/hosts maps to the pod's IP, one every other pod
// reaches (on the local node, a loopback address of the pod's own). Naming
// an interface would be wrong there: "lo" gives 127.0.0.1, which each pod
// reaches as itself.
type pytorch struct{}

func (pytorch) Name() string     { return "pytorch" }
func (pytorch) DefaultPort() int { return PyTorchPort }

func (pytorch) Validate(d *v1alpha1.Distribution, _ int) error {
	return checkCounts("pytorch", d, true, false)
}

func (pytorch) PodEnv(w World, instance int) []corev1.EnvVar {
	return []corev1.EnvVar{
		env("MASTER_ADDR", w.Host(0)),
		env("MASTER_PORT", w.Port),
		env("WORLD_SIZE", w.Size()),
		env("NODE_RANK", instance),
		env(EnvNodeRank, instance),
	}
}

func (pytorch) ProcessEnv(w World, instance, local int) map[string]string {
	return map[string]string{
		"RANK":             strconv.Itoa(w.Rank(instance, local)),
		"LOCAL_RANK":       strconv.Itoa(local),
		"LOCAL_WORLD_SIZE": strconv.Itoa(w.ProcessesPerInstance),
	}
}

func (pytorch) Ports(w World) []corev1.ContainerPort {
	return []corev1.ContainerPort{{Name: "pytorch", ContainerPort: int32(w.Port), Protocol: corev1.ProtocolTCP}}
}
