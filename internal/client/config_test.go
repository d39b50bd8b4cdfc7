package client

import (
	"os"
	"path/filepath"
	"testing"
)

// `outpost login` stores the login with Save: the file holds a token, so it
// is the owner's only, also when an older one was readable by everyone.
func TestSaveMakesTheConfigOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost", "config.json")
	t.Setenv("OUTPOST_CONFIG", path)
	t.Setenv("OUTPOST_URL", "")
	t.Setenv("OUTPOST_TOKEN", "")
	t.Setenv("OUTPOST_CA_FILE", "")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"url":"https://old","token":"old"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := (Config{URL: "https://127.0.0.1:8443", Token: "new-token"}).Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v, want mode 0600", fi, err)
	}
	got, err := Load()
	if err != nil || got.URL != "https://127.0.0.1:8443" || got.Token != "new-token" {
		t.Fatalf("stored login %+v %v", got, err)
	}
}
