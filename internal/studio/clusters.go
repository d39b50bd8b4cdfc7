package studio

import (
	"net/http"

	"outpost.dev/outpost/api"
)

// Connected clusters: every cluster the workspace knows (clusters belong
// to resource groups, not to a workspace), with what its agent reports and
// its extensions' settings and install state.

func (s *Studio) clusterRoutes() {
	s.handle("GET "+wsPrefix+"clusters", page, s.clustersPage)
	s.handle("GET "+wsPrefix+"clusters/live", fragment, s.clustersLive)
	s.handle("GET "+wsPrefix+"clusters/{crg}/{cluster}", page, s.clusterPage)
	s.handle("GET "+wsPrefix+"clusters/{crg}/{cluster}/live", fragment, s.clusterLive)
}

// clusterData is a cluster with its extensions.
type clusterData struct {
	api.ConnectedCluster
	Extensions []api.Extension
}

func (s *Studio) clustersPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showClusters(w, r, v, "clusters")
}

func (s *Studio) clustersLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showClusters(w, r, v, "clusters-table")
}

func (s *Studio) showClusters(w http.ResponseWriter, r *http.Request, v *view, tmpl string) {
	var cs []api.ConnectedCluster
	if err := s.call(r, http.MethodGet, "/connectedClusters", nil, &cs); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	out := make([]clusterData, len(cs))
	for i, c := range cs {
		out[i].ConnectedCluster = c
		if err := s.call(r, http.MethodGet, apiPath("resourceGroups", c.ResourceGroup, "connectedClusters", c.Name, "extensions"), nil, &out[i].Extensions); err != nil {
			s.failAPI(w, r, v, err)
			return
		}
	}
	v.Title, v.Section, v.Data = "Connected clusters", "clusters", out
	s.render(w, http.StatusOK, tmpl, v)
}

func (s *Studio) clusterPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showCluster(w, r, v, "cluster")
}

func (s *Studio) clusterLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showCluster(w, r, v, "cluster-body")
}

func (s *Studio) showCluster(w http.ResponseWriter, r *http.Request, v *view, tmpl string) {
	base := apiPath("resourceGroups", r.PathValue("crg"), "connectedClusters", r.PathValue("cluster"))
	var d clusterData
	if err := s.call(r, http.MethodGet, base, nil, &d.ConnectedCluster); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	if err := s.call(r, http.MethodGet, base+"/extensions", nil, &d.Extensions); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	v.Title, v.Section, v.Data = "Cluster "+d.Name, "clusters", d
	s.render(w, http.StatusOK, tmpl, v)
}
