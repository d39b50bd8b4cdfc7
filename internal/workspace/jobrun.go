package workspace

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// What travels between a job and its cluster: the job as the agent gets
// it, the cluster's reports on it, and the job-run API its pods call.

// desired is the job as its cluster's agent gets it.
func (j *job) desired(token string) *api.DesiredJob {
	spec := j.rec.Job
	d := &api.DesiredJob{Name: j.obj.Name, ResourceGroup: j.obj.Group, Workspace: strings.TrimPrefix(j.obj.Parent, workspaceParent("")),
		Compute: j.rec.Compute, Namespace: j.rec.Namespace, Token: token, Image: j.rec.Image, InstanceType: j.rec.InstanceType,
		InstanceCount: 1, Distribution: spec.Distribution, Cancel: j.rec.Cancel}
	if r := spec.Resources; r != nil {
		d.InstanceCount = max(r.InstanceCount, 1)
		d.ShmSize = r.ShmSize
	}
	if spec.Limits != nil {
		d.TimeoutSeconds = spec.Limits.Timeout
	}
	return d
}

// parseJobID reads a job's resource id,
// /resourceGroups/<rg>/workspaces/<ws>/jobs/<name>.
func parseJobID(id string) (store.Key, bool) {
	p := strings.Split(strings.TrimPrefix(id, "/"), "/")
	if len(p) != 6 || p[0] != "resourceGroups" || p[2] != kindWorkspace || p[4] != kindJob || checkNames("resource group", p[1], "workspace name", p[3], "job name", p[5]) != nil {
		return store.Key{}, false
	}
	return jobKey(p[1], p[3], p[5]), true
}

// modifyJobStatus changes a job's status with f, which returns false to
// leave it as it is. A job that is not there is no error: it changes
// nothing.
func (s *Server) modifyJobStatus(ctx context.Context, k store.Key, f func(*job) bool) error {
	id := resourceID(k)
	defer s.jobStatusLocks.lock(id)()
	j, err := s.readJob(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !f(j) {
		return nil
	}
	body, err := json.Marshal(j.st)
	if err != nil {
		return err
	}
	if _, err := s.store.UpdateStatus(ctx, k, body); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.jobEvents.notify(id)
	return nil
}

// storeJobReport keeps what a cluster (target) reported of a job, when it
// is news. Reports of jobs the cluster does not run for this workspace (or
// no longer: retired ones) are ignored.
func (s *Server) storeJobReport(ctx context.Context, t string, jr api.JobReport) error {
	k, ok := parseJobID(jr.ID)
	if !ok {
		s.log.Warn("agent reported a job with an id that is not one", "cluster", t, "id", jr.ID)
		return nil
	}
	return s.modifyJobStatus(ctx, k, func(j *job) bool {
		if j.rec.Retired || j.obj.Target != t {
			return false
		}
		next := jr
		switch next.Phase {
		case api.ClusterJobSucceeded, api.ClusterJobFailed, api.ClusterJobCanceled:
			if next.EndTime == nil {
				// The end is when it was first heard of.
				if cur := j.st.Cluster; cur != nil && cur.Phase == next.Phase && cur.EndTime != nil {
					next.EndTime = cur.EndTime
				} else {
					now := time.Now().UTC()
					next.EndTime = &now
				}
			}
		}
		if sameJSON(j.st.Cluster, &next) {
			return false
		}
		j.st.Cluster = &next
		s.log.Info("job reported", "job", resourceID(k), "phase", next.Phase, "reason", next.Reason)
		return true
	})
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// jobRunSpec answers the wrapper's first call: everything it needs.
func (s *Server) jobRunSpec(w http.ResponseWriter, r *http.Request) {
	j := jobOf(r)
	spec := j.rec.Job
	writeJSON(w, http.StatusOK, api.JobRun{Name: j.obj.Name, ResourceGroup: j.obj.Group, Workspace: strings.TrimPrefix(j.obj.Parent, workspaceParent("")),
		ExperimentName: cmp.Or(spec.ExperimentName, "Default"), Command: spec.Command, Code: j.rec.Code,
		Inputs: j.rec.Inputs, Outputs: j.rec.Outputs, EnvironmentVariables: spec.EnvironmentVariables,
		Artifacts: j.rec.Artifacts, Distribution: spec.Distribution})
}

// jobRunPhase keeps the wrapper's progress; phases only go forward, so a
// late or repeated report changes nothing.
func (s *Server) jobRunPhase(w http.ResponseWriter, r *http.Request) {
	var p api.JobPhase
	if err := decode(r, &p); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	rank, ok := wrapperRank[p.Phase]
	if !ok {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("phase %q: want %s, %s or %s", p.Phase, api.JobPreparing, api.JobRunning, api.JobFinalizing))
		return
	}
	if p.Instance != 0 {
		// Instance 0 speaks for the job.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	j := jobOf(r)
	err := s.modifyJobStatus(r.Context(), j.obj.Key, func(j *job) bool {
		if rank <= wrapperRank[j.st.Phase] {
			return false
		}
		j.st.Phase = p.Phase
		if rank >= wrapperRank[api.JobRunning] && j.st.RunningAt == nil {
			now := time.Now().UTC()
			j.st.RunningAt = &now
		}
		return true
	})
	if err != nil {
		storeError(w, err, "job "+j.obj.Name)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
