package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

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

// computeStatus is the compute reconciler's verdict on one generation of
// the spec (an attach; a new attach of a Failed compute is the next one).
type computeStatus struct {
	State              string `json:"state"`
	Reason             string `json:"reason,omitempty"`
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	// Since is when the reconciler first saw this generation: the grace
	// for fresh facts about the cluster counts from it.
	Since *time.Time `json:"since,omitempty"`
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

// readCompute decodes a stored compute. Its status is that of its current
// generation only: a status left from an earlier attach does not count.
func readCompute(o store.Object) (computeSpec, computeStatus, error) {
	var spec computeSpec
	var st computeStatus
	if err := decodeStored(o, &spec, &st); err != nil {
		return spec, st, err
	}
	if st.ObservedGeneration == 0 && st.State != "" {
		st.ObservedGeneration = 1 // written before generations were observed, when there was only the first
	}
	if st.ObservedGeneration != o.Generation {
		st = computeStatus{}
	}
	return spec, st, nil
}

func (s *Server) computeView(o store.Object) api.Compute {
	spec, st, err := readCompute(o)
	if err != nil {
		st = computeStatus{State: api.StateFailed, Reason: err.Error()}
	}
	c := api.Compute{ID: "/resourceGroups/" + o.Group + "/" + o.Parent + "/computes/" + o.Name, Name: o.Name, ResourceGroup: o.Group,
		Workspace: strings.TrimPrefix(o.Parent, "workspaces/"), Type: "Kubernetes", ResourceID: spec.ResourceID,
		Namespace: spec.Namespace, Identity: spec.Identity, ProvisioningState: st.State, Warnings: spec.Warnings}
	if st.State == "" {
		c.ProvisioningState = api.StateCreating
	}
	if st.Reason != "" {
		c.ProvisioningErrors = []string{st.Reason}
	}
	// A user-assigned identity's ids are its own, whichever compute uses
	// it: derived from its resource id, the same everywhere.
	for _, id := range spec.Identity.UserAssignedIdentities {
		c.Identity.UserAssignedIdentityDetails = append(c.Identity.UserAssignedIdentityDetails, api.UserAssignedIdentity{
			ResourceID: id, PrincipalID: stableUUID("principal " + id), ClientID: stableUUID("client " + id)})
	}
	return c
}

// stableUUID is a UUID-shaped id that is always the same for seed.
func stableUUID(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
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
		spec.Identity.PrincipalID = stableUUID(rg + "/" + ws + "/" + name + "/" + spec.ResourceID)
	}
	body, err := json.Marshal(spec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	// The compute reconciler decides the state; the answer says Creating.
	k := computeKey(rg, ws, name)
	code := http.StatusCreated
	o, err := s.store.Create(r.Context(), k, body, nil)
	if errors.Is(err, store.ErrExists) {
		// A Failed attach may be tried again: the new attach replaces it.
		cur, gerr := s.store.Get(r.Context(), k)
		if gerr == nil && s.computeView(cur).ProvisioningState == api.StateFailed {
			code = http.StatusOK
			o, err = s.store.UpdateSpec(r.Context(), k, body, nil, cur.Generation)
		}
	}
	if err != nil {
		storeError(w, err, "compute "+name)
		return
	}
	writeJSON(w, code, s.computeView(o))
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

// computeShown is a compute as show and list print it: with the instance
// types its cluster last reported.
func (s *Server) computeShown(ctx context.Context, o store.Object) (api.Compute, error) {
	c := s.computeView(o)
	spec, _, err := readCompute(o)
	if err != nil {
		return c, nil // the view says what is wrong with it
	}
	co, err := s.store.Get(ctx, clusterKey(spec.ClusterGroup, spec.Cluster))
	if errors.Is(err, store.ErrNotFound) {
		return c, nil // the compute's state says so
	}
	if err != nil {
		return c, err
	}
	if len(co.Status) > 0 {
		var st clusterStatus
		if err := json.Unmarshal(co.Status, &st); err != nil {
			return c, fmt.Errorf("stored status of %s: %w", co.Key, err)
		}
		c.InstanceTypes = st.Facts.InstanceTypes
	}
	return c, nil
}

func (s *Server) getCompute(w http.ResponseWriter, r *http.Request) {
	o, err := s.store.Get(r.Context(), computeKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")))
	if err != nil {
		storeError(w, err, "compute "+r.PathValue("name"))
		return
	}
	c, err := s.computeShown(r.Context(), o)
	if err != nil {
		storeError(w, err, "compute "+r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) listComputes(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindCompute, r.PathValue("rg"), "workspaces/"+r.PathValue("ws"))
	if err != nil {
		storeError(w, err, "computes")
		return
	}
	out := []api.Compute{}
	for _, o := range objs {
		c, err := s.computeShown(r.Context(), o)
		if err != nil {
			storeError(w, err, "compute "+o.Name)
			return
		}
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) detachCompute(w http.ResponseWriter, r *http.Request) {
	k := computeKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"))
	// The store keeps a tombstone, which tells the cluster's agent.
	if err := s.store.Delete(r.Context(), k); err != nil {
		storeError(w, err, "compute "+r.PathValue("name"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
