package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/deploymentspec"
	"outpost.dev/outpost/internal/mlyaml"
	"outpost.dev/outpost/internal/output"
)

func deploymentTable(ds ...api.OnlineDeployment) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "ENDPOINT", "STATE", "INSTANCE TYPE", "READY", "MODEL"}}
		for _, d := range ds {
			state := d.ProvisioningState
			if d.StatusMessage != "" {
				state += ": " + firstLine(d.StatusMessage)
			}
			model := "-"
			if d.Model != nil {
				model = d.Model.Ref
				if d.Model.Inline != nil {
					model = d.Model.Inline.Path
				}
			}
			t.Rows = append(t.Rows, []string{d.Name, d.EndpointName, state, orDash(d.InstanceType), fmt.Sprintf("%d/%d", d.ReadyInstances, d.InstanceCount), model})
		}
		return t
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// depFlags name a deployment: --name/-n and its endpoint,
// --endpoint-name/-e or --endpoint, as az takes them.
type depFlags struct {
	wsFlags
	name, endpoint string
}

func (f *depFlags) add(c *cobra.Command, withName bool) {
	f.wsFlags.add(c)
	if withName {
		c.Flags().StringVarP(&f.name, "name", "n", "", "deployment name")
	}
	c.Flags().StringVarP(&f.endpoint, "endpoint-name", "e", "", "endpoint name")
	c.Flags().StringVar(&f.endpoint, "endpoint", "", "same as --endpoint-name")
}

// need checks the names a command needs.
func (f *depFlags) need(name bool) error {
	if name && strings.TrimSpace(f.name) == "" {
		return errors.New("--name is required: the deployment")
	}
	if strings.TrimSpace(f.endpoint) == "" {
		return errors.New("--endpoint-name is required: the deployment's endpoint")
	}
	return nil
}

func (f *depFlags) show() string {
	return "outpost ml online-deployment show --endpoint-name " + shellQuote(f.endpoint) + f.ids(f.name)
}

// preparedDeployment is a deployment document ready to send: local paths
// replaced by the URIs they will be uploaded to, checked as the workspace
// will check it (but for what needs the workspace's state).
type preparedDeployment struct {
	doc            *mlyaml.Doc
	m              map[string]any
	res            *resolver
	name, endpoint string
}

// prepareDeployment reads a deployment file (--set, --name and
// --endpoint-name over it) and gets it ready to send without sending
// anything: a document with a mistake uploads nothing.
func prepareDeployment(file string, sets []string, name, endpoint string) (*preparedDeployment, error) {
	doc, m, err := loadDoc(file, sets)
	if err != nil {
		return nil, err
	}
	return prepareDeploymentDoc(doc, m, name, endpoint)
}

func prepareDeploymentDoc(doc *mlyaml.Doc, m map[string]any, name, endpoint string) (*preparedDeployment, error) {
	if name != "" {
		m["name"] = name
	}
	if endpoint != "" {
		m["endpoint_name"] = endpoint
	}
	pd := &preparedDeployment{doc: doc, m: m}
	pd.name, _ = m["name"].(string)
	pd.endpoint, _ = m["endpoint_name"].(string)
	// The document as written first: a misspelt field is reported as such
	// before any file it names is read.
	if _, err := deploymentDoc(m); err != nil {
		return nil, explain(doc, err)
	}
	if strings.TrimSpace(pd.name) == "" {
		return nil, explain(doc, &fieldErr{"name", "required: the deployment's name (in the file, or --name)"})
	}
	if strings.TrimSpace(pd.endpoint) == "" {
		return nil, explain(doc, &fieldErr{"endpoint_name", "required: the deployment's endpoint (in the file, or --endpoint-name)"})
	}
	pd.res = &resolver{loadYAML: loadYAMLFile}
	if err := pd.res.deployment(m, doc.Dir()); err != nil {
		return nil, explain(doc, err)
	}
	d, err := deploymentDoc(m)
	if err != nil {
		return nil, explain(doc, err)
	}
	deploymentspec.DefaultDeployment(d)
	if err := deploymentspec.ValidateDeployment(d); err != nil {
		return nil, explain(doc, err)
	}
	return pd, nil
}

func deploymentDoc(m map[string]any) (*api.OnlineDeployment, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return deploymentspec.DecodeDeployment(data)
}

// deployment resolves a deployment document whose local paths are
// relative to base: an inline model's path and the scoring code are
// uploaded, environment files inlined as a job's.
func (r *resolver) deployment(doc map[string]any, base string) error {
	var errs []error
	switch model := doc["model"].(type) {
	case map[string]any:
		if err := r.model(model, base, "model"); err != nil {
			errs = append(errs, err)
		}
	case string:
		if _, local := localPath(model); local {
			errs = append(errs, fieldError("model", fmt.Errorf("%q: a registered model is azureml:NAME:VERSION or azureml:NAME@latest; a local file or folder is given as model: {path: %s}", model, model)))
		}
	}
	if cc, ok := doc["code_configuration"].(map[string]any); ok {
		if code, ok := cc["code"].(string); ok {
			if p, local := localPath(code); local {
				uri, err := r.scoringCode(absPath(base, p))
				if err != nil {
					errs = append(errs, fieldError("code_configuration.code", err))
				} else {
					cc["code"] = uri
				}
			}
		}
	}
	switch env := doc["environment"].(type) {
	case string:
		if f, ok := strings.CutPrefix(env, "file:"); ok {
			inline, err := r.environmentFile(absPath(base, f))
			if err != nil {
				errs = append(errs, fieldError("environment", err))
			} else {
				doc["environment"] = inline
			}
		}
	case map[string]any:
		errs = append(errs, r.environment(env, base, "environment"))
	}
	return errors.Join(errs...)
}

// scoringCode plans the upload of a deployment's code folder.
func (r *resolver) scoringCode(dir string) (string, error) {
	st, err := statLocal(dir)
	switch {
	case err != nil:
		return "", err
	case !st.IsDir():
		return "", fmt.Errorf("%s is a file; code is the folder that holds the scoring script: give the folder, and the script as scoring_script", dir)
	}
	u, err := r.dir("code_configuration.code", dir, artifacts.UploadOptions{Ignore: true, MaxBytes: maxCodeBytes})
	if err != nil {
		return "", err
	}
	return u.URI(), nil
}

func deploymentState(d api.OnlineDeployment) string {
	s := fmt.Sprintf("online deployment %s: %s", d.Name, d.ProvisioningState)
	if d.StatusMessage != "" {
		s += " (" + d.StatusMessage + ")"
	} else if d.ProvisioningState != api.StateSucceeded && d.ProvisioningState != api.StateFailed {
		s += fmt.Sprintf(" (%d of %d instances ready)", d.ReadyInstances, d.InstanceCount)
	}
	return s
}

func deploymentSettled(d api.OnlineDeployment) bool {
	return d.ProvisioningState == api.StateSucceeded || d.ProvisioningState == api.StateFailed
}

// finishDeployment waits (unless noWait) until the deployment is settled,
// moves all traffic to it when asked, prints it, and fails when it Failed.
func finishDeployment(cmd *cobra.Command, ws *client.Client, f depFlags, d api.OnlineDeployment, noWait, allTraffic bool, o output.Options) error {
	p := f.path()
	if !noWait {
		fmt.Fprintln(cmd.ErrOrStderr(), deploymentState(d))
		// No limit: pulling an image may take long; Ctrl-C stops waiting.
		if err := waitFor(cmd.Context(), ws, p.deployment(f.endpoint, d.Name), &d, 0, cmd.ErrOrStderr(), deploymentState, deploymentSettled); err != nil {
			return fmt.Errorf("online deployment %s: %w; see `%s`", d.Name, err, f.show())
		}
	}
	if allTraffic && d.ProvisioningState == api.StateSucceeded {
		var e api.OnlineEndpoint
		if err := ws.Do(cmd.Context(), "PATCH", p.endpoint(f.endpoint), map[string]any{"traffic": map[string]int{d.Name: 100}}, &e); err != nil {
			return fmt.Errorf("online deployment %s Succeeded, but its endpoint's traffic was not moved to it: %w", d.Name, err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "traffic of online endpoint %s: %s\n", f.endpoint, deploymentspec.TrafficString(e.Traffic))
		// As `online-endpoint update --traffic` does: once this returns,
		// the router sends the endpoint's requests to the deployment.
		if err := waitFor(cmd.Context(), ws, p.endpoint(f.endpoint), &e, endpointWait, cmd.ErrOrStderr(), endpointState, endpointSettled); err != nil {
			return fmt.Errorf("online endpoint %s: %w; see `%s`", f.endpoint, err, (&epFlags{wsFlags: f.wsFlags, name: f.endpoint}).show())
		}
	}
	if err := printResult(cmd, o, d, deploymentTable(d)); err != nil {
		return err
	}
	if d.ProvisioningState == api.StateFailed {
		return fmt.Errorf("online deployment %s Failed: %s", d.Name, d.StatusMessage)
	}
	return nil
}

func mlOnlineDeploymentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "online-deployment", Short: "Create and manage the deployments of online endpoints"}
	cmd.AddCommand(deploymentCreateCmd(), deploymentShowCmd(), deploymentListCmd(), deploymentUpdateCmd(), deploymentLogsCmd(), deploymentDeleteCmd())
	return cmd
}

func deploymentCreateCmd() *cobra.Command {
	c := &cobra.Command{Use: "create", Short: "Create an online deployment from a YAML file (Azure ML CLI v2, Kubernetes)", Args: cobra.NoArgs,
		Long: "Create an online deployment of an endpoint: model, code_configuration, environment, instance_type,\n" +
			"instance_count or scale_settings, request_settings, probes, resources, environment_variables. Local paths\n" +
			"(the code folder, an inline model's path) are relative to the file and uploaded first. Waits until it\n" +
			"Succeeded (exit 0) or Failed (exit 1, with the reason). --all-traffic then sends all of the endpoint's\n" +
			"traffic to it."}
	var f depFlags
	f.add(c, true)
	var file string
	var sets []string
	var allTraffic, noWait bool
	c.Flags().StringVarP(&file, "file", "f", "", "the deployment's YAML file")
	// Errors only for a flag not defined, and it is, just above.
	_ = c.MarkFlagRequired("file")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a field of the file: --set a.b=value (repeatable)")
	c.Flags().BoolVar(&allTraffic, "all-traffic", false, "once it Succeeded, send all of the endpoint's traffic to it")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return while it is still Creating")
	c.Flags().Bool("skip-script-validation", false, "accepted for compatibility: the scoring script is checked when it starts")
	local := localRefused(c)
	c.Flags().Bool("web", false, "accepted for compatibility: there is no browser to open")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		if allTraffic && noWait {
			return errors.New("--all-traffic moves the traffic once the deployment Succeeded, which --no-wait does not wait for: leave one out (set traffic later with `outpost ml online-endpoint update --traffic`)")
		}
		pd, err := prepareDeployment(file, sets, f.name, f.endpoint)
		if err != nil {
			return err
		}
		f.name, f.endpoint = pd.name, pd.endpoint
		ws, err := connect()
		if err != nil {
			return err
		}
		p := f.path()
		if err := pd.res.upload(cmd.Context(), artifactsClient(ws, p, cmd.ErrOrStderr()), cmd.ErrOrStderr()); err != nil {
			return err
		}
		var d api.OnlineDeployment
		if err := ws.Do(cmd.Context(), "PUT", p.deployment(pd.endpoint, pd.name), pd.m, &d); err != nil {
			return checkWith(refusal(pd.doc, err), f.show())
		}
		return finishDeployment(cmd, ws, f, d, noWait, allTraffic, *out)
	}
	return c
}

func deploymentShowCmd() *cobra.Command {
	c := &cobra.Command{Use: "show", Short: "Show an online deployment and its state", Args: cobra.NoArgs}
	var f depFlags
	f.add(c, true)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := f.need(true); err != nil {
			return err
		}
		return fetchAndPrint(cmd, *out, f.path().deployment(f.endpoint, f.name), func(d api.OnlineDeployment) func() output.Table { return deploymentTable(d) })
	}
	return c
}

func deploymentListCmd() *cobra.Command {
	c := &cobra.Command{Use: "list", Short: "List an endpoint's deployments", Args: cobra.NoArgs}
	var f depFlags
	f.add(c, false)
	local := localRefused(c)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		if err := f.need(false); err != nil {
			return err
		}
		return fetchAndPrint(cmd, *out, f.path().deployments(f.endpoint), func(ds []api.OnlineDeployment) func() output.Table { return deploymentTable(ds...) })
	}
	return c
}

func deploymentUpdateCmd() *cobra.Command {
	c := &cobra.Command{Use: "update", Short: "Change an online deployment: --set instance_count=2, or -f with its file", Args: cobra.NoArgs,
		Long: "Change an online deployment. --set applies to the deployment as it is (--set instance_count=2,\n" +
			"--set request_settings.request_timeout_ms=3000); -f replaces it with the file (fields the file leaves\n" +
			"out take their defaults). The result is checked as a new deployment is. Waits until it Succeeded or Failed."}
	var f depFlags
	f.add(c, true)
	var file string
	var sets []string
	var noWait bool
	c.Flags().StringVarP(&file, "file", "f", "", "the deployment's YAML file")
	c.Flags().StringArrayVar(&sets, "set", nil, "change a field: --set a.b=value (repeatable)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return while it is still Updating")
	local := localRefused(c)
	c.Flags().Bool("web", false, "accepted for compatibility: there is no browser to open")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		if file == "" && len(sets) == 0 {
			return errors.New("nothing to update: give --set FIELD=VALUE or --file")
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		var pd *preparedDeployment
		var cur api.OnlineDeployment
		if file != "" {
			if pd, err = prepareDeployment(file, sets, f.name, f.endpoint); err != nil {
				return err
			}
			f.name, f.endpoint = pd.name, pd.endpoint
			if err := ws.Do(cmd.Context(), "GET", f.path().deployment(f.endpoint, f.name), nil, &cur); err != nil {
				return err
			}
			// The file is the deployment: what it leaves out is removed (and
			// takes its default).
			was, err := fieldsOf(cur)
			if err != nil {
				return err
			}
			for _, k := range was {
				if _, ok := pd.m[k]; !ok && !slices.Contains(deploymentspec.DeploymentShownFields(), k) {
					pd.m[k] = nil
				}
			}
		} else {
			if err := f.need(true); err != nil {
				return err
			}
			if err := ws.Do(cmd.Context(), "GET", f.path().deployment(f.endpoint, f.name), nil, &cur); err != nil {
				return err
			}
			doc, m, err := shownDoc("online deployment "+f.name, cur, sets, deploymentspec.DeploymentShownFields())
			if err != nil {
				return err
			}
			if pd, err = prepareDeploymentDoc(doc, m, f.name, f.endpoint); err != nil {
				return err
			}
		}
		p := f.path()
		if err := pd.res.upload(cmd.Context(), artifactsClient(ws, p, cmd.ErrOrStderr()), cmd.ErrOrStderr()); err != nil {
			return err
		}
		var d api.OnlineDeployment
		if err := ws.Do(cmd.Context(), "PATCH", p.deployment(f.endpoint, f.name), pd.m, &d); err != nil {
			return checkWith(refusal(pd.doc, err), f.show())
		}
		return finishDeployment(cmd, ws, f, d, noWait, false, *out)
	}
	return c
}

// fieldsOf lists the top-level fields of v's JSON.
func fieldsOf(v any) ([]string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

func deploymentLogsCmd() *cobra.Command {
	c := &cobra.Command{Use: "get-logs", Short: "Print the end of a deployment's scoring server log", Args: cobra.NoArgs,
		Long: "Print the scoring server's log of one instance of the deployment: --instance, else the instance whose\n" +
			"log was written last (the one serving now, after restarts and rollouts). --lines keeps the last N lines."}
	var f depFlags
	f.add(c, true)
	var lines int
	var container, instance string
	c.Flags().IntVarP(&lines, "lines", "l", 0, "print the last N lines (0: the whole log, up to its last 4 MiB)")
	enumVar(c, &container, "container", "c", "inference-server", "the container whose log to print", "inference-server", "storage-initializer")
	c.Flags().StringVar(&instance, "instance", "", "the instance (pod) whose log to print")
	c.Flags().Bool("local", false, "refused: local deployments are not supported")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if l, _ := cmd.Flags().GetBool("local"); l {
			return errors.New("--local: local deployments (Docker on this machine) are not supported")
		}
		if err := f.need(true); err != nil {
			return err
		}
		if lines < 0 {
			return fmt.Errorf("--lines %d: want 0 (all) or more", lines)
		}
		if container == "storage-initializer" {
			return errors.New("--container storage-initializer: a deployment's model and code are fetched by its scoring server, whose log (inference-server) holds that step")
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		path := f.path().deployment(f.endpoint, f.name) + "/logs?lines=" + fmt.Sprint(lines)
		if instance != "" {
			path += "&instance=" + url.QueryEscape(instance)
		}
		var logs api.DeploymentLogs
		if err := ws.Do(cmd.Context(), "GET", path, nil, &logs); err != nil {
			return err
		}
		if (out.Format == "table" || out.Format == "") && out.Query == "" {
			if logs.Instance == "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "online deployment %s has shipped no log yet\n", f.name)
				return nil
			}
			_, err := fmt.Fprint(cmd.OutOrStdout(), logs.Content)
			return err
		}
		return printResult(cmd, *out, logs, func() output.Table {
			return output.Table{Header: []string{"INSTANCE", "LOG"}, Rows: [][]string{{logs.Instance, logs.Content}}}
		})
	}
	return c
}

func deploymentDeleteCmd() *cobra.Command {
	c := &cobra.Command{Use: "delete", Short: "Delete an online deployment that takes no traffic", Args: cobra.NoArgs,
		Long: "Delete an online deployment. One that takes traffic is refused (as in Azure ML): move its traffic\n" +
			"first (online-endpoint update --traffic). Without --no-wait the command returns once the cluster's\n" +
			"agent has removed it."}
	var f depFlags
	f.add(c, true)
	c.Flags().BoolP("yes", "y", false, "accepted for compatibility; nothing asks")
	noWait := c.Flags().Bool("no-wait", false, "return while it is still Deleting")
	local := localRefused(c)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		if err := f.need(true); err != nil {
			return err
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		path := f.path().deployment(f.endpoint, f.name)
		var d api.OnlineDeployment
		if err := ws.Do(cmd.Context(), "DELETE", path, nil, &d); err != nil {
			return checkWith(err, f.show())
		}
		if !*noWait {
			fmt.Fprintln(cmd.ErrOrStderr(), deploymentState(d))
			if err := waitGone(cmd.Context(), ws, path, 10*time.Minute); err != nil {
				return fmt.Errorf("online deployment %s: %w; see `%s`", f.name, err, f.show())
			}
			d.ProvisioningState = "Deleted"
		}
		return printResult(cmd, *out, d, deploymentTable(d))
	}
	return c
}
