// Package jobmetrics is what a training job's metrics are made of: the
// stand-in for MLflow's tracking API that the job's wrapper puts on the
// PYTHONPATH of the job's processes (python/mlflow, embedded in the
// binary), and the records its calls write, one JSON line each, to a file
// per process (EnvFile) that the wrapper sends to the workspace. Check is
// the rule the wrapper and the workspace both hold a record to.
//
// Scripts written for Azure ML import mlflow; where mlflow is not
// installed (no PyPI in reach, no Debian package), this package is what
// they get. Where it is installed, the stand-in steps aside for it (see
// python/mlflow/__init__.py).
package jobmetrics

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"outpost.dev/outpost/api"
)

// What the wrapper sets in the environment of the job's processes.
const (
	// EnvFile is the file a process's records go to: EnvDir/<source>.jsonl.
	EnvFile = "OUTPOST_METRICS_FILE"
	// EnvDir is the folder of those files (an MPI rank names its own file
	// from it).
	EnvDir = "OUTPOST_METRICS_DIR"
	// EnvLimit is the most records a process writes (MaxRecords).
	EnvLimit = "OUTPOST_METRICS_LIMIT"
	// EnvArtifacts is the job's ./outputs, where logged artifacts and
	// models go.
	EnvArtifacts = "OUTPOST_ARTIFACTS_DIR"
)

// Bounds. MaxRecords is the most records (metric values, params and tags)
// the workspace keeps of one job; the others are MLflow's own.
const (
	MaxRecords    = 100_000
	MaxKey        = 250
	MaxParamValue = 6000
	MaxTagValue   = 8000
)

//go:embed python/mlflow/*.py
var python embed.FS

// Install writes the stand-in package into dir (dir/mlflow/...), which
// goes on PYTHONPATH. What a former install left there is replaced.
func Install(dir string) error {
	pkg := filepath.Join(dir, "mlflow")
	if err := os.RemoveAll(pkg); err != nil {
		return err
	}
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(python, "python/mlflow", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := python.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(pkg, path.Base(p)), data, 0o644)
	})
}

// Source is the name of the records of the process of rank r: its file is
// Source(r) + ".jsonl".
func Source(rank int) string { return "rank_" + strconv.Itoa(rank) }

var sourceRE = regexp.MustCompile(`^rank_(0|[1-9][0-9]{0,5})$`)

// ParseSource reads a source's rank.
func ParseSource(s string) (int, error) {
	m := sourceRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("source %q: want rank_N, N the process's rank", s)
	}
	return strconv.Atoi(m[1])
}

// Parse reads one line of a records file and checks the record.
func Parse(line []byte) (api.MetricRecord, error) {
	var r api.MetricRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("not a record: %v", err)
	}
	return r, Check(&r)
}

// Check tells what is wrong with a record, and writes its value in one
// way (a metric's as a number or one of the three strings, others as a
// string); nil when it may be kept.
func Check(r *api.MetricRecord) error {
	if err := checkKey(r.Key); err != nil {
		return fmt.Errorf("%s key %q: %w", r.Type, r.Key, err)
	}
	if len(r.Value) == 0 {
		return fmt.Errorf("%s %q: no value", r.Type, r.Key)
	}
	var v any
	switch r.Type {
	case api.RecordMetric:
		var mv api.MetricValue
		if err := json.Unmarshal(r.Value, &mv); err != nil {
			return fmt.Errorf("metric %q: %w", r.Key, err)
		}
		v = mv
	case api.RecordParam, api.RecordTag:
		if r.Step != 0 {
			return fmt.Errorf("%s %q: only metrics have a step", r.Type, r.Key)
		}
		var s string
		if err := json.Unmarshal(r.Value, &s); err != nil || string(r.Value) == "null" {
			return fmt.Errorf("%s %q: value %s: want a string", r.Type, r.Key, r.Value)
		}
		most := MaxParamValue
		if r.Type == api.RecordTag {
			most = MaxTagValue
		}
		if n := utf8.RuneCountInString(s); n > most {
			return fmt.Errorf("%s %q: value of %d characters; at most %d are allowed", r.Type, r.Key, n, most)
		}
		v = s
	default:
		return fmt.Errorf("record type %q: want %s, %s or %s", r.Type, api.RecordMetric, api.RecordParam, api.RecordTag)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.Value = b
	return nil
}

// checkKey holds keys to MLflow's rule: letters, digits, spaces and
// _ - . / :, at most MaxKey characters, and, as keys may become file
// names, no path that names another.
func checkKey(k string) error {
	if k == "" || utf8.RuneCountInString(k) > MaxKey {
		return fmt.Errorf("want 1 to %d characters", MaxKey)
	}
	for _, c := range k {
		if !unicode.IsLetter(c) && !unicode.IsNumber(c) && !strings.ContainsRune("_-. /:", c) {
			return fmt.Errorf("%q is not allowed; use letters, digits, spaces and _ - . / :", c)
		}
	}
	if strings.HasPrefix(k, "/") || path.Clean(k) != k || k == "." || hasDotDot(k) {
		return errors.New("a key may hold '/' between names, but no empty, '.' or '..' part and no leading '/'")
	}
	return nil
}

func hasDotDot(k string) bool {
	for _, s := range strings.Split(k, "/") {
		if s == ".." {
			return true
		}
	}
	return false
}
