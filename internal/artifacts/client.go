package artifacts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"outpost.dev/outpost/api"
)

// StatusError is a refusal: the HTTP status and the api.Error the server
// answered with (or would answer with, on the server side).
type StatusError struct {
	Status  int
	Code    string
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// IsNotFound tells a 404.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// Client is the client side. It works against either base: the workspace
// API (https://host/resourceGroups/RG/workspaces/WS, the admin token) or
// the job-run API (https://host/jobrun/v1/resourceGroups/RG/workspaces/WS/jobs/NAME,
// a job's token).
type Client struct {
	// HTTP sends the requests (http.DefaultClient when nil). It should have
	// no Timeout: a big file takes what it takes. Each request is bounded
	// instead: small ones by requestTimeout, transfers by idleTimeout
	// without progress.
	HTTP  *http.Client
	Base  string // no trailing slash
	Token string // sent as Bearer
	// Progress, when not nil, gets a line about every second during long
	// transfers ("uploading code: 12 of 40 files, 3.1 MiB of 9.0 MiB") and
	// a summary at the end of each.
	Progress io.Writer
	// Label names the transfers in those lines ("code", "input data");
	// the datastore URI when empty.
	Label string
}

// sp is a space after a non-empty word.
func sp(word string) string {
	if word == "" {
		return ""
	}
	return " "
}

// label names a transfer of uri in progress lines.
func (c *Client) label(uri string) string {
	if c.Label != "" {
		return c.Label
	}
	return uri
}

// parallel is how many blobs move at once.
const parallel = 4

// requestTimeout bounds the requests that carry no file.
const requestTimeout = 60 * time.Second

// retries is how many times a blob transfer that failed on the network is
// tried again, after retryDelay, doubling.
const retries = 3

var retryDelay = 500 * time.Millisecond

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// send makes one request; what says what it is about, for errors. A non-2xx
// answer is returned as a *StatusError (its body read); a 2xx answer's body
// is the caller's to close.
func (c *Client) send(ctx context.Context, method, route, what string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+route, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", contentType)
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	se := &StatusError{Status: resp.StatusCode}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if err == nil && json.Unmarshal(data, &e) == nil && e.Message != "" {
		se.Code, se.Message = e.Code, what+": "+e.Message
	} else {
		se.Message = fmt.Sprintf("%s: %s %s: %s", what, method, c.Base+route, resp.Status)
	}
	return nil, se
}

// call sends a small JSON request and decodes the answer into out. Both
// of its uses (a listing, a commit) may be repeated without harm, so a
// network failure is retried as for blobs.
func (c *Client) call(ctx context.Context, method, route, what string, in, out any) error {
	var data []byte
	if in != nil {
		var err error
		if data, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return retry(ctx, func() error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		var body io.Reader
		if in != nil {
			body = bytes.NewReader(data)
		}
		resp, err := c.send(ctx, method, route, what, body, int64(len(data)), "application/json")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if out == nil {
			return nil
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s: reading the answer: %w", what, err)
		}
		return nil
	})
}

// List returns the files under prefix ("" everything, "dir/" a folder, a
// path the file of that name and the folder of that name).
func (c *Client) List(ctx context.Context, ds, prefix string) ([]api.FileInfo, error) {
	var files []api.FileInfo
	err := c.call(ctx, http.MethodGet, "/datastores/"+url.PathEscape(ds)+"/files?prefix="+url.QueryEscape(prefix),
		fmt.Sprintf("listing %s", URI(ds, prefix)), nil, &files)
	return files, err
}

// Exists tells whether prefix names a file, or a folder with at least one
// file.
func (c *Client) Exists(ctx context.Context, ds, prefix string) (bool, error) {
	files, err := c.List(ctx, ds, prefix)
	return len(files) > 0, err
}

// transient tells a failure worth another try: the network, or a server
// or proxy in between that is briefly unable.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == http.StatusBadGateway || se.Status == http.StatusServiceUnavailable || se.Status == http.StatusGatewayTimeout
	}
	// Every error of http.Client.Do is a *url.Error, which is a net.Error
	// whatever its cause: look at the cause. A certificate the client
	// does not trust, say, stays refused.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, errStalled)
}

// retry runs f until it succeeds, fails for good, or has been tried
// retries+1 times.
func retry(ctx context.Context, f func() error) error {
	delay := retryDelay
	for i := 0; ; i++ {
		err := f()
		if err == nil || i == retries || !transient(ctx, err) {
			return err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return err
		}
		delay *= 2
	}
}

// errStalled ends a transfer that moved no byte for idleTimeout.
var errStalled = errors.New("no data moved for " + idleTimeout.String())

// watchdog cancels a transfer's context when its reader stops moving.
type watchdog struct {
	r     io.Reader
	t     *time.Timer
	moved *atomic.Int64 // all transfers' bytes, for progress
	n     atomic.Int64  // this one's
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.t.Reset(idleTimeout)
		w.moved.Add(int64(n))
		w.n.Add(int64(n))
	}
	return n, err
}

// undo takes this transfer's bytes back from the progress: it is to be
// tried again, or has failed.
func (w *watchdog) undo() { w.moved.Add(-w.n.Load()) }

// stallContext is ctx, cancelled with errStalled when the watchdog it
// returns is not fed for idleTimeout.
func stallContext(ctx context.Context) (context.Context, *time.Timer, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(idleTimeout, func() { cancel(errStalled) })
	return ctx, t, func() { t.Stop(); cancel(nil) }
}

// progress reports a transfer about every second, and sums it up.
type progress struct {
	w          io.Writer
	verb, what string
	files      int
	bytes      int64
	doneFiles  atomic.Int64
	moved      atomic.Int64
	start      time.Time
	stop       chan struct{}
	wg         sync.WaitGroup
}

func (c *Client) startProgress(verb, what string, files int, bytes int64) *progress {
	p := &progress{w: c.Progress, verb: verb, what: what, files: files, bytes: bytes, start: time.Now(), stop: make(chan struct{})}
	if p.w == nil {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				fmt.Fprintf(p.w, "%s %s: %d of %d files, %s of %s\n", p.verb, p.what, p.doneFiles.Load(), p.files, humanBytes(p.moved.Load()), humanBytes(p.bytes))
			}
		}
	}()
	return p
}

// end stops the reports; summary, when not empty, is the last line.
func (p *progress) end(summary string) {
	close(p.stop)
	p.wg.Wait()
	if p.w != nil && summary != "" {
		fmt.Fprintf(p.w, "%s (%s)\n", summary, time.Since(p.start).Round(100*time.Millisecond))
	}
}

// checkPrefixDir tells a prefix a folder is uploaded under: "" or a clean
// path ending in "/".
func checkPrefixDir(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("upload prefix %q: want \"\" or a folder path ending in /", prefix)
	}
	return CheckPath(strings.TrimSuffix(prefix, "/"))
}

// UploadFiles uploads files to ds under prefix ("" or a folder path ending
// in "/"): it asks which blobs the server lacks, sends those (parallel
// ones at a time, each retried on network failures), and then records all
// files in one commit, so that the folder appears whole or not at all.
func (c *Client) UploadFiles(ctx context.Context, files []LocalFile, ds, prefix string) error {
	if err := checkPrefixDir(prefix); err != nil {
		return err
	}
	var total int64
	byDigest := map[string]LocalFile{}
	var order []string
	commit := api.CommitRequest{Files: make([]api.FileInfo, 0, len(files))}
	for _, f := range files {
		p := prefix + f.Rel
		if err := CheckPath(p); err != nil {
			return fmt.Errorf("%s: %w", f.Abs, err)
		}
		if !isHexDigest(f.SHA256) {
			return fmt.Errorf("%s: sha256 %q is not 64 lower-case hex digits (list files with Scan)", f.Abs, f.SHA256)
		}
		commit.Files = append(commit.Files, api.FileInfo{Path: p, Size: f.Size, SHA256: f.SHA256, Mode: f.Mode})
		if _, ok := byDigest[f.SHA256]; !ok {
			byDigest[f.SHA256] = f
			order = append(order, f.SHA256)
			total += f.Size
		}
	}
	where := URI(ds, prefix)
	p := c.startProgress("uploading", c.label(where), len(order), total)
	var sentBytes atomic.Int64
	err := c.each(ctx, order, func(ctx context.Context, h string) error {
		f := byDigest[h]
		present, err := c.hasBlob(ctx, h, f.Abs)
		if err != nil {
			return err
		}
		if !present {
			if err := c.putBlob(ctx, f, &p.moved); err != nil {
				return err
			}
			sentBytes.Add(f.Size)
		} else {
			p.moved.Add(f.Size)
		}
		p.doneFiles.Add(1)
		return nil
	})
	if err == nil && len(commit.Files) > 0 {
		err = c.call(ctx, http.MethodPost, "/datastores/"+url.PathEscape(ds)+"/commit", "recording the files of "+where, commit, nil)
	}
	if err != nil {
		p.end("")
		return err
	}
	p.end(fmt.Sprintf("uploaded %s%s: %d files, %s (sent %s, %s already there)", c.Label+sp(c.Label)+"to ", where,
		len(files), humanBytes(total), humanBytes(sentBytes.Load()), humanBytes(total-sentBytes.Load())))
	return nil
}

// each runs f on every item, parallel at a time, and returns the first
// error (the others are cancelled).
func (c *Client) each(ctx context.Context, items []string, f func(ctx context.Context, item string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan string)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	fed := true
	for range min(parallel, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := f(ctx, it); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			fed = false
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil && !fed {
		// The caller gave up before every item was started.
		first = context.Cause(ctx)
	}
	return first
}

func (c *Client) hasBlob(ctx context.Context, h, file string) (bool, error) {
	var present bool
	err := retry(ctx, func() error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		resp, err := c.send(ctx, http.MethodHead, "/blobs/sha256:"+h, "uploading "+file, nil, 0, "")
		if IsNotFound(err) {
			present = false
			return nil
		}
		if err != nil {
			return err
		}
		resp.Body.Close()
		present = true
		return nil
	})
	return present, err
}

func (c *Client) putBlob(ctx context.Context, f LocalFile, moved *atomic.Int64) error {
	what := "uploading " + f.Abs
	return retry(ctx, func() error {
		file, err := os.Open(f.Abs)
		if err != nil {
			return err
		}
		defer file.Close()
		st, err := file.Stat()
		if err != nil {
			return err
		}
		if st.Size() != f.Size {
			return fmt.Errorf("%s: changed while uploading (%d bytes, %d when listed)", f.Abs, st.Size(), f.Size)
		}
		ctx, t, cancel := stallContext(ctx)
		defer cancel()
		body := &watchdog{r: file, t: t, moved: moved}
		resp, err := c.send(ctx, http.MethodPut, "/blobs/sha256:"+f.SHA256, what, body, f.Size, "application/octet-stream")
		if err != nil {
			body.undo()
			if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
				err = fmt.Errorf("%s: %w", what, cause)
			}
			var se *StatusError
			if errors.As(err, &se) && se.Code == "DigestMismatch" {
				return fmt.Errorf("%s: changed while uploading: %w", f.Abs, err)
			}
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// UploadDir uploads the files of dir (see Scan) to ds under prefix.
func (c *Client) UploadDir(ctx context.Context, dir, ds, prefix string, o UploadOptions) error {
	files, err := Scan(dir, o)
	if err != nil {
		return err
	}
	return c.UploadFiles(ctx, files, ds, prefix)
}

// UploadFile uploads one file to ds as path.
func (c *Client) UploadFile(ctx context.Context, file, ds, p string) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", file)
	}
	sum, err := hashFile(file)
	if err != nil {
		return err
	}
	mode := uint32(0o644)
	if st.Mode().Perm()&0o111 != 0 {
		mode = 0o755
	}
	return c.UploadFiles(ctx, []LocalFile{{Rel: p, Abs: file, Size: st.Size(), SHA256: sum, Mode: mode}}, ds, "")
}

// Download writes files of ds under dest and returns how many. A prefix
// ending in "/" (or "") is a folder: its files keep their paths below the
// prefix. Another path is the file of that name, written as
// dest/<basename>, or else the folder of that name. Every file's digest is
// checked while it is written (aside, then renamed in place: a damaged
// file is never left); paths that would leave dest are refused.
func (c *Client) Download(ctx context.Context, ds, prefix, dest string) (int, error) {
	files, err := c.List(ctx, ds, prefix)
	if err != nil {
		return 0, err
	}
	folder := prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		folder = prefix + "/"
		for _, f := range files {
			if f.Path == prefix {
				files, folder = []api.FileInfo{f}, path.Dir(prefix)+"/"
				if folder == "./" {
					folder = ""
				}
				break
			}
		}
	}
	if len(files) == 0 {
		return 0, &StatusError{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("%s: no such file or folder (or none this credential may read)", URI(ds, prefix))}
	}
	type job struct {
		info api.FileInfo
		rel  string
	}
	jobs := map[string]job{}
	var order []string
	var total int64
	for _, f := range files {
		rel, ok := strings.CutPrefix(f.Path, folder)
		if !ok {
			return 0, fmt.Errorf("listing %s: the server answered with %s, which is not under it", URI(ds, prefix), f.Path)
		}
		if err := CheckPath(rel); err != nil {
			return 0, fmt.Errorf("downloading %s: refused: %w", f.Path, err)
		}
		jobs[f.Path] = job{f, rel}
		order = append(order, f.Path)
		total += f.Size
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return 0, err
	}
	// The root keeps every write below dest, symbolic links included.
	root, err := os.OpenRoot(dest)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	where := URI(ds, prefix)
	p := c.startProgress("downloading", c.label(where), len(order), total)
	err = c.each(ctx, order, func(ctx context.Context, fp string) error {
		j := jobs[fp]
		if err := c.download(ctx, ds, j.info, root, j.rel, &p.moved); err != nil {
			return err
		}
		p.doneFiles.Add(1)
		return nil
	})
	if err != nil {
		p.end("")
		return 0, err
	}
	p.end(fmt.Sprintf("downloaded %s%s to %s: %d files, %s", c.Label+sp(c.Label), where, dest, len(order), humanBytes(total)))
	return len(order), nil
}

func (c *Client) download(ctx context.Context, ds string, f api.FileInfo, root *os.Root, rel string, moved *atomic.Int64) error {
	target := filepath.FromSlash(rel)
	if dir := filepath.Dir(target); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("downloading %s: %w", f.Path, err)
		}
	}
	mode := os.FileMode(f.Mode & 0o777)
	if mode == 0 {
		mode = 0o644
	}
	what := "downloading " + URI(ds, f.Path)
	return retry(ctx, func() error {
		ctx, t, cancel := stallContext(ctx)
		defer cancel()
		resp, err := c.send(ctx, http.MethodGet, "/datastores/"+url.PathEscape(ds)+"/files/"+escapePath(f.Path), what, nil, 0, "")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		want := resp.Header.Get("X-Content-SHA256")
		if want == "" {
			want = f.SHA256
		}
		size := f.Size
		if resp.ContentLength >= 0 {
			size = resp.ContentLength
		}
		tmp := target + ".part-" + randomHex()
		out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		keep := false
		defer func() {
			out.Close()
			if !keep {
				root.Remove(tmp) // a partial file; the error that led here is what matters
			}
		}()
		h := sha256.New()
		in := &watchdog{r: resp.Body, t: t, moved: moved}
		n, err := io.Copy(io.MultiWriter(out, h), in)
		if err != nil {
			in.undo()
			if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
				err = cause
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != size || sum != want {
			return fmt.Errorf("%s: the content does not match its digest: got %d bytes with sha256 %s, want %d bytes with sha256 %s", what, n, sum, size, want)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := root.Chmod(tmp, mode); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := root.Rename(tmp, target); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		keep = true
		return nil
	})
}

func randomHex() string {
	b := make([]byte, 6)
	rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return hex.EncodeToString(b)
}
