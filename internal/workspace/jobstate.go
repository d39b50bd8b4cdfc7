package workspace

import (
	"strings"
	"time"

	"outpost.dev/outpost/api"
)

// jobFacts is everything a job's state follows from: what its cluster last
// reported, how far its wrapper got, and what the workspace decided.
type jobFacts struct {
	Report *api.JobReport // nil until the cluster first reports the job
	Phase  string         // the wrapper's: "", Preparing, Running, Finalizing
	Cancel bool           // a user asked for the job to end
	// Retired: the workspace let go of the job (its sync target is none):
	// it ended, or was cancelled before its cluster reported it.
	Retired bool
}

// wrapperRank orders the phases the wrapper reports; they only go forward.
var wrapperRank = map[string]int{api.JobPreparing: 1, api.JobRunning: 2, api.JobFinalizing: 3}

// progressRank orders the states a job passes through on its way, so that
// the later of what the cluster and the wrapper say wins: the wrapper's
// "Running" may come before the cluster's report that the pods run.
var progressRank = map[string]int{api.JobNotStarted: 0, api.JobQueued: 1, api.JobPreparing: 2, api.JobRunning: 3, api.JobFinalizing: 4}

// jobState is the state of a job, and the message that goes with it.
//
//	no report            NotStarted
//	Queued               Queued (the message says what it waits for)
//	Starting             Preparing
//	Running              the wrapper's phase (Preparing until it says Running, then Finalizing)
//	Succeeded            Completed
//	Failed               Failed (reason and message)
//	Canceled             Canceled
//
// Before the end, the wrapper's phase moves the state forward when the
// cluster's report lags behind it, and a requested cancel makes it
// CancelRequested. A retired job that its cluster never reported ended
// (cancelled before it got there, or its end report was not heard) is
// Canceled.
func jobState(f jobFacts) (state, message string) {
	if r := f.Report; r != nil {
		switch r.Phase {
		case api.ClusterJobSucceeded:
			return api.JobCompleted, ""
		case api.ClusterJobFailed:
			return api.JobFailed, failureMessage(r)
		case api.ClusterJobCanceled:
			if f.Cancel {
				return api.JobCanceled, "Canceled by user"
			}
			return api.JobCanceled, failureMessage(r)
		}
	}
	if f.Retired {
		if f.Cancel {
			return api.JobCanceled, "Canceled by user"
		}
		return api.JobCanceled, "the workspace stopped following the job before its cluster reported its end"
	}
	if f.Cancel {
		return api.JobCancelRequested, "cancel requested: waiting for the cluster to end the job's pods"
	}
	state = api.JobNotStarted
	if r := f.Report; r != nil {
		switch r.Phase {
		case api.ClusterJobQueued:
			state, message = api.JobQueued, r.Message
		case api.ClusterJobStarting, api.ClusterJobRunning:
			state = api.JobPreparing
		}
	}
	if wrapperRank[f.Phase] > 0 && progressRank[f.Phase] > progressRank[state] {
		state, message = f.Phase, ""
	}
	return state, message
}

// failureMessage says why a job ended early, from its cluster's report.
func failureMessage(r *api.JobReport) string {
	switch {
	case r.Reason == "":
		return r.Message
	case r.Message == "" || strings.HasPrefix(r.Message, r.Reason):
		return r.Reason + strings.TrimPrefix(r.Message, r.Reason)
	}
	return r.Reason + ": " + r.Message
}

// jobTimes are a job's start and end: it started when its wrapper said it
// runs the command (else when its cluster said its pods started), and
// ended when its cluster reported the end (else when the workspace retired
// it).
func jobTimes(f jobFacts, runningAt, retiredAt *time.Time) (start, end *time.Time) {
	start = runningAt
	if start == nil && f.Report != nil {
		start = f.Report.StartTime
	}
	state, _ := jobState(f)
	if api.JobTerminal(state) {
		if f.Report != nil && f.Report.EndTime != nil {
			end = f.Report.EndTime
		} else {
			end = retiredAt
		}
	}
	return start, end
}
