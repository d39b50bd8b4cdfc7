package cli

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/output"
)

// `outpost ml job metrics`: what a job logged with mlflow. az has no such
// command (the Studio and MLflow's client show a job's metrics); it is
// Outpost's, shaped as `show` is.

// metricRow is a line of the summary: a metric's latest value (MLflow's:
// the highest step's, then the latest), a param or a tag.
type metricRow struct {
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	Rank   string `json:"rank"` // "" when one process logged
	Value  string `json:"value"`
	Step   string `json:"step"`
	Points string `json:"points"`
}

func metricRows(m api.JobMetrics) []metricRow {
	var rows []metricRow
	for _, s := range m.Metrics {
		last, ok := latestPoint(s.Points)
		if !ok {
			continue
		}
		rank := ""
		if s.Rank != nil {
			rank = strconv.Itoa(*s.Rank)
		}
		rows = append(rows, metricRow{Kind: api.RecordMetric, Key: s.Key, Rank: rank, Value: formatMetric(last.Value),
			Step: strconv.FormatInt(last.Step, 10), Points: strconv.Itoa(len(s.Points))})
	}
	for _, kv := range []struct {
		kind string
		m    map[string]string
	}{{api.RecordParam, m.Params}, {api.RecordTag, m.Tags}} {
		for _, k := range slices.Sorted(maps.Keys(kv.m)) {
			rows = append(rows, metricRow{Kind: kv.kind, Key: k, Value: kv.m[k]})
		}
	}
	return rows
}

// latestPoint is the value MLflow calls a metric's: the highest step's,
// then the latest timestamp's, then the last logged.
func latestPoint(points []api.MetricPoint) (api.MetricPoint, bool) {
	if len(points) == 0 {
		return api.MetricPoint{}, false
	}
	best := points[0]
	for _, p := range points[1:] {
		if p.Step > best.Step || (p.Step == best.Step && p.Timestamp >= best.Timestamp) {
			best = p
		}
	}
	return best, true
}

// formatMetric writes a value as the JSON does: the shortest number that
// reads back the same, or NaN, Infinity, -Infinity.
func formatMetric(v api.MetricValue) string {
	b, err := v.MarshalJSON()
	if err != nil {
		// MarshalJSON fails for no value; were it to, the number is
		// still worth showing.
		return strconv.FormatFloat(float64(v), 'g', -1, 64)
	}
	return strings.Trim(string(b), `"`)
}

func metricsTable(rows []metricRow) func() output.Table {
	return func() output.Table {
		ranks := false
		for _, r := range rows {
			ranks = ranks || r.Rank != ""
		}
		t := output.Table{Header: []string{"KIND", "KEY", "VALUE", "STEP", "POINTS"}}
		if ranks {
			t.Header = []string{"KIND", "KEY", "RANK", "VALUE", "STEP", "POINTS"}
		}
		for _, r := range rows {
			row := []string{r.Kind, r.Key, orDash(r.Value), orDash(r.Step), orDash(r.Points)}
			if ranks {
				row = []string{r.Kind, r.Key, orDash(r.Rank), orDash(r.Value), orDash(r.Step), orDash(r.Points)}
			}
			t.Rows = append(t.Rows, row)
		}
		return t
	}
}

func jobMetricsCmd() *cobra.Command {
	c := &cobra.Command{Use: "metrics", Short: "Show the metrics, params and tags a job logged with mlflow", Args: cobra.NoArgs,
		Long: "Show what a job's processes logged with mlflow (log_metric, log_param, set_tag, ...).\n\n" +
			"An Outpost command (az shows metrics in the Studio): -o table and -o tsv give one line per metric\n" +
			"(its latest value: the highest step's, as MLflow has it, its step and how many values it has), param\n" +
			"and tag, with the process's rank when several logged; -o json and -o yaml give every value of every\n" +
			"metric ({params, tags, metrics: [{key, rank, points: [{step, value, timestamp}]}]}), which --query reads."}
	var w wsFlags
	var name string
	w.add(c)
	nameFlag(c, &name, "job name")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		var m api.JobMetrics
		if err := ws.Do(cmd.Context(), "GET", w.path().job(name)+"/metrics", nil, &m); err != nil {
			return err
		}
		rows := metricRows(m)
		if out.Format == "tsv" && out.Query == "" {
			return printResult(cmd, *out, rows, nil)
		}
		return printResult(cmd, *out, m, metricsTable(rows))
	}
	return c
}
