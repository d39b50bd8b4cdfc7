// Package mlyaml reads the YAML files of the Azure ML CLI v2 as the az CLI
// does: one mapping per file, overridden by --set expressions, turned into
// JSON for the API, with the line of every field kept so that an error
// about a field can point at it.
//
// Scalars are read as PyYAML (which az uses) reads them where it matters
// to a job: unquoted yes/no/on/off are booleans, like true/false; numbers
// keep the text they were written with when it is valid JSON (C: 1.0 stays
// 1.0, which is how it reaches the command); timestamps and other scalars
// stay strings.
package mlyaml

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"outpost.dev/outpost/internal/plainjson"
)

// Doc is one YAML document, as read and then changed by --set.
type Doc struct {
	file string
	root *yaml.Node // a mapping
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// Load reads a YAML document. Errors name the file and the line.
func Load(file string, data []byte) (*Doc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: the file is empty: it must hold a mapping of fields (field: value)", file)
		}
		return nil, syntaxErr(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, syntaxErr(file, err)
	default:
		return nil, fmt.Errorf("%s: line %d: a second YAML document (---): the file must hold one", file, next.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("%s: the file is empty: it must hold a mapping of fields (field: value)", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: the document must be a mapping of fields (field: value), not %s", file, root.Line, kindName(root))
	}
	d := &Doc{file: file, root: root}
	if err := d.checkKeys(root, map[*yaml.Node]bool{}); err != nil {
		return nil, err
	}
	return d, nil
}

func syntaxErr(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s: line %s: %s", file, m[1], m[2])
	}
	// The parser leaves the line out when the problem is on the first.
	return fmt.Errorf("%s: line 1: %s", file, msg)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.ShortTag() == "!!null" {
		return "null"
	}
	return fmt.Sprintf("the value %q", n.Value)
}

// checkKeys refuses a key given twice in one mapping: PyYAML would keep
// the last silently, and the first would be lost without a word.
func (d *Doc) checkKeys(n *yaml.Node, seen map[*yaml.Node]bool) error {
	if seen[n] {
		return nil
	}
	seen[n] = true
	if n.Kind == yaml.MappingNode {
		first := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				continue // reported by JSON, which needs string keys
			}
			if l, dup := first[k.Value]; dup {
				return fmt.Errorf("%s: line %d: duplicate key %q (first at line %d)", d.file, k.Line, k.Value, l)
			}
			first[k.Value] = k.Line
		}
	}
	for _, c := range n.Content {
		if err := d.checkKeys(c, seen); err != nil {
			return err
		}
	}
	return nil
}

// Dir is the directory of the file: local paths in the document are
// relative to it.
func (d *Doc) Dir() string { return filepath.Dir(d.file) }

// File is the name the document was loaded with.
func (d *Doc) File() string { return d.file }

// JSON is the document as JSON, keys in document order.
func (d *Doc) JSON() ([]byte, error) {
	var b bytes.Buffer
	if err := d.writeJSON(&b, d.root, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// An alias can refer to a node holding that alias (a: &x [*x]); JSON of
// such a document never ends.
const maxDepth = 1000

func (d *Doc) writeJSON(b *bytes.Buffer, n *yaml.Node, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: line %d: nested too deeply (a recursive alias?)", d.file, n.Line)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return d.writeJSON(b, n.Alias, depth+1)
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			b.WriteString("null")
			return nil
		}
		return d.writeJSON(b, n.Content[0], depth+1)
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := d.writeJSON(b, c, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case yaml.MappingNode:
		pairs, err := d.pairs(n, depth)
		if err != nil {
			return err
		}
		b.WriteByte('{')
		for i, p := range pairs {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, err := plainjson.Marshal(p.key)
			if err != nil {
				return err
			}
			b.Write(kb)
			b.WriteByte(':')
			if err := d.writeJSON(b, p.value, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	}
	v, err := d.scalar(n)
	if err != nil {
		return err
	}
	b.WriteString(v)
	return nil
}

type pair struct {
	key      string
	keyNode  *yaml.Node
	value    *yaml.Node
	explicit bool
}

// pairs are a mapping's entries with merge keys (<<: *base) applied: the
// mapping's own keys win over merged ones, earlier merged mappings over
// later ones, as YAML says.
func (d *Doc) pairs(n *yaml.Node, depth int) ([]pair, error) {
	var own, merged []pair
	index := map[string]int{}
	add := func(list *[]pair, p pair) {
		if _, ok := index[p.key]; ok {
			return
		}
		index[p.key] = 1
		*list = append(*list, p)
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, fmt.Errorf("%s: line %d: key %s is not a string: field names are text (quote it: %q)", d.file, k.Line, keyText(k), keyText(k))
		}
		add(&own, pair{key: k.Value, keyNode: k, value: v, explicit: true})
	}
	for _, m := range merges {
		sources := []*yaml.Node{m}
		if deref(m).Kind == yaml.SequenceNode {
			sources = deref(m).Content
		}
		for _, s := range sources {
			s = deref(s)
			if s.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%s: line %d: a merge (<<) takes a mapping or a list of mappings, not %s", d.file, s.Line, kindName(s))
			}
			if depth > maxDepth {
				return nil, fmt.Errorf("%s: line %d: nested too deeply (a recursive alias?)", d.file, s.Line)
			}
			ps, err := d.pairs(s, depth+1)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				p.explicit = false
				add(&merged, p)
			}
		}
	}
	return append(own, merged...), nil
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && i < maxDepth; i++ {
		n = n.Alias
	}
	return n
}

func keyText(k *yaml.Node) string {
	if k.Kind == yaml.ScalarNode {
		return k.Value
	}
	return kindName(k)
}

// PyYAML's booleans beyond true and false (YAML 1.1).
var yaml11Bools = map[string]bool{
	"yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

var jsonNumberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// scalar is the JSON text of a scalar node.
func (d *Doc) scalar(n *yaml.Node) (string, error) {
	// Quoted text and an explicit !!str stay text.
	plain := n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
	switch n.ShortTag() {
	case "!!null":
		return "null", nil
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			return "", fmt.Errorf("%s: line %d: %v", d.file, n.Line, err)
		}
		return strconv.FormatBool(v), nil
	case "!!int", "!!float":
		if jsonNumberRE.MatchString(n.Value) {
			return n.Value, nil
		}
		return d.number(n)
	case "!!str":
		if v, ok := yaml11Bools[n.Value]; ok && plain {
			return strconv.FormatBool(v), nil
		}
	}
	b, err := plainjson.Marshal(n.Value)
	return string(b), err
}

// number writes in JSON a number YAML allows and JSON does not (0x1F,
// 1_000, +3, .5).
func (d *Doc) number(n *yaml.Node) (string, error) {
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err == nil {
			return strconv.FormatInt(i, 10), nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return strconv.FormatUint(u, 10), nil
		}
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		return "", fmt.Errorf("%s: line %d: %s is not a number JSON can hold", d.file, n.Line, n.Value)
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("%s: line %d: %s is not a number JSON can hold; quote it for text", d.file, n.Line, n.Value)
	}
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}

// Get is the value at a dotted path (a.b, a.list[0].b), as JSON decodes
// it (numbers as json.Number).
func (d *Doc) Get(path string) (any, bool) {
	segs, err := parsePath(path)
	if err != nil {
		return nil, false
	}
	_, n := d.find(segs)
	if n == nil {
		return nil, false
	}
	var b bytes.Buffer
	if err := d.writeJSON(&b, n, 0); err != nil {
		return nil, false
	}
	dec := json.NewDecoder(&b)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// Line is the line of the field at a dotted path (a.b, a.list[0].b), 0
// when it is absent or was set by --set.
func (d *Doc) Line(path string) int {
	segs, err := parsePath(path)
	if err != nil {
		return 0
	}
	key, n := d.find(segs)
	switch {
	case n == nil:
		return 0
	case key != nil:
		return key.Line
	}
	return n.Line
}

// find walks a path: the key node of the last mapping entry on it (nil
// for a list element) and the value node (nil when absent).
func (d *Doc) find(segs []seg) (key, value *yaml.Node) {
	n := d.root
	for _, s := range segs {
		n = deref(n)
		if s.isIndex {
			if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
				return nil, nil
			}
			key, n = nil, n.Content[s.index]
			continue
		}
		if n.Kind != yaml.MappingNode {
			return nil, nil
		}
		ps, err := d.pairs(n, 0)
		if err != nil {
			return nil, nil
		}
		found := false
		for _, p := range ps {
			if p.key == s.key {
				key, n, found = p.keyNode, p.value, true
				break
			}
		}
		if !found {
			return nil, nil
		}
	}
	return key, n
}

// Explain puts the file and the line of the field an error is about
// (one with a FieldPath() string method, such as jobspec.FieldError) in
// front of it; each of joined errors is explained on its own. Other errors,
// and those about fields without a line, are returned as they are.
func (d *Doc) Explain(err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		changed := false
		for i, e := range errs {
			out[i] = d.Explain(e)
			changed = changed || out[i] != e
		}
		if !changed {
			return err
		}
		return errors.Join(out...)
	}
	var fp interface{ FieldPath() string }
	if !errors.As(err, &fp) {
		return err
	}
	line := d.Line(fp.FieldPath())
	if line == 0 {
		return err
	}
	return &lineError{file: d.file, line: line, err: err}
}

type lineError struct {
	file string
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("%s, line %d: %v", e.file, e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }
