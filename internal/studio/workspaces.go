package studio

import (
	"net/http"
	"strings"
)

// workspaceRef is a workspace as GET /workspaces lists it.
type workspaceRef struct {
	Name           string `json:"name"`
	ResourceGroup  string `json:"resource_group"`
	DefaultCompute string `json:"default_compute"`
}

type workspacesData struct {
	Known   []workspaceRef
	ListOK  bool // false: the list could not be read (ListErr says why)
	ListErr string
	RG, WS  string
	Errors  fieldErrors
}

// fieldErrors maps a form's field names to the API's message about it.
type fieldErrors map[string]string

// fieldOf is the form field an API message is about, by the prefixes the
// API's messages start with (a name's kind, or the CLI flag it stands
// for); "" when none matches, and the message is shown at the top only.
func fieldOf(msg string, prefixes map[string]string) string {
	best, field := 0, ""
	for p, f := range prefixes {
		if strings.HasPrefix(msg, p) && len(p) > best {
			best, field = len(p), f
		}
	}
	return field
}

func (s *Studio) workspacesPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.renderWorkspaces(w, r, v, http.StatusOK, &workspacesData{RG: v.RG, WS: v.WS})
}

func (s *Studio) renderWorkspaces(w http.ResponseWriter, r *http.Request, v *view, code int, d *workspacesData) {
	if err := s.call(r, http.MethodGet, "/workspaces", nil, &d.Known); err != nil {
		d.ListErr = err.Error()
	} else {
		d.ListOK = true
	}
	v.Title, v.Section, v.Data = "Workspaces", "workspaces", d
	s.render(w, code, "workspaces", v)
}

var workspaceFields = map[string]string{"resource group": "rg", "workspace name": "ws"}

// chooseWorkspace opens a workspace by name. The API checks the names:
// showing a workspace's settings refuses a name it would refuse anywhere.
func (s *Studio) chooseWorkspace(w http.ResponseWriter, r *http.Request, v *view) {
	d := &workspacesData{RG: strings.TrimSpace(r.PostFormValue("rg")), WS: strings.TrimSpace(r.PostFormValue("ws")), Errors: fieldErrors{}}
	switch {
	case d.RG == "":
		d.Errors["rg"] = "resource group is required"
	case d.WS == "":
		d.Errors["ws"] = "workspace name is required"
	default:
		err := s.call(r, http.MethodGet, wsAPI(d.RG, d.WS), nil, nil)
		if err == nil {
			v.RG, v.WS = d.RG, d.WS
			s.sessions.setWorkspace(v.sid, d.RG, d.WS)
			http.Redirect(w, r, v.Link("computes"), http.StatusSeeOther)
			return
		}
		ae, ok := err.(*apiError)
		if !ok {
			s.failAPI(w, r, v, err)
			return
		}
		if f := fieldOf(ae.Message, workspaceFields); f != "" {
			d.Errors[f] = ae.Message
		}
		v.Error = ae.Message
		s.renderWorkspaces(w, r, v, ae.Status, d)
		return
	}
	v.Error = "Give a resource group and a workspace name."
	s.renderWorkspaces(w, r, v, http.StatusBadRequest, d)
}
