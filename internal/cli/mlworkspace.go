package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/output"
)

// mlWorkspace is a workspace's settings, as the API shows them.
type mlWorkspace struct {
	Name           string `json:"name"`
	ResourceGroup  string `json:"resource_group"`
	DefaultCompute string `json:"default_compute"`
}

func mlWorkspaceTable(w mlWorkspace) func() output.Table {
	return func() output.Table {
		return output.Table{Header: []string{"NAME", "RESOURCE GROUP", "DEFAULT COMPUTE"},
			Rows: [][]string{{w.Name, w.ResourceGroup, orDash(w.DefaultCompute)}}}
	}
}

func mlWorkspaceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workspace", Short: "Show and change a workspace's settings"}
	// -n names the workspace here, as in az ml workspace; -w is taken too.
	ids := func(c *cobra.Command, w *wsFlags) {
		c.Flags().StringVarP(&w.ws, "name", "n", "", "workspace name")
		c.Flags().StringVarP(&w.ws, "workspace-name", "w", "", "workspace name (same as --name)")
		c.Flags().StringVarP(&w.rg, "resource-group", "g", "", "resource group")
		_ = c.MarkFlagRequired("resource-group")
	}
	need := func(w wsFlags) error {
		if strings.TrimSpace(w.ws) == "" {
			return fmt.Errorf("--name is required: the workspace")
		}
		return nil
	}

	var sw wsFlags
	show := &cobra.Command{Use: "show", Short: "Show a workspace's settings", Args: cobra.NoArgs}
	ids(show, &sw)
	showOut := outputFlag(show)
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := need(sw); err != nil {
			return err
		}
		return fetchAndPrint(cmd, *showOut, sw.path().base(), mlWorkspaceTable)
	}

	var uw wsFlags
	update := &cobra.Command{Use: "update", Short: "Change a workspace's settings", Args: cobra.NoArgs,
		Long: "Change a workspace's settings. --default-compute is the compute jobs without compute: run on\n" +
			"(\"\" clears it; a workspace with one attached compute uses that one)."}
	ids(update, &uw)
	defaultCompute := update.Flags().String("default-compute", "", "an attached compute (NAME or azureml:NAME); \"\" clears it")
	updateOut := outputFlag(update)
	update.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := need(uw); err != nil {
			return err
		}
		if !cmd.Flags().Changed("default-compute") {
			return fmt.Errorf("nothing to update: give --default-compute")
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		c := strings.TrimPrefix(*defaultCompute, "azureml:")
		var v mlWorkspace
		if err := ws.Do(cmd.Context(), "PATCH", uw.path().base(), map[string]*string{"default_compute": &c}, &v); err != nil {
			return checkWith(err, "outpost ml workspace show --name "+shellQuote(uw.ws)+" --resource-group "+shellQuote(uw.rg))
		}
		return printResult(cmd, *updateOut, v, mlWorkspaceTable(v))
	}
	cmd.AddCommand(show, update)
	return cmd
}

// instanceTypeTable lists a cluster's instance types with their resources.
func instanceTypeTable(its []api.InstanceType) output.Table {
	t := output.Table{Header: []string{"INSTANCE TYPE", "CPU REQ/LIM", "MEMORY REQ/LIM", "GPU", "NODE SELECTOR"}}
	reqLim := func(it api.InstanceType, r string) string {
		req, lim := it.Resources.Requests[r], it.Resources.Limits[r]
		if req == "" && lim == "" {
			return "-"
		}
		return orDash(req) + "/" + orDash(lim)
	}
	for _, it := range its {
		name := it.Name
		if it.BuiltIn {
			name += " (built-in)"
		}
		var sel []string
		for _, k := range slices.Sorted(maps.Keys(it.NodeSelector)) {
			sel = append(sel, k+"="+it.NodeSelector[k])
		}
		t.Rows = append(t.Rows, []string{name, reqLim(it, "cpu"), reqLim(it, "memory"),
			orDash(it.Resources.Limits["nvidia.com/gpu"]), orDash(strings.Join(sel, ","))})
	}
	slices.SortStableFunc(t.Rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return t
}
