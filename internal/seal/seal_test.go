package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpensOnlyWithItsKeyAndResource(t *testing.T) {
	dir := t.TempDir()
	k1, err := Create(filepath.Join(dir, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Create(filepath.Join(dir, "k2"))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"sslKeyPemFile":"-----BEGIN PRIVATE KEY-----"}`)
	sealed, err := k1.Seal(secret, []byte("extension rg/c1/ml"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) || !IsSealed(sealed) || IsSealed(secret) {
		t.Fatalf("sealed value shows the secret or is not recognised: %q", sealed)
	}
	if KeyID(sealed) != k1.ID() || k1.ID() == k2.ID() {
		t.Fatalf("key ids: sealed %s, k1 %s, k2 %s", KeyID(sealed), k1.ID(), k2.ID())
	}
	if got, err := k1.Open(sealed, []byte("extension rg/c1/ml")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := k1.Open(sealed, []byte("extension rg/c2/ml")); err == nil || !strings.Contains(err.Error(), "another resource") {
		t.Fatalf("opened under another resource: %v", err)
	}
	if _, err := k2.Open(sealed, []byte("extension rg/c1/ml")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opened with another key: %v", err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := k1.Open(tampered, []byte("extension rg/c1/ml")); err == nil {
		t.Fatal("opened a tampered value")
	}
	if _, err := k1.Open(secret, nil); err == nil {
		t.Fatal("opened a plain value")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.key")
	k, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	if _, err := Create(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing key: %v, want ErrExist", err)
	}
	again, err := Load(path)
	if err != nil || again.ID() != k.ID() {
		t.Fatalf("reloaded key: %v %v", again, err)
	}
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "want 64 hex digits") || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("malformed key file: %v, want a message giving the format and not the content", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key file: %v", err)
	}
}
