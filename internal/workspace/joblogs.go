package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// Job logs: the job's wrapper appends what its command prints to files of
// the workspace, in Azure ML's layout (user_logs/std_log.txt, ...), and
// users read them, live or after the job is gone from its cluster. They
// live under <data-dir>/joblogs/<rg>/<ws>/<job>/, outside the database:
// they are appended to often and read as streams.

const (
	// maxLogBytes bounds one log file; appends beyond are refused (413).
	maxLogBytes = 100 << 20
	// maxLogFiles bounds the log files of one job.
	maxLogFiles = 1024
	// maxLogAnswer bounds the log bytes of one answer to a reader; it asks
	// again for the rest.
	maxLogAnswer = 4 << 20
)

// logRoots are the folders a job's logs may be in.
var logRoots = []string{"user_logs", "system_logs"}

var logSegment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkLogFile allows user_logs/<name>.txt and system_logs/<name>.txt, in
// up to two folders below: plain names, so that a log file's path is the
// same wherever it is kept or downloaded.
func checkLogFile(p string) error {
	const want = "want user_logs/<name>.txt or system_logs/<name>.txt (letters, digits, '.', '_' and '-' in each name)"
	segs := strings.Split(p, "/")
	if len(segs) < 2 || len(segs) > 4 || !slices.Contains(logRoots, segs[0]) || !strings.HasSuffix(p, ".txt") {
		return fmt.Errorf("log file %s: %s", quoteName(p), want)
	}
	for _, s := range segs {
		if !logSegment.MatchString(s) || s == ".." {
			return fmt.Errorf("log file %s: segment %s: %s", quoteName(p), quoteName(s), want)
		}
	}
	return nil
}

func (s *Server) jobLogDir(k store.Key) string {
	return filepath.Join(s.opts.DataDir, "joblogs", k.Group, strings.TrimPrefix(k.Parent, workspaceParent("")), k.Name)
}

// logFiles lists the log files of a job (slash paths, sorted) with their
// sizes.
func logFiles(dir string) ([]string, map[string]int64, error) {
	var names []string
	sizes := map[string]int64{}
	for _, root := range logRoots {
		err := filepath.WalkDir(filepath.Join(dir, root), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			name := filepath.ToSlash(rel)
			names = append(names, name)
			sizes[name] = fi.Size()
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(names)
	return names, sizes, nil
}

// logAppendResult answers an append: the file's size after it.
type logAppendResult struct {
	Size int64 `json:"size"`
}

// logConflict refuses an append at the wrong offset: Size is where the
// file ends, for the writer to go on from.
type logConflict struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Size    int64  `json:"size"`
}

// jobRunAppendLog appends to one of a job's log files (appendLog).
func (s *Server) jobRunAppendLog(w http.ResponseWriter, r *http.Request) {
	j := jobOf(r)
	file := r.PathValue("file")
	if err := checkLogFile(file); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "InvalidPath", err.Error())
		return
	}
	dir := s.jobLogDir(j.obj.Key)
	s.appendLog(w, r, filepath.Join(dir, filepath.FromSlash(file)), file, func() (string, error) {
		names, _, err := logFiles(dir)
		if err != nil || len(names) < maxLogFiles {
			return "", err
		}
		return fmt.Sprintf("job %s has %d log files, the most a job may have", j.obj.Name, maxLogFiles), nil
	}, func() { s.jobEvents.notify(resourceID(j.obj.Key)) })
}

// sameBytes reads n bytes (fewer if it ends) from body and tells whether
// they are those of have, and whether the body ended within them.
func sameBytes(body, have io.Reader, n int64) (same, ended bool, err error) {
	a, b := make([]byte, 32<<10), make([]byte, 32<<10)
	for n > 0 {
		k, rerr := io.ReadFull(body, a[:min(n, int64(len(a)))])
		if k > 0 {
			if _, herr := io.ReadFull(have, b[:k]); herr != nil {
				return false, false, fmt.Errorf("reading the log file: %w", herr)
			}
			if !bytes.Equal(a[:k], b[:k]) {
				return false, false, nil
			}
			n -= int64(k)
		}
		switch {
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return true, true, nil
		case rerr != nil:
			return false, false, fmt.Errorf("reading the request body: %w", rerr)
		}
	}
	return true, false, nil
}

// endBody closes the connection after an answer that leaves the request
// body unread (see refuse).
func (s *Server) endBody(w http.ResponseWriter, r *http.Request) {
	if !hasBody(r) {
		return
	}
	w.Header().Set("Connection", "close")
	if err := http.NewResponseController(w).SetReadDeadline(time.Now()); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Error("ending a refused request's body", "err", err)
	}
}

// logPollLimit bounds a log long poll, as the agents' (longPoll).
const logPollLimit = longPoll

// jobLogs answers GET .../logs?from=FILE:OFFSET,...&wait=SECONDS with the
// bytes of each log file past its offset (0 for a file not named), waiting
// up to SECONDS (at most 25) for some, or for the job's state to change.
func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	q := r.URL.Query()
	from, err := parseLogOffsets(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 || secs != secs {
			writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("wait=%q: want seconds (a number >= 0; at most 25 are waited)", v))
			return
		}
		wait = logPollLimit
		if secs < logPollLimit.Seconds() {
			wait = time.Duration(secs * float64(time.Second))
		}
	}
	k := jobKey(rg, ws, name)
	id := resourceID(k)
	dir := s.jobLogDir(k)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	first := ""
	for {
		// Wait on the job before reading, so that a change between the
		// read and the wait is not missed.
		changed, release := s.jobEvents.wait(id)
		next, err := s.pollLogs(r, k, dir, from, &first, ctx.Err() != nil)
		if err != nil || next != nil {
			release()
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					storeError(w, err, "job "+name)
				} else {
					writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
				}
				return
			}
			if r.Context().Err() == nil { // else the reader left
				writeJSON(w, http.StatusOK, next)
			}
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
		}
		release()
	}
}

// pollLogs is one look for a log long poll: the answer, or nil to wait on.
// first is the job's state at the first look; last says the wait is over.
func (s *Server) pollLogs(r *http.Request, k store.Key, dir string, from map[string]int64, first *string, last bool) (*api.JobLogs, error) {
	j, err := s.readJob(r.Context(), k)
	if err != nil {
		return nil, err
	}
	state, msg := jobState(j.facts())
	if *first == "" {
		*first = state
	}
	chunks, complete, err := readLogs(dir, from, maxLogAnswer)
	if err != nil {
		return nil, err
	}
	done := api.JobTerminal(state) && complete
	if len(chunks) > 0 || done || state != *first || last {
		return &api.JobLogs{Status: state, StatusMessage: msg, Chunks: chunks, Done: done}, nil
	}
	return nil, nil
}

// parseLogOffsets reads FILE:OFFSET,... (log file names hold neither ','
// nor ':').
func parseLogOffsets(v string) (map[string]int64, error) {
	out := map[string]int64{}
	if v == "" {
		return out, nil
	}
	for _, part := range strings.Split(v, ",") {
		file, n, ok := strings.Cut(part, ":")
		off, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil || off < 0 {
			return nil, fmt.Errorf("from=%s: %s is not FILE:OFFSET (e.g. user_logs/std_log.txt:1024)", quoteName(v), quoteName(part))
		}
		if err := checkLogFile(file); err != nil {
			return nil, fmt.Errorf("from: %w", err)
		}
		out[file] = off
	}
	return out, nil
}

// readLogs reads what the log files of dir hold past the offsets, up to
// budget bytes in all; complete tells whether that is all of it.
func readLogs(dir string, from map[string]int64, budget int64) (chunks []api.JobLogChunk, complete bool, err error) {
	names, sizes, err := logFiles(dir)
	if err != nil {
		return nil, false, err
	}
	chunks, complete = []api.JobLogChunk{}, true
	for _, name := range names {
		off := min(from[name], sizes[name]) // an offset past the end reads nothing
		left := sizes[name] - off
		if left == 0 {
			continue
		}
		n := min(left, budget)
		if n < left {
			complete = false
		}
		if n == 0 {
			continue
		}
		data, err := readAt(filepath.Join(dir, filepath.FromSlash(name)), off, n)
		if err != nil {
			return nil, false, err
		}
		budget -= int64(len(data))
		chunks = append(chunks, api.JobLogChunk{File: name, Offset: off, Data: data})
	}
	return chunks, complete, nil
}

func readAt(path string, off, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	m, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:m], nil
}

// jobLogFile answers GET .../logs/{file...} with one log file as it is.
func (s *Server) jobLogFile(w http.ResponseWriter, r *http.Request) {
	rg, ws, name, file := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("file")
	if err := checkLogFile(file); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidPath", err.Error())
		return
	}
	k := jobKey(rg, ws, name)
	if _, err := s.store.Get(r.Context(), k); err != nil {
		storeError(w, err, "job "+name)
		return
	}
	dir := s.jobLogDir(k)
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(file)))
	if errors.Is(err, fs.ErrNotExist) {
		names, _, lerr := logFiles(dir)
		if lerr != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", lerr.Error())
			return
		}
		have := strings.Join(names, ", ")
		if have == "" {
			have = "none yet"
		}
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("job %s has no log file %s; log files: %s", name, file, have))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// notifier wakes those waiting on a key (a job's id) when it changes.
type notifier struct {
	mu    sync.Mutex
	watch map[string]*watchers
}

// watchers share the channel the next notify closes.
type watchers struct {
	ch   chan struct{}
	refs int
}

func newNotifier() *notifier { return &notifier{watch: map[string]*watchers{}} }

// wait returns a channel closed at the next notify of id, and the release
// to call when no longer waiting, so that keys nobody waits on are not
// kept.
func (n *notifier) wait(id string) (<-chan struct{}, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	w, ok := n.watch[id]
	if !ok {
		w = &watchers{ch: make(chan struct{})}
		n.watch[id] = w
	}
	w.refs++
	return w.ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.refs--
		if w.refs == 0 && n.watch[id] == w {
			delete(n.watch, id)
		}
	}
}

func (n *notifier) notify(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if w, ok := n.watch[id]; ok {
		close(w.ch)
		delete(n.watch, id)
	}
}

// keyedMutex is a mutex per key, kept while someone holds or waits for it.
// The zero value is ready.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
