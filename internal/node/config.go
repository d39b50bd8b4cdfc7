// Package node is Outpost's node agent: it registers a Node, keeps it Ready,
// and runs the pods bound to it as host processes, each with its own loopback
// IP, its volumes at their mountPaths, probes, restarts and logs, the way the
// kubelet runs containers.
package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"outpost.dev/outpost/internal/atomicfile"
)

// Config is the node agent's configuration file.
type Config struct {
	Name        string `json:"name"`
	Kubeconfig  string `json:"kubeconfig"`
	Dir         string `json:"dir"`
	PodCIDR     string `json:"podCIDR"`
	ServiceCIDR string `json:"serviceCIDR"`
	// Port serves the kubelet API subset the apiserver calls (container logs).
	Port     int    `json:"port"`
	TLSCert  string `json:"tlsCert"`
	TLSKey   string `json:"tlsKey"`
	ClientCA string `json:"clientCA"`
	// APIServer is host:port of the apiserver, handed to pods as
	// KUBERNETES_SERVICE_HOST/PORT so in-cluster clients reach it directly.
	APIServer string `json:"apiServer"`
	// Outpost is the binary that runs container-init and the outpost image.
	Outpost string `json:"outpost"`
	// KubeBinDir holds the upstream binaries, agnhost among them: the
	// program of the agnhost image (internal/container's image shims).
	KubeBinDir string `json:"kubeBinDir,omitempty"`
	// ResolvConf is the host's resolver configuration, as the kubelet's
	// --resolv-conf: the cluster DNS forwards names outside the cluster
	// domain to its nameservers, and pods get its search domains (all of it
	// with dnsPolicy Default). "" means /etc/resolv.conf.
	ResolvConf string `json:"resolvConf,omitempty"`

	// CPU and Memory, when set, are the node's capacity (quantities) in
	// place of the machine's: a multi-node cluster splits the machine
	// between its nodes. GPUs, when set, is its nvidia.com/gpu in place of
	// what nvidia-smi lists.
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	GPUs   *int   `json:"gpus,omitempty"`
	// Labels are set on the Node besides the standard ones, at
	// registration and on every start (see ApplyLabels).
	Labels map[string]string `json:"labels,omitempty"`
	// NoClusterServices: the node serves neither the cluster DNS nor the
	// Service proxy. Both listen on addresses the whole machine shares, so
	// of the nodes of one machine only the first serves them, for all.
	NoClusterServices bool `json:"noClusterServices,omitempty"`
}

// applyCapacity puts the configured CPU, memory and GPUs in place of the
// machine's.
func (c Config) applyCapacity(r corev1.ResourceList) error {
	for _, q := range []struct {
		name  corev1.ResourceName
		value string
	}{{corev1.ResourceCPU, c.CPU}, {corev1.ResourceMemory, c.Memory}} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil || v.Sign() <= 0 {
			return fmt.Errorf("node %s: %s %q: must be a positive quantity", c.Name, q.name, q.value)
		}
		r[q.name] = v
	}
	if c.GPUs != nil {
		r["nvidia.com/gpu"] = *resource.NewQuantity(int64(*c.GPUs), resource.DecimalSI)
	}
	return nil
}

// Save writes the configuration.
func (c Config) Save(file string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	// Replaced whole (a process starting never reads half of it), 0600
	// whatever mode an older file had.
	return atomicfile.Write(file, data, 0o600)
}

// LoadConfig reads a configuration written by Save.
func LoadConfig(file string) (Config, error) {
	var c Config
	data, err := os.ReadFile(file)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}
