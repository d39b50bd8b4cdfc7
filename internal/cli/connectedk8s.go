package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	imageref "github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/egress"
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
	var noWait, force bool
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
	connectC.Flags().StringVar(&noProxy, "proxy-skip-range", "", "comma-separated hosts, domains, IP addresses and CIDRs (each optionally with :port) the agent reaches without the proxy")
	connectC.Flags().BoolVar(&noWait, "no-wait", false, "return without waiting for the agent to connect")
	image := connectC.Flags().String("image", Image(), "the outpost image the agent and the extension's components run (push bin/outpost-image.tar from `make image` to your registry and name it here)")
	connectC.Flags().BoolVar(&force, "force", false, "connect a cluster that is already connected under another name or to another workspace: its registrations in this workspace are deleted with their extensions")
	out := outputFlag(connectC)
	connectC.RunE = func(cmd *cobra.Command, _ []string) error {
		if proxy != "" {
			if err := egress.CheckProxy(fmt.Sprintf("proxy %q", proxy), proxy); err != nil {
				return fmt.Errorf("--proxy-https: %w", err)
			}
		}
		if _, err := imageref.ParseReference(*image); err != nil {
			return fmt.Errorf("--image %q: %w (want an image reference such as registry.example.com/outpost:v1)", *image, err)
		}
		if err := egress.CheckNoProxy("proxy skip range", noProxy); err != nil {
			return fmt.Errorf("--proxy-skip-range: %w", err)
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
		// Everything that can refuse is checked before anything is
		// registered or installed: a refusal leaves no trace.
		identity, err := agent.ClusterIdentity(ctx, kube)
		if err != nil {
			return err
		}
		prev, prevHere, err := currentAgent(ctx, ws, kube, progress)
		if err != nil {
			return err
		}
		if prev != nil && !force && prevHere && prev.ResourceGroup == rg && prev.Cluster == name {
			return fmt.Errorf("the cluster of the kubeconfig is already connected as %s/%s to this workspace: nothing to do (to install its agent afresh, pass --force, which also deletes its extensions)", rg, name)
		}
		if prev != nil && !force {
			return fmt.Errorf("the cluster of the kubeconfig is already connected as %s/%s to workspace %s: to connect it as %s/%s, first delete that registration "+
				"(outpost connectedk8s delete --name %s --resource-group %s, logged in to %s), or pass --force to take the cluster over",
				prev.ResourceGroup, prev.Cluster, prev.WorkspaceURL, rg, name, prev.Cluster, prev.ResourceGroup, prev.WorkspaceURL)
		}
		fmt.Fprintf(progress, "registering cluster %s/%s ...\n", rg, name)
		path := clusterPath(rg, name)
		if force {
			path += "?force=true"
		}
		var c api.ConnectedCluster
		if err := ws.Do(ctx, "PUT", path, map[string]string{"proxy": proxyWithoutCredentials(proxy), "clusterIdentity": identity}, &c); err != nil {
			return err
		}
		for _, id := range c.Replaced {
			fmt.Fprintf(progress, "--force: deleted registration %s of this cluster from the workspace, with its extensions\n", id)
		}
		fmt.Fprintf(progress, "installing the agent into namespace %s ...\n", agent.Namespace)
		cfg := agent.Config{WorkspaceURL: ws.Config().URL, ResourceGroup: rg, Cluster: name, Token: c.AgentToken,
			CAPEM: []byte(ws.Config().CA), Proxy: proxy, NoProxy: noProxy, Image: *image}
		if err := agent.Install(ctx, kube, cfg); err != nil {
			// No half-connected cluster: forget the registration again.
			if derr := ws.Do(context.Background(), "DELETE", clusterPath(rg, name), nil, nil); derr != nil {
				return fmt.Errorf("install the agent: %w (removing the registration %s/%s again failed too: %v; delete it with `outpost connectedk8s delete`)", err, rg, name, derr)
			}
			return fmt.Errorf("install the agent: %w (the registration was removed)", err)
		}
		if prev != nil {
			if err := leavePrevious(ctx, ws, *prev, prevHere, c, progress); err != nil {
				return err
			}
		}
		if !noWait {
			fmt.Fprint(progress, "waiting for the agent to connect ")
			c, err = waitCluster(ctx, ws, rg, name, progress)
			if err != nil {
				return err
			}
		}
		c.AgentToken = ""
		c.Replaced = nil
		return printResult(cmd, *out, c, clusterTable(c))
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

	del := &cobra.Command{Use: "delete", Short: "Forget the cluster, and remove the agent and what it installed from the cluster when that agent serves this registration", Args: cobra.NoArgs}
	nameFlags(del)
	del.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
	del.Flags().StringVar(&kubeContext, "kube-context", "", "kubeconfig context")
	del.Flags().BoolP("yes", "y", false, "do not ask for confirmation (accepted for compatibility; nothing asks)")
	del.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		ws, err := connect()
		if err != nil {
			return err
		}
		var c api.ConnectedCluster
		if err := ws.Do(ctx, "GET", clusterPath(rg, name), nil, &c); err != nil {
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
		// Which agent the kubeconfig's cluster runs decides whether it is
		// removed: since a --force it may serve another registration, and
		// the kubeconfig may name another cluster altogether. Read before
		// the registration goes, acted on after.
		other, inspectErr := otherAgent(ctx, ws, kube, c)
		// The registration goes first so that the agent, should it still
		// run, is refused from now on and applies nothing more.
		if err := ws.Do(ctx, "DELETE", clusterPath(rg, name), nil, nil); err != nil {
			return err
		}
		stdout := cmd.OutOrStdout()
		switch {
		case inspectErr != nil:
			return fmt.Errorf("cluster %s/%s forgotten, but its agent was not removed: %w", rg, name, inspectErr)
		case other != "":
			fmt.Fprintf(stdout, "deleted connected cluster %s/%s; nothing removed from the cluster of the kubeconfig: %s\n", rg, name, other)
			return nil
		}
		if err := agent.Uninstall(ctx, rc); err != nil {
			return fmt.Errorf("cluster %s/%s forgotten, but removing the agent from it failed: %w", rg, name, err)
		}
		fmt.Fprintf(stdout, "deleted connected cluster %s/%s and removed its agent\n", rg, name)
		return nil
	}
	cmd.AddCommand(connectC, show, list, del)
	return cmd
}

// currentAgent tells which registration the agent in the cluster serves (nil
// when there is none), and whether that registration is one this workspace
// still has. An agent of a registration this workspace no longer has (its
// removal failed, or the registration was deleted without the CLI) serves
// nothing and is replaced without --force. A removal still under way is
// waited for.
func currentAgent(ctx context.Context, ws *client.Client, kube kubernetes.Interface, progress io.Writer) (*agent.Registration, bool, error) {
	removing, err := agent.Removing(ctx, kube)
	if err != nil {
		return nil, false, err
	}
	if removing {
		fmt.Fprintf(progress, "waiting for the previous agent's namespace %s to finish terminating ...\n", agent.Namespace)
		if err := agent.WaitRemoved(ctx, kube, 2*time.Minute); err != nil {
			return nil, false, err
		}
	}
	prev, err := agent.Installed(ctx, kube)
	if err != nil || prev == nil || !sameWorkspace(prev.WorkspaceURL, ws.Config().URL) {
		return prev, false, err
	}
	err = ws.Do(ctx, "GET", clusterPath(prev.ResourceGroup, prev.Cluster), nil, nil)
	switch {
	case client.IsNotFound(err):
		fmt.Fprintf(progress, "the agent in the cluster serves %s/%s, which this workspace no longer has: replacing it\n", prev.ResourceGroup, prev.Cluster)
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return prev, true, nil
}

// leavePrevious says what became of the registration a --force took the
// cluster from. One in this workspace is deleted (the workspace did that
// already for registrations that carry the cluster's identity); one in
// another workspace cannot be reached with this login and stays there,
// Offline from now on.
func leavePrevious(ctx context.Context, ws *client.Client, prev agent.Registration, here bool, c api.ConnectedCluster, progress io.Writer) error {
	id := "/resourceGroups/" + prev.ResourceGroup + "/connectedClusters/" + prev.Cluster
	if !here {
		fmt.Fprintf(progress, "--force: registration %s/%s of workspace %s no longer has an agent; it stays there and shows Offline: delete it there with `outpost connectedk8s delete`\n",
			prev.ResourceGroup, prev.Cluster, prev.WorkspaceURL)
		return nil
	}
	if id == c.ID || slices.Contains(c.Replaced, id) {
		return nil
	}
	// A registration made before the workspace recorded identities.
	err := ws.Do(ctx, "DELETE", clusterPath(prev.ResourceGroup, prev.Cluster), nil, nil)
	if err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("the cluster is connected as %s/%s, but deleting its previous registration %s/%s failed: %w", c.ResourceGroup, c.Name, prev.ResourceGroup, prev.Cluster, err)
	}
	fmt.Fprintf(progress, "--force: deleted registration %s of this cluster from the workspace, with its extensions\n", id)
	return nil
}

// otherAgent tells, in words, why the cluster of the kubeconfig is not the
// one of registration c or its agent serves another registration; "" when
// its agent (if any) is c's to remove.
func otherAgent(ctx context.Context, ws *client.Client, kube kubernetes.Interface, c api.ConnectedCluster) (string, error) {
	if c.ClusterIdentity != "" {
		identity, err := agent.ClusterIdentity(ctx, kube)
		if err != nil {
			return "", err
		}
		if identity != c.ClusterIdentity {
			return fmt.Sprintf("it is another cluster (kube-system namespace UID %s, the registration's is %s)", identity, c.ClusterIdentity), nil
		}
	}
	prev, err := agent.Installed(ctx, kube)
	if err != nil || prev == nil {
		return "", err
	}
	if !sameWorkspace(prev.WorkspaceURL, ws.Config().URL) || prev.ResourceGroup != c.ResourceGroup || prev.Cluster != c.Name {
		return fmt.Sprintf("its agent serves %s now and was left in place", prev), nil
	}
	return "", nil
}

// sameWorkspace compares workspace URLs as a user would write them.
func sameWorkspace(a, b string) bool {
	ua, erra := url.Parse(strings.TrimRight(a, "/"))
	ub, errb := url.Parse(strings.TrimRight(b, "/"))
	if erra != nil || errb != nil {
		return a == b
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) && ua.Path == ub.Path
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

// proxyWithoutCredentials is what the workspace keeps of the agent's proxy:
// the workspace shows it to every user, so a user:password in it stays in
// the agent's Secret only. The proxy was checked to be a URL before.
func proxyWithoutCredentials(proxy string) string {
	u, err := url.Parse(proxy)
	if err != nil || u.User == nil {
		return proxy
	}
	u.User = nil
	return u.String()
}
