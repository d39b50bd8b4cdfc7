package studio

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"outpost.dev/outpost/api"
)

// A job's metrics as the job page draws them: one line chart a series,
// drawn on the server as SVG (no script, no chart library).

// chartW and chartH are a chart's viewBox; chartPad keeps the line off
// its edges.
const (
	chartW, chartH = 320.0, 120.0
	chartPad       = 6.0
)

type metricsView struct {
	Params, Tags []keyValue
	Charts       []chart
	Err          string // why the metrics could not be read
}

type keyValue struct{ Key, Value string }

// chart is one metric series: its polyline's points in the viewBox, or a
// single point (Dot) when it has one value.
type chart struct {
	Key      string
	Rank     string // set when several processes logged
	Points   string
	Dot      *[2]float64
	Last     string
	LastStep int64
	Min, Max string
	Count    int
}

func sortedPairs(m map[string]string) []keyValue {
	var out []keyValue
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, keyValue{k, m[k]})
	}
	return out
}

// chartsOf draws every series of m: values that are not finite numbers
// (NaN, infinities) are left out of the line and of its range.
func chartsOf(m api.JobMetrics) metricsView {
	v := metricsView{Params: sortedPairs(m.Params), Tags: sortedPairs(m.Tags)}
	for _, s := range m.Metrics {
		c := chart{Key: s.Key}
		if s.Rank != nil {
			c.Rank = strconv.Itoa(*s.Rank)
		}
		var pts []api.MetricPoint
		for _, p := range s.Points {
			if f := float64(p.Value); !math.IsNaN(f) && !math.IsInf(f, 0) {
				pts = append(pts, p)
			}
		}
		c.Count = len(s.Points)
		if len(s.Points) > 0 {
			last := s.Points[len(s.Points)-1]
			c.Last, c.LastStep = formatValue(float64(last.Value)), last.Step
		}
		if len(pts) == 0 {
			v.Charts = append(v.Charts, c)
			continue
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, p := range pts {
			lo, hi = math.Min(lo, float64(p.Value)), math.Max(hi, float64(p.Value))
		}
		c.Min, c.Max = formatValue(lo), formatValue(hi)
		// x by position in the order logged (steps may repeat or be 0
		// throughout), y by value.
		xy := func(i int, val float64) (float64, float64) {
			x := chartW / 2
			if len(pts) > 1 {
				x = chartPad + float64(i)*(chartW-2*chartPad)/float64(len(pts)-1)
			}
			y := chartH / 2
			if hi > lo {
				y = chartH - chartPad - (val-lo)*(chartH-2*chartPad)/(hi-lo)
			}
			return x, y
		}
		if len(pts) == 1 {
			x, y := xy(0, float64(pts[0].Value))
			c.Dot = &[2]float64{x, y}
		} else {
			var b strings.Builder
			for i, p := range pts {
				x, y := xy(i, float64(p.Value))
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64))
			}
			c.Points = b.String()
		}
		v.Charts = append(v.Charts, c)
	}
	return v
}

func formatValue(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }
