package cli

import (
	"os"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/scoring"
)

// scoreCmd is what runs inside an online deployment's pods: the scoring
// server, or, for a deployment with a container of its own, the model's
// download into the shared volume.
func scoreCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "score", Short: "The scoring server, run inside an online deployment's pods", Hidden: true}

	var o scoring.Options
	serve := &cobra.Command{Use: "serve", Args: cobra.NoArgs,
		Short: "Fetch the deployment's model and code, then serve its scoring script (init() once, run() per POST /score)"}
	serve.Flags().StringVar(&o.Root, "root", scoring.DefaultRoot, "where the model (azureml-models/<name>/<version>) and the code go")
	serve.Flags().StringVar(&o.Host, "host", "0.0.0.0", "the address the server listens on")
	serve.Flags().IntVar(&o.Port, "port", 5001, "the port the server listens on (0: any free port, which the log names)")
	serve.RunE = func(cmd *cobra.Command, _ []string) error {
		if o.Port == 0 {
			o.Port = -1
		}
		if code := scoring.Serve(cmd.Context(), o, os.Getenv, os.Environ, os.Stdout, os.Stderr); code != 0 {
			return &exitCodeError{code}
		}
		return nil
	}

	var root string
	fetch := &cobra.Command{Use: "fetch", Args: cobra.NoArgs,
		Short: "Download the deployment's model to <root>/azureml-models/<name>/<version> (printed) and exit"}
	fetch.Flags().StringVar(&root, "root", scoring.DefaultRoot, "the shared volume the model goes to")
	fetch.RunE = func(cmd *cobra.Command, _ []string) error {
		if code := scoring.Fetch(cmd.Context(), root, os.Getenv, os.Stdout, os.Stderr); code != 0 {
			return &exitCodeError{code}
		}
		return nil
	}
	cmd.AddCommand(serve, fetch)
	return cmd
}
