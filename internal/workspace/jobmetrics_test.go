package workspace

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
)

// metric, param and tag are records as the wrapper sends them.
func metric(key string, value any, step int64) api.MetricRecord {
	v, err := json.Marshal(value)
	if err != nil {
		panic(err)
	}
	return api.MetricRecord{Type: api.RecordMetric, Key: key, Value: v, Step: step, Timestamp: 1000 + step}
}

func textRecord(typ, key, value string, ts int64) api.MetricRecord {
	v, err := json.Marshal(value)
	if err != nil {
		panic(err)
	}
	return api.MetricRecord{Type: typ, Key: key, Value: v, Timestamp: ts}
}

// postMetrics sends a batch with the job's token and checks the status;
// it returns the answer's count.
func postMetrics(t *testing.T, tr *training, tok, job string, body any, want int) (int64, string) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	code, answer := rawBytes(t, tr.c, "POST", jobRun(job)+"/metrics", tok, data)
	if code != want {
		t.Fatalf("POST metrics %s: %d %s, want %d", data[:min(len(data), 200)], code, answer, want)
	}
	var res struct {
		Count   int64  `json:"count"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(answer, &res); err != nil {
		t.Fatalf("answer %s: %v", answer, err)
	}
	return res.Count, res.Message
}

func getMetrics(t *testing.T, tr *training, job string) api.JobMetrics {
	t.Helper()
	var m api.JobMetrics
	if err := tr.c.Do(context.Background(), "GET", wsPath+"/jobs/"+job+"/metrics", nil, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestJobMetrics(t *testing.T) {
	tr := newTraining(t, 30*time.Second)
	for _, name := range []string{"trainer", "other"} {
		if _, err := createJob(t, tr.c, name, helloJob()); err != nil {
			t.Fatal(err)
		}
	}
	d := tr.sync()
	tok, otherTok := desiredJob(d, "trainer").Token, desiredJob(d, "other").Token

	// Nothing logged yet: empty, not missing.
	if m := getMetrics(t, tr, "trainer"); len(m.Params)+len(m.Tags)+len(m.Metrics) != 0 || m.Metrics == nil || m.Params == nil {
		t.Fatalf("before any: %+v", m)
	}

	first := []api.MetricRecord{metric("loss", 0.5, 0), textRecord(api.RecordParam, "lr", "0.01", 5), metric("loss", 0.25, 1)}
	if n, _ := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Records: first}, http.StatusOK); n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
	// A retry of what is there adds nothing; one that goes past it adds
	// only what is new.
	if n, _ := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Records: first}, http.StatusOK); n != 3 {
		t.Fatalf("retry: count %d, want 3", n)
	}
	more := []api.MetricRecord{metric("loss", 0.25, 1), metric("loss", "NaN", 2), textRecord(api.RecordTag, "stage", "dev", 10)}
	if n, _ := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Seq: 2, Records: more}, http.StatusOK); n != 5 {
		t.Fatalf("overlapping batch: count %d, want 5", n)
	}
	// A gap is refused with the count to go on from.
	if n, msg := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Seq: 9, Records: first}, http.StatusConflict); n != 5 || !strings.Contains(msg, "send from 5") {
		t.Fatalf("gap: count %d %q, want 5", n, msg)
	}
	// An empty batch asks the count.
	if n, _ := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Seq: 5}, http.StatusOK); n != 5 {
		t.Fatalf("empty batch: count %d, want 5", n)
	}

	// Another process: its series carry ranks; the lowest rank's param
	// wins; the latest tag wins.
	rank1 := []api.MetricRecord{metric("loss", 1, 0), textRecord(api.RecordParam, "lr", "0.02", 1), textRecord(api.RecordTag, "stage", "prod", 20),
		textRecord(api.RecordTag, "host", "b", 1), metric("acc", math.MaxFloat64, 0)}
	rank1[4].Value = json.RawMessage(`1.7976931348623157e308`)
	postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_1", Records: rank1}, http.StatusOK)
	m := getMetrics(t, tr, "trainer")
	if fmt.Sprint(m.Params) != "map[lr:0.01]" || fmt.Sprint(m.Tags) != "map[host:b stage:prod]" {
		t.Fatalf("params %v, tags %v", m.Params, m.Tags)
	}
	var got []string
	for _, s := range m.Metrics {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%d:%v@%d", p.Step, float64(p.Value), p.Timestamp))
		}
		got = append(got, fmt.Sprintf("%s/%d %s", s.Key, *s.Rank, strings.Join(pts, " ")))
	}
	want := []string{"acc/1 0:1.7976931348623157e+308@1000", "loss/0 0:0.5@1000 1:0.25@1001 2:NaN@1002", "loss/1 0:1@1000"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	code, body := rawBytes(t, tr.c, "GET", wsPath+"/jobs/trainer/metrics", tr.c.Config().Token, nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"value":"NaN"`)) {
		t.Fatalf("NaN in JSON: %d %s", code, body)
	}

	// One process alone: no ranks.
	postMetrics(t, tr, otherTok, "other", api.MetricsAppend{Source: "rank_3", Records: first[:1]}, http.StatusOK)
	if m := getMetrics(t, tr, "other"); len(m.Metrics) != 1 || m.Metrics[0].Rank != nil {
		t.Fatalf("one process: %+v", m)
	}

	// Bad input, each refused with what is wrong.
	for _, c := range []struct {
		body any
		want string
	}{
		{api.MetricsAppend{Source: "rank_x", Records: first}, "want rank_N"},
		{api.MetricsAppend{Source: "../rank_0", Records: first}, "want rank_N"},
		{api.MetricsAppend{Source: "rank_0", Seq: -1}, "seq -1"},
		{api.MetricsAppend{Source: "rank_0", Seq: 5, Records: []api.MetricRecord{metric("ok", 1, 0), metric("bad", "1", 0)}}, `record 1: metric "bad"`},
		{api.MetricsAppend{Source: "rank_0", Seq: 5, Records: []api.MetricRecord{metric("a|b", 1, 0)}}, `'|' is not allowed`},
		{api.MetricsAppend{Source: "rank_0", Seq: 5, Records: []api.MetricRecord{textRecord(api.RecordParam, "p", strings.Repeat("x", 6001), 1)}}, "at most 6000"},
		{map[string]any{"source": "rank_0", "seq": 5, "record": []any{}}, "unknown field"},
	} {
		if _, msg := postMetrics(t, tr, tok, "trainer", c.body, http.StatusBadRequest); !strings.Contains(msg, c.want) {
			t.Errorf("%+v: %q, want %q", c.body, msg, c.want)
		}
	}
	// Other credentials: another job's is refused, as is the job's own on
	// the admin route.
	if code, _ := rawBytes(t, tr.c, "POST", jobRun("trainer")+"/metrics", otherTok, []byte(`{"source":"rank_0","seq":5,"records":[]}`)); code != http.StatusUnauthorized {
		t.Fatalf("another job's token: %d", code)
	}
	if code, _ := rawBytes(t, tr.c, "GET", wsPath+"/jobs/trainer/metrics", tok, nil); code != http.StatusUnauthorized {
		t.Fatalf("the job's token on the admin route: %d", code)
	}
	if err := tr.c.Do(context.Background(), "GET", wsPath+"/jobs/nosuch/metrics", nil, nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("unknown job: %v", err)
	}

	// A torn write (a crash mid-append) is left out of reads and dropped
	// by the next append.
	file := filepath.Join(tr.dir, "jobmetrics", "rg", "ws", "trainer", "rank_0.jsonl")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":5,"type":"metr`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if m := getMetrics(t, tr, "trainer"); len(m.Metrics[1].Points) != 3 {
		t.Fatalf("with a torn line: %+v", m.Metrics[1])
	}
	if n, _ := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Seq: 5, Records: []api.MetricRecord{metric("loss", 0.125, 3)}}, http.StatusOK); n != 6 {
		t.Fatalf("after a torn line: count %d", n)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(lines) != 6 || !strings.HasPrefix(lines[5], `{"seq":5,"type":"metric","key":"loss","value":0.125,"step":3,`) {
		t.Fatalf("file after the torn line:\n%s", data)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}

	// Ended: nothing more is taken, and what is there stays readable.
	tr.report(api.JobReport{ID: wsPath + "/jobs/trainer", Phase: api.ClusterJobSucceeded})
	waitJob(t, tr.c, "trainer", api.JobCompleted, "")
	if _, msg := postMetrics(t, tr, tok, "trainer", api.MetricsAppend{Source: "rank_0", Seq: 6, Records: first}, http.StatusConflict); !strings.Contains(msg, "Completed") {
		t.Fatalf("after the end: %q", msg)
	}
	if m := getMetrics(t, tr, "trainer"); len(m.Metrics) != 3 {
		t.Fatalf("after the end: %+v", m)
	}
}

func TestJobMetricsBounds(t *testing.T) {
	defer func(r, b int64, s int) { maxMetricRecords, maxMetricBytes, maxMetricSources = r, b, s }(maxMetricRecords, maxMetricBytes, maxMetricSources)
	maxMetricRecords, maxMetricSources = 5, 2
	tr := newTraining(t, 30*time.Second)
	if _, err := createJob(t, tr.c, "big", helloJob()); err != nil {
		t.Fatal(err)
	}
	tok := desiredJob(tr.sync(), "big").Token
	three := []api.MetricRecord{metric("a", 1, 0), metric("a", 2, 1), metric("a", 3, 2)}
	postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_0", Records: three}, http.StatusOK)
	// Over the job's records: refused whole, with the numbers.
	if _, msg := postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_1", Records: three}, http.StatusRequestEntityTooLarge); !strings.Contains(msg, "holds 3 metric values, params and tags, and 3 more would pass 5") {
		t.Fatalf("over the records: %q", msg)
	}
	postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_1", Records: three[:2]}, http.StatusOK)
	// A retry at the bound is still answered.
	if n, _ := postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_1", Records: three[:2]}, http.StatusOK); n != 2 {
		t.Fatalf("retry at the bound: %d", n)
	}
	maxMetricRecords = 100
	if _, msg := postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_2", Records: three}, http.StatusRequestEntityTooLarge); !strings.Contains(msg, "metrics of 2 processes") {
		t.Fatalf("over the sources: %q", msg)
	}
	maxMetricBytes = 700
	long := textRecord(api.RecordTag, "t", strings.Repeat("x", 300), 1)
	postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_1", Seq: 2, Records: []api.MetricRecord{long}}, http.StatusOK)
	if _, msg := postMetrics(t, tr, tok, "big", api.MetricsAppend{Source: "rank_1", Seq: 3, Records: []api.MetricRecord{long}}, http.StatusRequestEntityTooLarge); !strings.Contains(msg, "bytes of metrics") {
		t.Fatalf("over the bytes: %q", msg)
	}
	if m := getMetrics(t, tr, "big"); len(m.Metrics) != 2 || len(m.Metrics[0].Points) != 3 || len(m.Metrics[1].Points) != 2 || m.Tags["t"] == "" {
		t.Fatalf("kept: %+v", m)
	}
}

func TestLastLine(t *testing.T) {
	long := strings.Repeat("y", 40<<10)
	for _, c := range []struct {
		data, line string
		end        int64
	}{
		{"", "", 0},
		{"torn", "", 0},
		{"a\n", "a", 2},
		{"a\nb\n", "b", 4},
		{"a\nb\ntorn", "b", 4},
		{"a\n" + long + "\n", long, int64(len(long)) + 3},
		{long + "\n" + long + "\ntorn", long, 2*int64(len(long)) + 2},
	} {
		line, end, err := lastLine(strings.NewReader(c.data), int64(len(c.data)))
		if err != nil || string(line) != c.line || end != c.end {
			t.Errorf("%.20q: %.20q %d %v, want %.20q %d", c.data, line, end, err, c.line, c.end)
		}
	}
}
