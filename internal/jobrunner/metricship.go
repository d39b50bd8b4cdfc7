package jobrunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobmetrics"
)

// Job metrics: the job's processes log with mlflow, which is Outpost's
// stand-in (internal/jobmetrics) unless the image has the real one. The
// wrapper installs the stand-in in ROOT/pylib, puts it on PYTHONPATH, and
// gives each process a file of its own, ROOT/metrics/rank_N.jsonl, whose
// complete lines a metricShipper sends to the workspace as they come and,
// before the job's end is reported, to the last. With MPI, the ranks on
// an instance write in that instance's ROOT/metrics, which its wrapper
// ships.

const (
	dirPylib   = "pylib"
	dirMetrics = "metrics"
)

// metricBatch bounds the bytes of a metrics file read, and so sent, at
// once.
const metricBatch = 256 << 10

// installMetrics puts the stand-in mlflow where the job's PYTHONPATH
// leads.
func installMetrics(root string) error {
	if err := jobmetrics.Install(filepath.Join(root, dirPylib)); err != nil {
		return fmt.Errorf("installing the mlflow stand-in: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, dirMetrics), 0o755); err != nil {
		return fmt.Errorf("making the metrics folder: %w", err)
	}
	return nil
}

// setMetricsEnv gives the process of rank its metrics file, and the
// stand-in's place on PYTHONPATH: after what the image or the job put
// there, so that a package of theirs named mlflow comes first (the
// stand-in steps aside for an installed one anyway).
func setMetricsEnv(e *envList, root string, rank int) {
	pylib := filepath.Join(root, dirPylib)
	if cur := e.vals["PYTHONPATH"]; cur != "" {
		pylib = cur + string(os.PathListSeparator) + pylib
	}
	e.set("PYTHONPATH", pylib)
	dir := filepath.Join(root, dirMetrics)
	e.set(jobmetrics.EnvDir, dir)
	e.set(jobmetrics.EnvFile, filepath.Join(dir, jobmetrics.Source(rank)+".jsonl"))
	e.set(jobmetrics.EnvLimit, strconv.Itoa(jobmetrics.MaxRecords))
	e.set(jobmetrics.EnvArtifacts, filepath.Join(root, dirWD, "outputs"))
}

// metricShipper sends the records of every file of a metrics folder.
type metricShipper struct {
	api   *jobAPI
	dir   string
	warn  func(format string, args ...any)
	batch int // metricBatch; tests lower it
	// files and ignored are the loop's own: the files shipped, by
	// source, and the names of the folder's other files, said once.
	files   map[string]*metricFile
	ignored map[string]bool

	closing chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // why shipping stopped short; read after done
}

// metricFile is where shipping one process's file stands.
type metricFile struct {
	source  string
	path    string
	off     int64 // bytes read
	line    int   // lines read
	sent    int64 // records the workspace holds
	skip    int64 // records to pass over before those to send
	pending []api.MetricRecord
	// skipping passes over the rest of a line longer than a batch, which
	// the stand-in never writes.
	skipping bool
	bad      int   // lines that were no record
	seen     int   // the most lines read, before the file was read again
	tornSaid bool  // the file's unfinished last line was said
	refused  error // the workspace refused this file's records: no more are sent
}

// newMetricShipper starts shipping the files of dir.
func newMetricShipper(a *jobAPI, dir string, warn func(string, ...any)) *metricShipper {
	return startMetricShipper(a, dir, warn, metricBatch)
}

func startMetricShipper(a *jobAPI, dir string, warn func(string, ...any), batch int) *metricShipper {
	ctx, cancel := context.WithCancel(context.Background())
	s := &metricShipper{api: a, dir: dir, warn: warn, batch: batch, files: map[string]*metricFile{}, ignored: map[string]bool{},
		closing: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go s.loop(ctx)
	return s
}

func (s *metricShipper) loop(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(shipInterval)
	defer tick.Stop()
	for {
		final := false
		select {
		case <-s.closing:
			final = true
		default:
		}
		if err := s.pass(ctx, final); err != nil || final {
			s.err = err
			return
		}
		select {
		case <-ctx.Done():
			s.err = fmt.Errorf("sending metrics: %w", ctx.Err())
			return
		case <-s.closing:
		case <-tick.C:
		}
	}
}

// pass sends what the files hold now. The final pass, once the processes
// have ended, retries until everything is in or the deadline passes;
// others leave what fails for the next. Only giving up is an error: a
// file that cannot be read, or whose records the workspace refuses, is
// said and passed over.
func (s *metricShipper) pass(ctx context.Context, final bool) error {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the metrics folder: %w", err)
	}
	for _, e := range ents {
		f := s.file(e.Name())
		for f != nil && f.refused == nil {
			more := false
			if len(f.pending) == 0 {
				if more, err = f.read(s.batch, final, s.warn); err != nil {
					// Gone or unreadable (the job's own doing): the
					// others still go.
					f.refused = err
					s.warn("%v: not sent any further", err)
					break
				}
			}
			if len(f.pending) > 0 {
				sent, err := s.send(ctx, f, final)
				if err != nil {
					return err
				}
				if !sent {
					break
				}
				more = true // what the file holds beyond the batch
			}
			if !more {
				break
			}
		}
	}
	return nil
}

// file is the shipping state of a file of the folder; nil for a file that
// is no process's (said once).
func (s *metricShipper) file(name string) *metricFile {
	source, ok := strings.CutSuffix(name, ".jsonl")
	if f := s.files[source]; ok && f != nil {
		return f
	}
	if _, err := jobmetrics.ParseSource(source); err != nil || !ok {
		if !s.ignored[name] {
			s.ignored[name] = true
			s.warn("metrics folder: %s is not a process's metrics file (rank_N.jsonl): not sent", name)
		}
		return nil
	}
	f := &metricFile{source: source, path: filepath.Join(s.dir, name)}
	s.files[source] = f
	return f
}

// read takes the next complete lines of the file into pending (at most
// batch bytes), and tells whether the file holds more.
func (f *metricFile) read(batch int, final bool, warn func(string, ...any)) (bool, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return false, fmt.Errorf("metrics of %s: %w", f.source, err)
	}
	defer fh.Close()
	buf := make([]byte, batch)
	n, err := fh.ReadAt(buf, f.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("metrics of %s: %w", f.source, err)
	}
	full := n == len(buf)
	data := buf[:n]
	end := bytes.LastIndexByte(data, '\n')
	if final && !full && end+1 < n && !(end < 0 && f.skipping) && !f.tornSaid {
		f.tornSaid = true
		warn("metrics of %s: the file ends in the middle of a line (its process was stopped while writing it): passed over", f.source)
	}
	if end < 0 {
		if full {
			// A line longer than a batch: no record; passed over.
			if !f.skipping {
				f.badLine(warn, f.line+1, "a line of more than %d bytes", batch)
			}
			f.off, f.skipping = f.off+int64(n), true
		}
		return full, nil
	}
	f.off += int64(end) + 1
	for _, line := range bytes.Split(data[:end], []byte("\n")) {
		f.line++
		if f.skipping {
			f.skipping = false
			continue
		}
		rec, err := jobmetrics.Parse(line)
		if err != nil {
			f.badLine(warn, f.line, "%v", err)
			continue
		}
		if f.skip > 0 {
			f.skip--
			continue
		}
		f.pending = append(f.pending, rec)
	}
	return full, nil
}

// badLine says what is wrong with line n, which is passed over: of the
// first few, once (a file read again is not told again).
func (f *metricFile) badLine(warn func(string, ...any), n int, format string, args ...any) {
	if n <= f.seen {
		return
	}
	f.bad++
	switch {
	case f.bad <= 3:
		warn("metrics of %s, line %d: %s: passed over", f.source, n, fmt.Sprintf(format, args...))
	case f.bad == 4:
		warn("metrics of %s: more lines that are no record are passed over without a word", f.source)
	}
}

// send sends pending and tells whether it got in. A refusal stops the
// file's shipping (said once); a transient failure is retried until the
// final pass's deadline, or left for the next pass.
func (s *metricShipper) send(ctx context.Context, f *metricFile, final bool) (bool, error) {
	wait := backoffFirst
	for {
		count, err := s.api.appendMetrics(ctx, f.source, f.sent, f.pending)
		var ge *metricGapError
		switch {
		case err == nil:
			f.sent, f.pending = count, nil
			return true, nil
		case errors.As(err, &ge):
			// The workspace holds another count than this file has sent
			// (it lost some): read the file again from the start, passing
			// over what it holds.
			f.seen = max(f.seen, f.line)
			f.off, f.line, f.skipping = 0, 0, false
			f.sent, f.skip, f.pending = ge.count, ge.count, nil
			return true, nil
		case !transient(err):
			f.refused = err
			s.warn("sending the metrics of %s: %v: what it logs from now on is not sent", f.source, err)
			return false, nil
		case !final:
			return false, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("sending the metrics of %s: %w (gave up with %d records unsent)", f.source, err, len(f.pending))
		case <-t.C:
		}
		wait = min(2*wait, backoffMax)
	}
}

// close sends what the files hold now that the processes have ended,
// giving up at deadline; the error says what was not sent.
func (s *metricShipper) close(deadline time.Time) error {
	close(s.closing)
	awaitUntil(s.done, s.cancel, deadline)
	return s.err
}

// metricGapError is the workspace's answer to a batch that would leave a
// gap: how many records of the source it holds.
type metricGapError struct {
	source string
	count  int64
}

func (e *metricGapError) Error() string {
	return fmt.Sprintf("the workspace holds %d records of %s", e.count, e.source)
}

// appendMetrics sends records of source from its seq-th, one attempt, and
// returns how many the workspace holds. A gap is a *metricGapError.
func (c *jobAPI) appendMetrics(ctx context.Context, source string, seq int64, records []api.MetricRecord) (int64, error) {
	body, err := json.Marshal(api.MetricsAppend{Source: source, Seq: seq, Records: records})
	if err != nil {
		return 0, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/metrics", nil, body, "application/json")
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusConflict {
		var res struct {
			Count *int64 `json:"count"`
		}
		if json.Unmarshal(se.body, &res) != nil || res.Count == nil || *res.Count < 0 {
			return 0, err // a refusal of another kind (the job has ended)
		}
		return 0, &metricGapError{source: source, count: *res.Count}
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var res api.MetricsAppendResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&res); err != nil {
		// The records got in, or will on the retry, which is told apart.
		return 0, fmt.Errorf("reading the answer to a metrics append: %w", err)
	}
	if res.Count != seq+int64(len(records)) {
		// Not what this append leaves: the workspace has lost records, or
		// holds some this file never had; go on from what it says.
		return 0, &metricGapError{source: source, count: res.Count}
	}
	return res.Count, nil
}
