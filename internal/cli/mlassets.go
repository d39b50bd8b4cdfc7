package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/output"
)

// Asset kinds, as the API names their collections.
const (
	kindEnvironments = "environments"
	kindData         = "data"
)

// readOnlyFields are shown by the workspace but not written by users.
var readOnlyFields = map[string]bool{"id": true, "creation_context": true}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// normalizeDoc checks a generic document against the Go type it is bound
// for: an unknown field is an error naming it and what is allowed there,
// and numbers and booleans become text where text is wanted (version: 1).
func normalizeDoc(m map[string]any, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := map[string]reflect.StructField{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() || readOnlyFields[name] {
			continue
		}
		fields[name] = f
		names = append(names, name)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f, ok := fields[k]
		p := jobspec.JoinPath(path, k)
		if !ok {
			errs = append(errs, &jobspec.FieldError{Path: p, Msg: fmt.Sprintf("unknown field %q (allowed here: %s)", k, strings.Join(names, ", "))})
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == rawMessageType:
		case ft.Kind() == reflect.String:
			switch v := m[k].(type) {
			case json.Number:
				m[k] = v.String()
			case bool:
				m[k] = strconv.FormatBool(v)
			}
		case ft.Kind() == reflect.Struct:
			if sub, ok := m[k].(map[string]any); ok {
				errs = append(errs, normalizeDoc(sub, ft, p)...)
			}
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.String:
			if sub, ok := m[k].(map[string]any); ok {
				for sk, sv := range sub {
					switch v := sv.(type) {
					case json.Number:
						sub[sk] = v.String()
					case bool:
						sub[sk] = strconv.FormatBool(v)
					}
				}
			}
		}
	}
	return errs
}

// decodeAsset binds a normalized document to its type; a value of the
// wrong type is reported with the field it is at.
func decodeAsset(m map[string]any, v any) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &jobspec.FieldError{Path: te.Field, Msg: fmt.Sprintf("must be %s, not %s", jsonKind(te.Type), te.Value)}
		}
		return err
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.Bool:
		return "true or false"
	}
	return "a number"
}

// assetKind is what the environment and data commands differ in.
type assetKind[T any] struct {
	kind  string // the API's collection
	cmd   string // the command: outpost ml <cmd>
	what  string // what messages call one
	table func(...T) func() output.Table
}

var (
	environmentKind = assetKind[api.Environment]{kind: kindEnvironments, cmd: "environment", what: "environment", table: envTable}
	dataKind        = assetKind[api.Data]{kind: kindData, cmd: "data", what: "data asset", table: dataTable}
)

func envTable(es ...api.Environment) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "VERSION", "IMAGE", "BUILD", "CREATED"}}
		for _, e := range es {
			build := "-"
			if e.Build != nil {
				build = e.Build.Path
			}
			t.Rows = append(t.Rows, []string{e.Name, e.Version, orDash(e.Image), build, created(e.CreationContext)})
		}
		return t
	}
}

func dataTable(ds ...api.Data) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "VERSION", "TYPE", "PATH", "CREATED"}}
		for _, d := range ds {
			t.Rows = append(t.Rows, []string{d.Name, d.Version, orDash(d.Type), d.Path, created(d.CreationContext)})
		}
		return t
	}
}

// assetDoc reads the document of an asset (-f, --set) or starts an empty
// one when there is no file; its local paths are relative to the file's
// folder, else to the current one. explain points errors at lines.
func assetDoc(file string, sets []string) (m map[string]any, base string, explainFn func(error) error, err error) {
	if file == "" {
		if len(sets) > 0 {
			return nil, "", nil, errors.New("--set changes fields of the file given with --file")
		}
		base, err = os.Getwd()
		return map[string]any{}, base, func(err error) error { return err }, err
	}
	doc, m, err := loadDoc(file, sets)
	if err != nil {
		return nil, "", nil, err
	}
	return m, doc.Dir(), func(err error) error { return explain(doc, err) }, nil
}

// setFields puts the flags given into the document, over the file's
// fields.
func setFields(m map[string]any, fields map[string]string) {
	for k, v := range fields {
		if v != "" {
			m[k] = v
		}
	}
}

// versionOf is a document's version as text, whatever YAML made of it.
func versionOf(m map[string]any) string {
	switch v := m["version"].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

func mlEnvironmentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "environment", Short: "Register and show environments (images, conda files, build contexts)"}
	create := environmentKind.createCmd(&cobra.Command{Use: "create", Short: "Create an environment version from a YAML file or flags", Args: cobra.NoArgs,
		Long: "Create an environment version. Without --version (in the file or as a flag) the next version is taken\n" +
			"(1 + the highest numeric one). A local conda_file is read into the environment; a local build context\n" +
			"(build.path) is uploaded to the workspace's datastore."}, "", func(create *cobra.Command) assetFields {
		var image, conda, buildContext, dockerfile string
		create.Flags().StringVarP(&image, "image", "i", "", "Docker image")
		create.Flags().StringVarP(&conda, "conda-file", "c", "", "conda file applied on top of the image")
		create.Flags().StringVarP(&buildContext, "build-context", "b", "", "local folder (or URI) of a Docker build context")
		create.Flags().StringVarP(&dockerfile, "dockerfile-path", "d", "", "the Dockerfile in the build context (default Dockerfile)")
		return assetFields{
			set: func(m map[string]any) {
				setFields(m, map[string]string{"image": image, "conda_file": conda})
				if buildContext != "" || dockerfile != "" {
					b, _ := m["build"].(map[string]any) // a missing build is made below
					if b == nil {
						b = map[string]any{}
						m["build"] = b
					}
					setFields(b, map[string]string{"path": buildContext, "dockerfile_path": dockerfile})
				}
			},
			check: func(m map[string]any) error {
				if m["image"] == nil && m["build"] == nil {
					return &jobspec.FieldError{Msg: "an environment needs image (e.g. image: python:3.11, or --image) or build.path (a folder with a Dockerfile, or --build-context)"}
				}
				return nil
			},
			resolve: (*resolver).environment,
		}
	})
	show, list := environmentKind.showListCmds()
	cmd.AddCommand(create, show, list)
	return cmd
}

func mlDataCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "data", Short: "Register and show data assets (named, versioned datastore paths)"}
	create := dataKind.createCmd(&cobra.Command{Use: "create", Short: "Create a data asset version from a YAML file or flags", Args: cobra.NoArgs,
		Long: "Create a data asset version. A local path is uploaded to the workspace's datastore first (once:\n" +
			"unchanged content is reused). Without --version (in the file or as a flag) the next version is taken."}, "d", func(create *cobra.Command) assetFields {
		var path, typ string
		create.Flags().StringVarP(&path, "path", "p", "", "a local file or folder, or a datastore URI (azureml://datastores/<ds>/paths/<path>)")
		enumVar(create, &typ, "type", "t", "", "type (default: the file's, else uri_folder)", jobspec.TypeURIFolder, jobspec.TypeURIFile, jobspec.TypeMLTable)
		return assetFields{
			set: func(m map[string]any) { setFields(m, map[string]string{"path": path, "type": typ}) },
			check: func(m map[string]any) error {
				if p, _ := m["path"].(string); p == "" {
					return &jobspec.FieldError{Path: "path", Msg: "required: a local file or folder, or azureml://datastores/<datastore>/paths/<path> (--path)"}
				}
				if t, ok := m["type"].(string); ok {
					if err := (enumFlag{new(string), []string{jobspec.TypeURIFolder, jobspec.TypeURIFile, jobspec.TypeMLTable}}).Set(t); err != nil {
						return &jobspec.FieldError{Path: "type", Msg: err.Error()}
					}
					m["type"] = strings.ToLower(t)
				}
				return nil
			},
			resolve: (*resolver).data,
		}
	})
	show, list := dataKind.showListCmds()
	cmd.AddCommand(create, show, list)
	return cmd
}

// assetFields are a kind's own part of its create command: set puts its
// flags into the document, check tells what the document lacks, resolve
// reads or uploads the local files it names.
type assetFields struct {
	set     func(m map[string]any)
	check   func(m map[string]any) error
	resolve func(r *resolver, m map[string]any, base, field string) error
}

// createCmd makes c the kind's create command: the flags every kind has
// (--file, --name, --version, --description with descShorthand, --set,
// the workspace's, --output) around its own, which own adds. The document
// is the file's with the flags over it; once checked, what it names is
// uploaded and it is created.
func (k assetKind[T]) createCmd(c *cobra.Command, descShorthand string, own func(*cobra.Command) assetFields) *cobra.Command {
	var w wsFlags
	w.add(c)
	var file, name, version, description string
	var sets []string
	c.Flags().StringVarP(&file, "file", "f", "", "the "+k.what+"'s YAML file")
	c.Flags().StringVarP(&name, "name", "n", "", "name (default: the file's)")
	c.Flags().StringVarP(&version, "version", "v", "", "version (default: the file's, else the next one)")
	f := own(c)
	c.Flags().StringVarP(&description, "description", descShorthand, "", "description")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a field of the file: --set a.b=value (repeatable)")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		m, base, explain, err := assetDoc(file, sets)
		if err != nil {
			return err
		}
		setFields(m, map[string]string{"name": name, "version": version, "description": description})
		f.set(m)
		if errs := normalizeDoc(m, reflect.TypeFor[T](), ""); len(errs) > 0 {
			return explain(errors.Join(errs...))
		}
		if err := requireName(m, k.what); err != nil {
			return explain(err)
		}
		if err := f.check(m); err != nil {
			return explain(err)
		}
		r := &resolver{loadYAML: loadYAMLFile}
		if err := f.resolve(r, m, base, ""); err != nil {
			return explain(err)
		}
		var doc T
		if err := decodeAsset(m, &doc); err != nil {
			return explain(err)
		}
		return k.create(cmd, w, m["name"].(string), versionOf(m), r, doc, *out)
	}
	return c
}

func requireName(m map[string]any, what string) error {
	if n, _ := m["name"].(string); strings.TrimSpace(n) == "" {
		return &jobspec.FieldError{Path: "name", Msg: fmt.Sprintf("required: the %s's name (in the file, or --name)", what)}
	}
	return nil
}

// create uploads what the asset names and creates it: PUT of the version
// given, else POST of the next one.
func (k assetKind[T]) create(cmd *cobra.Command, w wsFlags, name, version string, r *resolver, body T, o output.Options) error {
	ws, err := connect()
	if err != nil {
		return err
	}
	p := w.path()
	ctx := cmd.Context()
	if err := r.upload(ctx, artifactsClient(ws, p, cmd.ErrOrStderr()), cmd.ErrOrStderr()); err != nil {
		return err
	}
	var created T
	if version != "" {
		err = ws.Do(ctx, "PUT", p.version(k.kind, name, version), body, &created)
	} else {
		err = ws.Do(ctx, "POST", p.versions(k.kind, name), body, &created)
	}
	if err != nil {
		return checkWith(err, fmt.Sprintf("outpost ml %s list --name %s --workspace-name %s --resource-group %s", k.cmd, shellQuote(name), shellQuote(w.ws), shellQuote(w.rg)))
	}
	return printResult(cmd, o, created, k.table(created))
}

// showListCmds are the kind's show and list commands.
func (k assetKind[T]) showListCmds() (*cobra.Command, *cobra.Command) {
	kind, what := k.kind, k.what
	show := &cobra.Command{Use: "show", Short: "Show a " + what + " version (the latest by default)", Args: cobra.NoArgs}
	var sw wsFlags
	var name, version, label string
	sw.add(show)
	nameFlag(show, &name, what+" name")
	show.Flags().StringVarP(&version, "version", "v", "", "version")
	enumVar(show, &label, "label", "l", "", "label instead of a version", "latest")
	showOut := outputFlag(show)
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		if version != "" && label != "" {
			return errors.New("give --version or --label, not both")
		}
		path := sw.path().asset(kind, name)
		if version != "" {
			path = sw.path().version(kind, name, version)
		}
		return fetchAndPrint(cmd, *showOut, path, func(v T) func() output.Table { return k.table(v) })
	}

	list := &cobra.Command{Use: "list", Short: "List " + what + "s (the latest version of each), or the versions of one", Args: cobra.NoArgs}
	var lw wsFlags
	var lname string
	lw.add(list)
	list.Flags().StringVarP(&lname, "name", "n", "", "list the versions of this "+what)
	maxResults := list.Flags().IntP("max-results", "r", 0, "list at most this many (0: all)")
	listOut := outputFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if *maxResults < 0 {
			return fmt.Errorf("--max-results %d: want 0 (all) or more", *maxResults)
		}
		path := lw.path().assets(kind)
		if lname != "" {
			path = lw.path().versions(kind, lname)
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		vs := []T{}
		if err := ws.Do(cmd.Context(), "GET", path, nil, &vs); err != nil {
			return err
		}
		if *maxResults > 0 && len(vs) > *maxResults {
			vs = vs[:*maxResults]
		}
		return printResult(cmd, *listOut, vs, k.table(vs...))
	}
	return show, list
}
