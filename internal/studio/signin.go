package studio

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// signinData is the sign-in page's.
type signinData struct {
	Next string
}

func (s *Studio) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.sessions.get(cookieValue(r, sessionCookie)); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderSignin(w, http.StatusOK, r.URL.Query().Get("next"), "")
}

// renderSignin shows the sign-in form with a fresh pre-session CSRF token,
// in the form and in a cookie: a POST must carry both, equal, which a page
// of another site cannot arrange (it can neither read nor set the cookie).
func (s *Studio) renderSignin(w http.ResponseWriter, code int, next, msg string) {
	tok := randomToken()
	http.SetCookie(w, secureCookie(signinCookie, tok, signinMaxAge))
	s.render(w, code, "signin", &view{Title: "Sign in", CSRF: tok, Error: msg, Data: signinData{Next: safeNext(next)}})
}

func (s *Studio) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderSignin(w, http.StatusBadRequest, "", "reading the form: "+err.Error())
		return
	}
	next := r.PostFormValue("next")
	if err := sameOrigin(r); err != nil {
		s.log.Warn("studio: sign-in refused", "remote", r.RemoteAddr, "reason", err)
		s.renderSignin(w, http.StatusForbidden, next, err.Error())
		return
	}
	if !equalTokens(cookieValue(r, signinCookie), r.PostFormValue(csrfField)) {
		s.log.Warn("studio: sign-in refused", "remote", r.RemoteAddr, "reason", "no matching sign-in form token")
		s.renderSignin(w, http.StatusForbidden, next, "This sign-in was not sent by the sign-in page, or the page is older than an hour: sign in again.")
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), s.admin) != 1 {
		s.log.Warn("studio: sign-in refused", "remote", r.RemoteAddr, "reason", "wrong token")
		s.renderSignin(w, http.StatusUnauthorized, next, "Wrong token. The admin token is in the workspace's data directory, file admin-token.")
		return
	}
	id, _ := s.sessions.create()
	http.SetCookie(w, secureCookie(sessionCookie, id, sessionMaxAge))
	http.SetCookie(w, secureCookie(signinCookie, "", -time.Second))
	s.log.Info("studio: signed in", "remote", r.RemoteAddr)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

func (s *Studio) signout(w http.ResponseWriter, r *http.Request, v *view) {
	s.sessions.delete(v.sid)
	http.SetCookie(w, secureCookie(sessionCookie, "", -time.Second))
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// safeNext is where to go after signing in: a Studio path of this origin
// only, so that the sign-in page cannot be made to send anyone elsewhere.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(next, Prefix) || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(u.Path, Prefix+"signin") {
		return Prefix
	}
	return u.RequestURI()
}
