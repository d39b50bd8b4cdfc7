// Package probe runs a container's startup, readiness and liveness probes
// (httpGet, tcpSocket, exec) with the thresholds and timing of the pod spec.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Exec runs a command in the container's view of the filesystem and returns
// its exit code.
type Exec func(ctx context.Context, argv []string) (int, error)

// Target is what a probe talks to.
type Target struct {
	PodIP     string
	Container *corev1.Container
	Exec      Exec
}

// client never follows redirects off the pod, and never verifies certificates,
// as the kubelet's prober does.
var client = &http.Client{
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

// Do performs one attempt; nil means success.
func Do(ctx context.Context, p *corev1.Probe, t Target) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := resolvePort(g.Port, t.Container)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = t.PodIP
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "outpost-probe")
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.Container)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.PodIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		code, err := t.Exec(ctx, p.Exec.Command)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("command %q exited with %d", p.Exec.Command, code)
		}
		return nil
	case p.GRPC != nil:
		return errors.New("grpc probes are not supported on the Outpost node; use httpGet, tcpSocket or exec")
	}
	return errors.New("probe has no handler")
}

func resolvePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port %q is not a named port of container %s", port.StrVal, c.Name)
}

// Loop probes until ctx ends and calls report whenever the result flips
// (after successThreshold successes or failureThreshold failures in a row).
// The first attempt comes right after initialDelaySeconds rather than a
// period later, so a pod that is up turns Ready without waiting a period.
func Loop(ctx context.Context, p *corev1.Probe, t Target, report func(ok bool, err error)) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	successes, failures := int(max(p.SuccessThreshold, 1)), int(max(p.FailureThreshold, 1))
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	var state *bool
	okRun, failRun := 0, 0
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		err := Do(ctx, p, t)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			okRun, failRun = okRun+1, 0
			if okRun >= successes && (state == nil || !*state) {
				v := true
				state = &v
				report(true, nil)
			}
		} else {
			okRun, failRun = 0, failRun+1
			if failRun >= failures && (state == nil || *state) {
				v := false
				state = &v
				report(false, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
