package workspace

import (
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
)

func TestJobState(t *testing.T) {
	rep := func(phase, reason, msg string) *api.JobReport {
		return &api.JobReport{Phase: phase, Reason: reason, Message: msg}
	}
	for _, tc := range []struct {
		name      string
		f         jobFacts
		state, in string // in: a part of the message
	}{
		{"no report", jobFacts{}, api.JobNotStarted, ""},
		{"queued says why", jobFacts{Report: rep(api.ClusterJobQueued, "", "waiting for available resources: needs 1 x (2 CPU, 4Gi)")}, api.JobQueued, "needs 1 x (2 CPU, 4Gi)"},
		{"starting", jobFacts{Report: rep(api.ClusterJobStarting, "", "")}, api.JobPreparing, ""},
		{"running, wrapper silent", jobFacts{Report: rep(api.ClusterJobRunning, "", "")}, api.JobPreparing, ""},
		{"running, wrapper preparing", jobFacts{Report: rep(api.ClusterJobRunning, "", ""), Phase: api.JobPreparing}, api.JobPreparing, ""},
		{"running, wrapper running", jobFacts{Report: rep(api.ClusterJobRunning, "", ""), Phase: api.JobRunning}, api.JobRunning, ""},
		{"running, wrapper finalizing", jobFacts{Report: rep(api.ClusterJobRunning, "", ""), Phase: api.JobFinalizing}, api.JobFinalizing, ""},
		{"report lags the wrapper", jobFacts{Report: rep(api.ClusterJobQueued, "", "waiting"), Phase: api.JobRunning}, api.JobRunning, ""},
		{"no report yet, wrapper running", jobFacts{Phase: api.JobRunning}, api.JobRunning, ""},
		{"succeeded", jobFacts{Report: rep(api.ClusterJobSucceeded, "", ""), Phase: api.JobFinalizing}, api.JobCompleted, ""},
		{"failed with reason and message", jobFacts{Report: rep(api.ClusterJobFailed, "Error", "exit code 3: boom")}, api.JobFailed, "Error: exit code 3: boom"},
		{"oom", jobFacts{Report: rep(api.ClusterJobFailed, "OOMKilled", "")}, api.JobFailed, "OOMKilled"},
		{"timeout", jobFacts{Report: rep(api.ClusterJobFailed, "DeadlineExceeded", "timed out after limits.timeout=5 s")}, api.JobFailed, "DeadlineExceeded: timed out after limits.timeout=5 s"},
		{"failed stays failed when cancelled", jobFacts{Report: rep(api.ClusterJobFailed, "Error", "x"), Cancel: true}, api.JobFailed, "Error: x"},
		{"succeeded stays when cancelled", jobFacts{Report: rep(api.ClusterJobSucceeded, "", ""), Cancel: true, Retired: true}, api.JobCompleted, ""},
		{"cancel requested, not on the cluster yet", jobFacts{Cancel: true}, api.JobCancelRequested, "cancel requested"},
		{"cancel requested, running", jobFacts{Report: rep(api.ClusterJobRunning, "", ""), Phase: api.JobRunning, Cancel: true}, api.JobCancelRequested, ""},
		{"canceled by the cluster", jobFacts{Report: rep(api.ClusterJobCanceled, "", ""), Cancel: true}, api.JobCanceled, "Canceled by user"},
		{"cancelled before it reached the cluster", jobFacts{Cancel: true, Retired: true}, api.JobCanceled, "Canceled by user"},
		{"retired while the cluster said it runs", jobFacts{Report: rep(api.ClusterJobRunning, "", ""), Cancel: true, Retired: true}, api.JobCanceled, "Canceled by user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, msg := jobState(tc.f)
			if state != tc.state || !strings.Contains(msg, tc.in) {
				t.Fatalf("jobState(%+v) = %s %q, want %s with %q", tc.f, state, msg, tc.state, tc.in)
			}
		})
	}
}

func TestJobTimes(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	t1, t2, t3 := t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	running := &api.JobReport{Phase: api.ClusterJobRunning, StartTime: &t0}
	done := &api.JobReport{Phase: api.ClusterJobSucceeded, StartTime: &t0, EndTime: &t2}
	for _, tc := range []struct {
		name                 string
		f                    jobFacts
		runningAt, retiredAt *time.Time
		start, end           *time.Time
	}{
		{"not started", jobFacts{}, nil, nil, nil, nil},
		{"the wrapper's Running is the start", jobFacts{Report: running, Phase: api.JobRunning}, &t1, nil, &t1, nil},
		{"else the cluster's start", jobFacts{Report: running}, nil, nil, &t0, nil},
		{"ended: the cluster's end", jobFacts{Report: done, Phase: api.JobFinalizing}, &t1, nil, &t1, &t2},
		{"cancelled before dispatch: the retirement", jobFacts{Cancel: true, Retired: true}, nil, &t3, nil, &t3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, end := jobTimes(tc.f, tc.runningAt, tc.retiredAt)
			if !sameTime(start, tc.start) || !sameTime(end, tc.end) {
				t.Fatalf("times %v %v, want %v %v", start, end, tc.start, tc.end)
			}
		})
	}
}

func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

func TestFitInstanceType(t *testing.T) {
	facts := api.ClusterFacts{
		Nodes: []api.NodeFacts{
			{Name: "small", Ready: true, Labels: map[string]string{"pool": "cpu"}, Allocatable: map[string]string{"cpu": "2", "memory": "7680Mi"}},
			{Name: "gpu", Ready: true, Labels: map[string]string{"pool": "gpu"}, Allocatable: map[string]string{"cpu": "1500m", "memory": "4Gi", gpuResource: "1"}},
			{Name: "down", Ready: false, Labels: map[string]string{"pool": "cpu"}, Allocatable: map[string]string{"cpu": "64", "memory": "256Gi"}},
		},
		InstanceTypes: []api.InstanceType{
			{Name: api.DefaultInstanceType, BuiltIn: true, Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "100m", "memory": "2Gi"}, Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}},
			{Name: "big", Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "4", "memory": "8Gi"}, Limits: map[string]string{"cpu": "4", "memory": "8Gi"}}},
			{Name: "onegpu", NodeSelector: map[string]string{"pool": "gpu"}, Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "1", "memory": "2Gi"}, Limits: map[string]string{"cpu": "1", "memory": "2Gi", gpuResource: "1"}}},
			{Name: "twogpu", Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "1", "memory": "2Gi"}, Limits: map[string]string{"cpu": "1", "memory": "2Gi", gpuResource: "2"}}},
			{Name: "tpu", NodeSelector: map[string]string{"pool": "tpu", "zone": "a"}, Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "1", "memory": "1Gi"}}},
			// Limits may overcommit: only requests (and GPUs) must fit.
			{Name: "bursty", Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "1", "memory": "1Gi"}, Limits: map[string]string{"cpu": "32", "memory": "64Gi"}}},
		},
	}
	for _, tc := range []struct {
		name, it  string
		instances int
		want      string // "" fits
	}{
		{"default", api.DefaultInstanceType, 1, ""},
		{"a gang across nodes", api.DefaultInstanceType, 4, ""},
		{"a gang too big for every node together", api.DefaultInstanceType, 6, "a job of 6 instances of defaultinstancetype can never run on cluster c1: they are placed all at once, and its empty nodes hold at most 5 (small 3, gpu 2)"},
		{"gpu on the gpu pool", "onegpu", 1, ""},
		{"limits above a node", "bursty", 1, ""},
		{"unknown, with the list", "huge", 1, "instance type huge not found on cluster c1; instance types: big (cpu 4, memory 8Gi), bursty (cpu 1, memory 1Gi), defaultinstancetype (cpu 100m, memory 2Gi), onegpu (cpu 1, memory 2Gi, nvidia.com/gpu 1)"},
		{"too big, with the numbers", "big", 1, "instance type big can never run on cluster c1: it requests 4 CPU, 8Gi and the largest node has 2 CPU, 7.5Gi"},
		{"more GPUs than any node", "twogpu", 1, "it requests 1 CPU, 2Gi, 2 GPU and the largest node has 2 CPU, 7.5Gi, 0 GPU"},
		{"no node selected", "tpu", 1, "no Ready node matches its nodeSelector {pool: tpu, zone: a}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fitInstanceType("c1", facts, tc.it, tc.instances)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%s: %v, want it to fit", tc.it, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%s: %v, want %q", tc.it, err, tc.want)
			}
		})
	}
	if err := fitInstanceType("c1", api.ClusterFacts{InstanceTypes: facts.InstanceTypes}, "big", 1); err == nil || !strings.Contains(err.Error(), "reported no nodes") {
		t.Fatalf("no nodes reported: %v", err)
	}
}

func TestCheckLogFile(t *testing.T) {
	for _, p := range []string{"user_logs/std_log.txt", "user_logs/std_log_process_3.txt", "system_logs/lifecycler/execution-wrapper.txt"} {
		if err := checkLogFile(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"std_log.txt", "user_logs/x.log", "outputs/model.txt", "user_logs/../x.txt", "user_logs/.hidden.txt", "user_logs/a b.txt", "user_logs/a/b/c/d.txt", "user_logs/"} {
		if err := checkLogFile(p); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
}
