package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"time"

	"outpost.dev/outpost/api"
)

// longPoll is how long a desired-state request waits for a change before
// answering 304: short enough for proxies that cut idle connections.
const longPoll = 25 * time.Second

// desired assembles what the workspace wants on a cluster. Its ETag is a
// hash of the whole, so an agent that reconnects after any outage compares
// one value and converges without replaying history.
func (s *Server) desired(ctx context.Context, rg, cluster string) (api.DesiredState, string, error) {
	d := api.DesiredState{Extensions: []api.DesiredExtension{}}
	exts, err := s.store.List(ctx, kindExtension, rg, kindCluster+"/"+cluster)
	if err != nil {
		return d, "", err
	}
	for _, o := range exts {
		var spec extensionSpec
		_ = json.Unmarshal(o.Spec, &spec)
		prot := map[string]string{}
		if data, err := s.protectedData(ctx, o.Key); err == nil && data != nil {
			_ = json.Unmarshal(data, &prot)
		}
		d.Extensions = append(d.Extensions, api.DesiredExtension{Name: o.Name, ExtensionType: spec.ExtensionType,
			Generation: o.Generation, Settings: spec.Settings, Protected: prot})
	}
	computes, err := s.store.List(ctx, kindCompute, "", "*")
	if err != nil {
		return d, "", err
	}
	for _, o := range computes {
		var spec computeSpec
		_ = json.Unmarshal(o.Spec, &spec)
		if spec.CreateNamespace && spec.ClusterGroup == rg && spec.Cluster == cluster && !slices.Contains(d.Namespaces, spec.Namespace) {
			d.Namespaces = append(d.Namespaces, spec.Namespace)
		}
	}
	slices.Sort(d.Namespaces)
	d.HeartbeatSeconds = int(s.opts.Heartbeat / time.Second)
	if d.HeartbeatSeconds == 0 {
		d.HeartbeatSeconds = 1
	}
	data, _ := json.Marshal(d)
	sum := sha256.Sum256(data)
	return d, `"` + hex.EncodeToString(sum[:16]) + `"`, nil
}

func (s *Server) agentDesired(w http.ResponseWriter, r *http.Request) {
	rg, cluster := r.PathValue("rg"), r.PathValue("cluster")
	id := clusterID(rg, cluster)
	s.seen(id)
	have := r.Header.Get("If-None-Match")
	deadline := time.NewTimer(longPoll)
	defer deadline.Stop()
	for {
		// Take the change channel before reading, so a change in between wakes us.
		changed := s.changes(id)
		d, etag, err := s.desired(r.Context(), rg, cluster)
		if err != nil {
			storeError(w, err, "desired state")
			return
		}
		if etag != have {
			w.Header().Set("ETag", etag)
			writeJSON(w, http.StatusOK, d)
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) seen(id string) {
	s.mu.Lock()
	s.lastSeen[id] = time.Now().UTC()
	s.mu.Unlock()
}

// agentReport takes an agent's heartbeat: cluster facts and the state of each
// extension it applied. Only changes are written.
func (s *Server) agentReport(w http.ResponseWriter, r *http.Request) {
	rg, cluster := r.PathValue("rg"), r.PathValue("cluster")
	var rep api.AgentReport
	if err := decode(r, &rep); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	ctx := r.Context()
	id := clusterID(rg, cluster)
	s.seen(id)
	o, err := s.store.Get(ctx, clusterKey(rg, cluster))
	if err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+cluster)
		return
	}
	var st clusterStatus
	_ = json.Unmarshal(o.Status, &st)
	slices.Sort(rep.Namespaces)
	// Heartbeats live in memory; the database hears of a cluster only when
	// its facts change, and once a minute so that a restarted workspace
	// knows roughly when each cluster was last seen.
	if st.LastSeen == nil || time.Since(*st.LastSeen) > time.Minute || !reflect.DeepEqual(st.Facts, rep.Facts) || !slices.Equal(st.Namespaces, rep.Namespaces) {
		now := time.Now().UTC()
		st = clusterStatus{Facts: rep.Facts, Namespaces: rep.Namespaces, LastSeen: &now}
		body, _ := json.Marshal(st)
		if _, err := s.store.UpdateStatus(ctx, o.Key, body); err != nil {
			storeError(w, err, "connected cluster")
			return
		}
	}
	for _, e := range rep.Extensions {
		k := extensionKey(rg, cluster, e.Name)
		o, err := s.store.Get(ctx, k)
		if err != nil || o.Generation != e.Generation {
			continue // deleted or changed since: the agent will report again
		}
		next := extensionStatus{ObservedGeneration: e.Generation, InstallState: e.InstallState, Message: e.Message, Components: e.Components}
		var cur extensionStatus
		_ = json.Unmarshal(o.Status, &cur)
		if reflect.DeepEqual(cur, next) {
			continue
		}
		body, _ := json.Marshal(next)
		if _, err := s.store.UpdateStatus(ctx, k, body); err != nil {
			storeError(w, err, "extension")
			return
		}
		s.log.Info("extension state", "cluster", id, "extension", e.Name, "installState", e.InstallState, "message", e.Message)
	}
	s.reconcileComputes(ctx, rg, cluster)
	w.WriteHeader(http.StatusNoContent)
}
