package workspace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

const (
	kindCluster   = "connectedClusters"
	kindExtension = "extensions"
	kindCompute   = "computes"
)

// clusterSpec is what the workspace stores for a connected cluster.
type clusterSpec struct {
	Proxy string `json:"proxy,omitempty"`
	// ClusterIdentity is the UID of the cluster's kube-system namespace, as
	// `connectedk8s connect` reads it: the workspace registers a cluster
	// under one name only.
	ClusterIdentity string `json:"clusterIdentity,omitempty"`
}

// A Kubernetes UID is a UUID; anything UUID-like and short is accepted.
var identityPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// clusterStatus is what agents reported, kept across restarts.
type clusterStatus struct {
	Facts      api.ClusterFacts `json:"facts"`
	Namespaces []string         `json:"namespaces,omitempty"`
	LastSeen   *time.Time       `json:"lastSeen,omitempty"`
}

// clusterSecrets are the protected data of a cluster: only the hash of the
// agent's token, so a stolen database admits no agent.
type clusterSecrets struct {
	TokenSHA256 string `json:"tokenSHA256"`
}

func clusterKey(rg, name string) store.Key {
	return store.Key{Kind: kindCluster, Group: rg, Name: name}
}

func clusterID(rg, name string) string {
	return "/resourceGroups/" + rg + "/connectedClusters/" + name
}

func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *Server) clusterView(o store.Object) (api.ConnectedCluster, error) {
	var spec clusterSpec
	var st clusterStatus
	if err := decodeStored(o, &spec, &st); err != nil {
		return api.ConnectedCluster{}, err
	}
	c := api.ConnectedCluster{ID: clusterID(o.Group, o.Name), Name: o.Name, ResourceGroup: o.Group,
		Facts: st.Facts, Proxy: spec.Proxy, ClusterIdentity: spec.ClusterIdentity, Created: o.Created, ProvisioningState: api.StateSucceeded}
	s.mu.Lock()
	seen, ok := s.lastSeen[c.ID]
	s.mu.Unlock()
	switch {
	case ok:
		c.LastConnectivityTime = &seen
		c.ConnectivityStatus = api.Connected
		if s.offline(seen) {
			c.ConnectivityStatus = api.Offline
		}
	case st.LastSeen != nil:
		// Seen before this workspace (re)started: Offline until it reports again.
		c.LastConnectivityTime = st.LastSeen
		c.ConnectivityStatus = api.Offline
		if time.Since(*st.LastSeen) < 2*s.opts.Heartbeat {
			c.ConnectivityStatus = api.Connecting
		}
	default:
		c.ConnectivityStatus = api.Connecting
	}
	return c, nil
}

// offline tells whether a cluster last seen at seen has missed two
// heartbeats (with half a heartbeat of slack for a slow report).
func (s *Server) offline(seen time.Time) bool {
	return time.Since(seen) > 2*s.opts.Heartbeat+s.opts.Heartbeat/2
}

func (s *Server) connected(rg, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen, ok := s.lastSeen[clusterID(rg, name)]
	return ok && !s.offline(seen)
}

// registerCluster creates the cluster record and its agent token, which is
// returned once and stored only as a hash. A cluster already registered
// under another name (by its identity) is refused, unless ?force=true, which
// deletes the other registrations of that cluster first: their extensions
// and agent token go with them, so that nothing of them pretends to run.
func (s *Server) registerCluster(w http.ResponseWriter, r *http.Request) {
	rg, name := r.PathValue("rg"), r.PathValue("cluster")
	if err := checkNames("resource group", rg, "cluster name", name); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidName", err.Error())
		return
	}
	var force bool
	switch v := r.URL.Query().Get("force"); v {
	case "", "false":
	case "true":
		force = true
	default:
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("force=%q: use true or false", v))
		return
	}
	var spec clusterSpec
	if err := decode(r, &spec); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if spec.ClusterIdentity != "" && !identityPattern.MatchString(spec.ClusterIdentity) {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("clusterIdentity %q: want the UID of the cluster's kube-system namespace (letters, digits and '-', at most 64)", spec.ClusterIdentity))
		return
	}
	// One registration at a time: two connects of one cluster under two
	// names must not both pass the identity check.
	s.registerMu.Lock()
	defer s.registerMu.Unlock()
	same, err := s.clustersWithIdentity(r, spec.ClusterIdentity)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if len(same) > 0 && !force {
		o := same[0]
		writeError(w, http.StatusConflict, "ClusterAlreadyConnected", fmt.Sprintf(
			"this cluster (kube-system namespace UID %s) is already connected as %s/%s: delete that registration first (outpost connectedk8s delete --name %s --resource-group %s), or connect with --force to replace it",
			spec.ClusterIdentity, o.Group, o.Name, o.Name, o.Group))
		return
	}
	replacesItself := false
	for _, o := range same {
		replacesItself = replacesItself || (o.Group == rg && o.Name == name)
	}
	if !replacesItself {
		// Checked before anything is deleted: --force takes over a cluster's
		// registrations, never another cluster's name.
		if _, err := s.store.Get(r.Context(), clusterKey(rg, name)); err == nil {
			writeError(w, http.StatusConflict, "Conflict", "connected cluster "+rg+"/"+name+" already exists (another cluster has this name)")
			return
		} else if !errors.Is(err, store.ErrNotFound) {
			storeError(w, err, "connected cluster "+rg+"/"+name)
			return
		}
	}
	var replaced []string
	for _, o := range same {
		if err := s.forgetCluster(r.Context(), o.Group, o.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
			storeError(w, err, "connected cluster "+o.Group+"/"+o.Name)
			return
		}
		s.log.Info("registration replaced by a forced connect", "old", clusterID(o.Group, o.Name), "new", clusterID(rg, name))
		replaced = append(replaced, clusterID(o.Group, o.Name))
	}
	tok := newToken()
	prot, err := json.Marshal(clusterSecrets{TokenSHA256: hashToken(tok)})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if prot, err = s.sealProtected(clusterKey(rg, name), prot); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	body, err := json.Marshal(spec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	o, err := s.store.Create(r.Context(), clusterKey(rg, name), body, prot)
	if err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+name)
		return
	}
	c, err := s.clusterView(o)
	if err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+name)
		return
	}
	c.AgentToken = tok
	c.Replaced = replaced
	writeJSON(w, http.StatusCreated, c)
}

// clustersWithIdentity lists the registrations of the cluster with this
// identity (none for an empty one: registrations made without it cannot be
// matched).
func (s *Server) clustersWithIdentity(r *http.Request, identity string) ([]store.Object, error) {
	if identity == "" {
		return nil, nil
	}
	objs, err := s.store.List(r.Context(), kindCluster, "", "")
	if err != nil {
		return nil, err
	}
	var out []store.Object
	for _, o := range objs {
		var spec clusterSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return nil, fmt.Errorf("stored %s: %w", o.Key, err)
		}
		if spec.ClusterIdentity == identity {
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	o, err := s.store.Get(r.Context(), clusterKey(r.PathValue("rg"), r.PathValue("cluster")))
	if err != nil {
		storeError(w, err, "connected cluster "+r.PathValue("rg")+"/"+r.PathValue("cluster"))
		return
	}
	writeView(w, http.StatusOK, s.clusterView, o, "connected cluster "+r.PathValue("rg")+"/"+r.PathValue("cluster"))
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindCluster, r.PathValue("rg"), "")
	if err != nil {
		storeError(w, err, "connected clusters")
		return
	}
	listViews(w, s.clusterView, objs, "connected clusters")
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	rg, name := r.PathValue("rg"), r.PathValue("cluster")
	if err := s.forgetCluster(r.Context(), rg, name); err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+name)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forgetCluster deletes a registration with its extensions and agent token,
// and wakes its agent's long poll, which is refused from then on.
func (s *Server) forgetCluster(ctx context.Context, rg, name string) error {
	if err := s.store.Delete(ctx, clusterKey(rg, name)); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.lastSeen, clusterID(rg, name))
	s.mu.Unlock()
	return nil
}
