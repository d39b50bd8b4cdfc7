package workspace

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/store"
)

// Models are an asset kind like environments and data: named, versioned,
// immutable, their files in the datastore (whose index records each
// file's sha256). A version can be archived and restored: that is its
// status, not its content, so archiving leaves the version as it was.

const kindModel = "models"

var models = func() assetKind {
	ak := newAssetKind(kindModel, "model", modelFields, checkModel)
	// An unreadable stage counts as not archived, and the view says it
	// is unreadable, as it does of an unreadable spec.
	ak.archived = func(o store.Object) bool { st, _ := modelStage(o); return st == api.ModelArchived }
	view := ak.view
	ak.view = func(o store.Object, name, version string) any {
		m := view(o, name, version).(api.Model)
		var err error
		if m.Stage, err = modelStage(o); err != nil {
			m.Description = err.Error()
		}
		return m
	}
	return ak
}()

func modelFields(m *api.Model) assetFields {
	return assetFields{&m.Schema, &m.ID, &m.Name, &m.Version, &m.Description, &m.CreationContext}
}

// modelStatus is a model version's status: its stage.
type modelStatus struct {
	Stage string `json:"stage,omitempty"`
}

func modelStage(o store.Object) (string, error) {
	var st modelStatus
	if err := decodeStored(o, nil, &st); err != nil {
		return "", fmt.Errorf("stage unreadable: %w", err)
	}
	return st.Stage, nil
}

// checkModel checks what is a model's own (its path must be in the
// datastore) and fills in its defaults.
func checkModel(s *Server, ctx context.Context, m *api.Model) error {
	switch m.Type {
	case "":
		m.Type = api.ModelCustom
	case api.ModelCustom, api.ModelMLflow, api.ModelTriton:
	default:
		return fmt.Errorf("type %q: use custom_model (the default), mlflow_model or triton_model", m.Type)
	}
	if m.Stage != "" {
		return fmt.Errorf("stage %q: a version's stage is set by `outpost ml model archive` and `restore`; leave it out", m.Stage)
	}
	if m.Path == "" {
		return errors.New("path is required: a local file or folder (the client uploads it), an azureml://datastores/<datastore>/paths/<path> URI, or runs:/<job>/<path>")
	}
	if strings.HasPrefix(m.Path, "runs:/") {
		uri, err := s.runsPath(ctx, m.Path)
		if err != nil {
			return err
		}
		m.Path = uri
	}
	if err := s.checkDataPath(ctx, "path", m.Type, m.Path); err != nil {
		return err
	}
	if m.Type == api.ModelMLflow {
		ds, p, _ := jobspec.ParseDatastoreURI(m.Path)
		files, err := s.artifacts.List(ctx, ds, strings.TrimSuffix(p, "/")+"/MLmodel")
		if err != nil {
			return lookError("path", err)
		}
		if len(files) == 0 {
			return fmt.Errorf("path: %s has no MLmodel file, which an mlflow_model is a folder with: use type custom_model, or give the MLflow model's folder", m.Path)
		}
	}
	return nil
}

// runsPath resolves runs:/<job>/<path>, a job's artifact as az names it,
// to the datastore: where Azure ML keeps a run's artifacts
// (ExperimentRun/dcid.<job>/<path>), else under what the job wrote to
// ./outputs (kept as ExperimentRun/dcid.<job>/outputs/), where a model a
// job saved is when there is no MLflow tracking server.
func (s *Server) runsPath(ctx context.Context, ref string) (string, error) {
	job, p, ok := strings.Cut(strings.TrimPrefix(ref, "runs:/"), "/")
	p = strings.Trim(p, "/")
	if !ok || job == "" || p == "" || checkName("job name", job) != nil || checkFilePath(p) != nil {
		return "", fmt.Errorf("path %q: want runs:/<job>/<path of the model in the job's artifacts>", ref)
	}
	arts := strings.TrimSuffix(jobspec.ArtifactsURI(job), "outputs/")
	var tried []string
	for _, uri := range []string{arts + p, jobspec.ArtifactsURI(job) + p} {
		ds, dp, err := jobspec.ParseDatastoreURI(uri)
		if err != nil {
			return "", fmt.Errorf("path %q: %v", ref, err)
		}
		files, err := s.artifacts.List(ctx, ds, dp)
		if err != nil {
			return "", lookError("path", err)
		}
		for _, f := range files {
			if f.Path == dp {
				return uri, nil
			}
			if strings.HasPrefix(f.Path, dp+"/") {
				return uri + "/", nil
			}
		}
		tried = append(tried, uri)
	}
	return "", fmt.Errorf("path %s: job %s has no artifact %s (looked at %s)", ref, job, p, strings.Join(tried, " and "))
}

// setModelStage archives (stage Archived) or restores (no stage) one
// version, or every version of a model when version is empty, and answers
// with what it changed.
func (s *Server) setModelStage(w http.ResponseWriter, r *http.Request, stage string) {
	ctx := r.Context()
	rg, ws, name, version := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("version")
	var objs []store.Object
	if version != "" {
		o, err := s.findAsset(ctx, models, rg, ws, name, version, false)
		if err != nil {
			assetError(w, err, "model "+name)
			return
		}
		objs = []store.Object{o}
	} else {
		vs, err := s.assetVersions(ctx, models, rg, ws, name)
		if err != nil {
			storeError(w, err, "model "+name)
			return
		}
		if len(vs) == 0 {
			assetError(w, s.missingAsset(ctx, models, rg, ws, name, ""), "model "+name)
			return
		}
		objs = vs
	}
	out := []api.Model{}
	for _, o := range objs {
		if cur, err := modelStage(o); err != nil || cur != stage {
			body, err := json.Marshal(modelStatus{Stage: stage})
			if err != nil {
				writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
				return
			}
			if o, err = s.store.UpdateStatus(ctx, o.Key, body); err != nil {
				storeError(w, err, "model "+name)
				return
			}
		}
		n, v := splitAssetName(o)
		out = append(out, models.view(o, n, v).(api.Model))
	}
	if version != "" {
		writeJSON(w, http.StatusOK, out[0])
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func archiveModel(s *Server, w http.ResponseWriter, r *http.Request) {
	s.setModelStage(w, r, api.ModelArchived)
}

func restoreModel(s *Server, w http.ResponseWriter, r *http.Request) { s.setModelStage(w, r, "") }

// resolvedModel is what a deployment's model reference comes to.
type resolvedModel struct {
	URI, Name, Version, Folder string
}

// resolveModel finds the model a deployment names: azureml:NAME:VERSION,
// azureml:NAME@latest (archived versions passed over), or an inline model
// whose path the client uploaded. Problems a user can fix go to bad.
func (s *Server) resolveModel(ctx context.Context, rg, ws, endpoint, deployment string, ref *api.ModelRef, bad *badJob) (resolvedModel, error) {
	var rm resolvedModel
	if ref == nil {
		return rm, nil
	}
	if ref.Inline != nil {
		in := *ref.Inline
		// As Azure ML registers an inline model anonymously, it gets a
		// name of its own: the deployment's, version 1.
		rm.Name, rm.Version = endpoint+"-"+deployment, "1"
		if in.Path != "" && strings.HasPrefix(in.Path, "runs:/") {
			uri, err := s.runsPath(ctx, in.Path)
			if err != nil {
				if !isUserError(err) {
					return rm, err
				}
				bad.add("model.path", "%s", strings.TrimPrefix(err.Error(), "path "))
				return rm, nil
			}
			in.Path = uri
		}
		if err := s.checkDataPath(ctx, "model.path", cmp.Or(in.Type, api.ModelCustom), in.Path); err != nil {
			if !isUserError(err) {
				return rm, err
			}
			*bad = append(*bad, err)
			return rm, nil
		}
		rm.URI = in.Path
	} else {
		name, version, latest, err := jobspec.ParseAssetRef(ref.Ref)
		if err != nil {
			bad.add("model", "%v", err)
			return rm, nil
		}
		o, err := s.findAsset(ctx, models, rg, ws, name, version, latest)
		if errors.Is(err, errAssetMissing) {
			bad.add("model", "%s", strings.TrimPrefix(err.Error(), errAssetMissing.Error()+": "))
			return rm, nil
		}
		if err != nil {
			return rm, err
		}
		var m api.Model
		if err := json.Unmarshal(o.Spec, &m); err != nil {
			return rm, fmt.Errorf("stored %s: %w", o.Key, err)
		}
		rm.Name, rm.Version = splitAssetName(o)
		rm.URI = m.Path
	}
	isFolder, err := s.isDatastoreFolder(ctx, rm.URI)
	if err != nil {
		return rm, err
	}
	_, p, _ := jobspec.ParseDatastoreURI(rm.URI)
	if isFolder {
		rm.Folder = lastSegment(p)
	}
	return rm, nil
}

// isDatastoreFolder tells whether a datastore URI (known to exist) names a
// folder rather than a file.
func (s *Server) isDatastoreFolder(ctx context.Context, uri string) (bool, error) {
	ds, p, err := jobspec.ParseDatastoreURI(uri)
	if err != nil {
		return false, err
	}
	if strings.HasSuffix(p, "/") {
		return true, nil
	}
	files, err := s.artifacts.List(ctx, ds, p)
	if err != nil {
		return false, internalError{err}
	}
	for _, f := range files {
		if f.Path == p {
			return false, nil
		}
	}
	return true, nil
}

func lastSegment(p string) string {
	p = strings.TrimSuffix(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
