package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/training"
)

func trainingOperatorCmd() *cobra.Command {
	c := &cobra.Command{Use: "training-operator", Short: "Run the cluster's jobs (TrainingJob resources) as pods", Args: cobra.NoArgs}
	kubeconfig := c.Flags().String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	var o training.Options
	c.Flags().StringVar(&o.ProbeAddr, "listen", ":8081", "address of /healthz and /readyz (\"\" or 0: none)")
	c.Flags().StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "same as --listen")
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
		// client-go's default (5 requests/s, bursts of 10) caps the operator
		// at one or two jobs a second: each job costs a Secret read, a pod
		// create and several status writes. The agent, which makes the
		// TrainingJobs, has 50/100; the operator writes more per job.
		rc.QPS, rc.Burst = 100, 200
		// The jobs' install init container runs the operator's own image,
		// which holds the binary it installs.
		o.Image = os.Getenv(training.EnvOutpostImage)
		if o.Image == "" {
			o.Image = Image()
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		return training.Run(cmd.Context(), rc, o)
	}
	return c
}
