package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// env is a Store behind a mux with the workspace's routes, and a Client of it.
type env struct {
	t     *testing.T
	st    *Store
	dir   string
	c     *Client
	srv   *httptest.Server
	puts  atomic.Int64
	mu    sync.Mutex
	scope Scope
	// failPut, while above 0, breaks that many blob PUTs' connections
	// before any answer.
	failPut atomic.Int64
	// beforePut, when set, runs before each blob PUT is served.
	beforePut func()
}

const token = "test-token-0123456789"

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "workspace.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := Open(filepath.Join(dir, "artifacts"), db)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, dir: filepath.Join(dir, "artifacts")}
	scope := func() Scope {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.scope
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws/datastores/{ds}/files", func(w http.ResponseWriter, r *http.Request) {
		st.ServeList(w, r, r.PathValue("ds"), scope())
	})
	mux.HandleFunc("GET /ws/datastores/{ds}/files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		st.ServeFile(w, r, r.PathValue("ds"), r.PathValue("path"), scope())
	})
	mux.HandleFunc("HEAD /ws/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		st.ServeBlob(w, r, r.PathValue("digest"))
	})
	mux.HandleFunc("PUT /ws/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		if e.failPut.Add(-1) >= 0 {
			// A connection that breaks mid-request, as a network does.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		e.puts.Add(1)
		if e.beforePut != nil {
			e.beforePut()
		}
		st.ServeBlob(w, r, r.PathValue("digest"))
	})
	mux.HandleFunc("POST /ws/datastores/{ds}/commit", func(w http.ResponseWriter, r *http.Request) {
		st.ServeCommit(w, r, r.PathValue("ds"), scope())
	})
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	e.srv = httptest.NewServer(auth)
	t.Cleanup(e.srv.Close)
	e.c = &Client{HTTP: e.srv.Client(), Base: e.srv.URL + "/ws", Token: token}
	return e
}

func (e *env) setScope(sc Scope) {
	e.mu.Lock()
	e.scope = sc
	e.mu.Unlock()
}

// readTree returns the files under dir: path -> content, and their modes.
func readTree(t *testing.T, dir string) (map[string]string, map[string]os.FileMode) {
	t.Helper()
	files, modes := map[string]string{}, map[string]os.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(data)
		modes[filepath.ToSlash(rel)] = info.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, modes
}

func TestUploadAndDownloadFolder(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	var progress bytes.Buffer
	e.c.Progress = &progress
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"train.py":          "print('hi')\n",
		"lib/util.py":       "x = 1\n",
		"lib/same.txt":      "same",
		"copy/same.txt":     "same", // one blob for both
		"100% _odd #?.txt":  "odd names travel",
		"logs/run.log":      "ignored",
		".amlignore":        "*.log\n",
		".git/HEAD":         "ref: refs/heads/main",
		"empty":             "",
		"scripts/run.sh":    "#!/bin/sh\necho run\n",
		"deep/a/b/c/d/e.md": "deep",
	})
	if err := os.Chmod(filepath.Join(src, "scripts/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := Scan(src, UploadOptions{Ignore: true})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "LocalUpload/" + TreeDigest(files) + "/src/"
	if err := e.c.UploadFiles(ctx, files, Datastore, prefix); err != nil {
		t.Fatal(err)
	}
	// Nine files, eight blobs: the two same.txt are one.
	if n := e.puts.Load(); n != 8 {
		t.Errorf("%d blobs sent, want 8", n)
	}
	if !strings.Contains(progress.String(), "uploaded to azureml://datastores/workspaceblobstore/paths/"+prefix+": 9 files") {
		t.Errorf("progress %q lacks the summary", progress.String())
	}

	// The same folder again sends nothing.
	if err := e.c.UploadDir(ctx, src, Datastore, prefix, UploadOptions{Ignore: true}); err != nil {
		t.Fatal(err)
	}
	if n := e.puts.Load(); n != 8 {
		t.Errorf("a second upload of the same folder sent %d blobs", n-8)
	}

	listed, err := e.c.List(ctx, Datastore, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 9 {
		t.Errorf("listed %d files, want 9: %+v", len(listed), listed)
	}
	for _, p := range []string{prefix, strings.TrimSuffix(prefix, "/"), prefix + "lib/util.py", prefix + "lib"} {
		if ok, err := e.c.Exists(ctx, Datastore, p); err != nil || !ok {
			t.Errorf("Exists(%q) = %v, %v; want true", p, ok, err)
		}
	}
	for _, p := range []string{prefix + "li", prefix + "logs/run.log", prefix + ".git/HEAD", "LocalUpload/other/"} {
		if ok, err := e.c.Exists(ctx, Datastore, p); err != nil || ok {
			t.Errorf("Exists(%q) = %v, %v; want false", p, ok, err)
		}
	}

	// The folder comes back whole, modes included.
	dest := filepath.Join(t.TempDir(), "wd")
	n, err := e.c.Download(ctx, Datastore, prefix, dest)
	if err != nil {
		t.Fatal(err)
	}
	got, modes := readTree(t, dest)
	want := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f.Abs)
		if err != nil {
			t.Fatal(err)
		}
		want[f.Rel] = string(data)
	}
	if n != len(want) || !reflect.DeepEqual(got, want) {
		t.Errorf("downloaded %d files:\n%q\nwant\n%q", n, got, want)
	}
	if modes["scripts/run.sh"] != 0o755 || modes["train.py"] != 0o644 {
		t.Errorf("modes %v", modes)
	}

	// A folder named without its slash is the folder; a file is itself,
	// under its base name.
	dest2 := t.TempDir()
	if n, err := e.c.Download(ctx, Datastore, prefix+"lib", dest2); err != nil || n != 2 {
		t.Fatalf("Download of a folder without slash: %d, %v", n, err)
	}
	if n, err := e.c.Download(ctx, Datastore, prefix+"100% _odd #?.txt", dest2); err != nil || n != 1 {
		t.Fatalf("Download of a file: %d, %v", n, err)
	}
	got, _ = readTree(t, dest2)
	if want := map[string]string{"util.py": "x = 1\n", "same.txt": "same", "100% _odd #?.txt": "odd names travel"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := e.c.Download(ctx, Datastore, "nothing/here", t.TempDir()); !IsNotFound(err) {
		t.Errorf("Download of nothing: %v, want not found", err)
	}
}

func TestUploadFileAndPutBytes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(f, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.c.UploadFile(ctx, f, Datastore, "inputs/data.csv"); err != nil {
		t.Fatal(err)
	}
	rc, info, err := e.st.OpenFile(ctx, Datastore, "inputs/data.csv")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "a,b\n1,2\n" || info.Size != 8 || info.Mode != 0o644 {
		t.Fatalf("OpenFile: %q %+v %v", data, info, err)
	}

	if err := e.st.PutBytes(ctx, Datastore, "ExperimentRun/dcid.j/outputs/x.txt", []byte("made here")); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if _, err := e.c.Download(ctx, Datastore, "ExperimentRun/dcid.j/outputs/", dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := readTree(t, dest); !reflect.DeepEqual(got, map[string]string{"x.txt": "made here"}) {
		t.Errorf("got %q", got)
	}
	if err := e.st.PutBytes(ctx, "elsewhere", "x", nil); !IsNotFound(err) {
		t.Errorf("PutBytes to an unknown datastore: %v", err)
	}
}

// put sends a blob as is and returns the answer's status and error.
func (e *env) put(digest string, body []byte) (int, api.Error) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.c.Base+"/blobs/"+digest, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (int, api.Error) {
	e.t.Helper()
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.c.HTTP.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ae api.Error
	if resp.StatusCode/100 != 2 {
		if err := json.NewDecoder(resp.Body).Decode(&ae); err != nil && req.Method != http.MethodHead {
			e.t.Fatalf("%s %s: %s with no api.Error: %v", req.Method, req.URL, resp.Status, err)
		}
	}
	return resp.StatusCode, ae
}

func (e *env) head(digest string) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodHead, e.c.Base+"/blobs/"+digest, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	code, _ := e.do(req)
	return code
}

func (e *env) commit(files ...api.FileInfo) (int, api.Error) {
	e.t.Helper()
	data, err := json.Marshal(api.CommitRequest{Files: files})
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, e.c.Base+"/datastores/"+Datastore+"/commit", bytes.NewReader(data))
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

// tmpEmpty fails when an upload left something aside.
func (e *env) tmpEmpty() {
	e.t.Helper()
	left, err := os.ReadDir(filepath.Join(e.dir, "tmp"))
	if err != nil || len(left) != 0 {
		e.t.Errorf("uploads left behind: %v %v", left, err)
	}
}

func TestBlobChecks(t *testing.T) {
	e := newEnv(t)
	good := hashOf("good")
	if code, ae := e.put("sha256:"+good, []byte("evil")); code != http.StatusBadRequest || ae.Code != "DigestMismatch" {
		t.Errorf("PUT with another body: %d %+v, want 400 DigestMismatch", code, ae)
	}
	if code := e.head("sha256:" + good); code != http.StatusNotFound {
		t.Errorf("HEAD after a refused PUT: %d, want 404", code)
	}
	e.tmpEmpty()
	for _, d := range []string{good, "sha256:" + strings.ToUpper(good), "sha256:abc", "md5:" + good} {
		if code, ae := e.put(d, []byte("good")); code != http.StatusBadRequest || !strings.Contains(ae.Message, "sha256:<64 lower-case hex digits>") {
			t.Errorf("PUT %s: %d %+v, want 400 saying the form", d, code, ae)
		}
	}
	for i := 0; i < 2; i++ { // idempotent
		if code, ae := e.put("sha256:"+good, []byte("good")); code != http.StatusOK {
			t.Errorf("PUT %d: %d %+v", i, code, ae)
		}
	}
	if code := e.head("sha256:" + good); code != http.StatusOK {
		t.Errorf("HEAD: %d, want 200", code)
	}
	info, err := os.Stat(filepath.Join(e.dir, "blobs", "sha256", good[:2], good))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("blob file: %v %v, want mode 0600", info, err)
	}
	if info, err := os.Stat(filepath.Join(e.dir, "blobs", "sha256", good[:2])); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("blob folder: %v %v, want mode 0700", info, err)
	}

	e.st.MaxBlobBytes = 10
	big := strings.Repeat("x", 11)
	if code, ae := e.put("sha256:"+hashOf(big), []byte(big)); code != http.StatusRequestEntityTooLarge || !strings.Contains(ae.Message, "limit of 10 B") {
		t.Errorf("PUT over the limit: %d %+v, want 413", code, ae)
	}
	// Without a length the limit is found while reading.
	req, err := http.NewRequest(http.MethodPut, e.c.Base+"/blobs/sha256:"+hashOf(big), io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	if code, _ := e.do(req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked PUT over the limit: %d, want 413", code)
	}
	if code := e.head("sha256:" + hashOf(big)); code != http.StatusNotFound {
		t.Errorf("HEAD after a refused PUT: %d, want 404", code)
	}
	e.tmpEmpty()
}

func TestCommitAllOrNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	have := hashOf("have")
	if code, _ := e.put("sha256:"+have, []byte("have")); code != http.StatusOK {
		t.Fatal(code)
	}
	missing := hashOf("missing")
	code, ae := e.commit(
		api.FileInfo{Path: "out/a", SHA256: have, Size: 4},
		api.FileInfo{Path: "out/b", SHA256: missing, Size: 7},
	)
	if code != http.StatusBadRequest || !strings.Contains(ae.Message, "out/b") || strings.Contains(ae.Message, "out/a") {
		t.Errorf("commit with a missing blob: %d %+v, want 400 naming out/b only", code, ae)
	}
	code, ae = e.commit(api.FileInfo{Path: "out/a", SHA256: have, Size: 5})
	if code != http.StatusBadRequest || !strings.Contains(ae.Message, "has 4 bytes") {
		t.Errorf("commit with a wrong size: %d %+v, want 400", code, ae)
	}
	if files, err := e.st.List(ctx, Datastore, ""); err != nil || len(files) != 0 {
		t.Fatalf("after refused commits: %+v %v, want nothing", files, err)
	}

	for _, tc := range []struct {
		f   api.FileInfo
		msg string
	}{
		{api.FileInfo{Path: "../x", SHA256: have, Size: 4}, `".." segments`},
		{api.FileInfo{Path: "/etc/x", SHA256: have, Size: 4}, "must be relative"},
		{api.FileInfo{Path: "a//b", SHA256: have, Size: 4}, "empty segment"},
		{api.FileInfo{Path: "dir/", SHA256: have, Size: 4}, "empty segment"},
		{api.FileInfo{Path: "a", SHA256: "sha256:" + have, Size: 4}, "64 lower-case hex"},
		{api.FileInfo{Path: "a", SHA256: have, Size: 4, Mode: 0o4755}, "only permission bits"},
	} {
		if code, ae := e.commit(tc.f); code != http.StatusBadRequest || !strings.Contains(ae.Message, tc.msg) {
			t.Errorf("commit %+v: %d %+v, want 400 with %q", tc.f, code, ae, tc.msg)
		}
	}
	if code, ae := e.commit(api.FileInfo{Path: "a", SHA256: have, Size: 4}, api.FileInfo{Path: "a", SHA256: have, Size: 4}); code != http.StatusBadRequest || !strings.Contains(ae.Message, "twice") {
		t.Errorf("commit of a path twice: %d %+v", code, ae)
	}
	req, err := http.NewRequest(http.MethodPost, e.c.Base+"/datastores/"+Datastore+"/commit", strings.NewReader(`{"files":[],"extra":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if code, ae := e.do(req); code != http.StatusBadRequest || !strings.Contains(ae.Message, "extra") {
		t.Errorf("commit with an unknown field: %d %+v", code, ae)
	}

	// A path already there is replaced.
	if code, ae := e.commit(api.FileInfo{Path: "out/a", SHA256: have, Size: 4}); code != http.StatusOK {
		t.Fatalf("%d %+v", code, ae)
	}
	if err := e.st.PutBytes(ctx, Datastore, "out/a", []byte("newer")); err != nil {
		t.Fatal(err)
	}
	if files, err := e.st.List(ctx, Datastore, "out/"); err != nil || len(files) != 1 || files[0].SHA256 != hashOf("newer") || files[0].Mode != 0o644 {
		t.Errorf("after replacing: %+v %v", files, err)
	}
}

func TestDownloadVerifies(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if err := e.st.PutBytes(ctx, Datastore, "d/ok.txt", []byte("fine")); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutBytes(ctx, Datastore, "d/bad.txt", []byte("original")); err != nil {
		t.Fatal(err)
	}
	h := hashOf("original")
	// The same length: only the digest can tell.
	if err := os.WriteFile(filepath.Join(e.dir, "blobs", "sha256", h[:2], h), []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	_, err := e.c.Download(ctx, Datastore, "d/", dest)
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") || !strings.Contains(err.Error(), "d/bad.txt") {
		t.Fatalf("Download of a damaged file: %v, want a digest error naming it", err)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Name() != "ok.txt" {
			t.Errorf("left in dest: %s", en.Name())
		}
	}
	// The server's own reader says so too.
	rc, _, err := e.st.OpenFile(ctx, Datastore, "d/bad.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("OpenFile of a damaged blob read: %v", err)
	}
}

func TestScopes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for _, p := range []string{"code/main.py", "secret/key", "out/x"} {
		if err := e.st.PutBytes(ctx, Datastore, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	e.setScope(Scope{
		Read:  func(ds, p string) bool { return ds == Datastore && strings.HasPrefix(p, "code/") },
		Write: func(ds, p string) bool { return ds == Datastore && strings.HasPrefix(p, "out/") },
	})
	files, err := e.c.List(ctx, Datastore, "")
	if err != nil || len(files) != 1 || files[0].Path != "code/main.py" {
		t.Errorf("List under a scope: %+v %v, want code/main.py only", files, err)
	}
	var se *StatusError
	if _, err := e.c.Download(ctx, Datastore, "secret/", t.TempDir()); !IsNotFound(err) {
		t.Errorf("Download of an unreadable folder: %v, want not found", err)
	}
	req, err := http.NewRequest(http.MethodGet, e.c.Base+"/datastores/"+Datastore+"/files/secret/key", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, ae := e.do(req); code != http.StatusForbidden || !strings.Contains(ae.Message, "secret/key") {
		t.Errorf("GET of an unreadable file: %d %+v, want 403", code, ae)
	}

	src := t.TempDir()
	writeTree(t, src, map[string]string{"model.bin": "weights", "sub/log": "l"})
	err = e.c.UploadDir(ctx, src, Datastore, "code/", UploadOptions{})
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || !strings.Contains(err.Error(), "code/model.bin") || !strings.Contains(err.Error(), "code/sub/log") {
		t.Errorf("upload outside the write scope: %v, want 403 naming the paths", err)
	}
	e.setScope(Scope{})
	if files, err := e.c.List(ctx, Datastore, "code/"); err != nil || len(files) != 1 {
		t.Errorf("after a refused upload: %+v %v", files, err)
	}
	e.setScope(Scope{Write: func(ds, p string) bool { return strings.HasPrefix(p, "out/") }})
	if err := e.c.UploadDir(ctx, src, Datastore, "out/run/", UploadOptions{}); err != nil {
		t.Errorf("upload inside the write scope: %v", err)
	}

	if _, err := e.c.List(ctx, "otherstore", ""); !IsNotFound(err) || !strings.Contains(err.Error(), "workspaceblobstore") {
		t.Errorf("List of an unknown datastore: %v, want 404 naming the known one", err)
	}
}

// TestDownloadRefusesEscapes serves listings that would write outside dest.
func TestDownloadRefusesEscapes(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	dest := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dest, "link")); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../evil", "a/../../evil", "/etc/evil", "link/evil"} {
		t.Run(path, func(t *testing.T) {
			body := "pwned"
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/files") {
					writeJSON(w, http.StatusOK, []api.FileInfo{{Path: path, Size: int64(len(body)), SHA256: hashOf(body)}})
					return
				}
				w.Header().Set("X-Content-SHA256", hashOf(body))
				io.WriteString(w, body)
			}))
			defer srv.Close()
			c := &Client{HTTP: srv.Client(), Base: srv.URL, Token: token}
			if _, err := c.Download(ctx, Datastore, "", dest); err == nil {
				t.Errorf("Download of %s succeeded", path)
			}
			left, err := os.ReadDir(outside)
			if err != nil || len(left) != 0 {
				t.Errorf("written outside dest: %v %v", left, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dest), "evil")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file escaped dest: %v", err)
	}
}

func TestUploadRetriesBrokenConnections(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "a"})
	defer func(d time.Duration) { retryDelay = d }(retryDelay)
	retryDelay = time.Millisecond
	e.failPut.Store(2)
	if err := e.c.UploadDir(ctx, src, Datastore, "r/", UploadOptions{}); err != nil {
		t.Fatalf("upload with two broken connections: %v", err)
	}
	if ok, err := e.c.Exists(ctx, Datastore, "r/a"); err != nil || !ok {
		t.Fatalf("after retries: %v %v", ok, err)
	}
	e.failPut.Store(retries + 1)
	writeTree(t, src, map[string]string{"b": "b"})
	if err := e.c.UploadDir(ctx, src, Datastore, "s/", UploadOptions{}); err == nil || !strings.Contains(err.Error(), filepath.Join(src, "b")) {
		t.Fatalf("upload with every try broken: %v, want an error naming the file", err)
	}
	if ok, err := e.c.Exists(ctx, Datastore, "s/"); err != nil || ok {
		t.Fatalf("after a failed upload: %v %v, want nothing recorded", ok, err)
	}
}

func TestUploadChecksArguments(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for _, prefix := range []string{"noslash", "/abs/", "a/../b/"} {
		if err := e.c.UploadFiles(ctx, nil, Datastore, prefix); err == nil {
			t.Errorf("UploadFiles under %q succeeded", prefix)
		}
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.c.UploadFile(ctx, f, Datastore, "dir/"); err == nil {
		t.Error("UploadFile to a folder path succeeded")
	}
	bad := &Client{HTTP: e.srv.Client(), Base: e.c.Base, Token: "wrong"}
	if _, err := bad.List(ctx, Datastore, ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("List with a wrong token: %v", err)
	}
}

// lines is a Progress writer that tells when a line holding want came.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.seen != nil && strings.Contains(l.buf.String(), l.want) {
		close(l.seen)
		l.seen = nil
	}
	return len(p), nil
}

func TestProgressWhileTransferring(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	out := &lines{want: "uploading code: 0 of 1 files, ", seen: make(chan struct{})}
	seen := out.seen
	e.c.Progress, e.c.Label = out, "code"
	// The blob is held until a progress line has said where it stands.
	e.beforePut = func() { <-seen }
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.txt": "hello"})
	if err := e.c.UploadDir(ctx, src, Datastore, "up/", UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	last := out.buf.String()[strings.LastIndex(strings.TrimSuffix(out.buf.String(), "\n"), "\n")+1:]
	if !strings.HasPrefix(last, "uploaded code to azureml://datastores/workspaceblobstore/paths/up/: 1 files, 5 B (sent 5 B, 0 B already there) (") {
		t.Errorf("the summary is %q", last)
	}
}
