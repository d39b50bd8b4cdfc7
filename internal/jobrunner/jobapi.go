package jobrunner

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api"
)

// Retry timing; tests shorten it.
var (
	retryWindow  = time.Minute // how long transient failures are retried
	backoffFirst = 250 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// jobAPI is the job-run API of this job (api/jobrun.go).
type jobAPI struct {
	base  string
	token string
	http  *http.Client
}

// statusError is an answer other than 2xx.
type statusError struct {
	method, route string
	code          int
	msg           string // the api.Error message, else the body
	body          []byte
}

func (e *statusError) Error() string {
	if e.msg != "" {
		return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.route, e.code, http.StatusText(e.code), e.msg)
	}
	return fmt.Sprintf("%s %s: %d %s", e.method, e.route, e.code, http.StatusText(e.code))
}

// transient tells failures worth retrying: the workspace restarting or
// overloaded, or the network between. A refusal (4xx) stays a refusal.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests || se.code == http.StatusRequestTimeout
	}
	// A certificate that does not verify will not verify in a minute.
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) {
		return false
	}
	return true // the request did not get an answer
}

// do sends one request; a non-2xx answer is a *statusError (the body's
// api.Error message in it) and closes the body.
func (c *jobAPI) do(ctx context.Context, method, route string, query url.Values, body []byte, ctype string) (*http.Response, error) {
	u := c.base + route
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	se := &statusError{method: method, route: route, code: resp.StatusCode}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		se.msg = "reading the answer: " + err.Error()
		return nil, se
	}
	se.body = data
	var ae api.Error
	if json.Unmarshal(data, &ae) == nil && ae.Message != "" {
		se.msg = ae.Message
	} else {
		se.msg = strings.TrimSpace(string(data))
	}
	return nil, se
}

// retry runs f until it succeeds, fails for good, or transient failures
// have lasted window.
func retry(ctx context.Context, window time.Duration, f func() error) error {
	deadline := time.Now().Add(window)
	wait := backoffFirst
	for {
		err := f()
		if !transient(err) {
			return err
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w (still failing after %s)", err, window)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (then: %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, backoffMax)
	}
}

// spec fetches what to run, riding out a workspace restart.
func (c *jobAPI) spec(ctx context.Context) (*api.JobRun, error) {
	var run api.JobRun
	err := retry(ctx, retryWindow, func() error {
		resp, err := c.do(ctx, http.MethodGet, "/spec", nil, nil, "")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		run = api.JobRun{}
		dec := json.NewDecoder(io.LimitReader(resp.Body, 16<<20))
		if err := dec.Decode(&run); err != nil {
			// A cut-off body is the network's fault: retry it.
			return fmt.Errorf("reading the job's spec: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("getting the job's spec: %w", err)
	}
	return &run, nil
}

// phase reports this pod's progress.
func (c *jobAPI) phase(ctx context.Context, phase string, instance int) error {
	body, err := json.Marshal(api.JobPhase{Phase: phase, Instance: instance})
	if err != nil {
		return err
	}
	err = retry(ctx, retryWindow, func() error {
		resp, err := c.do(ctx, http.MethodPost, "/phase", nil, body, "application/json")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	if err != nil {
		return fmt.Errorf("reporting phase %s: %w", phase, err)
	}
	return nil
}

// offsetError is the workspace's answer to an append at the wrong offset:
// the log's size there.
type offsetError struct {
	file string
	size int64
}

func (e *offsetError) Error() string {
	return fmt.Sprintf("log %s is %d bytes long in the workspace", e.file, e.size)
}

// appendLog appends data to a log file at offset (its size before); one
// attempt. A wrong offset is an *offsetError.
func (c *jobAPI) appendLog(ctx context.Context, file string, offset int64, data []byte) error {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	resp, err := c.do(ctx, http.MethodPost, "/logs/"+file, q, data, "application/octet-stream")
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusConflict {
		var s struct {
			Size *int64 `json:"size"`
		}
		if json.Unmarshal(se.body, &s) != nil || s.Size == nil || *s.Size < 0 {
			return fmt.Errorf("%w (no log size in the answer)", err)
		}
		return &offsetError{file: file, size: *s.Size}
	}
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
