package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"outpost.dev/outpost/internal/store"
)

// A workspace is there as soon as something names it; its record holds
// its settings, and is made by the first change of them.

const kindWorkspace = "workspaces"

// workspaceSettings is what the store keeps of a workspace.
type workspaceSettings struct {
	DefaultCompute string `json:"defaultCompute,omitempty"`
}

// workspaceView is a workspace as the API shows it.
type workspaceView struct {
	Name           string `json:"name"`
	ResourceGroup  string `json:"resource_group"`
	DefaultCompute string `json:"default_compute"`
}

// workspacePatch changes settings; a field left out stays as it is.
type workspacePatch struct {
	DefaultCompute *string `json:"default_compute,omitempty"`
}

func workspaceKey(rg, ws string) store.Key {
	return store.Key{Kind: kindWorkspace, Group: rg, Name: ws}
}

// workspaceParent is the Parent of a workspace's resources.
func workspaceParent(ws string) string { return kindWorkspace + "/" + ws }

// readWorkspace returns a workspace's settings (none stored: the defaults)
// and the generation they were read at (0: no record yet).
func (s *Server) readWorkspace(ctx context.Context, rg, ws string) (workspaceSettings, int64, error) {
	var set workspaceSettings
	o, err := s.store.Get(ctx, workspaceKey(rg, ws))
	if errors.Is(err, store.ErrNotFound) {
		return set, 0, nil
	}
	if err != nil {
		return set, 0, err
	}
	if err := json.Unmarshal(o.Spec, &set); err != nil {
		return set, 0, fmt.Errorf("stored %s: %w", o.Key, err)
	}
	return set, o.Generation, nil
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request) {
	rg, ws := r.PathValue("rg"), r.PathValue("ws")
	set, _, err := s.readWorkspace(r.Context(), rg, ws)
	if err != nil {
		storeError(w, err, "workspace "+ws)
		return
	}
	writeJSON(w, http.StatusOK, workspaceView{Name: ws, ResourceGroup: rg, DefaultCompute: set.DefaultCompute})
}

func (s *Server) updateWorkspace(w http.ResponseWriter, r *http.Request) {
	rg, ws := r.PathValue("rg"), r.PathValue("ws")
	var patch workspacePatch
	if err := decode(r, &patch); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	ctx := r.Context()
	set, gen, err := s.readWorkspace(ctx, rg, ws)
	if err != nil {
		storeError(w, err, "workspace "+ws)
		return
	}
	if patch.DefaultCompute != nil {
		name := strings.TrimPrefix(*patch.DefaultCompute, "azureml:")
		if name != "" {
			if _, err := s.store.Get(ctx, computeKey(rg, ws, name)); errors.Is(err, store.ErrNotFound) {
				names, lerr := s.computeNames(ctx, rg, ws)
				if lerr != nil {
					storeError(w, lerr, "computes")
					return
				}
				writeError(w, http.StatusBadRequest, "InvalidConfiguration", fmt.Sprintf("default_compute %q: no such compute in workspace %s; computes: %s", name, ws, names))
				return
			} else if err != nil {
				storeError(w, err, "compute "+name)
				return
			}
		}
		set.DefaultCompute = name
	}
	body, err := json.Marshal(set)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	k := workspaceKey(rg, ws)
	if gen == 0 {
		_, err = s.store.Create(ctx, k, body, nil)
	} else {
		_, err = s.store.UpdateSpec(ctx, k, body, nil, gen)
	}
	if err != nil {
		// ErrExists and ErrConflict: changed meanwhile, say so.
		if errors.Is(err, store.ErrExists) {
			err = store.ErrConflict
		}
		storeError(w, err, "workspace "+ws)
		return
	}
	writeJSON(w, http.StatusOK, workspaceView{Name: ws, ResourceGroup: rg, DefaultCompute: set.DefaultCompute})
}

// computeNames lists a workspace's computes for messages ("none" when it
// has none).
func (s *Server) computeNames(ctx context.Context, rg, ws string) (string, error) {
	objs, err := s.store.List(ctx, kindCompute, rg, workspaceParent(ws))
	if err != nil {
		return "", err
	}
	if len(objs) == 0 {
		return "none (attach one with `outpost ml compute attach`)", nil
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	return strings.Join(names, ", "), nil
}
