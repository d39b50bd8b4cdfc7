package studio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"outpost.dev/outpost/api"
)

// The Studio holds no state of its own beyond sessions: every page is
// built from calls to the workspace's API, served in process by the API's
// own handler with the admin token, so that what a page shows and every
// refusal it reports are exactly what the API (and so the CLI) says.

// apiError is the API's refusal.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// recorder keeps an in-process answer of the API.
type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// SetReadDeadline is what the API's body deadlines call through
// http.ResponseController: an in-process request's body is already in
// memory, so there is nothing to bound.
func (r *recorder) SetReadDeadline(time.Time) error { return nil }

// apiRequest builds the API request of a Studio request r: same context
// (a browser that leaves cancels it), same Host (the API builds URLs from
// it), the admin token.
func (s *Studio) apiRequest(r *http.Request, method, path string, body []byte) (*http.Request, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, rd)
	if err != nil {
		return nil, fmt.Errorf("API request %s %s: %w", method, path, err)
	}
	req.Host = r.Host
	req.RemoteAddr = r.RemoteAddr
	req.TLS = r.TLS
	req.Header.Set("Authorization", "Bearer "+string(s.admin))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// call sends in as JSON (when not nil) to the API and decodes its answer
// into out (when not nil). A non-2xx answer is an *apiError.
func (s *Studio) call(r *http.Request, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("API request %s %s: %w", method, path, err)
		}
	}
	req, err := s.apiRequest(r, method, path, body)
	if err != nil {
		return err
	}
	rec := &recorder{h: http.Header{}}
	s.api.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	if rec.code/100 != 2 {
		return refusal(method, path, rec.code, rec.body.Bytes())
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("API answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// refusal is the API's error answer as an *apiError, with the CLI's
// fallback message when the body holds none.
func refusal(method, path string, code int, body []byte) *apiError {
	var e api.Error
	if json.Unmarshal(body, &e) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("%s %s: %d %s", method, path, code, http.StatusText(code))
	}
	return &apiError{Status: code, Code: e.Code, Message: e.Message}
}

// client adapts call to scoringclient.Workspace for one Studio request.
type client struct {
	s *Studio
	r *http.Request
}

func (c client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.s.call(c.r.WithContext(ctx), method, path, in, out)
}

// passthrough streams an API answer of bytes (a file download) to the
// browser as it comes, unless it is a refusal, which it keeps for the
// Studio to show.
type passthrough struct {
	w http.ResponseWriter
	// headers sets the browser's headers once the API says 2xx.
	headers func(api http.Header, browser http.Header)
	h       http.Header
	code    int
	refused bytes.Buffer
}

func (p *passthrough) Header() http.Header { return p.h }
func (p *passthrough) WriteHeader(code int) {
	if p.code != 0 {
		return
	}
	p.code = code
	if code/100 == 2 {
		p.headers(p.h, p.w.Header())
		p.w.WriteHeader(code)
	}
}
func (p *passthrough) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	if p.code/100 != 2 {
		return p.refused.Write(b)
	}
	return p.w.Write(b)
}
func (p *passthrough) SetReadDeadline(time.Time) error { return nil }

// stream serves the API's GET path into w through headers; a refusal is
// returned (nothing was written to w then).
func (s *Studio) stream(w http.ResponseWriter, r *http.Request, path string, headers func(api, browser http.Header)) error {
	req, err := s.apiRequest(r, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	p := &passthrough{w: w, headers: headers, h: http.Header{}}
	s.api.ServeHTTP(p, req)
	if p.code == 0 {
		p.WriteHeader(http.StatusOK)
	}
	if p.code/100 != 2 {
		return refusal(http.MethodGet, path, p.code, p.refused.Bytes())
	}
	return nil
}

// apiPath joins escaped path segments: /resourceGroups/{rg}/... with
// every name escaped, so that a name never adds a segment.
func apiPath(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// wsAPI is the API path of a workspace, followed by segs.
func wsAPI(rg, ws string, segs ...string) string {
	return apiPath(append([]string{"resourceGroups", rg, "workspaces", ws}, segs...)...)
}
