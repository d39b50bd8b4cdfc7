package cli

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/output"
)

func TestMetricRows(t *testing.T) {
	zero, one := 0, 1
	m := api.JobMetrics{
		Params: map[string]string{"lr": "0.01", "C": "1.0"},
		Tags:   map[string]string{"stage": "dev"},
		Metrics: []api.MetricSeries{
			// The latest value is the highest step's, whatever the order
			// logged; at the same step, the latest timestamp's.
			{Key: "loss", Rank: &zero, Points: []api.MetricPoint{{Step: 2, Value: 0.25, Timestamp: 5}, {Step: 1, Value: 0.5, Timestamp: 9}, {Step: 2, Value: 0.125, Timestamp: 6}}},
			{Key: "loss", Rank: &one, Points: []api.MetricPoint{{Step: 0, Value: api.MetricValue(math.NaN()), Timestamp: 1}}},
			{Key: "empty", Rank: &one},
		},
	}
	rows := metricRows(m)
	var table, tsv bytes.Buffer
	if err := output.Print(&table, output.Options{Format: "table"}, m, metricsTable(rows)); err != nil {
		t.Fatal(err)
	}
	if err := output.Print(&tsv, output.Options{Format: "tsv"}, rows, nil); err != nil {
		t.Fatal(err)
	}
	wantTable := []string{
		"KIND    KEY    RANK    VALUE    STEP    POINTS",
		"metric  loss   0       0.125    2       3",
		"metric  loss   1       NaN      0       1",
		"param   C      -       1.0      -       -",
		"param   lr     -       0.01     -       -",
		"tag     stage  -       dev      -       -",
	}
	if got := strings.Split(strings.TrimSpace(table.String()), "\n"); !equalFields(got, wantTable) {
		t.Errorf("table:\n%s\nwant:\n%s", table.String(), strings.Join(wantTable, "\n"))
	}
	wantTSV := "metric\tloss\t0\t0.125\t2\t3\nmetric\tloss\t1\tNaN\t0\t1\nparam\tC\t\t1.0\t\t\nparam\tlr\t\t0.01\t\t\ntag\tstage\t\tdev\t\t\n"
	if tsv.String() != wantTSV {
		t.Errorf("tsv %q, want %q", tsv.String(), wantTSV)
	}

	// One process: no RANK column.
	one1 := api.JobMetrics{Metrics: []api.MetricSeries{{Key: "acc", Points: []api.MetricPoint{{Value: 0.93}}}}}
	var single bytes.Buffer
	if err := output.Print(&single, output.Options{Format: "table"}, one1, metricsTable(metricRows(one1))); err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSpace(single.String()), "\n"); !equalFields(got, []string{"KIND KEY VALUE STEP POINTS", "metric acc 0.93 0 1"}) {
		t.Errorf("single process table:\n%s", single.String())
	}
}

// equalFields compares table lines by their fields, whatever the padding.
func equalFields(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if strings.Join(strings.Fields(got[i]), " ") != strings.Join(strings.Fields(want[i]), " ") {
			return false
		}
	}
	return true
}
