// Package plainjson writes JSON the way outpost passes on what users wrote:
// <, > and & stay as they are (commands are shell text, and "a && b" must
// not turn into "a \u0026\u0026 b"), and no newline follows the value.
package plainjson

import (
	"bytes"
	"encoding/json"
)

// Marshal is json.Marshal without HTML escaping.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
