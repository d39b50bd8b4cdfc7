package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/output"
)

func computePath(rg, ws, name string) string {
	return "/resourceGroups/" + url.PathEscape(rg) + "/workspaces/" + url.PathEscape(ws) + "/computes/" + url.PathEscape(name)
}

func computeShow(rg, ws, name string) string {
	return "outpost ml compute show --name " + shellQuote(name) + " --workspace-name " + shellQuote(ws) + " --resource-group " + shellQuote(rg)
}

func computeTable(cs ...api.Compute) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "WORKSPACE", "TYPE", "STATE", "NAMESPACE", "IDENTITY", "PRINCIPAL ID", "CLUSTER", "ERRORS"}}
		for _, c := range cs {
			t.Rows = append(t.Rows, []string{c.Name, c.Workspace, c.Type, c.ProvisioningState, c.Namespace, c.Identity.Type,
				c.Identity.PrincipalID, c.ResourceID, strings.Join(c.ProvisioningErrors, "; ")})
		}
		return t
	}
}

func mlCmd() *cobra.Command {
	ml := &cobra.Command{Use: "ml", Short: "Machine learning on attached compute"}
	compute := &cobra.Command{Use: "compute", Short: "Attach connected clusters as compute targets"}
	var name, rg, ws string
	ids := func(c *cobra.Command, withName bool) {
		if withName {
			c.Flags().StringVarP(&name, "name", "n", "", "compute name")
			_ = c.MarkFlagRequired("name")
		}
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group")
		c.Flags().StringVarP(&ws, "workspace-name", "w", "", "workspace name")
		_ = c.MarkFlagRequired("resource-group")
		_ = c.MarkFlagRequired("workspace-name")
	}

	var req api.ComputeRequest
	var noWait bool
	attach := &cobra.Command{Use: "attach", Short: "Attach a connected cluster (checks the cluster, its ML extension and the namespace)", Args: cobra.NoArgs}
	ids(attach, true)
	attach.Flags().StringVar(&req.Type, "type", "", "Kubernetes")
	attach.Flags().StringVar(&req.ResourceID, "resource-id", "", "the connected cluster: /resourceGroups/RG/connectedClusters/NAME or the Azure form")
	attach.Flags().StringVar(&req.Namespace, "namespace", "default", "namespace workloads of this compute run in")
	attach.Flags().BoolVar(&req.CreateNamespace, "create-namespace", false, "create the namespace when the cluster lacks it")
	attach.Flags().StringVar(&req.IdentityType, "identity-type", "", "SystemAssigned (default), UserAssigned or None")
	attach.Flags().StringArrayVar(&req.UserAssignedIdentities, "user-assigned-identities", nil, "user-assigned identity ids (only the first is used)")
	attach.Flags().BoolVar(&noWait, "no-wait", false, "return while the compute is still Creating")
	_ = attach.MarkFlagRequired("type")
	_ = attach.MarkFlagRequired("resource-id")
	attachOut := outputFlag(attach)
	attach.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := connect()
		if err != nil {
			return err
		}
		var comp api.Compute
		if err := c.Do(cmd.Context(), "PUT", computePath(rg, ws, name), req, &comp); err != nil {
			return checkWith(err, computeShow(rg, ws, name))
		}
		for _, w := range comp.Warnings {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
		}
		if !noWait {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			for comp.ProvisioningState == api.StateCreating {
				select {
				case <-ctx.Done():
					return errors.New("compute still Creating after 5 minutes; see `outpost ml compute show`")
				case <-time.After(300 * time.Millisecond):
				}
				if err := c.Do(ctx, "GET", computePath(rg, ws, name), nil, &comp); err != nil {
					return err
				}
			}
		}
		if err := printResult(cmd, *attachOut, comp, computeTable(comp)); err != nil {
			return err
		}
		if comp.ProvisioningState == api.StateFailed {
			return fmt.Errorf("attach failed: %s", strings.Join(comp.ProvisioningErrors, "; "))
		}
		return nil
	}

	show := &cobra.Command{Use: "show", Short: "Show a compute", Args: cobra.NoArgs}
	ids(show, true)
	showOut := outputFlag(show)
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := connect()
		if err != nil {
			return err
		}
		var comp api.Compute
		if err := c.Do(cmd.Context(), "GET", computePath(rg, ws, name), nil, &comp); err != nil {
			return err
		}
		if err := printResult(cmd, *showOut, comp, computeTable(comp)); err != nil {
			return err
		}
		// The table has room for the compute only: its cluster's instance
		// types follow as a table of their own (json and yaml hold them in
		// the object).
		if (showOut.Format == "table" || showOut.Format == "") && showOut.Query == "" && len(comp.InstanceTypes) > 0 {
			fmt.Fprintln(cmd.OutOrStdout())
			t := instanceTypeTable(comp.InstanceTypes)
			return output.Print(cmd.OutOrStdout(), output.Options{Format: "table"}, comp.InstanceTypes, func() output.Table { return t })
		}
		return nil
	}

	list := &cobra.Command{Use: "list", Short: "List computes", Args: cobra.NoArgs}
	ids(list, false)
	listOut := outputFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return fetchAndPrint(cmd, *listOut, "/resourceGroups/"+url.PathEscape(rg)+"/workspaces/"+url.PathEscape(ws)+"/computes",
			func(cs []api.Compute) func() output.Table { return computeTable(cs...) })
	}

	detach := &cobra.Command{Use: "detach", Short: "Detach a compute (the cluster keeps running)", Args: cobra.NoArgs}
	ids(detach, true)
	detach.Flags().BoolP("yes", "y", false, "accepted for compatibility; nothing asks")
	detach.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := connect()
		if err != nil {
			return err
		}
		if err := c.Do(cmd.Context(), "DELETE", computePath(rg, ws, name), nil, nil); err != nil {
			return checkWith(err, computeShow(rg, ws, name))
		}
		fmt.Fprintf(cmd.OutOrStdout(), "detached compute %s\n", name)
		return nil
	}
	compute.AddCommand(attach, show, list, detach)
	ml.AddCommand(compute, mlJobCmd(), mlEnvironmentCmd(), mlDataCmd(), mlWorkspaceCmd(), mlModelCmd(), mlOnlineEndpointCmd(), mlOnlineDeploymentCmd())
	return ml
}
