package deploymentspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
)

// Defaults Azure ML fills in on Kubernetes online deployments.
const (
	TypeKubernetes = "kubernetes"

	DefaultRequestTimeoutMS = 5000
	DefaultMaxConcurrent    = 1
	DefaultMaxQueueWaitMS   = 500

	DefaultProbePeriod       = 10
	DefaultProbeInitialDelay = 10
	DefaultProbeTimeout      = 2
	DefaultProbeSuccess      = 1
	DefaultProbeFailure      = 30

	DefaultMinInstances      = 1
	DefaultMaxInstances      = 1
	DefaultTargetUtilization = 70
	DefaultPollingInterval   = 1
)

// Resources a deployment may ask for, as an InstanceType has them.
const gpu = "nvidia.com/gpu"

var resourceKeys = []string{"cpu", "memory", gpu}

// DecodeDeployment reads an online deployment document strictly.
func DecodeDeployment(data []byte) (*api.OnlineDeployment, error) {
	var d api.OnlineDeployment
	if err := jobspec.DecodeStrict(data, &d, "online deployment"); err != nil {
		return nil, err
	}
	var errs []error
	for f, set := range map[string]bool{"id": d.ID != "", "provisioning_state": d.ProvisioningState != "", "status_message": d.StatusMessage != "",
		"ready_instance_count": d.ReadyInstances != 0, "creation_context": d.CreationContext != nil} {
		if set {
			errs = append(errs, fieldErr(f, "shown by the workspace, not set by a document: leave it out"))
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	return &d, nil
}

// DefaultDeployment fills in what Azure ML fills in, and writes enums in
// their stored spelling.
//
// Scale: a document without scale_settings runs instance_count instances
// (type default) when it gives instance_count, and otherwise is of type
// target_utilization with its defaults (min 1, max 1: one instance), as
// Azure ML's Kubernetes deployments are. Type default without
// instance_count runs one instance; with target_utilization,
// instance_count is min_instances (where the autoscaler starts), whatever
// the document gave.
func DefaultDeployment(d *api.OnlineDeployment) {
	if d.Type == "" || strings.EqualFold(d.Type, TypeKubernetes) {
		d.Type = TypeKubernetes
	}
	if d.ScaleSettings == nil {
		if d.InstanceCount > 0 {
			d.ScaleSettings = &api.ScaleSettings{Type: api.ScaleDefault}
		} else {
			d.ScaleSettings = &api.ScaleSettings{Type: api.ScaleTargetUtilization}
		}
	}
	s := d.ScaleSettings
	switch strings.ToLower(s.Type) {
	case "", api.ScaleDefault:
		s.Type = api.ScaleDefault
		if d.InstanceCount == 0 {
			d.InstanceCount = 1
		}
	case api.ScaleTargetUtilization, "targetutilization":
		s.Type = api.ScaleTargetUtilization
		s.MinInstances = or(s.MinInstances, DefaultMinInstances)
		s.MaxInstances = or(s.MaxInstances, max(DefaultMaxInstances, s.MinInstances))
		s.TargetUtilizationPercentage = or(s.TargetUtilizationPercentage, DefaultTargetUtilization)
		s.PollingInterval = or(s.PollingInterval, DefaultPollingInterval)
		// The autoscaler starts at min_instances and moves between min and
		// max: instance_count says where it starts, whatever a document
		// gave.
		d.InstanceCount = s.MinInstances
	}
	if d.RequestSettings == nil {
		d.RequestSettings = &api.RequestSettings{}
	}
	r := d.RequestSettings
	r.RequestTimeoutMS = or(r.RequestTimeoutMS, DefaultRequestTimeoutMS)
	r.MaxConcurrentRequestsPerInstance = or(r.MaxConcurrentRequestsPerInstance, DefaultMaxConcurrent)
	r.MaxQueueWaitMS = or(r.MaxQueueWaitMS, DefaultMaxQueueWaitMS)
	for _, p := range []**api.ProbeSettings{&d.LivenessProbe, &d.ReadinessProbe} {
		if *p == nil {
			*p = &api.ProbeSettings{}
		}
		ps := *p
		ps.Period = or(ps.Period, DefaultProbePeriod)
		ps.InitialDelay = or(ps.InitialDelay, DefaultProbeInitialDelay)
		ps.Timeout = or(ps.Timeout, DefaultProbeTimeout)
		ps.SuccessThreshold = or(ps.SuccessThreshold, DefaultProbeSuccess)
		ps.FailureThreshold = or(ps.FailureThreshold, DefaultProbeFailure)
	}
}

// or is v, or def when v is 0 (not given: the documents' numbers are
// omitted when 0).
func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// ValidateDeployment checks what needs nothing but the document (after
// DefaultDeployment): every problem a FieldError naming its field.
func ValidateDeployment(d *api.OnlineDeployment) error {
	var errs []error
	add := func(p, format string, args ...any) { errs = append(errs, fieldErr(p, format, args...)) }
	if err := CheckName("name", d.Name); err != nil {
		add("name", "%s", strings.TrimPrefix(err.Error(), "name "))
	}
	if d.EndpointName != "" {
		if err := CheckName("endpoint_name", d.EndpointName); err != nil {
			add("endpoint_name", "%s", strings.TrimPrefix(err.Error(), "endpoint_name "))
		}
	}
	if d.Type != TypeKubernetes {
		if strings.EqualFold(d.Type, "managed") {
			add("type", "managed online deployments run in Azure: Outpost runs Kubernetes ones (type: kubernetes, or leave type out)")
		} else {
			add("type", "%q: use kubernetes (or leave type out)", d.Type)
		}
	}
	errs = append(errs, validateModel(d.Model)...)
	inference, err := InferenceConfigOf(d.Environment)
	if err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, jobspec.ValidateEnvironment(d.Environment)...)
	if c := d.CodeConfiguration; c != nil {
		if c.Code == "" {
			add("code_configuration.code", "required: the folder of the scoring script (a local folder, uploaded by the client)")
		} else if _, _, err := jobspec.ParseDatastoreURI(c.Code); err != nil {
			add("code_configuration.code", "%v (the client uploads a local folder and sends its datastore URI)", err)
		}
		if c.ScoringScript == "" {
			add("code_configuration.scoring_script", "required: the scoring script (score.py), relative to code")
		} else if s := path.Clean(c.ScoringScript); s != c.ScoringScript || strings.HasPrefix(s, "/") || s == "." || strings.HasPrefix(s, "../") || s == ".." {
			add("code_configuration.scoring_script", "%q: a relative path within code, without \".\" or \"..\" steps", c.ScoringScript)
		}
	} else if inference == nil && d.Environment != nil && d.Environment.Inline != nil {
		// (A registered environment's inference_config is the
		// workspace's to look up.)
		add("code_configuration", "required: {code: <folder>, scoring_script: score.py}; only a custom container (environment.inference_config) runs without a scoring script")
	}
	for _, k := range slices.Sorted(maps.Keys(d.EnvironmentVariables)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("environment_variables", "%q is not a variable name: non-empty, without '=' or NUL", k)
		}
	}
	if d.InstanceType != "" && !instanceTypeRE(d.InstanceType) {
		add("instance_type", "%q is not an instance type name: lower-case letters, digits, '-' and '.'", d.InstanceType)
	}
	if d.InstanceCount < 0 {
		add("instance_count", "must be at least 1, not %d", d.InstanceCount)
	}
	errs = append(errs, validateScale(d)...)
	if r := d.RequestSettings; r != nil {
		for f, v := range map[string]int{"request_timeout_ms": r.RequestTimeoutMS, "max_concurrent_requests_per_instance": r.MaxConcurrentRequestsPerInstance,
			"max_queue_wait_ms": r.MaxQueueWaitMS} {
			if v < 0 {
				add("request_settings."+f, "must be above 0, not %d", v)
			}
		}
	}
	for name, p := range map[string]*api.ProbeSettings{"liveness_probe": d.LivenessProbe, "readiness_probe": d.ReadinessProbe} {
		if p == nil {
			continue
		}
		for f, v := range map[string]int{"period": p.Period, "initial_delay": p.InitialDelay, "timeout": p.Timeout,
			"success_threshold": p.SuccessThreshold, "failure_threshold": p.FailureThreshold} {
			if v < 0 {
				add(name+"."+f, "must be 0 or more, not %d", v)
			}
		}
	}
	if d.Resources != nil {
		errs = append(errs, validateResources(*d.Resources)...)
	}
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func instanceTypeRE(s string) bool {
	// An InstanceType is a Kubernetes object: a DNS subdomain name.
	if len(s) > 253 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' || r == '.') && i > 0 && i < len(s)-1
		if !ok {
			return false
		}
	}
	return s != ""
}

func validateModel(m *api.ModelRef) []error {
	if m == nil {
		return nil // a custom container may carry its model itself
	}
	if m.Inline == nil {
		ref := m.Ref
		switch {
		case ref == "":
			return []error{fieldErr("model", "empty: give azureml:NAME:VERSION, azureml:NAME@latest, or {path: <local file or folder>}")}
		case strings.HasPrefix(ref, "azureml://registries/"):
			return []error{fieldErr("model", "%s: registry models are not available to a self-hosted workspace: register the model here (outpost ml model create) and name it azureml:NAME:VERSION", ref)}
		}
		if _, _, _, err := jobspec.ParseAssetRef(ref); err != nil {
			return []error{fieldErr("model", "%v", err)}
		}
		return nil
	}
	in := m.Inline
	var errs []error
	switch in.Type {
	case "", api.ModelCustom, api.ModelMLflow, api.ModelTriton:
	default:
		errs = append(errs, fieldErr("model.type", "%q: use custom_model (the default), mlflow_model or triton_model", in.Type))
	}
	switch {
	case in.Path == "":
		errs = append(errs, fieldErr("model.path", "required: a local file or folder (uploaded by the client) or a datastore URI"))
	case strings.HasPrefix(in.Path, "runs:/"):
	default:
		if _, _, err := jobspec.ParseDatastoreURI(in.Path); err != nil {
			errs = append(errs, fieldErr("model.path", "%v (the client uploads a local path and sends its datastore URI)", err))
		}
	}
	return errs
}

func validateScale(d *api.OnlineDeployment) []error {
	s := d.ScaleSettings
	if s == nil {
		return nil
	}
	var errs []error
	add := func(p, format string, args ...any) { errs = append(errs, fieldErr(p, format, args...)) }
	switch s.Type {
	case api.ScaleDefault:
		for f, v := range map[string]int{"min_instances": s.MinInstances, "max_instances": s.MaxInstances,
			"target_utilization_percentage": s.TargetUtilizationPercentage, "polling_interval": s.PollingInterval} {
			if v != 0 {
				add("scale_settings."+f, "goes with scale_settings.type target_utilization; type default runs instance_count instances")
			}
		}
	case api.ScaleTargetUtilization:
		switch {
		case s.MinInstances < 1:
			add("scale_settings.min_instances", "must be at least 1, not %d", s.MinInstances)
		case s.MaxInstances < s.MinInstances:
			add("scale_settings.max_instances", "%d is below min_instances (%d)", s.MaxInstances, s.MinInstances)
		}
		if t := s.TargetUtilizationPercentage; t < 1 || t > 100 {
			add("scale_settings.target_utilization_percentage", "%d: a percent from 1 to 100", t)
		}
		if s.PollingInterval < 1 {
			add("scale_settings.polling_interval", "must be at least 1 second, not %d", s.PollingInterval)
		}
	default:
		add("scale_settings.type", "%q: use default (instance_count instances) or target_utilization", s.Type)
	}
	return errs
}

// validateResources checks a deployment's own requests and limits: the
// keys an InstanceType has, quantities above 0 (GPUs whole), requests not
// above limits.
func validateResources(r api.InstanceTypeResources) []error {
	var errs []error
	qs := map[string]map[string]resource.Quantity{}
	for part, m := range map[string]map[string]string{"requests": r.Requests, "limits": r.Limits} {
		qs[part] = map[string]resource.Quantity{}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := "resources." + part + "." + k
			if !slices.Contains(resourceKeys, k) {
				errs = append(errs, fieldErr(p, "unknown resource %q: use cpu, memory or %s", k, gpu))
				continue
			}
			q, err := resource.ParseQuantity(m[k])
			switch {
			case err != nil:
				errs = append(errs, fieldErr(p, "%q is not a quantity (e.g. cpu: \"0.5\" or 500m, memory: 1Gi)", m[k]))
				continue
			case q.Sign() <= 0:
				errs = append(errs, fieldErr(p, "%q: must be above 0", m[k]))
				continue
			case k == gpu && q.MilliValue()%1000 != 0:
				errs = append(errs, fieldErr(p, "%q: GPUs are whole", m[k]))
				continue
			}
			qs[part][k] = q
		}
	}
	for _, k := range resourceKeys {
		req, okr := qs["requests"][k]
		lim, okl := qs["limits"][k]
		if okr && okl && req.Cmp(lim) > 0 {
			errs = append(errs, fieldErr("resources.requests."+k, "%s is above its limit %s", req.String(), lim.String()))
		}
	}
	return errs
}

// EffectiveResources are the requests and limits a deployment's pods get:
// the instance type's, each overridden by the deployment's own.
func EffectiveResources(it api.InstanceTypeResources, own *api.InstanceTypeResources) api.InstanceTypeResources {
	out := api.InstanceTypeResources{Requests: maps.Clone(it.Requests), Limits: maps.Clone(it.Limits)}
	if out.Requests == nil {
		out.Requests = map[string]string{}
	}
	if out.Limits == nil {
		out.Limits = map[string]string{}
	}
	if own != nil {
		maps.Copy(out.Requests, own.Requests)
		maps.Copy(out.Limits, own.Limits)
	}
	// A limit lowered below the instance type's request lowers the request
	// with it, as the deployment asks for no more than its limit.
	for k, l := range out.Limits {
		if own != nil && own.Requests[k] != "" {
			continue
		}
		lq, err1 := resource.ParseQuantity(l)
		rq, err2 := resource.ParseQuantity(out.Requests[k])
		if err1 == nil && err2 == nil && rq.Cmp(lq) > 0 {
			out.Requests[k] = l
		}
	}
	return out
}

// CheckResources checks a deployment's own resources against its instance
// type (name it): its limits within the instance type's, and its requests
// within the limits it ends up with.
func CheckResources(itName string, it api.InstanceTypeResources, own *api.InstanceTypeResources) []error {
	if own == nil {
		return nil
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(own.Limits)) {
		lim, err := resource.ParseQuantity(own.Limits[k])
		if err != nil {
			continue // ValidateDeployment says so
		}
		v, ok := it.Limits[k]
		if !ok {
			errs = append(errs, fieldErr("resources.limits."+k, "%s: instance type %s gives no %s (its limits: %s)", own.Limits[k], itName, k, describe(it.Limits)))
			continue
		}
		itLim, err := resource.ParseQuantity(v)
		if err == nil && lim.Cmp(itLim) > 0 {
			errs = append(errs, fieldErr("resources.limits."+k, "%s is above the limit of instance type %s (%s): a deployment's limits are within its instance type's (its limits: %s)",
				own.Limits[k], itName, v, describe(it.Limits)))
		}
	}
	eff := EffectiveResources(it, own)
	for _, k := range slices.Sorted(maps.Keys(own.Requests)) {
		req, err1 := resource.ParseQuantity(own.Requests[k])
		if err1 != nil {
			continue
		}
		l, ok := eff.Limits[k]
		if !ok {
			if _, inIT := it.Limits[k]; !inIT && k == gpu {
				errs = append(errs, fieldErr("resources.requests."+k, "%s: instance type %s gives no %s", own.Requests[k], itName, k))
			}
			continue
		}
		lim, err2 := resource.ParseQuantity(l)
		if err2 == nil && req.Cmp(lim) > 0 {
			errs = append(errs, fieldErr("resources.requests."+k, "%s is above the limit %s (requests are within limits; instance type %s's limits: %s)", own.Requests[k], l, itName, describe(it.Limits)))
		}
	}
	return errs
}

func describe(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// InferenceConfigOf reads environment.inference_config of an inline
// environment (nil when there is none): a custom container's liveness,
// readiness and scoring routes, each a port and a path.
func InferenceConfigOf(env *api.EnvironmentRef) (*api.InferenceConfig, error) {
	if env == nil || env.Inline == nil {
		return nil, nil
	}
	return ParseInferenceConfig("environment.inference_config", env.Inline.InferenceConfig)
}

// ParseInferenceConfig reads an inference_config (field names the field it
// is at, for errors); nil for none.
func ParseInferenceConfig(field string, raw json.RawMessage) (*api.InferenceConfig, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var ic api.InferenceConfig
	if err := jobspec.DecodeStrict(raw, &ic, "inference_config"); err != nil {
		// Its problems are at paths below field.
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		out := make([]error, len(errs))
		for i, e := range errs {
			var fe *jobspec.FieldError
			if errors.As(e, &fe) {
				out[i] = fieldErr(jobspec.JoinPath(field, fe.Path), "%s", fe.Msg)
			} else {
				out[i] = fieldErr(field, "%v", e)
			}
		}
		return nil, errors.Join(out...)
	}
	var errs []error
	for name, r := range map[string]api.Route{"liveness_route": ic.LivenessRoute, "readiness_route": ic.ReadinessRoute, "scoring_route": ic.ScoringRoute} {
		p := field + "." + name
		switch {
		case r.Port == 0 && r.Path == "":
			errs = append(errs, fieldErr(p, "required: {port: <1-65535>, path: /...}: a custom container says where it answers"))
		case r.Port < 1 || r.Port > 65535:
			errs = append(errs, fieldErr(p+".port", "%d: a port from 1 to 65535", r.Port))
		case !strings.HasPrefix(r.Path, "/"):
			errs = append(errs, fieldErr(p+".path", "%q: an absolute path (/score)", r.Path))
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	return &ic, nil
}

// ModelFolder is the folder name a model keeps under AZUREML_MODEL_DIR:
// the last folder of a folder's datastore path (.../model/ -> model), and
// none for a single file, which lands in the model directory itself.
func ModelFolder(datastorePath string, isFolder bool) string {
	if !isFolder {
		return ""
	}
	return path.Base(strings.TrimSuffix(datastorePath, "/"))
}

// Describe formats requests or limits for messages ("cpu 2, memory 4Gi").
func Describe(m map[string]string) string { return describe(m) }

// Errorf is a FieldError at path: what resolution code of the workspace
// uses for the problems it finds with a document's fields.
func Errorf(path, format string, args ...any) error { return fieldErr(path, format, args...) }

// TrafficString renders a traffic map as az's --traffic value.
func TrafficString(t map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, t[k]))
	}
	return strings.Join(parts, " ")
}
