package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ComponentStatus is one line of `outpost cluster status`.
type ComponentStatus struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	PID     int    `json:"pid,omitempty"`
	Log     string `json:"log"`
}

// Status is what `outpost cluster status` reports.
type Status struct {
	Dir        string            `json:"dir"`
	Server     string            `json:"server"`
	Kubeconfig string            `json:"kubeconfig"`
	Version    string            `json:"kubernetesVersion,omitempty"`
	NodeReady  bool              `json:"nodeReady"`
	Pods       int               `json:"pods"`
	Components []ComponentStatus `json:"components"`
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
	for _, name := range components {
		pid, ok := c.runningPid(name)
		cs := ComponentStatus{Name: name, Running: ok, Log: c.LogPath(name)}
		if ok {
			cs.PID = pid
		}
		st.Components = append(st.Components, cs)
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
	if n, err := client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{}); err == nil {
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" {
				st.NodeReady = cond.Status == "True"
			}
		}
	}
	if pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		st.Pods = len(pods.Items)
	}
	return st
}

// Down stops every process of the cluster: the node first, so that it stops its
// pods, then the control plane, then anything left that names the cluster
// directory. With purge the directory goes too.
func Down(c *Config, purge bool, out io.Writer) error {
	any := false
	if pid, ok := c.runningPid("node"); ok {
		any = true
		fmt.Fprintln(out, "stopping node and its pods ...")
		c.stop([]int{pid}, 20*time.Second)
	}
	for i := len(components) - 2; i >= 0; i-- {
		if pid, ok := c.runningPid(components[i]); ok {
			any = true
			fmt.Fprintf(out, "stopping %s ...\n", components[i])
			c.stop([]int{pid}, 10*time.Second)
		}
	}
	if left := c.processes(); len(left) > 0 {
		any = true
		fmt.Fprintf(out, "stopping %d leftover processes ...\n", len(left))
		c.stop(left, 5*time.Second)
	}
	if left := c.processes(); len(left) > 0 {
		return fmt.Errorf("processes %v of the cluster in %s would not stop", left, c.Dir)
	}
	for _, name := range components {
		os.Remove(c.pidFile(name))
	}
	if purge {
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
