package studio

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"outpost.dev/outpost/api"
)

// Compute > Attached computes: the list, "+ New > Kubernetes" (the seed's
// attach form), a compute's page with its state as the reconciler decides
// it, detach.

func (s *Studio) computeRoutes() {
	s.handle("GET "+wsPrefix+"computes", page, s.computesPage)
	s.handle("GET "+wsPrefix+"computes/live", fragment, s.computesLive)
	s.handle("GET "+wsPrefix+"computes/new", page, s.newComputePage)
	s.handle("POST "+wsPrefix+"computes/new", action, s.attachCompute)
	s.handle("GET "+wsPrefix+"computes/{name}", page, s.computePage)
	s.handle("GET "+wsPrefix+"computes/{name}/live", fragment, s.computeLive)
	s.handle("POST "+wsPrefix+"computes/{name}/detach", action, s.detachCompute)
}

func (s *Studio) computesPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showComputes(w, r, v, "computes")
}

func (s *Studio) computesLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showComputes(w, r, v, "computes-table")
}

func (s *Studio) showComputes(w http.ResponseWriter, r *http.Request, v *view, tmpl string) {
	var cs []api.Compute
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "computes"), nil, &cs); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	v.Title, v.Section, v.Data = "Attached computes", "computes", cs
	s.render(w, http.StatusOK, tmpl, v)
}

// clusterOption is a connected cluster the attach form offers, with what
// decides whether attaching it can succeed.
type clusterOption struct {
	ID           string // the compute's resourceId
	Label        string
	Connectivity string
	Extensions   []api.Extension
}

// computeForm is the attach form: what was typed, and the API's message
// next to the field it is about.
type computeForm struct {
	Name, Cluster, Namespace, Identity, Identities string
	CreateNamespace                                bool
	Clusters                                       []clusterOption
	Errors                                         fieldErrors
}

func (s *Studio) newComputePage(w http.ResponseWriter, r *http.Request, v *view) {
	f := &computeForm{Namespace: "default", Identity: "None", Errors: fieldErrors{}}
	s.renderComputeForm(w, r, v, http.StatusOK, f)
}

func (s *Studio) renderComputeForm(w http.ResponseWriter, r *http.Request, v *view, code int, f *computeForm) {
	var clusters []api.ConnectedCluster
	if err := s.call(r, http.MethodGet, "/connectedClusters", nil, &clusters); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	for _, c := range clusters {
		o := clusterOption{ID: "/resourceGroups/" + c.ResourceGroup + "/connectedClusters/" + c.Name,
			Label: c.ResourceGroup + "/" + c.Name, Connectivity: c.ConnectivityStatus}
		if err := s.call(r, http.MethodGet, apiPath("resourceGroups", c.ResourceGroup, "connectedClusters", c.Name, "extensions"), nil, &o.Extensions); err != nil {
			s.failAPI(w, r, v, err)
			return
		}
		f.Clusters = append(f.Clusters, o)
	}
	v.Title, v.Section, v.Data = "Attach a Kubernetes cluster", "computes", f
	s.render(w, code, "compute-new", v)
}

// computeFields maps the API's attach messages to the form's fields.
var computeFields = map[string]string{
	"compute name":               "name",
	"compute ":                   "name", // "compute NAME already exists"
	"--resource-id":              "cluster",
	"--namespace":                "namespace",
	"--identity-type":            "identity",
	"--user-assigned-identities": "identities",
}

// attachCompute PUTs the compute, as `outpost ml compute attach` does. A
// refusal re-renders the form with the API's message next to its field
// and the API's status; nothing was stored then.
func (s *Studio) attachCompute(w http.ResponseWriter, r *http.Request, v *view) {
	f := &computeForm{
		Name:            strings.TrimSpace(r.PostFormValue("name")),
		Cluster:         r.PostFormValue("cluster"),
		Namespace:       strings.TrimSpace(r.PostFormValue("namespace")),
		Identity:        r.PostFormValue("identity"),
		Identities:      r.PostFormValue("identities"),
		CreateNamespace: r.PostFormValue("create_namespace") != "",
		Errors:          fieldErrors{},
	}
	switch {
	case f.Name == "":
		f.Errors["name"] = "compute name is required"
	case f.Cluster == "":
		f.Errors["cluster"] = "pick the connected cluster to attach"
	}
	if len(f.Errors) > 0 {
		v.Error = "The compute was not attached: see the fields below."
		s.renderComputeForm(w, r, v, http.StatusBadRequest, f)
		return
	}
	req := api.ComputeRequest{Type: "Kubernetes", ResourceID: f.Cluster, Namespace: f.Namespace,
		IdentityType: f.Identity, CreateNamespace: f.CreateNamespace}
	if f.Identity == "UserAssigned" {
		req.UserAssignedIdentities = strings.FieldsFunc(f.Identities, func(r rune) bool {
			return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t'
		})
	}
	err := s.call(r, http.MethodPut, wsAPI(v.RG, v.WS, "computes", f.Name), req, nil)
	var ae *apiError
	switch {
	case err == nil:
		http.Redirect(w, r, v.Link("computes", f.Name), http.StatusSeeOther)
	case errors.As(err, &ae):
		if field := fieldOf(ae.Message, computeFields); field != "" {
			f.Errors[field] = ae.Message
		}
		v.Error = ae.Message
		s.renderComputeForm(w, r, v, ae.Status, f)
	default:
		s.failAPI(w, r, v, err)
	}
}

// computeData is a compute's page: the compute and where it runs.
type computeData struct {
	api.Compute
	ClusterRG, ClusterName string
}

func (s *Studio) computePage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showCompute(w, r, v, "compute")
}

func (s *Studio) computeLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showCompute(w, r, v, "compute-state")
}

func (s *Studio) showCompute(w http.ResponseWriter, r *http.Request, v *view, tmpl string) {
	var d computeData
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "computes", r.PathValue("name")), nil, &d.Compute); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	d.ClusterRG, d.ClusterName = clusterOf(d.ResourceID)
	v.Title, v.Section, v.Data = "Compute "+d.Name, "computes", d
	s.render(w, http.StatusOK, tmpl, v)
}

// clusterID matches a connected cluster's resource id, short or in
// Azure's long form, for a link to the cluster's page.
var clusterID = regexp.MustCompile(`(?i)/resourceGroups/([^/]+)/(?:.*/)?connectedClusters/([^/]+)$`)

func clusterOf(id string) (rg, name string) {
	if m := clusterID.FindStringSubmatch(id); m != nil {
		return m[1], m[2]
	}
	return "", ""
}

func (s *Studio) detachCompute(w http.ResponseWriter, r *http.Request, v *view) {
	if err := s.call(r, http.MethodDelete, wsAPI(v.RG, v.WS, "computes", r.PathValue("name")), nil, nil); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	http.Redirect(w, r, v.Link("computes"), http.StatusSeeOther)
}
