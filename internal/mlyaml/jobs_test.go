package mlyaml_test

import (
	"os"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/mlyaml"
)

// The examples read, overridden, decoded and validated as the client and
// the workspace do; errors point at their lines.
func TestExamples(t *testing.T) {
	for _, file := range []string{"../../examples/jobs/hello-world/job.yml", "../../examples/jobs/sklearn-iris/job.yml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		d, err := mlyaml.Load(file, data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		// What the client does once it has uploaded the local paths.
		for _, p := range []string{"code", "inputs.iris.path"} {
			if _, ok := d.Get(p); ok {
				if err := d.Set(p + "=azureml://datastores/workspaceblobstore/paths/LocalUpload/abc/x"); err != nil {
					t.Fatal(err)
				}
			}
		}
		js, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		j, err := jobspec.Decode(js)
		if err != nil {
			t.Fatalf("%s: %v", file, d.Explain(err))
		}
		jobspec.Default(j)
		if err := jobspec.Validate(j); err != nil {
			t.Errorf("%s: %v", file, d.Explain(err))
		}
	}
}

func TestExplainJobErrors(t *testing.T) {
	doc := `command: python train.py --data ${{inputs.data}}
environment:
  image: python:3.11
  imagee: x
inputs:
  data:
    type: uri_folder
    path: ./data
    mode: eval_mount
resources:
  instance_count: two
`
	d, err := mlyaml.Load("job.yml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	js, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	_, err = jobspec.Decode(js)
	want := "job.yml, line 4: environment.imagee: unknown field \"imagee\" (allowed here: $schema, id, name, version, description, tags, image, conda_file, build, os_type, inference_config, creation_context)\n" +
		"job.yml, line 11: resources.instance_count: must be a whole number, not a string"
	if got := d.Explain(err); got == nil || got.Error() != want {
		t.Errorf("Decode: %v\nwant %s", got, want)
	}

	if err := d.Set("environment={image: python:3.11}"); err != nil {
		t.Fatal(err)
	}
	if err := d.Set("resources.instance_count=1"); err != nil {
		t.Fatal(err)
	}
	if js, err = d.JSON(); err != nil {
		t.Fatal(err)
	}
	j, err := jobspec.Decode(js)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Explain(jobspec.Validate(j))
	for _, w := range []string{
		"job.yml, line 9: inputs.data.mode: mode eval_mount is for mltable inputs only",
		"job.yml, line 8: inputs.data.path: local path ./data must be uploaded by the client",
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v\nwant %s", err, w)
		}
	}
}
