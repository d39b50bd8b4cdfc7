package mlyaml

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// seg is one step of a path: a mapping key or a list index.
type seg struct {
	key     string
	index   int
	isIndex bool
}

// parsePath reads a.b, a.list[0].b, a.m[1][2].
func parsePath(p string) ([]seg, error) {
	var segs []seg
	i := 0
	for {
		start := i
		for i < len(p) && p[i] != '.' && p[i] != '[' && p[i] != ']' {
			i++
		}
		if i == start {
			if len(segs) == 0 {
				return nil, errors.New("the path must start with a field name")
			}
			return nil, fmt.Errorf("empty field name at %q", p[:i+min(1, len(p)-i)])
		}
		segs = append(segs, seg{key: p[start:i]})
		for i < len(p) && p[i] == '[' {
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ in %q", p)
			}
			n, err := strconv.Atoi(p[i+1 : i+end])
			if err != nil || n < 0 || p[i+1] == '+' {
				return nil, fmt.Errorf("%q is not a list index: want [0], [1], ...", p[i:i+end+1])
			}
			segs = append(segs, seg{index: n, isIndex: true})
			i += end + 1
		}
		switch {
		case i == len(p):
			return segs, nil
		case p[i] == '.':
			i++
			if i == len(p) {
				return nil, fmt.Errorf("%q ends with a dot", p)
			}
		default:
			return nil, fmt.Errorf("unexpected %q at %q", p[i], p[:i+1])
		}
	}
}

func pathText(segs []seg) string {
	var b strings.Builder
	for _, s := range segs {
		if s.isIndex {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

const setForm = "want FIELD=VALUE, e.g. resources.instance_count=2, tags.k=v, inputs.x.path=azureml:data:1, a.list[0].b=v"

// Set applies an az --set expression: "a.b=v", "a.list[0].b=v". The value
// is a number, true, false or null when it reads as one, a JSON/YAML
// object or list when it starts with { or [, a quoted string unquoted, and
// otherwise the text as given ("a=" sets an empty string). Mappings on the
// way are made when missing (a null becomes one); list elements must exist.
func (d *Doc) Set(expr string) error {
	path, raw, ok := strings.Cut(expr, "=")
	if !ok {
		return fmt.Errorf("--set %q: no '=': %s", expr, setForm)
	}
	segs, err := parsePath(strings.TrimSpace(path))
	if err != nil {
		return fmt.Errorf("--set %q: %v; %s", expr, err, setForm)
	}
	value := parseValue(raw)
	n := d.root
	for i, s := range segs {
		last := i == len(segs)-1
		at := pathText(segs[:i])
		if isNull(n) {
			// key: (nothing) is null in YAML; setting below it makes it a mapping.
			*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		if s.isIndex {
			if n.Kind != yaml.SequenceNode {
				return fmt.Errorf("--set %q: %s is %s, not a list", expr, at, kindName(n))
			}
			if s.index >= len(n.Content) {
				return fmt.Errorf("--set %q: %s has %d elements: there is no [%d]", expr, at, len(n.Content), s.index)
			}
			if last {
				n.Content[s.index] = value
				return nil
			}
			n = own(&n.Content[s.index])
			continue
		}
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("--set %q: %s is %s, not a mapping", expr, at, kindName(n))
		}
		vi := -1
		for j := 0; j+1 < len(n.Content); j += 2 {
			if k := n.Content[j]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!str" && k.Value == s.key {
				vi = j + 1
				break
			}
		}
		if vi < 0 {
			// Not in the mapping itself; maybe merged in (<<: *base):
			// the copy set here overrides it.
			var child *yaml.Node
			if !last {
				if ps, err := d.pairs(n, 0); err == nil {
					for _, p := range ps {
						if p.key == s.key {
							child = deepCopy(deref(p.value))
						}
					}
				}
			}
			if child == nil {
				child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			}
			key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s.key}
			n.Content = append(n.Content, key, child)
			vi = len(n.Content) - 1
		}
		if last {
			n.Content[vi-1].Line = 0 // the value is no longer on that line
			n.Content[vi] = value
			return nil
		}
		n = own(&n.Content[vi])
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// own replaces an alias in its slot by a copy of what it refers to, so
// that setting below it changes this place only, not the anchor's.
func own(slot **yaml.Node) *yaml.Node {
	if (*slot).Kind == yaml.AliasNode {
		*slot = deepCopy(deref(*slot))
	}
	return *slot
}

func deepCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Anchor = ""
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			if k.Kind == yaml.AliasNode {
				c.Content[i] = k // still refers to the same anchor
				continue
			}
			c.Content[i] = deepCopy(k)
		}
	}
	return &c
}

func stringNode(s string) *yaml.Node {
	// Double-quoted: the text stays text (yes is not a boolean here).
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

func parseValue(raw string) *yaml.Node {
	t := strings.TrimSpace(raw)
	if t == "" {
		return stringNode(raw)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Content) != 1 {
		return stringNode(raw)
	}
	c := doc.Content[0]
	switch c.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		if t[0] == '{' || t[0] == '[' {
			clearLines(c)
			return c
		}
	case yaml.ScalarNode:
		switch {
		case c.Style&yaml.TaggedStyle != 0 || c.Anchor != "":
		case c.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && len(t) >= 2 && t[0] == t[len(t)-1] && (t[0] == '"' || t[0] == '\''):
			return stringNode(c.Value)
		case c.Value == t && (c.ShortTag() == "!!int" || c.ShortTag() == "!!float" || c.ShortTag() == "!!bool" || c.ShortTag() == "!!null"):
			clearLines(c)
			return c
		}
	}
	return stringNode(raw)
}

func clearLines(n *yaml.Node) {
	n.Line, n.Column = 0, 0
	for _, c := range n.Content {
		clearLines(c)
	}
}
