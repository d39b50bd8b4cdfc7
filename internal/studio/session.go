package studio

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Sessions live in memory only: a workspace restart signs everyone out,
// which is the price of never writing a credential to disk. The map is
// keyed by the sha256 of the session id, so that neither a heap dump nor a
// timing difference of the map's lookup gives an id away.
const (
	sessionCookie = "__Host-outpost_session"
	// signinCookie carries the sign-in form's CSRF token before there is
	// a session (double submit).
	signinCookie = "__Host-outpost_signin"

	sessionMaxAge  = 12 * time.Hour
	sessionIdleAge = 2 * time.Hour
	signinMaxAge   = time.Hour
	// maxSessions bounds the memory that sign-ins can take; only holders
	// of the admin token make sessions, so reaching it means a runaway
	// script, whose oldest sessions go first.
	maxSessions = 10000
)

// session is one signed-in browser.
type session struct {
	created, seen time.Time
	// csrf is the token every change must carry; it is not a credential
	// on its own (the cookie is), so it may sit in pages.
	csrf string
	// rg and ws are the workspace last chosen, where /studio/ leads.
	rg, ws string
}

type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[sha256.Size]byte]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[[sha256.Size]byte]*session{}}
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	// crypto/rand.Read never returns an error (it panics on failure,
	// since Go 1.24).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its id, the cookie's value.
func (ss *sessions) create() (id string, s session) {
	id = randomToken()
	now := ss.now()
	s = session{created: now, seen: now, csrf: randomToken()}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweep(now)
	if len(ss.m) >= maxSessions {
		var oldest [sha256.Size]byte
		var at time.Time
		for k, v := range ss.m {
			if at.IsZero() || v.created.Before(at) {
				oldest, at = k, v.created
			}
		}
		delete(ss.m, oldest)
	}
	cp := s
	ss.m[sha256.Sum256([]byte(id))] = &cp
	return id, s
}

// sweep drops expired sessions; mu is held.
func (ss *sessions) sweep(now time.Time) {
	for k, v := range ss.m {
		if expired(v, now) {
			delete(ss.m, k)
		}
	}
}

func expired(s *session, now time.Time) bool {
	return now.Sub(s.created) >= sessionMaxAge || now.Sub(s.seen) >= sessionIdleAge
}

// get returns the session of id and marks it used; ok is false for an
// unknown or expired one (an expired one is forgotten).
func (ss *sessions) get(id string) (s session, ok bool) {
	if id == "" {
		return session{}, false
	}
	k := sha256.Sum256([]byte(id))
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p, ok := ss.m[k]
	if !ok {
		return session{}, false
	}
	if expired(p, now) {
		delete(ss.m, k)
		return session{}, false
	}
	p.seen = now
	return *p, true
}

// setWorkspace remembers the workspace a session works on.
func (ss *sessions) setWorkspace(id, rg, ws string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if p, ok := ss.m[sha256.Sum256([]byte(id))]; ok {
		p.rg, p.ws = rg, ws
	}
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sha256.Sum256([]byte(id)))
}

// secureCookie is a cookie only this origin's pages get, over HTTPS only,
// out of reach of scripts, and never sent along with a request another
// site starts. The __Host- prefix makes browsers refuse it unless it is
// Secure, for Path=/ and without Domain, so that no sibling host can set
// one in its place.
func secureCookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	switch {
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
	case maxAge < 0:
		c.MaxAge = -1 // delete it
	}
	return c
}

// cookieValue is the value of the request's cookie name, "" when absent.
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return "" // http.ErrNoCookie, the only error Cookie returns
	}
	return c.Value
}

// equalTokens compares secrets in constant time.
func equalTokens(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
