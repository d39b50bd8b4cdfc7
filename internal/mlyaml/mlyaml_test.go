package mlyaml

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const sklearnIris = `$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
code: src
command: >-
  python main.py
  --data ${{inputs.iris}}
  --C ${{inputs.C}}
inputs:
  iris:
    type: uri_folder
    path: ./data
  C: 1.0
  max_iter: 200
  shuffle: yes
  quoted: "yes"
  when: 2024-01-01
outputs:
  model:
  other:
    type: uri_folder
environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
compute: azureml:local-compute
resources:
  instance_type: defaultinstancetype
tags:
  big: 0x1F
  under: 1_000
  half: .5
list:
  - a: 1
  - a: 2
`

func load(t *testing.T, doc string) *Doc {
	t.Helper()
	d, err := Load("jobs/job.yml", []byte(doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return d
}

func TestJSON(t *testing.T) {
	d := load(t, sklearnIris)
	got, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"$schema":"https://azuremlschemas.azureedge.net/latest/commandJob.schema.json","code":"src",` +
		`"command":"python main.py --data ${{inputs.iris}} --C ${{inputs.C}}",` +
		`"inputs":{"iris":{"type":"uri_folder","path":"./data"},"C":1.0,"max_iter":200,"shuffle":true,"quoted":"yes","when":"2024-01-01"},` +
		`"outputs":{"model":null,"other":{"type":"uri_folder"}},` +
		`"environment":"azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest","compute":"azureml:local-compute",` +
		`"resources":{"instance_type":"defaultinstancetype"},"tags":{"big":31,"under":1000,"half":0.5},"list":[{"a":1},{"a":2}]}`
	if string(got) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", got, want)
	}
	if d.Dir() != "jobs" {
		t.Errorf("Dir = %q", d.Dir())
	}
}

func TestJSONAnchorsAndMerge(t *testing.T) {
	d := load(t, "base: &b\n  type: uri_folder\n  mode: download\ninputs:\n  x:\n    <<: *b\n    mode: ro_mount\n  y: *b\n")
	got, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"base":{"type":"uri_folder","mode":"download"},"inputs":{"x":{"mode":"ro_mount","type":"uri_folder"},"y":{"type":"uri_folder","mode":"download"}}}`
	if string(got) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"syntax error with a line", "command: x\n  bad: indent\n", "jobs/job.yml: line 2: mapping values are not allowed in this context"},
		{"syntax error on the first line", "a: b: c\n", "jobs/job.yml: line 1: mapping values are not allowed in this context"},
		{"tab", "inputs:\n\t- x\n", "jobs/job.yml: line 2: found character that cannot start any token"},
		{"duplicate key", "command: a\ninputs:\n  x: 1\n  x: 2\n", `jobs/job.yml: line 4: duplicate key "x" (first at line 3)`},
		{"duplicate top-level key", "command: a\ncommand: b\n", `jobs/job.yml: line 2: duplicate key "command" (first at line 1)`},
		{"list document", "- a\n- b\n", "jobs/job.yml: line 1: the document must be a mapping of fields (field: value), not a list"},
		{"scalar document", "hello\n", `jobs/job.yml: line 1: the document must be a mapping of fields (field: value), not the value "hello"`},
		{"empty", "", "jobs/job.yml: the file is empty"},
		{"only a comment", "# nothing\n", "jobs/job.yml: the file is empty"},
		{"two documents", "a: 1\n---\nb: 2\n", "jobs/job.yml: line 2: a second YAML document (---): the file must hold one"},
	}
	for _, c := range cases {
		_, err := Load("jobs/job.yml", []byte(c.doc))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestJSONErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"number key", "tags:\n  2024: x\n", "jobs/job.yml: line 2: key 2024 is not a string"},
		{"boolean key", "true: x\n", "jobs/job.yml: line 1: key true is not a string"},
		{"infinity", "inputs:\n  x: .inf\n", "jobs/job.yml: line 2: .inf is not a number JSON can hold"},
	}
	for _, c := range cases {
		d := load(t, c.doc)
		_, err := d.JSON()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestSet(t *testing.T) {
	cases := []struct {
		name  string
		exprs []string
		want  map[string]string // path -> JSON of the value after
	}{
		{"string", []string{"display_name=my run"}, map[string]string{"display_name": `"my run"`}},
		{"new tag", []string{"tags.k=v"}, map[string]string{"tags.k": `"v"`, "tags.big": "31"}},
		{"number", []string{"resources.instance_count=2"}, map[string]string{"resources.instance_count": "2", "resources.instance_type": `"defaultinstancetype"`}},
		{"float as written", []string{"inputs.C=0.50"}, map[string]string{"inputs.C": "0.50"}},
		{"bool", []string{"inputs.shuffle=false"}, map[string]string{"inputs.shuffle": "false"}},
		{"yes stays text", []string{"inputs.shuffle=yes"}, map[string]string{"inputs.shuffle": `"yes"`}},
		{"null", []string{"compute=null"}, map[string]string{"compute": "null"}},
		{"asset ref", []string{"inputs.iris.path=azureml:iris:1"}, map[string]string{"inputs.iris.path": `"azureml:iris:1"`, "inputs.iris.type": `"uri_folder"`}},
		{"empty", []string{"description="}, map[string]string{"description": `""`}},
		{"value with = and #", []string{"command=python a.py --x=1 # note"}, map[string]string{"command": `"python a.py --x=1 # note"`}},
		{"value that looks like a mapping", []string{"command=echo a: b"}, map[string]string{"command": `"echo a: b"`}},
		{"shell test", []string{"command=[ -f x ] && run"}, map[string]string{"command": `"[ -f x ] && run"`}},
		{"quoted", []string{`tags.v="2"`}, map[string]string{"tags.v": `"2"`}},
		{"JSON object", []string{`environment={"image": "python:3.11"}`}, map[string]string{"environment": `{"image":"python:3.11"}`}},
		{"flow list", []string{`tags.l=[1, two]`}, map[string]string{"tags.l": `[1,"two"]`}},
		{"missing mappings made", []string{"distribution.type=pytorch", "limits.timeout=60"},
			map[string]string{"distribution": `{"type":"pytorch"}`, "limits.timeout": "60"}},
		{"below null", []string{"outputs.model.mode=upload"}, map[string]string{"outputs.model": `{"mode":"upload"}`}},
		{"list element", []string{"list[1].a=3", "list[0].b=x"}, map[string]string{"list": `[{"a":1,"b":"x"},{"a":3}]`}},
		{"replace an object", []string{"inputs.iris={type: uri_file, path: azureml:f:1}"}, map[string]string{"inputs.iris.type": `"uri_file"`, "inputs.iris.path": `"azureml:f:1"`}},
	}
	for _, c := range cases {
		d := load(t, sklearnIris)
		for _, e := range c.exprs {
			if err := d.Set(e); err != nil {
				t.Errorf("%s: Set(%q): %v", c.name, e, err)
			}
		}
		for path, want := range c.want {
			v, ok := d.Get(path)
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			err := enc.Encode(v)
			if got := strings.TrimSpace(b.String()); !ok || err != nil || got != want {
				t.Errorf("%s: %s = %s (%v, %v), want %s", c.name, path, b.String(), ok, err, want)
			}
		}
		if _, err := d.JSON(); err != nil {
			t.Errorf("%s: JSON: %v", c.name, err)
		}
	}
}

func TestSetErrors(t *testing.T) {
	cases := []struct{ expr, want string }{
		{"resources", `--set "resources": no '='`},
		{"=v", `--set "=v": the path must start with a field name`},
		{"a..b=v", `--set "a..b=v": empty field name`},
		{"a.=v", `--set "a.=v": "a." ends with a dot`},
		{"list[x].a=v", `--set "list[x].a=v": "[x]" is not a list index`},
		{"list[-1]=v", `is not a list index`},
		{"list[0=v", `unclosed [`},
		{"list]=v", `unexpected ']'`},
		{"list[5].a=v", `--set "list[5].a=v": list has 2 elements: there is no [5]`},
		{"code.x=v", `--set "code.x=v": code is the value "src", not a mapping`},
		{"tags[0]=v", `--set "tags[0]=v": tags is a mapping, not a list`},
	}
	for _, c := range cases {
		d := load(t, sklearnIris)
		err := d.Set(c.expr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.expr, err, c.want)
		}
	}
}

func TestSetThroughAlias(t *testing.T) {
	d := load(t, "base: &b\n  type: uri_folder\ninputs:\n  x: *b\n")
	if err := d.Set("inputs.x.path=azureml:d:1"); err != nil {
		t.Fatal(err)
	}
	got, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"base":{"type":"uri_folder"},"inputs":{"x":{"type":"uri_folder","path":"azureml:d:1"}}}`; string(got) != want {
		t.Errorf("%s, want %s (the anchor unchanged)", got, want)
	}
}

func TestLineAndGet(t *testing.T) {
	d := load(t, sklearnIris)
	cases := map[string]int{
		"code":                      2,
		"command":                   3,
		"inputs":                    7,
		"inputs.iris.path":          10,
		"inputs.C":                  11,
		"outputs.model":             17,
		"list[1]":                   30,
		"list[1].a":                 30,
		"nope":                      0,
		"inputs.nope":               0,
		"list[7]":                   0,
		"code.x":                    0,
		"resources.instance_type.x": 0,
		"bad..path":                 0,
	}
	for path, want := range cases {
		if got := d.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
	if v, ok := d.Get("code"); !ok || v != "src" {
		t.Errorf("Get(code) = %v %v", v, ok)
	}
	if v, ok := d.Get("inputs.iris"); !ok || fmt.Sprint(v) != "map[path:./data type:uri_folder]" {
		t.Errorf("Get(inputs.iris) = %v %v", v, ok)
	}
	if v, ok := d.Get("inputs.max_iter"); !ok || v != json.Number("200") {
		t.Errorf("Get(inputs.max_iter) = %#v %v", v, ok)
	}
	if _, ok := d.Get("inputs.nope"); ok {
		t.Errorf("Get(inputs.nope) found")
	}
	if err := d.Set("inputs.iris.path=azureml:iris:1"); err != nil {
		t.Fatal(err)
	}
	if got := d.Line("inputs.iris.path"); got != 0 {
		t.Errorf("after --set, Line = %d, want 0", got)
	}
	if got := d.Line("inputs.iris.type"); got != 9 {
		t.Errorf("a sibling of a set value: Line = %d, want 9", got)
	}
}

// fieldErr stands for jobspec.FieldError, which this package must not
// need to import.
type fieldErr struct{ path, msg string }

func (e *fieldErr) Error() string     { return e.path + ": " + e.msg }
func (e *fieldErr) FieldPath() string { return e.path }

func TestExplain(t *testing.T) {
	d := load(t, sklearnIris)
	if err := d.Set("resources.instance_count=2"); err != nil {
		t.Fatal(err)
	}
	plain := errors.New("compute not found")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"a field", &fieldErr{"inputs.iris.path", "local path ./data must be uploaded"}, "jobs/job.yml, line 10: inputs.iris.path: local path ./data must be uploaded"},
		{"wrapped", fmt.Errorf("submit: %w", &fieldErr{"inputs.C", "bad"}), "jobs/job.yml, line 11: submit: inputs.C: bad"},
		{"absent field", &fieldErr{"command2", "unknown"}, "command2: unknown"},
		{"set by --set", &fieldErr{"resources.instance_count", "too many"}, "resources.instance_count: too many"},
		{"not a field error", plain, "compute not found"},
		{"joined", errors.Join(&fieldErr{"code", "a"}, plain, &fieldErr{"outputs.model", "b"}),
			"jobs/job.yml, line 2: code: a\ncompute not found\njobs/job.yml, line 17: outputs.model: b"},
	}
	for _, c := range cases {
		got := d.Explain(c.err)
		if c.err == nil {
			if got != nil {
				t.Errorf("%s: %v", c.name, got)
			}
			continue
		}
		if got.Error() != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		var fp interface{ FieldPath() string }
		if errors.As(c.err, &fp) && !errors.As(got, &fp) {
			t.Errorf("%s: the explained error lost its field", c.name)
		}
	}
	if d.Explain(plain) != plain {
		t.Errorf("a plain error was replaced")
	}
}
