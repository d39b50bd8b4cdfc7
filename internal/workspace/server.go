// Package workspace is the control plane: the HTTP API users and the CLI call,
// durable state in SQLite, and the relay that connected clusters' agents dial
// into to learn what they should run and to report what runs.
package workspace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/atomicfile"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/seal"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/studio"
)

// Options configure a workspace server.
type Options struct {
	Addr    string // host:port to listen on
	DataDir string
	// Heartbeat is how often agents report; a cluster is Offline after two
	// missed reports.
	Heartbeat time.Duration
	Logger    *slog.Logger
	// Ready, when set, receives the address once the server listens.
	Ready chan<- string
	// SecretsKeyFile holds the key that encrypts protected settings at rest
	// (default <data-dir>/secrets.key, made on first start). Keep it apart
	// from the database (another disk, a secret store's mount) so that a copy
	// of the database alone reveals nothing protected.
	SecretsKeyFile string
	// BodyTimeout bounds how long a client may take to send a request body
	// (default 30s); IdleTimeout how long a kept-alive connection may wait
	// for its next request (default 2m).
	BodyTimeout, IdleTimeout time.Duration

	// logFileLimit bounds a job's log file (default maxLogBytes); tests
	// lower it.
	logFileLimit int64
}

// Server is a running workspace.
type Server struct {
	opts  Options
	store *store.Store
	log   *slog.Logger
	admin []byte
	// secrets seals protected data at rest (see sealProtected).
	secrets *seal.Key

	// registerMu makes a registration's identity check and creation one step.
	registerMu sync.Mutex

	mu       sync.Mutex
	lastSeen map[string]time.Time // cluster id -> last report; in memory: a restart waits for the next report

	// computes decides compute states (computereconciler.go).
	computes *computeReconciler
	// jobs retires ended jobs and ends those cancelled before they reached
	// their cluster (jobreconciler.go).
	jobs *jobReconciler
	// artifacts is the datastore: blobs and the index of their paths.
	artifacts *artifacts.Store
	// jobEvents wakes the log long polls of a job (joblogs.go).
	jobEvents *notifier
	// jobStatusLocks make each read-modify-write of a job's status one
	// step: the cluster's reports and the wrapper's phases write different
	// parts of it.
	jobStatusLocks keyedMutex
	// logLocks serialise appends to one log file.
	logLocks keyedMutex
	// inference holds the locks of online endpoints and finishes their
	// deletions (endpointsdelete.go).
	inference *inference
}

// Files in the data directory.
const (
	dbFile         = "workspace.db"
	adminTokenFile = "admin-token"
)

// CAFile is where a workspace keeps the CA its clients must trust.
func CAFile(dataDir string) string { return filepath.Join(dataDir, "tls", "ca.crt") }

// AdminTokenFile is where the admin token lives (mode 0600).
func AdminTokenFile(dataDir string) string { return filepath.Join(dataDir, adminTokenFile) }

// Serve runs the workspace until ctx ends, then shuts down gracefully:
// requests in flight finish, long polls end, the database is closed.
func Serve(ctx context.Context, opts Options) error {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	if opts.logFileLimit <= 0 {
		opts.logFileLimit = maxLogBytes
	}
	if opts.SecretsKeyFile == "" {
		opts.SecretsKeyFile = filepath.Join(opts.DataDir, secretsKeyFile)
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := restrictDataDir(opts.DataDir); err != nil {
		return err
	}
	admin, err := adminToken(opts.DataDir)
	if err != nil {
		return err
	}
	cert, err := serverCert(opts.DataDir, opts.Addr)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(opts.DataDir, dbFile))
	if err != nil {
		return err
	}
	defer st.Close()
	s := &Server{opts: opts, store: st, log: opts.Logger, admin: []byte(admin),
		lastSeen: map[string]time.Time{}}
	// Before anything that may read protected data starts.
	if s.secrets, err = s.openSecrets(ctx); err != nil {
		return err
	}
	st.SetTargets(syncTarget)
	if s.artifacts, err = artifacts.Open(filepath.Join(opts.DataDir, "artifacts"), st); err != nil {
		return fmt.Errorf("artifact store: %w", err)
	}
	s.jobEvents = newNotifier()
	s.computes = newComputeReconciler(s)
	s.jobs = newJobReconciler(s)
	s.inference = newInference(s)
	// The controllers stop before the store closes (defers run last first).
	bg, stopBG := context.WithCancel(ctx)
	var controllers sync.WaitGroup
	defer func() { stopBG(); controllers.Wait() }()
	controllers.Add(4)
	go func() { defer controllers.Done(); s.computes.run(bg) }()
	go func() { defer controllers.Done(); s.jobs.run(bg) }()
	go func() { defer controllers.Done(); s.inference.run(bg) }()
	go func() { defer controllers.Done(); s.compactTombstones(bg) }()

	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	// No ReadTimeout or WriteTimeout: they would end the agents' long polls
	// (up to 25 s). Bodies get a deadline of their own (bodyDeadline), a
	// client gets ReadHeaderTimeout to send its headers, and an idle
	// connection is closed after IdleTimeout.
	handler, err := s.routes()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: opts.IdleTimeout,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	s.log.Info("workspace serving", "url", "https://"+l.Addr().String(), "data", opts.DataDir, "ca", CAFile(opts.DataDir))
	if opts.Ready != nil {
		opts.Ready <- l.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// minTokenLen is the shortest admin token accepted: 32 characters (the
// token made on first start is 64 hex digits, 256 bits).
const minTokenLen = 32

// adminToken reads the admin token, creating it on first start. It is never
// logged: the user reads it from the file. A token too short to resist
// guessing (an empty file above all, which would match an empty header) is
// refused, so that the server never runs without authentication.
func adminToken(dir string) (string, error) {
	file := filepath.Join(dir, adminTokenFile)
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		tok := newToken()
		err = atomicfile.Create(file, []byte(tok+"\n"), 0o600)
		if err == nil {
			return tok, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("admin token: %w", err)
		}
		// Another start made it meanwhile: use that one.
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if err := checkAdminToken(tok); err != nil {
		return "", fmt.Errorf("admin token in %s %w; delete the file to have a new token made on the next start, or write one of at least %d characters (e.g. `openssl rand -hex 32`)", file, err, minTokenLen)
	}
	return tok, nil
}

// checkAdminToken says what is wrong with a token, without showing it.
func checkAdminToken(tok string) error {
	switch {
	case tok == "":
		return errors.New("is empty")
	case len(tok) < minTokenLen:
		return fmt.Errorf("has %d characters, fewer than %d", len(tok), minTokenLen)
	case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
		return errors.New("holds spaces or characters that are not printable ASCII")
	}
	return nil
}

// serverCert loads or makes the workspace's CA and serving certificate. The
// certificate names the listen host, loopback and the machine's hostname.
func serverCert(dir, addr string) (tls.Certificate, error) {
	tlsDir := filepath.Join(dir, "tls")
	crt, key := filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key")
	if _, err := os.Stat(crt); err != nil {
		ca, err := pki.NewCA("outpost-workspace-ca")
		if err != nil {
			return tls.Certificate{}, err
		}
		if err := ca.WriteFiles(CAFile(dir), filepath.Join(tlsDir, "ca.key")); err != nil {
			return tls.Certificate{}, err
		}
		host, _, _ := net.SplitHostPort(addr)
		ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		dns := []string{"localhost"}
		if h, err := os.Hostname(); err == nil {
			dns = append(dns, h)
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		} else if host != "" && ip == nil {
			dns = append(dns, host)
		}
		if err := ca.Issue(pki.Request{CommonName: "outpost-workspace", Server: true, IPs: ips, DNSNames: dns}, crt, key); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.LoadX509KeyPair(crt, key)
}

// protectedData reads a resource's protected data (nil when it has none).
// Every reader of protected data goes through here, and every writer passes
// its data through sealProtected first, so that how protected data is kept
// at rest is decided in one place: sealed with AES-256-GCM under the secrets
// key, bound to the resource's key.
func (s *Server) protectedData(ctx context.Context, k store.Key) ([]byte, error) {
	data, err := s.store.Protected(ctx, k)
	if err != nil || data == nil {
		return nil, err
	}
	if s.secrets == nil {
		return nil, errors.New("protected data: no secrets key loaded")
	}
	// Plain rows of older versions were sealed at start (openSecrets): one
	// that is not sealed now was not written by this server, and is refused.
	plain, err := s.secrets.Open(data, protectedAD(k))
	if err != nil {
		return nil, fmt.Errorf("protected data of %s: %w (is --secrets-key-file %s the key this workspace's database was written with?)", k, err, s.opts.SecretsKeyFile)
	}
	return plain, nil
}

// sealProtected turns the protected data of the resource k into what the
// store keeps (nil stays nil).
func (s *Server) sealProtected(k store.Key, data []byte) ([]byte, error) {
	if data == nil {
		return nil, nil
	}
	if s.secrets == nil {
		return nil, errors.New("protected data: no secrets key loaded")
	}
	return s.secrets.Seal(data, protectedAD(k))
}

// protectedAD binds sealed data to its resource: a sealed value copied onto
// another resource's row fails to open. Quoting keeps the fields apart.
func protectedAD(k store.Key) []byte {
	return []byte("outpost protected data " + strconv.Quote(k.Kind) + " " + strconv.Quote(k.Group) + " " +
		strconv.Quote(k.Parent) + " " + strconv.Quote(k.Name))
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// maxBody bounds a request body; the largest, an extension's protected
// settings with PEM files, stays far below it.
const maxBody = 4 << 20

// routes builds the router. Every route checks the names in its path first,
// then authenticates, and only then reads the request body: a client
// without a token never gets its body read. The Studio, under /studio/,
// has sessions of its own and calls this same router in process.
func (s *Server) routes() (http.Handler, error) {
	mux := http.NewServeMux()
	for _, r := range routes {
		h := r.handler(s)
		if r.stream {
			h = s.streamBody(h)
		} else {
			h = s.readBody(h)
		}
		switch {
		case r.agent:
			h = s.agentAuth(h)
		case r.jobrun:
			h = s.jobAuth(h)
		case r.deployrun:
			h = s.deploymentAuth(h)
		case r.public:
		default:
			h = s.adminAuth(h)
		}
		mux.Handle(r.method+" "+r.path, s.checkPath(pathParams(r.path), h))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, http.StatusNotFound, "NotFound", fmt.Sprintf("no such resource: %s %s (the API is described at /openapi.json)", r.Method, r.URL.Path))
	})
	api := s.bodyDeadline(mux)
	ui, err := studio.New(studio.Options{API: api, AdminToken: s.admin, Logger: s.log})
	if err != nil {
		return nil, err
	}
	mux.Handle(studio.Prefix, ui)
	mux.Handle("GET /{$}", http.RedirectHandler(studio.Prefix, http.StatusSeeOther))
	return api, nil
}

// hasBody tells whether a request comes with a body still to read.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// bodyDeadline gives every request with a body BodyTimeout to send it,
// whoever reads it: a handler, or the server discarding what a handler left
// so as to reuse the connection. A client that announces a body and sends
// nothing is cut off then. Requests without a body (the agents' long polls)
// get no deadline: reaching it would cancel them.
func (s *Server) bodyDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hasBody(r) {
			err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
			if err != nil {
				s.log.Error("request body deadline", "err", err)
				s.refuse(w, r, http.StatusInternalServerError, "InternalError", "cannot bound the time to read the request body")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// readBody reads an authenticated request's body whole (at most maxBody)
// within its deadline, then lifts the deadline, so that the handler works
// on it for as long as it takes.
func (s *Server) readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasBody(r) {
			next.ServeHTTP(w, r)
			return
		}
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			var ne net.Error
			switch {
			case errors.As(err, &tooBig):
				s.refuse(w, r, http.StatusRequestEntityTooLarge, "RequestTooLarge", fmt.Sprintf("request body over %d bytes", maxBody))
			case errors.As(err, &ne) && ne.Timeout():
				s.refuse(w, r, http.StatusRequestTimeout, "RequestTimeout", fmt.Sprintf("request body not sent within %s", s.opts.BodyTimeout))
			default:
				s.refuse(w, r, http.StatusBadRequest, "InvalidRequest", "reading the request body: "+err.Error())
			}
			return
		}
		if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil {
			s.log.Error("request body deadline", "err", err)
			s.refuse(w, r, http.StatusInternalServerError, "InternalError", "cannot lift the request body deadline")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		next.ServeHTTP(w, r)
	})
}

// streamBodyTimeout is how long an authenticated client may take to send
// the body of a stream route: blobs may be large, and their size is bounded
// by the handler, not by maxBody.
const streamBodyTimeout = time.Hour

// streamBody leaves an authenticated request's body to the handler, which
// reads it as it comes, within streamBodyTimeout.
func (s *Server) streamBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hasBody(r) {
			if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(streamBodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				s.log.Error("request body deadline", "err", err)
				s.refuse(w, r, http.StatusInternalServerError, "InternalError", "cannot extend the time to read the request body")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers a request without reading its body, and closes the
// connection after the answer. Left alone, the server would read what is
// left of the body before the next request (up to 256 KiB), as slowly as
// the client cares to send it: a read deadline already passed ends that
// read at once.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, kind, msg string) {
	if hasBody(r) {
		w.Header().Set("Connection", "close")
		// Without deadlines (ErrNotSupported: not a network connection)
		// there is no client to wait for.
		if err := http.NewResponseController(w).SetReadDeadline(time.Now()); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Error("ending a refused request's body", "err", err)
		}
	}
	writeError(w, code, kind, msg)
}

// bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme in any case, as RFC 9110 has it); ok is false for anything
// else: no header, another scheme, a raw token, an empty token.
func bearer(r *http.Request) (tok string, ok bool) {
	scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

const loginHint = "log in with `outpost login --url URL --token TOKEN` (the admin token is in the workspace's data directory, file admin-token)"

func (s *Server) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		switch {
		case !ok:
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "missing token: send \"Authorization: Bearer <token>\"; "+loginHint)
		// The length check keeps a server without a token (which Serve
		// refuses to start) closed rather than open to an empty header.
		case len(s.admin) < minTokenLen || subtle.ConstantTimeCompare([]byte(tok), s.admin) != 1:
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "wrong token: "+loginHint)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// agentAuth admits an agent only with the token of the cluster in the URL.
func (s *Server) agentAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := clusterKey(r.PathValue("rg"), r.PathValue("cluster"))
		tok, ok := bearer(r)
		if !ok {
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "missing token: send \"Authorization: Bearer <the cluster's agent token>\"")
			return
		}
		prot, err := s.protectedData(r.Context(), k)
		var creds clusterSecrets
		if err == nil && prot != nil {
			err = json.Unmarshal(prot, &creds)
		}
		if err != nil {
			// The agent is refused as with a wrong token; the operator
			// learns why from the log.
			s.log.Error("agent credentials unreadable", "cluster", clusterID(k.Group, k.Name), "err", err)
		}
		if err != nil || prot == nil || creds.TokenSHA256 == "" ||
			subtle.ConstantTimeCompare([]byte(hashToken(tok)), []byte(creds.TokenSHA256)) != 1 {
			s.refuse(w, r, http.StatusForbidden, "Forbidden", "this credential is not the one of cluster "+k.Group+"/"+k.Name)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// jobAuth admits a job's pods, with the job's own credential, to the
// job-run routes of that job: the token's sha256 must be the one stored
// with the job. Once the job has ended, only reads are admitted. The
// handler finds the job in the request's context (jobOf).
func (s *Server) jobAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
		tok, ok := bearer(r)
		if !ok {
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "missing token: send \"Authorization: Bearer <the job's token>\"")
			return
		}
		j, err := s.readJob(r.Context(), jobKey(rg, ws, name))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("job credentials unreadable", "job", resourceID(jobKey(rg, ws, name)), "err", err)
		}
		want := strings.Repeat("0", sha256.Size*2) // a job that is not there is refused in the same time
		if err == nil {
			want = j.rec.TokenSHA256
		}
		if subtle.ConstantTimeCompare([]byte(hashToken(tok)), []byte(want)) != 1 || err != nil || want == "" {
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "this credential is not the one of job "+name+" of workspace "+rg+"/"+ws)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if state := j.state(); api.JobTerminal(state) {
				s.refuse(w, r, http.StatusConflict, "JobEnded", fmt.Sprintf("job %s is %s: its outputs and logs take no more writes", name, state))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), jobCtxKey{}, j)))
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// The values are the API's own types, which always encode; an error is
	// a client gone away, with no one left to tell.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, api.Error{Code: kind, Message: msg})
}

// storeError maps store errors onto HTTP answers.
func storeError(w http.ResponseWriter, err error, what string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "NotFound", what+" not found")
	case errors.Is(err, store.ErrExists):
		writeError(w, http.StatusConflict, "Conflict", what+" already exists")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "Conflict", what+" was changed meanwhile; retry")
	default:
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
	}
}
