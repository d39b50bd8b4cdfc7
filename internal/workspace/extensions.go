package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/store"
)

// MLExtensionType is the one extension type Outpost installs.
const MLExtensionType = "Microsoft.AzureML.Kubernetes"

type extensionSpec struct {
	ExtensionType string            `json:"extensionType"`
	ClusterType   string            `json:"clusterType"`
	Scope         string            `json:"scope"`
	Settings      map[string]string `json:"settings"`
	// ProtectedKeys lets `show` list which protected settings are set
	// without reading them.
	ProtectedKeys []string `json:"protectedKeys,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
}

type extensionStatus struct {
	ObservedGeneration int64                 `json:"observedGeneration"`
	InstallState       string                `json:"installState"`
	Message            string                `json:"message,omitempty"`
	Components         []api.ComponentStatus `json:"components,omitempty"`
}

func extensionKey(rg, cluster, name string) store.Key {
	return store.Key{Kind: kindExtension, Group: rg, Parent: kindCluster + "/" + cluster, Name: name}
}

func (s *Server) extensionView(o store.Object) (api.Extension, error) {
	var spec extensionSpec
	var st extensionStatus
	if err := decodeStored(o, &spec, &st); err != nil {
		return api.Extension{}, err
	}
	cluster := strings.TrimPrefix(o.Parent, kindCluster+"/")
	e := api.Extension{ID: clusterID(o.Group, cluster) + "/extensions/" + o.Name, Name: o.Name, ResourceGroup: o.Group,
		ClusterName: cluster, ClusterType: spec.ClusterType, ExtensionType: spec.ExtensionType, Scope: spec.Scope,
		ConfigurationSettings: spec.Settings, Warnings: spec.Warnings, Generation: o.Generation,
		InstallState: api.InstallPending, ProvisioningState: api.StateCreating}
	if len(spec.ProtectedKeys) > 0 {
		e.ConfigurationProtectedSettings = map[string]string{}
		for _, k := range spec.ProtectedKeys {
			e.ConfigurationProtectedSettings[k] = "<redacted>"
		}
	}
	if st.ObservedGeneration == o.Generation {
		e.InstallState, e.Message, e.Components = st.InstallState, st.Message, st.Components
	} else {
		e.Message = "waiting for the cluster agent to apply the latest settings"
		if !s.connected(o.Group, cluster) {
			e.Message = "waiting for cluster " + cluster + " to connect"
		}
	}
	switch e.InstallState {
	case api.InstallInstalled:
		e.ProvisioningState = api.StateSucceeded
	case api.InstallFailed:
		e.ProvisioningState = api.StateFailed
	}
	return e, nil
}

// validateExtension checks a request against the cluster and the settings
// rules; nothing is stored when it fails.
func validateExtension(req *api.ExtensionRequest) (extension.Settings, error) {
	if !strings.EqualFold(req.ExtensionType, MLExtensionType) {
		return extension.Settings{}, fmt.Errorf("--extension-type %q: the only supported type is %s", req.ExtensionType, MLExtensionType)
	}
	req.ExtensionType = MLExtensionType
	switch req.ClusterType {
	case "connectedClusters", "managedClusters":
	case "":
		return extension.Settings{}, errors.New("--cluster-type is required: connectedClusters or managedClusters")
	default:
		return extension.Settings{}, fmt.Errorf("--cluster-type %q: use connectedClusters or managedClusters", req.ClusterType)
	}
	switch strings.ToLower(req.Scope) {
	case "", "cluster":
		req.Scope = "cluster"
	case "namespace":
		return extension.Settings{}, errors.New("--scope namespace: the ML extension is installed cluster-wide; use --scope cluster")
	default:
		return extension.Settings{}, fmt.Errorf("--scope %q: use cluster", req.Scope)
	}
	return extension.Parse(req.ConfigurationSettings, req.ConfigurationProtectedSettings)
}

// storeExtensionSpec returns what the store keeps of the extension k: its
// spec, and its protected settings sealed (sealProtected).
func (s *Server) storeExtensionSpec(k store.Key, req api.ExtensionRequest, set extension.Settings) (json.RawMessage, []byte, error) {
	keys := make([]string, 0, len(req.ConfigurationProtectedSettings))
	for k := range req.ConfigurationProtectedSettings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	spec, _ := json.Marshal(extensionSpec{ExtensionType: req.ExtensionType, ClusterType: req.ClusterType, Scope: req.Scope,
		Settings: req.ConfigurationSettings, ProtectedKeys: keys, Warnings: append(set.Warnings, extension.Unsupported(set)...)})
	prot, _ := json.Marshal(req.ConfigurationProtectedSettings)
	sealed, err := s.sealProtected(k, prot)
	return spec, sealed, err
}

func (s *Server) createExtension(w http.ResponseWriter, r *http.Request) {
	rg, cluster, name := r.PathValue("rg"), r.PathValue("cluster"), r.PathValue("name")
	if err := checkNames("extension name", name); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidName", err.Error())
		return
	}
	var req api.ExtensionRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if _, err := s.store.Get(r.Context(), clusterKey(rg, cluster)); err != nil {
		storeError(w, err, fmt.Sprintf("connected cluster %s/%s (connect it first with `outpost connectedk8s connect`)", rg, cluster))
		return
	}
	set, err := validateExtension(&req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidConfiguration", err.Error())
		return
	}
	existing, err := s.store.List(r.Context(), kindExtension, rg, kindCluster+"/"+cluster)
	if err != nil {
		storeError(w, err, "extensions")
		return
	}
	for _, o := range existing {
		if o.Name != name {
			writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("cluster %s already has the ML extension %q; update or delete it", cluster, o.Name))
			return
		}
	}
	spec, prot, err := s.storeExtensionSpec(extensionKey(rg, cluster, name), req, set)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	o, err := s.store.Create(r.Context(), extensionKey(rg, cluster, name), spec, prot)
	if err != nil {
		storeError(w, err, "extension "+name)
		return
	}
	writeView(w, http.StatusCreated, s.extensionView, o, "extension "+name)
}

// updateExtension merges the given settings into the stored ones, as
// `k8s-extension update --config` does; an empty value removes a key.
//
// The merge is redone when the extension changed between read and write:
// updates of different keys are not in conflict, so concurrent callers all
// succeed, each one's keys merged into what the others wrote, and every
// merged result is validated again before it is stored.
func (s *Server) updateExtension(w http.ResponseWriter, r *http.Request) {
	rg, cluster, name := r.PathValue("rg"), r.PathValue("cluster"), r.PathValue("name")
	k := extensionKey(rg, cluster, name)
	var patch api.ExtensionRequest
	if err := decode(r, &patch); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	for _, dup := range intersect(patch.ConfigurationSettings, patch.ConfigurationProtectedSettings) {
		writeError(w, http.StatusBadRequest, "InvalidConfiguration", fmt.Sprintf("%s is given both as a setting and as a protected setting; give it once", dup))
		return
	}
	var o store.Object
	var invalid error
	err := retry.OnError(mergeRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
		var err error
		o, invalid, err = s.mergeExtension(r.Context(), k, patch)
		return err
	})
	switch {
	case err != nil:
		storeError(w, err, "extension "+name)
		return
	case invalid != nil:
		writeError(w, http.StatusBadRequest, "InvalidConfiguration", invalid.Error())
		return
	}
	writeView(w, http.StatusOK, s.extensionView, o, "extension "+name)
}

// mergeRetry bounds the re-merges of one update. Each conflict means another
// update was stored, so n concurrent updates need at most n tries; the
// jittered, growing waits keep the losers from colliding again in step.
var mergeRetry = wait.Backoff{Steps: 50, Duration: 2 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: 100 * time.Millisecond}

// mergeExtension does one read, merge, validate and conditional write of an
// update. invalid is the reason a merged result is refused; err is a store
// failure (store.ErrConflict when the extension changed since the read).
func (s *Server) mergeExtension(ctx context.Context, k store.Key, patch api.ExtensionRequest) (o store.Object, invalid, err error) {
	o, err = s.store.Get(ctx, k)
	if err != nil {
		return o, nil, err
	}
	var spec extensionSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return o, nil, fmt.Errorf("stored extension %s: %w", k.Name, err)
	}
	prot := map[string]string{}
	data, err := s.protectedData(ctx, k)
	if err != nil {
		return o, nil, fmt.Errorf("protected settings of extension %s: %w", k.Name, err)
	}
	if data != nil {
		if err := json.Unmarshal(data, &prot); err != nil {
			return o, nil, fmt.Errorf("protected settings of extension %s: %w", k.Name, err)
		}
	}
	req := api.ExtensionRequest{ExtensionType: spec.ExtensionType, ClusterType: spec.ClusterType, Scope: spec.Scope,
		ConfigurationSettings: maps.Clone(spec.Settings), ConfigurationProtectedSettings: prot}
	if req.ConfigurationSettings == nil {
		req.ConfigurationSettings = map[string]string{}
	}
	merge := func(dst, src map[string]string, other map[string]string) {
		for k, v := range src {
			delete(other, k) // a key moves between plain and protected when given again
			if v == "" {
				delete(dst, k)
			} else {
				dst[k] = v
			}
		}
	}
	merge(req.ConfigurationSettings, patch.ConfigurationSettings, req.ConfigurationProtectedSettings)
	merge(req.ConfigurationProtectedSettings, patch.ConfigurationProtectedSettings, req.ConfigurationSettings)
	set, err := validateExtension(&req)
	if err != nil {
		return o, err, nil
	}
	body, protData, err := s.storeExtensionSpec(k, req, set)
	if err != nil {
		return o, nil, err
	}
	o, err = s.store.UpdateSpec(ctx, k, body, protData, o.Generation)
	return o, nil, err
}

func intersect(a, b map[string]string) []string {
	var out []string
	for k := range a {
		if _, ok := b[k]; ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (s *Server) getExtension(w http.ResponseWriter, r *http.Request) {
	o, err := s.store.Get(r.Context(), extensionKey(r.PathValue("rg"), r.PathValue("cluster"), r.PathValue("name")))
	if err != nil {
		storeError(w, err, "extension "+r.PathValue("name"))
		return
	}
	writeView(w, http.StatusOK, s.extensionView, o, "extension "+r.PathValue("name"))
}

func (s *Server) listExtensions(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindExtension, r.PathValue("rg"), kindCluster+"/"+r.PathValue("cluster"))
	if err != nil {
		storeError(w, err, "extensions")
		return
	}
	listViews(w, s.extensionView, objs, "extensions")
}

// deleteExtension removes the record at once; the agent, seeing it gone from
// the desired state, removes what it installed.
func (s *Server) deleteExtension(w http.ResponseWriter, r *http.Request) {
	rg, cluster, name := r.PathValue("rg"), r.PathValue("cluster"), r.PathValue("name")
	if err := s.store.Delete(r.Context(), extensionKey(rg, cluster, name)); err != nil {
		storeError(w, err, "extension "+name)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
