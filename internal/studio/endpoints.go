package studio

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/scoringclient"
)

// Endpoints: online endpoints with their scoring URI and traffic, an
// endpoint's deployments with their state, instances and the end of their
// logs, its keys (shown only when asked for, in the answer to a POST, never
// in a URL), and the Test box.

func (s *Studio) endpointRoutes() {
	s.handle("GET "+wsPrefix+"endpoints", page, s.endpointsPage)
	s.handle("GET "+wsPrefix+"endpoints/live", fragment, s.endpointsLive)
	s.handle("GET "+wsPrefix+"endpoints/{name}", page, s.endpointPage)
	s.handle("GET "+wsPrefix+"endpoints/{name}/live", fragment, s.endpointLive)
	s.handle("POST "+wsPrefix+"endpoints/{name}/keys", action, s.endpointKeys)
	s.handle("POST "+wsPrefix+"endpoints/{name}/test", action, s.testEndpoint)
}

func (s *Studio) endpointsPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showEndpoints(w, r, v, "endpoints")
}

func (s *Studio) endpointsLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showEndpoints(w, r, v, "endpoints-table")
}

func (s *Studio) showEndpoints(w http.ResponseWriter, r *http.Request, v *view, tmpl string) {
	var es []api.OnlineEndpoint
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "onlineEndpoints"), nil, &es); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	v.Title, v.Section, v.Data = "Endpoints", "endpoints", es
	s.render(w, http.StatusOK, tmpl, v)
}

// endpointData is an endpoint's page.
type endpointData struct {
	api.OnlineEndpoint
	Deployments []deploymentRow
	// Keys are set in the answer to "Show keys" only; Token for an
	// aml_token endpoint.
	Keys  *api.EndpointKeys
	Token *api.EndpointToken
	Test  testBox
}

// deploymentRow is a deployment with its share of traffic and the end of
// its scoring log.
type deploymentRow struct {
	api.OnlineDeployment
	Traffic int
	Model   string
	Logs    string
	LogsErr string
}

// testBox is the Test box: what was sent and what came back.
type testBox struct {
	Request, Deployment string
	Sent                bool
	Status              string
	OK                  bool
	ServedBy            string
	Answer              string
	Err                 string
	FieldErr            string
}

// logLines is how much of each deployment's log the page shows.
const logLines = "20"

func (s *Studio) endpoint(r *http.Request, v *view) (*endpointData, error) {
	name := r.PathValue("name")
	d := &endpointData{}
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "onlineEndpoints", name), nil, &d.OnlineEndpoint); err != nil {
		return nil, err
	}
	var deps []api.OnlineDeployment
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "onlineEndpoints", name, "deployments"), nil, &deps); err != nil {
		return nil, err
	}
	for _, dep := range deps {
		row := deploymentRow{OnlineDeployment: dep, Traffic: d.Traffic[dep.Name], Model: modelOf(dep.Model)}
		var logs api.DeploymentLogs
		err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "onlineEndpoints", name, "deployments", dep.Name, "logs")+"?lines="+logLines, nil, &logs)
		var ae *apiError
		switch {
		case err == nil:
			row.Logs = logs.Content
		case errors.As(err, &ae):
			row.LogsErr = ae.Message // e.g. no instance has written yet
		default:
			return nil, err
		}
		d.Deployments = append(d.Deployments, row)
	}
	return d, nil
}

// modelOf names a deployment's model as its file did.
func modelOf(m *api.ModelRef) string {
	switch {
	case m == nil:
		return ""
	case m.Inline != nil && m.Inline.Name != "":
		return m.Inline.Name + ":" + m.Inline.Version
	case m.Inline != nil:
		return m.Inline.Path
	}
	return m.Ref
}

func (s *Studio) endpointPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showEndpoint(w, r, v, http.StatusOK, "endpoint", nil)
}

func (s *Studio) endpointLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showEndpoint(w, r, v, http.StatusOK, "endpoint-state", nil)
}

// showEndpoint renders the endpoint; with, when set, adds what a POST got.
func (s *Studio) showEndpoint(w http.ResponseWriter, r *http.Request, v *view, code int, tmpl string, with func(*endpointData)) {
	d, err := s.endpoint(r, v)
	if err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	if with != nil {
		with(d)
	}
	v.Title, v.Section, v.Data = "Endpoint "+d.Name, "endpoints", d
	s.render(w, code, tmpl, v)
}

// endpointKeys shows the keys (or a fresh aml_token) in the answer to a
// POST: they are never in a URL, and the page is not cached (no-store).
func (s *Studio) endpointKeys(w http.ResponseWriter, r *http.Request, v *view) {
	name := r.PathValue("name")
	var e api.OnlineEndpoint
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "onlineEndpoints", name), nil, &e); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	var keys api.EndpointKeys
	var tok api.EndpointToken
	var err error
	if e.AuthMode == api.AuthModeAMLToken {
		err = s.call(r, http.MethodPost, wsAPI(v.RG, v.WS, "onlineEndpoints", name, "token"), nil, &tok)
	} else {
		err = s.call(r, http.MethodPost, wsAPI(v.RG, v.WS, "onlineEndpoints", name, "listKeys"), nil, &keys)
	}
	if err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	s.showEndpoint(w, r, v, http.StatusOK, "endpoint", func(d *endpointData) {
		if e.AuthMode == api.AuthModeAMLToken {
			d.Token = &tok
		} else {
			d.Keys = &keys
		}
	})
}

// testEndpoint sends the Test box's request to the scoring URI through the
// router, as `outpost ml online-endpoint invoke` does, and shows the
// router's status and answer. The script gets the result alone; without
// it, the whole page comes back with the result in place.
func (s *Studio) testEndpoint(w http.ResponseWriter, r *http.Request, v *view) {
	name := r.PathValue("name")
	t := testBox{Request: r.PostFormValue("request"), Deployment: r.PostFormValue("deployment"), Sent: true}
	code := http.StatusOK
	if strings.TrimSpace(t.Request) == "" {
		t.FieldErr = "request body is required: the JSON your scoring script's run() takes"
		code = http.StatusBadRequest
	} else {
		a, err := scoringclient.Invoke(r.Context(), client{s, r}, wsAPI(v.RG, v.WS, "onlineEndpoints", name), name, t.Deployment, []byte(t.Request))
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			t.Err, code = ae.Message, ae.Status
		case err != nil:
			t.Err, code = err.Error(), http.StatusBadGateway
		default:
			t.Status, t.OK, t.ServedBy, t.Answer = a.Status, a.OK(), a.Deployment, indentJSON(a.Body)
		}
	}
	if r.Header.Get("X-Studio-Fragment") != "" {
		v.Data = &endpointData{OnlineEndpoint: api.OnlineEndpoint{Name: name}, Test: t}
		s.render(w, code, "test-result", v)
		return
	}
	s.showEndpoint(w, r, v, code, "endpoint", func(d *endpointData) { d.Test = t })
}

// indentJSON shows a JSON answer indented, anything else as it came.
func indentJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

// trafficOf writes a traffic split as the CLI takes it: "blue=90 green=10".
func trafficOf(t map[string]int) string {
	parts := make([]string, 0, len(t))
	for _, k := range slices.Sorted(maps.Keys(t)) {
		parts = append(parts, k+"="+strconv.Itoa(t[k]))
	}
	return strings.Join(parts, " ")
}
