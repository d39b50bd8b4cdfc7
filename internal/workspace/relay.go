package workspace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// longPoll is how long a sync request waits for a change before answering
// with none: short enough for proxies that cut idle connections.
const longPoll = 25 * time.Second

// tombstoneRetention is how long deletions are kept for agents that were
// away; one away longer gets its cluster's whole state again (a reset).
const tombstoneRetention = 24 * time.Hour

// syncKinds are the store kinds agents receive, with their kind on the wire.
var syncKinds = map[string]string{kindExtension: api.KindExtension, kindCompute: api.KindCompute, kindJob: api.KindJob,
	kindEndpoint: api.KindOnlineEndpoint, kindDeployment: api.KindOnlineDeployment}

var syncStoreKinds = []string{kindExtension, kindCompute, kindJob, kindEndpoint, kindDeployment}

// target names the cluster rg/name as the store's sync target.
func target(rg, cluster string) string { return rg + "/" + cluster }

// syncTarget tells the store which cluster a resource syncs to: an
// extension and a cluster to their cluster, a compute to the cluster it
// attaches. The cluster itself has one so that the compute reconciler
// hears of its status (namespaces) and deletion; agents never receive it.
func syncTarget(k store.Key, spec json.RawMessage) string {
	switch k.Kind {
	case kindCluster:
		return target(k.Group, k.Name)
	case kindExtension:
		return target(k.Group, strings.TrimPrefix(k.Parent, kindCluster+"/"))
	case kindCompute:
		var cs computeSpec
		if err := json.Unmarshal(spec, &cs); err != nil || cs.Cluster == "" {
			return "" // not a spec this workspace wrote: nothing to sync
		}
		return target(cs.ClusterGroup, cs.Cluster)
	case kindJob:
		// A retired job syncs nowhere: the tombstone its cluster gets has
		// the agent delete what runs it.
		var rec jobRecord
		if err := json.Unmarshal(spec, &rec); err != nil || rec.Cluster == "" || rec.Retired {
			return ""
		}
		return target(rec.ClusterGroup, rec.Cluster)
	case kindEndpoint:
		// A deleting endpoint (or deployment) syncs nowhere: the tombstone
		// its cluster gets has the agent remove it.
		var rec endpointRecord
		if err := json.Unmarshal(spec, &rec); err != nil || rec.Cluster == "" || rec.Deleting {
			return ""
		}
		return rec.target()
	case kindDeployment:
		var rec deploymentRecord
		if err := json.Unmarshal(spec, &rec); err != nil || rec.Cluster == "" || rec.Deleting {
			return ""
		}
		return rec.target()
	}
	return ""
}

// resourceID is the API id of a stored resource, which also names it to agents.
func resourceID(k store.Key) string {
	return "/resourceGroups/" + k.Group + "/" + k.Parent + "/" + k.Kind + "/" + k.Name
}

// desiredObject turns a stored resource into what its cluster's agent gets.
func (s *Server) desiredObject(ctx context.Context, o store.Object) (api.DesiredObject, error) {
	d := api.DesiredObject{Kind: syncKinds[o.Kind], ID: resourceID(o.Key), Generation: o.Generation}
	switch o.Kind {
	case kindExtension:
		var spec extensionSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return d, fmt.Errorf("stored %s: %w", o.Key, err)
		}
		prot := map[string]string{}
		data, err := s.protectedData(ctx, o.Key)
		if err != nil {
			return d, fmt.Errorf("protected settings of %s: %w", o.Key, err)
		}
		if data != nil {
			if err := json.Unmarshal(data, &prot); err != nil {
				return d, fmt.Errorf("protected settings of %s: %w", o.Key, err)
			}
		}
		d.Extension = &api.DesiredExtension{Name: o.Name, ExtensionType: spec.ExtensionType, Generation: o.Generation,
			Settings: spec.Settings, Protected: prot}
	case kindCompute:
		var spec computeSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return d, fmt.Errorf("stored %s: %w", o.Key, err)
		}
		d.Compute = &api.DesiredCompute{Name: o.Name, Namespace: spec.Namespace, CreateNamespace: spec.CreateNamespace}
	case kindJob:
		j, err := decodeJob(o)
		if err != nil {
			return d, err
		}
		data, err := s.protectedData(ctx, o.Key)
		if err != nil {
			return d, fmt.Errorf("credential of %s: %w", o.Key, err)
		}
		var sec jobSecrets
		if data != nil {
			if err := json.Unmarshal(data, &sec); err != nil {
				return d, fmt.Errorf("credential of %s: %w", o.Key, err)
			}
		}
		d.Job = j.desired(sec.Token)
	case kindEndpoint:
		e, err := s.desiredEndpoint(ctx, o)
		if err != nil {
			return d, err
		}
		d.OnlineEndpoint = e
	case kindDeployment:
		dep, err := s.desiredDeploymentOf(ctx, o)
		if err != nil {
			return d, err
		}
		d.OnlineDeployment = dep
	}
	return d, nil
}

// agentSync answers an agent's long poll GET .../sync?since=R with what
// changed for its cluster after revision R (see api.SyncResponse). It waits
// on the store for a change of this cluster's objects, so that a change
// costs what it changes and wakes only the agent it concerns.
func (s *Server) agentSync(w http.ResponseWriter, r *http.Request) {
	rg, cluster := r.PathValue("rg"), r.PathValue("cluster")
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("since=%q: want a revision (a number >= 0)", v))
			return
		}
		since = n
	}
	s.seen(clusterID(rg, cluster))
	ctx, cancel := context.WithTimeout(r.Context(), longPoll)
	defer cancel()
	t := target(rg, cluster)
	for {
		ch, err := s.store.ChangesSince(r.Context(), t, syncStoreKinds, since)
		if err != nil {
			storeError(w, err, "desired state")
			return
		}
		if ch.Reset || len(ch.Objects) > 0 || len(ch.Deleted) > 0 || ctx.Err() != nil {
			resp, err := s.syncResponse(r.Context(), ch)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
				return
			}
			writeJSON(w, http.StatusOK, resp)
			return
		}
		if r.Context().Err() != nil {
			return
		}
		// Nothing for this cluster up to ch.Revision: wait for its next change.
		since = ch.Revision
		s.store.WaitTarget(ctx, t, since)
	}
}

func (s *Server) syncResponse(ctx context.Context, ch store.Changes) (api.SyncResponse, error) {
	resp := api.SyncResponse{Revision: ch.Revision, Reset: ch.Reset, Objects: make([]api.DesiredObject, 0, len(ch.Objects)),
		HeartbeatSeconds: max(1, int(s.opts.Heartbeat/time.Second))}
	for _, o := range ch.Objects {
		d, err := s.desiredObject(ctx, o)
		if err != nil {
			return resp, err
		}
		resp.Objects = append(resp.Objects, d)
	}
	for _, k := range ch.Deleted {
		resp.Deleted = append(resp.Deleted, api.ObjectRef{Kind: syncKinds[k.Kind], ID: resourceID(k)})
	}
	return resp, nil
}

func (s *Server) seen(id string) {
	s.mu.Lock()
	s.lastSeen[id] = time.Now().UTC()
	s.mu.Unlock()
}

// agentReport takes an agent's heartbeat: cluster facts and what changed in
// the cluster since its last acknowledged report. Only changes are written;
// what follows from them (compute states) is the compute reconciler's.
func (s *Server) agentReport(w http.ResponseWriter, r *http.Request) {
	rg, cluster := r.PathValue("rg"), r.PathValue("cluster")
	var rep api.AgentReport
	if err := decode(r, &rep); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	ctx := r.Context()
	id := clusterID(rg, cluster)
	wasConnected := s.connected(rg, cluster)
	s.seen(id)
	o, err := s.store.Get(ctx, clusterKey(rg, cluster))
	if err != nil {
		storeError(w, err, "connected cluster "+rg+"/"+cluster)
		return
	}
	var st clusterStatus
	if len(o.Status) > 0 {
		if err := json.Unmarshal(o.Status, &st); err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", fmt.Sprintf("stored status of %s: %v", o.Key, err))
			return
		}
	}
	namespaces := st.Namespaces
	if rep.Namespaces != nil {
		namespaces = slices.Sorted(slices.Values(rep.Namespaces))
	}
	// Heartbeats live in memory; the database hears of a cluster only when
	// its facts change, and once a minute so that a restarted workspace
	// knows roughly when each cluster was last seen.
	if st.LastSeen == nil || time.Since(*st.LastSeen) > time.Minute || !reflect.DeepEqual(st.Facts, rep.Facts) || !slices.Equal(st.Namespaces, namespaces) {
		now := time.Now().UTC()
		st = clusterStatus{Facts: rep.Facts, Namespaces: namespaces, LastSeen: &now}
		body, err := json.Marshal(st)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		if _, err := s.store.UpdateStatus(ctx, o.Key, body); err != nil {
			storeError(w, err, "connected cluster")
			return
		}
	}
	for _, e := range rep.Extensions {
		k := extensionKey(rg, cluster, e.Name)
		o, err := s.store.Get(ctx, k)
		if err != nil || o.Generation != e.Generation || rep.Revision < o.SpecRevision {
			// Deleted or changed since, or the agent has not applied this
			// spec yet: its report may be of an extension of the same name
			// and generation that was deleted and created again. The agent
			// reports the new one once it has it.
			continue
		}
		next := extensionStatus{ObservedGeneration: e.Generation, InstallState: e.InstallState, Message: e.Message, Components: e.Components}
		var cur extensionStatus
		if len(o.Status) > 0 {
			if err := json.Unmarshal(o.Status, &cur); err != nil {
				s.log.Warn("stored extension status unreadable; replacing it", "extension", k.String(), "err", err)
			}
		}
		if reflect.DeepEqual(cur, next) {
			continue
		}
		body, err := json.Marshal(next)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		if _, err := s.store.UpdateStatus(ctx, k, body); err != nil {
			storeError(w, err, "extension")
			return
		}
		s.log.Info("extension state", "cluster", id, "extension", e.Name, "installState", e.InstallState, "message", e.Message)
	}
	for _, jr := range rep.Jobs {
		if err := s.storeJobReport(ctx, target(rg, cluster), jr); err != nil {
			storeError(w, err, "job "+jr.ID)
			return
		}
	}
	for _, dr := range rep.Deployments {
		if err := s.storeDeploymentReport(ctx, target(rg, cluster), rep.Revision, dr); err != nil {
			storeError(w, err, "deployment "+dr.ID)
			return
		}
	}
	s.computes.reported(target(rg, cluster), rep.Revision, !wasConnected)
	s.inference.reported(target(rg, cluster))
	w.WriteHeader(http.StatusNoContent)
}

// compactTombstones forgets deletions older than tombstoneRetention, hourly.
func (s *Server) compactTombstones(ctx context.Context) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if err := s.store.CompactTombstones(ctx, time.Now().Add(-tombstoneRetention)); err != nil && ctx.Err() == nil {
			s.log.Error("compact tombstones", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
