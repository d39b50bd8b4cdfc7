package jobrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

// What the scoring server's wrapper (internal/scoring) shares with the job
// wrapper: the way to the workspace, the log shipping and the termination
// message. A deployment's run API has the job-run API's routes for these.

// HTTPClient reaches the workspace as the job wrapper does: caPEM's CA
// only, TLS 1.2 or later, through proxy by egress's rule (the proxy keys
// of the pod's credentials Secret, v1alpha1.EnvProxy and EnvNoProxy).
func HTTPClient(caPEM []byte, proxy, noProxy string) (*http.Client, error) {
	return httpClient(caPEM, proxy, noProxy)
}

// LogShipper sends what is written to it to one log file of a run API
// (POST <base>/logs/<file>?offset=N), in order, batched and retried; Write
// never waits on the network (see shipper).
type LogShipper struct{ s *shipper }

// ShipLog starts a LogShipper whose log goes on after what the workspace
// holds of file already: a restarted container's log follows its
// predecessor's instead of being taken for a retry of it. root/logs/<file>
// keeps the local copy.
func ShipLog(ctx context.Context, base, token string, client *http.Client, root, file string, warn func(string, ...any)) (*LogShipper, error) {
	a := &jobAPI{base: base, token: token, http: client}
	start, err := a.logSize(ctx, file)
	if err != nil {
		return nil, err
	}
	s, err := newShipperAt(a, root, file, warn, start)
	if err != nil {
		return nil, err
	}
	return &LogShipper{s}, nil
}

func (l *LogShipper) Write(p []byte) (int, error) { return l.s.Write(p) }

// Close sends what is left, giving up at deadline; the error says what
// was not sent.
func (l *LogShipper) Close(deadline time.Time) error { return l.s.close(deadline) }

// logSize asks the size of a log file: an append past any end is refused
// with it (409). A file not there yet has size 0.
func (c *jobAPI) logSize(ctx context.Context, file string) (int64, error) {
	var size int64
	err := retry(ctx, retryWindow, func() error {
		err := c.appendLog(ctx, file, math.MaxInt64, nil)
		var oe *offsetError
		switch {
		case errors.As(err, &oe):
			size = oe.size
			return nil
		case err == nil:
			return fmt.Errorf("an empty append at offset %d was accepted", int64(math.MaxInt64))
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("asking the size of log %s: %w", file, err)
	}
	return size, nil
}

// WriteTermination writes the message the kubelet shows as the
// container's termination message (at most 4000 bytes of it).
func WriteTermination(path, msg string) error { return writeTermination(path, msg) }

// GetSpec GETs <base>/spec into out, riding out a workspace restart as the
// job wrapper's spec does (transient failures are retried for a minute).
func GetSpec(ctx context.Context, base, token string, client *http.Client, out any) error {
	c := &jobAPI{base: base, token: token, http: client}
	var body json.RawMessage
	err := retry(ctx, retryWindow, func() error {
		resp, err := c.do(ctx, http.MethodGet, "/spec", nil, nil, "")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		// A cut-off body is the network's fault: retried.
		body = nil
		return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body)
	})
	if err == nil {
		err = json.Unmarshal(body, out)
	}
	if err != nil {
		return fmt.Errorf("getting the spec: %w", err)
	}
	return nil
}
