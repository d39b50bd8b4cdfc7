package workspace

import (
	"net/http"
	"reflect"
	"strings"

	"outpost.dev/outpost/api"
)

// route is one operation of the API; the table below is both the router's
// configuration and the source of the OpenAPI document, so they cannot drift.
type route struct {
	method, path, summary string
	agent, public         bool
	request, response     any
	handle                func(*Server, http.ResponseWriter, *http.Request)
}

func (r route) handler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.handle(s, w, req) })
}

const (
	clusterPath   = "/resourceGroups/{rg}/connectedClusters/{cluster}"
	extensionPath = clusterPath + "/extensions/{name}"
	computePath   = "/resourceGroups/{rg}/workspaces/{ws}/computes/{name}"
	agentPath     = "/agent/v1" + clusterPath
)

var routes = []route{
	{method: "GET", path: "/healthz", summary: "Liveness: answers ok without authentication", public: true,
		handle: func(_ *Server, w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }},

	{method: "GET", path: "/connectedClusters", summary: "List connected clusters of every resource group", response: []api.ConnectedCluster{}, handle: (*Server).listClusters},
	{method: "GET", path: "/resourceGroups/{rg}/connectedClusters", summary: "List connected clusters", response: []api.ConnectedCluster{}, handle: (*Server).listClusters},
	{method: "PUT", path: clusterPath, summary: "Register a cluster; the answer carries its agent token, once", request: clusterSpec{}, response: api.ConnectedCluster{}, handle: (*Server).registerCluster},
	{method: "GET", path: clusterPath, summary: "Show a connected cluster and its connectivity", response: api.ConnectedCluster{}, handle: (*Server).getCluster},
	{method: "DELETE", path: clusterPath, summary: "Forget a cluster, its extensions and its agent token", handle: (*Server).deleteCluster},

	{method: "GET", path: clusterPath + "/extensions", summary: "List a cluster's extensions", response: []api.Extension{}, handle: (*Server).listExtensions},
	{method: "PUT", path: extensionPath, summary: "Create an extension (settings are validated; nothing is stored on error)", request: api.ExtensionRequest{}, response: api.Extension{}, handle: (*Server).createExtension},
	{method: "PATCH", path: extensionPath, summary: "Update an extension's settings (merged; an empty value removes a key)", request: api.ExtensionRequest{}, response: api.Extension{}, handle: (*Server).updateExtension},
	{method: "GET", path: extensionPath, summary: "Show an extension and its installState", response: api.Extension{}, handle: (*Server).getExtension},
	{method: "DELETE", path: extensionPath, summary: "Delete an extension; the agent removes what it installed", handle: (*Server).deleteExtension},

	{method: "GET", path: "/resourceGroups/{rg}/workspaces/{ws}/computes", summary: "List computes", response: []api.Compute{}, handle: (*Server).listComputes},
	{method: "PUT", path: computePath, summary: "Attach a connected cluster as compute", request: api.ComputeRequest{}, response: api.Compute{}, handle: (*Server).attachCompute},
	{method: "GET", path: computePath, summary: "Show a compute", response: api.Compute{}, handle: (*Server).getCompute},
	{method: "DELETE", path: computePath, summary: "Detach a compute", handle: (*Server).detachCompute},

	{method: "GET", path: agentPath + "/sync", summary: "Agent: what changed in the cluster's desired state since revision ?since= (long poll; 0 or none: everything)", agent: true, response: api.SyncResponse{}, handle: (*Server).agentSync},
	{method: "POST", path: agentPath + "/report", summary: "Agent: heartbeat with cluster facts and extension states", agent: true, request: api.AgentReport{}, handle: (*Server).agentReport},
}

// The document route is added here: in the table's initializer it would refer
// to the table itself.
func init() {
	routes = append(routes, route{method: "GET", path: "/openapi.json", summary: "This API's OpenAPI 3 document",
		handle: func(_ *Server, w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, openAPI()) }})
}

// openAPI builds the OpenAPI document from the route table and the Go types.
func openAPI() map[string]any {
	paths := map[string]map[string]any{}
	schemas := map[string]any{}
	for _, r := range routes {
		op := map[string]any{"summary": r.summary, "responses": map[string]any{}}
		resp := op["responses"].(map[string]any)
		if r.response != nil {
			resp["200"] = map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(r.response), schemas)}}}
		} else {
			resp["204"] = map[string]any{"description": "Done"}
		}
		resp["default"] = map[string]any{"description": "Error", "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(api.Error{}), schemas)}}}
		if r.request != nil {
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(r.request), schemas)}}}
		}
		switch {
		case r.public:
			op["security"] = []any{}
		case r.agent:
			op["security"] = []any{map[string]any{"agentToken": []any{}}}
		}
		var params []any
		for _, seg := range strings.Split(r.path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		if paths[r.path] == nil {
			paths[r.path] = map[string]any{}
		}
		paths[r.path][strings.ToLower(r.method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "Outpost workspace API", "version": "v1"},
		"paths":   paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{
				"adminToken": map[string]any{"type": "http", "scheme": "bearer", "description": "the admin token (data dir, file admin-token)"},
				"agentToken": map[string]any{"type": "http", "scheme": "bearer", "description": "a cluster's agent token, valid for that cluster only"},
			},
		},
		"security": []any{map[string]any{"adminToken": []any{}}},
	}
}

func schemaOf(t reflect.Type, schemas map[string]any) map[string]any {
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), schemas)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Struct:
		if t.PkgPath() == "time" {
			return map[string]any{"type": "string", "format": "date-time"}
		}
		name := t.Name()
		if _, done := schemas[name]; !done {
			schemas[name] = nil // breaks cycles
			props := map[string]any{}
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if !f.IsExported() || tag == "-" {
					continue
				}
				if tag == "" {
					tag = f.Name
				}
				props[tag] = schemaOf(f.Type, schemas)
			}
			schemas[name] = map[string]any{"type": "object", "properties": props}
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}
