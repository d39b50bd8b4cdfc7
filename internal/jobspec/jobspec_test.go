package jobspec

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

// The examples' shapes (examples/jobs), as the client sends them: local
// paths already uploaded.
const helloWorld = `{
  "$schema": "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json",
  "command": "echo \"hello world\" && python --version && echo \"run ${AZUREML_RUN_ID}\"",
  "environment": {"image": "library/python:latest"},
  "compute": "azureml:local-compute",
  "display_name": "hello-world",
  "experiment_name": "hello-world",
  "description": "The smallest command job."
}`

const sklearnIris = `{
  "$schema": "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json",
  "code": "azureml://datastores/workspaceblobstore/paths/LocalUpload/0123abcd/src",
  "command": "python main.py --data ${{inputs.iris}} --C ${{inputs.C}} --max-iter ${{inputs.max_iter}} --model-dir ${{outputs.model}}",
  "inputs": {
    "iris": {"type": "uri_folder", "path": "azureml://datastores/workspaceblobstore/paths/LocalUpload/4567ef/data"},
    "C": 1.0,
    "max_iter": 200
  },
  "outputs": {"model": {"type": "uri_folder"}},
  "environment": "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest",
  "compute": "azureml:local-compute",
  "resources": {"instance_type": "defaultinstancetype"},
  "display_name": "sklearn-iris",
  "experiment_name": "sklearn-iris",
  "tags": {"epochs": 10, "fast": true}
}`

func mustDecode(t *testing.T, doc string) *api.JobSpec {
	t.Helper()
	j, err := Decode([]byte(doc))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return j
}

func TestDecodeExamples(t *testing.T) {
	for name, doc := range map[string]string{"hello-world": helloWorld, "sklearn-iris": sklearnIris} {
		j := mustDecode(t, doc)
		if err := Validate(j); err != nil {
			t.Errorf("%s: Validate before Default: %v", name, err)
		}
		Default(j)
		if err := Validate(j); err != nil {
			t.Errorf("%s: Validate after Default: %v", name, err)
		}
	}
	j := mustDecode(t, sklearnIris)
	if got := string(j.Inputs["C"].Value); got != "1.0" {
		t.Errorf("literal C = %s, want 1.0 as written", got)
	}
	if j.Tags["epochs"] != "10" || j.Tags["fast"] != "true" {
		t.Errorf("tags = %v, want numbers and booleans as text", j.Tags)
	}
	if j.Environment.Ref != "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest" {
		t.Errorf("environment = %+v", j.Environment)
	}
	if !strings.Contains(mustDecode(t, helloWorld).Command, "&&") {
		t.Errorf("command lost its &&")
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string // FieldError strings, in order
		msg  string   // for errors without a path
	}{
		{name: "unknown top-level field", doc: `{"command": "x", "comand": "y"}`,
			want: []string{`comand: unknown field "comand" (allowed here: $schema, type, name, display_name, experiment_name, description, tags, properties, code, command, environment, environment_variables, compute, resources, distribution, limits, inputs, outputs, identity)`}},
		{name: "unknown input field", doc: `{"inputs": {"training_data": {"type": "uri_folder", "modee": "download"}}}`,
			want: []string{`inputs.training_data.modee: unknown field "modee" (allowed here: type, path, mode, description, optional, default)`}},
		{name: "field names are case-sensitive", doc: `{"Command": "x"}`,
			want: []string{`Command: unknown field "Command"`}},
		{name: "unknown inline environment field", doc: `{"environment": {"image": "python", "imagee": "x"}}`,
			want: []string{`environment.imagee: unknown field "imagee" (allowed here: $schema, id, name, version, description, tags, image, conda_file, build, os_type, inference_config, creation_context)`}},
		{name: "unknown resources field and wrong type, all reported", doc: `{"resources": {"instance_count": "two", "gpus": 1}, "limits": {"timeout": 1.5}}`,
			want: []string{`resources.instance_count: must be a whole number, not a string`, `resources.gpus: unknown field "gpus"`, `limits.timeout: must be a whole number, not 1.5`}},
		{name: "input as a list", doc: `{"inputs": {"x": [1, 2]}}`,
			want: []string{`inputs.x: an input is a literal (string, number, boolean) or an object with type and path, not a list`}},
		{name: "input field of the wrong type", doc: `{"inputs": {"x": {"path": "p", "optional": "yes"}}}`,
			want: []string{`inputs.x.optional: must be true or false, not a string`}},
		{name: "environment of the wrong type", doc: `{"environment": 3}`,
			want: []string{`environment: must be a reference (azureml:NAME:VERSION, azureml:NAME@latest) or an inline environment (image: ...), not a number (3)`}},
		{name: "tags not a mapping", doc: `{"tags": ["a"]}`,
			want: []string{`tags: must be an object (a mapping of names to values), not a list`}},
		{name: "tag value an object", doc: `{"tags": {"a": {"b": 1}}}`,
			want: []string{`tags.a: must be a string, not an object`}},
		{name: "duplicate field", doc: `{"outputs": {"m": {}, "m": {}}}`,
			want: []string{`outputs.m: given more than once`}},
		{name: "not an object", doc: `["command"]`, msg: "the job document must be an object"},
		{name: "trailing data", doc: `{"command": "x"} {"command": "y"}`, msg: "unexpected data after the document"},
		{name: "syntax error", doc: `{"command": }`, msg: "job document is not valid JSON"},
		{name: "truncated", doc: `{"command": "x"`, msg: "unexpected end of JSON"},
	}
	for _, c := range cases {
		_, err := Decode([]byte(c.doc))
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if c.msg != "" {
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s: %v, want %q", c.name, err, c.msg)
			}
			continue
		}
		got := fieldErrors(err)
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.want[i]) {
				t.Errorf("%s: error %d: %q, want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// fieldErrors lists the *FieldErrors of a joined error, failing on others.
func fieldErrors(err error) []string {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []string
	for _, e := range errs {
		var fe *FieldError
		if !errors.As(e, &fe) {
			out = append(out, "NOT A FieldError: "+e.Error())
			continue
		}
		out = append(out, fe.Error())
	}
	return out
}

func TestFieldError(t *testing.T) {
	e := &FieldError{Path: "inputs.x.mode", Msg: "bad"}
	var withPath interface{ FieldPath() string }
	if !errors.As(error(e), &withPath) || withPath.FieldPath() != "inputs.x.mode" || e.Error() != "inputs.x.mode: bad" {
		t.Errorf("%v %q", e, e.FieldPath())
	}
	if (&FieldError{Msg: "whole"}).Error() != "whole" {
		t.Errorf("no path: %q", (&FieldError{Msg: "whole"}).Error())
	}
}

func TestDefault(t *testing.T) {
	j := mustDecode(t, `{
  "command": "x",
  "inputs": {"d": {"path": "azureml:data:1"}, "f": {"type": "uri_file", "path": "azureml:f:1", "mode": "download"}, "lit": 3},
  "outputs": {"a": null, "b": {}, "c": {"type": "uri_file", "mode": "upload"}},
  "distribution": {"type": "PyTorch"}
}`)
	Default(j)
	if j.Type != "command" {
		t.Errorf("type %q", j.Type)
	}
	if !regexp.MustCompile(`^[a-z]+_[a-z]+_[a-z0-9]{10}$`).MatchString(j.Name) {
		t.Errorf("name %q", j.Name)
	}
	wantOut := map[string]api.Output{
		"a": {Type: "uri_folder", Mode: "rw_mount"},
		"b": {Type: "uri_folder", Mode: "rw_mount"},
		"c": {Type: "uri_file", Mode: "upload"},
	}
	for name, want := range wantOut {
		if got := j.Outputs[name]; got == nil || *got != want {
			t.Errorf("outputs.%s = %+v, want %+v", name, got, want)
		}
	}
	if in := j.Inputs["d"]; in.Type != "uri_folder" || in.Mode != "ro_mount" {
		t.Errorf("inputs.d = %+v", in)
	}
	if in := j.Inputs["f"]; in.Type != "uri_file" || in.Mode != "download" {
		t.Errorf("inputs.f = %+v", in)
	}
	if in := j.Inputs["lit"]; in.Type != "" || in.Mode != "" || string(in.Value) != "3" {
		t.Errorf("inputs.lit = %+v", in)
	}
	if j.Resources == nil || j.Resources.InstanceCount != 1 {
		t.Errorf("resources = %+v", j.Resources)
	}
	if d := j.Distribution; d.Type != "pytorch" || d.ProcessCountPerInstance != 1 {
		t.Errorf("distribution = %+v", d)
	}

	named := mustDecode(t, `{"name": "mine", "type": "command", "resources": {"instance_count": 3}, "distribution": {"type": "tensorflow"}}`)
	Default(named)
	if named.Name != "mine" || named.Resources.InstanceCount != 3 || named.Distribution.WorkerCount != 3 {
		t.Errorf("%+v %+v %+v", named, named.Resources, named.Distribution)
	}
}

func TestGenerateName(t *testing.T) {
	re := regexp.MustCompile(`^[a-z]+_[a-z]+_[a-z0-9]{10}$`)
	seen := map[string]bool{}
	for range 200 {
		n := GenerateName()
		if !re.MatchString(n) || !nameRE.MatchString(n) {
			t.Fatalf("%q does not look like quirky_hat_7ql5cqq9ff", n)
		}
		if seen[n] {
			t.Fatalf("%q generated twice", n)
		}
		seen[n] = true
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(j *api.JobSpec)
		want []string // each a prefix of one FieldError, in order; none = valid
	}{
		{"valid", func(j *api.JobSpec) {}, nil},
		{"sweep", func(j *api.JobSpec) { j.Type = "sweep" }, []string{"type: type sweep is not supported yet: only command jobs run (type: command)"}},
		{"pipeline", func(j *api.JobSpec) { j.Type = "pipeline" }, []string{"type: type pipeline is not supported yet"}},
		{"unknown type", func(j *api.JobSpec) { j.Type = "spark" }, []string{`type: unknown job type "spark"`}},
		{"bad name", func(j *api.JobSpec) { j.Name = "-x y" }, []string{`name: "-x y" is not a job name`}},
		{"long name", func(j *api.JobSpec) { j.Name = strings.Repeat("a", 256) }, []string{`name: "aaa`}},
		{"name of 255", func(j *api.JobSpec) { j.Name = strings.Repeat("a", 255) }, nil},
		{"display name is free text", func(j *api.JobSpec) { j.DisplayName = "My run (2)" }, nil},
		{"no command", func(j *api.JobSpec) { j.Command = "  " }, []string{"command: required"}},
		{"no environment", func(j *api.JobSpec) { j.Environment = nil }, []string{"environment: required"}},
		{"env version ref", func(j *api.JobSpec) { j.Environment = &api.EnvironmentRef{Ref: "azureml:my-env:3"} }, nil},
		{"env latest ref", func(j *api.JobSpec) { j.Environment = &api.EnvironmentRef{Ref: "azureml:AzureML-sklearn-1.0@latest"} }, nil},
		{"env registry label", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Ref: "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"}
		}, nil},
		{"env registry version", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Ref: "azureml://registries/azureml/environments/sklearn-1.5/versions/7"}
		}, nil},
		{"env registry bad", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Ref: "azureml://registries/azureml/environments/sklearn-1.5"}
		}, []string{"environment: \"azureml://registries/azureml/environments/sklearn-1.5\" is not a registry environment"}},
		{"env no version", func(j *api.JobSpec) { j.Environment = &api.EnvironmentRef{Ref: "azureml:my-env"} },
			[]string{`environment: "azureml:my-env": give a version (azureml:NAME:VERSION) or @latest`}},
		{"env plain name", func(j *api.JobSpec) { j.Environment = &api.EnvironmentRef{Ref: "python:3.11"} },
			[]string{`environment: "python:3.11" is not an asset reference`}},
		{"env file", func(j *api.JobSpec) { j.Environment = &api.EnvironmentRef{Ref: "file:./env.yml"} },
			[]string{"environment: environment file:./env.yml must be read by the client"}},
		{"inline without image", func(j *api.JobSpec) { j.Environment = &api.EnvironmentRef{Inline: &api.Environment{Name: "x"}} },
			[]string{"environment: an inline environment needs image"}},
		{"inline with conda", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Inline: &api.Environment{Image: "python:3.11", CondaFile: json.RawMessage(`{"name": "c"}`), Name: "ignored", Version: "1"}}
		}, nil},
		{"inline build", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Inline: &api.Environment{Build: &api.EnvironmentBuild{Path: "azureml://datastores/workspaceblobstore/paths/LocalUpload/ab/docker"}}}
		}, nil},
		{"inline build without path", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Inline: &api.Environment{Build: &api.EnvironmentBuild{}}}
		}, []string{"environment.build.path: required"}},
		{"conda without image", func(j *api.JobSpec) {
			j.Environment = &api.EnvironmentRef{Inline: &api.Environment{Build: &api.EnvironmentBuild{Path: "p"}, CondaFile: json.RawMessage(`{}`)}}
		}, []string{"environment.conda_file: needs image"}},
		{"compute plain", func(j *api.JobSpec) { j.Compute = "k8s-compute" }, nil},
		{"compute empty", func(j *api.JobSpec) { j.Compute = "" }, nil},
		{"compute local", func(j *api.JobSpec) { j.Compute = "local" }, []string{"compute: local runs are not supported"}},
		{"compute azureml local", func(j *api.JobSpec) { j.Compute = "azureml:local" }, []string{"compute: local runs are not supported"}},
		{"compute bad", func(j *api.JobSpec) { j.Compute = "azureml:a/b" }, []string{`compute: "azureml:a/b" is not a compute`}},
		{"instance count negative", func(j *api.JobSpec) { j.Resources = &api.JobResources{InstanceCount: -1} },
			[]string{"resources.instance_count: must be at least 1, not -1"}},
		{"shm size ok", func(j *api.JobSpec) { j.Resources = &api.JobResources{ShmSize: "512m"} }, nil},
		{"shm size bad", func(j *api.JobSpec) { j.Resources = &api.JobResources{ShmSize: "2 GB"} },
			[]string{`resources.shm_size: "2 GB" is not a size`}},
		{"instances without distribution", func(j *api.JobSpec) { j.Resources = &api.JobResources{InstanceCount: 2} }, nil},
		{"pytorch of one", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "PyTorch"} }, nil},
		{"pytorch processes", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "pytorch", ProcessCountPerInstance: 4} }, nil},
		{"pytorch instances", func(j *api.JobSpec) {
			j.Resources = &api.JobResources{InstanceCount: 2}
			j.Distribution = &api.Distribution{Type: "pytorch", ProcessCountPerInstance: 2}
		}, nil},
		{"pytorch with workers", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "pytorch", WorkerCount: 2} },
			[]string{"distribution: worker_count and parameter_server_count are tensorflow settings"}},
		{"tensorflow tasks not one per instance", func(j *api.JobSpec) {
			j.Resources = &api.JobResources{InstanceCount: 2}
			j.Distribution = &api.Distribution{Type: "tensorflow", WorkerCount: 3}
		}, []string{"distribution: tensorflow runs one task per instance: worker_count (3) + parameter_server_count (0) must equal resources.instance_count (2)"}},
		{"mpi without count", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "mpi"} },
			[]string{"distribution.process_count_per_instance: required for mpi"}},
		{"mpi of one", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "mpi", ProcessCountPerInstance: 1} }, nil},
		{"tensorflow of one", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "tensorflow", WorkerCount: 1} }, nil},
		{"tensorflow with ps", func(j *api.JobSpec) {
			j.Distribution = &api.Distribution{Type: "tensorflow", WorkerCount: 1, ParameterServerCount: 1}
		}, []string{"distribution: tensorflow runs one task per instance: worker_count (1) + parameter_server_count (1) must equal resources.instance_count (1)"}},
		{"tensorflow with ps on two instances", func(j *api.JobSpec) {
			j.Resources = &api.JobResources{InstanceCount: 2}
			j.Distribution = &api.Distribution{Type: "tensorflow", WorkerCount: 1, ParameterServerCount: 1}
		}, nil},
		{"negative count", func(j *api.JobSpec) {
			j.Distribution = &api.Distribution{Type: "tensorflow", WorkerCount: -1, ParameterServerCount: 1}
		},
			[]string{"distribution.worker_count: must be 0 or more, not -1", "distribution: tensorflow runs one task per instance"}},
		{"ray", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "ray"} }, []string{"distribution.type: ray is not supported"}},
		{"unknown distribution", func(j *api.JobSpec) { j.Distribution = &api.Distribution{Type: "horovod"} },
			[]string{`distribution.type: unknown distribution "horovod": use one of pytorch, mpi, tensorflow`}},
		{"timeout", func(j *api.JobSpec) { j.Limits = &api.JobLimits{Timeout: -5} }, []string{"limits.timeout: must be 0 or more seconds, not -5"}},
		{"input name", func(j *api.JobSpec) { j.Inputs["2x"] = lit(`1`) }, []string{`inputs.2x: "2x" is not an input name`}},
		{"literal types", func(j *api.JobSpec) {
			j.Inputs["s"], j.Inputs["b"], j.Inputs["n"] = lit(`"x"`), lit(`false`), lit(`-1.5e3`)
		}, nil},
		{"literal list", func(j *api.JobSpec) { j.Inputs["l"] = lit(`[1]`) }, []string{"inputs.l: literal [1]: a literal input is a string, a number or a boolean"}},
		{"nil input", func(j *api.JobSpec) { j.Inputs["e"] = nil }, []string{"inputs.e: empty"}},
		{"input type", func(j *api.JobSpec) { j.Inputs["iris"].Type = "folder" }, []string{`inputs.iris.type: unknown input type "folder": use one of uri_folder, uri_file, mltable, custom_model, mlflow_model, triton_model`}},
		{"component input type", func(j *api.JobSpec) { j.Inputs["iris"].Type = "number" }, []string{"inputs.iris.type: type number is for component inputs"}},
		{"input mode", func(j *api.JobSpec) { j.Inputs["iris"].Mode = "rw_mount" }, []string{`inputs.iris.mode: unknown input mode "rw_mount": use one of ro_mount, download, direct, eval_mount, eval_download`}},
		{"eval mode on folder", func(j *api.JobSpec) { j.Inputs["iris"].Mode = "eval_mount" }, []string{"inputs.iris.mode: mode eval_mount is for mltable inputs only"}},
		{"eval mode on mltable", func(j *api.JobSpec) { j.Inputs["iris"].Type, j.Inputs["iris"].Mode = "mltable", "eval_download" }, nil},
		{"input asset", func(j *api.JobSpec) { j.Inputs["iris"].Path = "azureml:iris:1" }, nil},
		{"input asset latest", func(j *api.JobSpec) { j.Inputs["iris"].Path = "azureml:iris@latest" }, nil},
		{"input asset no version", func(j *api.JobSpec) { j.Inputs["iris"].Path = "azureml:iris" },
			[]string{`inputs.iris.path: "azureml:iris": give a version (azureml:NAME:VERSION) or @latest`}},
		{"input long datastore URI", func(j *api.JobSpec) {
			j.Inputs["iris"].Path = "azureml://subscriptions/s/resourcegroups/rg/workspaces/w/datastores/workspaceblobstore/paths/data/iris/"
		}, nil},
		{"input https", func(j *api.JobSpec) { j.Inputs["iris"].Path = "https://example.com/iris.csv" },
			[]string{"inputs.iris.path: https://example.com/iris.csv is not supported: only workspace datastores (azureml://datastores/<datastore>/paths/<path>) and data assets (azureml:NAME:VERSION) are"}},
		{"input wasbs", func(j *api.JobSpec) {
			j.Inputs["iris"].Path = "wasbs://datasets@azuremlexamples.blob.core.windows.net/iris.csv"
		}, []string{"inputs.iris.path: wasbs://datasets@azuremlexamples.blob.core.windows.net/iris.csv is not supported"}},
		{"input abfss", func(j *api.JobSpec) { j.Inputs["iris"].Path = "abfss://c@a.dfs.core.windows.net/p" }, []string{"inputs.iris.path: abfss://"}},
		{"input local", func(j *api.JobSpec) { j.Inputs["iris"].Path = "./data" },
			[]string{"inputs.iris.path: local path ./data must be uploaded by the client"}},
		{"input dotdot", func(j *api.JobSpec) { j.Inputs["iris"].Path = "azureml://datastores/workspaceblobstore/paths/a/../b" },
			[]string{`inputs.iris.path: "azureml://datastores/workspaceblobstore/paths/a/../b": the path must be relative`}},
		{"input without path", func(j *api.JobSpec) { j.Inputs["iris"].Path = "" }, []string{"inputs.iris.path: required"}},
		{"optional input without path, ref in a block", func(j *api.JobSpec) {
			j.Inputs["extra"] = &api.Input{Type: "uri_file", Optional: true}
			j.Command += " $[[--extra ${{inputs.extra}}]]"
		}, nil},
		{"optional input without path, ref outside a block", func(j *api.JobSpec) {
			j.Inputs["extra"] = &api.Input{Type: "uri_file", Optional: true}
			j.Command += " --extra ${{inputs.extra}}"
		}, []string{`command: ${{inputs.extra}}: no input "extra" (inputs: C, iris, max_iter); an optional input's reference goes in an optional block`}},
		{"output type", func(j *api.JobSpec) { j.Outputs["model"].Type = "triton_model" }, []string{`outputs.model.type: unknown output type "triton_model"`}},
		{"output mode", func(j *api.JobSpec) { j.Outputs["model"].Mode = "download" }, []string{`outputs.model.mode: unknown output mode "download": use one of rw_mount, upload`}},
		{"output name", func(j *api.JobSpec) { j.Outputs["my-model"] = nil }, []string{`outputs.my-model: "my-model" is not an output name`}},
		{"output path placeholders", func(j *api.JobSpec) {
			j.Outputs["model"].Path = "azureml://datastores/${{default_datastore}}/paths/models/${{name}}/${{ output_name }}/"
		}, nil},
		{"output path unknown placeholder", func(j *api.JobSpec) {
			j.Outputs["model"].Path = "azureml://datastores/workspaceblobstore/paths/${{inputs.x}}/"
		}, []string{"outputs.model.path: ${{inputs.x}} cannot be used in an output path"}},
		{"output path local", func(j *api.JobSpec) { j.Outputs["model"].Path = "./model" },
			[]string{`outputs.model.path: "./model" is not a datastore URI: want azureml://datastores/<datastore>/paths/<path>`}},
		{"env var name", func(j *api.JobSpec) { j.EnvironmentVariables = map[string]string{"": "x", "A=B": "y", "OK": "z"} },
			[]string{`environment_variables: "" is not a variable name`, `environment_variables: "A=B" is not a variable name`}},
		{"undeclared input", func(j *api.JobSpec) { j.Command += " ${{inputs.nope}}" }, []string{`command: ${{inputs.nope}}: no input "nope"`}},
		{"undeclared output", func(j *api.JobSpec) { j.Command += " ${{ outputs.nope }}" }, []string{`command: ${{ outputs.nope }}: no output "nope" (outputs: model)`}},
		{"undeclared input in an optional block", func(j *api.JobSpec) { j.Command += " [--x ${{inputs.nope}}]" }, nil},
		{"search space", func(j *api.JobSpec) { j.Command += " --lr ${{search_space.lr}}" },
			[]string{"command: ${{search_space.lr}} belongs to sweep jobs"}},
		{"parent", func(j *api.JobSpec) { j.Command += " ${{parent.inputs.x}}" }, []string{"command: ${{parent.inputs.x}} belongs to pipeline jobs"}},
		{"many problems at once", func(j *api.JobSpec) {
			j.Type = "sweep"
			j.Command = ""
			j.Inputs["iris"].Mode = "bad"
		}, []string{"type: type sweep", "command: required", `inputs.iris.mode: unknown input mode "bad"`}},
	}
	for _, c := range cases {
		j := mustDecode(t, sklearnIris)
		c.edit(j)
		err := Validate(j)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want %q", c.name, c.want)
			continue
		}
		got := fieldErrors(err)
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.want[i]) {
				t.Errorf("%s: %q, want %q", c.name, got[i], c.want[i])
			}
		}
	}
}

func lit(raw string) *api.Input { return &api.Input{Value: json.RawMessage(raw)} }

func TestSubstitute(t *testing.T) {
	in := map[string]string{"data": "/azureml/inputs/data", "lr": "0.01", "flag": "True"}
	out := map[string]string{"model": "/azureml/outputs/model"}
	cases := []struct {
		name, cmd, want, err string
	}{
		{"plain", "python train.py --data ${{inputs.data}} --out ${{outputs.model}}", "python train.py --data /azureml/inputs/data --out /azureml/outputs/model", ""},
		{"spaces in braces", "x ${{ inputs.lr }} ${{outputs.model }}", "x 0.01 /azureml/outputs/model", ""},
		{"no references", "echo hello && ls [abc]", "echo hello && ls [abc]", ""},
		{"azure optional block given", "train $[[--lr ${{inputs.lr}}]] end", "train --lr 0.01 end", ""},
		{"azure optional block absent", "train $[[--momentum ${{inputs.momentum}}]] end", "train  end", ""},
		{"bracket block given", "train [--lr ${{inputs.lr}}]", "train --lr 0.01", ""},
		{"bracket block absent", "train [--momentum ${{inputs.momentum}}] --lr ${{inputs.lr}}", "train  --lr 0.01", ""},
		{"block with two inputs, one absent", "t [--a ${{inputs.lr}} --b ${{inputs.nope}}]", "t ", ""},
		{"block with an output kept", "t [--lr ${{inputs.lr}} --o ${{outputs.model}}]", "t --lr 0.01 --o /azureml/outputs/model", ""},
		{"shell test left alone", "if [ -d ${{inputs.data}} ]; then ls; fi", "if [ -d /azureml/inputs/data ]; then ls; fi", ""},
		{"double bracket test left alone", "[[ -n ${{inputs.lr}} ]] && echo", "[[ -n 0.01 ]] && echo", ""},
		{"bracket without input left alone", "echo [x] ${arr[0]} [${{outputs.model}}]", "echo [x] ${arr[0]} [/azureml/outputs/model]", ""},
		{"unclosed bracket", "echo [--lr ${{inputs.lr}}", "echo [--lr 0.01", ""},
		{"unclosed reference", "echo ${{inputs.lr", "echo ${{inputs.lr", ""},
		{"multiline", "python a.py \\\n  --lr ${{inputs.lr}}\n", "python a.py \\\n  --lr 0.01\n", ""},
		{"missing input", "x ${{inputs.nope}}", "", `${{inputs.nope}}: no input "nope" (inputs: data, flag, lr); an optional input's reference goes in an optional block: $[[--flag ${{inputs.nope}}]]`},
		{"missing output", "x ${{outputs.nope}}", "", `${{outputs.nope}}: no output "nope" (outputs: model)`},
		{"missing output in a kept block", "x [--lr ${{inputs.lr}} ${{outputs.nope}}]", "", `${{outputs.nope}}: no output "nope"`},
		{"sweep reference", "x ${{search_space.lr}}", "", "${{search_space.lr}} belongs to sweep jobs"},
		{"pipeline reference", "x ${{parent.jobs.a.outputs.b}}", "", "${{parent.jobs.a.outputs.b}} belongs to pipeline jobs"},
		{"other reference", "x ${{name}}", "", "${{name}} is not a reference a command can hold"},
		{"all problems", "${{inputs.a}} ${{outputs.b}}", "", `${{inputs.a}}: no input "a"`},
	}
	for _, c := range cases {
		got, err := Substitute(c.cmd, in, out)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q, %v; want error %q", c.name, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	_, err := Substitute("${{inputs.a}} ${{outputs.b}}", in, out)
	if err == nil || !strings.Contains(err.Error(), `no output "b"`) {
		t.Errorf("both problems: %v", err)
	}
}

func TestLiteralText(t *testing.T) {
	cases := []struct{ raw, want, err string }{
		{`"rbf"`, "rbf", ""},
		{`"a \"b\" & c"`, `a "b" & c`, ""},
		{`1.0`, "1.0", ""},
		{`200`, "200", ""},
		{`-1e-3`, "-1e-3", ""},
		{`true`, "True", ""},
		{`false`, "False", ""},
		{` 3 `, "3", ""},
		{`null`, "", "a literal input is a string, a number or a boolean"},
		{`{"a": 1}`, "", "a literal input is a string, a number or a boolean"},
		{`01`, "", "is not a number"},
		{``, "", "empty literal"},
	}
	for _, c := range cases {
		got, err := LiteralText(json.RawMessage(c.raw))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q, %v; want error %q", c.raw, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %q, %v; want %q", c.raw, got, err, c.want)
		}
	}
}

func TestURIs(t *testing.T) {
	if got := DefaultOutputURI("quirky_hat_1", "model"); got != "azureml://datastores/workspaceblobstore/paths/azureml/quirky_hat_1/model/" {
		t.Errorf("DefaultOutputURI: %s", got)
	}
	if got := ArtifactsURI("quirky_hat_1"); got != "azureml://datastores/workspaceblobstore/paths/ExperimentRun/dcid.quirky_hat_1/outputs/" {
		t.Errorf("ArtifactsURI: %s", got)
	}
	if got := ResolveOutputPath("azureml://datastores/${{default_datastore}}/paths/${{name}}/${{ output_name }}/${{inputs.x}}", "j1", "m"); got != "azureml://datastores/workspaceblobstore/paths/j1/m/${{inputs.x}}" {
		t.Errorf("ResolveOutputPath: %s", got)
	}
	for in, want := range map[string]string{"azureml:cpu": "cpu", "cpu": "cpu", "": ""} {
		if got := ComputeName(in); got != want {
			t.Errorf("ComputeName(%q) = %q", in, got)
		}
	}

	ds := []struct{ uri, store, path, err string }{
		{"azureml://datastores/workspaceblobstore/paths/LocalUpload/ab/src", "workspaceblobstore", "LocalUpload/ab/src", ""},
		{"azureml://datastores/workspaceblobstore/paths/azureml/j/model/", "workspaceblobstore", "azureml/j/model/", ""},
		{"azureml://subscriptions/s/resourcegroups/rg/workspaces/w/datastores/other/paths/a/b.csv", "other", "a/b.csv", ""},
		{"azureml://subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/datastores/d/paths/x", "d", "x", ""},
		{"azureml://datastores/workspaceblobstore/paths/", "", "", "names no path"},
		{"azureml://datastores/workspaceblobstore/a", "", "", "is not a datastore URI"},
		{"azureml://datastores//paths/a", "", "", "is not a datastore URI"},
		{"azureml://datastores/d/paths//etc/passwd", "", "", "must be relative"},
		{"azureml://datastores/d/paths/a/./b", "", "", "must be relative"},
		{"azureml://datastores/d/paths/a//b", "", "", "must be relative"},
		{"https://x/y", "", "", "is not a datastore URI"},
	}
	for _, c := range ds {
		s, p, err := ParseDatastoreURI(c.uri)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q %q %v; want error %q", c.uri, s, p, err, c.err)
		case c.err == "" && (err != nil || s != c.store || p != c.path):
			t.Errorf("%s: %q %q %v; want %q %q", c.uri, s, p, err, c.store, c.path)
		}
	}

	refs := []struct {
		ref, name, version string
		latest             bool
		err                string
	}{
		{"azureml:iris:1", "iris", "1", false, ""},
		{"azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33", "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu", "33", false, ""},
		{"azureml:iris@latest", "iris", "", true, ""},
		{"azureml:iris", "", "", false, "give a version (azureml:NAME:VERSION) or @latest"},
		{"azureml:iris@stable", "", "", false, "the only label is @latest"},
		{"azureml:iris:1:2", "", "", false, "bad version"},
		{"azureml::1", "", "", false, "bad name"},
		{"iris:1", "", "", false, "is not an asset reference"},
		{"azureml://datastores/d/paths/p", "", "", false, "is not an asset reference"},
	}
	for _, c := range refs {
		n, v, l, err := ParseAssetRef(c.ref)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q %q %v %v; want error %q", c.ref, n, v, l, err, c.err)
		case c.err == "" && (err != nil || n != c.name || v != c.version || l != c.latest):
			t.Errorf("%s: %q %q %v %v; want %q %q %v", c.ref, n, v, l, err, c.name, c.version, c.latest)
		}
	}
}
