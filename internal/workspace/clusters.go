package workspace

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
}

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

// Names follow Azure's rules for resource groups and clusters, close enough:
// letters, digits, '-', '_', '.', 1-90 characters, no trailing '.'.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,88}[A-Za-z0-9_-]?$`)

func checkNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !namePattern.MatchString(pairs[i+1]) {
			return fmt.Errorf("%s %q: use 1-90 letters, digits, '-', '_' or '.', starting with a letter or digit", pairs[i], pairs[i+1])
		}
	}
	return nil
}

func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *Server) clusterView(o store.Object) api.ConnectedCluster {
	var spec clusterSpec
	var st clusterStatus
	_ = json.Unmarshal(o.Spec, &spec)
	_ = json.Unmarshal(o.Status, &st)
	c := api.ConnectedCluster{ID: clusterID(o.Group, o.Name), Name: o.Name, ResourceGroup: o.Group,
		Facts: st.Facts, Proxy: spec.Proxy, Created: o.Created, ProvisioningState: api.StateSucceeded}
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
	return c
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
// returned once and stored only as a hash.
func (s *Server) registerCluster(w http.ResponseWriter, r *http.Request) {
	rg, name := r.PathValue("rg"), r.PathValue("cluster")
	if err := checkNames("resource group", rg, "cluster name", name); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidName", err.Error())
		return
	}
	var spec clusterSpec
	if err := decode(r, &spec); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	tok := newToken()
	prot, _ := json.Marshal(clusterSecrets{TokenSHA256: hashToken(tok)})
	body, _ := json.Marshal(spec)
	o, err := s.store.Create(r.Context(), clusterKey(rg, name), body, prot)
	if err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+name)
		return
	}
	c := s.clusterView(o)
	c.AgentToken = tok
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	o, err := s.store.Get(r.Context(), clusterKey(r.PathValue("rg"), r.PathValue("cluster")))
	if err != nil {
		storeError(w, err, "connected cluster "+r.PathValue("rg")+"/"+r.PathValue("cluster"))
		return
	}
	writeJSON(w, http.StatusOK, s.clusterView(o))
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindCluster, r.PathValue("rg"), "")
	if err != nil {
		storeError(w, err, "connected clusters")
		return
	}
	out := []api.ConnectedCluster{}
	for _, o := range objs {
		out = append(out, s.clusterView(o))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	rg, name := r.PathValue("rg"), r.PathValue("cluster")
	if err := s.store.Delete(r.Context(), clusterKey(rg, name)); err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+name)
		return
	}
	s.mu.Lock()
	delete(s.lastSeen, clusterID(rg, name))
	s.mu.Unlock()
	s.notify(clusterID(rg, name))
	w.WriteHeader(http.StatusNoContent)
}
