// Package output prints resources the way every outpost command does:
// -o table (default), json, yaml or tsv, optionally narrowed by a JMESPath
// --query, as the az CLI does.
//
// The tsv format follows az: a scalar is one line (strings raw, booleans
// True/False, numbers as written, null empty); a list is one line per
// element; an object is one line of its scalar values, tab-separated, in the
// order its keys have in the JSON document (nested objects and lists are
// skipped); a list of lists is one line per inner list. Scripts rely on that
// column order, so objects are decoded keeping it: the order of Go struct
// fields, or of a --query's multiselect hash ({a: x, b: y}); maps and
// objects a query function builds come in key order.
//
// With a --query, the table format prints scalars and lists of scalars as
// tsv, an object as a KEY VALUE table (nested values as compact JSON), and a
// list of objects as a table with a column (its header the key in upper
// case) per key that holds no object or list in any of them.
package output

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	jmespath "github.com/jmespath-community/go-jmespath"
	"github.com/jmespath-community/go-jmespath/pkg/parsing"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/plainjson"
)

// Formats lists the values -o accepts.
var Formats = []string{"table", "json", "yaml", "tsv"}

// Options are the output flags of a command: -o and --query.
type Options struct {
	Format string // table when empty
	Query  string // a JMESPath expression applied to the JSON form
}

// Validate checks the flags before any work is done.
func (o Options) Validate() error {
	if o.Format != "" && !slices.Contains(Formats, o.Format) {
		return fmt.Errorf("-o %q: unknown output format; use one of %s", o.Format, strings.Join(Formats, ", "))
	}
	if o.Query != "" {
		if _, err := compile(o.Query); err != nil {
			return err
		}
	}
	return nil
}

func compile(query string) (jmespath.JMESPath, error) {
	q, err := jmespath.Compile(query)
	if err != nil {
		var se jmespath.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("--query %q: %v\n%s", query, err, se.HighlightLocation())
		}
		return nil, fmt.Errorf("--query %q: %v", query, err)
	}
	return q, nil
}

// Table is a header and rows for the table format.
type Table struct {
	Header []string
	Rows   [][]string
}

// Print writes v in the format of o, after applying its query. table is
// called for the table format without a query only.
func Print(w io.Writer, o Options, v any, table func() Table) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Query == "" {
		return printPlain(w, o.Format, v, table)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// The interpreter compares and computes with float64 only, so numbers
	// are decoded as such for a query.
	doc, orders, err := decodeOrdered(data, false)
	if err != nil {
		return err
	}
	q, err := compile(o.Query)
	if err != nil {
		return err
	}
	res, err := q.Search(doc)
	if err != nil {
		return fmt.Errorf("--query %q: %v", o.Query, err)
	}
	ord := &orderer{docs: orders, hashes: hashKeys(o.Query)}
	switch o.Format {
	case "json":
		return writeJSON(w, ordered{res, ord})
	case "yaml":
		return writeYAML(w, res)
	case "tsv":
		return writeTSV(w, res, ord)
	default:
		return writeQueryTable(w, res, ord)
	}
}

func printPlain(w io.Writer, format string, v any, table func() Table) error {
	switch format {
	case "json":
		return writeJSON(w, v)
	case "yaml":
		return writeYAML(w, v)
	case "tsv":
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		doc, orders, err := decodeOrdered(data, true)
		if err != nil {
			return err
		}
		return writeTSV(w, doc, &orderer{docs: orders})
	default:
		t := table()
		return writeTable(w, t.Header, t.Rows)
	}
}

func writeJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Commands hold shell text ("a && b"); \u0026 would obscure it.
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeYAML(w io.Writer, v any) error {
	data, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// decodeOrdered decodes JSON into the generic form (map[string]any,
// []any, string, bool, nil and json.Number or float64) and records the key
// order of every object it makes, by the object's identity.
func decodeOrdered(data []byte, useNumber bool) (any, map[uintptr][]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if useNumber {
		dec.UseNumber()
	}
	orders := map[uintptr][]string{}
	v, err := decodeValue(dec, orders)
	if err != nil {
		return nil, nil, err
	}
	return v, orders, nil
}

func decodeValue(dec *json.Decoder, orders map[uintptr][]string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			var keys []string
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key %v is not a string", kt)
				}
				v, err := decodeValue(dec, orders)
				if err != nil {
					return nil, err
				}
				if _, dup := m[k]; !dup {
					keys = append(keys, k)
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			orders[mapID(m)] = keys
			return m, nil
		case '[':
			l := []any{}
			for dec.More() {
				v, err := decodeValue(dec, orders)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return tok, nil
	}
}

func mapID(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }

// hashKeys lists the key lists of the query's multiselect hashes, which
// make new objects whose order the user wrote.
func hashKeys(query string) [][]string {
	ast, err := jmespath.NewParser().Parse(query)
	if err != nil {
		return nil
	}
	var out [][]string
	var walk func(n parsing.ASTNode)
	walk = func(n parsing.ASTNode) {
		if n.NodeType == parsing.ASTMultiSelectHash {
			var keys []string
			for _, c := range n.Children {
				if k, ok := c.Value.(string); ok {
					keys = append(keys, k)
				}
			}
			out = append(out, keys)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(ast)
	return out
}

// orderer gives the keys of an object in document order.
type orderer struct {
	docs   map[uintptr][]string
	hashes [][]string
}

func (o *orderer) keys(m map[string]any) []string {
	if o != nil {
		if ks, ok := o.docs[mapID(m)]; ok && len(ks) == len(m) {
			return ks
		}
		for _, ks := range o.hashes {
			if sameKeys(ks, m) {
				return ks
			}
		}
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sameKeys(ks []string, m map[string]any) bool {
	if len(ks) != len(m) {
		return false
	}
	for _, k := range ks {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

// ordered marshals a generic value with its objects' keys in order.
type ordered struct {
	v   any
	ord *orderer
}

func (o ordered) MarshalJSON() ([]byte, error) {
	switch t := o.v.(type) {
	case map[string]any:
		var b bytes.Buffer
		b.WriteByte('{')
		for i, k := range o.ord.keys(t) {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, err := json.Marshal(k)
			if err != nil {
				return nil, err
			}
			b.Write(kb)
			b.WriteByte(':')
			vb, err := ordered{t[k], o.ord}.MarshalJSON()
			if err != nil {
				return nil, err
			}
			b.Write(vb)
		}
		b.WriteByte('}')
		return b.Bytes(), nil
	case []any:
		l := make([]ordered, len(t))
		for i, e := range t {
			l[i] = ordered{e, o.ord}
		}
		return json.Marshal(l)
	default:
		return plainjson.Marshal(t)
	}
}

// scalar is the text of a scalar and whether v is one (null is).
func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case nil:
		return "", true
	case string:
		return t, true
	case bool:
		if t {
			return "True", true
		}
		return "False", true
	case json.Number:
		return t.String(), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case map[string]any, []any:
		return "", false
	}
	return fmt.Sprint(v), true
}

// fields are the scalar values of an object (in key order) or a list.
func fields(v any, ord *orderer) []string {
	var out []string
	switch t := v.(type) {
	case map[string]any:
		for _, k := range ord.keys(t) {
			if s, ok := scalar(t[k]); ok {
				out = append(out, s)
			}
		}
	case []any:
		for _, e := range t {
			if s, ok := scalar(e); ok {
				out = append(out, s)
			}
		}
	default:
		s, _ := scalar(v)
		out = append(out, s)
	}
	return out
}

func tsvRows(v any, ord *orderer) [][]string {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		rows := make([][]string, 0, len(t))
		for _, e := range t {
			rows = append(rows, fields(e, ord))
		}
		return rows
	default:
		return [][]string{fields(v, ord)}
	}
}

func writeTSV(w io.Writer, v any, ord *orderer) error {
	var b bytes.Buffer
	for _, r := range tsvRows(v, ord) {
		b.WriteString(strings.Join(r, "\t"))
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeQueryTable(w io.Writer, v any, ord *orderer) error {
	switch t := v.(type) {
	case map[string]any:
		rows := [][]string{}
		for _, k := range ord.keys(t) {
			s, ok := scalar(t[k])
			if !ok {
				b, err := json.Marshal(ordered{t[k], ord})
				if err != nil {
					return err
				}
				s = string(b)
			}
			rows = append(rows, []string{k, s})
		}
		return writeTable(w, []string{"KEY", "VALUE"}, rows)
	case []any:
		if len(t) > 0 && allObjects(t) {
			return writeObjectsTable(w, t, ord)
		}
		if allScalars(t) {
			return writeTSV(w, v, ord)
		}
		return writeTable(w, nil, tsvRows(v, ord))
	default:
		return writeTSV(w, v, ord)
	}
}

func allObjects(l []any) bool {
	for _, e := range l {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}

func allScalars(l []any) bool {
	for _, e := range l {
		if _, ok := scalar(e); !ok {
			return false
		}
	}
	return true
}

// writeObjectsTable has a column per key that is never an object or a
// list (null is no help deciding), in the order the keys first appear.
func writeObjectsTable(w io.Writer, l []any, ord *orderer) error {
	var keys []string
	seen, nested := map[string]bool{}, map[string]bool{}
	for _, e := range l {
		m := e.(map[string]any)
		for _, k := range ord.keys(m) {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
			if _, ok := scalar(m[k]); !ok {
				nested[k] = true
			}
		}
	}
	var cols []string
	for _, k := range keys {
		if !nested[k] {
			cols = append(cols, k)
		}
	}
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = strings.ToUpper(c)
	}
	rows := make([][]string, 0, len(l))
	for _, e := range l {
		m := e.(map[string]any)
		r := make([]string, len(cols))
		for i, c := range cols {
			if s, ok := scalar(m[c]); ok {
				r[i] = s
			}
		}
		rows = append(rows, r)
	}
	return writeTable(w, header, rows)
}
