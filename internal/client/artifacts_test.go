package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestArtifactsClientAndRaw(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		switch r.URL.Path {
		case "/resourceGroups/r g/workspaces/ws/datastores/workspaceblobstore/files":
			io.WriteString(w, `[{"path":"a","size":1,"sha256":"00"}]`)
		case "/stream":
			data, err := io.ReadAll(r.Body)
			if err != nil {
				t.Error(err)
			}
			w.Write(append([]byte("echo:"), data...))
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"NotFound","message":"no such thing"}`)
		}
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL + "/", Token: "secret-token"})
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != srv.URL || c.Token() != "secret-token" || c.HTTPClient().Timeout == 0 {
		t.Errorf("BaseURL %q, Token %q, timeout %v", c.BaseURL(), c.Token(), c.HTTPClient().Timeout)
	}

	a := c.Artifacts("r g", "ws")
	if a.Base != srv.URL+"/resourceGroups/r%20g/workspaces/ws" || a.Token != "secret-token" {
		t.Errorf("artifacts client: base %q", a.Base)
	}
	// Transfers of big files must not be cut at the login's 60 s.
	if a.HTTP.Timeout != 0 || a.HTTP.Transport != c.HTTPClient().Transport {
		t.Errorf("artifacts client: timeout %v, its own transport: %v", a.HTTP.Timeout, a.HTTP.Transport != c.HTTPClient().Transport)
	}
	files, err := a.List(context.Background(), "workspaceblobstore", "")
	if err != nil || len(files) != 1 || files[0].Path != "a" {
		t.Fatalf("List: %+v %v", files, err)
	}

	resp, err := c.Raw(context.Background(), http.MethodPost, "/stream", strings.NewReader("body"), "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(data) != "echo:body" {
		t.Errorf("Raw: %q %v", data, err)
	}
	_, err = c.Raw(context.Background(), http.MethodGet, "/missing", nil, "")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound || se.Body.Message != "no such thing" || !IsNotFound(err) {
		t.Errorf("Raw of a missing thing: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if !strings.HasSuffix(g, " Bearer secret-token") {
			t.Errorf("request without the token: %q", g)
		}
	}
}
