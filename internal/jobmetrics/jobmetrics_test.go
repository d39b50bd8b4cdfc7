package jobmetrics

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

// TestPythonPackage runs the stand-in's own tests (testdata/test_mlflow.py)
// against an install of it, with Debian's Python (which has scikit-learn)
// and with every interpreter OUTPOST_TEST_PYTHONS lists (a colon-separated
// list, e.g. a Python 3.9, the oldest the package supports).
func TestPythonPackage(t *testing.T) {
	pythons := []string{"/usr/bin/python3"}
	if extra := os.Getenv("OUTPOST_TEST_PYTHONS"); extra != "" {
		pythons = append(pythons, filepath.SplitList(extra)...)
	}
	for _, py := range pythons {
		t.Run(py, func(t *testing.T) {
			if _, err := os.Stat(py); err != nil {
				t.Skipf("no %s: %v", py, err)
			}
			lib := t.TempDir()
			if err := Install(lib); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py, "-B", "-m", "unittest", "-v", "test_mlflow")
			cmd.Dir = "testdata"
			cmd.Env = append(os.Environ(), "OUTPOST_TEST_PYLIB="+lib, "PYTHONDONTWRITEBYTECODE=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s -m unittest: %v\n%s", py, err, out)
			}
			t.Logf("%s", out)
		})
	}
}

func TestInstallReplacesWhatWasThere(t *testing.T) {
	lib := t.TempDir()
	stale := filepath.Join(lib, "mlflow", "stale.py")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Install(lib); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(lib, "mlflow"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"__init__.py", "_model.py", "_tracking.py", "exceptions.py", "pyfunc.py", "sklearn.py"}; !slices.Equal(names, want) {
		t.Fatalf("installed %v, want %v", names, want)
	}
}

func TestParseAndCheck(t *testing.T) {
	good := []struct{ line, value string }{
		{`{"type":"metric","key":"acc","value":0.93,"step":2,"timestamp":1}`, `0.93`},
		{`{"type":"metric","key":"loss/train ep:1","value":"NaN","timestamp":1}`, `"NaN"`},
		{`{"type":"metric","key":"λ_2","value":1e3,"timestamp":1}`, `1000`},
		{`{"type":"param","key":"C","value":"1.0","timestamp":1}`, `"1.0"`},
		{`{"type":"tag","key":"t","value":"\u003cb\u003e","timestamp":1}`, `"\u003cb\u003e"`},
	}
	for _, c := range good {
		r, err := Parse([]byte(c.line))
		if err != nil || string(r.Value) != c.value {
			t.Errorf("%s: %+v %v, want value %s", c.line, r, err, c.value)
		}
	}
	bad := []struct{ line, want string }{
		{`not json`, "not a record"},
		{`{"type":"metric","key":"acc","value":"0.9","timestamp":1}`, `want a number`},
		{`{"type":"metric","key":"acc","value":null,"timestamp":1}`, `want a number`},
		{`{"type":"metric","key":"acc","timestamp":1}`, `no value`},
		{`{"type":"param","key":"p","value":1,"timestamp":1}`, `want a string`},
		{`{"type":"param","key":"p","value":"x","step":1,"timestamp":1}`, `only metrics have a step`},
		{`{"type":"param","key":"p","value":"` + strings.Repeat("é", MaxParamValue+1) + `","timestamp":1}`, `at most 6000`},
		{`{"type":"tag","key":"p","value":"` + strings.Repeat("x", MaxTagValue+1) + `","timestamp":1}`, `at most 8000`},
		{`{"type":"artifact","key":"a","value":"x","timestamp":1}`, `record type "artifact"`},
		{`{"type":"metric","key":"","value":1,"timestamp":1}`, `1 to 250`},
		{`{"type":"metric","key":"` + strings.Repeat("k", 251) + `","value":1,"timestamp":1}`, `1 to 250`},
		{`{"type":"metric","key":"a|b","value":1,"timestamp":1}`, `'|' is not allowed`},
		{`{"type":"metric","key":"a//b","value":1,"timestamp":1}`, `no empty`},
		{`{"type":"metric","key":"a/..","value":1,"timestamp":1}`, `no empty`},
		{`{"type":"metric","key":"/a","value":1,"timestamp":1}`, `leading`},
		{`{"type":"metric","key":"a/","value":1,"timestamp":1}`, `no empty`},
	}
	for _, c := range bad {
		if _, err := Parse([]byte(c.line)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.80s: %v, want an error with %q", c.line, err, c.want)
		}
	}
}

func TestMetricValueJSON(t *testing.T) {
	for _, v := range []float64{0.93, -2, 1e-300, math.NaN(), math.Inf(1), math.Inf(-1)} {
		b, err := json.Marshal(api.MetricValue(v))
		if err != nil {
			t.Fatal(err)
		}
		var back api.MetricValue
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if float64(back) != v && !(math.IsNaN(v) && math.IsNaN(float64(back))) {
			t.Errorf("%v -> %s -> %v", v, b, back)
		}
	}
	var v api.MetricValue
	for _, bad := range []string{`"nan"`, `null`, `true`, `{}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s decoded as %v", bad, v)
		}
	}
}

func TestSource(t *testing.T) {
	if s := Source(12); s != "rank_12" {
		t.Fatal(s)
	}
	if r, err := ParseSource("rank_0"); err != nil || r != 0 {
		t.Fatal(r, err)
	}
	for _, bad := range []string{"rank_", "rank_01", "rank_-1", "rank_1234567", "../rank_1", "x"} {
		if _, err := ParseSource(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
