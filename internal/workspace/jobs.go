package workspace

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/util/retry"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/studio"
)

// Jobs: a command job is checked against everything it names when it is
// submitted (compute, cluster, instance type, environment, data), stored
// with what those checks resolved, and synced to its compute's cluster,
// whose agent runs it and reports its state. The job's pods reach the
// workspace with a credential of their own (jobrun.go).

const kindJob = "jobs"

func jobKey(rg, ws, name string) store.Key {
	return store.Key{Kind: kindJob, Group: rg, Parent: workspaceParent(ws), Name: name}
}

// jobRecord is what the store keeps of a job (its spec): the document as
// submitted with the defaults filled in, and what the workspace resolved
// from it at submission.
type jobRecord struct {
	Job          api.JobSpec `json:"job"`
	Compute      string      `json:"compute"`
	ClusterGroup string      `json:"clusterGroup"`
	Cluster      string      `json:"cluster"`
	Namespace    string      `json:"namespace"`
	Image        string      `json:"image"`
	InstanceType string      `json:"instanceType"`
	// Code, Inputs, Outputs and Artifacts are datastore URIs.
	Code      string                   `json:"code,omitempty"`
	Inputs    map[string]api.RunInput  `json:"inputs,omitempty"`
	Outputs   map[string]api.RunOutput `json:"outputs,omitempty"`
	Artifacts string                   `json:"artifacts"`
	// TokenSHA256 is the hash of the job's credential; the credential
	// itself is in the job's protected data, for its agent.
	TokenSHA256 string `json:"tokenSHA256"`
	Cancel      bool   `json:"cancel,omitempty"`
	// Retired jobs sync nowhere: their cluster deletes what it ran them with.
	Retired   bool       `json:"retired,omitempty"`
	RetiredAt *time.Time `json:"retiredAt,omitempty"`
}

// jobStatus is what was reported about a job.
type jobStatus struct {
	Cluster   *api.JobReport `json:"cluster,omitempty"`   // the cluster's last report
	Phase     string         `json:"phase,omitempty"`     // the wrapper's last phase
	RunningAt *time.Time     `json:"runningAt,omitempty"` // when the wrapper said Running
}

// jobSecrets are a job's protected data.
type jobSecrets struct {
	Token string `json:"token"`
}

// job is a stored job, decoded.
type job struct {
	obj store.Object
	rec jobRecord
	st  jobStatus
}

func decodeJob(o store.Object) (*job, error) {
	j := &job{obj: o}
	if err := decodeStored(o, &j.rec, &j.st); err != nil {
		return nil, err
	}
	return j, nil
}

func (s *Server) readJob(ctx context.Context, k store.Key) (*job, error) {
	return readStored(ctx, s.store, k, decodeJob)
}

func (j *job) facts() jobFacts {
	return jobFacts{Report: j.st.Cluster, Phase: j.st.Phase, Cancel: j.rec.Cancel, Retired: j.rec.Retired}
}

func (j *job) state() string {
	state, _ := jobState(j.facts())
	return state
}

type jobCtxKey struct{}

// jobOf is the job a job-run request was admitted for (jobAuth).
func jobOf(r *http.Request) *job { return r.Context().Value(jobCtxKey{}).(*job) }

// jobView is a job as the API shows it.
func (s *Server) jobView(r *http.Request, j *job) api.Job {
	state, msg := jobState(j.facts())
	start, end := jobTimes(j.facts(), j.st.RunningAt, j.rec.RetiredAt)
	ws := strings.TrimPrefix(j.obj.Parent, workspaceParent(""))
	return api.Job{JobSpec: j.rec.Job, ID: resourceID(j.obj.Key), ResourceGroup: j.obj.Group, Workspace: ws,
		Status: state, StatusMessage: msg, CreationContext: &api.CreationContext{CreatedAt: j.obj.Created, LastModified: j.obj.Updated},
		StartTime: start, EndTime: end,
		Services: map[string]api.JobService{"Studio": {Endpoint: "https://" + r.Host + studio.JobPath(j.obj.Group, ws, j.obj.Name),
			JobServiceType: "Studio"}}}
}

// badJob collects what is wrong with a job: each problem names its field
// and what is allowed.
type badJob []error

func (b *badJob) add(field, format string, args ...any) {
	*b = append(*b, &jobspec.FieldError{Path: field, Msg: fmt.Sprintf(format, args...)})
}

func (b badJob) err() error { return errors.Join(b...) }

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	ctx := r.Context()
	data, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	spec, err := jobspec.Decode(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidJob", err.Error())
		return
	}
	switch spec.Name {
	case "":
		spec.Name = name
	case name:
	default:
		writeError(w, http.StatusBadRequest, "InvalidJob", fmt.Sprintf("name: %q differs from the job name in the URL (%q): leave it out or make them the same", spec.Name, name))
		return
	}
	jobspec.Default(spec)
	if err := jobspec.Validate(spec); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidJob", err.Error())
		return
	}
	k := jobKey(rg, ws, name)
	if _, err := s.store.Get(ctx, k); err == nil {
		writeError(w, http.StatusConflict, "Conflict", jobExists(name))
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		storeError(w, err, "job "+name)
		return
	}
	rec, bad, err := s.resolveJob(ctx, rg, ws, spec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if len(bad) > 0 {
		writeError(w, http.StatusBadRequest, "InvalidJob", bad.err().Error())
		return
	}
	tok := newToken()
	rec.TokenSHA256 = hashToken(tok)
	body, err := json.Marshal(rec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	prot, err := json.Marshal(jobSecrets{Token: tok})
	if err == nil {
		prot, err = s.sealProtected(k, prot)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	o, err := s.store.Create(ctx, k, body, prot)
	if errors.Is(err, store.ErrExists) {
		writeError(w, http.StatusConflict, "Conflict", jobExists(name))
		return
	}
	if err != nil {
		storeError(w, err, "job "+name)
		return
	}
	j, err := decodeJob(o)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	s.log.Info("job created", "job", resourceID(k), "compute", rec.Compute, "cluster", clusterID(rec.ClusterGroup, rec.Cluster))
	writeJSON(w, http.StatusCreated, s.jobView(r, j))
}

func jobExists(name string) string {
	return fmt.Sprintf("job %s already exists: job names are unique in a workspace; give another name, or leave name out for a generated one", name)
}

// rawBody is a request's JSON body as it is, for decoders of their own
// (readBody already holds it in memory).
func rawBody(r *http.Request) ([]byte, error) {
	var raw json.RawMessage
	if err := decode(r, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// resolveJob checks a valid document against the world and resolves what
// it names. bad lists the problems a user can fix; err is the workspace's
// own failure.
func (s *Server) resolveJob(ctx context.Context, rg, ws string, spec *api.JobSpec) (rec jobRecord, bad badJob, err error) {
	rec.Job = *spec
	if err := s.resolveCompute(ctx, rg, ws, &rec, &bad); err != nil {
		return rec, nil, err
	}
	if err := s.resolveEnvironment(ctx, rg, ws, &rec, &bad); err != nil {
		return rec, nil, err
	}
	if err := s.resolveData(ctx, rg, ws, &rec, &bad); err != nil {
		return rec, nil, err
	}
	return rec, bad, nil
}

// resolveCompute finds the job's compute and checks that it can run jobs
// now: Succeeded, its cluster connected with training enabled, the
// instance type known there and able to fit one of its nodes.
func (s *Server) resolveCompute(ctx context.Context, rg, ws string, rec *jobRecord, bad *badJob) error {
	spec := &rec.Job
	name := jobspec.ComputeName(spec.Compute)
	if name == "" {
		set, _, err := s.readWorkspace(ctx, rg, ws)
		if err != nil {
			return err
		}
		name = set.DefaultCompute
	}
	if name == "" {
		objs, err := s.store.List(ctx, kindCompute, rg, workspaceParent(ws))
		if err != nil {
			return err
		}
		if len(objs) != 1 {
			names, err := s.computeNames(ctx, rg, ws)
			if err != nil {
				return err
			}
			bad.add("compute", "the job names no compute and workspace %s has no default compute: set compute: azureml:NAME, or a default with `outpost ml workspace update --set default_compute=NAME`; computes: %s", ws, names)
			return nil
		}
		name = objs[0].Name
	}
	spec.Compute = "azureml:" + name
	rec.Compute = name
	cs, st, ok, err := s.usableCompute(ctx, rg, ws, name, "compute", trainingFeature, bad)
	if err != nil || !ok {
		return err
	}
	rec.ClusterGroup, rec.Cluster, rec.Namespace = cs.ClusterGroup, cs.Cluster, cs.Namespace
	it := api.DefaultInstanceType
	if spec.Resources != nil && spec.Resources.InstanceType != "" {
		it = spec.Resources.InstanceType
	}
	if spec.Resources == nil {
		spec.Resources = &api.JobResources{InstanceCount: 1}
	}
	spec.Resources.InstanceType = it
	rec.InstanceType = it
	if err := fitInstanceType(cs.Cluster, st.Facts, it, max(spec.Resources.InstanceCount, 1)); err != nil {
		bad.add("resources.instance_type", "%v", err)
	}
	return nil
}

const gpuResource = "nvidia.com/gpu"

// fitInstanceType checks that the instance type is one the cluster
// reported and that one of its Ready nodes, among those its nodeSelector
// picks, has room for it when empty: the requests (and the GPU limit, GPUs
// being taken whole) within the node's allocatable resources. A job of
// several instances (a gang, placed all at once) needs room for all of them
// on the empty matching nodes together. A job that fails this would be
// Queued forever.
func fitInstanceType(cluster string, facts api.ClusterFacts, name string, instances int) error {
	var it *api.InstanceType
	for i := range facts.InstanceTypes {
		if facts.InstanceTypes[i].Name == name {
			it = &facts.InstanceTypes[i]
		}
	}
	if it == nil {
		return fmt.Errorf("instance type %s not found on cluster %s; instance types: %s", name, cluster, describeInstanceTypes(facts.InstanceTypes))
	}
	need := map[string]resource.Quantity{}
	for k, v := range it.Resources.Requests {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("instance type %s on cluster %s: requests.%s %q is not a quantity: fix the InstanceType", name, cluster, k, v)
		}
		need[k] = q
	}
	if v, ok := it.Resources.Limits[gpuResource]; ok {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("instance type %s on cluster %s: limits.%s %q is not a quantity: fix the InstanceType", name, cluster, gpuResource, v)
		}
		if cur, ok := need[gpuResource]; !ok || q.Cmp(cur) > 0 {
			need[gpuResource] = q
		}
	}
	var matching []api.NodeFacts
	ready := 0
	for _, n := range facts.Nodes {
		if !n.Ready {
			continue
		}
		ready++
		if !selects(it.NodeSelector, n.Labels) {
			continue
		}
		matching = append(matching, n)
	}
	room, per := 0, make([]string, 0, len(matching))
	for _, n := range matching {
		k := instancesFitting(need, n.Allocatable)
		room += k
		per = append(per, fmt.Sprintf("%s %d", n.Name, k))
	}
	if room >= instances {
		return nil
	}
	if room > 0 {
		return fmt.Errorf("a job of %d instances of %s can never run on cluster %s: they are placed all at once, and its empty nodes hold at most %d (%s)",
			instances, name, cluster, room, strings.Join(per, ", "))
	}
	switch {
	case len(facts.Nodes) == 0:
		return fmt.Errorf("instance type %s cannot be placed on cluster %s: the cluster has reported no nodes (is its agent up to date?)", name, cluster)
	case ready == 0:
		return fmt.Errorf("instance type %s cannot run on cluster %s now: none of its %d nodes is Ready", name, cluster, len(facts.Nodes))
	case len(matching) == 0:
		return fmt.Errorf("instance type %s can never run on cluster %s: no Ready node matches its nodeSelector %s", name, cluster, describeSelector(it.NodeSelector))
	}
	largest := slices.MaxFunc(matching, func(a, b api.NodeFacts) int {
		acpu, amem := quantity(a.Allocatable, "cpu"), quantity(a.Allocatable, "memory")
		return cmp.Or(acpu.Cmp(quantity(b.Allocatable, "cpu")), amem.Cmp(quantity(b.Allocatable, "memory")))
	})
	return fmt.Errorf("instance type %s can never run on cluster %s: it requests %s and the largest node has %s", name, cluster,
		describeResources(need, need), describeResources(allocatable(largest.Allocatable), need))
}

// selects tells whether labels have every key and value of a nodeSelector.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// instancesFitting is how many instances needing need fit side by side in
// an empty node of allocatable alloc.
func instancesFitting(need map[string]resource.Quantity, alloc map[string]string) int {
	n := math.MaxInt
	for k, q := range need {
		if q.IsZero() {
			continue
		}
		have := quantity(alloc, k)
		n = min(n, int(have.MilliValue()/q.MilliValue()))
	}
	if n == math.MaxInt {
		return 1 << 20 // needs nothing: any number fits
	}
	return n
}

// quantity reads one allocatable resource; missing or unreadable is none.
func quantity(alloc map[string]string, k string) resource.Quantity {
	q, err := resource.ParseQuantity(alloc[k])
	if err != nil {
		return resource.Quantity{}
	}
	return q
}

func allocatable(alloc map[string]string) map[string]resource.Quantity {
	out := map[string]resource.Quantity{}
	for k := range alloc {
		out[k] = quantity(alloc, k)
	}
	return out
}

// describeResources writes the resources of have that need names, as "4
// CPU, 8Gi, 1 GPU".
func describeResources(have, need map[string]resource.Quantity) string {
	var parts []string
	keys := make([]string, 0, len(need))
	for k := range need {
		keys = append(keys, k)
	}
	// cpu, memory, GPU, then the rest by name.
	order := map[string]int{"cpu": 0, "memory": 1, gpuResource: 2}
	slices.SortFunc(keys, func(a, b string) int {
		oa, ok := order[a]
		if !ok {
			oa = 3
		}
		ob, ok := order[b]
		if !ok {
			ob = 3
		}
		return cmp.Or(cmp.Compare(oa, ob), strings.Compare(a, b))
	})
	for _, k := range keys {
		q := have[k]
		switch k {
		case "cpu":
			parts = append(parts, trimFloat(float64(q.MilliValue())/1000)+" CPU")
		case "memory":
			parts = append(parts, trimFloat(float64(q.Value())/(1<<30))+"Gi")
		case gpuResource:
			parts = append(parts, q.String()+" GPU")
		default:
			parts = append(parts, q.String()+" "+k)
		}
	}
	return strings.Join(parts, ", ")
}

func trimFloat(f float64) string {
	return fmt.Sprint(math.Round(f*100) / 100)
}

func describeSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + sel[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// describeInstanceTypes lists instance types with their requests, as
// "a (cpu 1, memory 2Gi), b (cpu 2, memory 4Gi, nvidia.com/gpu 1)".
func describeInstanceTypes(its []api.InstanceType) string {
	if len(its) == 0 {
		return "none reported (the cluster's agent reports them; is it up to date?)"
	}
	sorted := slices.Clone(its)
	slices.SortFunc(sorted, func(a, b api.InstanceType) int { return strings.Compare(a.Name, b.Name) })
	parts := make([]string, len(sorted))
	for i, it := range sorted {
		res := []string{"cpu " + it.Resources.Requests["cpu"], "memory " + it.Resources.Requests["memory"]}
		if g, ok := it.Resources.Limits[gpuResource]; ok {
			res = append(res, gpuResource+" "+g)
		}
		parts[i] = it.Name + " (" + strings.Join(res, ", ") + ")"
	}
	return strings.Join(parts, ", ")
}

// Images a job runs in when its environment names none it can run: a build
// context, or a curated or registry environment (recorded, and run in the
// matching public image).
const curatedImagePrefix = "mcr.microsoft.com/azureml/curated/"

// resolveEnvironment finds the image the job runs in.
func (s *Server) resolveEnvironment(ctx context.Context, rg, ws string, rec *jobRecord, bad *badJob) error {
	env := rec.Job.Environment
	switch {
	case env == nil:
		bad.add("environment", "required") // Validate says so first
		return nil
	case env.Inline != nil && env.Inline.Image != "":
		rec.Image = env.Inline.Image
		return nil
	case env.Inline != nil:
		// The build is recorded, not built: there is no image builder.
		rec.Image = defaultBuildImage
		return nil
	case strings.HasPrefix(env.Ref, "azureml://registries/"):
		// azureml://registries/<r>/environments/<e>/...: recorded.
		parts := strings.Split(strings.TrimPrefix(env.Ref, "azureml://registries/"), "/")
		if len(parts) < 3 || parts[1] != "environments" || parts[2] == "" {
			bad.add("environment", "%q is not a registry environment: want azureml://registries/<registry>/environments/<name>/versions/<v> or .../labels/latest", env.Ref)
			return nil
		}
		rec.Image = curatedImagePrefix + strings.ToLower(parts[2]) + ":latest"
		return nil
	}
	name, version, latest, err := jobspec.ParseAssetRef(env.Ref)
	if err != nil {
		bad.add("environment", "%v", err)
		return nil
	}
	o, err := s.findAsset(ctx, environments, rg, ws, name, version, latest)
	if errors.Is(err, errAssetMissing) {
		// Azure ML's curated environments are known by name.
		if curated, ok := strings.CutPrefix(name, "AzureML-"); ok && curated != "" {
			rec.Image = curatedImagePrefix + strings.ToLower(curated) + ":latest"
			return nil
		}
		bad.add("environment", "%s", strings.TrimPrefix(err.Error(), errAssetMissing.Error()+": "))
		return nil
	}
	if err != nil {
		return err
	}
	var e api.Environment
	if err := json.Unmarshal(o.Spec, &e); err != nil {
		return fmt.Errorf("stored %s: %w", o.Key, err)
	}
	rec.Image = e.Image
	if rec.Image == "" {
		rec.Image = defaultBuildImage // a build: recorded, not built
	}
	return nil
}

// resolveData resolves the code, inputs and outputs to datastore URIs,
// checking that what the job reads is there.
func (s *Server) resolveData(ctx context.Context, rg, ws string, rec *jobRecord, bad *badJob) error {
	spec := &rec.Job
	if spec.Code != "" {
		if err := s.checkDataPath(ctx, "code", "code", spec.Code); err != nil {
			if !isUserError(err) {
				return err
			}
			*bad = append(*bad, err)
		}
		rec.Code = spec.Code
	}
	rec.Inputs = map[string]api.RunInput{}
	for _, name := range slices.Sorted(maps.Keys(spec.Inputs)) {
		in := spec.Inputs[name]
		field := "inputs." + name
		if in.Literal() {
			text, err := jobspec.LiteralText(in.Value)
			if err != nil {
				bad.add(field, "%v", err)
				continue
			}
			rec.Inputs[name] = api.RunInput{Literal: &text}
			continue
		}
		if in.Path == "" {
			continue // optional, not given
		}
		ri := api.RunInput{Type: in.Type, URI: in.Path, Mode: in.Mode}
		if strings.HasPrefix(in.Path, "azureml:") && !strings.HasPrefix(in.Path, "azureml://") {
			n, v, latest, err := jobspec.ParseAssetRef(in.Path)
			if err != nil {
				bad.add(field+".path", "%v", err)
				continue
			}
			o, err := s.findAsset(ctx, dataAssets, rg, ws, n, v, latest)
			if errors.Is(err, errAssetMissing) {
				bad.add(field+".path", "%s", strings.TrimPrefix(err.Error(), errAssetMissing.Error()+": "))
				continue
			}
			if err != nil {
				return err
			}
			var d api.Data
			if err := json.Unmarshal(o.Spec, &d); err != nil {
				return fmt.Errorf("stored %s: %w", o.Key, err)
			}
			// The asset says what the data is; it was checked when created.
			ri.URI, ri.Type = d.Path, d.Type
		}
		if err := s.checkDataPath(ctx, field+".path", ri.Type, ri.URI); err != nil {
			if !isUserError(err) {
				return err
			}
			*bad = append(*bad, err)
			continue
		}
		rec.Inputs[name] = ri
	}
	rec.Outputs = map[string]api.RunOutput{}
	for _, name := range slices.Sorted(maps.Keys(spec.Outputs)) {
		out := spec.Outputs[name]
		uri := jobspec.ResolveOutputPath(out.Path, spec.Name, name)
		if uri == "" {
			uri = jobspec.DefaultOutputURI(spec.Name, name)
		}
		ds, _, err := jobspec.ParseDatastoreURI(uri)
		switch {
		case err != nil:
			bad.add("outputs."+name+".path", "%v", err)
			continue
		case ds != api.DefaultDatastore:
			bad.add("outputs."+name+".path", "datastore %s not found: this workspace has %s", ds, api.DefaultDatastore)
			continue
		}
		// What the job will write is where show says it is.
		resolved := *out
		resolved.Path = uri
		spec.Outputs[name] = &resolved
		rec.Outputs[name] = api.RunOutput{Type: out.Type, URI: uri, Mode: out.Mode}
	}
	rec.Artifacts = jobspec.ArtifactsURI(spec.Name)
	return nil
}

// internalError marks a failure to look, as opposed to a problem found
// with what was looked at.
type internalError struct{ error }

func (e internalError) Unwrap() error { return e.error }

func isUserError(err error) bool {
	var ie internalError
	return !errors.As(err, &ie)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.readJob(r.Context(), jobKey(r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")))
	if err != nil {
		storeError(w, err, "job "+r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, s.jobView(r, j))
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	objs, err := s.store.List(r.Context(), kindJob, r.PathValue("rg"), workspaceParent(r.PathValue("ws")))
	if err != nil {
		storeError(w, err, "jobs")
		return
	}
	slices.SortStableFunc(objs, func(a, b store.Object) int { return b.Created.Compare(a.Created) })
	out := []api.Job{}
	for _, o := range objs {
		j, err := decodeJob(o)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		out = append(out, s.jobView(r, j))
	}
	writeJSON(w, http.StatusOK, out)
}

// jobPatch is what may change in a job once submitted: how it is labelled.
// Keys with a null value are removed.
type jobPatch struct {
	DisplayName *string            `json:"display_name,omitempty"`
	Description *string            `json:"description,omitempty"`
	Tags        map[string]*string `json:"tags,omitempty"`
	Properties  map[string]*string `json:"properties,omitempty"`
}

var patchableJobFields = []string{"tags", "properties", "display_name", "description"}

func (s *Server) updateJob(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	data, err := rawBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "request body: "+err.Error())
		return
	}
	var refused []string
	for f := range fields {
		if !slices.Contains(patchableJobFields, f) {
			refused = append(refused, f)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("%s cannot be changed once a job is submitted: only %s can",
			strings.Join(refused, ", "), strings.Join(patchableJobFields, ", ")))
		return
	}
	var patch jobPatch
	if err := decodeStrict(data, &patch); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	j, err := s.updateJobSpec(r.Context(), jobKey(rg, ws, name), func(j *job) (bool, error) {
		spec := &j.rec.Job
		if patch.DisplayName != nil {
			spec.DisplayName = *patch.DisplayName
		}
		if patch.Description != nil {
			spec.Description = *patch.Description
		}
		spec.Tags = mergeLabels(spec.Tags, patch.Tags)
		spec.Properties = mergeLabels(spec.Properties, patch.Properties)
		return true, nil
	})
	if err != nil {
		storeError(w, err, "job "+name)
		return
	}
	writeJSON(w, http.StatusOK, s.jobView(r, j))
}

func mergeLabels(cur map[string]string, patch map[string]*string) map[string]string {
	if len(patch) == 0 {
		return cur
	}
	out := map[string]string{}
	for k, v := range cur {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// jobRetry bounds the re-reads of a job's spec changed meanwhile.
var jobRetry = mergeRetry

// updateJobSpec changes a job's spec with f, again on the latest spec when
// it changed meanwhile. f returns false to leave the job as it is.
func (s *Server) updateJobSpec(ctx context.Context, k store.Key, f func(*job) (bool, error)) (*job, error) {
	var j *job
	changed := false
	attempt := func() error {
		var err error
		if j, err = s.readJob(ctx, k); err != nil {
			return err
		}
		changed, err = f(j)
		if err != nil || !changed {
			return err
		}
		body, err := json.Marshal(j.rec)
		if err != nil {
			return err
		}
		o, err := s.store.UpdateSpec(ctx, k, body, nil, j.obj.Generation)
		if err != nil {
			return err
		}
		j, err = decodeJob(o)
		return err
	}
	// OnError reports a context error of the last attempt as that
	// attempt's predecessor's (none): keep the last one's own.
	var last error
	err := retry.OnError(jobRetry, func(err error) bool { return errors.Is(err, store.ErrConflict) }, func() error {
		last = attempt()
		return last
	})
	if err == nil {
		err = last
	}
	if err == nil && changed {
		s.jobEvents.notify(resourceID(k))
	}
	return j, err
}

// errJobEnded refuses a cancel of a job that has ended.
type errJobEnded struct{ name, state string }

func (e errJobEnded) Error() string {
	return "job " + e.name + " is " + e.state + "; nothing to cancel"
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	rg, ws, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name")
	j, err := s.updateJobSpec(r.Context(), jobKey(rg, ws, name), func(j *job) (bool, error) {
		if state := j.state(); api.JobTerminal(state) {
			return false, errJobEnded{name, state}
		}
		if j.rec.Cancel {
			return false, nil // asked before: the same answer
		}
		j.rec.Cancel = true
		return true, nil
	})
	var ended errJobEnded
	if errors.As(err, &ended) {
		writeError(w, http.StatusConflict, "Conflict", ended.Error())
		return
	}
	if err != nil {
		storeError(w, err, "job "+name)
		return
	}
	s.log.Info("job cancel requested", "job", resourceID(j.obj.Key), "status", j.state())
	writeJSON(w, http.StatusOK, s.jobView(r, j))
}
