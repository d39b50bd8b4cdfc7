package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/jobspec"
)

// maxCodeBytes is Azure ML's limit on a job's code snapshot.
const maxCodeBytes = 300 << 20

// uploadRoot is where local files go in the datastore, as with Azure ML.
const uploadRoot = "LocalUpload/"

// uploader is what submitting a document needs of the artifacts client;
// tests fake it.
type uploader interface {
	Exists(ctx context.Context, datastore, prefix string) (bool, error)
	UploadDir(ctx context.Context, dir, datastore, prefix string, o artifacts.UploadOptions) error
	UploadFile(ctx context.Context, file, datastore, path string) error
}

// localUpload is a local file or folder a document names. Its datastore
// path holds the digest of its content, so it is known before anything is
// uploaded and an unchanged folder is uploaded once.
type localUpload struct {
	Field string // where the document names it: code, inputs.data.path, ...
	Local string // absolute path
	Dir   bool
	Opts  artifacts.UploadOptions
	Files int
	Bytes int64
	Path  string // in the datastore: LocalUpload/<digest>/<basename>, "/" after a folder
}

func (u localUpload) URI() string { return artifacts.URI(artifacts.Datastore, u.Path) }

// resolver replaces the local paths of a document (a job, an environment,
// a data asset, in its generic JSON form) by the datastore URIs they will
// be uploaded to, and inlines the files that are inlined. It reads local
// files but sends nothing: the document can be validated before anything
// is uploaded.
type resolver struct {
	// loadYAML reads a YAML file (an environment or conda file) into its
	// generic JSON form.
	loadYAML func(file string) (any, error)
	uploads  []localUpload
}

// remoteRE matches the references that are not local paths: azureml:
// assets and URIs with a scheme (azureml://, https://, wasbs://, abfss://).
var remoteRE = regexp.MustCompile(`^(?i:azureml:|[a-z][a-z0-9+.-]*://)`)

// localPath tells whether a document's path is local, and gives it
// without az's optional "file:" prefix.
func localPath(p string) (string, bool) {
	if remoteRE.MatchString(p) {
		return "", false
	}
	return strings.TrimPrefix(p, "file:"), true
}

// absPath is p, taken relative to base, made absolute: the upload's name
// is the folder's own ("." would name nothing).
func absPath(base, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	// Abs fails only when the current folder is gone; the path's own
	// error says so when it is used.
	return filepath.Clean(p)
}

// fieldError names the field of the document a problem is at, so that
// mlyaml can point at its line.
func fieldError(path string, err error) error {
	if path == "" {
		return err
	}
	return &jobspec.FieldError{Path: path, Msg: err.Error()}
}

// unsupportedJobType refuses the job types Outpost does not run before
// anything else is looked at: their fields (trial, jobs) would only make
// unknown-field errors that hide the point.
func unsupportedJobType(doc map[string]any) error {
	t, _ := doc["type"].(string)
	switch strings.ToLower(t) {
	case "sweep", "pipeline":
		return &jobspec.FieldError{Path: "type", Msg: fmt.Sprintf("%s jobs are not supported yet: only command jobs run (type: command)", t)}
	}
	return nil
}

// job resolves a command job document whose local paths are relative to
// base.
func (r *resolver) job(doc map[string]any, base string) error {
	var errs []error
	if code, ok := doc["code"].(string); ok {
		if p, local := localPath(code); local {
			uri, err := r.code(absPath(base, p))
			if err != nil {
				errs = append(errs, fieldError("code", err))
			} else {
				doc["code"] = uri
			}
		}
	}
	if inputs, ok := doc["inputs"].(map[string]any); ok {
		for _, name := range slices.Sorted(maps.Keys(inputs)) {
			in, ok := inputs[name].(map[string]any)
			if !ok {
				continue // a literal
			}
			if err := r.data(in, base, "inputs."+name); err != nil {
				errs = append(errs, err)
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

// code plans the upload of a job's code folder.
func (r *resolver) code(dir string) (string, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s does not exist (a relative path is taken from the folder of the YAML file)", dir)
	case err != nil:
		return "", err
	case !st.IsDir():
		return "", fmt.Errorf("%s is a file; code is a folder, uploaded whole as the job's working directory: give the folder that holds the file and name the file in command", dir)
	}
	u, err := r.dir("code", dir, artifacts.UploadOptions{Ignore: true, MaxBytes: maxCodeBytes})
	if err != nil {
		if strings.Contains(err.Error(), "more than the limit") {
			err = fmt.Errorf("%w\n(300 MiB is Azure ML's limit on a job's code snapshot)", err)
		}
		return "", err
	}
	return u.URI(), nil
}

// data resolves the path of an input or a data asset, whose type decides
// whether a file or a folder is wanted.
func (r *resolver) data(in map[string]any, base, field string) error {
	p, ok := in["path"].(string)
	if !ok {
		return nil
	}
	p, local := localPath(p)
	if !local {
		return nil
	}
	typ := jobspec.TypeURIFolder
	if t, ok := in["type"].(string); ok && t != "" {
		typ = strings.ToLower(t)
	}
	abs := absPath(base, p)
	pathField := jobspec.JoinPath(field, "path")
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fieldError(pathField, fmt.Errorf("%s does not exist (a relative path is taken from the folder of the YAML file)", abs))
	case err != nil:
		return fieldError(pathField, err)
	case st.IsDir() && typ == jobspec.TypeURIFile:
		return fieldError(pathField, fmt.Errorf("%s is a folder, but type is uri_file: give a file, or use type uri_folder", abs))
	case !st.IsDir() && (typ == jobspec.TypeURIFolder || typ == jobspec.TypeMLTable):
		return fieldError(pathField, fmt.Errorf("%s is a file, but type is %s, which wants a folder: give a folder, or use type uri_file", abs, typ))
	}
	var u localUpload
	if st.IsDir() {
		if typ == jobspec.TypeMLTable {
			if _, err := os.Stat(filepath.Join(abs, "MLTable")); err != nil {
				return fieldError(pathField, fmt.Errorf("%s holds no MLTable file, which type mltable needs", abs))
			}
		}
		u, err = r.dir(pathField, abs, artifacts.UploadOptions{})
	} else {
		u, err = r.file(pathField, abs)
	}
	if err != nil {
		return fieldError(pathField, err)
	}
	in["path"] = u.URI()
	return nil
}

// environmentFile reads an environment YAML (file:./env.yml) for a job:
// inline environments have no name or version.
func (r *resolver) environmentFile(file string) (map[string]any, error) {
	v, err := r.loadYAML(file)
	if err != nil {
		return nil, err
	}
	env, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: an environment file is a mapping of fields (image, conda_file, build, ...)", file)
	}
	delete(env, "name")
	delete(env, "version")
	delete(env, "$schema")
	if err := r.environment(env, filepath.Dir(file), ""); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return env, nil
}

// environment inlines a local conda file and uploads a local build
// context. field is where env is in its document ("" for an environment
// document).
func (r *resolver) environment(env map[string]any, base, field string) error {
	var errs []error
	if f, ok := env["conda_file"].(string); ok {
		if p, local := localPath(f); local {
			file := absPath(base, p)
			v, err := r.loadYAML(file)
			switch _, isMap := v.(map[string]any); {
			case err != nil:
				errs = append(errs, fieldError(jobspec.JoinPath(field, "conda_file"), err))
			case !isMap:
				errs = append(errs, fieldError(jobspec.JoinPath(field, "conda_file"), fmt.Errorf("%s is not a conda environment file (a mapping with name, channels, dependencies)", file)))
			default:
				env["conda_file"] = v
			}
		}
	}
	if b, ok := env["build"].(map[string]any); ok {
		if p, ok := b["path"].(string); ok {
			if p, local := localPath(p); local {
				pathField := jobspec.JoinPath(field, "build.path")
				dir := absPath(base, p)
				st, err := os.Stat(dir)
				switch {
				case err != nil:
					errs = append(errs, fieldError(pathField, err))
				case !st.IsDir():
					errs = append(errs, fieldError(pathField, fmt.Errorf("%s is a file; the build context is a folder (holding the Dockerfile)", dir)))
				default:
					u, err := r.dir(pathField, dir, artifacts.UploadOptions{Ignore: true})
					if err != nil {
						errs = append(errs, fieldError(pathField, err))
					} else {
						b["path"] = u.URI()
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (r *resolver) dir(field, dir string, o artifacts.UploadOptions) (localUpload, error) {
	files, err := artifacts.Scan(dir, o)
	if err != nil {
		return localUpload{}, err
	}
	u := localUpload{Field: field, Local: dir, Dir: true, Opts: o, Files: len(files),
		Path: uploadRoot + artifacts.TreeDigest(files) + "/" + filepath.Base(dir) + "/"}
	for _, f := range files {
		u.Bytes += f.Size
	}
	r.add(u)
	return u, nil
}

func (r *resolver) file(field, file string) (localUpload, error) {
	sum, size, err := hashFile(file)
	if err != nil {
		return localUpload{}, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return localUpload{}, err
	}
	mode := uint32(0o644)
	if st.Mode().Perm()&0o111 != 0 {
		mode = 0o755
	}
	name := filepath.Base(file)
	digest := artifacts.TreeDigest([]artifacts.LocalFile{{Rel: name, Size: size, SHA256: sum, Mode: mode}})
	u := localUpload{Field: field, Local: file, Files: 1, Bytes: size, Path: uploadRoot + digest + "/" + name}
	r.add(u)
	return u, nil
}

// add keeps one upload per datastore path: the same folder named twice
// is uploaded once.
func (r *resolver) add(u localUpload) {
	if !slices.ContainsFunc(r.uploads, func(o localUpload) bool { return o.Path == u.Path }) {
		r.uploads = append(r.uploads, u)
	}
}

func hashFile(file string) (string, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// upload sends what the document names and the datastore lacks, saying
// what it does on progress.
func (r *resolver) upload(ctx context.Context, up uploader, progress io.Writer) error {
	for _, u := range r.uploads {
		there, err := up.Exists(ctx, artifacts.Datastore, u.Path)
		if err != nil {
			return fmt.Errorf("%s: %w", u.Field, err)
		}
		if there {
			fmt.Fprintf(progress, "%s unchanged, reusing its upload\n", u.Field)
			continue
		}
		fmt.Fprintf(progress, "Uploading %s (%d %s, %s)\n", u.Field, u.Files, plural(u.Files, "file", "files"), size(u.Bytes))
		if u.Dir {
			err = up.UploadDir(ctx, u.Local, artifacts.Datastore, u.Path, u.Opts)
		} else {
			err = up.UploadFile(ctx, u.Local, artifacts.Datastore, u.Path)
		}
		if err != nil {
			return fmt.Errorf("uploading %s (%s): %w", u.Field, u.Local, err)
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// size is n bytes for people: 18 B, 4.0 KiB, 12.3 MiB.
func size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
