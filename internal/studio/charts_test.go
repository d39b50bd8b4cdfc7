package studio

import (
	"math"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

func TestChartsOf(t *testing.T) {
	one := 1
	v := chartsOf(api.JobMetrics{
		Params: map[string]string{"lr": "0.1", "epochs": "3"},
		Tags:   map[string]string{"team": "a"},
		Metrics: []api.MetricSeries{
			{Key: "loss", Points: []api.MetricPoint{{Step: 0, Value: 4}, {Step: 1, Value: api.MetricValue(math.NaN())}, {Step: 2, Value: 2}, {Step: 3, Value: 0}}},
			{Key: "accuracy", Rank: &one, Points: []api.MetricPoint{{Step: 7, Value: 0.93}}},
			{Key: "broken", Points: []api.MetricPoint{{Value: api.MetricValue(math.Inf(1))}}},
		},
	})
	if len(v.Params) != 2 || v.Params[0] != (keyValue{"epochs", "3"}) || len(v.Tags) != 1 {
		t.Errorf("params %v tags %v, want sorted by key", v.Params, v.Tags)
	}
	loss := v.Charts[0]
	// Three finite values, left to right, the highest at the top (y 6) and
	// the lowest at the bottom (y 114); the NaN is left out of the line.
	if loss.Points != "6.0,6.0 160.0,60.0 314.0,114.0" || loss.Min != "0" || loss.Max != "4" || loss.Last != "0" || loss.LastStep != 3 || loss.Count != 4 {
		t.Errorf("loss chart %+v", loss)
	}
	acc := v.Charts[1]
	if acc.Points != "" || acc.Dot == nil || acc.Dot[0] != 160 || acc.Dot[1] != 60 || acc.Rank != "1" || acc.Last != "0.93" {
		t.Errorf("a single value is a dot in the middle: %+v", acc)
	}
	if b := v.Charts[2]; b.Points != "" || b.Dot != nil || b.Min != "" || !strings.EqualFold(b.Last, "+Inf") {
		t.Errorf("no finite value, nothing drawn: %+v", b)
	}
}
