// Package scoringclient calls an online endpoint's scoring URI through its
// cluster's inference router, as a user's client would: with the endpoint's
// key (or a fresh aml_token), trusting the router's certificate when a CA
// of the machine issued it or when it is the one its cluster reported.
// `outpost ml online-endpoint invoke` and the Studio's Test box both use
// it, so that they send the same request and trust the same certificates.
package scoringclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"outpost.dev/outpost/api"
)

// Workspace is how Invoke reaches the workspace's API: the CLI's client,
// or the Studio's in-process caller. Do sends in as JSON (when not nil) and
// decodes the answer into out (when not nil); a refusal is an error
// carrying the workspace's message.
type Workspace interface {
	Do(ctx context.Context, method, path string, in, out any) error
}

// Answer is what the router answered.
type Answer struct {
	URI        string
	StatusCode int
	Status     string // e.g. "200 OK"
	// Deployment is the azureml-model-deployment header of the answer:
	// the deployment that served it.
	Deployment string
	Body       []byte
}

// OK tells a success (2xx).
func (a *Answer) OK() bool { return a.StatusCode/100 == 2 }

// Err is the error the CLI reports for an answer that is not a success;
// nil for a success.
func (a *Answer) Err() error {
	if a.OK() {
		return nil
	}
	return fmt.Errorf("%s answered %s: %s", a.URI, a.Status, strings.TrimSpace(string(a.Body)))
}

// maxAnswer bounds the answer read from the router.
const maxAnswer = 64 << 20

// Invoke POSTs body to the scoring URI of the online endpoint at
// endpointPath (its API path; name for messages), sending it to deployment
// when that is not empty. An error is a failure to call: the workspace's
// refusal, no scoring URI yet, no connection, an untrusted certificate. An
// answer is returned whatever its status.
func Invoke(ctx context.Context, ws Workspace, endpointPath, name, deployment string, body []byte) (*Answer, error) {
	var e api.OnlineEndpoint
	if err := ws.Do(ctx, "GET", endpointPath, nil, &e); err != nil {
		return nil, err
	}
	if e.ScoringURI == "" {
		msg := e.StatusMessage
		if msg == "" {
			msg = "-"
		}
		return nil, fmt.Errorf("online endpoint %s has no scoring URI yet: its cluster has reported no inference router (%s)", name, msg)
	}
	var router api.InferenceRouter
	if err := ws.Do(ctx, "GET", endpointPath+"/router", nil, &router); err != nil {
		return nil, err
	}
	var cred string
	if e.AuthMode == api.AuthModeAMLToken {
		var tok api.EndpointToken
		if err := ws.Do(ctx, "POST", endpointPath+"/token", nil, &tok); err != nil {
			return nil, err
		}
		cred = tok.AccessToken
	} else {
		var keys api.EndpointKeys
		if err := ws.Do(ctx, "POST", endpointPath+"/listKeys", nil, &keys); err != nil {
			return nil, err
		}
		cred = keys.PrimaryKey
	}
	u, err := url.Parse(e.ScoringURI)
	if err != nil {
		return nil, fmt.Errorf("online endpoint %s: scoring URI %q: %w", name, e.ScoringURI, err)
	}
	hc, err := NewHTTPClient(router.CertificatePEM, u.Hostname())
	if err != nil {
		return nil, err
	}
	defer hc.CloseIdleConnections()
	return Score(ctx, hc, e.ScoringURI, cred, deployment, body)
}

// Score POSTs a request to a scoring URI with the credential and returns
// the answer, whatever its status.
func Score(ctx context.Context, hc *http.Client, uri, cred, deployment string, body []byte) (*Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cred)
	if deployment != "" {
		req.Header.Set("azureml-model-deployment", deployment)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", uri, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", uri, err)
	}
	return &Answer{URI: uri, StatusCode: resp.StatusCode, Status: resp.Status,
		Deployment: resp.Header.Get("azureml-model-deployment"), Body: data}, nil
}

// NewHTTPClient calls a router: over HTTPS it trusts the machine's CAs,
// and the router's own certificate as the cluster reported it (pinned: the
// router's name need not be in it, as a router reached on a node's address
// or a load balancer's often is not).
func NewHTTPClient(certPEM, host string) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if strings.TrimSpace(certPEM) != "" {
		var pinned []*x509.Certificate
		rest := []byte(certPEM)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the router's certificate, as its cluster reported it: %w", err)
			}
			pinned = append(pinned, cert)
		}
		if len(pinned) == 0 {
			return nil, errors.New("the router's certificate, as its cluster reported it, holds no certificate")
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		for _, c := range pinned {
			roots.AddCert(c)
		}
		// The check is VerifyConnection's: a CA the machine trusts for the
		// name, or the pinned certificate itself.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the router presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if slices.ContainsFunc(pinned, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, leaf.Raw) }) {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			// The host of the scoring URI, not cs.ServerName, which is
			// empty for an IP address (no SNI) and would check no name.
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
			if err != nil {
				return fmt.Errorf("the router's certificate is neither the one its cluster reported nor trusted for %s: %w", host, err)
			}
			return nil
		}
	}
	tr := &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{Timeout: 30 * time.Second}).DialContext}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}
