package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/inference"
)

func inferenceOperatorCmd() *cobra.Command {
	c := &cobra.Command{Use: "inference-operator", Short: "Run the cluster's online deployments (OnlineDeployment resources) and autoscale them",
		Args: cobra.NoArgs}
	kubeconfig := c.Flags().String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	var o inference.Options
	c.Flags().StringVar(&o.ProbeAddr, "listen", ":8081", "address of /healthz and /readyz (\"\" or 0: none)")
	c.Flags().StringVar(&o.ProbeAddr, extension.InferenceProbeFlag, ":8081", "same as --listen")
	c.Flags().StringVar(&o.RouterNamespace, "router-namespace", "", "namespace of the router's pods, whose load drives autoscaling (default: $POD_NAMESPACE, else "+extension.Namespace+")")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		var rc *rest.Config
		var err error
		if *kubeconfig != "" {
			rc, err = kubeConfig(*kubeconfig, "")
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return err
		}
		// client-go's default (5 requests/s) would make a rollout of many
		// deployments, or the autoscaler's status writes, queue.
		rc.QPS, rc.Burst = 50, 100
		if o.RouterNamespace == "" {
			o.RouterNamespace = os.Getenv("POD_NAMESPACE")
		}
		// The deployments' install and fetch init containers run the
		// operator's own image, which holds the binary they install.
		o.Image = os.Getenv(inference.EnvOutpostImage)
		if o.Image == "" {
			o.Image = Image()
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		return inference.Run(cmd.Context(), rc, o)
	}
	return c
}
