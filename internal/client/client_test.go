package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// hangUp is a workspace that reads each request whole and then drops the
// connection without answering: the request may have been carried out.
func hangUp(t *testing.T) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 4096)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break // the body is read whole; what ends it does not matter here
			}
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLostAnswerToAChangeMayHaveBeenApplied(t *testing.T) {
	c := hangUp(t)
	err := c.Do(context.Background(), "PATCH", "/x", map[string]string{"a": "1"}, nil)
	var maybe *MaybeAppliedError
	if !errors.As(err, &maybe) || !strings.Contains(err.Error(), "the request may have been applied") {
		t.Fatalf("PATCH whose connection dropped after sending: %v, want it to say the request may have been applied", err)
	}
	// A read changes nothing: its failure is a plain one.
	if err := c.Do(context.Background(), "GET", "/x", nil, nil); err == nil || errors.As(err, &maybe) {
		t.Fatalf("GET whose connection dropped: %v, want an error that does not claim anything was applied", err)
	}
}

func TestRequestNeverSentIsNotMaybeApplied(t *testing.T) {
	// A port nobody listens on: the connection is refused before anything
	// is sent.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := New(Config{URL: "http://" + addr, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Do(context.Background(), "PATCH", "/x", map[string]string{"a": "1"}, nil)
	var maybe *MaybeAppliedError
	if err == nil || errors.As(err, &maybe) || strings.Contains(err.Error(), "may have been applied") {
		t.Fatalf("PATCH to a closed port: %v, want a plain connection error", err)
	}
}
