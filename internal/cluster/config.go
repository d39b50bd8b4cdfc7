// Package cluster runs a local Kubernetes cluster: etcd, the upstream
// kube-apiserver, kube-controller-manager and kube-scheduler, and Outpost's
// process-based node, as background processes whose state lives in one directory.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"outpost.dev/outpost/internal/atomicfile"
)

// Config says where a cluster lives and which addresses it takes. It is saved
// in the cluster directory by Up, so later commands need only the directory.
type Config struct {
	Dir           string `json:"dir"`
	APIPort       int    `json:"apiPort"`
	PodCIDR       string `json:"podCIDR"`
	ServiceCIDR   string `json:"serviceCIDR"`
	NodePortRange string `json:"nodePortRange"`
	NodeName      string `json:"nodeName"`
	// KubeBinDir holds kube-apiserver, kube-controller-manager, kube-scheduler and etcd.
	KubeBinDir string `json:"kubeBinDir"`
	// Outpost is the binary that runs the node agent and the container init.
	Outpost string `json:"outpost"`
	// ResolvConf is the resolver configuration the node hands to the
	// cluster DNS and to pods, as the kubelet's --resolv-conf; "" means
	// /etc/resolv.conf.
	ResolvConf string `json:"resolvConf,omitempty"`
	// Nodes is how many node agents run (0 means 1): the first is NodeName,
	// the others NodeName-1, NodeName-2, ... (nodes.go).
	Nodes int `json:"nodes,omitempty"`
	// NodeCPU and NodeMemory are each node's capacity (quantities); unset,
	// the nodes split the machine's CPUs and memory evenly.
	NodeCPU    string `json:"nodeCPU,omitempty"`
	NodeMemory string `json:"nodeMemory,omitempty"`
	// NodeLabels are labels of the nodes besides the standard ones, by
	// node name.
	NodeLabels map[string]map[string]string `json:"nodeLabels,omitempty"`
}

// Defaults fills what the user left unset.
func (c *Config) Defaults() {
	if c.APIPort == 0 {
		c.APIPort = 6443
	}
	if c.PodCIDR == "" {
		c.PodCIDR = "127.244.0.0/16"
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = "127.96.0.0/16"
	}
	if c.NodePortRange == "" {
		c.NodePortRange = "30000-32767"
	}
	if c.NodeName == "" {
		c.NodeName = "outpost-node"
	}
	if c.Nodes == 0 {
		c.Nodes = 1
	}
}

// Validate reports the first setting that cannot work, saying what is allowed.
func (c *Config) Validate() error {
	if c.APIPort < 1 || c.APIPort+len(portRoles) > 65535 {
		return fmt.Errorf("--api-port %d: must be between 1 and %d (the cluster uses it and the %d ports after it)", c.APIPort, 65535-len(portRoles), len(portRoles)-1)
	}
	for _, f := range []struct{ flag, v string }{{"--pod-cidr", c.PodCIDR}, {"--service-cidr", c.ServiceCIDR}} {
		ip, n, err := net.ParseCIDR(f.v)
		if err != nil || ip.To4() == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s %q: must be an IPv4 CIDR inside 127.0.0.0/8 (pods and services of the local node live on loopback addresses)", f.flag, f.v)
		}
		if ones, _ := n.Mask.Size(); ones < 12 || ones > 24 {
			return fmt.Errorf("%s %q: prefix length must be between /12 and /24", f.flag, f.v)
		}
	}
	_, pods, _ := net.ParseCIDR(c.PodCIDR)
	_, svcs, _ := net.ParseCIDR(c.ServiceCIDR)
	if pods.Contains(svcs.IP) || svcs.Contains(pods.IP) {
		return fmt.Errorf("--pod-cidr %s and --service-cidr %s overlap; give them distinct ranges", c.PodCIDR, c.ServiceCIDR)
	}
	if pods.Contains(net.IPv4(127, 0, 0, 1)) || svcs.Contains(net.IPv4(127, 0, 0, 1)) {
		return fmt.Errorf("pod and service CIDRs must not contain 127.0.0.1, which the control plane uses")
	}
	if _, _, err := ParsePortRange(c.NodePortRange); err != nil {
		return err
	}
	if c.NodeName == "" || strings.ContainsAny(c.NodeName, "/ ") {
		return fmt.Errorf("--node-name %q: must be a DNS subdomain name", c.NodeName)
	}
	return c.validateNodes()
}

// ParsePortRange parses "low-high".
func ParsePortRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return 0, 0, fmt.Errorf("--node-port-range %q: must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535", s)
	}
	return l, h, nil
}

// portRoles are the ports a cluster takes, from APIPort upwards, in this order.
var portRoles = []string{"kube-apiserver", "etcd (client)", "etcd (peer)", "node agent", "kube-controller-manager", "kube-scheduler"}

// Port returns the port of a role named in portRoles.
func (c *Config) Port(role string) int {
	for i, r := range portRoles {
		if r == role {
			return c.APIPort + i
		}
	}
	panic("unknown port role " + role)
}

// Paths inside the cluster directory.
func (c *Config) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

// KubeconfigPath is the admin kubeconfig users point kubectl at.
func (c *Config) KubeconfigPath() string { return c.path("kubeconfig") }

// LogPath is the log file of a component.
func (c *Config) LogPath(component string) string { return c.path("logs", component+".log") }

func (c *Config) save() error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	// Replaced whole (a process starting never reads half of it), 0600
	// whatever mode an older file had.
	return atomicfile.Write(c.path("cluster.json"), data, 0o600)
}

// ErrNoCluster is returned when a directory holds no cluster.
var ErrNoCluster = errors.New("no cluster")

// Load reads the configuration a cluster was started with.
func Load(dir string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (start one with `outpost cluster up`)", ErrNoCluster, dir)
	}
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "cluster.json"), err)
	}
	return &c, nil
}

// FindKubeBinDir locates the upstream binaries: the given directory, then
// $OUTPOST_KUBE_BIN_DIR, then .cache/kube/bin next to the bin/ folder the outpost
// binary was built into (the repository layout).
func FindKubeBinDir(given, outpost string) (string, error) {
	candidates := []string{given, os.Getenv("OUTPOST_KUBE_BIN_DIR")}
	if outpost != "" {
		candidates = append(candidates, filepath.Join(filepath.Dir(outpost), "..", ".cache", "kube", "bin"))
	}
	var tried []string
	for _, d := range candidates {
		if d == "" {
			continue
		}
		tried = append(tried, d)
		if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err == nil {
			return filepath.Abs(d)
		}
		if given != "" {
			break
		}
	}
	return "", fmt.Errorf("the upstream Kubernetes binaries (kube-apiserver, kube-controller-manager, kube-scheduler, etcd) are not in %s; build them once with `make kube` (upstream/build.sh) or point --kube-bin-dir at them", strings.Join(tried, ", "))
}
