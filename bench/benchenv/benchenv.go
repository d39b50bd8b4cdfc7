// Package benchenv starts what the end-to-end benchmarks run against: a
// fresh local cluster, a workspace process, the cluster connected with the
// ML extension, and attached to the workspace as a compute.
package benchenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/clustertest"
)

// Options shape the environment.
type Options struct {
	// Name is in the temporary directory's name and the progress line.
	Name string
	// ResourceGroup, Workspace and Compute name what is attached.
	ResourceGroup, Workspace, Compute string
	// Heartbeat is the workspace's --heartbeat.
	Heartbeat string
	// Extension are k8s-extension create's arguments beyond the cluster's
	// and the extension's names (--config ...).
	Extension []string
	// QPS and Burst bound Kube's client (0: client-go's defaults).
	QPS   float32
	Burst int
}

// Env is a running environment; Close stops it and removes its files.
type Env struct {
	Dir     string // temporary, removed by Close
	Bin     string // the outpost binary
	Cluster *cluster.Config
	REST    *rest.Config
	Kube    kubernetes.Interface
	WS      *client.Client // the workspace, as its admin
	WSPid   int
	// Environ is the environment of outpost commands: logged in to the
	// workspace, KUBECONFIG the cluster's.
	Environ []string
	undo    []func()
}

// Start brings the environment up; on an error, what it started is stopped.
func Start(ctx context.Context, o Options) (e *Env, err error) {
	e = &Env{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.Bin, err = clustertest.Binary(); err != nil {
		return nil, err
	}
	kubeBin, err := cluster.FindKubeBinDir(os.Getenv("OUTPOST_KUBE_BIN_DIR"), e.Bin)
	if err != nil {
		return nil, err
	}
	if e.Dir, err = os.MkdirTemp("", "outpost-"+o.Name+"-bench-"); err != nil {
		return nil, err
	}
	dir := e.Dir
	e.undo = append(e.undo, func() { os.RemoveAll(dir) })
	slot, release, err := clustertest.Slot()
	if err != nil {
		return nil, err
	}
	e.undo = append(e.undo, release)
	cfg := &cluster.Config{Dir: filepath.Join(e.Dir, "cluster"), KubeBinDir: kubeBin, Outpost: e.Bin}
	slot.Apply(cfg)
	e.Cluster = cfg
	fmt.Fprintf(os.Stderr, "starting a local cluster, a workspace, the agent and the extension (%s)...\n", strings.Join(o.Extension, " "))
	// Down is registered before Up: a cluster half started (or Ctrl-C
	// during Up) is stopped too.
	e.undo = append(e.undo, func() { cluster.Down(cfg, true, os.Stderr) })
	if err := cluster.Up(ctx, cfg, os.Stderr); err != nil {
		return nil, err
	}
	if e.REST, err = cfg.RESTConfig(); err != nil {
		return nil, err
	}
	e.REST.QPS, e.REST.Burst = o.QPS, o.Burst
	if e.Kube, err = kubernetes.NewForConfig(e.REST); err != nil {
		return nil, err
	}
	if err := e.serveWorkspace(ctx, o.Heartbeat); err != nil {
		return nil, err
	}
	rid := "/resourceGroups/" + o.ResourceGroup + "/connectedClusters/c1"
	for _, args := range [][]string{
		{"connectedk8s", "connect", "-n", "c1", "-g", o.ResourceGroup},
		append([]string{"k8s-extension", "create", "--name", "ml", "--extension-type", "Microsoft.AzureML.Kubernetes",
			"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", o.ResourceGroup}, o.Extension...),
		{"ml", "compute", "attach", "-g", o.ResourceGroup, "-w", o.Workspace, "--name", o.Compute, "--type", "Kubernetes", "--resource-id", rid},
	} {
		if _, err := e.Outpost(ctx, args...); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// serveWorkspace starts the workspace on a free loopback port, waits until
// it answers, and logs in to it.
func (e *Env) serveWorkspace(ctx context.Context, heartbeat string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return err
	}
	data := filepath.Join(e.Dir, "workspace")
	cmd := exec.Command(e.Bin, "workspace", "serve", "--addr", addr, "--data-dir", data, "--heartbeat", heartbeat)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C is for the bench, which stops it last
	log, err := os.Create(filepath.Join(e.Dir, "workspace.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	// Kill's error is a process already gone, and Wait's its exit status
	// from the kill: neither is news when stopping it.
	e.undo = append(e.undo, func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
	e.WSPid = cmd.Process.Pid
	var tok []byte
	for tries := 0; ; tries++ {
		var c net.Conn
		if tok, err = os.ReadFile(filepath.Join(data, "admin-token")); err == nil {
			if c, err = net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
		}
		if tries == 400 {
			return fmt.Errorf("the workspace did not start in 20 s: %w (log %s)", err, log.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	caFile := filepath.Join(data, "tls", "ca.crt")
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	login := client.Config{URL: "https://" + addr, Token: strings.TrimSpace(string(tok)), CA: string(ca)}
	if e.WS, err = client.New(login); err != nil {
		return err
	}
	e.Environ = append(os.Environ(), "OUTPOST_URL="+login.URL, "OUTPOST_TOKEN="+login.Token, "OUTPOST_CA_FILE="+caFile,
		"OUTPOST_CONFIG="+filepath.Join(e.Dir, "login.json"), "KUBECONFIG="+e.Cluster.KubeconfigPath())
	return nil
}

// Outpost runs the outpost binary logged in to the workspace and returns
// its standard output; an error carries both outputs.
func (e *Env) Outpost(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.Bin, args...)
	cmd.Env = e.Environ
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("outpost %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// Close stops what Start started, the last first.
func (e *Env) Close() {
	for i := len(e.undo) - 1; i >= 0; i-- {
		e.undo[i]()
	}
	e.undo = nil
}
