// Package workspace is the control plane: the HTTP API users and the CLI call,
// durable state in SQLite, and the relay that connected clusters' agents dial
// into to learn what they should run and to report what runs.
package workspace

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/store"
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
}

// Server is a running workspace.
type Server struct {
	opts  Options
	store *store.Store
	log   *slog.Logger
	admin []byte

	mu       sync.Mutex
	lastSeen map[string]time.Time     // cluster id -> last report; in memory: a restart waits for the next report
	waiters  map[string]chan struct{} // cluster id -> closed when its desired state may have changed
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
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
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
		lastSeen: map[string]time.Time{}, waiters: map[string]chan struct{}{}}

	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
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

// adminToken reads the admin token, creating it on first start. It is never
// logged: the user reads it from the file.
func adminToken(dir string) (string, error) {
	file := filepath.Join(dir, adminTokenFile)
	data, err := os.ReadFile(file)
	if err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tok := newToken()
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
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
// at rest is decided in one place.
func (s *Server) protectedData(ctx context.Context, k store.Key) ([]byte, error) {
	return s.store.Protected(ctx, k)
}

// sealProtected turns protected data into what the store keeps (nil stays nil).
func (s *Server) sealProtected(data []byte) ([]byte, error) { return data, nil }

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, r := range routes {
		h := r.handler(s)
		if r.agent {
			mux.Handle(r.method+" "+r.path, s.agentAuth(h))
		} else if r.public {
			mux.Handle(r.method+" "+r.path, h)
		} else {
			mux.Handle(r.method+" "+r.path, s.adminAuth(h))
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no such resource: %s %s (the API is described at /openapi.json)", r.Method, r.URL.Path))
	})
	return mux
}

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(tok)
}

func (s *Server) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(bearer(r)), s.admin) != 1 {
			writeError(w, http.StatusUnauthorized, "Unauthorized", "missing or wrong token: log in with `outpost login --url URL --token TOKEN` (the admin token is in the workspace's data directory, file admin-token)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// agentAuth admits an agent only with the token of the cluster in the URL.
func (s *Server) agentAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := clusterKey(r.PathValue("rg"), r.PathValue("cluster"))
		prot, err := s.protectedData(r.Context(), k)
		var creds clusterSecrets
		if err == nil && prot != nil {
			err = json.Unmarshal(prot, &creds)
		}
		if err != nil || prot == nil || subtle.ConstantTimeCompare([]byte(hashToken(bearer(r))), []byte(creds.TokenSHA256)) != 1 {
			writeError(w, http.StatusForbidden, "Forbidden", "this credential is not the one of cluster "+k.Group+"/"+k.Name)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
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

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// notify wakes the agent of a cluster: its desired state may have changed.
func (s *Server) notify(id string) {
	s.mu.Lock()
	if ch, ok := s.waiters[id]; ok {
		close(ch)
		delete(s.waiters, id)
	}
	s.mu.Unlock()
}

func (s *Server) changes(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[id]
	if !ok {
		ch = make(chan struct{})
		s.waiters[id] = ch
	}
	return ch
}
