package jobs

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

// TestJobMetrics runs training scripts that log with mlflow, as Azure ML
// scripts do, unchanged: the host has no mlflow, so they get Outpost's
// stand-in, and `outpost ml job metrics` shows what they logged, by rank
// when several processes (or MPI ranks on several instances) log.
func TestJobMetrics(t *testing.T) {
	f := setup(t)
	run := func(name string, test func(t *testing.T)) { f.subtest(t, name, test) }
	curve := filepath.Join(f.root, "examples/jobs/mlflow-metrics/job.yml")

	run("the scikit-learn example logs its params and accuracy", func(t *testing.T) {
		name := f.streamed(f.mustML("job", "create", "-f", filepath.Join(f.root, "examples/jobs/sklearn-iris/job.yml"), "--stream"))
		m := f.metrics(name)
		if fmt.Sprint(m.Params) != "map[C:1.0 max_iter:200]" {
			t.Errorf("params %v", m.Params)
		}
		if got := seriesOf(m); !slices.Equal(got, []string{"accuracy 1 points", "training_rows 1 points"}) {
			t.Errorf("series %v", got)
		}
		if v := float64(m.Metrics[0].Points[0].Value); v < 0.8 || v > 1 {
			t.Errorf("accuracy %v", v)
		}
		table := f.mustML("job", "metrics", "-n", name)
		for _, want := range []string{"KIND", "metric", "accuracy", "training_rows", "105", "param", "max_iter"} {
			if !strings.Contains(table, want) {
				t.Errorf("table lacks %q:\n%s", want, table)
			}
		}
		if strings.Contains(table, "RANK") {
			t.Errorf("a RANK column for one process:\n%s", table)
		}
	})

	run("a training curve, and its logged model registered from runs:/", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", curve, "--stream")
		name := f.streamed(out)
		if !strings.Contains(out, "model logged: runs:/"+name+"/model") {
			t.Fatalf("stream:\n%s", out)
		}
		m := f.metrics(name)
		if got := seriesOf(m); !slices.Equal(got, []string{"train_loss 20 points", "val_accuracy 20 points"}) {
			t.Fatalf("series %v", got)
		}
		for i, p := range m.Metrics[1].Points {
			if p.Step != int64(i) || p.Timestamp <= 0 {
				t.Fatalf("val_accuracy point %d: %+v", i, p)
			}
		}
		if fmt.Sprint(m.Params) != "map[epochs:20 lr:0.05 model:SGDClassifier]" || m.Tags["data"] != "iris" {
			t.Errorf("params %v, tags %v", m.Params, m.Tags)
		}
		tsv := f.mustML("job", "metrics", "-n", name, "-o", "tsv")
		if !strings.Contains(tsv, "metric\tval_accuracy\t\t") || !strings.Contains(tsv, "\t19\t20\n") || !strings.Contains(tsv, "param\tlr\t\t0.05\t\t\n") {
			t.Errorf("tsv:\n%s", tsv)
		}
		if got := strings.TrimSpace(f.mustML("job", "metrics", "-n", name, "--query", "length(metrics[?key=='train_loss'].points[])", "-o", "tsv")); got != "20" {
			t.Errorf("--query: %q", got)
		}
		// log_model wrote an MLflow model into the job's artifacts: it
		// registers as an mlflow_model from runs:/, and its pickle loads.
		f.mustML("model", "create", "--name", "iris-sgd", "--version", "1", "--type", "mlflow_model", "--path", "runs:/"+name+"/model")
		dir := t.TempDir()
		f.mustML("job", "download", "-n", name, "--download-path", dir)
		model := filepath.Join(dir, "artifacts", "outputs", "model")
		for _, file := range []string{"MLmodel", "model.pkl", "requirements.txt"} {
			if _, err := os.Stat(filepath.Join(model, file)); err != nil {
				t.Errorf("the logged model: %v", err)
			}
		}
		predict := exec.Command("/usr/bin/python3", "-c", "import pickle,sys; m=pickle.load(open(sys.argv[1],'rb')); print(m.predict([[5.1,3.5,1.4,0.2]]))", filepath.Join(model, "model.pkl"))
		if got, err := predict.CombinedOutput(); err != nil || strings.TrimSpace(string(got)) != "[0]" {
			t.Errorf("the logged model does not predict: %v %s", err, got)
		}
	})

	run("two processes of an instance log by rank", func(t *testing.T) {
		name := f.streamed(f.mustML("job", "create", "-f", curve, "--set", "inputs.epochs=4",
			"--set", "distribution.type=pytorch", "--set", "distribution.process_count_per_instance=2", "--stream"))
		m := f.metrics(name)
		want := []string{"train_loss rank 0 4 points", "train_loss rank 1 4 points", "val_accuracy rank 0 4 points", "val_accuracy rank 1 4 points"}
		if got := seriesOf(m); !slices.Equal(got, want) {
			t.Errorf("series %v, want %v", got, want)
		}
		table := f.mustML("job", "metrics", "-n", name)
		if !strings.Contains(table, "RANK") {
			t.Errorf("no RANK column:\n%s", table)
		}
		t.Logf("outpost ml job metrics -n %s:\n%s", name, table)
	})

	run("MPI ranks on two instances each ship their own", func(t *testing.T) {
		name := f.streamed(f.mustML("job", "create", "-f", curve, "--set", "inputs.epochs=3", "--set", "resources.instance_count=2",
			"--set", "distribution.type=mpi", "--set", "distribution.process_count_per_instance=1", "--stream"))
		want := []string{"train_loss rank 0 3 points", "train_loss rank 1 3 points", "val_accuracy rank 0 3 points", "val_accuracy rank 1 3 points"}
		if got := seriesOf(f.metrics(name)); !slices.Equal(got, want) {
			t.Errorf("series %v, want %v", got, want)
		}
	})
}

// streamed is the job's name in the output of create --stream, which must
// have ended well.
func (f *fixture) streamed(out string) string {
	f.T.Helper()
	if !strings.Contains(out, "Execution Summary") {
		f.T.Fatalf("stream:\n%s", out)
	}
	name := strings.TrimSpace(strings.TrimPrefix(strings.Split(out, "\n")[0], "RunId: "))
	if got := strings.TrimSpace(f.mustML("job", "show", "-n", name, "--query", "status", "-o", "tsv")); got != api.JobCompleted {
		f.T.Fatalf("job %s: %s\n%s", name, got, out)
	}
	return name
}

func (f *fixture) metrics(name string) api.JobMetrics {
	f.T.Helper()
	var m api.JobMetrics
	out := f.mustML("job", "metrics", "-n", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		f.T.Fatalf("%v:\n%s", err, out)
	}
	return m
}

// seriesOf sums up a job's metrics: "key [rank N] K points".
func seriesOf(m api.JobMetrics) []string {
	var out []string
	for _, s := range m.Metrics {
		rank := ""
		if s.Rank != nil {
			rank = fmt.Sprintf(" rank %d", *s.Rank)
		}
		out = append(out, fmt.Sprintf("%s%s %d points", s.Key, rank, len(s.Points)))
	}
	return out
}
