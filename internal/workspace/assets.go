package workspace

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	imageref "github.com/google/go-containerregistry/pkg/name"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/store"
)

// Environments and data assets are named and versioned; a version, once
// created, never changes. Each version is one stored resource, named
// "<name>:<version>" (neither holds a colon) under its workspace.

const (
	kindEnvironment = "environments"
	kindData        = "data"
)

// assetKind is what differs between environments and data assets.
type assetKind struct {
	kind, what string // store kind; what messages call one ("environment")
	// normalize checks a request body for the version name:version and
	// returns what the store keeps: the same document for the same content.
	normalize func(s *Server, ctx context.Context, body []byte, name, version string) (json.RawMessage, error)
	// view is a stored version as the API shows it.
	view func(o store.Object, name, version string) any
	// archived, for kinds whose versions can be archived (models), tells
	// an archived version: @latest passes over it, and lists show it only
	// when asked to (?includeArchived=true, ?archivedOnly=true).
	archived func(o store.Object) bool
}

// isArchived tells an archived version of the kind.
func (ak assetKind) isArchived(o store.Object) bool { return ak.archived != nil && ak.archived(o) }

// listed keeps the versions a list shows: those not archived, unless the
// request asks for archived ones too (includeArchived) or only
// (archivedOnly).
func (ak assetKind) listed(r *http.Request, vs []store.Object) ([]store.Object, error) {
	if ak.archived == nil {
		return vs, nil
	}
	q := r.URL.Query()
	flag := func(k string) (bool, error) {
		switch v := q.Get(k); v {
		case "", "false":
			return false, nil
		case "true":
			return true, nil
		default:
			return false, fmt.Errorf("%s=%q: want true or false", k, v)
		}
	}
	include, err := flag("includeArchived")
	if err != nil {
		return nil, err
	}
	only, err := flag("archivedOnly")
	if err != nil {
		return nil, err
	}
	out := []store.Object{}
	for _, o := range vs {
		a := ak.isArchived(o)
		if only && a || !only && (include || !a) {
			out = append(out, o)
		}
	}
	return out, nil
}

var (
	environments = newAssetKind(kindEnvironment, "environment", environmentFields, checkEnvironment)
	dataAssets   = newAssetKind(kindData, "data asset", dataFields, checkData)
)

// assetFields point into an asset document (api.Environment, api.Data) at
// the fields every kind has: those the URL gives and those the server
// fills in.
type assetFields struct {
	schema, id, name, version, description *string
	creationContext                        **api.CreationContext
}

func environmentFields(e *api.Environment) assetFields {
	return assetFields{&e.Schema, &e.ID, &e.Name, &e.Version, &e.Description, &e.CreationContext}
}

func dataFields(d *api.Data) assetFields {
	return assetFields{&d.Schema, &d.ID, &d.Name, &d.Version, &d.Description, &d.CreationContext}
}

// newAssetKind is the kind whose documents are T: fields finds the common
// fields in one, check validates the rest and fills in its defaults.
func newAssetKind[T any](kind, what string, fields func(*T) assetFields, check func(s *Server, ctx context.Context, doc *T) error) assetKind {
	normalize := func(s *Server, ctx context.Context, body []byte, name, version string) (json.RawMessage, error) {
		var doc T
		if err := strictJSON(body, &doc); err != nil {
			return nil, err
		}
		f := fields(&doc)
		if err := sameNameVersion(*f.name, *f.version, name, version); err != nil {
			return nil, err
		}
		if err := check(s, ctx, &doc); err != nil {
			return nil, err
		}
		// What identifies a version is its content: the fields the server
		// fills in are not kept.
		*f.schema, *f.id, *f.creationContext = "", "", nil
		*f.name, *f.version = name, version
		return json.Marshal(doc)
	}
	view := func(o store.Object, name, version string) any {
		var doc T
		f := fields(&doc)
		if err := json.Unmarshal(o.Spec, &doc); err != nil {
			*f.description = fmt.Sprintf("stored %s unreadable: %v", what, err)
		}
		*f.name, *f.version = name, version
		*f.id = assetID(o, kind)
		*f.creationContext = &api.CreationContext{CreatedAt: o.Created, LastModified: o.Updated}
		return doc
	}
	return assetKind{kind: kind, what: what, normalize: normalize, view: view}
}

func assetKey(kind, rg, ws, name, version string) store.Key {
	return store.Key{Kind: kind, Group: rg, Parent: workspaceParent(ws), Name: name + ":" + version}
}

// splitAssetName is the name and version of a stored asset.
func splitAssetName(o store.Object) (name, version string) {
	name, version, _ = strings.Cut(o.Name, ":")
	return name, version
}

func assetID(o store.Object, kind string) string {
	name, version := splitAssetName(o)
	return "/resourceGroups/" + o.Group + "/" + o.Parent + "/" + kind + "/" + name + "/versions/" + version
}

// assetVersions lists the versions of one asset (all assets when name is
// empty), oldest first.
func (s *Server) assetVersions(ctx context.Context, ak assetKind, rg, ws, name string) ([]store.Object, error) {
	objs, err := s.store.List(ctx, ak.kind, rg, workspaceParent(ws))
	if err != nil {
		return nil, err
	}
	out := objs[:0]
	for _, o := range objs {
		if n, _ := splitAssetName(o); name == "" || n == name {
			out = append(out, o)
		}
	}
	slices.SortStableFunc(out, func(a, b store.Object) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return compareVersions(a.Name, b.Name)
	})
	return out, nil
}

// compareVersions orders "name:version" strings, numeric versions by number.
func compareVersions(a, b string) int {
	_, va, _ := strings.Cut(a, ":")
	_, vb, _ := strings.Cut(b, ":")
	na, ea := strconv.ParseInt(va, 10, 64)
	nb, eb := strconv.ParseInt(vb, 10, 64)
	if ea == nil && eb == nil {
		return cmp.Compare(na, nb)
	}
	return strings.Compare(a, b)
}

// latestAsset is the version of an asset created last (@latest, as Azure
// ML has it), archived versions passed over.
func (s *Server) latestAsset(ctx context.Context, ak assetKind, rg, ws, name string) (store.Object, error) {
	vs, err := s.assetVersions(ctx, ak, rg, ws, name)
	if err != nil {
		return store.Object{}, err
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if !ak.isArchived(vs[i]) {
			return vs[i], nil
		}
	}
	return store.Object{}, fmt.Errorf("%s %s not found in workspace %s: %w", ak.what, name, ws, store.ErrNotFound)
}

// findAsset resolves a reference's name and version (latest: the last
// created); a missing one is an error listing what there is.
func (s *Server) findAsset(ctx context.Context, ak assetKind, rg, ws, name, version string, latest bool) (store.Object, error) {
	if latest {
		o, err := s.latestAsset(ctx, ak, rg, ws, name)
		if errors.Is(err, store.ErrNotFound) {
			return o, s.missingAsset(ctx, ak, rg, ws, name, "")
		}
		return o, err
	}
	o, err := s.store.Get(ctx, assetKey(ak.kind, rg, ws, name, version))
	if errors.Is(err, store.ErrNotFound) {
		return o, s.missingAsset(ctx, ak, rg, ws, name, version)
	}
	return o, err
}

// errAssetMissing marks a reference to an asset that is not there.
var errAssetMissing = errors.New("asset not found")

func (s *Server) missingAsset(ctx context.Context, ak assetKind, rg, ws, name, version string) error {
	vs, err := s.assetVersions(ctx, ak, rg, ws, name)
	if err != nil {
		return err
	}
	if version == "" && len(vs) > 0 && ak.archived != nil {
		// Every version is archived: @latest names none of them.
		have := make([]string, len(vs))
		for i, o := range vs {
			_, have[i] = splitAssetName(o)
		}
		return fmt.Errorf("%w: every version of %s %s is archived (%s), and @latest names none: restore one (outpost ml %s restore), or name a version",
			errAssetMissing, ak.what, name, strings.Join(have, ", "), strings.ReplaceAll(ak.what, " ", "-"))
	}
	if len(vs) == 0 {
		all, err := s.assetVersions(ctx, ak, rg, ws, "")
		if err != nil {
			return err
		}
		var names []string
		for _, o := range all {
			if n, _ := splitAssetName(o); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		list := strings.Join(names, ", ")
		if list == "" {
			list = "none"
		}
		return fmt.Errorf("%w: %s %s not found in workspace %s; %ss: %s", errAssetMissing, ak.what, name, ws, ak.what, list)
	}
	have := make([]string, len(vs))
	for i, o := range vs {
		_, have[i] = splitAssetName(o)
	}
	return fmt.Errorf("%w: %s %s version %s not found; versions: %s", errAssetMissing, ak.what, name, version, strings.Join(have, ", "))
}

// assetError answers a failed look-up.
func assetError(w http.ResponseWriter, err error, what string) {
	if errors.Is(err, errAssetMissing) {
		writeError(w, http.StatusNotFound, "NotFound", strings.TrimPrefix(err.Error(), errAssetMissing.Error()+": "))
		return
	}
	storeError(w, err, what)
}

func (ak assetKind) list(s *Server, w http.ResponseWriter, r *http.Request) {
	vs, err := s.assetVersions(r.Context(), ak, r.PathValue("rg"), r.PathValue("ws"), "")
	if err != nil {
		storeError(w, err, ak.what+"s")
		return
	}
	if vs, err = ak.listed(r, vs); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	latest := map[string]store.Object{}
	var names []string
	for _, o := range vs {
		n, _ := splitAssetName(o)
		if _, ok := latest[n]; !ok {
			names = append(names, n)
		}
		latest[n] = o // oldest first: the last one wins
	}
	slices.Sort(names)
	out := []any{}
	for _, n := range names {
		o := latest[n]
		_, v := splitAssetName(o)
		out = append(out, ak.view(o, n, v))
	}
	writeJSON(w, http.StatusOK, out)
}

func (ak assetKind) getLatest(s *Server, w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if l := r.URL.Query().Get("label"); l != "" && l != "latest" {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("label %q: the only label is latest; or ask for a version", l))
		return
	}
	o, err := s.findAsset(r.Context(), ak, r.PathValue("rg"), r.PathValue("ws"), name, "", true)
	if err != nil {
		assetError(w, err, ak.what+" "+name)
		return
	}
	_, v := splitAssetName(o)
	writeJSON(w, http.StatusOK, ak.view(o, name, v))
}

func (ak assetKind) listVersions(s *Server, w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	vs, err := s.assetVersions(r.Context(), ak, r.PathValue("rg"), r.PathValue("ws"), name)
	if err != nil {
		storeError(w, err, ak.what+" "+name)
		return
	}
	if len(vs) == 0 {
		assetError(w, s.missingAsset(r.Context(), ak, r.PathValue("rg"), r.PathValue("ws"), name, ""), ak.what+" "+name)
		return
	}
	if vs, err = ak.listed(r, vs); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	out := []any{}
	for i := len(vs) - 1; i >= 0; i-- { // newest first, as az lists them
		_, v := splitAssetName(vs[i])
		out = append(out, ak.view(vs[i], name, v))
	}
	writeJSON(w, http.StatusOK, out)
}

func (ak assetKind) getVersion(s *Server, w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	o, err := s.findAsset(r.Context(), ak, r.PathValue("rg"), r.PathValue("ws"), name, version, false)
	if err != nil {
		assetError(w, err, ak.what+" "+name)
		return
	}
	writeJSON(w, http.StatusOK, ak.view(o, name, version))
}

// putVersion creates one version; the same content again is accepted
// (a retried create), other content refused: versions never change.
func (ak assetKind) putVersion(s *Server, w http.ResponseWriter, r *http.Request) {
	rg, ws, name, version := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("version")
	body, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	s.createAsset(w, r, ak, rg, ws, name, version, body, false)
}

// postVersion creates the next version: 1 + the highest numeric one.
func (ak assetKind) postVersion(s *Server, w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	body, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	// Two creates at once may pick the same number: the loser takes
	// the next one.
	for range 20 {
		vs, err := s.assetVersions(r.Context(), ak, rg, ws, name)
		if err != nil {
			storeError(w, err, ak.what+" "+name)
			return
		}
		var top int64
		for _, o := range vs {
			_, v := splitAssetName(o)
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > top {
				top = n
			}
		}
		if s.createAsset(w, r, ak, rg, ws, name, strconv.FormatInt(top+1, 10), body, true) {
			return
		}
	}
	writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("%s %s: versions were being created meanwhile; retry", ak.what, name))
}

// createAsset stores a version and answers; with next, a version that came
// to exist meanwhile is not answered, and false says to try the next one.
func (s *Server) createAsset(w http.ResponseWriter, r *http.Request, ak assetKind, rg, ws, name, version string, body []byte, next bool) bool {
	ctx := r.Context()
	spec, err := ak.normalize(s, ctx, body, name, version)
	if err != nil {
		if !isUserError(err) {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return true
		}
		writeError(w, http.StatusBadRequest, "InvalidConfiguration", err.Error())
		return true
	}
	k := assetKey(ak.kind, rg, ws, name, version)
	o, err := s.store.Create(ctx, k, spec, nil)
	switch {
	case errors.Is(err, store.ErrExists) && next:
		return false
	case errors.Is(err, store.ErrExists):
		cur, gerr := s.store.Get(ctx, k)
		if gerr != nil {
			storeError(w, gerr, ak.what+" "+name)
			return true
		}
		if !bytes.Equal(cur.Spec, spec) {
			writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("%s %s version %s exists; versions are immutable: create another version (or leave the version out for the next one)", ak.what, name, version))
			return true
		}
		writeJSON(w, http.StatusOK, ak.view(cur, name, version))
		return true
	case err != nil:
		storeError(w, err, ak.what+" "+name)
		return true
	}
	writeJSON(w, http.StatusCreated, ak.view(o, name, version))
	return true
}

// sameNameVersion checks the name and version a body gives against the
// URL's.
func sameNameVersion(bodyName, bodyVersion, name, version string) error {
	if bodyName != "" && bodyName != name {
		return fmt.Errorf("name %q in the body differs from %q in the URL", bodyName, name)
	}
	if bodyVersion != "" && bodyVersion != version {
		return fmt.Errorf("version %q in the body differs from %q in the URL: leave it out, or create that version", bodyVersion, version)
	}
	return nil
}

// strictJSON decodes an asset body strictly (field names as documented).
func strictJSON(body []byte, v any) error { return decodeStrict(body, v) }

// defaultBuildImage is what a job runs in when its environment is a
// Docker build context: the build is recorded, not built (there is no
// image builder), and the job runs in Azure ML's base image.
const defaultBuildImage = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"

// checkEnvironment checks what is an environment's own and fills in its
// defaults.
func checkEnvironment(_ *Server, _ context.Context, env *api.Environment) error {
	switch {
	case env.Image == "" && env.Build == nil:
		return errors.New("image or build is required: image: <reference> (optionally with conda_file), or build: {path: <folder>}")
	case env.Image != "" && env.Build != nil:
		return errors.New("give image or build, not both")
	case env.Build != nil && env.Build.Path == "":
		return errors.New("build.path is required: the folder of the Docker build context")
	case len(env.CondaFile) > 0 && env.Image == "" && string(bytes.TrimSpace(env.CondaFile)) != "null":
		return errors.New("conda_file needs image: it is applied on top of an image")
	}
	if env.Image != "" {
		if _, err := imageref.ParseReference(env.Image); err != nil {
			return fmt.Errorf("image %q: %v", env.Image, err)
		}
	}
	switch strings.ToLower(env.OSType) {
	case "", "linux":
		env.OSType = "linux"
	case "windows":
		env.OSType = "windows"
	default:
		return fmt.Errorf("os_type %q: use linux or windows", env.OSType)
	}
	if env.Build != nil && env.Build.DockerfilePath == "" {
		env.Build.DockerfilePath = "Dockerfile"
	}
	return nil
}

// checkData checks what is a data asset's own (its path must exist in the
// datastore) and fills in its defaults.
func checkData(s *Server, ctx context.Context, d *api.Data) error {
	switch d.Type {
	case "":
		d.Type = jobspec.TypeURIFolder
	case jobspec.TypeURIFolder, jobspec.TypeURIFile, jobspec.TypeMLTable:
	default:
		return fmt.Errorf("type %q: use uri_folder (the default), uri_file or mltable", d.Type)
	}
	if d.Path == "" {
		return errors.New("path is required: an azureml://datastores/<datastore>/paths/<path> URI (the client uploads local paths first)")
	}
	return s.checkDataPath(ctx, "path", d.Type, d.Path)
}
