package jobspec

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"outpost.dev/outpost/api"
)

// Allowed values, in the order error messages list them.
var (
	InputTypes  = []string{"uri_folder", "uri_file", "mltable", "custom_model", "mlflow_model", "triton_model"}
	InputModes  = []string{"ro_mount", "download", "direct", "eval_mount", "eval_download"}
	OutputTypes = []string{"uri_folder", "uri_file", "mltable", "mlflow_model", "custom_model"}
	OutputModes = []string{"rw_mount", "upload"}
	// Distributions is what distribution.type may be (in any case).
	Distributions = []string{"pytorch", "mpi", "tensorflow"}
)

var (
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	shmSizeRE = regexp.MustCompile(`^[1-9][0-9]*[bkmgBKMG]$`)
	// azureml://registries/<r>/environments/<e>/(versions/<v>|labels/latest)
	registryEnvRE = regexp.MustCompile(`^azureml://registries/[^/]+/environments/[^/]+/(versions/[^/]+|labels/latest)$`)
	schemeRE      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
)

// Validate checks everything that needs nothing but the document itself.
// It returns all the problems at once, each a *FieldError naming the field
// and what is allowed there. It accepts a document before or after Default.
func Validate(j *api.JobSpec) error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, fieldErr(path, format, args...)) }

	switch j.Type {
	case "", TypeCommand:
	case "sweep", "pipeline":
		add("type", "type %s is not supported yet: only command jobs run (type: command)", j.Type)
	default:
		add("type", "unknown job type %q: only command jobs run (type: command)", j.Type)
	}
	if j.Name != "" && !nameRE.MatchString(j.Name) {
		add("name", "%q is not a job name: letters, digits, '_' and '-', starting with a letter or digit, at most 255 characters", j.Name)
	}
	if strings.TrimSpace(j.Command) == "" {
		add("command", "required: the shell command the job runs")
	}
	errs = append(errs, validateEnvironment(j.Environment)...)
	if j.Compute != "" {
		c := ComputeName(j.Compute)
		switch {
		case c == "local":
			add("compute", "local runs are not supported: name an attached compute (azureml:NAME), or leave compute out for the workspace's default")
		case !nameRE.MatchString(c):
			add("compute", "%q is not a compute: want azureml:NAME or NAME (letters, digits, '_' and '-'), or leave it out for the workspace's default", j.Compute)
		}
	}
	if r := j.Resources; r != nil {
		if r.InstanceCount < 0 {
			add("resources.instance_count", "must be at least 1, not %d", r.InstanceCount)
		}
		if r.ShmSize != "" && !shmSizeRE.MatchString(r.ShmSize) {
			add("resources.shm_size", "%q is not a size: a number above 0 and a unit b, k, m or g (e.g. 2g, 512m)", r.ShmSize)
		}
		if r.InstanceType != "" && !nameRE.MatchString(r.InstanceType) {
			add("resources.instance_type", "%q is not an instance type name: letters, digits, '_' and '-'", r.InstanceType)
		}
	}
	errs = append(errs, validateDistribution(j)...)
	if j.Limits != nil && j.Limits.Timeout < 0 {
		add("limits.timeout", "must be 0 or more seconds, not %d", j.Limits.Timeout)
	}
	for _, name := range slices.Sorted(maps.Keys(j.Inputs)) {
		errs = append(errs, validateInput("inputs."+name, name, j.Inputs[name])...)
	}
	for _, name := range slices.Sorted(maps.Keys(j.Outputs)) {
		errs = append(errs, validateOutput("outputs."+name, name, j.Outputs[name])...)
	}
	for _, k := range slices.Sorted(maps.Keys(j.EnvironmentVariables)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("environment_variables", "%q is not a variable name: non-empty, without '=' or NUL", k)
		}
	}
	errs = append(errs, validateCommandRefs(j)...)
	return errors.Join(errs...)
}

const envForms = "azureml:NAME:VERSION, azureml:NAME@latest, azureml://registries/<registry>/environments/<name>/(versions/<v>|labels/latest), or an inline environment with image (and optionally conda_file) or build.path"

func validateEnvironment(e *api.EnvironmentRef) []error {
	const p = "environment"
	switch {
	case e == nil || (e.Ref == "" && e.Inline == nil):
		return []error{fieldErr(p, "required: %s", envForms)}
	case e.Inline != nil:
		env := e.Inline
		var errs []error
		switch {
		case env.Image == "" && env.Build == nil:
			errs = append(errs, fieldErr(p, "an inline environment needs image (e.g. image: python:3.11) or build.path"))
		case env.Image != "" && env.Build != nil:
			errs = append(errs, fieldErr(p, "give image or build, not both"))
		case env.Build != nil && env.Build.Path == "":
			errs = append(errs, fieldErr(p+".build.path", "required: the folder of the Docker build context"))
		}
		if env.Image != "" && strings.ContainsAny(env.Image, " \t\n") {
			errs = append(errs, fieldErr(p+".image", "%q is not an image reference", env.Image))
		}
		if len(env.CondaFile) > 0 && env.Image == "" && string(bytes.TrimSpace(env.CondaFile)) != "null" {
			errs = append(errs, fieldErr(p+".conda_file", "needs image: conda_file is applied on top of an image"))
		}
		return errs
	}
	ref := e.Ref
	switch {
	case strings.HasPrefix(ref, "file:"):
		return []error{fieldErr(p, "environment %s must be read by the client: it inlines the environment file before submitting", ref)}
	case strings.HasPrefix(ref, "azureml://registries/"):
		if !registryEnvRE.MatchString(ref) {
			return []error{fieldErr(p, "%q is not a registry environment: want azureml://registries/<registry>/environments/<name>/versions/<v> or .../labels/latest", ref)}
		}
		return nil
	}
	if _, _, _, err := ParseAssetRef(ref); err != nil {
		return []error{fieldErr(p, "%v; an environment is %s", err, envForms)}
	}
	return nil
}

func validateDistribution(j *api.JobSpec) []error {
	instances := 1
	if j.Resources != nil && j.Resources.InstanceCount > 1 {
		instances = j.Resources.InstanceCount
	}
	d := j.Distribution
	if d == nil {
		return nil // every instance runs the command, unwired
	}
	const p = "distribution"
	var errs []error
	for _, c := range []struct {
		name string
		n    int
	}{{"process_count_per_instance", d.ProcessCountPerInstance}, {"worker_count", d.WorkerCount}, {"parameter_server_count", d.ParameterServerCount}} {
		if c.n < 0 {
			errs = append(errs, fieldErr(p+"."+c.name, "must be 0 or more, not %d", c.n))
		}
	}
	switch t := strings.ToLower(d.Type); t {
	case "pytorch", "mpi":
		if t == "mpi" && d.ProcessCountPerInstance < 1 {
			errs = append(errs, fieldErr(p+".process_count_per_instance", "required for mpi: the number of processes on each instance (1 or more)"))
		}
		if d.WorkerCount != 0 || d.ParameterServerCount != 0 {
			errs = append(errs, fieldErr(p, "worker_count and parameter_server_count are tensorflow settings; %s takes process_count_per_instance", t))
		}
	case "tensorflow":
		// One TensorFlow task per instance: workers first, then parameter
		// servers, as TF_CONFIG lists them.
		workers := d.WorkerCount
		if workers <= 0 {
			workers = instances - max(d.ParameterServerCount, 0)
		}
		if d.ProcessCountPerInstance > 0 {
			errs = append(errs, fieldErr(p+".process_count_per_instance", "not a tensorflow setting: tensorflow runs one task per instance (worker_count + parameter_server_count = instance_count)"))
		} else if workers < 1 || workers+max(d.ParameterServerCount, 0) != instances {
			errs = append(errs, fieldErr(p, "tensorflow runs one task per instance: worker_count (%d) + parameter_server_count (%d) must equal resources.instance_count (%d), with at least one worker",
				workers, max(d.ParameterServerCount, 0), instances))
		}
	case "ray":
		errs = append(errs, fieldErr(p+".type", "ray is not supported: use pytorch, mpi or tensorflow"))
	case "":
		errs = append(errs, fieldErr(p+".type", "required: one of %s", strings.Join(Distributions, ", ")))
	default:
		errs = append(errs, fieldErr(p+".type", "unknown distribution %q: use one of %s", d.Type, strings.Join(Distributions, ", ")))
	}
	return errs
}

func validateInput(p, name string, in *api.Input) []error {
	var errs []error
	if !identRE.MatchString(name) {
		errs = append(errs, fieldErr(p, "%q is not an input name: letters, digits and '_', not starting with a digit", name))
	}
	if in == nil {
		return append(errs, fieldErr(p, "empty: give a literal value (string, number, boolean) or an object with type and path"))
	}
	if in.Literal() {
		if _, err := LiteralText(in.Value); err != nil {
			errs = append(errs, fieldErr(p, "%v", err))
		}
		return errs
	}
	switch {
	case in.Type == "" || slices.Contains(InputTypes, in.Type):
	case slices.Contains([]string{"string", "number", "integer", "boolean"}, in.Type):
		errs = append(errs, fieldErr(p+".type", "type %s is for component inputs: give the value itself (%s: <value>); data inputs are %s", in.Type, name, strings.Join(InputTypes, ", ")))
	default:
		errs = append(errs, fieldErr(p+".type", "unknown input type %q: use one of %s", in.Type, strings.Join(InputTypes, ", ")))
	}
	switch {
	case in.Mode == "":
	case !slices.Contains(InputModes, in.Mode):
		errs = append(errs, fieldErr(p+".mode", "unknown input mode %q: use one of %s", in.Mode, strings.Join(InputModes, ", ")))
	case strings.HasPrefix(in.Mode, "eval_") && in.Type != TypeMLTable:
		errs = append(errs, fieldErr(p+".mode", "mode %s is for mltable inputs only; use ro_mount, download or direct", in.Mode))
	}
	if in.Path == "" {
		if !in.Optional {
			errs = append(errs, fieldErr(p+".path", "required: an azureml://datastores/<datastore>/paths/<path> URI, a data asset (azureml:NAME:VERSION or azureml:NAME@latest) or a local path"))
		}
		return errs
	}
	if err := checkDataPath(in.Path); err != nil {
		errs = append(errs, fieldErr(p+".path", "%v", err))
	}
	return errs
}

func checkDataPath(path string) error {
	switch {
	case strings.HasPrefix(path, "azureml://"):
		_, _, err := ParseDatastoreURI(path)
		return err
	case strings.HasPrefix(path, "azureml:"):
		_, _, _, err := ParseAssetRef(path)
		return err
	case schemeRE.MatchString(path):
		return fmt.Errorf("%s is not supported: only workspace datastores (azureml://datastores/<datastore>/paths/<path>) and data assets (azureml:NAME:VERSION) are", path)
	}
	return fmt.Errorf("local path %s must be uploaded by the client: it replaces local paths with datastore URIs before submitting", path)
}

func validateOutput(p, name string, out *api.Output) []error {
	var errs []error
	if !identRE.MatchString(name) {
		errs = append(errs, fieldErr(p, "%q is not an output name: letters, digits and '_', not starting with a digit", name))
	}
	if out == nil {
		return errs
	}
	if out.Type != "" && !slices.Contains(OutputTypes, out.Type) {
		errs = append(errs, fieldErr(p+".type", "unknown output type %q: use one of %s", out.Type, strings.Join(OutputTypes, ", ")))
	}
	if out.Mode != "" && !slices.Contains(OutputModes, out.Mode) {
		errs = append(errs, fieldErr(p+".mode", "unknown output mode %q: use one of %s", out.Mode, strings.Join(OutputModes, ", ")))
	}
	if out.Path != "" {
		resolved := ResolveOutputPath(out.Path, "job", name)
		if m := refRE.FindString(resolved); m != "" {
			errs = append(errs, fieldErr(p+".path", "%s cannot be used in an output path: use ${{name}}, ${{output_name}} or ${{default_datastore}}", m))
		} else if _, _, err := ParseDatastoreURI(resolved); err != nil {
			errs = append(errs, fieldErr(p+".path", "%v", err))
		}
	}
	return errs
}

// validateCommandRefs checks the command's references against the
// declared inputs and outputs. An optional input without a path will not
// be there, so its references must be in optional blocks; other inputs
// without one are reported on their own.
func validateCommandRefs(j *api.JobSpec) []error {
	inputs := map[string]string{}
	for name, in := range j.Inputs {
		if in == nil || in.Literal() || in.Path != "" || !in.Optional {
			inputs[name] = ""
		}
	}
	outputs := map[string]string{}
	for name := range j.Outputs {
		outputs[name] = ""
	}
	_, problems := substitute(j.Command, inputs, outputs)
	errs := make([]error, len(problems))
	for i, e := range problems {
		errs[i] = fieldErr("command", "%v", e)
	}
	return errs
}
