package output

import (
	"bytes"
	"strings"
	"testing"
)

func TestPrint(t *testing.T) {
	v := map[string]string{"name": "c1"}
	table := func() Table { return Table{Header: []string{"NAME", "STATE"}, Rows: [][]string{{"c1", "Connected"}}} }
	cases := map[string]string{
		"json":  "{\n  \"name\": \"c1\"\n}\n",
		"yaml":  "name: c1\n",
		"table": "NAME   STATE\nc1     Connected\n",
	}
	for format, want := range cases {
		var b bytes.Buffer
		if err := Print(&b, format, v, table); err != nil || b.String() != want {
			t.Errorf("-o %s: %q (%v), want %q", format, b.String(), err, want)
		}
	}
	if err := Print(&bytes.Buffer{}, "xml", v, table); err == nil || !strings.Contains(err.Error(), "use one of table, json, yaml") {
		t.Errorf("-o xml: %v", err)
	}
}
