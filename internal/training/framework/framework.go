// Package framework wires the processes of a distributed training job, one
// plugin per framework (pytorch, tensorflow, mpi), as Kubeflow Trainer v2
// does: the operator asks a job's plugin for the settings of each pod, and
// the job's wrapper asks the same plugin for the environment of each process
// it starts. Neither branches on the framework; a new framework is a new
// plugin registered here.
package framework

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/api/training/v1alpha1"
)

// World is the shape of a job's processes: Instances pods, each running
// ProcessesPerInstance processes. Global rank = instance *
// ProcessesPerInstance + local rank.
type World struct {
	Instances            int
	ProcessesPerInstance int
	// Hosts are the instances' stable host names, by instance index.
	Hosts []string
	// Port is the framework's rendezvous port (its DefaultPort unless the
	// operator chose another).
	Port int
	// ParameterServers is how many of the world's processes are TensorFlow
	// parameter servers (the last ones); 0 for the other frameworks.
	ParameterServers int
}

// Size is the number of processes in the world.
func (w World) Size() int { return w.Instances * w.ProcessesPerInstance }

// Rank is the global rank of process local of instance.
func (w World) Rank(instance, local int) int { return instance*w.ProcessesPerInstance + local }

// Host returns the host name of instance i, "" when the world has none.
func (w World) Host(i int) string {
	if i < 0 || i >= len(w.Hosts) {
		return ""
	}
	return w.Hosts[i]
}

// Plugin is one framework's wiring.
type Plugin interface {
	// Name is the distribution type the plugin serves ("" for the plain
	// command).
	Name() string
	// DefaultPort is the port World.Port takes when the operator sets
	// none; 0 when the framework listens on nothing.
	DefaultPort() int
	// Validate refuses a distribution the plugin cannot wire for instances
	// instances, saying what is allowed.
	Validate(d *v1alpha1.Distribution, instances int) error
	// PodEnv is set by the operator on every container of instance's pod.
	PodEnv(w World, instance int) []corev1.EnvVar
	// ProcessEnv is set by the wrapper for process local of instance.
	ProcessEnv(w World, instance, local int) map[string]string
	// Ports are declared on the job container of every pod.
	Ports(w World) []corev1.ContainerPort
}

var (
	mu      sync.RWMutex
	plugins = map[string]Plugin{}
)

// Register adds p under p.Name(); registering a name twice panics, as it can
// only be a programming error.
func Register(p Plugin) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := plugins[p.Name()]; dup {
		panic(fmt.Sprintf("framework: plugin %q registered twice", p.Name()))
	}
	plugins[p.Name()] = p
}

func init() {
	Register(plain{})
	Register(pytorch{})
	Register(tensorflow{})
	Register(mpi{})
}

// For returns the plugin of a distribution type: "" is the plain command.
// Types are matched without regard to case, as the CLI v2 accepts PyTorch.
func For(distributionType string) (Plugin, error) {
	mu.RLock()
	defer mu.RUnlock()
	if p, ok := plugins[strings.ToLower(distributionType)]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unknown distribution type %q: known types are %s", distributionType, strings.Join(typeNames(), ", "))
}

// Names returns the registered distribution types, sorted, "" excluded.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	return typeNames()
}

func typeNames() []string {
	var names []string
	for _, n := range slices.Sorted(maps.Keys(plugins)) {
		if n != "" {
			names = append(names, n)
		}
	}
	return names
}

// Environment variables the operator sets on the job container and the
// wrapper reads back (WorldFromEnv) to rebuild the job's World.
const (
	EnvFramework            = "OUTPOST_FRAMEWORK"              // distribution type, "" for none
	EnvInstanceIndex        = "OUTPOST_INSTANCE_INDEX"         // this pod's instance
	EnvInstanceCount        = "OUTPOST_INSTANCE_COUNT"         // World.Instances
	EnvProcessesPerInstance = "OUTPOST_PROCESSES_PER_INSTANCE" // World.ProcessesPerInstance
	EnvHosts                = "OUTPOST_HOSTS"                  // World.Hosts, comma-separated
	EnvPort                 = "OUTPOST_FRAMEWORK_PORT"         // World.Port
	EnvParameterServers     = "OUTPOST_PARAMETER_SERVERS"      // World.ParameterServers
)

// NewWorld validates d for instances instances with p and returns the world
// it makes, hosts being the instances' host names.
func NewWorld(p Plugin, d *v1alpha1.Distribution, instances int, hosts []string) (World, error) {
	if instances < 1 {
		return World{}, fmt.Errorf("instance count %d: a job runs on at least 1 instance", instances)
	}
	if len(hosts) != instances {
		return World{}, fmt.Errorf("%d host names for %d instances", len(hosts), instances)
	}
	if err := p.Validate(d, instances); err != nil {
		return World{}, err
	}
	w := World{Instances: instances, ProcessesPerInstance: 1, Hosts: slices.Clone(hosts), Port: p.DefaultPort()}
	if d != nil {
		if d.ProcessCountPerInstance > 0 {
			w.ProcessesPerInstance = int(d.ProcessCountPerInstance)
		}
		w.ParameterServers = int(d.ParameterServerCount)
	}
	return w, nil
}

// Env returns the variables that let WorldFromEnv rebuild w on instance's
// pod, for the plugin named framework.
func Env(framework string, w World, instance int) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: EnvFramework, Value: framework},
		{Name: EnvInstanceIndex, Value: strconv.Itoa(instance)},
		{Name: EnvInstanceCount, Value: strconv.Itoa(w.Instances)},
		{Name: EnvProcessesPerInstance, Value: strconv.Itoa(w.ProcessesPerInstance)},
		{Name: EnvHosts, Value: strings.Join(w.Hosts, ",")},
		{Name: EnvPort, Value: strconv.Itoa(w.Port)},
		{Name: EnvParameterServers, Value: strconv.Itoa(w.ParameterServers)},
	}
}

// WorldFromEnv is Env read back by the wrapper: the plugin, the world and
// this pod's instance index.
func WorldFromEnv(getenv func(string) string) (Plugin, World, int, error) {
	p, err := For(getenv(EnvFramework))
	if err != nil {
		return nil, World{}, 0, fmt.Errorf("%s: %w", EnvFramework, err)
	}
	var errs []error
	num := func(name string, min int) int {
		v := getenv(name)
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number of at least %d", name, v, min))
		}
		return n
	}
	w := World{
		Instances:            num(EnvInstanceCount, 1),
		ProcessesPerInstance: num(EnvProcessesPerInstance, 1),
		Port:                 num(EnvPort, 0),
		ParameterServers:     num(EnvParameterServers, 0),
	}
	instance := num(EnvInstanceIndex, 0)
	if h := getenv(EnvHosts); h != "" {
		w.Hosts = strings.Split(h, ",")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, World{}, 0, err
	}
	if len(w.Hosts) != w.Instances {
		return nil, World{}, 0, fmt.Errorf("%s names %d hosts for %d instances", EnvHosts, len(w.Hosts), w.Instances)
	}
	if instance >= w.Instances {
		return nil, World{}, 0, fmt.Errorf("%s=%d is not below %s=%d", EnvInstanceIndex, instance, EnvInstanceCount, w.Instances)
	}
	return p, w, instance, nil
}

// checkCounts refuses negative counts and the settings of other frameworks.
func checkCounts(framework string, d *v1alpha1.Distribution, allowPerInstance, allowTF bool) error {
	if d == nil {
		return nil
	}
	var errs []error
	if d.ProcessCountPerInstance < 0 {
		errs = append(errs, fmt.Errorf("%s: process_count_per_instance %d is negative", framework, d.ProcessCountPerInstance))
	}
	if d.ProcessCountPerInstance > 0 && !allowPerInstance {
		errs = append(errs, fmt.Errorf("%s: process_count_per_instance is not a %s setting (it has worker_count and parameter_server_count)", framework, framework))
	}
	if (d.WorkerCount != 0 || d.ParameterServerCount != 0) && !allowTF {
		errs = append(errs, fmt.Errorf("%s: worker_count and parameter_server_count are tensorflow settings; %s takes process_count_per_instance", framework, framework))
	}
	return errors.Join(errs...)
}

func env(name string, v any) corev1.EnvVar {
	return corev1.EnvVar{Name: name, Value: fmt.Sprint(v)}
}

// EnvNodeRank is the node rank every distributed framework's pods get, as
// Azure ML sets it.
const EnvNodeRank = "AZUREML_CR_NODE_RANK"

// plain runs the command as it is: no variables, no ports.
type plain struct{}

func (plain) Name() string     { return "" }
func (plain) DefaultPort() int { return 0 }
func (plain) Validate(d *v1alpha1.Distribution, _ int) error {
	if d != nil && d.Type != "" {
		return fmt.Errorf("the plain command plugin got a %q distribution", d.Type)
	}
	return nil
}
func (plain) PodEnv(World, int) []corev1.EnvVar            { return nil }
func (plain) ProcessEnv(World, int, int) map[string]string { return nil }
func (plain) Ports(World) []corev1.ContainerPort           { return nil }
