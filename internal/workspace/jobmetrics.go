package workspace

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobmetrics"
	"outpost.dev/outpost/internal/store"
)

// Job metrics: what a job's processes log with mlflow (internal/jobmetrics),
// sent by the job's wrapper a batch at a time (api.MetricsAppend) and read
// by users whole (api.JobMetrics). They live beside the job logs, under
// <data-dir>/jobmetrics/<rg>/<ws>/<job>/<source>.jsonl: one file per
// process (source rank_N), one record a line with its index in the source
// (seq), so that the count of a source is its last line's seq + 1 and a
// retried batch is told by its seq. Appends to a job's files are
// serialised (logLocks, keyed by the folder), which the job-wide bounds
// need.

// Bounds of one job's metrics; tests lower them.
var (
	maxMetricRecords       = int64(jobmetrics.MaxRecords)
	maxMetricBytes   int64 = 64 << 20
	maxMetricSources       = 1024
)

// storedRecord is a line of a source's file.
type storedRecord struct {
	Seq int64 `json:"seq"`
	api.MetricRecord
}

// metricsConflict refuses a batch that would leave a gap: Count is what
// the workspace holds of the source, for the wrapper to go on from.
type metricsConflict struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Count   int64  `json:"count"`
}

func (s *Server) jobMetricsDir(k store.Key) string {
	return filepath.Join(s.opts.DataDir, "jobmetrics", k.Group, strings.TrimPrefix(k.Parent, workspaceParent("")), k.Name)
}

// metricSource is what a source's file holds: count records in its first
// size bytes (what follows is a torn write, dropped by the next append).
type metricSource struct {
	count, size int64
}

// metricSources reads how much each source of dir holds.
func metricSources(dir string) (map[string]metricSource, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]metricSource{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]metricSource{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".jsonl")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		src, err := readMetricSource(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[name] = src
	}
	return out, nil
}

func readMetricSource(path string) (metricSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return metricSource{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return metricSource{}, err
	}
	line, end, err := lastLine(f, fi.Size())
	if err != nil || line == nil {
		return metricSource{size: end}, err
	}
	var r storedRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return metricSource{}, fmt.Errorf("%s: last line: %w", path, err)
	}
	return metricSource{count: r.Seq + 1, size: end}, nil
}

// lastLine finds the last complete line of the first size bytes of f
// (nil when there is none) and where it ends, reading back from the end
// as far as that line goes.
func lastLine(f io.ReaderAt, size int64) (line []byte, end int64, err error) {
	const chunk = 16 << 10
	var tail []byte // f's bytes from start to size
	for start := size; start > 0; {
		n := min(chunk, start)
		start -= n
		buf := make([]byte, n, n+int64(len(tail)))
		if _, err := f.ReadAt(buf, start); err != nil {
			return nil, 0, err
		}
		tail = append(buf, tail...)
		i := bytes.LastIndexByte(tail, '\n')
		if i < 0 {
			continue
		}
		if j := bytes.LastIndexByte(tail[:i], '\n'); j >= 0 || start == 0 {
			return tail[j+1 : i], start + int64(i) + 1, nil
		}
	}
	return nil, 0, nil
}

// jobRunAppendMetrics keeps a batch of one process's records. A batch
// that starts before the end of what the source holds is a retry: the
// records already there are passed over and the rest appended. The job's
// bounds (records, bytes, sources) refuse a batch whole.
func (s *Server) jobRunAppendMetrics(w http.ResponseWriter, r *http.Request) {
	var req api.MetricsAppend
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if _, err := jobmetrics.ParseSource(req.Source); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if req.Seq < 0 {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("seq %d: want the index of the first record (0 or more)", req.Seq))
		return
	}
	for i := range req.Records {
		if err := jobmetrics.Check(&req.Records[i]); err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("record %d: %v", i, err))
			return
		}
	}
	j := jobOf(r)
	dir := s.jobMetricsDir(j.obj.Key)
	defer s.logLocks.lock(dir)()
	sources, err := metricSources(dir)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	src, known := sources[req.Source]
	switch {
	case req.Seq > src.count:
		writeJSON(w, http.StatusConflict, metricsConflict{Code: "Conflict", Count: src.count,
			Message: fmt.Sprintf("%s holds %d records, fewer than seq %d: send from %d", req.Source, src.count, req.Seq, src.count)})
		return
	case req.Seq+int64(len(req.Records)) <= src.count:
		writeJSON(w, http.StatusOK, api.MetricsAppendResult{Count: src.count}) // all of it was kept before
		return
	}
	fresh := req.Records[src.count-req.Seq:]
	var records, size int64
	for _, o := range sources {
		records, size = records+o.count, size+o.size
	}
	if !known && len(sources) >= maxMetricSources {
		writeError(w, http.StatusRequestEntityTooLarge, "TooManyMetricSources", fmt.Sprintf("job %s has metrics of %d processes, the most a job may have", j.obj.Name, len(sources)))
		return
	}
	if records+int64(len(fresh)) > maxMetricRecords {
		writeError(w, http.StatusRequestEntityTooLarge, "TooManyMetrics", fmt.Sprintf("job %s holds %d metric values, params and tags, and %d more would pass %d, the most a job may hold: they are not kept",
			j.obj.Name, records, len(fresh), maxMetricRecords))
		return
	}
	var buf bytes.Buffer
	for i, rec := range fresh {
		line, err := json.Marshal(storedRecord{Seq: src.count + int64(i), MetricRecord: rec})
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if size+int64(buf.Len()) > maxMetricBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "TooManyMetrics", fmt.Sprintf("job %s holds %d bytes of metrics, and this batch would pass %d, the most a job may hold: it is not kept",
			j.obj.Name, size, maxMetricBytes))
		return
	}
	if err := appendRecords(filepath.Join(dir, req.Source+".jsonl"), src.size, buf.Bytes()); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", fmt.Sprintf("keeping the metrics of %s: %v", req.Source, err))
		return
	}
	writeJSON(w, http.StatusOK, api.MetricsAppendResult{Count: src.count + int64(len(fresh))})
}

// appendRecords writes data at offset end of the file (its complete
// lines' end: a torn write past it is dropped), all or nothing.
func appendRecords(path string, end int64, data []byte) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := f.WriteAt(data, end); err != nil {
		return errors.Join(err, f.Truncate(end))
	}
	if err := f.Truncate(end + int64(len(data))); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		// Not known to be on disk: the batch is refused, and its retry
		// writes it again at the same offset.
		return errors.Join(err, f.Truncate(end))
	}
	return nil
}

// jobMetrics answers GET .../jobs/{name}/metrics with all a job's
// processes logged.
func (s *Server) jobMetrics(w http.ResponseWriter, r *http.Request) {
	k := jobKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"))
	if _, err := s.store.Get(r.Context(), k); err != nil {
		storeError(w, err, "job "+k.Name)
		return
	}
	m, err := readJobMetrics(s.jobMetricsDir(k))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// readJobMetrics gathers the records of every source of dir: params keep
// the first value of the lowest rank, tags the latest value set, and
// metrics every value, in the order logged, one series per key and rank.
// A torn last line (an append in progress) is left out.
func readJobMetrics(dir string) (*api.JobMetrics, error) {
	out := &api.JobMetrics{Params: map[string]string{}, Tags: map[string]string{}, Metrics: []api.MetricSeries{}}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	type source struct {
		rank    int
		records []api.MetricRecord
	}
	var sources []source
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".jsonl")
		rank, err := jobmetrics.ParseSource(name)
		if !ok || err != nil || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		src := source{rank: rank}
		for i, line := range bytes.Split(data[:bytes.LastIndexByte(data, '\n')+1], []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var rec storedRecord
			if err := json.Unmarshal(line, &rec); err != nil {
				return nil, fmt.Errorf("metrics of %s, line %d: %w", name, i+1, err)
			}
			src.records = append(src.records, rec.MetricRecord)
		}
		if len(src.records) > 0 {
			sources = append(sources, src)
		}
	}
	slices.SortFunc(sources, func(a, b source) int { return cmp.Compare(a.rank, b.rank) })

	type seriesKey struct {
		key  string
		rank int
	}
	series := map[seriesKey]*api.MetricSeries{}
	tagTime := map[string]int64{}
	for _, src := range sources {
		for _, rec := range src.records {
			switch rec.Type {
			case api.RecordParam, api.RecordTag:
				var v string
				if err := json.Unmarshal(rec.Value, &v); err != nil {
					return nil, fmt.Errorf("metrics of rank %d: %s %q: %w", src.rank, rec.Type, rec.Key, err)
				}
				if _, ok := out.Params[rec.Key]; rec.Type == api.RecordParam && !ok {
					out.Params[rec.Key] = v
				}
				if t, ok := tagTime[rec.Key]; rec.Type == api.RecordTag && (!ok || rec.Timestamp >= t) {
					out.Tags[rec.Key], tagTime[rec.Key] = v, rec.Timestamp
				}
			case api.RecordMetric:
				var v api.MetricValue
				if err := json.Unmarshal(rec.Value, &v); err != nil {
					return nil, fmt.Errorf("metrics of rank %d: metric %q: %w", src.rank, rec.Key, err)
				}
				sk := seriesKey{rec.Key, src.rank}
				ms := series[sk]
				if ms == nil {
					ms = &api.MetricSeries{Key: rec.Key}
					if len(sources) > 1 {
						rank := src.rank
						ms.Rank = &rank
					}
					series[sk] = ms
				}
				ms.Points = append(ms.Points, api.MetricPoint{Step: rec.Step, Value: v, Timestamp: rec.Timestamp})
			}
		}
	}
	keys := slices.SortedFunc(maps.Keys(series), func(a, b seriesKey) int { return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.rank, b.rank)) })
	for _, k := range keys {
		out.Metrics = append(out.Metrics, *series[k])
	}
	return out, nil
}
