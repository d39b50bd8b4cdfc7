package output

import (
	"bytes"
	"strings"
	"testing"
)

// job has fields whose JSON order differs from alphabetical, so tests see
// that tsv keeps the document's order.
type job struct {
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	Count     int               `json:"count"`
	Ratio     float64           `json:"ratio"`
	Done      bool              `json:"done"`
	Missing   *string           `json:"missing"`
	Tags      map[string]string `json:"tags,omitempty"`
	Resources *res              `json:"resources,omitempty"`
	Command   string            `json:"command,omitempty"`
}

type res struct {
	InstanceType  string `json:"instance_type"`
	InstanceCount int    `json:"instance_count"`
}

func TestPrint(t *testing.T) {
	j1 := job{Name: "quirky_hat", Status: "Running", Count: 2, Ratio: 0.5, Done: false,
		Tags: map[string]string{"b": "2", "a": "1"}, Resources: &res{"cpu", 1}, Command: "a && b"}
	j2 := job{Name: "calm_cup", Status: "Completed", Count: 10000000000, Ratio: 1, Done: true}
	list := []job{j1, j2}
	table := func() Table {
		return Table{Header: []string{"NAME", "STATUS"}, Rows: [][]string{{"quirky_hat", "Running"}, {"calm_cup", "Completed"}}}
	}
	cases := []struct {
		name string
		o    Options
		v    any
		want string
	}{
		{"table", Options{Format: "table"}, list, "NAME         STATUS\nquirky_hat   Running\ncalm_cup     Completed\n"},
		{"default is table", Options{}, list, "NAME         STATUS\nquirky_hat   Running\ncalm_cup     Completed\n"},
		{"json keeps shell text", Options{Format: "json"}, map[string]string{"command": "a && b <x>"}, "{\n  \"command\": \"a && b <x>\"\n}\n"},
		{"yaml", Options{Format: "yaml"}, map[string]string{"name": "c1"}, "name: c1\n"},
		{"tsv object in document order, nested skipped, null empty", Options{Format: "tsv"}, j1,
			"quirky_hat\tRunning\t2\t0.5\tFalse\t\ta && b\n"},
		{"tsv list one line each, big numbers as written", Options{Format: "tsv"}, list,
			"quirky_hat\tRunning\t2\t0.5\tFalse\t\ta && b\ncalm_cup\tCompleted\t10000000000\t1\tTrue\t\n"},
		{"tsv scalar", Options{Format: "tsv"}, "hello world", "hello world\n"},
		{"tsv list of scalars", Options{Format: "tsv"}, []any{"a", 1, true, nil}, "a\n1\nTrue\n\n"},
		{"tsv null prints nothing", Options{Format: "tsv"}, nil, ""},
		{"tsv map keys sorted as JSON has them", Options{Format: "tsv"}, map[string]int{"b": 2, "a": 1}, "1\t2\n"},

		{"query scalar tsv", Options{Format: "tsv", Query: "name"}, j1, "quirky_hat\n"},
		{"query bool tsv", Options{Format: "tsv", Query: "done"}, j2, "True\n"},
		{"query integer float tsv", Options{Format: "tsv", Query: "count"}, j2, "10000000000\n"},
		{"query missing tsv", Options{Format: "tsv", Query: "nothing"}, j1, ""},
		{"query projection tsv", Options{Format: "tsv", Query: "[].name"}, list, "quirky_hat\ncalm_cup\n"},
		{"query list of lists tsv", Options{Format: "tsv", Query: "[].[status, name]"}, list, "Running\tquirky_hat\nCompleted\tcalm_cup\n"},
		{"query hash keeps expression order", Options{Format: "tsv", Query: "{s: status, n: name, c: count}"}, j1, "Running\tquirky_hat\t2\n"},
		{"query subobject keeps document order", Options{Format: "tsv", Query: "resources"}, j1, "cpu\t1\n"},
		{"query filter", Options{Format: "tsv", Query: "[?count > `5`].name"}, list, "calm_cup\n"},
		{"query json", Options{Format: "json", Query: "{status: status, name: name}"}, j1, "{\n  \"status\": \"Running\",\n  \"name\": \"quirky_hat\"\n}\n"},
		{"query json document order", Options{Format: "json", Query: "resources"}, j1, "{\n  \"instance_type\": \"cpu\",\n  \"instance_count\": 1\n}\n"},
		{"query json number", Options{Format: "json", Query: "ratio"}, j1, "0.5\n"},
		{"query yaml", Options{Format: "yaml", Query: "tags"}, j1, "a: \"1\"\nb: \"2\"\n"},
		{"query table scalar", Options{Query: "status"}, j1, "Running\n"},
		{"query table list of scalars", Options{Query: "[].status"}, list, "Running\nCompleted\n"},
		{"query table object", Options{Query: "{name: name, resources: resources}"}, j1,
			"KEY         VALUE\nname        quirky_hat\nresources   {\"instance_type\":\"cpu\",\"instance_count\":1}\n"},
		{"query table list of objects", Options{Query: "[].{name: name, status: status, tags: tags}"}, list,
			"NAME         STATUS\nquirky_hat   Running\ncalm_cup     Completed\n"},
		{"query table list of lists", Options{Query: "[].[name, status]"}, list,
			"quirky_hat   Running\ncalm_cup     Completed\n"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		if err := Print(&b, c.o, c.v, table); err != nil || b.String() != c.want {
			t.Errorf("%s: %q (%v), want %q", c.name, b.String(), err, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		o    Options
		want string // "" for valid
	}{
		{Options{}, ""},
		{Options{Format: "tsv", Query: "[].{n: name}"}, ""},
		{Options{Format: "xml"}, `-o "xml": unknown output format; use one of table, json, yaml, tsv`},
		{Options{Format: "json", Query: "name["}, `--query "name[": SyntaxError:`},
		{Options{Query: "{a: }"}, `--query "{a: }"`},
	}
	for _, c := range cases {
		err := c.o.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.o, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
		// Print refuses what Validate refuses, before printing anything.
		var b bytes.Buffer
		if perr := Print(&b, c.o, map[string]string{"name": "x"}, func() Table { return Table{} }); c.want != "" && (perr == nil || b.Len() > 0) {
			t.Errorf("Print %+v: %v, printed %q", c.o, perr, b.String())
		}
	}
}

func TestQueryRuntimeError(t *testing.T) {
	err := Print(&bytes.Buffer{}, Options{Format: "json", Query: "length(count)"}, job{Count: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), `--query "length(count)"`) {
		t.Errorf("got %v", err)
	}
}
