package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/deploymentspec"
	"outpost.dev/outpost/internal/mlyaml"
	"outpost.dev/outpost/internal/output"
	"outpost.dev/outpost/internal/scoringclient"
)

// Paths of online endpoints and their deployments, under the workspace.
func (p wsPath) endpoints() string             { return p.base() + "/onlineEndpoints" }
func (p wsPath) endpoint(name string) string   { return p.endpoints() + "/" + url.PathEscape(name) }
func (p wsPath) deployments(e string) string   { return p.endpoint(e) + "/deployments" }
func (p wsPath) deployment(e, d string) string { return p.deployments(e) + "/" + url.PathEscape(d) }

func endpointTable(es ...api.OnlineEndpoint) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "STATE", "AUTH MODE", "COMPUTE", "TRAFFIC", "SCORING URI"}}
		for _, e := range es {
			state := e.ProvisioningState
			if e.StatusMessage != "" {
				state += ": " + e.StatusMessage
			}
			t.Rows = append(t.Rows, []string{e.Name, state, e.AuthMode, strings.TrimPrefix(e.Compute, "azureml:"),
				orDash(deploymentspec.TrafficString(e.Traffic)), orDash(e.ScoringURI)})
		}
		return t
	}
}

// epFlags name an endpoint: --name/-n, as az takes it.
type epFlags struct {
	wsFlags
	name string
}

func (f *epFlags) add(c *cobra.Command, required bool) {
	f.wsFlags.add(c)
	c.Flags().StringVarP(&f.name, "name", "n", "", "endpoint name")
	if required {
		// Errors only for a flag not defined, and it is, just above.
		_ = c.MarkFlagRequired("name")
	}
}

func (f *epFlags) show() string {
	return "outpost ml online-endpoint show" + f.ids(f.name)
}

// localRefused is az's --local, which deploys to Docker on this machine:
// Outpost deploys to attached clusters only.
func localRefused(c *cobra.Command) func() error {
	local := c.Flags().Bool("local", false, "refused: local endpoints (Docker on this machine) are not supported; deploy to an attached cluster")
	return func() error {
		if *local {
			return errors.New("--local: local endpoints (Docker on this machine) are not supported: endpoints run on attached Kubernetes computes")
		}
		return nil
	}
}

// readDoc reads a document from file (none: an empty one) with the --set
// expressions applied.
func readDoc(file string, sets []string) (*mlyaml.Doc, map[string]any, error) {
	if file != "" {
		return loadDoc(file, sets)
	}
	doc, err := mlyaml.Load("(flags)", []byte("{}"))
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sets {
		if err := doc.Set(s); err != nil {
			return nil, nil, err
		}
	}
	m, err := docMap(doc)
	return doc, m, err
}

// refusal points the lines of a workspace's refusal at the document's.
func refusal(doc *mlyaml.Doc, err error) error {
	var se *client.StatusError
	if errors.As(err, &se) && doc != nil {
		body := se.Body
		body.Message = explainLines(doc, body.Message)
		return &client.StatusError{Code: se.Code, Body: body}
	}
	return err
}

// waitFor polls path into v until done says so, printing each new state
// on progress; it gives up after limit (0: none).
func waitFor[T any](ctx context.Context, ws *client.Client, path string, v *T, limit time.Duration, progress io.Writer, state func(T) string, done func(T) bool) error {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	last := state(*v)
	for !done(*v) {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("still %s after %s", last, limit)
			}
			return &interruptedError{msg: "stopped waiting; it goes on in the workspace"}
		case <-time.After(500 * time.Millisecond):
		}
		if err := ws.Do(ctx, "GET", path, nil, v); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		if s := state(*v); s != last {
			fmt.Fprintln(progress, s)
			last = s
		}
	}
	return nil
}

func endpointState(e api.OnlineEndpoint) string {
	s := "online endpoint " + e.Name + ": " + e.ProvisioningState
	if e.StatusMessage != "" {
		s += " (" + e.StatusMessage + ")"
	}
	return s
}

func endpointSettled(e api.OnlineEndpoint) bool {
	return e.ProvisioningState == api.StateSucceeded || e.ProvisioningState == api.StateFailed
}

// endpointWait is how long create and update wait for the cluster.
const endpointWait = 10 * time.Minute

// finishEndpoint waits (unless noWait) until the endpoint is settled,
// prints it, and fails when it Failed.
func finishEndpoint(cmd *cobra.Command, ws *client.Client, f epFlags, e api.OnlineEndpoint, noWait bool, o output.Options) error {
	if !noWait {
		fmt.Fprintln(cmd.ErrOrStderr(), endpointState(e))
		if err := waitFor(cmd.Context(), ws, f.path().endpoint(e.Name), &e, endpointWait, cmd.ErrOrStderr(), endpointState, endpointSettled); err != nil {
			return fmt.Errorf("online endpoint %s: %w; see `%s`", e.Name, err, f.show())
		}
	}
	if err := printResult(cmd, o, e, endpointTable(e)); err != nil {
		return err
	}
	if e.ProvisioningState == api.StateFailed {
		return fmt.Errorf("online endpoint %s Failed: %s", e.Name, e.StatusMessage)
	}
	return nil
}

func mlOnlineEndpointCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "online-endpoint", Short: "Create and manage online endpoints on attached Kubernetes computes"}
	cmd.AddCommand(endpointCreateCmd(), endpointShowCmd(), endpointListCmd(), endpointUpdateCmd(), endpointDeleteCmd(),
		endpointCredentialsCmd(), endpointRegenerateCmd(), endpointInvokeCmd())
	return cmd
}

func endpointCreateCmd() *cobra.Command {
	c := &cobra.Command{Use: "create", Short: "Create an online endpoint from a YAML file (Azure ML CLI v2, Kubernetes)", Args: cobra.NoArgs,
		Long: "Create an online endpoint: name, compute (azureml:NAME of an attached Kubernetes compute whose ML\n" +
			"extension serves inference), auth_mode (key, the default, or aml_token), description, tags. Traffic is\n" +
			"set once it has deployments (online-endpoint update --traffic). Waits until the cluster has it."}
	var f epFlags
	f.add(c, false)
	var file string
	var sets []string
	var noWait bool
	c.Flags().StringVarP(&file, "file", "f", "", "the endpoint's YAML file")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a field of the file: --set a.b=value (repeatable)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return while the endpoint is still Creating")
	local := localRefused(c)
	c.Flags().Bool("web", false, "accepted for compatibility: there is no browser to open")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		doc, m, err := readDoc(file, sets)
		if err != nil {
			return err
		}
		if f.name != "" {
			m["name"] = f.name
		}
		e, err := endpointDoc(m)
		if err != nil {
			return explain(doc, err)
		}
		if err := deploymentspec.ValidateEndpoint(e, true); err != nil {
			return explain(doc, err)
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		f.name = e.Name
		var created api.OnlineEndpoint
		if err := ws.Do(cmd.Context(), "PUT", f.path().endpoint(e.Name), m, &created); err != nil {
			return checkWith(refusal(doc, err), f.show())
		}
		return finishEndpoint(cmd, ws, f, created, noWait, *out)
	}
	return c
}

// endpointDoc decodes a generic endpoint document as the workspace will.
func endpointDoc(m map[string]any) (*api.OnlineEndpoint, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	e, err := deploymentspec.DecodeEndpoint(data)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(e.Name) == "" {
		return nil, errors.New("name: required: the endpoint's name (in the file, or --name)")
	}
	return e, nil
}

func endpointShowCmd() *cobra.Command {
	c := &cobra.Command{Use: "show", Short: "Show an online endpoint: scoring_uri, traffic, provisioning_state", Args: cobra.NoArgs}
	var f epFlags
	f.add(c, true)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return fetchAndPrint(cmd, *out, f.path().endpoint(f.name), func(e api.OnlineEndpoint) func() output.Table { return endpointTable(e) })
	}
	return c
}

func endpointListCmd() *cobra.Command {
	c := &cobra.Command{Use: "list", Short: "List online endpoints", Args: cobra.NoArgs}
	var w wsFlags
	w.add(c)
	local := localRefused(c)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		return fetchAndPrint(cmd, *out, w.path().endpoints(), func(es []api.OnlineEndpoint) func() output.Table { return endpointTable(es...) })
	}
	return c
}

// endpointPatchFields are what an update sends when they changed.
var endpointPatchFields = []string{"description", "tags", "auth_mode", "traffic", "identity"}

func endpointUpdateCmd() *cobra.Command {
	c := &cobra.Command{Use: "update", Short: "Change an online endpoint: traffic, description, tags, auth mode", Args: cobra.NoArgs,
		Long: "Change an online endpoint. --traffic \"blue=90 green=10\" splits its traffic between its deployments\n" +
			"(whole percents summing to 100, or all 0); deployments left out get 0. --set description=..., --set\n" +
			"tags.k=v, or -f with the endpoint's file. Mirrored traffic is not supported on Kubernetes endpoints."}
	var f epFlags
	f.add(c, false)
	var file string
	var sets, traffic, mirror []string
	var noWait bool
	c.Flags().StringVarP(&file, "file", "f", "", "the endpoint's YAML file: its description, tags, auth_mode and traffic are applied")
	c.Flags().StringArrayVar(&sets, "set", nil, "change a field: --set description=..., --set tags.k=v (repeatable)")
	c.Flags().StringArrayVarP(&traffic, "traffic", "r", nil, "traffic split: \"blue=90 green=10\"")
	c.Flags().StringArrayVar(&mirror, "mirror-traffic", nil, "refused: mirror traffic is not supported on Kubernetes online endpoints")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return before the cluster has the change")
	local := localRefused(c)
	c.Flags().Bool("web", false, "accepted for compatibility: there is no browser to open")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		if len(mirror) > 0 {
			return fmt.Errorf("--mirror-traffic: %s", deploymentspec.ErrMirrorTraffic)
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		var doc *mlyaml.Doc
		var m map[string]any
		if file != "" {
			if doc, m, err = loadDoc(file, sets); err != nil {
				return err
			}
			if f.name == "" {
				f.name, _ = m["name"].(string)
			}
		}
		if strings.TrimSpace(f.name) == "" {
			return errors.New("--name is required: the endpoint (or name in the file given with --file)")
		}
		var cur api.OnlineEndpoint
		if err := ws.Do(cmd.Context(), "GET", f.path().endpoint(f.name), nil, &cur); err != nil {
			return err
		}
		if m == nil {
			// --set applies to the endpoint as it is.
			if doc, m, err = shownDoc("online endpoint "+f.name, cur, sets, deploymentspec.EndpointShownFields()); err != nil {
				return err
			}
		}
		if len(traffic) > 0 {
			t, err := deploymentspec.ParseTraffic(strings.Join(traffic, " "))
			if err != nil {
				return err
			}
			tm := map[string]any{}
			for k, v := range t {
				tm[k] = v
			}
			m["traffic"] = tm
		}
		if _, ok := m["mirror_traffic"]; ok {
			return explain(doc, &fieldErr{"mirror_traffic", deploymentspec.ErrMirrorTraffic.Error()})
		}
		patch, err := changedFields(cur, m, endpointPatchFields)
		if err != nil {
			return explain(doc, err)
		}
		if len(patch) == 0 {
			return errors.New("nothing to update: give --traffic, --set description=..., --set tags.k=v, or --file")
		}
		var updated api.OnlineEndpoint
		if err := ws.Do(cmd.Context(), "PATCH", f.path().endpoint(f.name), patch, &updated); err != nil {
			return checkWith(refusal(doc, err), f.show())
		}
		return finishEndpoint(cmd, ws, f, updated, noWait, *out)
	}
	return c
}

// fieldErr is a problem with one field, which mlyaml points at its line.
type fieldErr struct{ path, msg string }

func (e *fieldErr) Error() string     { return e.path + ": " + e.msg }
func (e *fieldErr) FieldPath() string { return e.path }

// shownDoc makes a document of a resource as the workspace shows it, its
// shown-only fields dropped, with --set expressions applied.
func shownDoc(what string, v any, sets []string, shown []string) (*mlyaml.Doc, map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, err
	}
	for _, f := range shown {
		delete(m, f)
	}
	if data, err = json.Marshal(m); err != nil {
		return nil, nil, err
	}
	// JSON is YAML: the document reads as a file would.
	doc, err := mlyaml.Load(what, data)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sets {
		if err := doc.Set(s); err != nil {
			return nil, nil, err
		}
	}
	m, err = docMap(doc)
	return doc, m, err
}

// changedFields are the fields of m (of those listed) that differ from
// cur's, as JSON values; a field m lacks that cur has is not changed.
func changedFields(cur any, m map[string]any, fields []string) (map[string]any, error) {
	data, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var was map[string]json.RawMessage
	if err := json.Unmarshal(data, &was); err != nil {
		return nil, err
	}
	patch := map[string]any{}
	for _, f := range fields {
		v, ok := m[f]
		if !ok {
			continue
		}
		nv, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		if !sameJSONValue(nv, was[f]) {
			patch[f] = json.RawMessage(nv)
		}
	}
	return patch, nil
}

func sameJSONValue(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	ja, _ := json.Marshal(normalizeNumbers(va))
	jb, _ := json.Marshal(normalizeNumbers(vb))
	return bytes.Equal(ja, jb)
}

// normalizeNumbers makes the numbers and texts of a document compare as
// the workspace takes them (tags: {n: 1} is "1").
func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			out[k] = normalizeNumbers(x)
		}
		return out
	case []any:
		for i := range t {
			t[i] = normalizeNumbers(t[i])
		}
		return t
	case float64:
		return fmt.Sprint(t)
	case bool:
		return fmt.Sprint(t)
	}
	return v
}

func endpointDeleteCmd() *cobra.Command {
	c := &cobra.Command{Use: "delete", Short: "Delete an online endpoint and its deployments", Args: cobra.NoArgs,
		Long: "Delete an online endpoint and its deployments. They leave the cluster at once; without --no-wait the\n" +
			"command returns once the cluster's agent has removed them."}
	var f epFlags
	f.add(c, true)
	c.Flags().BoolP("yes", "y", false, "accepted for compatibility; nothing asks")
	noWait := c.Flags().Bool("no-wait", false, "return while the endpoint is still Deleting")
	local := localRefused(c)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		var e api.OnlineEndpoint
		path := f.path().endpoint(f.name)
		if err := ws.Do(cmd.Context(), "DELETE", path, nil, &e); err != nil {
			return checkWith(err, f.show())
		}
		if !*noWait {
			fmt.Fprintln(cmd.ErrOrStderr(), endpointState(e))
			if err := waitGone(cmd.Context(), ws, path, endpointWait); err != nil {
				return fmt.Errorf("online endpoint %s: %w; see `%s`", f.name, err, f.show())
			}
			e.ProvisioningState = "Deleted"
		}
		return printResult(cmd, *out, e, endpointTable(e))
	}
	return c
}

// waitGone polls path until it is not found.
func waitGone(ctx context.Context, ws *client.Client, path string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := ws.Do(ctx, "GET", path, nil, nil)
		switch {
		case client.IsNotFound(err):
			return nil
		case err != nil && ctx.Err() == nil:
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("still Deleting after %s: its cluster's agent has not confirmed (is the cluster connected?)", limit)
			}
			return &interruptedError{msg: "stopped waiting; the deletion goes on in the workspace"}
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// credentials are what get-credentials prints: keys, or a token.
func endpointCredentialsCmd() *cobra.Command {
	c := &cobra.Command{Use: "get-credentials", Short: "Print an endpoint's keys (key auth) or a fresh aml_token with its expiry", Args: cobra.NoArgs}
	var f epFlags
	f.add(c, true)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		var e api.OnlineEndpoint
		if err := ws.Do(cmd.Context(), "GET", f.path().endpoint(f.name), nil, &e); err != nil {
			return err
		}
		if e.AuthMode == api.AuthModeAMLToken {
			var tok api.EndpointToken
			if err := ws.Do(cmd.Context(), "POST", f.path().endpoint(f.name)+"/token", nil, &tok); err != nil {
				return err
			}
			return printResult(cmd, *out, tok, func() output.Table {
				return output.Table{Header: []string{"ACCESS TOKEN", "TYPE", "EXPIRES (UTC)", "REFRESH AFTER (UTC)"},
					Rows: [][]string{{tok.AccessToken, tok.TokenType, tok.ExpiryTimeUTC.UTC().Format(time.DateTime), tok.RefreshAfterTime.UTC().Format(time.DateTime)}}}
			})
		}
		var keys api.EndpointKeys
		if err := ws.Do(cmd.Context(), "POST", f.path().endpoint(f.name)+"/listKeys", nil, &keys); err != nil {
			return err
		}
		return printResult(cmd, *out, keys, func() output.Table {
			return output.Table{Header: []string{"PRIMARY KEY", "SECONDARY KEY"}, Rows: [][]string{{keys.PrimaryKey, keys.SecondaryKey}}}
		})
	}
	return c
}

func endpointRegenerateCmd() *cobra.Command {
	c := &cobra.Command{Use: "regenerate-keys", Short: "Replace an endpoint's primary or secondary key", Args: cobra.NoArgs,
		Long: "Replace a key endpoint's primary (or secondary) key. The old key stops working as soon as the\n" +
			"cluster's router has the new one; without --no-wait the command returns once the cluster has it.\n" +
			"The new key is not printed: get-credentials shows it."}
	var f epFlags
	f.add(c, true)
	var keyType string
	enumVar(c, &keyType, "key-type", "", "primary", "the key to replace", "primary", "secondary")
	noWait := c.Flags().Bool("no-wait", false, "return before the cluster has the new key")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		path := f.path().endpoint(f.name)
		if err := ws.Do(cmd.Context(), "POST", path+"/regenerateKeys", api.RegenerateKeysRequest{KeyType: keyType}, nil); err != nil {
			return checkWith(err, f.show())
		}
		var e api.OnlineEndpoint
		if err := ws.Do(cmd.Context(), "GET", path, nil, &e); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "regenerated the %s key of online endpoint %s\n", keyType, f.name)
		return finishEndpoint(cmd, ws, f, e, *noWait, *out)
	}
	return c
}

func endpointInvokeCmd() *cobra.Command {
	c := &cobra.Command{Use: "invoke", Short: "Call an endpoint's scoring URI with a request file, through its cluster's router", Args: cobra.NoArgs,
		Long: "POST the request file to the endpoint's scoring URI with its key (or a fresh aml_token) and print the\n" +
			"answer. --deployment-name sends it to that deployment, whatever the traffic split. Over HTTPS the\n" +
			"router's certificate is trusted when a CA this machine trusts issued it, or when it is the\n" +
			"certificate the cluster reported for its router."}
	var f epFlags
	f.add(c, true)
	var requestFile, deployment string
	c.Flags().StringVarP(&requestFile, "request-file", "r", "", "the request body (JSON)")
	c.Flags().StringVarP(&deployment, "deployment-name", "d", "", "the deployment to call (header azureml-model-deployment)")
	c.Flags().StringVar(&deployment, "deployment", "", "same as --deployment-name")
	// Errors only for a flag not defined, and it is, just above.
	_ = c.MarkFlagRequired("request-file")
	local := localRefused(c)
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := local(); err != nil {
			return err
		}
		body, err := os.ReadFile(requestFile)
		if err != nil {
			return fmt.Errorf("--request-file: %w", err)
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		answer, err := scoringclient.Invoke(cmd.Context(), ws, f.path().endpoint(f.name), f.name, deployment, body)
		if err != nil {
			return err
		}
		if err := answer.Err(); err != nil {
			return err
		}
		return printAnswer(cmd, *out, answer.Body)
	}
	return c
}

// printAnswer prints a scoring answer: as it came in the table format,
// else as the JSON value it holds (a JSON string when it holds none).
func printAnswer(cmd *cobra.Command, o output.Options, data []byte) error {
	if (o.Format == "table" || o.Format == "") && o.Query == "" {
		w := cmd.OutOrStdout()
		if _, err := w.Write(data); err != nil {
			return err
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			_, err := io.WriteString(w, "\n")
			return err
		}
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		v = string(data)
	}
	return printResult(cmd, o, v, func() output.Table {
		return output.Table{Header: []string{"ANSWER"}, Rows: [][]string{{strings.TrimSpace(string(data))}}}
	})
}
