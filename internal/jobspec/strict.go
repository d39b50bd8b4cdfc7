package jobspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/plainjson"
)

// DecodeStrict reads any Azure ML document (what names it in messages:
// "online deployment") into v, a pointer to its Go type, as strictly as
// Decode reads a job: unknown, mistyped and repeated fields are errors
// naming their paths, all reported at once, and numbers and booleans are
// taken where text is expected.
func DecodeStrict(data []byte, v any, what string) error {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return fmt.Errorf("decode %s: want a pointer, not %T", what, v)
	}
	tree, err := decodeTree(data)
	if err != nil {
		return err
	}
	if _, ok := tree.(*object); !ok {
		return &FieldError{Msg: fmt.Sprintf("the %s document must be an object (a mapping of fields), not %s", what, kind(tree))}
	}
	var errs []error
	tree = check(t.Elem(), tree, "", &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	data, err = plainjson.Marshal(tree)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s document: %w", what, err)
	}
	return nil
}

// ValidateEnvironment checks a document's environment (a reference or an
// inline one) as Validate checks a job's.
func ValidateEnvironment(e *api.EnvironmentRef) []error { return validateEnvironment(e) }
