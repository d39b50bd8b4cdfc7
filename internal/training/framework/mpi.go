package framework

import (
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/api/training/v1alpha1"
)

// MPIPort is the master node's port that Azure ML advertises in
// AZ_BATCH_MASTER_NODE.
const MPIPort = 6105

// mpi describes the Open MPI rank variables of each process. The wrapper of
// instance 0 launches the processes with a real mpirun across the pods
// (internal/jobrunner/mpi.go), which sets them itself; these are what a
// process sees where no mpirun starts it.
type mpi struct{}

func (mpi) Name() string     { return "mpi" }
func (mpi) DefaultPort() int { return MPIPort }

func (mpi) Validate(d *v1alpha1.Distribution, _ int) error {
	return checkCounts("mpi", d, true, false)
}

func (mpi) PodEnv(w World, instance int) []corev1.EnvVar {
	return []corev1.EnvVar{
		env("AZ_BATCH_MASTER_NODE", net.JoinHostPort(w.Host(0), strconv.Itoa(w.Port))),
		env("AZ_BATCHAI_MPI_MASTER_NODE", w.Host(0)),
		env(EnvNodeRank, instance),
	}
}

func (mpi) ProcessEnv(w World, instance, local int) map[string]string {
	return map[string]string{
		"OMPI_COMM_WORLD_RANK":       strconv.Itoa(w.Rank(instance, local)),
		"OMPI_COMM_WORLD_SIZE":       strconv.Itoa(w.Size()),
		"OMPI_COMM_WORLD_LOCAL_RANK": strconv.Itoa(local),
		"OMPI_COMM_WORLD_LOCAL_SIZE": strconv.Itoa(w.ProcessesPerInstance),
	}
}

func (mpi) Ports(w World) []corev1.ContainerPort {
	return []corev1.ContainerPort{{Name: "mpi", ContainerPort: int32(w.Port), Protocol: corev1.ProtocolTCP}}
}
