package studio

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
)

const testToken = "0123456789abcdef0123456789abcdef-admin"

// fakeAPI stands for the workspace's API: it checks the admin token and
// records the changes asked of it.
type fakeAPI struct {
	mu      sync.Mutex
	changes []string
}

func (f *fakeAPI) handler(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connectedClusters", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]api.ConnectedCluster{{Name: "c1", ResourceGroup: "rg", ConnectivityStatus: api.Connected}})
	})
	mux.HandleFunc("GET /resourceGroups/rg/connectedClusters/c1/extensions", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]api.Extension{{Name: "arcml-extension", InstallState: api.InstallInstalled}})
	})
	mux.HandleFunc("GET /resourceGroups/rg/workspaces/ws/computes", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]api.Compute{})
	})
	mux.HandleFunc("PUT /resourceGroups/rg/workspaces/ws/computes/{name}", func(w http.ResponseWriter, r *http.Request) {
		var req api.ComputeRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("attach body: %v", err)
		}
		if req.Namespace != "default" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(api.Error{Code: "InvalidConfiguration", Message: `--namespace "` + req.Namespace + `": a lowercase RFC 1123 label`})
			return
		}
		f.record(r)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(api.Compute{Name: r.PathValue("name"), ProvisioningState: api.StateCreating})
	})
	mux.HandleFunc("DELETE /resourceGroups/rg/workspaces/ws/computes/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		w.WriteHeader(http.StatusNoContent)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (f *fakeAPI) record(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, r.Method+" "+r.URL.Path)
}

func (f *fakeAPI) changed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.changes...)
}

// clock is a settable time for sessions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t     *testing.T
	s     *Studio
	api   *fakeAPI
	clock *clock
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, api: &fakeAPI{}, clock: &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}
	s, err := New(Options{API: h.api.handler(t), AdminToken: []byte(testToken), Now: h.clock.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	return h
}

const host = "studio.test"

// do serves a request; form, when not nil, is its urlencoded body.
func (h *harness) do(method, target string, form url.Values, cookies []*http.Cookie, header map[string]string) *http.Response {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://"+host+target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.s.ServeHTTP(w, r)
	return w.Result()
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signin signs in as a browser does and returns the session cookie and
// the session's CSRF token.
func (h *harness) signin(token string) (*http.Response, *http.Cookie) {
	h.t.Helper()
	page := h.do("GET", "/studio/signin", nil, nil, nil)
	pre := cookieNamed(page, signinCookie)
	if pre == nil {
		h.t.Fatal("the sign-in page set no sign-in cookie")
	}
	resp := h.do("POST", "/studio/signin", url.Values{"csrf": {pre.Value}, "token": {token}, "next": {"/studio/rg/rg/ws/ws/computes"}},
		[]*http.Cookie{pre}, map[string]string{"Origin": "https://" + host, "Sec-Fetch-Site": "same-origin"})
	return resp, cookieNamed(resp, sessionCookie)
}

func (h *harness) session() (*http.Cookie, string) {
	h.t.Helper()
	resp, c := h.signin(testToken)
	if resp.StatusCode != http.StatusSeeOther || c == nil {
		h.t.Fatalf("sign-in: %d, session cookie %v", resp.StatusCode, c)
	}
	s, ok := h.s.sessions.get(c.Value)
	if !ok {
		h.t.Fatal("no session after signing in")
	}
	return c, s.csrf
}

func TestSecurityHeadersAndUnauthenticated(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		method, path string
		code         int
		location     string
	}{
		{"GET", "/studio/", http.StatusSeeOther, "/studio/signin"},
		{"GET", "/studio/rg/rg/ws/ws/computes", http.StatusSeeOther, "/studio/signin?next=%2Fstudio%2Frg%2Frg%2Fws%2Fws%2Fcomputes"},
		{"GET", "/studio/rg/rg/ws/ws/jobs/j1", http.StatusSeeOther, "/studio/signin?next=%2Fstudio%2Frg%2Frg%2Fws%2Fws%2Fjobs%2Fj1"},
		{"GET", "/studio/no/such/page", http.StatusSeeOther, "/studio/signin?next=%2Fstudio%2Fno%2Fsuch%2Fpage"},
		{"POST", "/studio/rg/rg/ws/ws/computes/c/detach", http.StatusSeeOther, "/studio/signin"},
		{"GET", "/studio/rg/rg/ws/ws/computes/live", http.StatusUnauthorized, ""},
		{"GET", "/studio/rg/rg/ws/ws/jobs/j1/logs", http.StatusUnauthorized, ""},
		{"GET", "/studio/signin", http.StatusOK, ""},
		{"GET", "/studio/static/studio.js", http.StatusOK, ""},
		{"GET", "/studio/static/", http.StatusNotFound, ""},
	} {
		resp := h.do(tc.method, tc.path, nil, nil, nil)
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s: %d to %q, want %d to %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.code, tc.location)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, k, got, want)
			}
		}
		if !strings.HasPrefix(tc.path, "/studio/static/") && resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tc.method, tc.path, resp.Header.Get("Cache-Control"))
		}
	}
	if got := h.api.changed(); len(got) != 0 {
		t.Errorf("changes without a session: %v", got)
	}
}

func TestSignin(t *testing.T) {
	h := newHarness(t)
	page := h.do("GET", "/studio/signin", nil, nil, nil)
	pre := cookieNamed(page, signinCookie)
	if pre == nil || !pre.HttpOnly || !pre.Secure || pre.SameSite != http.SameSiteStrictMode || pre.Path != "/" || pre.Domain != "" {
		t.Fatalf("sign-in cookie: %+v", pre)
	}
	if body := bodyOf(t, page); !strings.Contains(body, `name="csrf" value="`+pre.Value+`"`) {
		t.Fatalf("the sign-in form does not carry the cookie's token:\n%s", body)
	}
	origin := map[string]string{"Origin": "https://" + host}
	form := func(csrf, token string) url.Values { return url.Values{"csrf": {csrf}, "token": {token}} }

	t.Run("wrong token", func(t *testing.T) {
		resp := h.do("POST", "/studio/signin", form(pre.Value, testToken+"x"), []*http.Cookie{pre}, origin)
		if resp.StatusCode != http.StatusUnauthorized || cookieNamed(resp, sessionCookie) != nil || !strings.Contains(bodyOf(t, resp), "Wrong token") {
			t.Fatalf("wrong token: %d", resp.StatusCode)
		}
	})
	t.Run("no sign-in cookie", func(t *testing.T) {
		resp := h.do("POST", "/studio/signin", form(pre.Value, testToken), nil, origin)
		if resp.StatusCode != http.StatusForbidden || cookieNamed(resp, sessionCookie) != nil {
			t.Fatalf("without the pre-session cookie: %d", resp.StatusCode)
		}
	})
	t.Run("another origin", func(t *testing.T) {
		resp := h.do("POST", "/studio/signin", form(pre.Value, testToken), []*http.Cookie{pre}, map[string]string{"Origin": "https://evil.test"})
		if resp.StatusCode != http.StatusForbidden || cookieNamed(resp, sessionCookie) != nil {
			t.Fatalf("from another origin: %d", resp.StatusCode)
		}
	})
	t.Run("right token", func(t *testing.T) {
		resp, c := h.signin(testToken)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/studio/rg/rg/ws/ws/computes" {
			t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" ||
			c.MaxAge != int(sessionMaxAge/time.Second) || len(c.Value) < 43 {
			t.Fatalf("session cookie: %+v", c)
		}
		if gone := cookieNamed(resp, signinCookie); gone == nil || gone.MaxAge >= 0 {
			t.Errorf("the sign-in cookie is not removed: %+v", gone)
		}
		// Only the id's hash is kept.
		for k := range h.s.sessions.m {
			if strings.Contains(string(k[:]), c.Value) {
				t.Error("the session id is kept in the clear")
			}
		}
		if got := h.do("GET", "/studio/rg/rg/ws/ws/computes", nil, []*http.Cookie{c}, nil); got.StatusCode != http.StatusOK {
			t.Errorf("a page with the session: %d", got.StatusCode)
		}
	})
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                              "/studio/",
		"/studio/rg/a/ws/b/jobs?x=1":    "/studio/rg/a/ws/b/jobs?x=1",
		"https://evil.test/studio/":     "/studio/",
		"//evil.test/studio/":           "/studio/",
		"/\\evil.test":                  "/studio/",
		"/other":                        "/studio/",
		"/studio/signin?next=/studio/x": "/studio/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestCSRF(t *testing.T) {
	h := newHarness(t)
	c, csrf := h.session()
	detach := "/studio/rg/rg/ws/ws/computes/k8s/detach"
	for _, tc := range []struct {
		name   string
		form   url.Values
		header map[string]string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {csrf + "x"}}, nil},
		{"another session's token", url.Values{"csrf": {randomToken()}}, nil},
		{"right token from another origin", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.test"}},
		{"right token from another site", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		resp := h.do("POST", detach, tc.form, []*http.Cookie{c}, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, resp.StatusCode)
		}
	}
	if got := h.api.changed(); len(got) != 0 {
		t.Fatalf("refused posts changed something: %v", got)
	}
	resp := h.do("POST", detach, url.Values{"csrf": {csrf}}, []*http.Cookie{c}, map[string]string{"Origin": "https://" + host, "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the token: %d", resp.StatusCode)
	}
	resp = h.do("POST", detach, url.Values{}, []*http.Cookie{c}, map[string]string{csrfHeader: csrf})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the token in the header: %d", resp.StatusCode)
	}
	if got := h.api.changed(); len(got) != 2 || got[0] != "DELETE /resourceGroups/rg/workspaces/ws/computes/k8s" {
		t.Fatalf("changes: %v", got)
	}
}

func TestSessionExpiry(t *testing.T) {
	h := newHarness(t)
	page := "/studio/rg/rg/ws/ws/computes"
	ok := func(c *http.Cookie) bool {
		return h.do("GET", page, nil, []*http.Cookie{c}, nil).StatusCode == http.StatusOK
	}
	t.Run("idle", func(t *testing.T) {
		c, _ := h.session()
		h.clock.advance(sessionIdleAge - time.Second)
		if !ok(c) {
			t.Fatal("a session used within the idle time expired")
		}
		h.clock.advance(sessionIdleAge)
		if ok(c) {
			t.Fatal("a session idle for 2h still works")
		}
		if resp := h.do("GET", page+"/live", nil, []*http.Cookie{c}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a fragment of an expired session: %d", resp.StatusCode)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		c, _ := h.session()
		for used := time.Duration(0); used < sessionMaxAge-time.Hour; used += time.Hour {
			h.clock.advance(time.Hour)
			if !ok(c) {
				t.Fatalf("a session in use expired after %s", used+time.Hour)
			}
		}
		h.clock.advance(time.Hour)
		if ok(c) {
			t.Fatal("a session still works after 12h")
		}
	})
	t.Run("sign out", func(t *testing.T) {
		c, csrf := h.session()
		resp := h.do("POST", "/studio/signout", url.Values{"csrf": {csrf}}, []*http.Cookie{c}, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/studio/signin" {
			t.Fatalf("sign out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if gone := cookieNamed(resp, sessionCookie); gone == nil || gone.MaxAge >= 0 {
			t.Errorf("sign out leaves the cookie: %+v", gone)
		}
		if ok(c) {
			t.Fatal("the session works after signing out")
		}
	})
}

func TestAttachErrorNextToField(t *testing.T) {
	h := newHarness(t)
	c, csrf := h.session()
	form := url.Values{"csrf": {csrf}, "name": {"k8s"}, "cluster": {"/resourceGroups/rg/connectedClusters/c1"}, "namespace": {"Bad_NS"}, "identity": {"None"}}
	resp := h.do("POST", "/studio/rg/rg/ws/ws/computes/new", form, []*http.Cookie{c}, nil)
	body := bodyOf(t, resp)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `<p class="field-error" id="namespace-error">--namespace &#34;Bad_NS&#34;: a lowercase RFC 1123 label</p>`) {
		t.Fatalf("bad namespace: %d\n%s", resp.StatusCode, body)
	}
	form.Set("name", "")
	resp = h.do("POST", "/studio/rg/rg/ws/ws/computes/new", form, []*http.Cookie{c}, nil)
	if body := bodyOf(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="name-error">compute name is required<`) {
		t.Fatalf("no name: %d\n%s", resp.StatusCode, body)
	}
	if got := h.api.changed(); len(got) != 0 {
		t.Fatalf("refused attaches changed something: %v", got)
	}
	form.Set("name", "k8s")
	form.Set("namespace", "default")
	resp = h.do("POST", "/studio/rg/rg/ws/ws/computes/new", form, []*http.Cookie{c}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/studio/rg/rg/ws/ws/computes/k8s" {
		t.Fatalf("attach: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestCompleteUTF8(t *testing.T) {
	for in, want := range map[string]int{"": 0, "abc": 3, "a\xc3\xa9": 3, "a\xc3": 1, "\xe2\x82\xac": 3, "\xe2\x82": 0, "x\xf0\x9f\x98": 1} {
		if got := completeUTF8([]byte(in)); got != want {
			t.Errorf("completeUTF8(%q) = %d, want %d", in, got, want)
		}
	}
}
