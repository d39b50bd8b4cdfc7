package jobrunner

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobmetrics"
)

// warnings collects what a shipper says.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) warn(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, fmt.Sprintf(format, args...))
}

func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

func newTestMetricShipper(t *testing.T, w *fakeWorkspace, dir string, warn *warnings, batch int) *metricShipper {
	t.Helper()
	c, err := httpClient([]byte(w.caPEM), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return startMetricShipper(&jobAPI{base: w.base, token: w.token, http: c}, dir, warn.warn, batch)
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func metricLine(key string, value float64, step int) string {
	return fmt.Sprintf(`{"type":"metric","key":%q,"value":%v,"step":%d,"timestamp":1}`+"\n", key, value, step)
}

func keysAre(w *fakeWorkspace, source string, want ...string) func() bool {
	return func() bool { return slices.Equal(w.metricKeys(source), want) }
}

// TestMetricShipper ships complete lines as they come, once each: a lost
// answer is retried without doubling, a line is sent only once whole,
// lines that are no record (or too long to be one) are passed over with a
// word, and a workspace that lost records gets them again.
func TestMetricShipper(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newFakeWorkspace(t, api.JobRun{})
	w.loseMetricsAnswer = true
	rank0 := filepath.Join(dir, "rank_0.jsonl")
	appendFile(t, rank0, metricLine("a", 1, 0)+metricLine("b", 2, 0)+"garbage\n"+`{"type":"metric","key":"c"`)
	appendFile(t, filepath.Join(dir, "notes.txt"), "not metrics\n")
	var warn warnings
	s := newTestMetricShipper(t, w, dir, &warn, 300)

	waitFor(t, "a and b", keysAre(w, "rank_0", "metric:a=1@0", "metric:b=2@0"))
	appendFile(t, rank0, `,"value":3,"step":1,"timestamp":1}`+"\n"+strings.Repeat("x", 700)+"\n"+metricLine("d", 4, 2))
	waitFor(t, "c and d", keysAre(w, "rank_0", "metric:a=1@0", "metric:b=2@0", "metric:c=3@1", "metric:d=4@2"))

	// The workspace loses all but one record: the shipper sends them again.
	w.mu.Lock()
	w.metrics["rank_0"] = w.metrics["rank_0"][:1]
	w.mu.Unlock()
	appendFile(t, rank0, metricLine("e", 5, 3))
	appendFile(t, filepath.Join(dir, "rank_1.jsonl"), `{"type":"param","key":"lr","value":"0.1","timestamp":1}`+"\n")
	waitFor(t, "e, after the loss", keysAre(w, "rank_0", "metric:a=1@0", "metric:b=2@0", "metric:c=3@1", "metric:d=4@2", "metric:e=5@3"))
	if err := s.close(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := w.metricKeys("rank_1"); !slices.Equal(got, []string{`param:lr="0.1"@0`}) {
		t.Errorf("rank_1: %v", got)
	}
	// Every batch the workspace took followed the one before, but after
	// the loss.
	w.mu.Lock()
	next := map[string]int64{}
	for _, p := range w.metricPosts {
		if p.source == "rank_0" && p.seq != next[p.source] && p.seq != 1 {
			t.Errorf("a batch of rank_0 from %d after one that ended at %d", p.seq, next[p.source])
		}
		if p.status/100 == 2 {
			next[p.source] = p.seq + int64(p.n)
		}
	}
	w.mu.Unlock()
	said := warn.String()
	for _, want := range []string{
		"metrics of rank_0, line 3: not a record",
		"metrics of rank_0, line 5: a line of more than 300 bytes: passed over",
		"notes.txt is not a process's metrics file (rank_N.jsonl): not sent",
	} {
		if !strings.Contains(said, want) {
			t.Errorf("warnings lack %q:\n%s", want, said)
		}
	}
	if strings.Count(said, "notes.txt") != 1 {
		t.Errorf("notes.txt named more than once:\n%s", said)
	}
}

// TestMetricShipperEnds: a refusal stops a file's shipping with a word,
// not the job; a workspace away past the deadline is an error; an
// unfinished last line is said, not sent.
func TestMetricShipperEnds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newFakeWorkspace(t, api.JobRun{})
	w.metricsRefusal = http.StatusRequestEntityTooLarge
	appendFile(t, filepath.Join(dir, "rank_0.jsonl"), metricLine("a", 1, 0))
	var warn warnings
	s := newTestMetricShipper(t, w, dir, &warn, metricBatch)
	waitFor(t, "the refusal", func() bool { return strings.Contains(warn.String(), "what it logs from now on is not sent") })
	appendFile(t, filepath.Join(dir, "rank_0.jsonl"), metricLine("b", 1, 0)+`{"type":"metric"`)
	if err := s.close(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("a refusal failed the close: %v", err)
	}
	w.mu.Lock()
	posts := len(w.metricPosts)
	w.mu.Unlock()
	if posts != 1 {
		t.Errorf("%d posts after a refusal, want 1", posts)
	}

	dir = t.TempDir()
	w.mu.Lock()
	w.metricsRefusal, w.metricsDown = 0, true
	w.mu.Unlock()
	appendFile(t, filepath.Join(dir, "rank_2.jsonl"), metricLine("a", 1, 0)+`{"type":"metric"`)
	warn = warnings{}
	s = newTestMetricShipper(t, w, dir, &warn, metricBatch)
	err := s.close(time.Now().Add(300 * time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "sending the metrics of rank_2") || !strings.Contains(err.Error(), "gave up with 1 records unsent") {
		t.Errorf("close while the workspace is away: %v", err)
	}
	if !strings.Contains(warn.String(), "metrics of rank_2: the file ends in the middle of a line") {
		t.Errorf("warnings:\n%s", warn.String())
	}
}

// TestRunShipsMetrics runs a job whose processes log with mlflow: the
// stand-in is on their PYTHONPATH, each process has its file, what they
// log reaches the workspace while they run and all of it before the end,
// and a logged model is among the uploaded artifacts.
func TestRunShipsMetrics(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Inputs, run.Outputs = nil, nil
	run.Command = `python3 train.py "$AZUREML_PROCESS_NAME"`
	w := newFakeWorkspace(t, run)
	flag := filepath.Join(t.TempDir(), "go-on")
	w.put(ds, "LocalUpload/abc/src/train.py", fmt.Sprintf(`import os, sys, time
import mlflow, mlflow.sklearn
rank = int(os.environ["RANK"])
print("mlflow", os.path.dirname(mlflow.__file__))
print("file", os.environ["OUTPOST_METRICS_FILE"])
print("pythonpath", os.environ["PYTHONPATH"])
with mlflow.start_run() as run:
    mlflow.log_param("lr", 0.1)
    mlflow.log_metric("loss", 1.0 + rank, step=0)
    # Go on once the test has seen the first value in the workspace.
    while not os.path.exists(%q):
        time.sleep(0.01)
    mlflow.log_metrics({"loss": 0.5, "acc": 0.9}, step=1)
    mlflow.set_tag("run", run.info.run_id)
    if rank == 0:
        mlflow.sklearn.log_model({"weights": [1, 2]}, "model")
`, flag), 0o644)
	done := make(chan jobResult, 1)
	go func() {
		done <- runJob(t, w, runOptions{env: map[string]string{
			EnvProcessesPerInstance: "2", EnvFramework: "pytorch", EnvHosts: "host-0",
		}})
	}()
	waitFor(t, "the first values while the job runs", func() bool {
		return len(w.metricKeys("rank_0")) >= 2 && len(w.metricKeys("rank_1")) >= 2
	})
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.code != 0 {
		t.Fatalf("exit code %d\nstderr:\n%s\nlog 0:\n%s\nlog 1:\n%s", res.code, res.stderr, w.log("user_logs/std_log_process_0.txt"), w.log("user_logs/std_log_process_1.txt"))
	}
	for rank, source := range []string{"rank_0", "rank_1"} {
		want := []string{`param:lr="0.1"@0`, fmt.Sprintf("metric:loss=%d@0", rank+1), "metric:loss=0.5@1", "metric:acc=0.9@1", `tag:run="job_1"@0`}
		if got := w.metricKeys(source); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", source, got, want)
		}
		log := w.log(fmt.Sprintf("user_logs/std_log_process_%d.txt", rank))
		// The stand-in comes last on PYTHONPATH, after what the pod has.
		for _, line := range []string{
			"mlflow " + filepath.Join(res.root, dirPylib, "mlflow"),
			"file " + filepath.Join(res.root, dirMetrics, source+".jsonl"),
			filepath.Join(res.root, dirPylib),
		} {
			if !strings.Contains(log, line+"\n") {
				t.Errorf("rank %d's log lacks %q:\n%s", rank, line, log)
			}
		}
	}
	if mlmodel, ok := w.get(ds, "ExperimentRun/dcid.job_1/outputs/model/MLmodel"); !ok || !strings.Contains(mlmodel, "loader_module") {
		t.Errorf("the logged model's MLmodel was not uploaded: %q", mlmodel)
	}
}

func TestSetMetricsEnv(t *testing.T) {
	t.Parallel()
	e := &envList{vals: map[string]string{}}
	e.set("PYTHONPATH", "/mine")
	setMetricsEnv(e, "/azureml", 3)
	want := []string{"PYTHONPATH=/mine:/azureml/pylib", jobmetrics.EnvDir + "=/azureml/metrics", jobmetrics.EnvFile + "=/azureml/metrics/rank_3.jsonl",
		jobmetrics.EnvLimit + "=100000", jobmetrics.EnvArtifacts + "=/azureml/wd/outputs"}
	if got := e.list(); !slices.Equal(got, want) {
		t.Errorf("environment %q, want %q", got, want)
	}
}
