package workspace

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// listWorkspaces answers GET /workspaces: the workspaces known to hold
// something, for pickers such as the Studio's. A workspace is there as
// soon as something names it, so this lists those with settings, a
// compute or an online endpoint (a job needs a compute to be submitted);
// any other name still works when given.
func (s *Server) listWorkspaces(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	found := map[[2]string]workspaceView{}
	for _, kind := range []string{kindWorkspace, kindCompute, kindEndpoint} {
		objs, err := s.store.List(ctx, kind, "", "*")
		if err != nil {
			storeError(w, err, "workspaces")
			return
		}
		for _, o := range objs {
			rg, ws := o.Group, o.Name
			if kind != kindWorkspace {
				var ok bool
				if ws, ok = strings.CutPrefix(o.Parent, kindWorkspace+"/"); !ok {
					continue
				}
			}
			k := [2]string{rg, ws}
			v, seen := found[k]
			if !seen {
				v = workspaceView{Name: ws, ResourceGroup: rg}
			}
			if kind == kindWorkspace {
				var set workspaceSettings
				if err := json.Unmarshal(o.Spec, &set); err != nil {
					writeError(w, http.StatusInternalServerError, "InternalError", fmt.Sprintf("stored %s: %v", o.Key, err))
					return
				}
				v.DefaultCompute = set.DefaultCompute
			}
			found[k] = v
		}
	}
	out := make([]workspaceView, 0, len(found))
	for _, v := range found {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b workspaceView) int {
		return cmp.Or(cmp.Compare(a.ResourceGroup, b.ResourceGroup), cmp.Compare(a.Name, b.Name))
	})
	writeJSON(w, http.StatusOK, out)
}
