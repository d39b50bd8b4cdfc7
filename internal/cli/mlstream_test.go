package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

func chunk(file string, off int64, data string) api.JobLogChunk {
	return api.JobLogChunk{File: file, Offset: off, Data: []byte(data)}
}

func TestLogPrinter(t *testing.T) {
	const std = "user_logs/std_log.txt"
	p0, p1 := "user_logs/std_log_process_0.txt", "user_logs/std_log_process_1.txt"
	cases := []struct {
		name      string
		processes int
		chunks    []api.JobLogChunk
		want      string
		from      string
	}{
		{"one file, no prefix, partial lines as they come", 1,
			[]api.JobLogChunk{chunk(std, 0, "epoch 1\nepo"), chunk(std, 11, "ch 2\n")},
			"Streaming user_logs/std_log.txt\n===============================\nepoch 1\nepoch 2\n", "user_logs/std_log.txt:16"},
		{"a retried chunk is printed once", 1,
			[]api.JobLogChunk{chunk(std, 0, "abc\n"), chunk(std, 0, "abc\n"), chunk(std, 2, "c\nd\n")},
			"Streaming user_logs/std_log.txt\n===============================\nabc\nd\n", "user_logs/std_log.txt:6"},
		{"ranks prefixed, whole lines only", 2,
			[]api.JobLogChunk{chunk(p0, 0, "a0\nb"), chunk(p1, 0, "a1\n"), chunk(p0, 4, "0\n")},
			"Streaming user_logs/std_log_process_0.txt\n=========================================\n[rank 0] a0\n" +
				"Streaming user_logs/std_log_process_1.txt\n=========================================\n[rank 1] a1\n[rank 0] b0\n",
			"user_logs/std_log_process_0.txt:6,user_logs/std_log_process_1.txt:3"},
		{"an unfinished last line is ended at the end", 2,
			[]api.JobLogChunk{chunk(p0, 0, "x\ny")},
			"Streaming user_logs/std_log_process_0.txt\n=========================================\n[rank 0] x\n[rank 0] y\n", ""},
		{"a second rank file turns prefixes on", 1,
			[]api.JobLogChunk{chunk(p0, 0, "a\n"), chunk(p1, 0, "b\n")},
			"Streaming user_logs/std_log_process_0.txt\n=========================================\na\n" +
				"Streaming user_logs/std_log_process_1.txt\n=========================================\n[rank 1] b\n", ""},
		{"a header starts its own line", 1,
			[]api.JobLogChunk{chunk(std, 0, "no newline"), chunk("user_logs/other.txt", 0, "x\n")},
			"Streaming user_logs/std_log.txt\n===============================\nno newline\n" +
				"Streaming user_logs/other.txt\n=============================\nx\n", ""},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		lp := newLogPrinter(&b, tc.processes)
		for _, c := range tc.chunks {
			if err := lp.write(c); err != nil {
				t.Fatal(err)
			}
		}
		from := lp.from()
		if err := lp.flush(); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, b.String(), tc.want)
		}
		if tc.from != "" && from != tc.from {
			t.Errorf("%s: from = %q, want %q", tc.name, from, tc.from)
		}
	}
}

func TestProcesses(t *testing.T) {
	cases := []struct {
		spec api.JobSpec
		want int
	}{
		{api.JobSpec{}, 1},
		{api.JobSpec{Resources: &api.JobResources{InstanceCount: 2}}, 2},
		{api.JobSpec{Distribution: &api.Distribution{Type: "PyTorch", ProcessCountPerInstance: 4}, Resources: &api.JobResources{InstanceCount: 2}}, 8},
		{api.JobSpec{Distribution: &api.Distribution{Type: "mpi", ProcessCountPerInstance: 1}}, 1},
		{api.JobSpec{Distribution: &api.Distribution{Type: "tensorflow", WorkerCount: 2, ParameterServerCount: 1}}, 3},
	}
	for _, tc := range cases {
		if got := processes(tc.spec); got != tc.want {
			t.Errorf("processes(%+v) = %d, want %d", tc.spec, got, tc.want)
		}
	}
}

// fakeLogs serves a job and its logs: each GET of the logs gets the next
// answer of the script (a status code other than 200 is an error answer).
type fakeLogs struct {
	t      *testing.T
	job    api.Job
	mu     sync.Mutex
	script []logAnswer
	froms  []string
}

type logAnswer struct {
	code int
	logs api.JobLogs
}

func (f *fakeLogs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/resourceGroups/rg/workspaces/ws/jobs/j1":
		if err := json.NewEncoder(w).Encode(f.job); err != nil {
			f.t.Error(err)
		}
	case r.URL.Path == "/resourceGroups/rg/workspaces/ws/jobs/j1/logs":
		f.mu.Lock()
		f.froms = append(f.froms, r.URL.Query().Get("from"))
		if len(f.script) == 0 {
			f.mu.Unlock()
			f.t.Error("more log requests than the script has answers")
			http.Error(w, "{}", http.StatusGone)
			return
		}
		a := f.script[0]
		f.script = f.script[1:]
		f.mu.Unlock()
		if a.code != 0 {
			w.WriteHeader(a.code)
			if _, err := w.Write([]byte(`{"code":"Unavailable","message":"try later"}`)); err != nil {
				f.t.Error(err)
			}
			return
		}
		if err := json.NewEncoder(w).Encode(a.logs); err != nil {
			f.t.Error(err)
		}
	default:
		http.NotFound(w, r)
	}
}

func streamAgainst(t *testing.T, f *fakeLogs) (string, string, error) {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	ws, err := client.New(client.Config{URL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = streamJob(context.Background(), ws, wsPath{rg: "rg", ws: "ws"}, "j1", &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestStreamJob(t *testing.T) {
	defer func(d time.Duration) { reconnectDelay = d }(reconnectDelay)
	reconnectDelay = time.Millisecond
	const std = "user_logs/std_log.txt"
	f := &fakeLogs{t: t, job: api.Job{JobSpec: api.JobSpec{Name: "j1"}, Services: map[string]api.JobService{"Studio": {Endpoint: "https://ws/jobs/j1"}}},
		script: []logAnswer{
			{logs: api.JobLogs{Status: api.JobQueued, StatusMessage: "waiting for available resources: needs 1 x (2 CPU, 4Gi)"}},
			{logs: api.JobLogs{Status: api.JobRunning, Chunks: []api.JobLogChunk{chunk(std, 0, "hello\n")}}},
			{code: http.StatusServiceUnavailable},
			{logs: api.JobLogs{Status: api.JobRunning, Chunks: []api.JobLogChunk{chunk(std, 6, "bye\n")}}},
			{logs: api.JobLogs{Status: api.JobCompleted, Done: true}},
		}}
	stdout, stderr, err := streamAgainst(t, f)
	if err != nil {
		t.Fatalf("stream of a Completed job: %v\nstderr:\n%s", err, stderr)
	}
	wantOut := "RunId: j1\nWeb View: https://ws/jobs/j1\nStreaming user_logs/std_log.txt\n===============================\nhello\nbye\n" +
		"\nExecution Summary\n=================\nRunId: j1\nWeb View: https://ws/jobs/j1\n"
	if stdout != wantOut {
		t.Errorf("stdout:\n%q\nwant\n%q", stdout, wantOut)
	}
	for _, w := range []string{"[Queued] waiting for available resources: needs 1 x (2 CPU, 4Gi)\n[Running]\n", "reconnecting", "reconnected", "[Completed]"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr:\n%s\nwant %q", stderr, w)
		}
	}
	if want := []string{"", "", std + ":6", std + ":6", std + ":10"}; strings.Join(f.froms, "|") != strings.Join(want, "|") {
		t.Errorf("from parameters %q, want %q", f.froms, want)
	}
}

func TestStreamJobFailedOrCanceled(t *testing.T) {
	for _, status := range []string{api.JobFailed, api.JobCanceled} {
		f := &fakeLogs{t: t, job: api.Job{JobSpec: api.JobSpec{Name: "j1"}},
			script: []logAnswer{{logs: api.JobLogs{Status: status, StatusMessage: "exit code 3: boom", Done: true}}}}
		_, _, err := streamAgainst(t, f)
		if err == nil || !strings.Contains(err.Error(), "exit code 3: boom") {
			t.Errorf("%s job: %v, want an error with its status message", status, err)
		}
	}
}

// A refusal (not found, not allowed) ends streaming at once: retrying
// would not change it.
func TestStreamJobStopsOnRefusal(t *testing.T) {
	f := &fakeLogs{t: t, job: api.Job{JobSpec: api.JobSpec{Name: "j1"}}, script: []logAnswer{{code: http.StatusForbidden}}}
	_, _, err := streamAgainst(t, f)
	var se *client.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("stream after a 403: %v", err)
	}
}

// Ctrl-C stops following and says that the job goes on.
func TestStreamJobInterrupted(t *testing.T) {
	polling := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/logs") {
			polling <- struct{}{}
			<-r.Context().Done()
			return
		}
		if err := json.NewEncoder(w).Encode(api.Job{JobSpec: api.JobSpec{Name: "j1"}}); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	ws, err := client.New(client.Config{URL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- streamJob(ctx, ws, wsPath{rg: "rg", ws: "ws"}, "j1", &stdout, &bytes.Buffer{}) }()
	<-polling
	cancel()
	err = <-done
	var stopped *interruptedError
	if !errors.As(err, &stopped) || !strings.Contains(err.Error(), "job j1 goes on") {
		t.Errorf("interrupted stream: %v, want it to say the job goes on", err)
	}
}
