package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

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
	Dir        string            `json:"dir"`
	Server     string            `json:"server"`
	Kubeconfig string            `json:"kubeconfig"`
	Version    string            `json:"kubernetesVersion,omitempty"`
	NodeReady  bool              `json:"nodeReady"`
	Pods       int               `json:"pods"`
	Components []ComponentStatus `json:"components"`
	// Error is set when the state of the processes could not be read.
	Error string `json:"error,omitempty"`
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
// pods, then the control plane. Each component goes with its supervisor, and
// only processes the supervisors recorded (pid and start time) get a signal.
// With purge the directory goes too.
func Down(c *Config, purge bool, out io.Writer) error {
	unlock, err := c.lock(func() { fmt.Fprintf(out, "waiting for another `outpost cluster` command on %s ...\n", c.Dir) })
	if err != nil {
		return err
	}
	defer unlock()
	any := false
	var errs []error
	for i := len(components) - 1; i >= 0; i-- {
		name := components[i]
		if st, err := c.state(name); err != nil {
			errs = append(errs, err)
			continue
		} else if st.supervised || st.running {
			if name == "node" {
				fmt.Fprintln(out, "stopping node and its pods ...")
			} else {
				fmt.Fprintf(out, "stopping %s ...\n", name)
			}
		}
		stopped, err := c.stopComponent(name, stopGrace(name))
		any = any || stopped
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(c.recordFile(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster in %s: %w", c.Dir, err)
	}
	if purge {
		// A stopped node leaves its pods' memory-backed emptyDirs mounted (they
		// outlive a node restart as disk ones do): unmount them, or removing
		// the directory fails on a busy mount.
		pods, err := filepath.Glob(filepath.Join(c.nodeConfig().Dir, "pods", "*"))
		if err != nil {
			return err
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
