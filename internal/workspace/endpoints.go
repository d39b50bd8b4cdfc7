package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/util/retry"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/deploymentspec"
	"outpost.dev/outpost/internal/endpointauth"
	"outpost.dev/outpost/internal/store"
)

// Online endpoints: a name callers reach through their cluster's inference
// router (azureml-fe), its keys, and how its traffic splits between its
// deployments. An endpoint syncs to the cluster of its compute, keys
// included (sealed at rest like every protected value); it is Succeeded
// once the cluster's agent confirms it applied the endpoint's latest spec
// (the sync revision of its report, as computes use it).
//
// Deleting an endpoint or a deployment takes it out of its cluster's
// desired state at once (its cluster gets a tombstone) and shows it
// Deleting until the agent confirms that revision; the deletion
// reconciler (endpointsdelete.go) then forgets it.

const (
	kindEndpoint   = "onlineEndpoints"
	kindDeployment = "deployments"
)

func endpointKey(rg, ws, name string) store.Key {
	return store.Key{Kind: kindEndpoint, Group: rg, Parent: workspaceParent(ws), Name: name}
}

// endpointRecord is what the store keeps of an endpoint (its spec): the
// document with its defaults, and where it runs.
type endpointRecord struct {
	Endpoint     api.OnlineEndpoint `json:"endpoint"`
	Compute      string             `json:"compute"`
	ClusterGroup string             `json:"clusterGroup"`
	Cluster      string             `json:"cluster"`
	Namespace    string             `json:"namespace"`
	// Deleting endpoints sync nowhere: their cluster's tombstone has the
	// agent remove them; the record goes once the agent confirms.
	Deleting   bool       `json:"deleting,omitempty"`
	DeletingAt *time.Time `json:"deletingAt,omitempty"`
}

func (rec endpointRecord) target() string { return target(rec.ClusterGroup, rec.Cluster) }

// endpointSecrets are an endpoint's protected data: both keys (key auth)
// and the key that signs its aml_tokens, all made at creation whatever the
// auth mode, so that the mode may change.
type endpointSecrets struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
	TokenKey     string `json:"tokenKey"`
}

// endpoint is a stored endpoint, decoded.
type endpoint struct {
	obj store.Object
	rec endpointRecord
}

func decodeEndpoint(o store.Object) (*endpoint, error) {
	e := &endpoint{obj: o}
	if err := decodeStored(o, &e.rec, nil); err != nil {
		return nil, err
	}
	return e, nil
}

func (s *Server) readEndpoint(ctx context.Context, k store.Key) (*endpoint, error) {
	return readStored(ctx, s.store, k, decodeEndpoint)
}

func (s *Server) endpointSecrets(ctx context.Context, k store.Key) (endpointSecrets, error) {
	var sec endpointSecrets
	data, err := s.protectedData(ctx, k)
	if err != nil {
		return sec, err
	}
	if data == nil {
		return sec, fmt.Errorf("keys of %s: none stored", k)
	}
	if err := json.Unmarshal(data, &sec); err != nil {
		return sec, fmt.Errorf("keys of %s: %w", k, err)
	}
	return sec, nil
}

func (s *Server) sealEndpointSecrets(k store.Key, sec endpointSecrets) ([]byte, error) {
	data, err := json.Marshal(sec)
	if err != nil {
		return nil, err
	}
	return s.sealProtected(k, data)
}

func newEndpointSecrets() (endpointSecrets, error) {
	var sec endpointSecrets
	var err error
	for _, k := range []*string{&sec.PrimaryKey, &sec.SecondaryKey, &sec.TokenKey} {
		if *k, err = endpointauth.NewKey(); err != nil {
			return sec, err
		}
	}
	return sec, nil
}

// clusterOf is what the workspace last heard of a cluster: its facts; found
// is false once its registration is gone.
func (s *Server) clusterOf(ctx context.Context, rg, cluster string) (st clusterStatus, found bool, err error) {
	o, err := s.store.Get(ctx, clusterKey(rg, cluster))
	if errors.Is(err, store.ErrNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if len(o.Status) > 0 {
		if err := json.Unmarshal(o.Status, &st); err != nil {
			return st, true, fmt.Errorf("stored status of %s: %w", o.Key, err)
		}
	}
	return st, true, nil
}

// syncedRevision is the sync revision the agent of a cluster (a target)
// last reported having applied.
func (s *Server) syncedRevision(t string) int64 {
	c := s.computes
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced[t]
}

// endpointDeployments lists an endpoint's deployments that are not being
// deleted, by name.
func (s *Server) endpointDeployments(ctx context.Context, rg, ws, name string) ([]*deployment, error) {
	objs, err := s.store.List(ctx, kindDeployment, rg, deploymentParent(ws, name))
	if err != nil {
		return nil, err
	}
	var out []*deployment
	for _, o := range objs {
		d, err := decodeDeployment(o)
		if err != nil {
			return nil, err
		}
		if !d.rec.Deleting {
			out = append(out, d)
		}
	}
	return out, nil
}

func deploymentNames(ds []*deployment) []string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.obj.Name
	}
	return names
}

// scoringURIs are where an endpoint answers, behind its cluster's router.
func scoringURIs(router *api.InferenceRouter, name string) (scoring, swagger string) {
	if router == nil || router.BaseURL == "" {
		return "", ""
	}
	base := strings.TrimSuffix(router.BaseURL, "/") + "/api/v1/endpoint/" + name
	return base + "/score", base + "/swagger.json"
}

// endpointView is an endpoint as the API shows it: its traffic lists every
// deployment (0 for those that take none), and its state is judged from
// what its cluster's agent confirmed and reported.
func (s *Server) endpointView(ctx context.Context, e *endpoint) (api.OnlineEndpoint, error) {
	v := e.rec.Endpoint
	o := e.obj
	v.ID = resourceID(o.Key)
	v.Name = o.Name
	v.ResourceGroup = o.Group
	v.Workspace = strings.TrimPrefix(o.Parent, workspaceParent(""))
	v.Kind = "K8s"
	v.CreationContext = &api.CreationContext{CreatedAt: o.Created, LastModified: o.Updated}
	ds, err := s.endpointDeployments(ctx, o.Group, v.Workspace, o.Name)
	if err != nil {
		return v, err
	}
	traffic := map[string]int{}
	for _, d := range ds {
		traffic[d.obj.Name] = 0
	}
	maps.Copy(traffic, e.rec.Endpoint.Traffic)
	v.Traffic = traffic
	st, found, err := s.clusterOf(ctx, e.rec.ClusterGroup, e.rec.Cluster)
	if err != nil {
		return v, err
	}
	v.ScoringURI, v.SwaggerURI = scoringURIs(st.Facts.InferenceRouter, o.Name)
	switch {
	case e.rec.Deleting:
		v.ProvisioningState = api.StateDeleting
	case !found:
		v.ProvisioningState = api.StateFailed
		v.StatusMessage = fmt.Sprintf("cluster %s/%s of compute %s is no longer connected (its registration was deleted): delete this endpoint, or connect the cluster again", e.rec.ClusterGroup, e.rec.Cluster, e.rec.Compute)
	case s.syncedRevision(e.rec.target()) < o.SpecRevision:
		v.ProvisioningState = api.StateCreating
		if o.Generation > 1 {
			v.ProvisioningState = stateUpdating
		}
	case st.Facts.InferenceRouter == nil:
		v.ProvisioningState = api.StateFailed
		v.StatusMessage = fmt.Sprintf("cluster %s reports no inference router (azureml-fe): is its ML extension installed with enableInference=True and Installed? (outpost k8s-extension show --cluster-name %s --resource-group %s ...)",
			e.rec.Cluster, e.rec.Cluster, e.rec.ClusterGroup)
	default:
		v.ProvisioningState = api.StateSucceeded
	}
	return v, nil
}

// stateUpdating is the provisioning state of a changed resource that its
// cluster has not confirmed yet, as Azure ML shows it.
const stateUpdating = "Updating"

func (s *Server) writeEndpoint(w http.ResponseWriter, r *http.Request, code int, e *endpoint) {
	v, err := s.endpointView(r.Context(), e)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, code, v)
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request) {
	e, err := s.readEndpoint(r.Context(), endpointKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")))
	if err != nil {
		storeError(w, err, "online endpoint "+r.PathValue("name"))
		return
	}
	s.writeEndpoint(w, r, http.StatusOK, e)
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindEndpoint, r.PathValue("rg"), workspaceParent(r.PathValue("ws")))
	if err != nil {
		storeError(w, err, "online endpoints")
		return
	}
	out := []api.OnlineEndpoint{}
	for _, o := range objs {
		e, err := decodeEndpoint(o)
		if err == nil {
			var v api.OnlineEndpoint
			if v, err = s.endpointView(r.Context(), e); err == nil {
				out = append(out, v)
			}
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// documentError answers a document that is wrong: each problem on a line
// of its own, naming its field.
func documentError(w http.ResponseWriter, code string, err error) {
	writeError(w, http.StatusBadRequest, code, err.Error())
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	ctx := r.Context()
	if err := deploymentspec.CheckName("endpoint name", name); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidName", err.Error())
		return
	}
	data, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	doc, err := deploymentspec.DecodeEndpoint(data)
	if err != nil {
		documentError(w, "InvalidEndpoint", err)
		return
	}
	switch doc.Name {
	case "":
		doc.Name = name
	case name:
	default:
		writeError(w, http.StatusBadRequest, "InvalidEndpoint", fmt.Sprintf("name: %q differs from the endpoint name in the URL (%q): leave it out or make them the same", doc.Name, name))
		return
	}
	if err := deploymentspec.ValidateEndpoint(doc, true); err != nil {
		documentError(w, "InvalidEndpoint", err)
		return
	}
	// One creation at a time: an endpoint's name must be free on its
	// cluster, in any case, whichever workspace holds the other.
	s.inference.createMu.Lock()
	defer s.inference.createMu.Unlock()
	k := endpointKey(rg, ws, name)
	if taken, err := s.endpointNameTaken(ctx, k, "", ""); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	} else if taken != "" {
		writeError(w, http.StatusConflict, "Conflict", taken)
		return
	}
	var bad badJob
	computeName := strings.TrimPrefix(doc.Compute, "azureml:")
	cs, _, ok, err := s.usableCompute(ctx, rg, ws, computeName, "compute", inferenceFeature, &bad)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if !ok {
		documentError(w, "InvalidEndpoint", bad.err())
		return
	}
	if taken, err := s.endpointNameTaken(ctx, k, cs.ClusterGroup, cs.Cluster); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	} else if taken != "" {
		writeError(w, http.StatusConflict, "Conflict", taken)
		return
	}
	rec := endpointRecord{Endpoint: *doc, Compute: computeName, ClusterGroup: cs.ClusterGroup, Cluster: cs.Cluster, Namespace: cs.Namespace}
	rec.Endpoint.Compute = "azureml:" + computeName
	rec.Endpoint.Traffic = nil
	body, err := json.Marshal(rec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	sec, err := newEndpointSecrets()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	prot, err := s.sealEndpointSecrets(k, sec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	o, err := s.store.Create(ctx, k, body, prot)
	if err != nil {
		storeError(w, err, "online endpoint "+name)
		return
	}
	s.log.Info("online endpoint created", "endpoint", resourceID(k), "compute", computeName, "cluster", clusterID(cs.ClusterGroup, cs.Cluster), "authMode", doc.AuthMode)
	s.writeEndpoint(w, r, http.StatusCreated, &endpoint{obj: o, rec: rec})
}

// endpointNameTaken says why the name of k is not free: another endpoint
// of its workspace has it (in another case), or, with a cluster given,
// another endpoint on that cluster has it, in any workspace: the router
// finds endpoints by name (/api/v1/endpoint/<name>/score), and Kubernetes
// names are lower case. Endpoints being deleted hold their name until
// their cluster let them go. "" when it is free.
func (s *Server) endpointNameTaken(ctx context.Context, k store.Key, clusterGroup, cluster string) (string, error) {
	if _, err := s.store.Get(ctx, k); err == nil {
		return fmt.Sprintf("online endpoint %s already exists in workspace %s: change it with `outpost ml online-endpoint update`, or delete it first", k.Name, strings.TrimPrefix(k.Parent, workspaceParent(""))), nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	all, err := s.store.List(ctx, kindEndpoint, "", "*")
	if err != nil {
		return "", err
	}
	for _, o := range all {
		if !strings.EqualFold(o.Name, k.Name) {
			continue
		}
		ws := strings.TrimPrefix(o.Parent, workspaceParent(""))
		if o.Group == k.Group && o.Parent == k.Parent {
			return fmt.Sprintf("online endpoint %s exists in workspace %s: endpoint names are unique in any case", o.Name, ws), nil
		}
		if cluster == "" {
			continue
		}
		e, err := decodeEndpoint(o)
		if err != nil {
			return "", err
		}
		if e.rec.ClusterGroup == clusterGroup && e.rec.Cluster == cluster {
			what := ""
			if e.rec.Deleting {
				what = " (being deleted: it holds the name until its cluster has removed it)"
			}
			return fmt.Sprintf("endpoint name %s is taken on cluster %s/%s by online endpoint %s of workspace %s/%s%s: its scoring URI is <router>/api/v1/endpoint/<name>/score, so an endpoint name is unique on its cluster (in any case); choose another name",
				k.Name, clusterGroup, cluster, o.Name, o.Group, ws, what), nil
		}
	}
	return "", nil
}

// endpointChangeable are the fields an update changes; endpointPatchable
// adds those it may give as they are (name, compute).
var (
	endpointChangeable = []string{"description", "tags", "traffic", "mirror_traffic", "auth_mode", "identity"}
	endpointPatchable  = append(slices.Clone(endpointChangeable), "name", "compute", "kind", "$schema")
)

// updateEndpoint changes an endpoint: each top-level field of the body
// replaces the stored one (null removes it). Traffic names the endpoint's
// deployments, its percents summing to 100 (or all 0).
func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	ctx := r.Context()
	data, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(data, &patch); err != nil || patch == nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "request body: want a JSON object of the fields to change")
		return
	}
	var refused []string
	for f := range patch {
		if !slices.Contains(endpointPatchable, f) {
			refused = append(refused, f)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		writeError(w, http.StatusBadRequest, "InvalidEndpoint", fmt.Sprintf("%s cannot be changed: an update changes %s", strings.Join(refused, ", "),
			strings.Join(endpointChangeable, ", ")))
		return
	}
	if raw, ok := patch["mirror_traffic"]; ok && !isEmptyJSON(raw) {
		writeError(w, http.StatusBadRequest, "InvalidEndpoint", "mirror_traffic: "+deploymentspec.ErrMirrorTraffic.Error())
		return
	}
	k := endpointKey(rg, ws, name)
	defer s.inference.endpointLocks.lock(resourceID(k))()
	var e *endpoint
	var bad error
	err = retry.OnError(mergeRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
		var err error
		if e, err = s.readEndpoint(ctx, k); err != nil {
			return err
		}
		if e.rec.Deleting {
			return errDeleting{"online endpoint " + name}
		}
		next, err := mergeTopLevel(e.rec.Endpoint, patch)
		if err != nil {
			bad = err
			return nil
		}
		doc, err := deploymentspec.DecodeEndpoint(next)
		if err != nil {
			bad = err
			return nil
		}
		if err := deploymentspec.ValidateEndpoint(doc, false); err != nil {
			bad = err
			return nil
		}
		if doc.Name != name {
			bad = fmt.Errorf("name: %q differs from the endpoint's name %q", doc.Name, name)
			return nil
		}
		if strings.TrimPrefix(doc.Compute, "azureml:") != e.rec.Compute {
			bad = fmt.Errorf("compute: an endpoint stays on its compute (%s): create another endpoint on %s", e.rec.Endpoint.Compute, doc.Compute)
			return nil
		}
		ds, err := s.endpointDeployments(ctx, rg, ws, name)
		if err != nil {
			return err
		}
		traffic, err := deploymentspec.ValidateTraffic(doc.Traffic, deploymentNames(ds))
		if err != nil {
			bad = err
			return nil
		}
		doc.Traffic = traffic
		if len(doc.Traffic) == 0 {
			doc.Traffic = nil
		}
		rec := e.rec
		rec.Endpoint = *doc
		body, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		o, err := s.store.UpdateSpec(ctx, k, body, nil, e.obj.Generation)
		if err != nil {
			return err
		}
		e = &endpoint{obj: o, rec: rec}
		return nil
	})
	var del errDeleting
	switch {
	case errors.As(err, &del):
		writeError(w, http.StatusConflict, "Conflict", del.Error())
		return
	case err != nil:
		storeError(w, err, "online endpoint "+name)
		return
	case bad != nil:
		documentError(w, "InvalidEndpoint", bad)
		return
	}
	s.log.Info("online endpoint updated", "endpoint", resourceID(k), "traffic", deploymentspec.TrafficString(e.rec.Endpoint.Traffic))
	s.writeEndpoint(w, r, http.StatusOK, e)
}

// errDeleting refuses a change of what is being deleted.
type errDeleting struct{ what string }

func (e errDeleting) Error() string { return e.what + " is being deleted: it takes no more changes" }

func isEmptyJSON(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t == "" || t == "null" || t == "{}"
}

// mergeTopLevel is doc with each field of patch replacing its own (null
// removes it), as JSON.
func mergeTopLevel(doc any, patch map[string]json.RawMessage) ([]byte, error) {
	cur, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cur, &m); err != nil {
		return nil, err
	}
	for k, v := range patch {
		if strings.TrimSpace(string(v)) == "null" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// deleteEndpoint deletes an endpoint and its deployments: they leave their
// cluster's desired state at once, and are Deleting until its agent
// confirms.
func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	ctx := r.Context()
	k := endpointKey(rg, ws, name)
	defer s.inference.endpointLocks.lock(resourceID(k))()
	e, err := s.readEndpoint(ctx, k)
	if err != nil {
		storeError(w, err, "online endpoint "+name)
		return
	}
	objs, err := s.store.List(ctx, kindDeployment, rg, deploymentParent(ws, name))
	if err != nil {
		storeError(w, err, "deployments of "+name)
		return
	}
	for _, o := range objs {
		if _, err := s.retireDeployment(ctx, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
			storeError(w, err, "deployment "+o.Name)
			return
		}
	}
	if !e.rec.Deleting {
		err := retry.OnError(mergeRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
			cur, err := s.readEndpoint(ctx, k)
			if err != nil {
				return err
			}
			if cur.rec.Deleting {
				e = cur
				return nil
			}
			now := time.Now().UTC()
			cur.rec.Deleting, cur.rec.DeletingAt = true, &now
			body, err := json.Marshal(cur.rec)
			if err != nil {
				return err
			}
			o, err := s.store.UpdateSpec(ctx, k, body, nil, cur.obj.Generation)
			if err != nil {
				return err
			}
			e = &endpoint{obj: o, rec: cur.rec}
			return nil
		})
		if err != nil {
			storeError(w, err, "online endpoint "+name)
			return
		}
		s.log.Info("online endpoint deleting", "endpoint", resourceID(k), "deployments", len(objs))
	}
	// After the writes: a pass of the reconciler that looked before them
	// keeps the cluster pending (see inference.reconcile).
	s.inference.deleting(e.rec.target())
	s.inference.kick()
	s.writeEndpoint(w, r, http.StatusAccepted, e)
}

// listKeys answers an endpoint's keys (key auth only).
func (s *Server) listEndpointKeys(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	k := endpointKey(r.PathValue("rg"), r.PathValue("ws"), name)
	e, err := s.readEndpoint(r.Context(), k)
	if err != nil {
		storeError(w, err, "online endpoint "+name)
		return
	}
	if e.rec.Endpoint.AuthMode != api.AuthModeKey {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("online endpoint %s takes aml_token auth, not keys: ask for a token (outpost ml online-endpoint get-credentials --name %s)", name, name))
		return
	}
	sec, err := s.endpointSecrets(r.Context(), k)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, api.EndpointKeys{PrimaryKey: sec.PrimaryKey, SecondaryKey: sec.SecondaryKey})
}

// regenerateEndpointKeys replaces one key of a key endpoint. The new key
// syncs to the cluster at once: the old one stops working as soon as the
// router sees the endpoint's Secret change.
func (s *Server) regenerateEndpointKeys(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	ctx := r.Context()
	var req api.RegenerateKeysRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	keyType := strings.ToLower(req.KeyType)
	if keyType != "primary" && keyType != "secondary" {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("keyType %q: use primary or secondary", req.KeyType))
		return
	}
	k := endpointKey(rg, ws, name)
	defer s.inference.endpointLocks.lock(resourceID(k))()
	var sec endpointSecrets
	err := retry.OnError(mergeRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
		e, err := s.readEndpoint(ctx, k)
		if err != nil {
			return err
		}
		if e.rec.Deleting {
			return errDeleting{"online endpoint " + name}
		}
		if e.rec.Endpoint.AuthMode != api.AuthModeKey {
			return errNotKeyAuth{name}
		}
		if sec, err = s.endpointSecrets(ctx, k); err != nil {
			return err
		}
		key, err := endpointauth.NewKey()
		if err != nil {
			return err
		}
		if keyType == "primary" {
			sec.PrimaryKey = key
		} else {
			sec.SecondaryKey = key
		}
		prot, err := s.sealEndpointSecrets(k, sec)
		if err != nil {
			return err
		}
		_, err = s.store.UpdateSpec(ctx, k, e.obj.Spec, prot, e.obj.Generation)
		return err
	})
	var del errDeleting
	var notKey errNotKeyAuth
	switch {
	case errors.As(err, &del):
		writeError(w, http.StatusConflict, "Conflict", del.Error())
		return
	case errors.As(err, &notKey):
		writeError(w, http.StatusBadRequest, "InvalidRequest", notKey.Error())
		return
	case err != nil:
		storeError(w, err, "online endpoint "+name)
		return
	}
	s.log.Info("online endpoint key regenerated", "endpoint", resourceID(k), "keyType", keyType)
	writeJSON(w, http.StatusOK, api.EndpointKeys{PrimaryKey: sec.PrimaryKey, SecondaryKey: sec.SecondaryKey})
}

type errNotKeyAuth struct{ name string }

func (e errNotKeyAuth) Error() string {
	return "online endpoint " + e.name + " takes aml_token auth: only key endpoints have keys to regenerate (its tokens expire on their own)"
}

// endpointToken issues an aml_token for an aml_token endpoint, signed with
// its token key, which its router checks.
func (s *Server) endpointToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	k := endpointKey(r.PathValue("rg"), r.PathValue("ws"), name)
	e, err := s.readEndpoint(r.Context(), k)
	if err != nil {
		storeError(w, err, "online endpoint "+name)
		return
	}
	if e.rec.Endpoint.AuthMode != api.AuthModeAMLToken {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("online endpoint %s takes key auth: its keys are what callers present (outpost ml online-endpoint get-credentials --name %s)", name, name))
		return
	}
	sec, err := s.endpointSecrets(r.Context(), k)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	now := time.Now()
	tok, exp, err := endpointauth.IssueToken(sec.TokenKey, name, now)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, api.EndpointToken{AccessToken: tok, TokenType: "Bearer", ExpiryTimeUTC: exp.UTC(),
		RefreshAfterTime: now.Add(endpointauth.TokenTTL / 2).Truncate(time.Second).UTC()})
}

// endpointRouter answers where an endpoint's router answers, with its
// certificate: what `online-endpoint invoke` needs to call it over HTTPS
// when the router's certificate is not from a CA the machine trusts.
func (s *Server) endpointRouter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e, err := s.readEndpoint(r.Context(), endpointKey(r.PathValue("rg"), r.PathValue("ws"), name))
	if err != nil {
		storeError(w, err, "online endpoint "+name)
		return
	}
	st, found, err := s.clusterOf(r.Context(), e.rec.ClusterGroup, e.rec.Cluster)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
	case !found:
		writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("cluster %s/%s of online endpoint %s is no longer connected", e.rec.ClusterGroup, e.rec.Cluster, name))
	case st.Facts.InferenceRouter == nil:
		writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("cluster %s has reported no inference router (azureml-fe) yet: is its ML extension installed with enableInference=True?", e.rec.Cluster))
	default:
		writeJSON(w, http.StatusOK, st.Facts.InferenceRouter)
	}
}

// desiredEndpoint is an endpoint as its cluster's agent gets it: the keys
// of its auth mode only.
func (s *Server) desiredEndpoint(ctx context.Context, o store.Object) (*api.DesiredOnlineEndpoint, error) {
	e, err := decodeEndpoint(o)
	if err != nil {
		return nil, err
	}
	sec, err := s.endpointSecrets(ctx, o.Key)
	if err != nil {
		return nil, err
	}
	d := &api.DesiredOnlineEndpoint{Name: o.Name, ResourceGroup: o.Group, Workspace: strings.TrimPrefix(o.Parent, workspaceParent("")),
		Compute: e.rec.Compute, Namespace: e.rec.Namespace, AuthMode: e.rec.Endpoint.AuthMode, Traffic: e.rec.Endpoint.Traffic}
	if d.AuthMode == api.AuthModeAMLToken {
		d.TokenKey = sec.TokenKey
	} else {
		d.PrimaryKey, d.SecondaryKey = sec.PrimaryKey, sec.SecondaryKey
	}
	return d, nil
}
