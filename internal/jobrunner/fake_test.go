package jobrunner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"outpost.dev/outpost/api"
)

// fakeWorkspace serves the job-run routes of api/jobrun.go for one job,
// in memory, over TLS on loopback.
type fakeWorkspace struct {
	t     *testing.T
	srv   *httptest.Server
	base  string // the job-run API base
	caPEM string
	token string

	mu      sync.Mutex
	run     api.JobRun
	files   map[string]fakeFile // "<ds>/<path>"
	blobs   map[string][]byte   // hex digest
	phases  []api.JobPhase
	logs    map[string][]byte
	appends []appendRecord
	// specFailures answers GET /spec with 503 this many times first.
	specFailures int
	// loseAppendAnswer keeps the first append of each log but answers it
	// with 503, as if the answer had been lost on the way.
	loseAppendAnswer bool
	lostOnce         map[string]bool
	// logsDown answers every append with 503 while set.
	logsDown bool

	// metrics holds each source's records; metricPosts every POST.
	metrics     map[string][]api.MetricRecord
	metricPosts []metricPost
	// metricsDown answers every metrics append with 503 while set;
	// loseMetricsAnswer keeps the next append but answers it with 503;
	// metricsRefusal answers every append with this status.
	metricsDown       bool
	loseMetricsAnswer bool
	metricsRefusal    int
}

type metricPost struct {
	source string
	seq    int64
	n      int
	status int
}

type fakeFile struct {
	data []byte
	mode uint32
}

type appendRecord struct {
	file   string
	offset int64
	size   int
	status int
}

const jobRoute = "/jobrun/v1/resourceGroups/rg1/workspaces/ws1/jobs/job_1"

func newFakeWorkspace(t *testing.T, run api.JobRun) *fakeWorkspace {
	t.Helper()
	w := &fakeWorkspace{t: t, token: "s3cr3t-t0ken-value", run: run,
		files: map[string]fakeFile{}, blobs: map[string][]byte{}, logs: map[string][]byte{}, lostOnce: map[string]bool{},
		metrics: map[string][]api.MetricRecord{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+jobRoute+"/spec", w.spec)
	mux.HandleFunc("POST "+jobRoute+"/phase", w.phase)
	mux.HandleFunc("POST "+jobRoute+"/logs/{file...}", w.appendLog)
	mux.HandleFunc("POST "+jobRoute+"/metrics", w.appendMetrics)
	mux.HandleFunc("GET "+jobRoute+"/datastores/{ds}/files", w.list)
	mux.HandleFunc("GET "+jobRoute+"/datastores/{ds}/files/{path...}", w.file)
	mux.HandleFunc("HEAD "+jobRoute+"/blobs/{digest}", w.blob)
	mux.HandleFunc("PUT "+jobRoute+"/blobs/{digest}", w.blob)
	mux.HandleFunc("POST "+jobRoute+"/datastores/{ds}/commit", w.commit)
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+w.token {
			writeErr(rw, http.StatusUnauthorized, "bad token")
			return
		}
		mux.ServeHTTP(rw, r)
	}))
	// Connections cut by a test's end are no news.
	w.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	w.srv.StartTLS()
	t.Cleanup(w.srv.Close)
	w.base = w.srv.URL + jobRoute
	w.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.Certificate().Raw}))
	return w
}

func writeErr(rw http.ResponseWriter, code int, msg string) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	json.NewEncoder(rw).Encode(api.Error{Code: http.StatusText(code), Message: msg})
}

func writeJSONBody(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(v)
}

// put stores a file in the datastore.
func (w *fakeWorkspace) put(ds, path string, data string, mode uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files[ds+"/"+path] = fakeFile{[]byte(data), mode}
}

// get returns a file of the datastore.
func (w *fakeWorkspace) get(ds, path string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, ok := w.files[ds+"/"+path]
	return string(f.data), ok
}

func (w *fakeWorkspace) log(file string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.logs[file])
}

func (w *fakeWorkspace) phaseNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.phases {
		out = append(out, p.Phase)
	}
	return out
}

func (w *fakeWorkspace) spec(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.specFailures > 0 {
		w.specFailures--
		writeErr(rw, http.StatusServiceUnavailable, "restarting")
		return
	}
	writeJSONBody(rw, w.run)
}

func (w *fakeWorkspace) phase(rw http.ResponseWriter, r *http.Request) {
	var p api.JobPhase
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		writeErr(rw, http.StatusBadRequest, err.Error())
		return
	}
	w.mu.Lock()
	w.phases = append(w.phases, p)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

func (w *fakeWorkspace) appendLog(rw http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil {
		writeErr(rw, http.StatusBadRequest, "offset: "+err.Error())
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(rw, http.StatusBadRequest, err.Error())
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	rec := appendRecord{file: file, offset: off, size: len(data)}
	defer func() { w.appends = append(w.appends, rec) }()
	if w.logsDown {
		rec.status = http.StatusServiceUnavailable
		writeErr(rw, rec.status, "down")
		return
	}
	cur := int64(len(w.logs[file]))
	if off != cur {
		rec.status = http.StatusConflict
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusConflict)
		json.NewEncoder(rw).Encode(map[string]any{"code": "Conflict", "message": "wrong offset", "size": cur})
		return
	}
	w.logs[file] = append(w.logs[file], data...)
	if w.loseAppendAnswer && !w.lostOnce[file] {
		w.lostOnce[file] = true
		rec.status = http.StatusServiceUnavailable
		writeErr(rw, rec.status, "answer lost")
		return
	}
	rec.status = http.StatusNoContent
	rw.WriteHeader(rec.status)
}

func (w *fakeWorkspace) list(rw http.ResponseWriter, r *http.Request) {
	ds, prefix := r.PathValue("ds"), r.URL.Query().Get("prefix")
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []api.FileInfo{}
	for k, f := range w.files {
		d, p, _ := strings.Cut(k, "/")
		if d != ds {
			continue
		}
		match := prefix == "" || (strings.HasSuffix(prefix, "/") && strings.HasPrefix(p, prefix)) ||
			(!strings.HasSuffix(prefix, "/") && (p == prefix || strings.HasPrefix(p, prefix+"/")))
		if match {
			sum := sha256.Sum256(f.data)
			out = append(out, api.FileInfo{Path: p, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:]), Mode: f.mode})
		}
	}
	writeJSONBody(rw, out)
}

func (w *fakeWorkspace) file(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	f, ok := w.files[r.PathValue("ds")+"/"+r.PathValue("path")]
	w.mu.Unlock()
	if !ok {
		writeErr(rw, http.StatusNotFound, "no such file")
		return
	}
	sum := sha256.Sum256(f.data)
	rw.Header().Set("X-Content-SHA256", hex.EncodeToString(sum[:]))
	rw.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	rw.Write(f.data)
}

func (w *fakeWorkspace) blob(rw http.ResponseWriter, r *http.Request) {
	h, ok := strings.CutPrefix(r.PathValue("digest"), "sha256:")
	if !ok {
		writeErr(rw, http.StatusBadRequest, "digest")
		return
	}
	if r.Method == http.MethodHead {
		w.mu.Lock()
		_, there := w.blobs[h]
		w.mu.Unlock()
		if !there {
			rw.WriteHeader(http.StatusNotFound)
		}
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(rw, http.StatusBadRequest, err.Error())
		return
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != h {
		writeErr(rw, http.StatusBadRequest, "digest mismatch")
		return
	}
	w.mu.Lock()
	w.blobs[h] = data
	w.mu.Unlock()
	rw.WriteHeader(http.StatusCreated)
}

func (w *fakeWorkspace) commit(rw http.ResponseWriter, r *http.Request) {
	var req api.CommitRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(rw, http.StatusBadRequest, err.Error())
		return
	}
	ds := r.PathValue("ds")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range req.Files {
		if b, ok := w.blobs[f.SHA256]; !ok || int64(len(b)) != f.Size {
			writeErr(rw, http.StatusBadRequest, "missing blob for "+f.Path)
			return
		}
	}
	for _, f := range req.Files {
		w.files[ds+"/"+f.Path] = fakeFile{bytes.Clone(w.blobs[f.SHA256]), f.Mode}
	}
	writeJSONBody(rw, req.Files)
}

// appendMetrics keeps a batch as the workspace does: records before the
// source's count are a retry, a batch past it is a gap (409 with the
// count).
func (w *fakeWorkspace) appendMetrics(rw http.ResponseWriter, r *http.Request) {
	var req api.MetricsAppend
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(rw, http.StatusBadRequest, err.Error())
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	post := metricPost{source: req.Source, seq: req.Seq, n: len(req.Records)}
	defer func() { w.metricPosts = append(w.metricPosts, post) }()
	have := int64(len(w.metrics[req.Source]))
	switch {
	case w.metricsDown:
		post.status = http.StatusServiceUnavailable
		writeErr(rw, post.status, "down")
		return
	case w.metricsRefusal != 0:
		post.status = w.metricsRefusal
		writeErr(rw, post.status, "refused")
		return
	case req.Seq > have:
		post.status = http.StatusConflict
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(post.status)
		json.NewEncoder(rw).Encode(map[string]any{"code": "Conflict", "message": "gap", "count": have})
		return
	}
	if skip := have - req.Seq; skip < int64(len(req.Records)) {
		w.metrics[req.Source] = append(w.metrics[req.Source], req.Records[skip:]...)
	}
	if w.loseMetricsAnswer {
		w.loseMetricsAnswer = false
		post.status = http.StatusServiceUnavailable
		writeErr(rw, post.status, "answer lost")
		return
	}
	post.status = http.StatusOK
	writeJSONBody(rw, api.MetricsAppendResult{Count: int64(len(w.metrics[req.Source]))})
}

// metricKeys lists a source's records as type:key=value@step.
func (w *fakeWorkspace) metricKeys(source string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, r := range w.metrics[source] {
		out = append(out, fmt.Sprintf("%s:%s=%s@%d", r.Type, r.Key, r.Value, r.Step))
	}
	return out
}
