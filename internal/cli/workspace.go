package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/output"
	"outpost.dev/outpost/internal/workspace"
)

func defaultWorkspaceDir() string {
	if d := os.Getenv("OUTPOST_WORKSPACE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".outpost", "workspace")
}

func workspaceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workspace", Short: "The workspace: API, state and the relay clusters connect to"}
	serve := &cobra.Command{Use: "serve", Short: "Run the workspace server (HTTPS)", Args: cobra.NoArgs}
	var opts workspace.Options
	serve.Flags().StringVar(&opts.Addr, "addr", "127.0.0.1:8443", "address to listen on")
	serve.Flags().StringVar(&opts.DataDir, "data-dir", defaultWorkspaceDir(), "state: database, admin token, TLS files ($OUTPOST_WORKSPACE_DIR)")
	serve.Flags().DurationVar(&opts.Heartbeat, "heartbeat", 10*time.Second, "how often agents report; a cluster is Offline after two missed reports")
	serve.Flags().StringVar(&opts.SecretsKeyFile, "secrets-key-file", "", "key that encrypts protected settings at rest, made on first start (default <data-dir>/secrets.key); keep it apart from the database and back it up: without it protected settings cannot be read")
	serve.RunE = func(cmd *cobra.Command, _ []string) error {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		fmt.Fprintf(cmd.ErrOrStderr(), "admin token: %s (log in with `outpost login --url https://%s --token $(cat %s) --ca-file %s`)\n",
			workspace.AdminTokenFile(opts.DataDir), opts.Addr, workspace.AdminTokenFile(opts.DataDir), workspace.CAFile(opts.DataDir))
		return workspace.Serve(cmd.Context(), opts)
	}
	cmd.AddCommand(serve)
	return cmd
}

func loginCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "login", Short: "Store the workspace URL and token for later commands", Args: cobra.NoArgs}
	var url, token, caFile string
	cmd.Flags().StringVar(&url, "url", os.Getenv("OUTPOST_URL"), "workspace URL, e.g. https://127.0.0.1:8443 ($OUTPOST_URL)")
	cmd.Flags().StringVar(&token, "token", os.Getenv("OUTPOST_TOKEN"), "token ($OUTPOST_TOKEN)")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "the workspace's CA certificate (default: the local workspace's, if any)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if url == "" || token == "" {
			return errors.New("--url and --token are required (or OUTPOST_URL and OUTPOST_TOKEN)")
		}
		if !strings.HasPrefix(url, "https://") {
			return fmt.Errorf("--url %q: the workspace serves HTTPS only; use https://host:port", url)
		}
		if caFile == "" {
			if _, err := os.Stat(workspace.CAFile(defaultWorkspaceDir())); err == nil {
				caFile = workspace.CAFile(defaultWorkspaceDir())
			}
		}
		cfg := client.Config{URL: strings.TrimRight(url, "/"), Token: strings.TrimSpace(token)}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("--ca-file: %w", err)
			}
			cfg.CA = string(pem)
		}
		c, err := client.New(cfg)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
		defer cancel()
		if err := c.Do(ctx, "GET", "/connectedClusters", nil, nil); err != nil {
			return fmt.Errorf("login to %s failed, nothing stored: %w", url, err)
		}
		if err := cfg.Save(); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s (stored in %s)\n", cfg.URL, client.ConfigPath())
		return nil
	}
	return cmd
}

// connect returns a client for the stored login.
func connect() (*client.Client, error) {
	cfg, err := client.Load()
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// fetchAndPrint GETs path from the workspace into a T and prints it in the
// chosen format, the table made by table: what every show and list does.
func fetchAndPrint[T any](cmd *cobra.Command, o output.Options, path string, table func(T) func() output.Table) error {
	ws, err := connect()
	if err != nil {
		return err
	}
	var v T
	if err := ws.Do(cmd.Context(), "GET", path, nil, &v); err != nil {
		return err
	}
	return printResult(cmd, o, v, table(v))
}
