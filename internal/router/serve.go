package router

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
)

// NewServer returns the server of rt's scoring routes. It is fasthttp's
// rather than net/http's: measured with bench/router (wrk -t2 -c64, a
// no-op instance, on 2 cores), net/http's per-request work (a goroutine
// and a read per request to watch the connection, header maps, a
// context) kept even a bare proxy at about 0.8x nginx's throughput and
// the router at 0.63-0.66x, 30-35 us of CPU a request; on fasthttp's the
// router does 0.82-0.88x at 19-24 us (nginx: 15-17 us). HTTP/1.1 only,
// keep-alive, chunked bodies both ways; TLS by serving a tls.Listener
// (see Certificate).
//
// Request time is bounded per deployment (request_timeout_ms) by the
// router itself; the server bounds the reading of a request's head, and
// how long an idle client connection is kept. Bodies stream
// (StreamRequestBody): the router reads a small one before it picks an
// instance and streams a large one to the instance, each within the
// request's time, so that the whole of a 100 MiB body is never held.
func NewServer(rt *Router) *fasthttp.Server {
	return &fasthttp.Server{
		Handler: rt.Handle,
		// The head of a request (and the first 8 KiB of its body, which
		// fasthttp reads with it), from its first byte; a new
		// connection's TLS handshake too.
		ReadTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute,
		// A request's head must fit: as nginx's 4 x 8 KiB, with room for
		// long aml_tokens and cookies. Larger heads get a 431.
		ReadBufferSize:    16 << 10,
		StreamRequestBody: true,
		// With streamed bodies fasthttp leaves the limit to the router,
		// which answers 413 itself, after the key check.
		MaxRequestBodySize: int(min(rt.opts.MaxBodyBytes, math.MaxInt32)),
		// A multipart body is the instance's to parse, not the server's.
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		TCPKeepalive:                 true,
		CloseOnShutdown:              true,
		// Keys and tokens must not reach the log, in a request's head
		// quoted in an error either.
		SecureErrorLogMessage: true,
		ErrorHandler:          serverError,
	}
}

// serverError answers a request the server could not read, as the router
// answers (an api.Error).
func serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		writeError(ctx, http.StatusRequestHeaderFieldsTooLarge, "RequestHeaderFieldsTooLarge", "the request's head is larger than the router takes (16 KiB)")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, http.StatusRequestEntityTooLarge, "RequestTooLarge", "the request body is larger than the router's limit")
	case errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded):
		writeError(ctx, http.StatusRequestTimeout, "RequestTimeout", "the request's head did not arrive in time")
	default:
		writeError(ctx, http.StatusBadRequest, "BadRequest", "the request is not valid HTTP/1.1")
	}
	ctx.SetConnectionClose()
}

// Certificate is the router's serving certificate, replaced whole when its
// Secret changes; connections made after Set use the new one.
type Certificate struct {
	cert atomic.Pointer[tls.Certificate]
}

// Set parses a PEM certificate chain and key.
func (c *Certificate) Set(certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the router's certificate: %w", err)
	}
	c.cert.Store(&cert)
	return nil
}

// Loaded reports whether a certificate was set.
func (c *Certificate) Loaded() bool { return c.cert.Load() != nil }

// TLSConfig serves c, TLS 1.2 or newer: NewServer's server serves
// tls.NewListener(l, c.TLSConfig()).
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 only, as azureml-fe: a scoring request is one body
		// forwarded to one instance, and under HTTP/2 a refused large body
		// (413) had its answer cut off when the stream was reset.
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert := c.cert.Load()
			if cert == nil {
				return nil, errors.New("the router has no certificate yet")
			}
			return cert, nil
		},
	}
}

// AdminHandler serves a replica's /metrics (gatherer), /load (rt's
// api.RouterLoad), /healthz (200 while the process serves) and /readyz
// (200 once ready returns nil; 503 with its reason before).
func AdminHandler(rt *Router, gatherer prometheus.Gatherer, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /load", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rt.Load())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
