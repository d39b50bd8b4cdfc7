package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/artifacts"
)

// writeTree writes files (path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeUploader records what would be sent; present lists the datastore
// paths that are there already.
type fakeUploader struct {
	present map[string]bool
	dirs    map[string]string // datastore path -> local folder
	files   map[string]string // datastore path -> local file
}

func (f *fakeUploader) Exists(_ context.Context, ds, prefix string) (bool, error) {
	if ds != artifacts.Datastore {
		return false, os.ErrInvalid
	}
	return f.present[prefix], nil
}

func (f *fakeUploader) UploadDir(_ context.Context, dir, ds, prefix string, o artifacts.UploadOptions) error {
	if f.dirs == nil {
		f.dirs = map[string]string{}
	}
	f.dirs[prefix] = dir
	return nil
}

func (f *fakeUploader) UploadFile(_ context.Context, file, ds, p string) error {
	if f.files == nil {
		f.files = map[string]string{}
	}
	f.files[p] = file
	return nil
}

const jobYAML = `$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: python train.py --data ${{inputs.training_data}} --table ${{inputs.table}} --lr ${{inputs.lr}}
code: ./src
environment: file:./env/env.yml
compute: azureml:k8s
inputs:
  training_data:
    type: uri_folder
    path: ./data
  table:
    type: uri_file
    path: data.csv
  lr: 0.01
  registered:
    type: uri_folder
    path: azureml:iris:1
`

func jobDir(t *testing.T) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"job.yml":          jobYAML,
		"src/train.py":     "print('hi')\n",
		"src/.amlignore":   "*.bin\n",
		"src/weights.bin":  "ignored",
		"data/a.csv":       "1,2\n",
		"data.csv":         "x,y\n",
		"env/env.yml":      "name: myenv\nversion: 3\nimage: python:3.11\nconda_file: conda.yml\n",
		"env/conda.yml":    "name: train\ndependencies:\n  - python=3.11\n  - pip:\n    - scikit-learn\n",
		"bad/job.yml":      "command: echo\n  environment: x\n",
		"unknown/job.yml":  "command: echo\nenvironment: azureml:e:1\ncomand: typo\n",
		"codefile/job.yml": "command: echo\nenvironment: azureml:e:1\ncode: ./run.py\n",
		"codefile/run.py":  "",
	})
	return dir
}

func scanDigest(t *testing.T, dir string, o artifacts.UploadOptions) string {
	t.Helper()
	files, err := artifacts.Scan(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return artifacts.TreeDigest(files)
}

// A job's local code, inputs and environment file become datastore URIs
// named by their content, and the environment file is inlined.
func TestPrepareJobResolvesLocalPaths(t *testing.T) {
	dir := jobDir(t)
	pj, err := prepareJob(filepath.Join(dir, "job.yml"), nil, jobOverrides{}, "/home/me/project")
	if err != nil {
		t.Fatal(err)
	}
	s := pj.spec
	codeDigest := scanDigest(t, filepath.Join(dir, "src"), artifacts.UploadOptions{Ignore: true})
	if want := "azureml://datastores/workspaceblobstore/paths/LocalUpload/" + codeDigest + "/src/"; s.Code != want {
		t.Errorf("code = %q, want %q", s.Code, want)
	}
	dataDigest := scanDigest(t, filepath.Join(dir, "data"), artifacts.UploadOptions{})
	if want := "azureml://datastores/workspaceblobstore/paths/LocalUpload/" + dataDigest + "/data/"; s.Inputs["training_data"].Path != want {
		t.Errorf("inputs.training_data.path = %q, want %q", s.Inputs["training_data"].Path, want)
	}
	if p := s.Inputs["table"].Path; !strings.HasPrefix(p, "azureml://datastores/workspaceblobstore/paths/LocalUpload/") || !strings.HasSuffix(p, "/data.csv") {
		t.Errorf("inputs.table.path = %q, want LocalUpload/<digest>/data.csv", p)
	}
	if p := s.Inputs["registered"].Path; p != "azureml:iris:1" {
		t.Errorf("a data asset input was changed to %q", p)
	}
	if string(s.Inputs["lr"].Value) != "0.01" {
		t.Errorf("literal input lr = %s, want 0.01 as written", s.Inputs["lr"].Value)
	}
	env := s.Environment
	if env == nil || env.Inline == nil {
		t.Fatalf("environment = %+v, want the file inlined", env)
	}
	if env.Inline.Name != "" || env.Inline.Version != "" || env.Inline.Image != "python:3.11" {
		t.Errorf("inlined environment = %+v, want image python:3.11 without name and version", env.Inline)
	}
	var conda map[string]any
	if err := json.Unmarshal(env.Inline.CondaFile, &conda); err != nil || conda["name"] != "train" {
		t.Errorf("conda_file = %s (%v), want the conda file as an object", env.Inline.CondaFile, err)
	}
	if s.ExperimentName != "project" {
		t.Errorf("experiment_name = %q, want the current folder's name", s.ExperimentName)
	}
	if s.Name == "" {
		t.Error("no name generated")
	}

	up := &fakeUploader{present: map[string]bool{"LocalUpload/" + codeDigest + "/src/": true}}
	var progress bytes.Buffer
	if err := pj.res.upload(context.Background(), up, &progress); err != nil {
		t.Fatal(err)
	}
	if _, sent := up.dirs["LocalUpload/"+codeDigest+"/src/"]; sent {
		t.Error("code was uploaded again although the datastore has it")
	}
	if got := up.dirs["LocalUpload/"+dataDigest+"/data/"]; got != filepath.Join(dir, "data") {
		t.Errorf("data folder uploaded from %q, want %q (uploads: %v)", got, filepath.Join(dir, "data"), up.dirs)
	}
	if len(up.files) != 1 {
		t.Errorf("file uploads %v, want data.csv", up.files)
	}
	for _, want := range []string{"code unchanged, reusing its upload", "Uploading inputs.training_data.path (1 file, 4 B)", "Uploading inputs.table.path (1 file"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress:\n%s\nwant %q", progress.String(), want)
		}
	}
}

// Flags and --set change the document before its paths are resolved.
func TestPrepareJobSetsAndFlags(t *testing.T) {
	dir := jobDir(t)
	writeTree(t, dir, map[string]string{"other/x.py": "x"})
	pj, err := prepareJob(filepath.Join(dir, "job.yml"),
		[]string{"code=./other", "inputs.lr=0.5", "experiment_name=fromset", "display_name=a: b"},
		jobOverrides{name: "my_job", description: "d"}, "/somewhere")
	if err != nil {
		t.Fatal(err)
	}
	s := pj.spec
	if !strings.HasSuffix(s.Code, "/other/") {
		t.Errorf("code = %q, want the --set folder", s.Code)
	}
	if string(s.Inputs["lr"].Value) != "0.5" || s.Name != "my_job" || s.Description != "d" || s.ExperimentName != "fromset" || s.DisplayName != "a: b" {
		t.Errorf("spec = %+v", s)
	}
	pj, err = prepareJob(filepath.Join(dir, "job.yml"), nil, jobOverrides{experiment: "flag"}, "/somewhere")
	if err != nil || pj.spec.ExperimentName != "flag" {
		t.Errorf("--experiment-name: %v %v", pj, err)
	}
}

// Bad documents are refused with the field and the line, before anything
// is uploaded (prepareJob has nothing to upload with).
func TestPrepareJobErrors(t *testing.T) {
	dir := jobDir(t)
	writeTree(t, dir, map[string]string{
		"sweep.yml":    "type: sweep\ntrial:\n  command: echo\n",
		"pipeline.yml": "type: pipeline\njobs: {}\n",
		"nocode.yml":   "command: echo\nenvironment: azureml:e:1\ncode: ./missing\n",
		"filein.yml":   "command: echo\nenvironment: azureml:e:1\ninputs:\n  d:\n    type: uri_file\n    path: ./data\n",
		"dirin.yml":    "command: echo\nenvironment: azureml:e:1\ninputs:\n  d:\n    path: ./data.csv\n",
		"noenv.yml":    "command: echo\nenvironment: file:./nope.yml\n",
		"nocmd.yml":    "environment: azureml:e:1\n",
		"mltable.yml":  "command: echo\nenvironment: azureml:e:1\ninputs:\n  d:\n    type: mltable\n    path: ./data\n",
	})
	cases := []struct {
		file string
		sets []string
		want []string
	}{
		{"missing.yml", nil, []string{"--file", "missing.yml: no such file"}},
		{"bad/job.yml", nil, []string{"bad/job.yml", "line 2"}},
		{"unknown/job.yml", nil, []string{"line 3", `unknown field "comand"`}},
		{"sweep.yml", nil, []string{"line 1", "sweep jobs are not supported yet"}},
		{"pipeline.yml", nil, []string{"pipeline jobs are not supported yet"}},
		{"codefile/job.yml", nil, []string{"line 3", "code:", "run.py is a file", "give the folder"}},
		{"nocode.yml", nil, []string{"line 3", "missing does not exist"}},
		{"filein.yml", nil, []string{"inputs.d.path", "is a folder, but type is uri_file"}},
		{"dirin.yml", nil, []string{"inputs.d.path", "is a file, but type is uri_folder"}},
		{"noenv.yml", nil, []string{"line 2", "nope.yml: no such file"}},
		{"nocmd.yml", nil, []string{"command: required"}},
		{"mltable.yml", nil, []string{"holds no MLTable file"}},
		{"job.yml", []string{"resources.instance_count=many"}, []string{"resources.instance_count", "whole number"}},
		{"job.yml", []string{"nofield"}, []string{"nofield"}},
	}
	for _, tc := range cases {
		_, err := prepareJob(filepath.Join(dir, tc.file), tc.sets, jobOverrides{}, dir)
		if err == nil {
			t.Errorf("%s %v: accepted", tc.file, tc.sets)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %v: %v\nwant %q", tc.file, tc.sets, err, w)
			}
		}
	}
}

// A code folder above Azure ML's snapshot limit is refused before any
// byte of it is read, naming the limit and the way out.
func TestCodeAboveTheLimit(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"job.yml": "command: echo\nenvironment: azureml:e:1\ncode: src\n", "src/a.py": ""})
	f, err := os.Create(filepath.Join(dir, "src", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: the size is what counts, and no byte is read.
	if err := f.Truncate(maxCodeBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = prepareJob(filepath.Join(dir, "job.yml"), nil, jobOverrides{}, dir)
	for _, w := range []string{"line 3", "big.bin", ".amlignore", "300 MiB is Azure ML's limit"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("code above 300 MiB: %v\nwant %q", err, w)
		}
	}
}

func TestLocalPath(t *testing.T) {
	cases := map[string]bool{
		"./src": true, "src": true, "/abs/dir": true, "file:./env.yml": true, "../up": true,
		"azureml:iris:1": false, "azureml:iris@latest": false, "azureml://datastores/x/paths/y": false,
		"https://example.com/a.csv": false, "wasbs://c@acct.blob.core.windows.net/p": false,
		"abfss://fs@acct.dfs.core.windows.net/p": false, "AzureML:x:1": false,
	}
	for p, want := range cases {
		if _, got := localPath(p); got != want {
			t.Errorf("localPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// The same folder named twice is uploaded once.
func TestSameFolderUploadedOnce(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"job.yml": "command: echo\nenvironment: azureml:e:1\ncode: src\ninputs:\n  a: {path: src}\n  b: {path: ./src/}\n",
		"src/a":   "1",
	})
	pj, err := prepareJob(filepath.Join(dir, "job.yml"), nil, jobOverrides{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(pj.res.uploads) != 1 {
		// Without an ignore file the code and the inputs have the same
		// content, hence the same path.
		t.Errorf("uploads %+v, want 1", pj.res.uploads)
	}
	if pj.spec.Inputs["a"].Path != pj.spec.Inputs["b"].Path {
		t.Errorf("one folder, two URIs: %q %q", pj.spec.Inputs["a"].Path, pj.spec.Inputs["b"].Path)
	}
}
