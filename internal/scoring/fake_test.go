package scoring

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"outpost.dev/outpost/api"
)

// fakeRunAPI serves the deployment-run routes of api/deployrun.go for one
// deployment, in memory, over TLS on loopback: GET /spec, POST
// /logs/{instance}?offset=N (the job-run API's append rule: at the size
// appended, below it a retry of bytes it holds, else 409 with the size),
// and the datastore's list and file routes.
type fakeRunAPI struct {
	srv   *httptest.Server
	base  string
	caPEM string
	token string

	mu    sync.Mutex
	run   api.DeploymentRun
	files map[string][]byte // "<ds>/<path>"
	// lie maps "<ds>/<path>" to the digest the listing gives instead of
	// the file's own (the file route still sends the true one).
	lie  map[string]string
	logs map[string][]byte
}

const runRoute = "/deployrun/v1/resourceGroups/rg1/workspaces/ws1/onlineEndpoints/e1/deployments/blue"

func newFakeRunAPI(t *testing.T, run api.DeploymentRun) *fakeRunAPI {
	t.Helper()
	f := &fakeRunAPI{token: "d3pl0yment-t0ken", run: run, files: map[string][]byte{}, lie: map[string]string{}, logs: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+runRoute+"/spec", f.spec)
	mux.HandleFunc("POST "+runRoute+"/logs/{instance}", f.appendLog)
	mux.HandleFunc("GET "+runRoute+"/datastores/{ds}/files", f.list)
	mux.HandleFunc("GET "+runRoute+"/datastores/{ds}/files/{path...}", f.file)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			fakeError(w, http.StatusUnauthorized, "bad token")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.base = f.srv.URL + runRoute
	f.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}))
	return f
}

func fakeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Code: http.StatusText(code), Message: msg})
}

func (f *fakeRunAPI) put(ds, path, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[ds+"/"+path] = []byte(data)
}

func (f *fakeRunAPI) log(instance string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.logs[instance])
}

func (f *fakeRunAPI) spec(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(f.run)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (f *fakeRunAPI) list(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ds, prefix := r.PathValue("ds"), r.URL.Query().Get("prefix")
	out := []api.FileInfo{}
	for k, data := range f.files {
		d, p, _ := strings.Cut(k, "/")
		if d != ds {
			continue
		}
		under := prefix == "" || p == prefix ||
			(strings.HasSuffix(prefix, "/") && strings.HasPrefix(p, prefix)) ||
			(!strings.HasSuffix(prefix, "/") && strings.HasPrefix(p, prefix+"/"))
		if !under {
			continue
		}
		sum := digest(data)
		if l, ok := f.lie[k]; ok {
			sum = l
		}
		out = append(out, api.FileInfo{Path: p, Size: int64(len(data)), SHA256: sum, Mode: 0o644})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (f *fakeRunAPI) file(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	data, ok := f.files[r.PathValue("ds")+"/"+r.PathValue("path")]
	f.mu.Unlock()
	if !ok {
		fakeError(w, http.StatusNotFound, "no such file")
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("X-Content-SHA256", digest(data))
	w.Write(data)
}

func (f *fakeRunAPI) appendLog(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inst := r.PathValue("instance")
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || off < 0 {
		fakeError(w, http.StatusBadRequest, "bad offset")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fakeError(w, http.StatusBadRequest, err.Error())
		return
	}
	have := f.logs[inst]
	size := int64(len(have))
	conflict := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, `{"code":"Conflict","message":"log %s has %d bytes","size":%d}`, inst, size, size)
	}
	switch {
	case off > size:
		conflict()
		return
	case off < size:
		n := min(int64(len(body)), size-off)
		if string(have[off:off+n]) != string(body[:n]) {
			conflict()
			return
		}
		body = body[n:]
	}
	f.logs[inst] = append(have, body...)
	fmt.Fprintf(w, `{"size":%d}`, len(f.logs[inst]))
}
