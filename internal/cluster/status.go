package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/internal/volume"
)

// ComponentStatus is one line of `outpost cluster status`.
type ComponentStatus struct {
	Name string `json:"name"`
	// Running: the component's process runs. State says more: running,
	// restarting (its supervisor waits to start it again) or stopped.
	Running       bool   `json:"running"`
	State         string `json:"state"`
	PID           int    `json:"pid,omitempty"`
	SupervisorPID int    `json:"supervisorPid,omitempty"`
	Restarts      int    `json:"restarts"`
	LastExit      string `json:"lastExit,omitempty"`
	Log           string `json:"log"`
}

// Status is what `outpost cluster status` reports.
type Status struct {
	Dir        string `json:"dir"`
	Server     string `json:"server"`
	Kubeconfig string `json:"kubeconfig"`
	Version    string `json:"kubernetesVersion,omitempty"`
	// NodeReady: every node is Ready.
	NodeReady  bool              `json:"nodeReady"`
	Pods       int               `json:"pods"`
	Components []ComponentStatus `json:"components"`
	// Nodes are the cluster's nodes, the first one first.
	Nodes []NodeStatus `json:"nodes"`
	// Error is set when the state of the processes could not be read.
	Error string `json:"error,omitempty"`
}

// NodeStatus is one node of `outpost cluster status`; what the apiserver
// says of it is left out while the apiserver does not answer.
type NodeStatus struct {
	Name      string            `json:"name"`
	Component string            `json:"component"`
	Ready     bool              `json:"ready"`
	PodCIDR   string            `json:"podCIDR"`
	CPU       string            `json:"cpu,omitempty"`
	Memory    string            `json:"memory,omitempty"`
	Pods      int               `json:"pods"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Running is true when every component is alive.
func (s Status) Running() bool {
	for _, c := range s.Components {
		if !c.Running {
			return false
		}
	}
	return len(s.Components) > 0
}

// Status looks at the processes and, when the apiserver runs, asks it about
// the node.
func (c *Config) Status(ctx context.Context) Status {
	st := Status{Dir: c.Dir, Server: c.serverURL(), Kubeconfig: c.KubeconfigPath()}
	for _, name := range c.components() {
		cs := ComponentStatus{Name: name, State: "stopped", Log: c.LogPath(name)}
		ps, err := c.state(name)
		if err != nil {
			st.Error = err.Error()
		}
		cs.Restarts, cs.LastExit = ps.rec.Restarts, ps.rec.LastExit
		if ps.supervised {
			cs.State, cs.SupervisorPID = "restarting", ps.rec.Supervisor.PID
		}
		if ps.running {
			cs.Running, cs.State, cs.PID = true, "running", ps.rec.Process.PID
		}
		st.Components = append(st.Components, cs)
	}
	specs, err := c.nodes()
	if err != nil {
		st.Error = err.Error()
	}
	for _, spec := range specs {
		st.Nodes = append(st.Nodes, NodeStatus{Name: spec.Name, Component: spec.Component, PodCIDR: spec.PodCIDR})
	}
	if !st.Components[1].Running {
		return st
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		return st
	}
	cfg.Timeout = 3 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return st
	}
	if v, err := client.Discovery().ServerVersion(); err == nil {
		st.Version = v.GitVersion
	}
	st.NodeReady = len(st.Nodes) > 0
	for i := range st.Nodes {
		ns := &st.Nodes[i]
		n, err := client.CoreV1().Nodes().Get(ctx, ns.Name, metav1.GetOptions{})
		if err != nil {
			st.NodeReady = false
			continue
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" {
				ns.Ready = cond.Status == "True"
			}
		}
		st.NodeReady = st.NodeReady && ns.Ready
		if q, ok := n.Status.Capacity[corev1.ResourceCPU]; ok {
			ns.CPU = q.String()
		}
		if q, ok := n.Status.Capacity[corev1.ResourceMemory]; ok {
			ns.Memory = q.String()
		}
		ns.Labels = n.Labels
	}
	if pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		st.Pods = len(pods.Items)
		for _, p := range pods.Items {
			for i := range st.Nodes {
				if st.Nodes[i].Name == p.Spec.NodeName {
					st.Nodes[i].Pods++
				}
			}
		}
	}
	return st
}

// Down stops every process of the cluster: the node first, so that it stops its
// pods, then the control plane. Each component goes with its supervisor, and
// only processes the supervisors recorded (pid and start time) get a signal.
// With purge the directory goes too.
func Down(c *Config, purge bool, out io.Writer) error {
	unlock, err := c.lock(func() { fmt.Fprintf(out, "waiting for another `outpost cluster` command on %s ...\n", c.Dir) })
	if err != nil {
		return err
	}
	defer unlock()
	var (
		mu   sync.Mutex
		any  bool
		errs []error
	)
	stop := func(name string) {
		stopped, err := c.stopComponent(name, stopGrace(name))
		if err == nil {
			if rerr := os.Remove(c.recordFile(name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
		mu.Lock()
		defer mu.Unlock()
		any = any || stopped
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The nodes first, all at once: each stops its pods meanwhile.
	names := append(c.components(), c.strayNodes()...)
	var wg sync.WaitGroup
	for i := len(names) - 1; i >= 0; i-- {
		name := names[i]
		if st, err := c.state(name); err != nil {
			errs = append(errs, err)
			continue
		} else if st.supervised || st.running {
			if nodeIndex(name) >= 0 {
				fmt.Fprintf(out, "stopping %s and its pods ...\n", name)
			} else {
				fmt.Fprintf(out, "stopping %s ...\n", name)
			}
		}
		if nodeIndex(name) >= 0 {
			wg.Go(func() { stop(name) })
			continue
		}
		wg.Wait()
		stop(name)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster in %s: %w", c.Dir, err)
	}
	if purge {
		// A stopped node leaves its pods' memory-backed emptyDirs mounted (they
		// outlive a node restart as disk ones do): unmount them, or removing
		// the directory fails on a busy mount.
		var pods []string
		for _, pattern := range []string{c.path("node", "pods", "*"), c.path("node-*", "pods", "*")} {
			found, err := filepath.Glob(pattern)
			if err != nil {
				return err
			}
			pods = append(pods, found...)
		}
		for _, p := range pods {
			if err := volume.Teardown(p); err != nil {
				return fmt.Errorf("cluster in %s: pod volumes of %s: %w", c.Dir, p, err)
			}
		}
		if err := os.RemoveAll(c.Dir); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed %s\n", c.Dir)
	}
	if !any {
		fmt.Fprintln(out, "no cluster process was running")
	} else {
		fmt.Fprintln(out, "cluster stopped")
	}
	return nil
}
