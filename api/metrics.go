package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Job metrics: what a job's processes log with mlflow (Outpost's stand-in
// for it, internal/jobmetrics). Each process's calls become records, which
// the job's wrapper sends to the job-run API and users read back:
//
//	POST /jobrun/v1/resourceGroups/{rg}/workspaces/{ws}/jobs/{name}/metrics  MetricsAppend -> MetricsAppendResult
//	GET  /resourceGroups/{rg}/workspaces/{ws}/jobs/{name}/metrics            JobMetrics

// Kinds of MetricRecord.
const (
	RecordMetric = "metric"
	RecordParam  = "param"
	RecordTag    = "tag"
)

// MetricRecord is one value a process logged: a metric's value at a step,
// a param or a tag. It is also the line the stand-in mlflow writes.
type MetricRecord struct {
	Type string `json:"type"` // metric, param or tag
	Key  string `json:"key"`
	// Value is a metric's number (a JSON number, or "NaN", "Infinity",
	// "-Infinity", which JSON has no numbers for) or a param's or tag's
	// string.
	Value     json.RawMessage `json:"value"`
	Step      int64           `json:"step,omitempty"` // metrics only
	Timestamp int64           `json:"timestamp"`      // milliseconds since the Unix epoch
}

// MetricsAppend adds records of one process of a job (Source, "rank_N")
// to the workspace's. Seq is the index among that process's records of
// Records[0]: a batch that starts before the end of what the workspace
// holds is a retry, whose records already there are passed over.
type MetricsAppend struct {
	Source  string         `json:"source"`
	Seq     int64          `json:"seq"`
	Records []MetricRecord `json:"records"`
}

// MetricsAppendResult is how many records of the source the workspace
// holds. A batch that would leave a gap is refused (409) with the same
// field, count, for the sender to go on from.
type MetricsAppendResult struct {
	Count int64 `json:"count"`
}

// JobMetrics is what a job's processes logged: params (the first value
// logged of each, the lowest rank's when several processes log one), tags
// (the last value set) and every metric's values in the order logged.
type JobMetrics struct {
	Params  map[string]string `json:"params"`
	Tags    map[string]string `json:"tags"`
	Metrics []MetricSeries    `json:"metrics"`
}

// MetricSeries is the values of one metric of one process. Rank is set
// when more than one process of the job logged something.
type MetricSeries struct {
	Key    string        `json:"key"`
	Rank   *int          `json:"rank,omitempty"`
	Points []MetricPoint `json:"points"`
}

// MetricPoint is one value of a metric.
type MetricPoint struct {
	Step      int64       `json:"step"`
	Value     MetricValue `json:"value"`
	Timestamp int64       `json:"timestamp"` // milliseconds since the Unix epoch
}

// MetricValue is a metric's value: a float64 that MLflow allows to be NaN
// or infinite. JSON has no numbers for those; they travel as the strings
// "NaN", "Infinity" and "-Infinity", as protobuf's JSON (and so MLflow's
// REST API) writes them.
type MetricValue float64

func (v MetricValue) MarshalJSON() ([]byte, error) {
	f := float64(v)
	switch {
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	case math.IsInf(f, 1):
		return []byte(`"Infinity"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Infinity"`), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func (v *MetricValue) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		switch s {
		case "NaN":
			*v = MetricValue(math.NaN())
		case "Infinity":
			*v = MetricValue(math.Inf(1))
		case "-Infinity":
			*v = MetricValue(math.Inf(-1))
		default:
			return fmt.Errorf("metric value %q: want a number, \"NaN\", \"Infinity\" or \"-Infinity\"", s)
		}
		return nil
	}
	var f float64
	// null would decode as no change: it is no number either.
	if err := json.Unmarshal(b, &f); err != nil || string(b) == "null" {
		return fmt.Errorf("metric value %s: want a number, \"NaN\", \"Infinity\" or \"-Infinity\"", b)
	}
	*v = MetricValue(f)
	return nil
}
