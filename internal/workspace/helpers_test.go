package workspace

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
)

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
