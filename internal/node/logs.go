package node

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// serveLogs serves the part of the kubelet API that the apiserver proxies for
// `kubectl logs`: GET /containerLogs/{namespace}/{pod}/{container}. Only the
// apiserver (a client certificate from the cluster CA) may call it.
func (a *Agent) serveLogs() (io.Closer, error) {
	caPEM, err := os.ReadFile(a.cfg.ClientCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("node API port: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.containerLogs)
	a.routeStreams(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return srv, nil
}

func (a *Agent) containerLogs(rw http.ResponseWriter, r *http.Request) {
	w := a.worker(r.PathValue("namespace"), r.PathValue("pod"))
	if w == nil {
		http.Error(rw, fmt.Sprintf("pod %s/%s is not running on node %s", r.PathValue("namespace"), r.PathValue("pod"), a.cfg.Name), http.StatusNotFound)
		return
	}
	name := r.PathValue("container")
	w.mu.Lock()
	var s *ctrState
	for _, c := range append(append([]*ctrState{}, w.initStates...), w.states...) {
		if c.spec.Name == name {
			s = c
		}
	}
	if s == nil {
		w.mu.Unlock()
		http.Error(rw, fmt.Sprintf("container %s is not valid for pod %s", name, w.name), http.StatusBadRequest)
		return
	}
	restart := s.restarts
	q := r.URL.Query()
	previous := q.Get("previous") == "true"
	if previous {
		if restart == 0 {
			w.mu.Unlock()
			http.Error(rw, fmt.Sprintf("previous terminated container %q in pod %q not found", name, w.name), http.StatusBadRequest)
			return
		}
		restart--
	}
	file := filepath.Join(s.logDir, fmt.Sprintf("%d.log", restart))
	w.mu.Unlock()

	// running reports whether this log may still grow: the container instance
	// writing it is alive, or it is about to start (waiting).
	running := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !previous && s.restarts == restart && !s.done && s.state.Terminated == nil
	}
	start := int64(0)
	if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n >= 0 {
		// Counting lines from the end needs the file; logs of one container
		// instance are small enough to read whole.
		if data, err := os.ReadFile(file); err == nil {
			start = int64(tailStart(data, n))
		}
	}
	limit := int64(-1)
	if n, err := strconv.ParseInt(q.Get("limitBytes"), 10, 64); err == nil && n > 0 {
		limit = n
	}
	f, err := os.Open(file)
	if err != nil {
		if os.IsNotExist(err) {
			return // container not started yet: no log lines
		}
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/plain")
	follow := q.Get("follow") == "true"
	flusher, _ := rw.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if limit >= 0 && int64(n) > limit {
				chunk = chunk[:limit]
			}
			if _, werr := rw.Write(chunk); werr != nil {
				return
			}
			if limit >= 0 {
				limit -= int64(len(chunk))
				if limit == 0 {
					return
				}
			}
			if flusher != nil {
				flusher.Flush()
			}
			continue
		}
		if err != nil && err != io.EOF {
			return
		}
		if !follow {
			return
		}
		alive := running()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		if !alive {
			// One more read after the writer ended catches its last bytes.
			rest, _ := io.ReadAll(f)
			_, _ = rw.Write(rest)
			return
		}
	}
}

// tailStart is the offset of the n-th line from the end of data.
func tailStart(data []byte, n int) int {
	if n == 0 {
		return len(data)
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(data[:end], '\n')
		if j < 0 {
			return 0
		}
		end = j
	}
	return end + 1
}

// tailLines returns the last n lines of a file.
func tailLines(file string, n int) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return data[tailStart(data, n):], nil
}
