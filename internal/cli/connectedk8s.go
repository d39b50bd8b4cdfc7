package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/output"
	"outpost.dev/outpost/internal/version"
)

// Image is the outpost image cluster components run: on the local cluster it
// runs this very binary.
func Image() string { return "outpost:" + version.Version }

func kubeConfig(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w (give one with --kubeconfig or $KUBECONFIG)", err)
	}
	return cfg, nil
}

func clusterPath(rg, name string) string {
	return "/resourceGroups/" + url.PathEscape(rg) + "/connectedClusters/" + url.PathEscape(name)
}

func clusterTable(cs ...api.ConnectedCluster) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "RESOURCE GROUP", "CONNECTIVITY", "LAST SEEN", "KUBERNETES", "NODES", "CPU", "MEMORY", "GPU", "DISTRIBUTION"}}
		for _, c := range cs {
			seen := "-"
			if c.LastConnectivityTime != nil {
				seen = c.LastConnectivityTime.Local().Format(time.DateTime)
			}
			t.Rows = append(t.Rows, []string{c.Name, c.ResourceGroup, c.ConnectivityStatus, seen, c.Facts.KubernetesVersion,
				fmt.Sprint(c.Facts.TotalNodeCount), c.Facts.AllocatableCPU, c.Facts.AllocatableMemory, c.Facts.AllocatableGPU, c.Facts.Distribution})
		}
		return t
	}
}

func connectedk8sCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "connectedk8s", Short: "Connect Kubernetes clusters to the workspace"}
	var name, rg, kubeconfig, kubeContext, proxy, noProxy string
	var noWait bool
	nameFlags := func(c *cobra.Command) {
		c.Flags().StringVarP(&name, "name", "n", "", "cluster name")
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group")
		_ = c.MarkFlagRequired("name")
		_ = c.MarkFlagRequired("resource-group")
	}

	connectC := &cobra.Command{Use: "connect", Short: "Register a cluster and install its agent, which dials out to the workspace", Args: cobra.NoArgs}
	nameFlags(connectC)
	connectC.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
	connectC.Flags().StringVar(&kubeContext, "kube-context", "", "kubeconfig context")
	connectC.Flags().StringVar(&proxy, "proxy-https", "", "HTTPS proxy the agent dials through, e.g. http://proxy:3128")
	connectC.Flags().StringVar(&noProxy, "proxy-skip-range", "", "comma-separated hosts the agent reaches without the proxy")
	connectC.Flags().BoolVar(&noWait, "no-wait", false, "return without waiting for the agent to connect")
	out := outputFlag(connectC)
	connectC.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := output.Validate(*out); err != nil {
			return err
		}
		if proxy != "" {
			if u, err := url.Parse(proxy); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return fmt.Errorf("--proxy-https %q: want http://host:port or https://host:port", proxy)
			}
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		rc, err := kubeConfig(kubeconfig, kubeContext)
		if err != nil {
			return err
		}
		kube, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		if _, err := kube.Discovery().ServerVersion(); err != nil {
			return fmt.Errorf("cannot reach the cluster of the kubeconfig: %w", err)
		}
		progress := cmd.ErrOrStderr()
		fmt.Fprintf(progress, "registering cluster %s/%s ...\n", rg, name)
		var c api.ConnectedCluster
		if err := ws.Do(ctx, "PUT", clusterPath(rg, name), map[string]string{"proxy": proxy}, &c); err != nil {
			return err
		}
		fmt.Fprintf(progress, "installing the agent into namespace %s ...\n", agent.Namespace)
		cfg := agent.Config{WorkspaceURL: ws.Config().URL, ResourceGroup: rg, Cluster: name, Token: c.AgentToken,
			CAPEM: []byte(ws.Config().CA), Proxy: proxy, NoProxy: noProxy, Image: Image()}
		if err := agent.Install(ctx, kube, cfg); err != nil {
			// No half-connected cluster: forget the registration again.
			_ = ws.Do(context.Background(), "DELETE", clusterPath(rg, name), nil, nil)
			return fmt.Errorf("install the agent: %w (the registration was removed)", err)
		}
		if !noWait {
			fmt.Fprint(progress, "waiting for the agent to connect ")
			c, err = waitCluster(ctx, ws, rg, name, progress)
			if err != nil {
				return err
			}
		}
		c.AgentToken = ""
		return output.Print(cmd.OutOrStdout(), *out, c, clusterTable(c))
	}

	show := &cobra.Command{Use: "show", Short: "Show a connected cluster", Args: cobra.NoArgs}
	nameFlags(show)
	showOut := outputFlag(show)
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		return fetchAndPrint(cmd, *showOut, clusterPath(rg, name), func(c api.ConnectedCluster) func() output.Table { return clusterTable(c) })
	}

	list := &cobra.Command{Use: "list", Short: "List connected clusters", Args: cobra.NoArgs}
	list.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group (default: all)")
	listOut := outputFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		path := "/connectedClusters"
		if rg != "" {
			path = "/resourceGroups/" + url.PathEscape(rg) + "/connectedClusters"
		}
		return fetchAndPrint(cmd, *listOut, path, func(cs []api.ConnectedCluster) func() output.Table { return clusterTable(cs...) })
	}

	del := &cobra.Command{Use: "delete", Short: "Remove the agent and what it installed from the cluster, and forget the cluster", Args: cobra.NoArgs}
	nameFlags(del)
	del.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
	del.Flags().StringVar(&kubeContext, "kube-context", "", "kubeconfig context")
	del.Flags().BoolP("yes", "y", false, "do not ask for confirmation (accepted for compatibility; nothing asks)")
	del.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		if err := ws.Do(cmd.Context(), "GET", clusterPath(rg, name), nil, nil); err != nil {
			return err
		}
		rc, err := kubeConfig(kubeconfig, kubeContext)
		if err != nil {
			return err
		}
		// The registration goes first so that the agent, should it still
		// run, is refused from now on and applies nothing more.
		if err := ws.Do(cmd.Context(), "DELETE", clusterPath(rg, name), nil, nil); err != nil {
			return err
		}
		if err := agent.Uninstall(cmd.Context(), rc); err != nil {
			return fmt.Errorf("cluster %s forgotten, but removing the agent from it failed: %w", name, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deleted connected cluster %s/%s and removed its agent\n", rg, name)
		return nil
	}
	cmd.AddCommand(connectC, show, list, del)
	return cmd
}

// waitCluster waits for the agent's first report, showing dots meanwhile.
func waitCluster(ctx context.Context, ws *client.Client, rg, name string, progress io.Writer) (api.ConnectedCluster, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var c api.ConnectedCluster
	for {
		if err := ws.Do(ctx, "GET", clusterPath(rg, name), nil, &c); err != nil {
			return c, err
		}
		if c.ConnectivityStatus == api.Connected {
			fmt.Fprintln(progress, " Connected")
			return c, nil
		}
		fmt.Fprint(progress, ".")
		select {
		case <-ctx.Done():
			fmt.Fprintln(progress)
			return c, errors.New("the agent did not connect within 2 minutes: check `kubectl -n azure-arc get pods` and `kubectl -n azure-arc logs deploy/outpost-agent`")
		case <-time.After(500 * time.Millisecond):
		}
	}
}
