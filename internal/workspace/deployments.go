package workspace

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/util/retry"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/deploymentspec"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/store"
)

// Online deployments: checked against everything they name when created
// or changed (their endpoint, its cluster's instance types and nodes, the
// model, the code, the environment), stored with what that resolved and a
// credential of their own, and synced to their endpoint's cluster, whose
// agent reports their state. Their pods fetch model and code with the
// credential (deployrun.go).

func deploymentParent(ws, endpoint string) string {
	return workspaceParent(ws) + "/" + kindEndpoint + "/" + endpoint
}

func deploymentKey(rg, ws, endpoint, name string) store.Key {
	return store.Key{Kind: kindDeployment, Group: rg, Parent: deploymentParent(ws, endpoint), Name: name}
}

// endpointOfDeployment splits a deployment's parent into its workspace and
// endpoint.
func endpointOfDeployment(k store.Key) (ws, endpoint string) {
	rest := strings.TrimPrefix(k.Parent, workspaceParent(""))
	ws, endpoint, _ = strings.Cut(rest, "/"+kindEndpoint+"/")
	return ws, endpoint
}

// deploymentRecord is what the store keeps of a deployment (its spec): the
// document with its defaults, and what the workspace resolved from it.
type deploymentRecord struct {
	Deployment   api.OnlineDeployment `json:"deployment"`
	Compute      string               `json:"compute"`
	ClusterGroup string               `json:"clusterGroup"`
	Cluster      string               `json:"cluster"`
	Namespace    string               `json:"namespace"`
	Image        string               `json:"image"`
	InstanceType string               `json:"instanceType"`
	// InferenceConfig is a custom container's routes (nil: Outpost's
	// scoring server runs the scoring script).
	InferenceConfig *api.InferenceConfig `json:"inferenceConfig,omitempty"`
	// Model and Code are datastore URIs.
	ModelURI      string `json:"modelURI,omitempty"`
	ModelName     string `json:"modelName,omitempty"`
	ModelVersion  string `json:"modelVersion,omitempty"`
	ModelFolder   string `json:"modelFolder,omitempty"`
	Code          string `json:"code,omitempty"`
	ScoringScript string `json:"scoringScript,omitempty"`
	// TokenSHA256 is the hash of the deployment's credential; the
	// credential itself is its protected data, for its agent.
	TokenSHA256 string `json:"tokenSHA256"`
	// ClusterRevision is the revision of the last change of what the
	// cluster runs, when later changes were of labels only (tags,
	// description), which the cluster never sees and so never reports on.
	// 0: the spec's own revision.
	ClusterRevision int64      `json:"clusterRevision,omitempty"`
	Deleting        bool       `json:"deleting,omitempty"`
	DeletingAt      *time.Time `json:"deletingAt,omitempty"`
}

func (rec deploymentRecord) target() string { return target(rec.ClusterGroup, rec.Cluster) }

// deploymentStatus is the cluster's last report on a deployment, and the
// sync revision its agent had applied when it sent it: a report counts
// for the deployment's current spec only when that revision reaches the
// spec's.
type deploymentStatus struct {
	Report   *api.DeploymentReport `json:"report,omitempty"`
	Revision int64                 `json:"revision,omitempty"`
}

// deploymentSecrets are a deployment's protected data.
type deploymentSecrets struct {
	Token string `json:"token"`
}

type deployment struct {
	obj store.Object
	rec deploymentRecord
	st  deploymentStatus
}

func decodeDeployment(o store.Object) (*deployment, error) {
	d := &deployment{obj: o}
	if err := decodeStored(o, &d.rec, &d.st); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Server) readDeployment(ctx context.Context, k store.Key) (*deployment, error) {
	return readStored(ctx, s.store, k, decodeDeployment)
}

// clusterRevision is the revision whose spec the cluster must have
// reported on for a report to be about what it runs now.
func (d *deployment) clusterRevision() int64 {
	return cmp.Or(d.rec.ClusterRevision, d.obj.SpecRevision)
}

// state judges a deployment from its record and its cluster's reports.
func (d *deployment) state(clusterFound bool) (state, msg string) {
	creating := api.StateCreating
	if d.obj.Generation > 1 {
		creating = stateUpdating
	}
	r := d.st.Report
	switch {
	case d.rec.Deleting:
		return api.StateDeleting, ""
	case !clusterFound:
		return api.StateFailed, fmt.Sprintf("cluster %s/%s is no longer connected (its registration was deleted)", d.rec.ClusterGroup, d.rec.Cluster)
	case r == nil || d.st.Revision < d.clusterRevision():
		return creating, ""
	}
	switch r.Phase {
	case api.ClusterDeploymentSucceeded:
		return api.StateSucceeded, ""
	case api.ClusterDeploymentFailed:
		msg := r.Message
		if r.Reason != "" && !strings.HasPrefix(msg, r.Reason) {
			msg = r.Reason + ": " + msg
		}
		return api.StateFailed, msg
	}
	msg = r.Message
	if msg == "" && r.Instances > 0 {
		msg = fmt.Sprintf("%d of %d instances ready", r.ReadyInstances, r.Instances)
	}
	return creating, msg
}

// deploymentView is a deployment as the API shows it.
func (s *Server) deploymentView(ctx context.Context, d *deployment) (api.OnlineDeployment, error) {
	v := d.rec.Deployment
	_, endpointName := endpointOfDeployment(d.obj.Key)
	v.ID = resourceID(d.obj.Key)
	v.Name, v.EndpointName = d.obj.Name, endpointName
	v.CreationContext = &api.CreationContext{CreatedAt: d.obj.Created, LastModified: d.obj.Updated}
	_, found, err := s.clusterOf(ctx, d.rec.ClusterGroup, d.rec.Cluster)
	if err != nil {
		return v, err
	}
	v.ProvisioningState, v.StatusMessage = d.state(found)
	if r := d.st.Report; r != nil {
		v.ReadyInstances = r.ReadyInstances
	}
	return v, nil
}

func (s *Server) writeDeployment(w http.ResponseWriter, r *http.Request, code int, d *deployment) {
	v, err := s.deploymentView(r.Context(), d)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, code, v)
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) {
	rg, ws, e, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("deployment")
	d, err := s.readDeployment(r.Context(), deploymentKey(rg, ws, e, name))
	if errors.Is(err, store.ErrNotFound) {
		s.missingDeployment(w, r, rg, ws, e, name)
		return
	}
	if err != nil {
		storeError(w, err, "deployment "+name)
		return
	}
	s.writeDeployment(w, r, http.StatusOK, d)
}

// missingDeployment answers a deployment that is not there, saying whether
// its endpoint is.
func (s *Server) missingDeployment(w http.ResponseWriter, r *http.Request, rg, ws, e, name string) {
	if _, err := s.store.Get(r.Context(), endpointKey(rg, ws, e)); errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("online endpoint %s not found in workspace %s", e, ws))
		return
	}
	ds, err := s.endpointDeployments(r.Context(), rg, ws, e)
	if err != nil {
		storeError(w, err, "deployments of "+e)
		return
	}
	have := strings.Join(deploymentNames(ds), ", ")
	if have == "" {
		have = "none"
	}
	writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("deployment %s of online endpoint %s not found; its deployments: %s", name, e, have))
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) {
	rg, ws, e := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	if _, err := s.store.Get(r.Context(), endpointKey(rg, ws, e)); err != nil {
		storeError(w, err, "online endpoint "+e)
		return
	}
	objs, err := s.store.List(r.Context(), kindDeployment, rg, deploymentParent(ws, e))
	if err != nil {
		storeError(w, err, "deployments of "+e)
		return
	}
	out := []api.OnlineDeployment{}
	for _, o := range objs {
		d, err := decodeDeployment(o)
		if err == nil {
			var v api.OnlineDeployment
			if v, err = s.deploymentView(r.Context(), d); err == nil {
				out = append(out, v)
			}
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// readDeploymentDoc decodes, defaults and checks a deployment document for
// the deployment name of endpoint e.
func readDeploymentDoc(data []byte, e, name string) (*api.OnlineDeployment, error) {
	doc, err := deploymentspec.DecodeDeployment(data)
	if err != nil {
		return nil, err
	}
	switch doc.Name {
	case "":
		doc.Name = name
	case name:
	default:
		return nil, deploymentspec.Errorf("name", "%q differs from the deployment name in the URL (%q): leave it out or make them the same", doc.Name, name)
	}
	switch doc.EndpointName {
	case "":
		doc.EndpointName = e
	case e:
	default:
		return nil, deploymentspec.Errorf("endpoint_name", "%q differs from the endpoint in the URL (%q): leave it out or make them the same", doc.EndpointName, e)
	}
	deploymentspec.DefaultDeployment(doc)
	if err := deploymentspec.ValidateDeployment(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request) {
	rg, ws, e, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("deployment")
	ctx := r.Context()
	if err := deploymentspec.CheckName("deployment name", name); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidName", err.Error())
		return
	}
	data, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	doc, err := readDeploymentDoc(data, e, name)
	if err != nil {
		documentError(w, "InvalidDeployment", err)
		return
	}
	ek := endpointKey(rg, ws, e)
	defer s.inference.endpointLocks.lock(resourceID(ek))()
	ep, err := s.readEndpoint(ctx, ek)
	if err != nil {
		storeError(w, err, "online endpoint "+e)
		return
	}
	if ep.rec.Deleting {
		writeError(w, http.StatusConflict, "Conflict", errDeleting{"online endpoint " + e}.Error())
		return
	}
	k := deploymentKey(rg, ws, e, name)
	all, err := s.store.List(ctx, kindDeployment, rg, deploymentParent(ws, e))
	if err != nil {
		storeError(w, err, "deployments of "+e)
		return
	}
	for _, o := range all {
		if strings.EqualFold(o.Name, name) {
			msg := fmt.Sprintf("deployment %s of online endpoint %s already exists: change it with `outpost ml online-deployment update`", o.Name, e)
			if cur, err := decodeDeployment(o); err == nil && cur.rec.Deleting {
				msg = fmt.Sprintf("deployment %s of online endpoint %s is being deleted: create it again once it is gone", o.Name, e)
			}
			writeError(w, http.StatusConflict, "Conflict", msg)
			return
		}
	}
	rec, bad, err := s.resolveDeployment(ctx, rg, ws, ep, doc)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if len(bad) > 0 {
		documentError(w, "InvalidDeployment", bad.err())
		return
	}
	tok := newToken()
	rec.TokenSHA256 = hashToken(tok)
	body, err := json.Marshal(rec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	prot, err := json.Marshal(deploymentSecrets{Token: tok})
	if err == nil {
		prot, err = s.sealProtected(k, prot)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	// Logs of an earlier deployment of the same name are not this one's.
	if err := s.removeDeploymentLogs(k); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	o, err := s.store.Create(ctx, k, body, prot)
	if err != nil {
		storeError(w, err, "deployment "+name)
		return
	}
	s.log.Info("online deployment created", "deployment", resourceID(k), "instanceType", rec.InstanceType, "instances", rec.Deployment.InstanceCount, "image", rec.Image)
	s.writeDeployment(w, r, http.StatusCreated, &deployment{obj: o, rec: rec})
}

// resolveDeployment checks a valid document against the world (its
// endpoint's cluster, the assets and files it names) and resolves them.
// bad lists what a user can fix; err is the workspace's own failure.
func (s *Server) resolveDeployment(ctx context.Context, rg, ws string, ep *endpoint, doc *api.OnlineDeployment) (rec deploymentRecord, bad badJob, err error) {
	rec.Deployment = *doc
	cs, st, ok, err := s.usableCompute(ctx, rg, ws, ep.rec.Compute, "endpoint_name", inferenceFeature, &bad)
	if err != nil || !ok {
		return rec, bad, err
	}
	rec.Compute, rec.ClusterGroup, rec.Cluster, rec.Namespace = ep.rec.Compute, cs.ClusterGroup, cs.Cluster, cs.Namespace
	s.checkPlacement(&rec, st.Facts, &bad)
	m, err := s.resolveModel(ctx, rg, ws, ep.obj.Name, doc.Name, doc.Model, &bad)
	if err != nil {
		return rec, nil, err
	}
	rec.ModelURI, rec.ModelName, rec.ModelVersion, rec.ModelFolder = m.URI, m.Name, m.Version, m.Folder
	if c := doc.CodeConfiguration; c != nil {
		if err := s.checkDataPath(ctx, "code_configuration.code", jobspec.TypeURIFolder, c.Code); err != nil {
			if !isUserError(err) {
				return rec, nil, err
			}
			bad = append(bad, err)
		} else if err := s.checkScoringScript(ctx, c); err != nil {
			if !isUserError(err) {
				return rec, nil, err
			}
			bad = append(bad, err)
		}
		rec.Code, rec.ScoringScript = c.Code, c.ScoringScript
	}
	if err := s.resolveDeploymentEnvironment(ctx, rg, ws, &rec, &bad); err != nil {
		return rec, nil, err
	}
	if rec.InferenceConfig == nil && doc.CodeConfiguration == nil {
		bad.add("code_configuration", "required: {code: <folder>, scoring_script: score.py}; only a custom container (an environment with inference_config) runs without a scoring script")
	}
	return rec, bad, nil
}

// checkScoringScript checks that the scoring script is in the code folder.
func (s *Server) checkScoringScript(ctx context.Context, c *api.CodeConfiguration) error {
	ds, p, err := jobspec.ParseDatastoreURI(c.Code)
	if err != nil {
		return deploymentspec.Errorf("code_configuration.code", "%v", err)
	}
	script := strings.TrimSuffix(p, "/") + "/" + c.ScoringScript
	files, err := s.artifacts.List(ctx, ds, script)
	if err != nil {
		return lookError("code_configuration.scoring_script", err)
	}
	for _, f := range files {
		if f.Path == script {
			return nil
		}
	}
	return deploymentspec.Errorf("code_configuration.scoring_script", "%s is not in the code folder %s", c.ScoringScript, c.Code)
}

// checkPlacement checks the deployment's instance type against its
// cluster: known there, its own resources within the instance type's
// limits, and room for its instances on the cluster's empty Ready nodes
// (the job's fit check, with the deployment's own requests).
func (s *Server) checkPlacement(rec *deploymentRecord, facts api.ClusterFacts, bad *badJob) {
	doc := &rec.Deployment
	name := cmp.Or(doc.InstanceType, api.DefaultInstanceType)
	doc.InstanceType, rec.InstanceType = name, name
	i := slices.IndexFunc(facts.InstanceTypes, func(it api.InstanceType) bool { return it.Name == name })
	if i < 0 {
		bad.add("instance_type", "instance type %s not found on cluster %s; instance types: %s", name, rec.Cluster, describeInstanceTypes(facts.InstanceTypes))
		return
	}
	it := facts.InstanceTypes[i]
	if errs := deploymentspec.CheckResources(name, it.Resources, doc.Resources); len(errs) > 0 {
		*bad = append(*bad, errs...)
		return
	}
	// The job's fit check, on the instance type as this deployment's pods
	// get it.
	eff := it
	eff.Resources = deploymentspec.EffectiveResources(it.Resources, doc.Resources)
	own := facts
	own.InstanceTypes = slices.Clone(facts.InstanceTypes)
	own.InstanceTypes[i] = eff
	if err := fitInstanceType(rec.Cluster, own, name, 1); err != nil {
		field := "instance_type"
		if doc.Resources != nil {
			field = "resources"
		}
		bad.add(field, "not enough room: %v", err)
		return
	}
	instances := doc.InstanceCount
	if doc.ScaleSettings != nil && doc.ScaleSettings.Type == api.ScaleTargetUtilization {
		instances = doc.ScaleSettings.MinInstances
	}
	need := map[string]resource.Quantity{}
	for k, v := range eff.Resources.Requests {
		if q, err := resource.ParseQuantity(v); err == nil {
			need[k] = q
		}
	}
	if v, ok := eff.Resources.Limits[gpuResource]; ok {
		if q, err := resource.ParseQuantity(v); err == nil {
			need[gpuResource] = q
		}
	}
	room, per := 0, []string{}
	for _, n := range facts.Nodes {
		if !n.Ready || !selects(it.NodeSelector, n.Labels) {
			continue
		}
		k := instancesFitting(need, n.Allocatable)
		room += k
		per = append(per, fmt.Sprintf("%s %d", n.Name, k))
	}
	if room < instances {
		field := "instance_count"
		if doc.ScaleSettings != nil && doc.ScaleSettings.Type == api.ScaleTargetUtilization {
			field = "scale_settings.min_instances"
		}
		bad.add(field, "not enough room: %d instances of %s (each requesting %s) never fit cluster %s, whose empty Ready nodes hold at most %d (%s)",
			instances, name, describeResources(need, need), rec.Cluster, room, strings.Join(per, ", "))
	}
}

// resolveDeploymentEnvironment finds the image the deployment runs in (as
// a job's is found) and a custom container's routes.
func (s *Server) resolveDeploymentEnvironment(ctx context.Context, rg, ws string, rec *deploymentRecord, bad *badJob) error {
	env := rec.Deployment.Environment
	if env == nil {
		bad.add("environment", "required: azureml:NAME:VERSION, azureml:NAME@latest, or an inline environment with image")
		return nil
	}
	// The job's resolution, on a job that has only this environment.
	jr := jobRecord{Job: api.JobSpec{Environment: env}}
	if err := s.resolveEnvironment(ctx, rg, ws, &jr, bad); err != nil {
		return err
	}
	rec.Image = jr.Image
	var raw json.RawMessage
	field := "environment.inference_config"
	switch {
	case env.Inline != nil:
		raw = env.Inline.InferenceConfig
	case strings.HasPrefix(env.Ref, "azureml:") && !strings.HasPrefix(env.Ref, "azureml://"):
		name, version, latest, err := jobspec.ParseAssetRef(env.Ref)
		if err != nil {
			return nil // resolveEnvironment said so
		}
		o, err := s.findAsset(ctx, environments, rg, ws, name, version, latest)
		if err != nil {
			return nil // a curated environment, or one resolveEnvironment reported
		}
		var e api.Environment
		if err := json.Unmarshal(o.Spec, &e); err != nil {
			return fmt.Errorf("stored %s: %w", o.Key, err)
		}
		raw = e.InferenceConfig
		field = "environment (" + env.Ref + ").inference_config"
	}
	ic, err := deploymentspec.ParseInferenceConfig(field, raw)
	if err != nil {
		*bad = append(*bad, err)
		return nil
	}
	rec.InferenceConfig = ic
	return nil
}

// deploymentFixed is what cannot change in an update: what a deployment
// is and where.
var deploymentFixed = []string{"name", "endpoint_name", "type"}

// updateDeployment changes a deployment: each top-level field of the body
// replaces the stored one (null removes it), and the result is checked as
// a new document would be. Its credential stays.
func (s *Server) updateDeployment(w http.ResponseWriter, r *http.Request) {
	rg, ws, e, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("deployment")
	ctx := r.Context()
	data, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(data, &patch); err != nil || patch == nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "request body: want a JSON object of the fields to change")
		return
	}
	ek, k := endpointKey(rg, ws, e), deploymentKey(rg, ws, e, name)
	defer s.inference.endpointLocks.lock(resourceID(ek))()
	ep, err := s.readEndpoint(ctx, ek)
	if err != nil {
		storeError(w, err, "online endpoint "+e)
		return
	}
	var d *deployment
	var bad error
	err = retry.OnError(mergeRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
		var err error
		if d, err = s.readDeployment(ctx, k); err != nil {
			return err
		}
		if d.rec.Deleting {
			return errDeleting{"deployment " + name}
		}
		stored := d.rec.Deployment
		for _, f := range deploymentFixed {
			raw, ok := patch[f]
			if !ok || strings.TrimSpace(string(raw)) == "null" {
				continue // left as it is, or back to what the URL says
			}
			var v string
			cur := map[string]string{"name": name, "endpoint_name": e, "type": stored.Type}[f]
			if json.Unmarshal(raw, &v) != nil || !strings.EqualFold(v, cur) {
				bad = deploymentspec.Errorf(f, "%s cannot change (it is %q): create another deployment", string(raw), cur)
				return nil
			}
		}
		next, err := mergeTopLevel(stored, patch)
		if err != nil {
			bad = err
			return nil
		}
		doc, err := readDeploymentDoc(next, e, name)
		if err != nil {
			bad = err
			return nil
		}
		rec, problems, err := s.resolveDeployment(ctx, rg, ws, ep, doc)
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			bad = problems.err()
			return nil
		}
		rec.TokenSHA256 = d.rec.TokenSHA256
		// A change of labels only (tags, description) reaches no pod: the
		// cluster's reports on the spec before still hold.
		if sameJSON(desiredDeployment(d.obj.Key, d.rec, ""), desiredDeployment(d.obj.Key, rec, "")) {
			rec.ClusterRevision = d.clusterRevision()
		}
		body, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		o, err := s.store.UpdateSpec(ctx, k, body, nil, d.obj.Generation)
		if err != nil {
			return err
		}
		d = &deployment{obj: o, rec: rec, st: d.st}
		return nil
	})
	var del errDeleting
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.missingDeployment(w, r, rg, ws, e, name)
		return
	case errors.As(err, &del):
		writeError(w, http.StatusConflict, "Conflict", del.Error())
		return
	case err != nil:
		storeError(w, err, "deployment "+name)
		return
	case bad != nil:
		documentError(w, "InvalidDeployment", bad)
		return
	}
	s.log.Info("online deployment updated", "deployment", resourceID(k), "generation", d.obj.Generation)
	s.writeDeployment(w, r, http.StatusOK, d)
}

// deleteDeployment deletes a deployment that takes no traffic (as Azure ML
// refuses to delete one that does): it leaves its cluster's desired state
// at once, and is Deleting until the cluster's agent confirms.
func (s *Server) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	rg, ws, e, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("deployment")
	ctx := r.Context()
	ek, k := endpointKey(rg, ws, e), deploymentKey(rg, ws, e, name)
	defer s.inference.endpointLocks.lock(resourceID(ek))()
	ep, err := s.readEndpoint(ctx, ek)
	if err != nil {
		storeError(w, err, "online endpoint "+e)
		return
	}
	d, err := s.readDeployment(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		s.missingDeployment(w, r, rg, ws, e, name)
		return
	}
	if err != nil {
		storeError(w, err, "deployment "+name)
		return
	}
	if pct := ep.rec.Endpoint.Traffic[name]; pct > 0 && !ep.rec.Deleting {
		others := []string{}
		for _, o := range slices.Sorted(maps.Keys(ep.rec.Endpoint.Traffic)) {
			if o != name {
				others = append(others, o)
			}
		}
		hint := "set every deployment's traffic to 0"
		if len(others) > 0 {
			hint = fmt.Sprintf("move it to the others first, e.g. --traffic \"%s=100\"", others[0])
		}
		writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("deployment %s takes %d%% of online endpoint %s's traffic, and a deployment that takes traffic cannot be deleted (as in Azure ML): %s with `outpost ml online-endpoint update --name %s --traffic ...`",
			name, pct, e, hint, e))
		return
	}
	if !d.rec.Deleting {
		if d, err = s.retireDeployment(ctx, k); err != nil {
			storeError(w, err, "deployment "+name)
			return
		}
		s.log.Info("online deployment deleting", "deployment", resourceID(k))
	}
	s.inference.deleting(d.rec.target())
	s.inference.kick()
	s.writeDeployment(w, r, http.StatusAccepted, d)
}

// retireDeployment marks a deployment Deleting: it syncs nowhere from then
// on, and its cluster's tombstone has the agent remove it.
func (s *Server) retireDeployment(ctx context.Context, k store.Key) (*deployment, error) {
	var d *deployment
	err := retry.OnError(mergeRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
		cur, err := s.readDeployment(ctx, k)
		if err != nil {
			return err
		}
		if cur.rec.Deleting {
			d = cur
			return nil
		}
		now := time.Now().UTC()
		cur.rec.Deleting, cur.rec.DeletingAt = true, &now
		body, err := json.Marshal(cur.rec)
		if err != nil {
			return err
		}
		o, err := s.store.UpdateSpec(ctx, k, body, nil, cur.obj.Generation)
		if err != nil {
			return err
		}
		d = &deployment{obj: o, rec: cur.rec, st: cur.st}
		return nil
	})
	return d, err
}

// parseDeploymentID reads a deployment's resource id,
// /resourceGroups/<rg>/workspaces/<ws>/onlineEndpoints/<e>/deployments/<d>.
func parseDeploymentID(id string) (store.Key, bool) {
	p := strings.Split(strings.TrimPrefix(id, "/"), "/")
	if len(p) != 8 || p[0] != "resourceGroups" || p[2] != kindWorkspace || p[4] != kindEndpoint || p[6] != kindDeployment ||
		checkNames("resource group", p[1], "workspace name", p[3], "endpoint name", p[5], "deployment name", p[7]) != nil {
		return store.Key{}, false
	}
	return deploymentKey(p[1], p[3], p[5], p[7]), true
}

// storeDeploymentReport keeps what a cluster (target t) reported of a
// deployment when it is news, with the revision its agent had applied.
// Reports of deployments the cluster does not run for this workspace (or
// no longer: deleting ones) are ignored.
func (s *Server) storeDeploymentReport(ctx context.Context, t string, revision int64, dr api.DeploymentReport) error {
	k, ok := parseDeploymentID(dr.ID)
	if !ok {
		s.log.Warn("agent reported a deployment with an id that is not one", "cluster", t, "id", dr.ID)
		return nil
	}
	id := resourceID(k)
	defer s.inference.reportLocks.lock(id)()
	d, err := s.readDeployment(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.rec.Deleting || d.obj.Target != t {
		return nil
	}
	fresh := d.st.Revision < d.clusterRevision() && revision >= d.clusterRevision()
	if sameJSON(d.st.Report, &dr) && !fresh {
		return nil
	}
	next := deploymentStatus{Report: &dr, Revision: revision}
	body, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if _, err := s.store.UpdateStatus(ctx, k, body); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.log.Info("online deployment reported", "deployment", id, "phase", dr.Phase, "reason", dr.Reason, "ready", dr.ReadyInstances, "instances", dr.Instances)
	return nil
}

// desiredDeployment is a deployment as its cluster's agent gets it, with
// its credential (token).
func desiredDeployment(k store.Key, rec deploymentRecord, token string) *api.DesiredOnlineDeployment {
	doc := rec.Deployment
	ws, endpoint := endpointOfDeployment(k)
	d := &api.DesiredOnlineDeployment{Name: k.Name, Endpoint: endpoint, ResourceGroup: k.Group, Workspace: ws,
		Compute: rec.Compute, Namespace: rec.Namespace, Token: token, Image: rec.Image, InstanceType: rec.InstanceType,
		Resources: doc.Resources, InstanceCount: doc.InstanceCount, InferenceConfig: rec.InferenceConfig,
		ModelName: rec.ModelName, ModelVersion: rec.ModelVersion, EnvironmentVariables: doc.EnvironmentVariables,
		RunDigest: runDigest(deploymentRun(k, rec))}
	if doc.ScaleSettings != nil {
		d.ScaleSettings = *doc.ScaleSettings
	}
	if doc.RequestSettings != nil {
		d.RequestSettings = *doc.RequestSettings
	}
	if doc.LivenessProbe != nil {
		d.LivenessProbe = *doc.LivenessProbe
	}
	if doc.ReadinessProbe != nil {
		d.ReadinessProbe = *doc.ReadinessProbe
	}
	return d
}

// runDigest names what a deployment's pods fetch (model, code, scoring
// script, variables): a change of it must roll the pods, which the
// DesiredOnlineDeployment does not otherwise show.
func runDigest(run api.DeploymentRun) string {
	data, err := json.Marshal(run)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func (s *Server) desiredDeploymentOf(ctx context.Context, o store.Object) (*api.DesiredOnlineDeployment, error) {
	d, err := decodeDeployment(o)
	if err != nil {
		return nil, err
	}
	data, err := s.protectedData(ctx, o.Key)
	if err != nil {
		return nil, fmt.Errorf("credential of %s: %w", o.Key, err)
	}
	var sec deploymentSecrets
	if data != nil {
		if err := json.Unmarshal(data, &sec); err != nil {
			return nil, fmt.Errorf("credential of %s: %w", o.Key, err)
		}
	}
	return desiredDeployment(o.Key, d.rec, sec.Token), nil
}
