package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/atomicfile"
	"outpost.dev/outpost/internal/store"
)

// DefaultMaxBlobBytes bounds one blob (one file) unless Store.MaxBlobBytes
// says otherwise.
const DefaultMaxBlobBytes int64 = 2 << 30

// maxCommitBytes bounds a commit's JSON (about 100 bytes a file).
const maxCommitBytes = 16 << 20

// idleTimeout ends a blob transfer that moved no byte for this long. The
// whole transfer has no deadline: a big file on a slow link takes what it
// takes.
const idleTimeout = 2 * time.Minute

// Store is the server side: blobs on disk and the datastores' index.
type Store struct {
	dir string // blobs under dir/blobs/sha256, uploads in progress under dir/tmp
	st  *store.Store
	// MaxBlobBytes bounds one uploaded blob (413 beyond).
	MaxBlobBytes int64
}

// Scope limits a caller: nil funcs allow everything (the admin). ds and
// path are the datastore and the file path.
type Scope struct {
	Read  func(ds, path string) bool
	Write func(ds, path string) bool
}

func (sc Scope) canRead(ds, p string) bool  { return sc.Read == nil || sc.Read(ds, p) }
func (sc Scope) canWrite(ds, p string) bool { return sc.Write == nil || sc.Write(ds, p) }

// Open opens the artifact store under dir: blobs under
// dir/blobs/sha256/<2 hex>/<hex> (folders 0700, files 0600), the index in
// st. Uploads a crash interrupted are removed.
func Open(dir string, st *store.Store) (*Store, error) {
	s := &Store{dir: dir, st: st, MaxBlobBytes: DefaultMaxBlobBytes}
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("artifact store %s: removing interrupted uploads: %w", dir, err)
	}
	for _, d := range []string{filepath.Join(dir, "blobs", "sha256"), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("artifact store %s: %w", dir, err)
		}
	}
	return s, nil
}

func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

func (s *Store) blobPath(hexDigest string) string {
	return filepath.Join(s.dir, "blobs", "sha256", hexDigest[:2], hexDigest)
}

// knownDatastore tells the datastores this workspace has.
func knownDatastore(ds string) bool { return ds == Datastore }

func unknownDatastore(ds string) error {
	return &StatusError{Status: http.StatusNotFound, Code: "NotFound",
		Message: fmt.Sprintf("datastore %q not found: this workspace has %s", ds, Datastore)}
}

// isHexDigest tells a sha256 in lower-case hex.
func isHexDigest(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// parseDigest takes "sha256:<64 lower-case hex>" and returns the hex.
func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !isHexDigest(h) {
		return "", fmt.Errorf("blob digest %q: want sha256:<64 lower-case hex digits>", d)
	}
	return h, nil
}

// checkPrefix tells a listing prefix: empty, a clean path, or a clean path
// and a slash.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	return CheckPath(strings.TrimSuffix(p, "/"))
}

// List returns the files of a datastore under prefix: "" is everything,
// "dir/" a folder's files; a path without the slash is the file of that
// name and the files of the folder of that name.
func (s *Store) List(ctx context.Context, ds, prefix string) ([]api.FileInfo, error) {
	if !knownDatastore(ds) {
		return nil, unknownDatastore(ds)
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, &StatusError{Status: http.StatusBadRequest, Code: "InvalidPath", Message: "prefix: " + err.Error()}
	}
	var out []api.FileInfo
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		f, err := s.st.GetFile(ctx, ds, prefix)
		switch {
		case err == nil:
			out = append(out, fileInfo(f))
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		prefix += "/"
	}
	rows, err := s.st.ListFiles(ctx, ds, prefix)
	if err != nil {
		return nil, err
	}
	for _, f := range rows {
		out = append(out, fileInfo(f))
	}
	return out, nil
}

// Exists tells whether prefix names a file, or a folder with at least one
// file, in the datastore.
func (s *Store) Exists(ctx context.Context, ds, prefix string) (bool, error) {
	files, err := s.List(ctx, ds, prefix)
	return len(files) > 0, err
}

func fileInfo(f store.FileRow) api.FileInfo {
	return api.FileInfo{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Mode: f.Mode}
}

// OpenFile opens a file of a datastore. Reading it to the end checks its
// bytes against its digest: the last Read fails when they differ.
func (s *Store) OpenFile(ctx context.Context, ds, path string) (io.ReadCloser, api.FileInfo, error) {
	if !knownDatastore(ds) {
		return nil, api.FileInfo{}, unknownDatastore(ds)
	}
	f, err := s.st.GetFile(ctx, ds, path)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.FileInfo{}, &StatusError{Status: http.StatusNotFound, Code: "NotFound",
			Message: fmt.Sprintf("datastore %s has no file %s", ds, path)}
	}
	if err != nil {
		return nil, api.FileInfo{}, err
	}
	b, err := os.Open(s.blobPath(f.SHA256))
	if err != nil {
		return nil, api.FileInfo{}, fmt.Errorf("datastore %s: file %s: its content (blob sha256:%s) is missing: %w", ds, path, f.SHA256, err)
	}
	info := fileInfo(f)
	return &verifyReader{r: b, c: b, h: sha256.New(), want: f.SHA256, size: f.Size, name: ds + "/" + path}, info, nil
}

// ErrDamaged is a stored file whose bytes are not those it was recorded
// with: the disk under the store has changed them.
var ErrDamaged = errors.New("content does not match its digest")

// verifyReader checks what it passes on against a digest and size.
type verifyReader struct {
	r    io.Reader
	c    io.Closer
	h    hash.Hash
	n    int64
	want string
	size int64
	name string
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); v.n != v.size || got != v.want {
			return n, fmt.Errorf("%s: %w: %d bytes with sha256 %s, want %d bytes with sha256 %s", v.name, ErrDamaged, v.n, got, v.size, v.want)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.c.Close() }

// PutBytes records data as a file of a datastore (mode 0644), for the
// workspace's own files.
func (s *Store) PutBytes(ctx context.Context, ds, path string, data []byte) error {
	if !knownDatastore(ds) {
		return unknownDatastore(ds)
	}
	if err := CheckPath(path); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	if _, err := s.putBlob(bytes.NewReader(data), h, int64(len(data))); err != nil {
		return err
	}
	return s.st.PutFiles(ctx, ds, []store.FileRow{{Path: path, SHA256: h, Size: int64(len(data)), Mode: 0o644}})
}

// blobSize returns the size of a blob, and false when it is absent.
func (s *Store) blobSize(h string) (int64, bool, error) {
	st, err := os.Stat(s.blobPath(h))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return st.Size(), true, nil
}

// errDigest is a body that is not what its digest says.
var errDigest = errors.New("digest mismatch")

// putBlob stores r as the blob h when its bytes hash to h, reading at most
// limit bytes (a *http.MaxBytesError beyond). It is written aside and
// renamed in place once complete and on disk, so a blob is whole or
// absent. It returns the blob's size.
func (s *Store) putBlob(r io.Reader, h string, limit int64) (int64, error) {
	if n, ok, err := s.blobSize(h); err != nil || ok {
		return n, err
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "blob-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()
	hh := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, hh), io.LimitReader(r, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, &http.MaxBytesError{Limit: limit}
	}
	if got := hex.EncodeToString(hh.Sum(nil)); got != h {
		return n, fmt.Errorf("%w: the body's sha256 is %s, not %s", errDigest, got, h)
	}
	if err := tmp.Sync(); err != nil {
		return n, err
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	dst := s.blobPath(h)
	shard := filepath.Dir(dst)
	// The rename (and a new shard folder) must be on disk before a commit
	// that names the blob is.
	newShard := false
	if err := os.Mkdir(shard, 0o700); err == nil {
		newShard = true
	} else if !errors.Is(err, os.ErrExist) {
		return n, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return n, err
	}
	if err := atomicfile.SyncDir(shard); err != nil {
		return n, err
	}
	if newShard {
		if err := atomicfile.SyncDir(filepath.Dir(shard)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// idleDeadline moves a connection's read (or write) deadline forward on
// every read (write), so that a transfer ends only when it stalls.
type idleDeadline struct {
	rc    *http.ResponseController
	write bool
	r     io.Reader
	w     io.Writer
}

func (d *idleDeadline) extend() {
	t := time.Now().Add(idleTimeout)
	// ErrNotSupported: not a network connection, nothing to bound.
	if d.write {
		_ = d.rc.SetWriteDeadline(t)
	} else {
		_ = d.rc.SetReadDeadline(t)
	}
}

func (d *idleDeadline) Read(p []byte) (int, error) {
	d.extend()
	return d.r.Read(p)
}

func (d *idleDeadline) Write(p []byte) (int, error) {
	d.extend()
	return d.w.Write(p)
}

// ServeBlob answers HEAD (200 when the blob is there, else 404) and PUT (the
// body is kept when its sha256 is the digest, "sha256:<hex>"; else 400 and
// nothing kept; 413 over MaxBlobBytes) on a blob. A PUT of a blob already
// there succeeds without reading the body.
func (s *Store) ServeBlob(w http.ResponseWriter, r *http.Request, digest string) {
	h, err := parseDigest(digest)
	if err != nil {
		writeError(w, &StatusError{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: err.Error()})
		return
	}
	switch r.Method {
	case http.MethodHead:
		n, ok, err := s.blobSize(h)
		if err != nil {
			writeError(w, err)
			return
		}
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusOK)
	case http.MethodPut:
		if r.ContentLength > s.MaxBlobBytes {
			writeError(w, tooLarge(digest, s.MaxBlobBytes))
			return
		}
		body := &idleDeadline{rc: http.NewResponseController(w), r: r.Body}
		n, err := s.putBlob(body, h, s.MaxBlobBytes)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, tooLarge(digest, s.MaxBlobBytes))
		case errors.Is(err, errDigest):
			writeError(w, &StatusError{Status: http.StatusBadRequest, Code: "DigestMismatch", Message: "blob " + digest + ": " + err.Error()})
		case err != nil && r.ContentLength >= 0 && n < r.ContentLength:
			writeError(w, &StatusError{Status: http.StatusBadRequest, Code: "InvalidRequest",
				Message: fmt.Sprintf("blob %s: body ended after %d of %d bytes: %v", digest, n, r.ContentLength, err)})
		case err != nil:
			writeError(w, err)
		default:
			writeJSON(w, http.StatusOK, map[string]any{"digest": digest, "size": n})
		}
	default:
		w.Header().Set("Allow", "HEAD, PUT")
		writeError(w, &StatusError{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: r.Method + " on a blob: use HEAD or PUT"})
	}
}

func tooLarge(digest string, limit int64) error {
	return &StatusError{Status: http.StatusRequestEntityTooLarge, Code: "RequestTooLarge",
		Message: fmt.Sprintf("blob %s: larger than the limit of %s a file", digest, humanBytes(limit))}
}

// ServeList answers GET ?prefix=P: the files under P (see List) that the
// scope may read, as a JSON array of api.FileInfo.
func (s *Store) ServeList(w http.ResponseWriter, r *http.Request, ds string, sc Scope) {
	files, err := s.List(r.Context(), ds, r.URL.Query().Get("prefix"))
	if err != nil {
		writeError(w, err)
		return
	}
	out := []api.FileInfo{}
	for _, f := range files {
		if sc.canRead(ds, f.Path) {
			out = append(out, f)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// ServeFile answers GET (and HEAD) with a file's bytes; X-Content-SHA256
// (hex) and X-Content-Mode (octal) say what they are, for the client to
// check.
func (s *Store) ServeFile(w http.ResponseWriter, r *http.Request, ds, path string, sc Scope) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, &StatusError{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: r.Method + " on a file: use GET"})
		return
	}
	if !knownDatastore(ds) {
		writeError(w, unknownDatastore(ds))
		return
	}
	if err := CheckPath(path); err != nil {
		writeError(w, &StatusError{Status: http.StatusBadRequest, Code: "InvalidPath", Message: err.Error()})
		return
	}
	if !sc.canRead(ds, path) {
		writeError(w, &StatusError{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf("this credential may not read %s in datastore %s", path, ds)})
		return
	}
	rc, info, err := s.OpenFile(r.Context(), ds, path)
	if err != nil {
		writeError(w, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	h.Set("X-Content-SHA256", info.SHA256)
	h.Set("X-Content-Mode", "0"+strconv.FormatUint(uint64(info.Mode), 8))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// A damaged blob is found at its end, once every byte is sent: the
	// client's own check refuses it, saying why. Any other failure cuts
	// the answer short, which the client sees as such.
	if _, err := io.Copy(&idleDeadline{rc: http.NewResponseController(w), write: true, w: w}, rc); err != nil && !errors.Is(err, ErrDamaged) {
		panic(http.ErrAbortHandler)
	}
}

// ServeCommit answers POST api.CommitRequest: every path clean (400), every
// path writable by the scope (403), every blob uploaded with the size given
// (400 naming the missing ones); then all of them are recorded at once (a
// path already there is replaced) and the answer is the files recorded.
func (s *Store) ServeCommit(w http.ResponseWriter, r *http.Request, ds string, sc Scope) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, &StatusError{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: r.Method + " on a commit: use POST"})
		return
	}
	if !knownDatastore(ds) {
		writeError(w, unknownDatastore(ds))
		return
	}
	var req api.CommitRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCommitBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &StatusError{Status: http.StatusRequestEntityTooLarge, Code: "RequestTooLarge", Message: fmt.Sprintf("commit over %d bytes: commit fewer files at once", maxCommitBytes)})
			return
		}
		writeError(w, &StatusError{Status: http.StatusBadRequest, Code: "InvalidRequest", Message: "commit: " + err.Error()})
		return
	}
	files, err := s.commit(r.Context(), ds, req.Files, sc)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, files)
}

func (s *Store) commit(ctx context.Context, ds string, files []api.FileInfo, sc Scope) ([]api.FileInfo, error) {
	bad := func(code, msg string) error {
		return &StatusError{Status: http.StatusBadRequest, Code: code, Message: msg}
	}
	seen := make(map[string]bool, len(files))
	rows := make([]store.FileRow, 0, len(files))
	out := make([]api.FileInfo, 0, len(files))
	var denied []string
	for i, f := range files {
		if err := CheckPath(f.Path); err != nil {
			return nil, bad("InvalidPath", fmt.Sprintf("files[%d]: %v", i, err))
		}
		if seen[f.Path] {
			return nil, bad("InvalidRequest", fmt.Sprintf("files[%d]: %s is in the commit twice", i, f.Path))
		}
		seen[f.Path] = true
		if !isHexDigest(f.SHA256) {
			return nil, bad("InvalidDigest", fmt.Sprintf("files[%d] (%s): sha256 %q: want 64 lower-case hex digits", i, f.Path, f.SHA256))
		}
		if f.Size < 0 {
			return nil, bad("InvalidRequest", fmt.Sprintf("files[%d] (%s): negative size", i, f.Path))
		}
		if f.Mode&^0o777 != 0 {
			return nil, bad("InvalidRequest", fmt.Sprintf("files[%d] (%s): mode %#o: only permission bits (0777) are kept", i, f.Path, f.Mode))
		}
		if f.Mode == 0 {
			f.Mode = 0o644
		}
		if !sc.canWrite(ds, f.Path) {
			denied = append(denied, f.Path)
		}
		rows = append(rows, store.FileRow{Path: f.Path, SHA256: f.SHA256, Size: f.Size, Mode: f.Mode})
		out = append(out, f)
	}
	if len(denied) > 0 {
		return nil, &StatusError{Status: http.StatusForbidden, Code: "Forbidden",
			Message: fmt.Sprintf("this credential may not write in datastore %s: %s", ds, listSome(denied))}
	}
	var missing []string
	for _, f := range out {
		n, ok, err := s.blobSize(f.SHA256)
		if err != nil {
			return nil, err
		}
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s (blob sha256:%s not uploaded)", f.Path, f.SHA256))
		case n != f.Size:
			missing = append(missing, fmt.Sprintf("%s (size %d, but blob sha256:%s has %d bytes)", f.Path, f.Size, f.SHA256, n))
		}
	}
	if len(missing) > 0 {
		return nil, bad("MissingBlobs", "nothing recorded: upload the blobs first (PUT /blobs/sha256:<hex>): "+listSome(missing))
	}
	if err := s.st.PutFiles(ctx, ds, rows); err != nil {
		return nil, err
	}
	return out, nil
}

// listSome joins the first names of a list and counts the rest.
func listSome(names []string) string {
	const most = 10
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// The values are this package's own, which always encode; an error is
	// a client gone away, with no one left to tell.
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with a StatusError as it is, anything else as a 500.
func writeError(w http.ResponseWriter, err error) {
	var se *StatusError
	if !errors.As(err, &se) {
		se = &StatusError{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
	}
	writeJSON(w, se.Status, api.Error{Code: se.Code, Message: se.Message})
}
