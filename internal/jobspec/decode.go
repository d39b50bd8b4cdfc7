// Package jobspec is the Azure ML CLI v2 command job document: strict
// decoding, the defaults Azure ML fills in, the checks that need nothing but
// the document, and the substitution of ${{inputs.x}} and ${{outputs.y}}
// in its command.
package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/plainjson"
)

// FieldError names the field (a dotted path such as
// "inputs.training_data.mode", with [i] for list elements) a problem is at,
// so that a YAML reader can point at its line.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// FieldPath is the dotted path of the field.
func (e *FieldError) FieldPath() string { return e.Path }

func fieldErr(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Decode reads a job document strictly: an unknown field (a misspelt one
// is never silently dropped), a value of the wrong type or a repeated field
// is an error naming its path; all of them are reported at once. Numbers
// and booleans are taken where text is expected (tags: {epochs: 10}), as
// written.
func Decode(data []byte) (*api.JobSpec, error) {
	tree, err := decodeTree(data)
	if err != nil {
		return nil, err
	}
	if _, ok := tree.(*object); !ok {
		return nil, &FieldError{Msg: fmt.Sprintf("the job document must be an object (a mapping of fields), not %s", kind(tree))}
	}
	var errs []error
	tree = check(reflect.TypeFor[api.JobSpec](), tree, "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	data, err = plainjson.Marshal(tree)
	if err != nil {
		return nil, err
	}
	var j api.JobSpec
	if err := json.Unmarshal(data, &j); err != nil {
		// check accepted the document, so this is a gap in check.
		return nil, fmt.Errorf("job document: %w", err)
	}
	return &j, nil
}

// object is a JSON object that remembers its key order, so that errors
// come in document order.
type object struct {
	keys []string
	m    map[string]any
}

func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := plainjson.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := plainjson.Marshal(o.m[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func decodeTree(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, "")
	if err != nil {
		return nil, jsonErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("job document: unexpected data after the document at byte %d", dec.InputOffset())
	}
	return v, nil
}

func jsonErr(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return err
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("job document: unexpected end of JSON")
	}
	return fmt.Errorf("job document is not valid JSON: %w", err)
}

func decodeValue(dec *json.Decoder, path string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		o := &object{m: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string) // the decoder gives only strings as keys
			p := JoinPath(path, k)
			if _, dup := o.m[k]; dup {
				return nil, fieldErr(p, "given more than once")
			}
			v, err := decodeValue(dec, p)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k)
			o.m[k] = v
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return o, nil
	case '[':
		l := []any{}
		for dec.More() {
			v, err := decodeValue(dec, fmt.Sprintf("%s[%d]", path, len(l)))
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
	return nil, fmt.Errorf("unexpected %v", d)
}

// JoinPath is the path of field key below path, as a FieldError has it.
func JoinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kind(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number (" + t.String() + ")"
	case *object:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

var (
	rawType    = reflect.TypeFor[json.RawMessage]()
	inputType  = reflect.TypeFor[api.Input]()
	envRefType = reflect.TypeFor[api.EnvironmentRef]()
	envType    = reflect.TypeFor[api.Environment]()
	// A deployment's model: a reference or an inline model, as an
	// environment is.
	modelRefType = reflect.TypeFor[api.ModelRef]()
	modelType    = reflect.TypeFor[api.Model]()
)

// check compares a decoded value with the Go type it is bound for,
// appending a FieldError for each mismatch, and returns the value with
// numbers and booleans turned into text where the type wants a string.
func check(t reflect.Type, v any, path string, errs *[]error) any {
	if v == nil {
		// null leaves a field unset, as encoding/json does.
		return nil
	}
	switch t {
	case rawType:
		return v
	case inputType:
		switch v.(type) {
		case *object:
			return checkStruct(t, v.(*object), path, errs)
		case []any:
			*errs = append(*errs, fieldErr(path, "an input is a literal (string, number, boolean) or an object with type and path, not a list"))
			return v
		}
		return v
	case envRefType:
		switch v := v.(type) {
		case string:
			return v
		case *object:
			return checkStruct(envType, v, path, errs)
		}
		*errs = append(*errs, fieldErr(path, "must be a reference (azureml:NAME:VERSION, azureml:NAME@latest) or an inline environment (image: ...), not %s", kind(v)))
		return v
	case modelRefType:
		switch v := v.(type) {
		case string:
			return v
		case *object:
			return checkStruct(modelType, v, path, errs)
		}
		*errs = append(*errs, fieldErr(path, "must be a reference (azureml:NAME:VERSION, azureml:NAME@latest) or an inline model (path: ...), not %s", kind(v)))
		return v
	}
	switch t.Kind() {
	case reflect.Pointer:
		return check(t.Elem(), v, path, errs)
	case reflect.Struct:
		o, ok := v.(*object)
		if !ok {
			*errs = append(*errs, fieldErr(path, "must be an object (a mapping of fields), not %s", kind(v)))
			return v
		}
		return checkStruct(t, o, path, errs)
	case reflect.Map:
		o, ok := v.(*object)
		if !ok {
			*errs = append(*errs, fieldErr(path, "must be an object (a mapping of names to values), not %s", kind(v)))
			return v
		}
		for _, k := range o.keys {
			o.m[k] = check(t.Elem(), o.m[k], JoinPath(path, k), errs)
		}
		return o
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			*errs = append(*errs, fieldErr(path, "must be a list, not %s", kind(v)))
			return v
		}
		for i := range l {
			l[i] = check(t.Elem(), l[i], fmt.Sprintf("%s[%d]", path, i), errs)
		}
		return l
	case reflect.String:
		switch s := v.(type) {
		case string:
			return s
		case json.Number:
			return s.String()
		case bool:
			return strconv.FormatBool(s)
		}
		*errs = append(*errs, fieldErr(path, "must be a string, not %s", kind(v)))
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(json.Number)
		if !ok {
			*errs = append(*errs, fieldErr(path, "must be a whole number, not %s", kind(v)))
			return v
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			*errs = append(*errs, fieldErr(path, "must be a whole number, not %s", n))
		}
	case reflect.Float64, reflect.Float32:
		if _, ok := v.(json.Number); !ok {
			*errs = append(*errs, fieldErr(path, "must be a number, not %s", kind(v)))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			*errs = append(*errs, fieldErr(path, "must be true or false, not %s", kind(v)))
		}
	case reflect.Interface:
	default:
		*errs = append(*errs, fieldErr(path, "cannot be decoded into %v", t))
	}
	return v
}

func checkStruct(t reflect.Type, o *object, path string, errs *[]error) any {
	fields := map[string]reflect.StructField{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
		names = append(names, name)
	}
	for _, k := range o.keys {
		f, ok := fields[k]
		if !ok {
			*errs = append(*errs, fieldErr(JoinPath(path, k), "unknown field %q (allowed here: %s)", k, strings.Join(names, ", ")))
			continue
		}
		o.m[k] = check(f.Type, o.m[k], JoinPath(path, k), errs)
	}
	return o
}
