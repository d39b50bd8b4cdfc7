package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/output"
)

const kindModels = "models"

var modelKind = assetKind[api.Model]{kind: kindModels, cmd: "model", what: "model", table: modelTable}

var modelTypes = []string{api.ModelCustom, api.ModelMLflow, api.ModelTriton}

func modelTable(ms ...api.Model) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "VERSION", "TYPE", "STAGE", "PATH", "CREATED"}}
		for _, m := range ms {
			t.Rows = append(t.Rows, []string{m.Name, m.Version, orDash(m.Type), orDash(m.Stage), m.Path, created(m.CreationContext)})
		}
		return t
	}
}

// model resolves a model document's path (or a deployment's inline
// model's): a local file or folder is uploaded as it is; runs:/<job>/<path>
// and datastore URIs are the workspace's to resolve.
func (r *resolver) model(m map[string]any, base, field string) error {
	p, ok := m["path"].(string)
	if !ok || strings.HasPrefix(p, "runs:/") {
		return nil
	}
	p, local := localPath(p)
	if !local {
		return nil
	}
	abs := absPath(base, p)
	pathField := jobspec.JoinPath(field, "path")
	u, err := r.fileOrFolder(pathField, abs, artifacts.UploadOptions{})
	if err != nil {
		return fieldError(pathField, err)
	}
	m["path"] = u.URI()
	return nil
}

// statLocal is a local path's FileInfo, or an error saying it is missing.
func statLocal(abs string) (os.FileInfo, error) {
	st, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist (a relative path is taken from the folder of the YAML file)", abs)
	}
	return st, err
}

// fileOrFolder plans the upload of a local file or folder.
func (r *resolver) fileOrFolder(field, abs string, o artifacts.UploadOptions) (localUpload, error) {
	st, err := statLocal(abs)
	if err != nil {
		return localUpload{}, err
	}
	if st.IsDir() {
		return r.dir(field, abs, o)
	}
	return r.file(field, abs)
}

func mlModelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Register, show, download and archive models (named, versioned files or folders)"}
	create := modelKind.createCmd(&cobra.Command{Use: "create", Short: "Create a model version from a YAML file or flags", Args: cobra.NoArgs,
		Long: "Create a model version. A local file or folder (--path, or path in the file) is uploaded to the\n" +
			"workspace's datastore first (once: unchanged content is reused; every file's sha256 is kept and checked\n" +
			"on download). runs:/<job>/<path> names what a job kept. Without --version the next version is taken."}, "d", func(create *cobra.Command) assetFields {
		var path, typ string
		create.Flags().StringVarP(&path, "path", "p", "", "a local file or folder, a datastore URI (azureml://datastores/<ds>/paths/<path>) or runs:/<job>/<path>")
		enumVar(create, &typ, "type", "t", "", "type (default: the file's, else custom_model)", modelTypes...)
		return assetFields{
			set: func(m map[string]any) { setFields(m, map[string]string{"path": path, "type": typ}) },
			check: func(m map[string]any) error {
				if p, _ := m["path"].(string); p == "" {
					return &jobspec.FieldError{Path: "path", Msg: "required: a local file or folder, a datastore URI or runs:/<job>/<path> (--path)"}
				}
				if t, ok := m["type"].(string); ok {
					if err := (enumFlag{new(string), modelTypes}).Set(t); err != nil {
						return &jobspec.FieldError{Path: "type", Msg: err.Error()}
					}
					m["type"] = strings.ToLower(t)
				}
				return nil
			},
			resolve: func(r *resolver, m map[string]any, base, field string) error { return r.model(m, base, field) },
		}
	})
	show, _ := modelKind.showListCmds()
	cmd.AddCommand(create, show, modelListCmd(), modelDownloadCmd(), modelStageCmd(true), modelStageCmd(false))
	return cmd
}

func modelListCmd() *cobra.Command {
	c := &cobra.Command{Use: "list", Short: "List models (the latest version of each), or the versions of one; archived ones on request", Args: cobra.NoArgs}
	var w wsFlags
	var name string
	var includeArchived, archivedOnly bool
	w.add(c)
	c.Flags().StringVarP(&name, "name", "n", "", "list the versions of this model")
	c.Flags().BoolVar(&includeArchived, "include-archived", false, "list archived versions too")
	c.Flags().BoolVar(&archivedOnly, "archived-only", false, "list archived versions only")
	maxResults := c.Flags().IntP("max-results", "r", 0, "list at most this many (0: all)")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if *maxResults < 0 {
			return fmt.Errorf("--max-results %d: want 0 (all) or more", *maxResults)
		}
		if includeArchived && archivedOnly {
			return errors.New("give --include-archived or --archived-only, not both")
		}
		path := w.path().assets(kindModels)
		if name != "" {
			path = w.path().versions(kindModels, name)
		}
		switch {
		case includeArchived:
			path += "?includeArchived=true"
		case archivedOnly:
			path += "?archivedOnly=true"
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		ms := []api.Model{}
		if err := ws.Do(cmd.Context(), "GET", path, nil, &ms); err != nil {
			return err
		}
		if *maxResults > 0 && len(ms) > *maxResults {
			ms = ms[:*maxResults]
		}
		return printResult(cmd, *out, ms, modelTable(ms...))
	}
	return c
}

func modelDownloadCmd() *cobra.Command {
	c := &cobra.Command{Use: "download", Short: "Download a model version's files (every file checked against its sha256)", Args: cobra.NoArgs,
		Long: "Download a model version into DOWNLOAD_PATH/<name>/: a folder model keeps its folder's name\n" +
			"(./<name>/model/...), a file model lands as ./<name>/<file>. Without --version: the latest version\n" +
			"that is not archived."}
	var w wsFlags
	var name, version, dest string
	w.add(c)
	nameFlag(c, &name, "model name")
	c.Flags().StringVarP(&version, "version", "v", "", "version (default: the latest that is not archived)")
	c.Flags().StringVarP(&dest, "download-path", "p", ".", "folder to download into")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		p := w.path()
		path := p.asset(kindModels, name)
		if version != "" {
			path = p.version(kindModels, name, version)
		}
		var m api.Model
		if err := ws.Do(cmd.Context(), "GET", path, nil, &m); err != nil {
			return err
		}
		ds, dp, err := artifacts.ParseURI(m.Path)
		if err != nil {
			return fmt.Errorf("model %s version %s: its path %s is not in the workspace's datastore", m.Name, m.Version, m.Path)
		}
		target := filepath.Join(dest, m.Name)
		if strings.HasSuffix(dp, "/") {
			target = filepath.Join(target, filepath.Base(strings.TrimSuffix(dp, "/")))
		} else {
			// A path without a slash may still be a folder: Download puts a
			// file under target, and a folder's files under target too, so
			// a folder keeps its name only when the listing says it is one.
			files, err := artifactsClient(ws, p, cmd.ErrOrStderr()).List(cmd.Context(), ds, dp)
			if err != nil {
				return err
			}
			isFile := false
			for _, f := range files {
				isFile = isFile || f.Path == dp
			}
			if !isFile {
				target = filepath.Join(target, filepath.Base(dp))
			}
		}
		ac := artifactsClient(ws, p, cmd.ErrOrStderr())
		ac.Label = "model " + m.Name + ":" + m.Version
		n, err := ac.Download(cmd.Context(), ds, dp, target)
		if err != nil {
			return err
		}
		res := modelDownload{Name: m.Name, Version: m.Version, Path: target, Files: n}
		return printResult(cmd, *out, res, func() output.Table {
			return output.Table{Header: []string{"NAME", "VERSION", "FILES", "DOWNLOADED TO"}, Rows: [][]string{{res.Name, res.Version, fmt.Sprint(n), target}}}
		})
	}
	return c
}

// modelDownload is what model download prints.
type modelDownload struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Path    string `json:"path"`
	Files   int    `json:"files"`
}

// modelStageCmd is archive (or restore): one version, or every version of
// the model when --version is not given.
func modelStageCmd(archive bool) *cobra.Command {
	use, short, route := "archive", "Archive a model version (or every version): @latest and lists pass over it", "archive"
	if !archive {
		use, short, route = "restore", "Restore an archived model version (or every version)", "restore"
	}
	c := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	var w wsFlags
	var name, version string
	w.add(c)
	nameFlag(c, &name, "model name")
	c.Flags().StringVarP(&version, "version", "v", "", "version (default: every version)")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		p := w.path()
		if version != "" {
			var m api.Model
			if err := ws.Do(cmd.Context(), "POST", p.version(kindModels, name, version)+"/"+route, nil, &m); err != nil {
				return err
			}
			return printResult(cmd, *out, m, modelTable(m))
		}
		ms := []api.Model{}
		if err := ws.Do(cmd.Context(), "POST", p.asset(kindModels, name)+"/"+route, nil, &ms); err != nil {
			return err
		}
		return printResult(cmd, *out, ms, modelTable(ms...))
	}
	return c
}
