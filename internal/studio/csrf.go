package studio

import (
	"errors"
	"fmt"
	"net/http"
)

// Every change is a POST, and every POST must prove that a Studio page sent
// it: its session's CSRF token, in the form field csrf or (fetch) the
// header X-CSRF-Token. SameSite=Strict already keeps the cookie off
// requests other sites start; the token also covers browsers without it,
// and the origin check covers a token leaked some other way.

const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

var errNoCSRF = errors.New("this request does not carry the page's CSRF token: reload the page and try again")

// sameOrigin refuses a request a browser says another site started. A
// client that sends neither header (curl, a script) is judged by its
// token alone.
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("refused: the request came from another site (Sec-Fetch-Site: %s)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != "https://"+r.Host {
		return fmt.Errorf("refused: the request came from another origin (%s)", origin)
	}
	return nil
}

// checkCSRF checks a POST against the token want. The form must have been
// parsed (ParseForm) before.
func checkCSRF(r *http.Request, want string) error {
	if err := sameOrigin(r); err != nil {
		return err
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	if !equalTokens(got, want) {
		return errNoCSRF
	}
	return nil
}
