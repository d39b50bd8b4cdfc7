package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// A command is text, references (${{inputs.x}}, ${{outputs.y}}, spaces
// allowed inside the braces) and optional blocks. An optional block is
// Azure ML's $[[ ... ]], or [ ... ] holding at least one ${{inputs.x}}
// (the older form: "python train.py [--lr ${{inputs.lr}}]"). A "[" followed
// by a space is a shell test ("[ -f ${{inputs.x}} ]", "[[ ... ]]") and
// stays as it is, as does a [...] without an input reference.

var refRE = regexp.MustCompile(`\$\{\{\s*([^{}]*?)\s*\}\}`)

type segment struct {
	text  string    // literal text, when ref is empty and block nil
	ref   string    // a reference's expression, e.g. "inputs.x"
	raw   string    // the reference as written
	block []segment // an optional block's text and references
}

func parseCommand(cmd string) []segment {
	var segs []segment
	text := func(s string) {
		if s == "" {
			return
		}
		if n := len(segs); n > 0 && segs[n-1].ref == "" && segs[n-1].block == nil {
			segs[n-1].text += s
			return
		}
		segs = append(segs, segment{text: s})
	}
	start := 0 // of pending text
	for i := 0; i < len(cmd); {
		rest := cmd[i:]
		switch {
		case strings.HasPrefix(rest, "${{"):
			if loc := refRE.FindStringSubmatchIndex(rest); loc != nil && loc[0] == 0 {
				text(cmd[start:i])
				segs = append(segs, segment{ref: rest[loc[2]:loc[3]], raw: rest[:loc[1]]})
				i += loc[1]
				start = i
				continue
			}
		case strings.HasPrefix(rest, "$[["):
			if end := strings.Index(rest[3:], "]]"); end >= 0 {
				text(cmd[start:i])
				segs = append(segs, segment{block: parseRefs(rest[3 : 3+end])})
				i += 3 + end + 2
				start = i
				continue
			}
		case rest[0] == '[' && len(rest) > 1 && !unicode.IsSpace(rune(rest[1])) && rest[1] != '[':
			if end := strings.IndexByte(rest, ']'); end >= 0 {
				inner := parseRefs(rest[1:end])
				if slices.ContainsFunc(inner, func(s segment) bool { k, _ := splitRef(s.ref); return k == "inputs" }) {
					text(cmd[start:i])
					segs = append(segs, segment{block: inner})
					i += end + 1
					start = i
					continue
				}
			}
		}
		i++
	}
	text(cmd[start:])
	return segs
}

// parseRefs splits text into text and references.
func parseRefs(s string) []segment {
	var segs []segment
	last := 0
	for _, loc := range refRE.FindAllStringSubmatchIndex(s, -1) {
		if loc[0] > last {
			segs = append(segs, segment{text: s[last:loc[0]]})
		}
		segs = append(segs, segment{ref: s[loc[2]:loc[3]], raw: s[loc[0]:loc[1]]})
		last = loc[1]
	}
	if last < len(s) || len(segs) == 0 {
		segs = append(segs, segment{text: s[last:]})
	}
	return segs
}

// splitRef tells "inputs.x" as ("inputs", "x").
func splitRef(ref string) (kind, name string) {
	kind, name, ok := strings.Cut(ref, ".")
	if !ok || (kind != "inputs" && kind != "outputs") {
		return "", ""
	}
	return kind, name
}

// Substitute puts the values of inputs (a literal's text or where the data
// is) and the places of outputs into a command. An optional block vanishes,
// brackets and all, when an input it refers to is not in inputs; otherwise
// its brackets go and its inside stays. A reference to anything else is an
// error naming it.
func Substitute(command string, inputs, outputs map[string]string) (string, error) {
	s, errs := substitute(command, inputs, outputs)
	return s, errors.Join(errs...)
}

func substitute(command string, inputs, outputs map[string]string) (string, []error) {
	var b strings.Builder
	var errs []error
	put := func(s segment, inBlock bool) {
		if s.ref == "" {
			b.WriteString(s.text)
			return
		}
		v, err := resolve(s, inputs, outputs, inBlock)
		if err != nil {
			errs = append(errs, err)
			return
		}
		b.WriteString(v)
	}
	for _, s := range parseCommand(command) {
		if s.block == nil {
			put(s, false)
			continue
		}
		if slices.ContainsFunc(s.block, func(r segment) bool {
			k, n := splitRef(r.ref)
			_, given := inputs[n]
			return k == "inputs" && !given
		}) {
			continue
		}
		for _, r := range s.block {
			put(r, true)
		}
	}
	return b.String(), errs
}

func resolve(s segment, inputs, outputs map[string]string, inBlock bool) (string, error) {
	kind, name := splitRef(s.ref)
	switch kind {
	case "inputs":
		if v, ok := inputs[name]; ok {
			return v, nil
		}
		hint := ""
		if !inBlock {
			hint = "; an optional input's reference goes in an optional block: $[[--flag " + s.raw + "]]"
		}
		return "", fmt.Errorf("%s: no input %q (inputs: %s)%s", s.raw, name, names(inputs), hint)
	case "outputs":
		if v, ok := outputs[name]; ok {
			return v, nil
		}
		return "", fmt.Errorf("%s: no output %q (outputs: %s)", s.raw, name, names(outputs))
	}
	switch first, _, _ := strings.Cut(s.ref, "."); first {
	case "search_space":
		return "", fmt.Errorf("%s belongs to sweep jobs (trial.command), which do not run yet: a command job has no search space", s.raw)
	case "parent":
		return "", fmt.Errorf("%s belongs to pipeline jobs, which do not run yet: a command job has no parent", s.raw)
	}
	return "", fmt.Errorf("%s is not a reference a command can hold: use ${{inputs.<name>}} or ${{outputs.<name>}}", s.raw)
}

func names(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ", ")
}

// LiteralText is how a literal input appears in a command: a string as
// it is, a number as written, a boolean as Python writes it (True, False),
// since Azure ML renders commands in Python.
func LiteralText(raw json.RawMessage) (string, error) {
	d := bytes.TrimSpace(raw)
	switch {
	case len(d) == 0:
		return "", errors.New("empty literal")
	case d[0] == '"':
		var s string
		if err := json.Unmarshal(d, &s); err != nil {
			return "", fmt.Errorf("literal %s: %w", d, err)
		}
		return s, nil
	case string(d) == "true":
		return "True", nil
	case string(d) == "false":
		return "False", nil
	case d[0] == '-' || (d[0] >= '0' && d[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(d, &n); err != nil {
			return "", fmt.Errorf("literal %s is not a number: %w", d, err)
		}
		return n.String(), nil
	}
	return "", fmt.Errorf("literal %s: a literal input is a string, a number or a boolean", d)
}
