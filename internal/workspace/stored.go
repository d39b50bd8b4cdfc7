package workspace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"outpost.dev/outpost/internal/store"
)

// decodeStored reads a stored object's spec into spec and its status, if it
// has one, into status (nil: not wanted). A row that does not decode is
// corrupt state: it is reported, never taken as empty.
func decodeStored(o store.Object, spec, status any) error {
	if spec != nil {
		if err := json.Unmarshal(o.Spec, spec); err != nil {
			return fmt.Errorf("stored %s: %w", o.Key, err)
		}
	}
	if status != nil && len(o.Status) > 0 {
		if err := json.Unmarshal(o.Status, status); err != nil {
			return fmt.Errorf("stored status of %s: %w", o.Key, err)
		}
	}
	return nil
}

// writeView answers with the view of a stored object, or with why there is
// none (a corrupt row).
func writeView[T any](w http.ResponseWriter, status int, view func(store.Object) (T, error), o store.Object, what string) {
	v, err := view(o)
	if err != nil {
		storeError(w, err, what)
		return
	}
	writeJSON(w, status, v)
}

// listViews answers with the views of stored objects, or with why there
// are none.
func listViews[T any](w http.ResponseWriter, view func(store.Object) (T, error), objs []store.Object, what string) {
	out := []T{}
	for _, o := range objs {
		v, err := view(o)
		if err != nil {
			storeError(w, err, what)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

// readStored reads the object at k and decodes it.
func readStored[T any](ctx context.Context, st *store.Store, k store.Key, decode func(store.Object) (T, error)) (T, error) {
	o, err := st.Get(ctx, k)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(o)
}
