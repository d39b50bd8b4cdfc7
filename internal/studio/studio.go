// Package studio is the workspace's web UI, served under /studio/: attach
// a connected cluster as compute and watch it, look at connected clusters
// and their extension, follow jobs and their logs, try endpoints.
//
// Pages are rendered on the server with html/template from the API's own
// answers (called in process, see api.go); one small script (static/
// studio.js) refreshes parts of pages, follows logs and sends the Test
// box, and every form works without it. There is nothing to build or pin:
// templates, script and style are embedded in the binary, and the pages
// load nothing from elsewhere (the Content-Security-Policy forbids it).
package studio

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Options configure the Studio.
type Options struct {
	// API serves the workspace's API; the Studio calls it in process.
	API http.Handler
	// AdminToken is what signing in takes, and what the Studio sends to
	// the API on a signed-in user's behalf.
	AdminToken []byte
	Logger     *slog.Logger
	// Now is the clock of sessions (time.Now when nil); tests move it.
	Now func() time.Time
}

// Studio serves /studio/.
type Studio struct {
	api      http.Handler
	admin    []byte
	log      *slog.Logger
	sessions *sessions
	tmpl     *template.Template
	mux      *http.ServeMux
	static   http.Handler
}

// Prefix is where the Studio is mounted.
const Prefix = "/studio/"

// maxForm bounds a form's body: the largest, the Test box's request,
// gets as much as the API takes in one request.
const maxForm = 4 << 20

// New builds the Studio's handler for /studio/.
func New(o Options) (*Studio, error) {
	if o.API == nil || len(o.AdminToken) == 0 {
		return nil, errors.New("studio: an API handler and the admin token are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	s := &Studio{api: o.API, admin: o.AdminToken, log: o.Logger, sessions: newSessions(o.Now), tmpl: tmpl,
		mux: http.NewServeMux(), static: http.StripPrefix(Prefix+"static/", http.FileServerFS(static))}
	s.routes()
	return s, nil
}

// kind is what a route answers, which decides what happens without a
// session and whether the route changes anything.
type kind int

const (
	page     kind = iota // a page: without a session, to the sign-in page
	fragment             // a part of a page or JSON for the script: 401
	action               // a POST: needs the session's CSRF token
)

// handler serves a signed-in request; v is filled in with the session and
// the workspace of the path.
type handler func(w http.ResponseWriter, r *http.Request, v *view)

func (s *Studio) routes() {
	s.mux.Handle("GET "+Prefix+"static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Files only: a folder's listing is nobody's business.
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		s.static.ServeHTTP(w, r)
	}))
	s.mux.HandleFunc("GET "+Prefix+"signin", s.signinPage)
	s.mux.HandleFunc("POST "+Prefix+"signin", s.signin)
	s.handle("POST "+Prefix+"signout", action, s.signout)
	s.handle("GET "+Prefix+"{$}", page, s.home)
	s.handle("GET "+Prefix+"workspaces", page, s.workspacesPage)
	s.handle("POST "+Prefix+"workspaces", action, s.chooseWorkspace)
	s.computeRoutes()
	s.clusterRoutes()
	s.jobRoutes()
	s.endpointRoutes()
	s.handle(Prefix, page, func(w http.ResponseWriter, r *http.Request, v *view) {
		s.fail(w, r, v, http.StatusNotFound, "There is no such page in the Studio: "+r.URL.Path)
	})
}

// wsPrefix is the Studio path of a workspace's pages.
const wsPrefix = Prefix + "rg/{rg}/ws/{ws}/"

// handle registers a route of kind k.
func (s *Studio) handle(pattern string, k kind, h handler) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := cookieValue(r, sessionCookie)
		sess, ok := s.sessions.get(id)
		if !ok {
			if k == fragment || r.Header.Get("X-Studio-Fragment") != "" {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				http.Error(w, "not signed in, or the session expired: sign in again at "+Prefix+"signin", http.StatusUnauthorized)
				return
			}
			next := ""
			if r.Method == http.MethodGet {
				next = r.URL.RequestURI()
			}
			http.Redirect(w, r, signinURL(next), http.StatusSeeOther)
			return
		}
		v := &view{CSRF: sess.csrf, SignedIn: true, RG: r.PathValue("rg"), WS: r.PathValue("ws"), sid: id}
		if v.RG == "" && v.WS == "" {
			v.RG, v.WS = sess.rg, sess.ws
		}
		if k == action {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, v, http.StatusBadRequest, "reading the form: "+err.Error())
				return
			}
			// The body is read: lift the workspace's deadline to send it,
			// which would otherwise cancel a change that takes longer.
			if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
				s.log.Error("studio: request body deadline", "err", err)
				s.fail(w, r, v, http.StatusInternalServerError, "cannot lift the request body deadline")
				return
			}
			if err := checkCSRF(r, sess.csrf); err != nil {
				s.log.Warn("studio: change refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
				s.fail(w, r, v, http.StatusForbidden, err.Error())
				return
			}
		}
		v.pathWS = r.PathValue("rg") != "" && r.PathValue("ws") != ""
		h(w, r, v)
	}))
}

// ServeHTTP serves a Studio request with the headers every answer gets.
func (s *Studio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script or style but the Studio's own files, no framing, no
	// form posting elsewhere: an injected tag can do nothing.
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		h.Set("Cache-Control", "no-cache")
	} else {
		// Pages hold what the API said for this session (keys, once asked
		// for): nothing is kept for the back button or another user.
		h.Set("Cache-Control", "no-store")
	}
	s.mux.ServeHTTP(w, r)
}

// signinURL is the sign-in page, leading back to next afterwards.
func signinURL(next string) string {
	if next == "" || next == Prefix {
		return Prefix + "signin"
	}
	return Prefix + "signin?next=" + url.QueryEscape(next)
}

// view is what every template gets.
type view struct {
	Title    string
	Section  string // the nav entry shown as current
	RG, WS   string // the workspace of the page
	CSRF     string
	SignedIn bool
	Error    string // shown at the top
	Data     any
	sid      string
	// pathWS: the workspace is the path's, remembered for the session
	// once a page of it renders (so that /studio/ leads back to it).
	pathWS bool
}

// Link is the Studio path of a workspace page: segs escaped and joined.
func (v *view) Link(segs ...string) string {
	return Prefix + "rg/" + url.PathEscape(v.RG) + "/ws/" + url.PathEscape(v.WS) + apiPath(segs...)
}

// HasWorkspace tells whether a workspace is chosen.
func (v *view) HasWorkspace() bool { return v.RG != "" && v.WS != "" }

// render answers with the template name. It renders into a buffer first,
// so that a template that fails gives a clean error instead of half a page.
func (s *Studio) render(w http.ResponseWriter, code int, name string, v *view) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, v); err != nil {
		s.log.Error("studio: rendering", "template", name, "err", err)
		http.Error(w, "the Studio could not render this page; the workspace's log says why", http.StatusInternalServerError)
		return
	}
	if code == http.StatusOK && v.pathWS {
		s.sessions.setWorkspace(v.sid, v.RG, v.WS)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if _, err := w.Write(buf.Bytes()); err != nil {
		s.log.Debug("studio: writing a page", "err", err) // the browser left
	}
}

// fail answers with an error page (a fragment for the script) with msg.
func (s *Studio) fail(w http.ResponseWriter, r *http.Request, v *view, code int, msg string) {
	if v == nil {
		v = &view{}
	}
	v.Error = msg
	if r.Header.Get("X-Studio-Fragment") != "" {
		s.render(w, code, "error-fragment", v)
		return
	}
	v.Title = http.StatusText(code)
	s.render(w, code, "error", v)
}

// failAPI shows a failed API call: the API's status and message.
func (s *Studio) failAPI(w http.ResponseWriter, r *http.Request, v *view, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		s.fail(w, r, v, ae.Status, ae.Message)
		return
	}
	s.log.Error("studio: API call", "path", r.URL.Path, "err", err)
	s.fail(w, r, v, http.StatusInternalServerError, err.Error())
}

// home leads to the workspace last chosen, else to choosing one.
func (s *Studio) home(w http.ResponseWriter, r *http.Request, v *view) {
	if v.HasWorkspace() {
		http.Redirect(w, r, v.Link("computes"), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"workspaces", http.StatusSeeOther)
}

// JobPath is the Studio page of a job, the "Web View" the CLI prints.
func JobPath(rg, ws, name string) string {
	v := view{RG: rg, WS: ws}
	return v.Link("jobs", name)
}
