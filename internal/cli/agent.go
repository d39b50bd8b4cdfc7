package cli

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/statusreporter"
)

func agentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "The cluster agent (installed by `outpost connectedk8s connect`)", Hidden: true}
	run := &cobra.Command{Use: "run", Short: "Run the agent: dial the workspace, apply what it wants, report", Args: cobra.NoArgs}
	kubeconfig := run.Flags().String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	run.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg := agent.ConfigFromEnv()
		cfg.Kubeconfig = *kubeconfig
		if cfg.WorkspaceURL == "" || cfg.Token == "" || cfg.Cluster == "" || cfg.ResourceGroup == "" {
			return errors.New("the agent needs " + agent.EnvWorkspaceURL + ", " + agent.EnvToken + ", " + agent.EnvResourceGroup + " and " + agent.EnvCluster + " (set by `outpost connectedk8s connect`)")
		}
		if cfg.Image == "" {
			cfg.Image = Image()
		}
		return agent.Run(cmd.Context(), cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	cmd.AddCommand(run)
	return cmd
}

func extensionComponentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "extension", Short: "Components of the ML extension, run inside the cluster", Hidden: true}
	sr := &cobra.Command{Use: "status-reporter", Short: "Publish the cluster's health in ConfigMap azureml/cluster-status", Args: cobra.NoArgs}
	var o statusreporter.Options
	sr.Flags().StringVar(&o.Listen, "listen", ":8080", "address of /healthz")
	sr.Flags().DurationVar(&o.Interval, "interval", 10*time.Second, "how often to publish")
	sr.RunE = func(cmd *cobra.Command, _ []string) error {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return err
		}
		kube, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		o.Namespace = os.Getenv("POD_NAMESPACE")
		if o.Namespace == "" {
			o.Namespace = "azureml"
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		return statusreporter.Run(cmd.Context(), kube, o)
	}
	cmd.AddCommand(sr, trainingOperatorCmd())
	cmd.AddCommand(inferenceRouterCmd())
	cmd.AddCommand(inferenceOperatorCmd())
	return cmd
}
