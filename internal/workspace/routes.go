package workspace

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"

	"outpost.dev/outpost/api"
)

// route is one operation of the API; the table below is both the router's
// configuration and the source of the OpenAPI document, so they cannot drift.
type route struct {
	method, path, summary string
	// Who may call: the admin token (none set), a cluster's agent, a
	// job's own credential (the job-run API), a deployment's own
	// credential (the deployment-run API), or anyone.
	agent, jobrun, deployrun, public bool
	request, response                any
	// stream routes get their body unread, for the handler to stream (blobs,
	// log appends, commits), with streamBodyTimeout to send it.
	stream bool
	// rawRequest and rawResponse are bodies of bytes, not JSON.
	rawRequest, rawResponse bool
	handle                  func(*Server, http.ResponseWriter, *http.Request)
}

func (r route) handler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.handle(s, w, req) })
}

const (
	clusterPath   = "/resourceGroups/{rg}/connectedClusters/{cluster}"
	extensionPath = clusterPath + "/extensions/{name}"
	computePath   = "/resourceGroups/{rg}/workspaces/{ws}/computes/{name}"
	agentPath     = "/agent/v1" + clusterPath
	workspacePath = "/resourceGroups/{rg}/workspaces/{ws}"
	jobPath       = workspacePath + "/jobs/{name}"
	// jobRunPath is the job-run API: what a job's pods call with the job's
	// credential (api/jobrun.go).
	jobRunPath = "/jobrun/v1" + jobPath
	// endpointPath and deploymentPath are an online endpoint and one of
	// its deployments.
	endpointPath   = workspacePath + "/onlineEndpoints/{name}"
	deploymentPath = endpointPath + "/deployments/{deployment}"
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

	{method: "GET", path: "/workspaces", summary: "List the workspaces that hold settings, a compute or an online endpoint", response: []workspaceView{}, handle: (*Server).listWorkspaces},
	{method: "GET", path: workspacePath, summary: "Show a workspace's settings", response: workspaceView{}, handle: (*Server).getWorkspace},
	{method: "PATCH", path: workspacePath, summary: "Update a workspace's settings: default_compute (an attached compute; \"\" clears it)", request: workspacePatch{}, response: workspaceView{}, handle: (*Server).updateWorkspace},

	{method: "GET", path: workspacePath + "/jobs", summary: "List jobs, newest first", response: []api.Job{}, handle: (*Server).listJobs},
	{method: "PUT", path: jobPath, summary: "Create a command job (checked against the compute, its cluster and the assets it names; nothing is stored on error)", request: api.JobSpec{}, response: api.Job{}, handle: (*Server).createJob},
	{method: "GET", path: jobPath, summary: "Show a job and its state", response: api.Job{}, handle: (*Server).getJob},
	{method: "PATCH", path: jobPath, summary: "Update a job's tags, properties (merged; null removes a key), display_name or description", request: jobPatch{}, response: api.Job{}, handle: (*Server).updateJob},
	{method: "POST", path: jobPath + "/cancel", summary: "Cancel a job: its pods are ended", response: api.Job{}, handle: (*Server).cancelJob},
	{method: "GET", path: jobPath + "/logs", summary: "A job's log bytes beyond ?from=FILE:OFFSET,... (long poll up to ?wait=SECONDS, at most 25)", response: api.JobLogs{}, handle: (*Server).jobLogs},
	{method: "GET", path: jobPath + "/logs/{file...}", summary: "One log file of a job, as it is", rawResponse: true, handle: (*Server).jobLogFile},
	{method: "GET", path: jobPath + "/metrics", summary: "A job's metrics, params and tags, as its processes logged them with mlflow", response: api.JobMetrics{}, handle: (*Server).jobMetrics},

	{method: "GET", path: workspacePath + "/environments", summary: "List environments (the latest version of each)", response: []api.Environment{}, handle: environments.list},
	{method: "GET", path: workspacePath + "/environments/{name}", summary: "Show an environment's latest version (?label=latest)", response: api.Environment{}, handle: environments.getLatest},
	{method: "GET", path: workspacePath + "/environments/{name}/versions", summary: "List an environment's versions", response: []api.Environment{}, handle: environments.listVersions},
	{method: "GET", path: workspacePath + "/environments/{name}/versions/{version}", summary: "Show an environment version", response: api.Environment{}, handle: environments.getVersion},
	{method: "PUT", path: workspacePath + "/environments/{name}/versions/{version}", summary: "Create an environment version (versions are immutable: the same content again is accepted, other content refused)", request: api.Environment{}, response: api.Environment{}, handle: environments.putVersion},
	{method: "POST", path: workspacePath + "/environments/{name}/versions", summary: "Create the next version of an environment (1 + the highest numeric version)", request: api.Environment{}, response: api.Environment{}, handle: environments.postVersion},

	{method: "GET", path: workspacePath + "/data", summary: "List data assets (the latest version of each)", response: []api.Data{}, handle: dataAssets.list},
	{method: "GET", path: workspacePath + "/data/{name}", summary: "Show a data asset's latest version (?label=latest)", response: api.Data{}, handle: dataAssets.getLatest},
	{method: "GET", path: workspacePath + "/data/{name}/versions", summary: "List a data asset's versions", response: []api.Data{}, handle: dataAssets.listVersions},
	{method: "GET", path: workspacePath + "/data/{name}/versions/{version}", summary: "Show a data asset version", response: api.Data{}, handle: dataAssets.getVersion},
	{method: "PUT", path: workspacePath + "/data/{name}/versions/{version}", summary: "Create a data asset version (its path must exist in the datastore; versions are immutable)", request: api.Data{}, response: api.Data{}, handle: dataAssets.putVersion},
	{method: "POST", path: workspacePath + "/data/{name}/versions", summary: "Create the next version of a data asset (1 + the highest numeric version)", request: api.Data{}, response: api.Data{}, handle: dataAssets.postVersion},

	{method: "GET", path: workspacePath + "/datastores", summary: "List datastores", response: []datastoreView{}, handle: (*Server).listDatastores},
	{method: "GET", path: workspacePath + "/datastores/{ds}/files", summary: "List a datastore's files under ?prefix=", response: []api.FileInfo{}, handle: (*Server).listDatastoreFiles},
	{method: "GET", path: workspacePath + "/datastores/{ds}/files/{path...}", summary: "A datastore file's bytes", rawResponse: true, handle: (*Server).getDatastoreFile},
	{method: "HEAD", path: workspacePath + "/blobs/{digest}", summary: "Whether the blob sha256:<hex> is stored", handle: (*Server).blob},
	{method: "PUT", path: workspacePath + "/blobs/{digest}", summary: "Upload a blob; its bytes must have the digest in the path", stream: true, rawRequest: true, handle: (*Server).blob},
	{method: "POST", path: workspacePath + "/datastores/{ds}/commit", summary: "Record uploaded blobs as files of a datastore, all at once", stream: true, request: api.CommitRequest{}, handle: (*Server).commitDatastore},

	{method: "GET", path: jobRunPath + "/spec", summary: "Job run: what the job's wrapper needs to run it", jobrun: true, response: api.JobRun{}, handle: (*Server).jobRunSpec},
	{method: "POST", path: jobRunPath + "/phase", summary: "Job run: the wrapper's progress (Preparing, Running, Finalizing; forward only)", jobrun: true, request: api.JobPhase{}, handle: (*Server).jobRunPhase},
	{method: "POST", path: jobRunPath + "/logs/{file...}", summary: "Job run: append to a log file at ?offset= (its size before); a retry of bytes already there is accepted", jobrun: true, stream: true, rawRequest: true, response: logAppendResult{}, handle: (*Server).jobRunAppendLog},
	{method: "POST", path: jobRunPath + "/metrics", summary: "Job run: append a process's metric records from its seq-th (a retry of records already there is accepted; 409 with the count on a gap)", jobrun: true, request: api.MetricsAppend{}, response: api.MetricsAppendResult{}, handle: (*Server).jobRunAppendMetrics},
	{method: "GET", path: jobRunPath + "/datastores/{ds}/files", summary: "Job run: list the job's code and input files under ?prefix=", jobrun: true, response: []api.FileInfo{}, handle: (*Server).jobRunListFiles},
	{method: "GET", path: jobRunPath + "/datastores/{ds}/files/{path...}", summary: "Job run: a file of the job's code or inputs", jobrun: true, rawResponse: true, handle: (*Server).jobRunGetFile},
	{method: "HEAD", path: jobRunPath + "/blobs/{digest}", summary: "Job run: whether a blob is stored", jobrun: true, handle: (*Server).jobRunBlob},
	{method: "PUT", path: jobRunPath + "/blobs/{digest}", summary: "Job run: upload a blob", jobrun: true, stream: true, rawRequest: true, handle: (*Server).jobRunBlob},
	{method: "POST", path: jobRunPath + "/datastores/{ds}/commit", summary: "Job run: record files of the job's outputs and artifacts", jobrun: true, stream: true, request: api.CommitRequest{}, handle: (*Server).jobRunCommit},

	{method: "GET", path: workspacePath + "/models", summary: "List models (the latest version of each; archived ones with ?includeArchived=true, only them with ?archivedOnly=true)", response: []api.Model{}, handle: models.list},
	{method: "GET", path: workspacePath + "/models/{name}", summary: "Show a model's latest version that is not archived (?label=latest)", response: api.Model{}, handle: models.getLatest},
	{method: "GET", path: workspacePath + "/models/{name}/versions", summary: "List a model's versions, newest first (archived ones with ?includeArchived=true)", response: []api.Model{}, handle: models.listVersions},
	{method: "GET", path: workspacePath + "/models/{name}/versions/{version}", summary: "Show a model version", response: api.Model{}, handle: models.getVersion},
	{method: "PUT", path: workspacePath + "/models/{name}/versions/{version}", summary: "Create a model version (its path must be in the datastore; versions are immutable)", request: api.Model{}, response: api.Model{}, handle: models.putVersion},
	{method: "POST", path: workspacePath + "/models/{name}/versions", summary: "Create the next version of a model (1 + the highest numeric version)", request: api.Model{}, response: api.Model{}, handle: models.postVersion},
	{method: "POST", path: workspacePath + "/models/{name}/versions/{version}/archive", summary: "Archive a model version: @latest and lists pass over it", response: api.Model{}, handle: archiveModel},
	{method: "POST", path: workspacePath + "/models/{name}/versions/{version}/restore", summary: "Restore an archived model version", response: api.Model{}, handle: restoreModel},
	{method: "POST", path: workspacePath + "/models/{name}/archive", summary: "Archive every version of a model", response: []api.Model{}, handle: archiveModel},
	{method: "POST", path: workspacePath + "/models/{name}/restore", summary: "Restore every version of a model", response: []api.Model{}, handle: restoreModel},

	{method: "GET", path: workspacePath + "/onlineEndpoints", summary: "List online endpoints", response: []api.OnlineEndpoint{}, handle: (*Server).listEndpoints},
	{method: "PUT", path: endpointPath, summary: "Create an online endpoint on an attached Kubernetes compute (name unique on its cluster; traffic is set by an update)", request: api.OnlineEndpoint{}, response: api.OnlineEndpoint{}, handle: (*Server).createEndpoint},
	{method: "GET", path: endpointPath, summary: "Show an online endpoint: scoring_uri, traffic, provisioning_state", response: api.OnlineEndpoint{}, handle: (*Server).getEndpoint},
	{method: "PATCH", path: endpointPath, summary: "Update an online endpoint: each field given replaces the stored one (description, tags, traffic, auth_mode; null removes)", request: api.OnlineEndpoint{}, response: api.OnlineEndpoint{}, handle: (*Server).updateEndpoint},
	{method: "DELETE", path: endpointPath, summary: "Delete an online endpoint and its deployments (Deleting until the cluster confirms)", response: api.OnlineEndpoint{}, handle: (*Server).deleteEndpoint},
	{method: "POST", path: endpointPath + "/listKeys", summary: "An online endpoint's keys (key auth)", response: api.EndpointKeys{}, handle: (*Server).listEndpointKeys},
	{method: "POST", path: endpointPath + "/regenerateKeys", summary: "Replace the primary or secondary key (the old one stops working once the router has the new)", request: api.RegenerateKeysRequest{}, response: api.EndpointKeys{}, handle: (*Server).regenerateEndpointKeys},
	{method: "POST", path: endpointPath + "/token", summary: "An aml_token for an aml_token endpoint (valid one hour)", response: api.EndpointToken{}, handle: (*Server).endpointToken},
	{method: "GET", path: endpointPath + "/router", summary: "Where the endpoint's inference router answers, with its serving certificate (for clients that pin it)", response: api.InferenceRouter{}, handle: (*Server).endpointRouter},
	{method: "GET", path: endpointPath + "/deployments", summary: "List an online endpoint's deployments", response: []api.OnlineDeployment{}, handle: (*Server).listDeployments},
	{method: "PUT", path: deploymentPath, summary: "Create an online deployment (checked against its endpoint's cluster and the assets it names; nothing is stored on error)", request: api.OnlineDeployment{}, response: api.OnlineDeployment{}, handle: (*Server).createDeployment},
	{method: "GET", path: deploymentPath, summary: "Show an online deployment and its state", response: api.OnlineDeployment{}, handle: (*Server).getDeployment},
	{method: "PATCH", path: deploymentPath, summary: "Update an online deployment: each field given replaces the stored one (null removes), checked as a new one", request: api.OnlineDeployment{}, response: api.OnlineDeployment{}, handle: (*Server).updateDeployment},
	{method: "DELETE", path: deploymentPath, summary: "Delete an online deployment that takes no traffic (Deleting until the cluster confirms)", response: api.OnlineDeployment{}, handle: (*Server).deleteDeployment},
	{method: "GET", path: deploymentPath + "/logs", summary: "The end of an instance's scoring log (?lines=N, ?instance=; default: the instance written last)", response: api.DeploymentLogs{}, handle: (*Server).deploymentLogs},

	{method: "GET", path: deploymentRunPath + "/spec", summary: "Deployment run: what the scoring server needs", deployrun: true, response: api.DeploymentRun{}, handle: (*Server).deployRunSpec},
	{method: "POST", path: deploymentRunPath + "/logs/{instance}", summary: "Deployment run: append to an instance's scoring log at ?offset= (its size before); a retry of bytes already there is accepted", deployrun: true, stream: true, rawRequest: true, response: logAppendResult{}, handle: (*Server).deployRunAppendLog},
	{method: "GET", path: deploymentRunPath + "/datastores/{ds}/files", summary: "Deployment run: list the deployment's model and code files under ?prefix=", deployrun: true, response: []api.FileInfo{}, handle: (*Server).deployRunListFiles},
	{method: "GET", path: deploymentRunPath + "/datastores/{ds}/files/{path...}", summary: "Deployment run: a file of the deployment's model or code", deployrun: true, rawResponse: true, handle: (*Server).deployRunGetFile},

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
		bytesBody := map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
		switch {
		case r.rawResponse:
			resp["200"] = map[string]any{"description": "OK", "content": bytesBody}
		case r.response != nil:
			resp["200"] = map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(r.response), schemas)}}}
		default:
			resp["204"] = map[string]any{"description": "Done"}
		}
		resp["default"] = map[string]any{"description": "Error", "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(api.Error{}), schemas)}}}
		switch {
		case r.rawRequest:
			op["requestBody"] = map[string]any{"content": bytesBody}
		case r.request != nil:
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(r.request), schemas)}}}
		}
		switch {
		case r.public:
			op["security"] = []any{}
		case r.agent:
			op["security"] = []any{map[string]any{"agentToken": []any{}}}
		case r.jobrun:
			op["security"] = []any{map[string]any{"jobToken": []any{}}}
		case r.deployrun:
			op["security"] = []any{map[string]any{"deploymentToken": []any{}}}
		}
		var params []any
		for _, seg := range strings.Split(r.path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": wildcardName(seg), "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
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
				"adminToken":      map[string]any{"type": "http", "scheme": "bearer", "description": "the admin token (data dir, file admin-token)"},
				"agentToken":      map[string]any{"type": "http", "scheme": "bearer", "description": "a cluster's agent token, valid for that cluster only"},
				"jobToken":        map[string]any{"type": "http", "scheme": "bearer", "description": "a job's credential (in its pods' environment), valid for that job's files only"},
				"deploymentToken": map[string]any{"type": "http", "scheme": "bearer", "description": "an online deployment's credential (in its pods' environment), valid for its model and code only"},
			},
		},
		"security": []any{map[string]any{"adminToken": []any{}}},
	}
}

// wildcardName is the name of a path wildcard: {name} or {name...}.
func wildcardName(seg string) string {
	return strings.TrimSuffix(strings.Trim(seg, "{}"), "...")
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	inputType      = reflect.TypeFor[api.Input]()
	envRefType     = reflect.TypeFor[api.EnvironmentRef]()
	modelRefType   = reflect.TypeFor[api.ModelRef]()
)

func schemaOf(t reflect.Type, schemas map[string]any) map[string]any {
	switch t {
	case rawMessageType:
		return map[string]any{} // any JSON value
	case inputType:
		// A literal, or data: the type's own JSON methods decide.
		obj := schemaFields(t, schemas)
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}, map[string]any{"type": "boolean"},
			map[string]any{"type": "object", "properties": obj}}}
	case envRefType:
		return map[string]any{"oneOf": []any{map[string]any{"type": "string", "description": "azureml:NAME:VERSION, azureml:NAME@latest or azureml://registries/..."},
			schemaOf(reflect.TypeFor[api.Environment](), schemas)}}
	case modelRefType:
		return map[string]any{"oneOf": []any{map[string]any{"type": "string", "description": "azureml:NAME:VERSION or azureml:NAME@latest"},
			schemaOf(reflect.TypeFor[api.Model](), schemas)}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), schemas)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"} // base64, as encoding/json writes []byte
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Struct:
		if t.PkgPath() == "time" {
			return map[string]any{"type": "string", "format": "date-time"}
		}
		name := t.Name()
		if _, done := schemas[name]; !done {
			schemas[name] = nil // breaks cycles
			schemas[name] = map[string]any{"type": "object", "properties": schemaFields(t, schemas)}
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// schemaFields are the JSON properties of a struct; those of an embedded
// struct without a name of its own are the outer struct's, as encoding/json
// has it (api.Job embeds api.JobSpec).
func schemaFields(t reflect.Type, schemas map[string]any) map[string]any {
	props := map[string]any{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range schemaFields(ft, schemas) {
					if _, own := props[k]; !own {
						props[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		props[tag] = schemaOf(f.Type, schemas)
	}
	return props
}
