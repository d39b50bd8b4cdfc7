package plainjson

import "testing"

func TestMarshalKeepsShellText(t *testing.T) {
	got, err := Marshal(map[string]any{"command": "a && b <in >out", "n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"command":"a && b <in >out","n":1}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := Marshal(func() {}); err == nil {
		t.Error("a func marshalled")
	}
}
