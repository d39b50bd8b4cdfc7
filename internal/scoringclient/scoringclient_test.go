package scoringclient

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

// fakeWorkspace answers the calls Invoke makes.
type fakeWorkspace struct {
	endpoint api.OnlineEndpoint
	router   api.InferenceRouter
	calls    []string
}

func (f *fakeWorkspace) Do(_ context.Context, method, path string, _, out any) error {
	f.calls = append(f.calls, method+" "+path)
	var v any
	switch {
	case method == "GET" && path == "/ep":
		v = f.endpoint
	case method == "GET" && path == "/ep/router":
		v = f.router
	case method == "POST" && path == "/ep/listKeys":
		v = api.EndpointKeys{PrimaryKey: "primary", SecondaryKey: "secondary"}
	case method == "POST" && path == "/ep/token":
		v = api.EndpointToken{AccessToken: "token"}
	default:
		return fmt.Errorf("unexpected %s %s", method, path)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// router is a scoring router over HTTPS with its own self-signed
// certificate, which the machine does not trust.
func router(t *testing.T) (*httptest.Server, string) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("azureml-model-deployment", "blue")
		if r.Header.Get("azureml-model-deployment") == "broken" {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "ValueError: boom")
			return
		}
		fmt.Fprintf(w, `{"auth": %q, "body": %q}`, r.Header.Get("Authorization"), body)
	}))
	t.Cleanup(srv.Close)
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, string(cert)
}

func TestInvoke(t *testing.T) {
	srv, cert := router(t)
	ctx := context.Background()
	ws := &fakeWorkspace{endpoint: api.OnlineEndpoint{Name: "ep", ScoringURI: srv.URL + "/api/v1/endpoint/ep/score", AuthMode: api.AuthModeKey},
		router: api.InferenceRouter{BaseURL: srv.URL, CertificatePEM: cert}}

	a, err := Invoke(ctx, ws, "/ep", "ep", "", []byte(`{"data": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK() || a.Err() != nil || a.Deployment != "blue" || string(a.Body) != `{"auth": "Bearer primary", "body": "{\"data\": 1}"}` {
		t.Fatalf("key endpoint: %+v %s", a, a.Body)
	}

	ws.endpoint.AuthMode = api.AuthModeAMLToken
	a, err = Invoke(ctx, ws, "/ep", "ep", "broken", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.OK() || a.StatusCode != 500 || a.Err() == nil || a.Err().Error() != srv.URL+"/api/v1/endpoint/ep/score answered 500 Internal Server Error: ValueError: boom" {
		t.Fatalf("a failing deployment: %+v %v", a, a.Err())
	}
	if last := ws.calls[len(ws.calls)-1]; last != "POST /ep/token" {
		t.Errorf("an aml_token endpoint is called with %s", last)
	}

	// A certificate neither pinned nor trusted is refused before anything is sent.
	ws.router.CertificatePEM = ""
	if _, err := Invoke(ctx, ws, "/ep", "ep", "", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusted router: %v", err)
	}

	ws.endpoint.ScoringURI, ws.endpoint.StatusMessage = "", ""
	if _, err := Invoke(ctx, ws, "/ep", "ep", "", nil); err == nil ||
		err.Error() != "online endpoint ep has no scoring URI yet: its cluster has reported no inference router (-)" {
		t.Fatalf("no scoring URI: %v", err)
	}
}
