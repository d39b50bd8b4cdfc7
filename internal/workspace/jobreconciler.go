package workspace

import (
	"context"
	"errors"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// jobReconciler lets go of jobs that are over, in one goroutine of the
// workspace: a job that ended (its cluster reported the end) and one
// cancelled before its cluster ever reported it are retired, which takes
// them out of their cluster's desired state; the agent then deletes the
// TrainingJob, its pods and its credential. It looks at a job again
// whenever the store says the job was written.
type jobReconciler struct {
	s    *Server
	wake chan struct{}
}

func newJobReconciler(s *Server) *jobReconciler {
	return &jobReconciler{s: s, wake: make(chan struct{}, 1)}
}

func (c *jobReconciler) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *jobReconciler) run(ctx context.Context) {
	go func() {
		var seen int64
		for ctx.Err() == nil {
			seen = c.s.store.Wait(ctx, seen)
			c.kick()
		}
	}()
	// After a start every job gets a look: reports may have come in just
	// before the workspace stopped.
	since := c.s.store.Revision()
	todo := map[store.Key]bool{}
	all, err := c.s.store.List(ctx, kindJob, "", "*")
	if err != nil && ctx.Err() == nil {
		c.s.log.Error("job reconciler: list jobs", "err", err)
	}
	for _, o := range all {
		if o.Target != "" { // retired jobs sync nowhere, and are done with
			todo[o.Key] = true
		}
	}
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		failed := map[store.Key]bool{}
		for k := range todo {
			if err := c.reconcile(ctx, k); err != nil {
				if ctx.Err() != nil {
					return
				}
				c.s.log.Error("job reconciler", "job", resourceID(k), "err", err)
				failed[k] = true
			}
		}
		todo = failed
		if len(failed) > 0 {
			retry.Reset(c.s.opts.Heartbeat)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-retry.C:
		}
		touched, rev, err := c.s.store.TouchedSince(ctx, since)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.s.log.Error("job reconciler: read changes", "err", err)
			continue
		}
		since = rev
		for _, t := range touched {
			// A retirement leaves a tombstone (Deleted) for the cluster;
			// the job itself is still there, and retired.
			if t.Kind == kindJob && !t.Deleted {
				todo[t.Key] = true
			}
		}
	}
}

// reconcile retires a job that is over.
func (c *jobReconciler) reconcile(ctx context.Context, k store.Key) error {
	var state string
	j, err := c.s.updateJobSpec(ctx, k, func(j *job) (bool, error) {
		if j.rec.Retired {
			return false, nil
		}
		state = j.state()
		// A job cancelled before its cluster said anything of it may
		// never have reached it: it ends now, and the tombstone removes
		// whatever the agent made of it meanwhile.
		if !api.JobTerminal(state) && !(j.rec.Cancel && j.st.Cluster == nil) {
			return false, nil
		}
		now := time.Now().UTC()
		j.rec.Retired, j.rec.RetiredAt = true, &now
		return true, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if j.rec.Retired && state != "" {
		c.s.log.Info("job retired", "job", resourceID(k), "status", j.state())
	}
	return nil
}
