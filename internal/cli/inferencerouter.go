package cli

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/router"
	"outpost.dev/outpost/internal/router/kubesource"
)

func inferenceRouterCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "inference-router",
		Short: "Route online endpoints' scoring requests to their deployments' instances (azureml-fe)",
		Args:  cobra.NoArgs,
	}
	kubeconfig := c.Flags().String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	o := kubesource.Options{}
	c.Flags().StringVar(&o.Namespace, "namespace", cmp.Or(os.Getenv("POD_NAMESPACE"), "azureml"), "the router's namespace: its ConfigMap azureml-fe-config, TLS Secret and pods (default: $POD_NAMESPACE when set)")
	c.Flags().StringVar(&o.PodName, "pod-name", os.Getenv("POD_NAME"), "this replica's pod name, as GET /load reports it (default $POD_NAME)")
	c.Flags().StringVar(&o.Address, "address", "", "address the ports listen on (default: all)")
	c.Flags().IntVar(&o.HTTPPort, "http-port", 9001, "scoring port when the ConfigMap says https=false")
	c.Flags().IntVar(&o.HTTPSPort, "https-port", 9443, "scoring port when the ConfigMap says https=true")
	c.Flags().IntVar(&o.AdminPort, "admin-port", 9002, "port of /metrics, /load, /healthz and /readyz")
	c.Flags().Int64Var(&o.MaxBodyBytes, "max-body-bytes", router.DefaultMaxBodyBytes, "largest request body routed (larger: 413)")
	c.Flags().DurationVar(&o.ShutdownDelay, "shutdown-delay", 5*time.Second, "how long a stopping replica keeps serving, unready, before it drains")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		for _, p := range []struct {
			flag string
			port int
		}{{"--http-port", o.HTTPPort}, {"--https-port", o.HTTPSPort}, {"--admin-port", o.AdminPort}} {
			if p.port < 1 || p.port > 65535 {
				return fmt.Errorf("%s %d: a port is 1 to 65535", p.flag, p.port)
			}
		}
		if o.AdminPort == o.HTTPPort || o.AdminPort == o.HTTPSPort {
			return fmt.Errorf("--admin-port %d is also a scoring port: give it a port of its own", o.AdminPort)
		}
		if o.MaxBodyBytes < 1 {
			return fmt.Errorf("--max-body-bytes %d: give a positive number of bytes", o.MaxBodyBytes)
		}
		if o.ShutdownDelay < 0 {
			return fmt.Errorf("--shutdown-delay %s: give 0 or more", o.ShutdownDelay)
		}
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
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		return kubesource.Run(cmd.Context(), rc, o)
	}
	return c
}
