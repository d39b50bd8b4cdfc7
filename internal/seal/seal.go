// Package seal encrypts data at rest with AES-256-GCM under a key kept in a
// file of its own, apart from the data: a copy of the database alone
// reveals nothing it protects.
//
// A sealed value is a magic prefix, the id of the key that sealed it, a
// random nonce and the ciphertext with its tag. The caller's associated
// data (for the workspace: which resource the value belongs to) is
// authenticated but not stored, so a sealed value moved to another
// resource fails to open.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"outpost.dev/outpost/internal/atomicfile"
)

// magic starts every sealed value. Plain JSON, what older versions stored,
// never starts with a NUL byte, so the two cannot be mistaken.
var magic = []byte("\x00outpost-seal-v1\x00")

const (
	keySize   = 32 // AES-256
	idSize    = 8
	nonceSize = 12 // GCM's standard nonce
)

// Key seals and opens values.
type Key struct {
	aead cipher.AEAD
	id   [idSize]byte
}

// ID names the key without revealing it, for messages about which key
// sealed what.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

func newKey(raw []byte) (*Key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &Key{aead: aead}
	// A hash of a random 32-byte key under a distinct label tells nothing
	// about the key, yet tells two keys apart.
	sum := sha256.Sum256(append([]byte("outpost seal key id\x00"), raw...))
	copy(k.id[:], sum[:])
	return k, nil
}

// Load reads a key file: 64 hex digits (32 bytes), a trailing newline
// allowed. A missing file is an error matching os.ErrNotExist.
func Load(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(data))
	raw, err := hex.DecodeString(text)
	if err != nil || len(raw) != keySize {
		// The content is a secret (or garbage): say only its size.
		return nil, fmt.Errorf("secrets key file %s: want %d hex digits (a %d-byte key), found %d characters that are not one; restore the right key file (make a new one only for a workspace without protected settings)",
			path, 2*keySize, keySize, len(text))
	}
	return newKey(raw)
}

// Create makes a random key and writes it to path (mode 0600), unless path
// exists: then the error matches os.ErrExist.
func Create(path string) (*Key, error) {
	raw := make([]byte, keySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if err := atomicfile.Create(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return newKey(raw)
}

// IsSealed tells whether data is a sealed value (of any key).
func IsSealed(data []byte) bool { return bytes.HasPrefix(data, magic) }

// KeyID returns the id of the key that sealed data, or "" when data is not
// a sealed value.
func KeyID(data []byte) string {
	if !IsSealed(data) || len(data) < len(magic)+idSize {
		return ""
	}
	return hex.EncodeToString(data[len(magic) : len(magic)+idSize])
}

// Seal encrypts plain and binds it to ad.
func (k *Key) Seal(plain, ad []byte) ([]byte, error) {
	out := make([]byte, 0, len(magic)+idSize+nonceSize+len(plain)+k.aead.Overhead())
	out = append(out, magic...)
	out = append(out, k.id[:]...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plain, ad), nil
}

// ErrWrongKey is returned when a value was sealed with another key.
var ErrWrongKey = errors.New("sealed with another key")

// Open decrypts a sealed value, checking that it was sealed with this key
// and bound to ad.
func (k *Key) Open(sealed, ad []byte) ([]byte, error) {
	if !IsSealed(sealed) {
		return nil, errors.New("not a sealed value")
	}
	rest := sealed[len(magic):]
	if len(rest) < idSize+nonceSize+k.aead.Overhead() {
		return nil, errors.New("sealed value is truncated")
	}
	if !bytes.Equal(rest[:idSize], k.id[:]) {
		return nil, fmt.Errorf("%w (key id %s; this key's id is %s)", ErrWrongKey, hex.EncodeToString(rest[:idSize]), k.ID())
	}
	nonce, ct := rest[idSize:idSize+nonceSize], rest[idSize+nonceSize:]
	plain, err := k.aead.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, errors.New("sealed value fails authentication: it was altered or belongs to another resource")
	}
	return plain, nil
}
