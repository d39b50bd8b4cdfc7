package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"maps"
	"math/bits"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A cluster runs --nodes node agents on the one machine. The first keeps
// what a single node always had: the name --node-name, component "node"
// (run/node.json, logs/node.log), state directory node/, the node agent port
// of portRoles; node i > 0 is named <node-name>-i, component "node-i", state
// directory node-i/, and takes port APIPort+len(portRoles)+i-1. A single
// node has the whole pod CIDR and the machine's capacity; several split
// them (see nodes).

// nodeBlocks is how many pod ranges a multi-node cluster's pod CIDR is cut
// into, at least: a fixed number, so that adding nodes up to it leaves the
// ranges of the running ones as they are.
const nodeBlocks = 16

// maxNodePrefix is the longest prefix a node's pod range may have (13 pod
// addresses: the pool skips the network, .1 and the broadcast address).
const maxNodePrefix = 28

// reservedLabels are set by the node itself and cannot be configured.
var reservedLabels = []string{"kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch", "outpost.dev/node"}

// nodeSpec is one node as `up` starts it.
type nodeSpec struct {
	Index     int
	Name      string // the Node's name
	Component string // its supervised component
	Port      int    // its node API
	PodCIDR   string
	// CPU and Memory are its capacity; "" for the machine's (a single node
	// without --node-cpu and --node-memory, as always).
	CPU, Memory string
	Labels      map[string]string
}

// nodeCount is the number of nodes; clusters saved before --nodes have one.
func (c *Config) nodeCount() int { return max(1, c.Nodes) }

// NodeNames are the names of the cluster's nodes, the first one first.
func (c *Config) NodeNames() []string {
	names := make([]string, c.nodeCount())
	for i := range names {
		names[i] = c.nodeName(i)
	}
	return names
}

func (c *Config) nodeName(i int) string {
	if i == 0 {
		return c.NodeName
	}
	return fmt.Sprintf("%s-%d", c.NodeName, i)
}

// nodeComponent is the component running node i.
func nodeComponent(i int) string {
	if i == 0 {
		return "node"
	}
	return fmt.Sprintf("node-%d", i)
}

// nodeIndex tells which node a component runs, or -1 when it is no node.
func nodeIndex(component string) int {
	if component == "node" {
		return 0
	}
	rest, ok := strings.CutPrefix(component, "node-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 1 || strconv.Itoa(i) != rest {
		return -1
	}
	return i
}

// nodePort is the node API port of node i.
func (c *Config) nodePort(i int) int {
	if i == 0 {
		return c.Port("node agent")
	}
	return c.APIPort + len(portRoles) + i - 1
}

// lastPort is the highest port the cluster takes.
func (c *Config) lastPort() int { return c.nodePort(c.nodeCount() - 1) }

// nodes returns every node of the cluster with its settings.
func (c *Config) nodes() ([]nodeSpec, error) {
	n := c.nodeCount()
	cidrs, err := splitPodCIDR(c.PodCIDR, n)
	if err != nil {
		return nil, err
	}
	cpu, mem := c.NodeCPU, c.NodeMemory
	if n > 1 {
		machineCPU, machineMem := machineCapacity()
		if cpu == "" {
			cpu = resource.NewMilliQuantity(machineCPU*1000/int64(n), resource.DecimalSI).String()
		}
		if mem == "" {
			// Whole MiB, so that `kubectl describe` shows a readable figure.
			mem = resource.NewQuantity(machineMem/int64(n)/(1<<20)*(1<<20), resource.BinarySI).String()
		}
	}
	specs := make([]nodeSpec, n)
	for i := range specs {
		specs[i] = nodeSpec{Index: i, Name: c.nodeName(i), Component: nodeComponent(i), Port: c.nodePort(i),
			PodCIDR: cidrs[i], CPU: cpu, Memory: mem, Labels: c.NodeLabels[c.nodeName(i)]}
	}
	return specs, nil
}

// splitPodCIDR gives each of n nodes its pod range: the whole CIDR for one
// node; for several, the CIDR cut into nodeBlocks equal ranges (more when
// there are more nodes), node i taking range i.
func splitPodCIDR(cidr string, n int) ([]string, error) {
	if n == 1 {
		return []string{cidr}, nil
	}
	_, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("--pod-cidr %q: %w", cidr, err)
	}
	ones, _ := ipnet.Mask.Size()
	blocks := max(nodeBlocks, 1<<bits.Len(uint(n-1)))
	prefix := ones + bits.Len(uint(blocks-1))
	if prefix > maxNodePrefix {
		return nil, fmt.Errorf("--pod-cidr %s is too small for %d nodes: each node gets 1/%d of it, a /%d, and a node's range may be at most a /%d; give a larger range", cidr, n, blocks, prefix, maxNodePrefix)
	}
	base := binary.BigEndian.Uint32(ipnet.IP.To4())
	size := uint32(1) << (32 - prefix)
	out := make([]string, n)
	for i := range out {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+uint32(i)*size)
		out[i] = fmt.Sprintf("%s/%d", ip, prefix)
	}
	return out, nil
}

// machineCapacity is the machine's CPUs and memory in bytes, as the node
// agent counts them.
func machineCapacity() (cpus, memory int64) {
	cpus = int64(runtime.NumCPU())
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return cpus, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return cpus, kb * 1024
		}
	}
	return cpus, 0
}

// ParseNodeLabels reads --node-label values, each NODE:KEY=VALUE[,KEY=VALUE...]
// where NODE is a node's name or its index (0 is the first node), into
// labels by node name. Later values win.
func ParseNodeLabels(specs []string, nodeNames []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, spec := range specs {
		node, list, ok := strings.Cut(spec, ":")
		if !ok || node == "" || list == "" {
			return nil, fmt.Errorf("--node-label %q: must be NODE:KEY=VALUE[,KEY=VALUE...], NODE a node's name or index (0 to %d)", spec, len(nodeNames)-1)
		}
		name := node
		if i, err := strconv.Atoi(node); err == nil {
			if i < 0 || i >= len(nodeNames) {
				return nil, fmt.Errorf("--node-label %q: there is no node %d; the cluster has %d node(s), 0 to %d (%s)", spec, i, len(nodeNames), len(nodeNames)-1, strings.Join(nodeNames, ", "))
			}
			name = nodeNames[i]
		} else if !slices.Contains(nodeNames, node) {
			return nil, fmt.Errorf("--node-label %q: there is no node %q; the nodes are %s (or give their index, 0 to %d)", spec, node, strings.Join(nodeNames, ", "), len(nodeNames)-1)
		}
		for _, kv := range strings.Split(list, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("--node-label %q: %q is not KEY=VALUE", spec, kv)
			}
			if out[name] == nil {
				out[name] = map[string]string{}
			}
			out[name][k] = v
		}
	}
	return out, validateNodeLabels(out, nodeNames)
}

// validateNodeLabels checks that every label is of one of the nodes and a
// valid Kubernetes label the node does not set itself.
func validateNodeLabels(labels map[string]map[string]string, nodeNames []string) error {
	for _, node := range slices.Sorted(maps.Keys(labels)) {
		if !slices.Contains(nodeNames, node) {
			return fmt.Errorf("--node-label: there is no node %q; the nodes are %s", node, strings.Join(nodeNames, ", "))
		}
		for _, k := range slices.Sorted(maps.Keys(labels[node])) {
			v := labels[node][k]
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return fmt.Errorf("--node-label %s:%s=%s: key %q: %s", node, k, v, k, strings.Join(errs, "; "))
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				return fmt.Errorf("--node-label %s:%s=%s: value %q: %s", node, k, v, v, strings.Join(errs, "; "))
			}
			if slices.Contains(reservedLabels, k) {
				return fmt.Errorf("--node-label %s:%s=%s: the node sets %s itself; choose another key", node, k, v, k)
			}
		}
	}
	return nil
}

// validateNodes checks --nodes, --node-cpu, --node-memory and --node-label.
func (c *Config) validateNodes() error {
	if c.Nodes < 0 {
		return fmt.Errorf("--nodes %d: must be 1 or more", c.Nodes)
	}
	for _, q := range []struct{ flag, v string }{{"--node-cpu", c.NodeCPU}, {"--node-memory", c.NodeMemory}} {
		if q.v == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.v)
		if err != nil || v.Sign() <= 0 {
			return fmt.Errorf("%s %q: must be a positive quantity (such as 2, 500m for CPU; 4Gi, 512Mi for memory)", q.flag, q.v)
		}
	}
	if c.lastPort() > 65535 {
		return fmt.Errorf("--api-port %d with --nodes %d: the cluster takes ports %d-%d, past 65535; choose a lower --api-port", c.APIPort, c.nodeCount(), c.APIPort, c.lastPort())
	}
	if _, err := splitPodCIDR(c.PodCIDR, c.nodeCount()); err != nil {
		return err
	}
	return validateNodeLabels(c.NodeLabels, c.NodeNames())
}
