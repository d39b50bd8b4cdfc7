package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
)

// Layout under ROOT.
const (
	dirWD      = "wd"      // the command's cwd: the code
	dirInputs  = "inputs"  // inputs/<name>/
	dirOutputs = "outputs" // outputs/<name>/
	dirShims   = "bin/shims"
	dirLogs    = "logs"
)

// nameRE is what an input or output name may be: it becomes a folder name
// and part of an environment variable's name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func checkName(kind, name string) error {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%s name %q: want letters, digits, _, . and -", kind, name)
	}
	return nil
}

// location is a datastore path the job reads or writes.
type location struct {
	ds, path string
}

func parseLocation(what, uri string) (location, error) {
	ds, p, err := artifacts.ParseURI(uri)
	if err != nil {
		return location{}, fmt.Errorf("%s: %w", what, err)
	}
	return location{ds, p}, nil
}

// folder is the location as a folder prefix ("" or ending in "/").
func (l location) folder() string {
	if l.path == "" || strings.HasSuffix(l.path, "/") {
		return l.path
	}
	return l.path + "/"
}

// input is an input as this pod has it.
type input struct {
	name     string
	literal  *string
	file     bool // uri_file
	direct   bool // the command gets the URI itself
	readOnly bool
	uri      string
	loc      location
}

// output is an output as this pod writes it.
type output struct {
	name  string
	file  bool // uri_file
	dir   string
	value string // the path the command writes
	loc   location
}

// plan is what a JobRun asks of this pod, checked before anything is done.
type plan struct {
	code    *location
	inputs  []input
	outputs []output
	outDir  location // ./outputs goes here
}

// makePlan checks a JobRun: a bad URI or mode is reported before any
// download, not after the command ran.
func makePlan(run *api.JobRun, root string) (*plan, error) {
	var p plan
	var errs []error
	if run.Command == "" {
		errs = append(errs, errors.New("the job has no command"))
	}
	if run.Code != "" {
		l, err := parseLocation("code", run.Code)
		if err != nil {
			errs = append(errs, err)
		}
		p.code = &l
	}
	for _, name := range slices.Sorted(maps.Keys(run.Inputs)) {
		in := run.Inputs[name]
		if err := checkName("input", name); err != nil {
			errs = append(errs, err)
			continue
		}
		i := input{name: name, literal: in.Literal, uri: in.URI, file: in.Type == "uri_file"}
		if in.Literal == nil {
			if in.URI == "" {
				errs = append(errs, fmt.Errorf("input %s: neither a literal nor a URI", name))
				continue
			}
			switch in.Mode {
			case "", "ro_mount", "eval_mount":
				i.readOnly = true
			case "download", "eval_download":
			case "direct":
				i.direct = true
			default:
				errs = append(errs, fmt.Errorf("input %s: mode %q: want ro_mount, download or direct", name, in.Mode))
				continue
			}
			l, err := parseLocation("input "+name, in.URI)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if i.file && (l.path == "" || strings.HasSuffix(l.path, "/")) {
				errs = append(errs, fmt.Errorf("input %s: a uri_file names a file, not the folder %s", name, in.URI))
				continue
			}
			i.loc = l
		}
		p.inputs = append(p.inputs, i)
	}
	for _, name := range slices.Sorted(maps.Keys(run.Outputs)) {
		out := run.Outputs[name]
		if err := checkName("output", name); err != nil {
			errs = append(errs, err)
			continue
		}
		l, err := parseLocation("output "+name, out.URI)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		o := output{name: name, file: out.Type == "uri_file", dir: filepath.Join(root, dirOutputs, name), loc: l, value: filepath.Join(root, dirOutputs, name)}
		if o.file {
			base := "output"
			if l.path != "" && !strings.HasSuffix(l.path, "/") {
				base = path.Base(l.path)
			} else {
				o.loc.path = l.folder() + base
			}
			o.value = filepath.Join(o.dir, base)
		}
		p.outputs = append(p.outputs, o)
	}
	if run.Artifacts == "" {
		errs = append(errs, errors.New("the job has no artifacts URI for ./outputs"))
	} else if l, err := parseLocation("artifacts", run.Artifacts); err != nil {
		errs = append(errs, err)
	} else {
		p.outDir = l
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("the job's spec: %w", errors.Join(errs...))
	}
	return &p, nil
}

// fetch downloads the code into ROOT/wd and the inputs into
// ROOT/inputs/<name>/, and returns what ${{inputs.x}} stands for.
func fetch(ctx context.Context, store *artifacts.Client, p *plan, root string) (map[string]string, error) {
	wd := filepath.Join(root, dirWD)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return nil, err
	}
	if p.code != nil {
		// A path without a slash is a file or a folder: the client tells.
		if _, err := store.Download(ctx, p.code.ds, p.code.path, wd); err != nil {
			return nil, fmt.Errorf("downloading the code: %w", err)
		}
	}
	values := map[string]string{}
	for _, in := range p.inputs {
		switch {
		case in.literal != nil:
			values[in.name] = *in.literal
			continue
		case in.direct:
			values[in.name] = in.uri
			continue
		}
		dir := filepath.Join(root, dirInputs, in.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		prefix := in.loc.folder()
		if in.file {
			prefix = in.loc.path
		}
		if _, err := store.Download(ctx, in.loc.ds, prefix, dir); err != nil {
			return nil, fmt.Errorf("downloading input %s: %w", in.name, err)
		}
		values[in.name] = dir
		if in.file {
			f := filepath.Join(dir, path.Base(in.loc.path))
			if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
				return nil, fmt.Errorf("input %s is a uri_file, but %s is a folder", in.name, in.uri)
			}
			values[in.name] = f
		}
		if in.readOnly {
			if err := readOnly(dir); err != nil {
				return nil, fmt.Errorf("input %s: making it read-only: %w", in.name, err)
			}
		}
	}
	return values, nil
}

// readOnly takes the write bits off a tree, as a read-only mount has none.
func readOnly(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, info.Mode().Perm()&^0o222)
	})
}

// makeOutputs makes ROOT/wd/outputs and ROOT/outputs/<name>/, and returns
// what ${{outputs.y}} stands for.
func makeOutputs(p *plan, root string) (map[string]string, error) {
	if err := os.MkdirAll(filepath.Join(root, dirWD, "outputs"), 0o755); err != nil {
		return nil, err
	}
	values := map[string]string{}
	for _, o := range p.outputs {
		if err := os.MkdirAll(o.dir, 0o755); err != nil {
			return nil, err
		}
		values[o.name] = o.value
	}
	return values, nil
}

// upload sends the outputs and ./outputs to their datastore paths; every
// failure is reported, naming what it was.
func upload(ctx context.Context, store *artifacts.Client, p *plan, root string) error {
	var errs []error
	for _, o := range p.outputs {
		var err error
		if o.file {
			if st, serr := os.Stat(o.value); serr != nil || !st.Mode().IsRegular() {
				err = fmt.Errorf("the command wrote no file at %s", o.value)
			} else {
				err = store.UploadFile(ctx, o.value, o.loc.ds, o.loc.path)
			}
		} else {
			err = store.UploadDir(ctx, o.dir, o.loc.ds, o.loc.folder(), artifacts.UploadOptions{})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("uploading output %s to %s: %w", o.name, artifacts.URI(o.loc.ds, o.loc.path), err))
		}
	}
	if err := store.UploadDir(ctx, filepath.Join(root, dirWD, "outputs"), p.outDir.ds, p.outDir.folder(), artifacts.UploadOptions{}); err != nil {
		errs = append(errs, fmt.Errorf("uploading ./outputs to %s: %w", artifacts.URI(p.outDir.ds, p.outDir.folder()), err))
	}
	return errors.Join(errs...)
}

// lookPath finds an executable in a PATH list (the pod's, not the
// wrapper's own).
func lookPath(name, pathList string) string {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		f := filepath.Join(dir, name)
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return f
		}
	}
	return ""
}

// shims makes ROOT/bin/shims with `python` or `python3` standing for the
// other when the image has only one of them, and returns the PATH for the
// command: the shims first when there are any.
func shims(root, pathList string) (string, error) {
	py, py3 := lookPath("python", pathList), lookPath("python3", pathList)
	var name, target string
	switch {
	case py == "" && py3 != "":
		name, target = "python", py3
	case py3 == "" && py != "":
		name, target = "python3", py
	default:
		return pathList, nil
	}
	dir := filepath.Join(root, dirShims)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	link := filepath.Join(dir, name)
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Symlink(target, link); err != nil {
		return "", err
	}
	return dir + string(filepath.ListSeparator) + pathList, nil
}
