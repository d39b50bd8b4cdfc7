// Package client is the CLI's connection to a workspace: the login stored by
// `outpost login` and authenticated JSON calls over HTTPS.
package client

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
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/atomicfile"
)

// Config is a stored login.
type Config struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	CA    string `json:"ca,omitempty"` // PEM of the workspace's CA
}

// ConfigPath is $OUTPOST_CONFIG, else ~/.outpost/config.json.
func ConfigPath() string {
	if p := os.Getenv("OUTPOST_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".outpost", "config.json")
}

// Load reads the stored login; OUTPOST_URL, OUTPOST_TOKEN and
// OUTPOST_CA_FILE override its parts.
func Load() (Config, error) {
	var c Config
	data, err := os.ReadFile(ConfigPath())
	if err == nil {
		if err := json.Unmarshal(data, &c); err != nil {
			return c, fmt.Errorf("%s: %w", ConfigPath(), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return c, err
	}
	if v := os.Getenv("OUTPOST_URL"); v != "" {
		c.URL = v
	}
	if v := os.Getenv("OUTPOST_TOKEN"); v != "" {
		c.Token = v
	}
	if f := os.Getenv("OUTPOST_CA_FILE"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("OUTPOST_CA_FILE: %w", err)
		}
		c.CA = string(pem)
	}
	if c.URL == "" || c.Token == "" {
		return c, errors.New("not logged in to a workspace: run `outpost login --url URL --token TOKEN` (or set OUTPOST_URL and OUTPOST_TOKEN)")
	}
	return c, nil
}

// Save stores the login, readable by its owner only: it holds a token. The
// file is replaced whole (a new file, so a config left readable by others
// does not pass its mode on), and a crash leaves the old login or the new.
func (c Config) Save() error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(ConfigPath()), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(ConfigPath(), data, 0o600); err != nil {
		return fmt.Errorf("storing the login: %w", err)
	}
	return nil
}

// Client calls a workspace.
type Client struct {
	cfg  Config
	http *http.Client
}

// New makes a client that trusts the workspace's CA.
func New(cfg Config) (*Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CA)) {
			return nil, errors.New("the workspace CA in the login holds no certificate")
		}
		tc.RootCAs = pool
	}
	return &Client{cfg: cfg, http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}}, nil
}

// HTTPClient is the client's HTTP client: it trusts the workspace's CA and
// bounds each call to 60 s.
func (c *Client) HTTPClient() *http.Client { return c.http }

// BaseURL is the workspace's URL, without a trailing slash.
func (c *Client) BaseURL() string { return strings.TrimSuffix(c.cfg.URL, "/") }

// Token is the credential the client sends. Never print it.
func (c *Client) Token() string { return c.cfg.Token }

// streaming is an HTTP client on the same transport (connections and CA)
// without the 60 s bound on a whole call: a transfer of a big file takes
// what it takes, and its caller bounds it with its context instead.
func (c *Client) streaming() *http.Client { return &http.Client{Transport: c.http.Transport} }

// Artifacts is a datastore client for workspace ws of group rg, with the
// client's login.
func (c *Client) Artifacts(rg, ws string) *artifacts.Client {
	return &artifacts.Client{
		HTTP:  c.streaming(),
		Base:  c.BaseURL() + "/resourceGroups/" + url.PathEscape(rg) + "/workspaces/" + url.PathEscape(ws),
		Token: c.cfg.Token,
	}
}

// Raw sends a request whose body (when not nil) is streamed as is, and
// returns the answer for its caller to read and close; a non-2xx answer is
// returned as a *StatusError instead (its body read). No timeout applies
// but ctx's: it serves long polls and big transfers.
func (c *Client) Raw(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL()+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	}))
	resp, err := c.streaming().Do(req)
	if err != nil {
		if wrote.Load() && !safeMethod(method) {
			return nil, &MaybeAppliedError{Method: method, Path: path, URL: c.cfg.URL, Err: err}
		}
		return nil, fmt.Errorf("workspace %s: %w", c.cfg.URL, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusError(method, path, resp)
}

func statusError(method, path string, resp *http.Response) error {
	se := &StatusError{Code: resp.StatusCode}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || json.Unmarshal(data, &se.Body) != nil || se.Body.Message == "" {
		se.Body.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	}
	return se
}

// CloseIdleConnections closes the connections no call uses now. A
// workspace that shuts down waits up to 5 s for a connection that was
// opened but never sent a request, which concurrent calls can leave behind.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Config returns the login the client uses.
func (c *Client) Config() Config { return c.cfg }

// StatusError is a workspace's refusal.
type StatusError struct {
	Code int
	Body api.Error
}

func (e *StatusError) Error() string { return e.Body.Message }

// MaybeAppliedError is a call that changes something and failed after the
// request was sent: the connection broke or the caller gave up before an
// answer came. The workspace may have carried it out, so it must not be
// repeated blindly: the caller should look at the resource first.
type MaybeAppliedError struct {
	Method, Path, URL string
	Err               error
}

func (e *MaybeAppliedError) Error() string {
	return fmt.Sprintf("workspace %s: %s %s: %v; the request may have been applied", e.URL, e.Method, e.Path, e.Err)
}

func (e *MaybeAppliedError) Unwrap() error { return e.Err }

// safeMethod tells the methods that change nothing, which any failure
// leaves as they were.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// IsNotFound tells a 404.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Do sends in as JSON (when not nil) and decodes the answer into out (when
// not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// Whether the request left this machine tells a failed call that the
	// workspace cannot have seen from one it may have carried out.
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	}))
	resp, err := c.http.Do(req)
	if err != nil {
		if wrote.Load() && !safeMethod(method) {
			return &MaybeAppliedError{Method: method, Path: path, URL: c.cfg.URL, Err: err}
		}
		return fmt.Errorf("workspace %s: %w", c.cfg.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		se := &StatusError{Code: resp.StatusCode}
		if json.Unmarshal(data, &se.Body) != nil || se.Body.Message == "" {
			se.Body.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return se
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}
