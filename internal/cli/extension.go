package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/output"
)

// multiValueFlags take several values after one flag, as the az CLI's do:
// `--config a=1 b=2`. rewriteMultiValue turns that into `--config a=1 --config b=2`.
var multiValueFlags = map[string]bool{
	"--config": true, "--configuration-settings": true,
	"--config-protected": true, "--configuration-protected-settings": true,
	"--user-assigned-identities": true,
	// az's --set takes several expressions too: --set a=1 b=2.
	"--set": true, "--remove": true,
	// --traffic blue=90 green=10, unquoted.
	"--traffic": true, "--mirror-traffic": true,
}

func rewriteMultiValue(args []string) []string {
	var out []string
	current := ""
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "-"):
			current = ""
			if multiValueFlags[a] {
				current = a
			}
			out = append(out, a)
		case current != "" && len(out) > 0 && out[len(out)-1] != current:
			out = append(out, current, a)
		default:
			out = append(out, a)
		}
	}
	return out
}

func extensionPath(rg, cluster, name string) string {
	return clusterPath(rg, cluster) + "/extensions/" + url.PathEscape(name)
}

// pairs parses k=v values.
func pairs(flag string, values []string) (map[string]string, error) {
	m := map[string]string{}
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want key=value", flag, v)
		}
		m[k] = val
	}
	return m, nil
}

// pemFileKeys hold paths on the command line and PEM contents on the wire:
// the CLI reads and checks the files, so the cluster never needs them.
var pemFileKeys = []string{"sslCertPemFile", "sslKeyPemFile"}

// maxPEMFile bounds what the CLI reads for a PEM setting. A certificate
// chain with its key is a few KiB; without a bound, a wrong path such as
// /dev/zero fills memory until the machine kills something.
const maxPEMFile = 1 << 20

func readPEMFiles(settings map[string]string) error {
	for _, k := range pemFileKeys {
		path, ok := settings[k]
		if !ok || strings.Contains(path, "-----BEGIN") {
			continue
		}
		data, err := readBoundedFile(path, maxPEMFile)
		if err != nil {
			return fmt.Errorf("%s=%s: %w", k, path, err)
		}
		settings[k] = string(data)
	}
	cert, key := settings["sslCertPemFile"], settings["sslKeyPemFile"]
	if cert != "" && key != "" {
		if err := extension.ValidateTLS([]byte(cert), []byte(key)); err != nil {
			return fmt.Errorf("sslCertPemFile/sslKeyPemFile: %w", err)
		}
	}
	return nil
}

// readBoundedFile reads a regular file of at most limit bytes. Devices,
// FIFOs and sockets are refused before anything is read from them: they may
// never end (/dev/zero) or never start (a FIFO without a writer).
func readBoundedFile(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK keeps the open itself from waiting for a FIFO's writer; it
	// changes nothing for the regular files read below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s); give the path of a PEM file", fileKind(fi.Mode()))
	}
	tooBig := fmt.Errorf("larger than %s, the most a PEM file may have", sizeString(limit))
	if fi.Size() > limit {
		return nil, tooBig
	}
	// The file may grow between Stat and the read: bound the read as well.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooBig
	}
	return data, nil
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	default:
		return "mode " + m.String()
	}
}

func extensionTable(es ...api.Extension) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "CLUSTER", "TYPE", "INSTALL STATE", "PROVISIONING", "MESSAGE"}}
		for _, e := range es {
			t.Rows = append(t.Rows, []string{e.Name, e.ClusterName, e.ExtensionType, e.InstallState, e.ProvisioningState, e.Message})
		}
		return t
	}
}

type extensionFlags struct {
	name, rg, cluster, clusterType, extType, scope string
	config, protected                              []string
	noWait                                         bool
}

func (f *extensionFlags) ids(c *cobra.Command) {
	c.Flags().StringVarP(&f.name, "name", "n", "", "extension name")
	c.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group")
	c.Flags().StringVarP(&f.cluster, "cluster-name", "c", "", "connected cluster name")
	enumVar(c, &f.clusterType, "cluster-type", "t", "connectedClusters", "cluster type", "connectedClusters", "managedClusters")
	for _, req := range []string{"name", "resource-group", "cluster-name"} {
		_ = c.MarkFlagRequired(req)
	}
}

func (f *extensionFlags) showCommand() string {
	return "outpost k8s-extension show --name " + shellQuote(f.name) + " --cluster-type " + shellQuote(f.clusterType) +
		" --cluster-name " + shellQuote(f.cluster) + " --resource-group " + shellQuote(f.rg)
}

// checkWith tells the user, when a call that changes something may have
// been carried out although it failed, the command that shows whether it
// was: repeating it blindly could create twice or undo a later change.
func checkWith(err error, show string) error {
	var maybe *client.MaybeAppliedError
	if errors.As(err, &maybe) {
		return fmt.Errorf("%w; check with `%s`", err, show)
	}
	return err
}

// shellQuote quotes s for a command line the user may copy.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/=:", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (f *extensionFlags) settings(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.config, "config", nil, "setting key=value (repeatable; several may follow one flag)")
	c.Flags().StringArrayVar(&f.config, "configuration-settings", nil, "same as --config")
	c.Flags().StringArrayVar(&f.protected, "config-protected", nil, "protected setting key=value, never shown back (sslCertPemFile/sslKeyPemFile take file paths)")
	c.Flags().StringArrayVar(&f.protected, "configuration-protected-settings", nil, "same as --config-protected")
	c.Flags().BoolVar(&f.noWait, "no-wait", false, "return at once instead of waiting for installState Installed")
}

func (f *extensionFlags) request() (api.ExtensionRequest, error) {
	cfg, err := pairs("--config", f.config)
	if err != nil {
		return api.ExtensionRequest{}, err
	}
	prot, err := pairs("--config-protected", f.protected)
	if err != nil {
		return api.ExtensionRequest{}, err
	}
	if err := readPEMFiles(prot); err != nil {
		return api.ExtensionRequest{}, err
	}
	return api.ExtensionRequest{ExtensionType: f.extType, ClusterType: f.clusterType, Scope: f.scope,
		ConfigurationSettings: cfg, ConfigurationProtectedSettings: prot}, nil
}

func k8sExtensionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "k8s-extension", Short: "Install and manage the ML extension in connected clusters"}

	var cf extensionFlags
	create := &cobra.Command{Use: "create", Short: "Install the ML extension into a connected cluster", Args: cobra.NoArgs,
		Long: "Install the ML extension into a connected cluster.\n\n" + settingsHelp()}
	cf.ids(create)
	cf.settings(create)
	create.Flags().StringVar(&cf.extType, "extension-type", "", "extension type: "+"Microsoft.AzureML.Kubernetes")
	create.Flags().StringVar(&cf.scope, "scope", "cluster", "cluster (the ML extension is cluster-wide)")
	create.Flags().String("release-train", "stable", "accepted for compatibility")
	_ = create.MarkFlagRequired("extension-type")
	createOut := outputFlag(create)
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		req, err := cf.request()
		if err != nil {
			return err
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		var e api.Extension
		if err := ws.Do(cmd.Context(), "PUT", extensionPath(cf.rg, cf.cluster, cf.name), req, &e); err != nil {
			return checkWith(err, cf.showCommand())
		}
		return finishExtension(cmd, ws, e, cf, *createOut)
	}

	var uf extensionFlags
	update := &cobra.Command{Use: "update", Short: "Change settings of the extension (merged into the current ones) and roll them out", Args: cobra.NoArgs,
		Long: "Change settings of the extension and roll them out. The settings given are merged into the current ones;\n" +
			"an empty value (key=) removes a setting.\n\n" + settingsHelp()}
	uf.ids(update)
	uf.settings(update)
	updateOut := outputFlag(update)
	update.RunE = func(cmd *cobra.Command, _ []string) error {
		req, err := uf.request()
		if err != nil {
			return err
		}
		req.ClusterType = ""
		ws, err := connect()
		if err != nil {
			return err
		}
		var e api.Extension
		if err := ws.Do(cmd.Context(), "PATCH", extensionPath(uf.rg, uf.cluster, uf.name), req, &e); err != nil {
			return checkWith(err, uf.showCommand())
		}
		return finishExtension(cmd, ws, e, uf, *updateOut)
	}

	var sf extensionFlags
	show := &cobra.Command{Use: "show", Short: "Show the extension and its installState", Args: cobra.NoArgs}
	sf.ids(show)
	showOut := outputFlag(show)
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		return fetchAndPrint(cmd, *showOut, extensionPath(sf.rg, sf.cluster, sf.name), func(e api.Extension) func() output.Table { return extensionTable(e) })
	}

	var lf extensionFlags
	list := &cobra.Command{Use: "list", Short: "List a cluster's extensions", Args: cobra.NoArgs}
	list.Flags().StringVarP(&lf.rg, "resource-group", "g", "", "resource group")
	list.Flags().StringVarP(&lf.cluster, "cluster-name", "c", "", "connected cluster name")
	enumVar(list, &lf.clusterType, "cluster-type", "t", "connectedClusters", "cluster type", "connectedClusters", "managedClusters")
	_ = list.MarkFlagRequired("resource-group")
	_ = list.MarkFlagRequired("cluster-name")
	listOut := outputFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return fetchAndPrint(cmd, *listOut, clusterPath(lf.rg, lf.cluster)+"/extensions", func(es []api.Extension) func() output.Table { return extensionTable(es...) })
	}

	var df extensionFlags
	del := &cobra.Command{Use: "delete", Short: "Remove the extension and everything it created in the cluster", Args: cobra.NoArgs}
	df.ids(del)
	del.Flags().BoolP("yes", "y", false, "accepted for compatibility; nothing asks")
	del.Flags().BoolVar(&df.noWait, "no-wait", false, "return at once")
	del.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		if err := ws.Do(cmd.Context(), "DELETE", extensionPath(df.rg, df.cluster, df.name), nil, nil); err != nil {
			return checkWith(err, df.showCommand())
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deleted extension %s; the cluster agent removes its resources from namespace %s\n", df.name, extension.Namespace)
		return nil
	}

	var rf extensionFlags
	render := &cobra.Command{Use: "render", Short: "Print the extension's manifests (YAML) for these settings, for GitOps", Args: cobra.NoArgs}
	render.Flags().StringVarP(&rf.name, "name", "n", "azureml", "extension name")
	rf.settings(render)
	nodes := render.Flags().Int("nodes", 3, "nodes of the target cluster (the router runs 1 replica below 3)")
	render.RunE = func(cmd *cobra.Command, _ []string) error {
		req, err := rf.request()
		if err != nil {
			return err
		}
		set, err := extension.Parse(req.ConfigurationSettings, req.ConfigurationProtectedSettings)
		if err != nil {
			return err
		}
		for _, w := range append(set.Warnings, extension.Unsupported(set)...) {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
		}
		objs, err := extension.Render(set, extension.RenderOptions{Name: rf.name, Image: Image(), NodeCount: *nodes})
		if err != nil {
			return err
		}
		for _, o := range objs {
			data, err := yaml.Marshal(o.Object)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "---\n%s", data)
		}
		return nil
	}
	cmd.AddCommand(create, update, show, list, del, render)
	return cmd
}

// settingsHelp lists the accepted settings for --help, from the same table
// the workspace validates against, so the two cannot disagree.
func settingsHelp() string {
	var b strings.Builder
	b.WriteString("Settings (--config key=value; those marked protected go with --config-protected):\n")
	for _, k := range extension.Keys() {
		fmt.Fprintf(&b, "  %s", k.Name)
		if k.Default != "" {
			fmt.Fprintf(&b, " (default %s)", k.Default)
		}
		if k.Protected {
			b.WriteString(" (protected)")
		}
		fmt.Fprintf(&b, "\n      %s\n", k.Description)
	}
	return b.String()
}

// finishExtension shows warnings, waits for Installed (unless --no-wait) with
// a progress line per change, and prints the result.
func finishExtension(cmd *cobra.Command, ws *client.Client, e api.Extension, f extensionFlags, format output.Options) error {
	for _, w := range e.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	if !f.noWait {
		var err error
		e, err = waitExtension(cmd.Context(), ws, e, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
	}
	return printResult(cmd, format, e, extensionTable(e))
}

func waitExtension(ctx context.Context, ws *client.Client, e api.Extension, progress io.Writer) (api.Extension, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	last := ""
	start := time.Now()
	for {
		line := fmt.Sprintf("%s: %s", e.InstallState, e.Message)
		if line != last {
			fmt.Fprintf(progress, "[%4.1fs] %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		switch e.InstallState {
		case api.InstallInstalled:
			return e, nil
		case api.InstallFailed:
			return e, fmt.Errorf("extension %s failed: %s", e.Name, e.Message)
		}
		select {
		case <-ctx.Done():
			return e, errors.New("extension not Installed after 10 minutes; see `outpost k8s-extension show`")
		case <-time.After(300 * time.Millisecond):
		}
		if err := ws.Do(ctx, "GET", extensionPath(e.ResourceGroup, e.ClusterName, e.Name), nil, &e); err != nil {
			return e, err
		}
	}
}
