package framework

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/api/training/v1alpha1"
)

// TensorFlowPort is the port of the first process of an instance; process
// local listens on TensorFlowPort+local, so processes sharing a pod do not
// collide.
const TensorFlowPort = 2222

// tensorflow writes TF_CONFIG for each process. The world's processes are
// the workers first (worker 0 is the chief of MultiWorkerMirroredStrategy),
// then the parameter servers.
type tensorflow struct{}

func (tensorflow) Name() string     { return "tensorflow" }
func (tensorflow) DefaultPort() int { return TensorFlowPort }

func (tensorflow) Validate(d *v1alpha1.Distribution, instances int) error {
	if err := checkCounts("tensorflow", d, true, true); err != nil {
		return err
	}
	if d == nil {
		return nil
	}
	ppi := max(int(d.ProcessCountPerInstance), 1)
	total := instances * ppi
	w, ps := int(d.WorkerCount), int(d.ParameterServerCount)
	switch {
	case w < 0 || ps < 0:
		return fmt.Errorf("tensorflow: worker_count %d and parameter_server_count %d must not be negative", w, ps)
	case w == 0 && ps >= total:
		return fmt.Errorf("tensorflow: parameter_server_count %d leaves no worker among %d processes", ps, total)
	case w != 0 && w+ps != total:
		return fmt.Errorf("tensorflow: worker_count %d + parameter_server_count %d must equal the %d processes of the job (instance_count %d x %d per instance)",
			w, ps, total, instances, ppi)
	}
	return nil
}

func (tensorflow) PodEnv(_ World, instance int) []corev1.EnvVar {
	return []corev1.EnvVar{env(EnvNodeRank, instance)}
}

// tfConfig is TF_CONFIG; a struct keeps its keys in a fixed order.
type tfConfig struct {
	Cluster     map[string][]string `json:"cluster"`
	Task        tfTask              `json:"task"`
	Environment string              `json:"environment"`
}

type tfTask struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

func (tensorflow) ProcessEnv(w World, instance, local int) map[string]string {
	workers := w.Size() - w.ParameterServers
	cluster := map[string][]string{}
	for i := range w.Instances {
		for l := range w.ProcessesPerInstance {
			role := "worker"
			if w.Rank(i, l) >= workers {
				role = "ps"
			}
			cluster[role] = append(cluster[role], net.JoinHostPort(w.Host(i), strconv.Itoa(w.Port+l)))
		}
	}
	task := tfTask{Type: "worker", Index: w.Rank(instance, local)}
	if task.Index >= workers {
		task = tfTask{Type: "ps", Index: task.Index - workers}
	}
	b, err := json.Marshal(tfConfig{Cluster: cluster, Task: task, Environment: "cloud"})
	if err != nil {
		// Maps of strings and plain structs always marshal.
		panic(err)
	}
	return map[string]string{"TF_CONFIG": string(b)}
}

func (tensorflow) Ports(w World) []corev1.ContainerPort {
	var ports []corev1.ContainerPort
	for l := range w.ProcessesPerInstance {
		ports = append(ports, corev1.ContainerPort{Name: fmt.Sprintf("tf-%d", l), ContainerPort: int32(w.Port + l), Protocol: corev1.ProtocolTCP})
	}
	return ports
}
