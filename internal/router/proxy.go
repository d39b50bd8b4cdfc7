package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The router forwards with a client of its own rather than
// httputil.ReverseProxy over http.Transport: measured with bench/router
// (64 connections, a no-op instance, then on net/http's server), the
// router took about 50 us of CPU a request with ReverseProxy and 26-30 us
// with this. The transport hands
// each request to a writer goroutine and its answer back from a reader
// goroutine, and writes a body in a system call of its own after the
// head; here the handler writes the request (head and a small body in one
// system call) and reads the answer on the connection itself, parsing its
// head straight into the client's answer with fasthttp's parser. What it
// leaves out: protocol upgrades (WebSocket) and trailers, which scoring
// servers do not use.

const (
	// maxIdlePerInstance bounds the idle keep-alive connections kept to one
	// instance: as many as requests can be in flight to it from here.
	maxIdlePerInstance = 1024
	// idleTimeout closes connections idle longer.
	idleTimeout = 90 * time.Second
	// smallBody: bodies up to this size with a known length are read
	// before the request takes room on an instance (a slow client holds
	// none) and go out with the request's head in one write.
	smallBody   = 16 << 10
	dialTimeout = 3 * time.Second
	// answerHeadBytes bounds the head of an instance's answer (the
	// connection's read buffer, which fasthttp's parser needs it to fit).
	answerHeadBytes = 16 << 10
	// bufferedAnswer: answers up to this size with a known length are read
	// whole, and the instance's room and connection freed, before the
	// router sends them on (as nginx buffers); longer ones, and those
	// without a length, stream through.
	bufferedAnswer = 64 << 10
	// maxInterim bounds the 1xx answers passed over before the final one.
	maxInterim = 10
)

// probeAfter: a connection idle longer is checked before reuse for a close
// by the instance (servers close idle keep-alive connections after their
// own timeout), so that a request is not sent into one. A variable for
// tests.
var probeAfter = 100 * time.Millisecond

// upConn is a keep-alive connection to an instance.
type upConn struct {
	net.Conn
	raw      syscall.RawConn
	br       *bufio.Reader
	buf      []byte // the request's head and small body
	lastUsed time.Time
	reused   bool
}

// idleConns are an instance's idle connections, the most recent last.
type idleConns struct {
	mu     sync.Mutex
	conns  []*upConn
	closed bool
}

func (in *instance) getConn(deadline time.Time) (*upConn, error) {
	now := time.Now()
	for {
		in.idle.mu.Lock()
		n := len(in.idle.conns)
		if n == 0 {
			in.idle.mu.Unlock()
			break
		}
		uc := in.idle.conns[n-1]
		in.idle.conns[n-1] = nil
		in.idle.conns = in.idle.conns[:n-1]
		in.idle.mu.Unlock()
		idle := now.Sub(uc.lastUsed)
		if idle > idleTimeout || (idle > probeAfter && !uc.open()) {
			uc.Close()
			continue
		}
		uc.reused = true
		return uc, nil
	}
	d := net.Dialer{Timeout: dialTimeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	c, err := d.Dial("tcp", in.Addr)
	if err != nil {
		return nil, &dialError{err}
	}
	uc := &upConn{Conn: c, br: bufio.NewReaderSize(c, answerHeadBytes), buf: make([]byte, 0, 4096)}
	if sc, ok := c.(syscall.Conn); ok {
		uc.raw, _ = sc.SyscallConn()
	}
	return uc, nil
}

func (in *instance) putConn(uc *upConn) {
	uc.lastUsed = time.Now()
	if cap(uc.buf) > 2*smallBody {
		uc.buf = make([]byte, 0, 4096)
	}
	in.idle.mu.Lock()
	if in.idle.closed || len(in.idle.conns) >= maxIdlePerInstance {
		in.idle.mu.Unlock()
		uc.Close()
		return
	}
	in.idle.conns = append(in.idle.conns, uc)
	in.idle.mu.Unlock()
}

// closeIdle closes the idle connections; with forever, those put back
// later too (the instance left the table).
func (in *instance) closeIdle(forever bool) {
	in.idle.mu.Lock()
	conns := in.idle.conns
	in.idle.conns = nil
	if forever {
		in.idle.closed = true
	}
	in.idle.mu.Unlock()
	for _, uc := range conns {
		uc.Close()
	}
}

// open peeks at the connection without blocking: an idle connection has
// nothing to read, so EOF or data means it is of no use.
func (uc *upConn) open() bool {
	if uc.raw == nil || uc.br.Buffered() > 0 {
		return false
	}
	var b [1]byte
	alive := false
	err := uc.raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN
		return true // never wait
	})
	return err == nil && alive
}

// dialError marks a failed connection: nothing of the request was sent,
// so another instance may take it.
type dialError struct{ error }

func (e *dialError) Unwrap() error { return e.error }

// staleConnError: a reused connection turned out closed before it took
// any of the request.
type staleConnError struct{ error }

func (e *staleConnError) Unwrap() error { return e.error }

// clientError is a failure to read the client's request body.
type clientError struct{ error }

func (e *clientError) Unwrap() error { return e.error }

// errTooLarge: a body without a length grew past the router's limit.
var errTooLarge = errors.New("the request body is larger than the router's limit")

// forward sends x's request to c.in and puts its answer in x's response,
// within x.deadline. sent says whether any of the request may have reached
// the instance (then it must not be sent again). streamed says that the
// answer's body streams from the instance to the client once the handler
// returns: the answerStream then owns the connection and c.in's room, and
// finishes x.
//
// A client that leaves does not end the exchange with the instance: the
// instance works on the request anyway, so its room stays taken until it
// answers or the deadline passes.
func (rt *Router) forward(x *exchange, dep *deploymentState, c *call) (sent, streamed bool, err error) {
	uc, err := c.in.getConn(x.deadline)
	if err != nil {
		return false, false, err
	}
	reuse := false
	defer func() {
		switch {
		case streamed:
		case reuse:
			c.in.putConn(uc)
		default:
			uc.Close()
		}
	}()
	// Pooled connections keep an old deadline; every use sets its own.
	uc.SetDeadline(x.deadline)

	ctx := x.ctx
	contentLength := ctx.Request.Header.ContentLength()
	b := appendHead(uc.buf[:0], x, c)
	switch {
	case c.body != nil:
		b = appendBody(b, c.body)
	case c.stream && contentLength > 0:
		b = append(appendContentLength(b, contentLength), "\r\n"...)
	case c.stream:
		b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
	default:
		if !methodLacksBody(ctx.Method()) {
			b = append(b, "Content-Length: 0\r\n"...)
		}
		b = append(b, "\r\n"...)
	}
	uc.buf = b[:0]
	n, err := uc.Write(b)
	if err != nil {
		if n == 0 && uc.reused {
			c.in.closeIdle(false) // its fellows are likely closed too
			return false, false, &staleConnError{err}
		}
		return true, false, err
	}
	if c.stream {
		if err := rt.sendBody(uc, ctx, contentLength); err != nil {
			return true, false, err
		}
	}

	// The answer's head goes straight into the client's answer.
	res := &ctx.Response
	if err := readHead(uc.br, &res.Header); err != nil {
		return true, false, err
	}
	keep := !res.Header.ConnectionClose()
	cleanHead(&res.Header)
	length := res.Header.ContentLength() // -1: chunked; -2: until the connection closes
	switch {
	case ctx.IsHead() || noBody(res.Header.StatusCode()):
		reuse = keep
		return true, false, nil
	case length >= 0 && length <= bufferedAnswer:
		if err := res.ReadBody(uc.br, 0); err != nil {
			return true, false, err
		}
		reuse = keep
		return true, false, nil
	case length < 0 && !ctx.Request.Header.IsHTTP11():
		// An HTTP/1.0 client cannot take a chunked answer: this rare one
		// is read whole.
		if err := res.ReadBody(uc.br, 0); err != nil {
			return true, false, err
		}
		if length == -1 {
			if err := res.Header.ReadTrailer(uc.br); err != nil {
				return true, false, err
			}
		}
		reuse = keep && length == -1
		return true, false, nil
	}
	s := &answerStream{rt: rt, x: x, dep: dep, in: c.in, uc: uc, keep: keep && length != -2}
	switch length {
	case -1:
		s.chunked = true
		s.r = httputil.NewChunkedReader(uc.br)
	case -2:
		s.r = uc.br
	default:
		s.r = io.LimitReader(uc.br, int64(length))
	}
	if length < 0 {
		length = -1 // chunked to the client
	}
	rt.stamp(x) // Handle's would come after the handler's end here
	res.SetBodyStream(s, length)
	return true, true, nil
}

// sendBody streams the client's body to the instance: contentLength
// bytes, or re-chunked (-1), within the router's limit.
func (rt *Router) sendBody(uc *upConn, ctx *fasthttp.RequestCtx, contentLength int) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	body := &bodyReader{r: ctx.RequestBodyStream(), left: rt.opts.MaxBodyBytes}
	var err error
	if contentLength > 0 {
		_, err = io.CopyBuffer(uc, io.LimitReader(body, int64(contentLength)), *bp)
	} else {
		cw := httputil.NewChunkedWriter(uc)
		if _, err = io.CopyBuffer(cw, body, *bp); err == nil {
			if err = cw.Close(); err == nil {
				_, err = io.WriteString(uc, "\r\n")
			}
		}
	}
	if body.err != nil {
		return &clientError{body.err}
	}
	return err
}

// appendHead writes the request line and the headers for the instance:
// the client's, less those dropRequestHeader names and those its
// Connection header lists, and the router's.
func appendHead(b []byte, x *exchange, c *call) []byte {
	ctx := x.ctx
	h := &ctx.Request.Header
	b = append(b, h.Method()...)
	b = append(b, ' ')
	b = append(b, c.path...)
	if uri := h.RequestURI(); bytes.IndexByte(uri, '?') >= 0 {
		b = append(b, uri[bytes.IndexByte(uri, '?'):]...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.in.Addr...)
	b = append(b, "\r\n"...)
	conn := h.Peek("Connection")
	for k, v := range h.All() {
		if dropRequestHeader(k) || (len(conn) > 0 && listed(conn, k)) {
			continue
		}
		b = appendHeader(b, k, v)
	}
	b = appendHeader(b, canonicalRequestIDKey, x.id)
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		b = append(b, "X-Forwarded-For: "...)
		b = a.AddrPort().Addr().Unmap().AppendTo(b)
		b = append(b, "\r\n"...)
	}
	if host := ctx.Host(); len(host) > 0 {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, host...)
		b = append(b, "\r\n"...)
	}
	if ctx.IsTLS() {
		return append(b, "X-Forwarded-Proto: https\r\n"...)
	}
	return append(b, "X-Forwarded-Proto: http\r\n"...)
}

func appendHeader(b, k, v []byte) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

func appendContentLength(b []byte, n int) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n"...)
}

func appendBody(b, body []byte) []byte {
	b = appendContentLength(b, len(body))
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// dropRequestHeader: hop-by-hop headers (RFC 9110 7.6.1), those the
// router writes itself, and the endpoint's credential, which is the
// router's business and not the scoring code's (which might log it).
// Expect goes too: the client's 100-continue is the router's to answer,
// and the body follows the head at once. fasthttp hands header names in
// canonical form.
func dropRequestHeader(k []byte) bool {
	switch string(k) {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization", "Expect", "Content-Length", "Host",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", canonicalRequestID:
		return true
	}
	return false
}

// hopHeaders are the answer's hop-by-hop headers.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// cleanHead makes the instance's answer head the router's: without its
// hop-by-hop headers (those its Connection header lists too; keeping the
// client's connection is the router's business), and with the status line
// the router writes for any answer.
func cleanHead(h *fasthttp.ResponseHeader) {
	hop := false
	for k := range h.All() {
		if isHopHeader(k) {
			hop = true
			break
		}
	}
	if hop || h.ConnectionClose() {
		for _, f := range h.PeekAll("Connection") {
			for _, name := range splitTokens(string(f)) {
				h.Del(name)
			}
		}
		for _, k := range hopHeaders {
			h.Del(k)
		}
	}
	h.SetProtocol(nil)
	h.SetStatusMessage(nil)
}

func isHopHeader(k []byte) bool {
	switch string(k) {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Upgrade":
		return true
	}
	return false
}

// listed reports whether the Connection header's value names k.
func listed(conn, k []byte) bool {
	for _, name := range splitTokens(string(conn)) {
		if len(name) == len(k) && bytes.EqualFold([]byte(name), k) {
			return true
		}
	}
	return false
}

func splitTokens(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		tok := s[:i]
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
		}
		for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
			tok = tok[:len(tok)-1]
		}
		if tok != "" {
			out = append(out, tok)
		}
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func methodLacksBody(m []byte) bool {
	switch string(m) {
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// noBody: statuses whose answers have no body (RFC 9110 6.4.1).
func noBody(status int) bool {
	return status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
}

// readHead reads the final answer's head into h, passing over
// informational ones.
func readHead(br *bufio.Reader, h *fasthttp.ResponseHeader) error {
	for range maxInterim {
		if err := h.Read(br); err != nil {
			return err
		}
		switch s := h.StatusCode(); {
		case s == http.StatusSwitchingProtocols:
			return fmt.Errorf("the instance switched protocols, which the router does not pass on")
		case s >= 100 && s < 200:
			continue
		}
		return nil
	}
	return fmt.Errorf("more than %d informational answers", maxInterim)
}

// answerStream is the body of an answer that streams from the instance to
// the client: fasthttp reads it once the handler has returned, flushing
// each piece of a chunked one as it comes, and closes it when done. Then
// it puts back (or closes) the instance's connection, frees the room the
// request took, and logs and counts the request. An error reading it (the
// instance went away, the deadline passed) makes fasthttp cut the client's
// connection: only that tells the client that the rest will not come.
type answerStream struct {
	rt      *Router
	x       *exchange
	dep     *deploymentState
	in      *instance
	uc      *upConn
	r       io.Reader
	chunked bool
	keep    bool // the instance keeps the connection open
	eof     bool
}

func (s *answerStream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && !s.eof {
		s.eof = true
		if s.chunked {
			// The chunked reader stops at the last chunk; its trailer
			// section, if only its final CRLF, ends the answer.
			if terr := skipTrailer(s.uc.br); terr != nil {
				s.keep = false
			}
		}
	}
	return n, err
}

// CloseWithError ends the exchange: err is why writing the answer to the
// client stopped, nil when all of it went.
func (s *answerStream) CloseWithError(err error) error {
	if s.eof && s.keep && err == nil {
		s.in.putConn(s.uc)
	} else {
		s.uc.Close()
	}
	s.dep.pool.release(s.in)
	s.rt.done(s.x)
	return nil
}

// skipTrailer reads a chunked body's trailer section, which the router does
// not pass on, through its empty last line.
func skipTrailer(br *bufio.Reader) error {
	for range 100 {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
	return errors.New("too long a trailer")
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bodyReader reads the client's body within the router's limit and
// remembers why reading it failed.
type bodyReader struct {
	r    io.Reader
	left int64
	err  error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more than the limit tells a body at the limit from
		// one past it.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			b.err = errTooLarge
			return 0, b.err
		}
	}
	if int64(len(p)) > b.left && b.left > 0 {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}
