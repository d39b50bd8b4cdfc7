package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

type computeSpec struct {
	ClusterGroup    string       `json:"clusterGroup"`
	Cluster         string       `json:"cluster"`
	ResourceID      string       `json:"resourceId"`
	Namespace       string       `json:"namespace"`
	CreateNamespace bool         `json:"createNamespace,omitempty"`
	Identity        api.Identity `json:"identity"`
	Warnings        []string     `json:"warnings,omitempty"`
}

type computeStatus struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

func computeKey(rg, ws, name string) store.Key {
	return store.Key{Kind: kindCompute, Group: rg, Parent: "workspaces/" + ws, Name: name}
}

// ParseClusterID reads a connected cluster's resource id, in Azure's long form
// (/subscriptions/.../resourceGroups/RG/providers/Microsoft.Kubernetes/connectedClusters/NAME)
// or Outpost's short one (/resourceGroups/RG/connectedClusters/NAME).
func ParseClusterID(id string) (rg, name string, err error) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		switch strings.ToLower(parts[i]) {
		case "resourcegroups":
			rg = parts[i+1]
		case "connectedclusters", "managedclusters":
			name = parts[i+1]
		}
	}
	if rg == "" || name == "" {
		return "", "", fmt.Errorf("--resource-id %q: expected /resourceGroups/<group>/connectedClusters/<name> (or the Azure form with /subscriptions/.../providers/Microsoft.Kubernetes/connectedClusters/<name>)", id)
	}
	return rg, name, nil
}

func (s *Server) computeView(o store.Object) api.Compute {
	var spec computeSpec
	var st computeStatus
	_ = json.Unmarshal(o.Spec, &spec)
	_ = json.Unmarshal(o.Status, &st)
	c := api.Compute{ID: "/resourceGroups/" + o.Group + "/" + o.Parent + "/computes/" + o.Name, Name: o.Name, ResourceGroup: o.Group,
		Workspace: strings.TrimPrefix(o.Parent, "workspaces/"), Type: "Kubernetes", ResourceID: spec.ResourceID,
		Namespace: spec.Namespace, Identity: spec.Identity, ProvisioningState: st.State, Warnings: spec.Warnings}
	if st.State == "" {
		c.ProvisioningState = api.StateCreating
	}
	if st.Reason != "" {
		c.ProvisioningErrors = []string{st.Reason}
	}
	return c
}

func (s *Server) attachCompute(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	if err := checkNames("workspace name", ws, "compute name", name); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidName", err.Error())
		return
	}
	var req api.ComputeRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	spec, err := computeSpecFor(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidConfiguration", err.Error())
		return
	}
	if spec.Identity.Type == "SystemAssigned" {
		// A stable id for the compute's identity: what a workload of this
		// compute presents as its principal.
		sum := sha256.Sum256([]byte(rg + "/" + ws + "/" + name + "/" + spec.ResourceID))
		spec.Identity.PrincipalID = fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	}
	body, _ := json.Marshal(spec)
	k := computeKey(rg, ws, name)
	if _, err := s.store.Create(r.Context(), k, body, nil); err != nil {
		storeError(w, err, "compute "+name)
		return
	}
	if spec.CreateNamespace {
		s.notify(clusterID(spec.ClusterGroup, spec.Cluster))
	}
	s.reconcileComputes(r.Context(), spec.ClusterGroup, spec.Cluster)
	o, err := s.store.Get(r.Context(), k)
	if err != nil {
		storeError(w, err, "compute "+name)
		return
	}
	writeJSON(w, http.StatusCreated, s.computeView(o))
}

func computeSpecFor(req api.ComputeRequest) (computeSpec, error) {
	if !strings.EqualFold(req.Type, "kubernetes") {
		return computeSpec{}, fmt.Errorf("--type %q: only Kubernetes compute can be attached", req.Type)
	}
	rg, cluster, err := ParseClusterID(req.ResourceID)
	if err != nil {
		return computeSpec{}, err
	}
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return computeSpec{}, fmt.Errorf("--namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	spec := computeSpec{ClusterGroup: rg, Cluster: cluster, ResourceID: req.ResourceID, Namespace: ns, CreateNamespace: req.CreateNamespace}
	idType := strings.ToLower(req.IdentityType)
	if idType == "" && len(req.UserAssignedIdentities) > 0 {
		idType = "userassigned" // as the real CLI: identities given imply UserAssigned
	}
	switch idType {
	case "", "systemassigned":
		spec.Identity.Type = "SystemAssigned"
		if len(req.UserAssignedIdentities) > 0 {
			return computeSpec{}, fmt.Errorf("--user-assigned-identities needs --identity-type UserAssigned")
		}
	case "userassigned":
		spec.Identity.Type = "UserAssigned"
		if len(req.UserAssignedIdentities) == 0 {
			return computeSpec{}, fmt.Errorf("--identity-type UserAssigned needs --user-assigned-identities <id>")
		}
		spec.Identity.UserAssignedIdentities = req.UserAssignedIdentities[:1]
		if len(req.UserAssignedIdentities) > 1 {
			spec.Warnings = append(spec.Warnings, fmt.Sprintf("only the first user-assigned identity is used (%s); %d others are ignored",
				req.UserAssignedIdentities[0], len(req.UserAssignedIdentities)-1))
		}
	case "none":
		spec.Identity.Type = "None"
	default:
		return computeSpec{}, fmt.Errorf("--identity-type %q: use SystemAssigned, UserAssigned or None", req.IdentityType)
	}
	return spec, nil
}

// reconcileComputes moves the cluster's computes that are still Creating to
// Succeeded or Failed, from what the workspace knows of the cluster now.
func (s *Server) reconcileComputes(ctx context.Context, rg, cluster string) {
	computes, err := s.store.List(ctx, kindCompute, "", "*")
	if err != nil {
		return
	}
	for _, o := range computes {
		var spec computeSpec
		var st computeStatus
		_ = json.Unmarshal(o.Spec, &spec)
		_ = json.Unmarshal(o.Status, &st)
		if spec.ClusterGroup != rg || spec.Cluster != cluster || (st.State != "" && st.State != api.StateCreating) {
			continue
		}
		next := s.attachState(ctx, spec)
		if next == st {
			continue
		}
		body, _ := json.Marshal(next)
		_, _ = s.store.UpdateStatus(ctx, o.Key, body)
	}
}

func (s *Server) attachState(ctx context.Context, spec computeSpec) computeStatus {
	fail := func(format string, args ...any) computeStatus {
		return computeStatus{State: api.StateFailed, Reason: fmt.Sprintf(format, args...)}
	}
	co, err := s.store.Get(ctx, clusterKey(spec.ClusterGroup, spec.Cluster))
	if err != nil {
		return fail("connected cluster %s/%s not found: connect it with `outpost connectedk8s connect` first", spec.ClusterGroup, spec.Cluster)
	}
	view := s.clusterView(co)
	if view.ConnectivityStatus != api.Connected {
		return fail("cluster %s is not connected (connectivityStatus %s): check its agent (kubectl -n azure-arc get pods)", spec.Cluster, view.ConnectivityStatus)
	}
	exts, _ := s.store.List(ctx, kindExtension, spec.ClusterGroup, kindCluster+"/"+spec.Cluster)
	if len(exts) == 0 {
		return fail("cluster %s has no ML extension: install it with `outpost k8s-extension create --extension-type %s --cluster-name %s ...`", spec.Cluster, MLExtensionType, spec.Cluster)
	}
	ext := s.extensionView(exts[0])
	switch ext.InstallState {
	case api.InstallFailed:
		return fail("the ML extension %s of cluster %s is Failed: %s", ext.Name, spec.Cluster, ext.Message)
	case api.InstallPending:
		return computeStatus{State: api.StateCreating, Reason: ""}
	}
	var st clusterStatus
	_ = json.Unmarshal(co.Status, &st)
	if !slices.Contains(st.Namespaces, spec.Namespace) {
		if spec.CreateNamespace {
			return computeStatus{State: api.StateCreating}
		}
		return fail("namespace %q does not exist in cluster %s: create it (kubectl create namespace %s) or attach with --create-namespace", spec.Namespace, spec.Cluster, spec.Namespace)
	}
	return computeStatus{State: api.StateSucceeded}
}

func (s *Server) getCompute(w http.ResponseWriter, r *http.Request) {
	o, err := s.store.Get(r.Context(), computeKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")))
	if err != nil {
		storeError(w, err, "compute "+r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, s.computeView(o))
}

func (s *Server) listComputes(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindCompute, r.PathValue("rg"), "workspaces/"+r.PathValue("ws"))
	if err != nil {
		storeError(w, err, "computes")
		return
	}
	out := []api.Compute{}
	for _, o := range objs {
		out = append(out, s.computeView(o))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) detachCompute(w http.ResponseWriter, r *http.Request) {
	k := computeKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"))
	o, err := s.store.Get(r.Context(), k)
	if err == nil {
		err = s.store.Delete(r.Context(), k)
	}
	if err != nil {
		storeError(w, err, "compute "+r.PathValue("name"))
		return
	}
	var spec computeSpec
	_ = json.Unmarshal(o.Spec, &spec)
	s.notify(clusterID(spec.ClusterGroup, spec.Cluster))
	w.WriteHeader(http.StatusNoContent)
}
