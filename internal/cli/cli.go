// Package cli defines the outpost command line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/container"
	"outpost.dev/outpost/internal/node"
	"outpost.dev/outpost/internal/output"
	"outpost.dev/outpost/internal/version"
)

// Main runs the command line and returns the exit code.
func Main(args []string) int {
	// The container init must not go through cobra: it is PID 1 of a container
	// and should do nothing but its job.
	if len(args) == 2 && args[0] == "container-init" {
		container.Init(args[1])
	}
	// `outpost pause` is the pause image's program (hidden, as container-init).
	if len(args) == 1 && args[0] == "pause" {
		container.Pause()
	}
	if len(args) > 0 && args[0] == "container-exec" {
		container.ExecMain(args[1:])
	}
	root := newRoot()
	root.SetArgs(rewriteMultiValue(args))
	// Every command and every request runs under this context, so Ctrl-C or
	// SIGTERM ends a CLI call as well as a server. Once the first signal has
	// cancelled it, the default disposition comes back: a second signal ends
	// a command that is slow to stop, as users expect of Ctrl-C twice.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	err := root.ExecuteContext(ctx)
	var exit *exitCodeError
	var stopped *interruptedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	case errors.As(err, &stopped):
		fmt.Fprintln(os.Stderr, stopped.msg)
		return 130
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "outpost",
		Short:         "Machine learning on Kubernetes clusters you own",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkRequiredNotEmpty(cmd); err != nil {
				return err
			}
			return checkOutputFlags(cmd)
		},
	}
	root.AddCommand(versionCmd(), clusterCmd(), nodeCmd(), workspaceCmd(), loginCmd(), connectedk8sCmd(),
		k8sExtensionCmd(), mlCmd(), agentCmd(), extensionComponentCmd(), jobCmd(), scoreCmd())
	return root
}

// checkRequiredNotEmpty refuses an explicitly empty value (`--name ""`) for
// a flag marked with MarkFlagRequired: cobra only checks that the flag was
// given, and an empty name would otherwise reach the workspace as a path and
// come back as a confusing "not found". It runs for every command from the
// root's PersistentPreRunE, so a command needs nothing but MarkFlagRequired;
// a command that sets its own PersistentPreRunE must call it itself.
func checkRequiredNotEmpty(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || !f.Changed || f.Value.Type() != "string" {
			return
		}
		if req := f.Annotations[cobra.BashCompOneRequiredFlag]; len(req) == 0 || req[0] != "true" {
			return
		}
		if strings.TrimSpace(f.Value.String()) == "" {
			err = fmt.Errorf("--%s is required: it was given an empty value", f.Name)
		}
	})
	return err
}

func versionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "version", Short: "Print the version and commit", Args: cobra.NoArgs}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := map[string]string{"version": version.Version, "commit": version.Commit}
		return printResult(cmd, *out, v, func() output.Table {
			return output.Table{Header: []string{"VERSION", "COMMIT"}, Rows: [][]string{{version.Version, version.Commit}}}
		})
	}
	return cmd
}

func defaultClusterDir() string {
	if d := os.Getenv("OUTPOST_CLUSTER_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".outpost", "cluster")
}

func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Run a local Kubernetes cluster whose node runs pods as processes"}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultClusterDir(), "directory holding the cluster's state ($OUTPOST_CLUSTER_DIR)")
	abs := func() (string, error) { return filepath.Abs(dir) }
	load := func() (*cluster.Config, error) {
		d, err := abs()
		if err != nil {
			return nil, err
		}
		return cluster.Load(d)
	}

	up := &cobra.Command{Use: "up", Short: "Start the cluster in the background (a no-op when it runs)", Args: cobra.NoArgs}
	var cfg cluster.Config
	up.Flags().IntVar(&cfg.APIPort, "api-port", 6443, "port of the kube-apiserver on 127.0.0.1; the cluster also takes the 5 ports after it, and one more for each node after the first")
	up.Flags().StringVar(&cfg.PodCIDR, "pod-cidr", "127.244.0.0/16", "loopback range pod IPs come from")
	up.Flags().StringVar(&cfg.ServiceCIDR, "service-cidr", "127.96.0.0/16", "loopback range Service cluster IPs come from")
	up.Flags().StringVar(&cfg.NodePortRange, "node-port-range", "30000-32767", "ports NodePort Services take on 127.0.0.1")
	up.Flags().StringVar(&cfg.KubeBinDir, "kube-bin-dir", "", "directory of the upstream binaries (default: $OUTPOST_KUBE_BIN_DIR, else .cache/kube/bin of the repository)")
	up.Flags().IntVar(&cfg.Nodes, "nodes", 1, "number of nodes: the first is outpost-node, the others outpost-node-1, outpost-node-2, ...; they split the machine's CPUs, memory and --pod-cidr")
	up.Flags().StringVar(&cfg.NodeCPU, "node-cpu", "", "CPU capacity of each node, a quantity such as 2 or 500m (default: the machine's CPUs split evenly between the nodes)")
	up.Flags().StringVar(&cfg.NodeMemory, "node-memory", "", "memory capacity of each node, a quantity such as 4Gi (default: the machine's memory split evenly between the nodes)")
	nodeLabels := up.Flags().StringArray("node-label", nil, "NODE:KEY=VALUE[,KEY=VALUE...]: labels of a node, NODE its name or index (0 is the first); repeatable; replaces the labels given before")
	up.RunE = func(cmd *cobra.Command, _ []string) error {
		d, err := abs()
		if err != nil {
			return err
		}
		cfg.Dir = d
		// A cluster that was started before keeps its addresses: flags not
		// given take the saved values, so a plain `up` brings it back as it was.
		saved, err := cluster.Load(d)
		var unreadable *fs.PathError
		switch {
		// No cluster yet, or a directory that cannot hold one: Up says why.
		case errors.Is(err, cluster.ErrNoCluster), errors.As(err, &unreadable):
		case err != nil:
			return err
		default:
			for flag, keep := range map[string]func(){
				"api-port":        func() { cfg.APIPort = saved.APIPort },
				"pod-cidr":        func() { cfg.PodCIDR = saved.PodCIDR },
				"service-cidr":    func() { cfg.ServiceCIDR = saved.ServiceCIDR },
				"node-port-range": func() { cfg.NodePortRange = saved.NodePortRange },
				"nodes":           func() { cfg.Nodes = max(1, saved.Nodes) },
				"node-cpu":        func() { cfg.NodeCPU = saved.NodeCPU },
				"node-memory":     func() { cfg.NodeMemory = saved.NodeMemory },
				"node-label":      func() { cfg.NodeLabels = saved.NodeLabels },
			} {
				if !cmd.Flags().Changed(flag) {
					keep()
				}
			}
		}
		if cfg.Nodes < 1 {
			return fmt.Errorf("--nodes %d: must be 1 or more", cfg.Nodes)
		}
		cfg.Defaults()
		if cmd.Flags().Changed("node-label") {
			if cfg.NodeLabels, err = cluster.ParseNodeLabels(*nodeLabels, cfg.NodeNames()); err != nil {
				return err
			}
		} else {
			// Labels kept from before, of nodes that a smaller --nodes drops, go.
			for name := range cfg.NodeLabels {
				if !slices.Contains(cfg.NodeNames(), name) {
					delete(cfg.NodeLabels, name)
				}
			}
		}
		if cfg.Outpost, err = os.Executable(); err != nil {
			return err
		}
		if cfg.KubeBinDir, err = cluster.FindKubeBinDir(cfg.KubeBinDir, cfg.Outpost); err != nil {
			return err
		}
		err = cluster.Up(cmd.Context(), &cfg, cmd.OutOrStdout())
		if errors.Is(err, cluster.ErrAlreadyRunning) {
			fmt.Fprintf(cmd.OutOrStdout(), "cluster in %s is already running; nothing to do\n", d)
			err = nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "kubeconfig: %s\n  export KUBECONFIG=%s\n", cfg.KubeconfigPath(), cfg.KubeconfigPath())
		return nil
	}

	down := &cobra.Command{Use: "down", Short: "Stop every process of the cluster", Args: cobra.NoArgs}
	purge := down.Flags().Bool("purge", false, "also delete the cluster directory and all its state")
	down.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		return cluster.Down(c, *purge, cmd.OutOrStdout())
	}

	status := &cobra.Command{Use: "status", Short: "Show what runs", Args: cobra.NoArgs}
	out := outputFlag(status)
	status.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		st := c.Status(cmd.Context())
		return printResult(cmd, *out, st, func() output.Table {
			t := output.Table{Header: []string{"COMPONENT", "STATE", "PID", "LOG"}}
			for _, cs := range st.Components {
				state, pid := cs.State, "-"
				if cs.Running {
					pid = strconv.Itoa(cs.PID)
				}
				t.Rows = append(t.Rows, []string{cs.Name, state, pid, cs.Log})
			}
			ready := func(r bool) string {
				if r {
					return "Ready"
				}
				return "NotReady"
			}
			t.Rows = append(t.Rows, []string{"", "", "", ""},
				[]string{"server", st.Server, "", ""}, []string{"version", st.Version, "", ""})
			if len(st.Nodes) <= 1 {
				t.Rows = append(t.Rows, []string{"node", ready(st.NodeReady), "", ""})
			} else {
				for _, n := range st.Nodes {
					t.Rows = append(t.Rows, []string{"node " + n.Name, ready(n.Ready),
						fmt.Sprintf("%d pods", n.Pods), fmt.Sprintf("cpu %s, memory %s, pod range %s", n.CPU, n.Memory, n.PodCIDR)})
				}
			}
			t.Rows = append(t.Rows, []string{"pods", strconv.Itoa(st.Pods), "", ""})
			return t
		})
	}

	kubeconfig := &cobra.Command{Use: "kubeconfig", Short: "Print the path of the cluster's admin kubeconfig", Args: cobra.NoArgs}
	view := kubeconfig.Flags().Bool("view", false, "print the kubeconfig's contents instead of its path")
	kubeconfig.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		if !*view {
			fmt.Fprintln(cmd.OutOrStdout(), c.KubeconfigPath())
			return nil
		}
		data, err := os.ReadFile(c.KubeconfigPath())
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	// supervise runs one component and restarts it when it exits; `up` starts
	// one per component and `down` stops them.
	supervise := &cobra.Command{Use: "supervise COMPONENT", Hidden: true, Args: cobra.ExactArgs(1)}
	supervise.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		return cluster.Supervise(cmd.Context(), c, args[0])
	}
	cmd.AddCommand(up, down, status, kubeconfig, supervise)
	return cmd
}

func nodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "The node agent of the local cluster", Hidden: true}
	run := &cobra.Command{Use: "run", Short: "Run the node agent", Args: cobra.NoArgs}
	config := run.Flags().String("config", "", "node configuration file (written by `outpost cluster up`)")
	run.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := node.LoadConfig(*config)
		if err != nil {
			return err
		}
		return node.Run(cmd.Context(), cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	cmd.AddCommand(run)
	return cmd
}
