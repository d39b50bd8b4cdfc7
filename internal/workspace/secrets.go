package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"outpost.dev/outpost/internal/seal"
	"outpost.dev/outpost/internal/store"
)

// secretsKeyFile is the default place of the key that seals protected
// settings (Options.SecretsKeyFile moves it).
const secretsKeyFile = "secrets.key"

// restrictDataDir makes the data directory and the files in it that hold
// secrets readable by their owner only, whatever mode an older version or
// the user left them in. (The database's files are the store's: store.Open
// narrows them.)
func restrictDataDir(dir string) error {
	tlsDir := filepath.Join(dir, "tls")
	for _, d := range []string{dir, tlsDir} {
		if err := os.Chmod(d, 0o700); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("data directory: make %s readable by its owner only: %w", d, err)
		}
	}
	keys, err := filepath.Glob(filepath.Join(tlsDir, "*.key"))
	if err != nil {
		return err // only for a malformed pattern, which this one is not
	}
	for _, f := range append(keys, filepath.Join(dir, adminTokenFile), filepath.Join(dir, secretsKeyFile)) {
		if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("data directory: make %s readable by its owner only: %w", f, err)
		}
	}
	return nil
}

// openSecrets loads the secrets key (making one on first start), checks
// that it is the key the stored protected data was sealed with, and seals
// the protected data older versions stored in plain, so that from here on
// the database holds none in plain.
func (s *Server) openSecrets(ctx context.Context) (*seal.Key, error) {
	path := s.opts.SecretsKeyFile
	key, err := seal.Load(path)
	created := false
	if errors.Is(err, os.ErrNotExist) {
		key, err = seal.Create(path)
		created = err == nil
		if errors.Is(err, os.ErrExist) {
			// Made by another start meanwhile: use that one.
			key, err = seal.Load(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		// Outside the data directory the file is the user's to place (a
		// mounted secret, say): say so rather than change it.
		s.log.Warn("the secrets key file is readable by others than its owner; make it 0600", "file", path, "mode", fi.Mode().Perm().String())
	}
	n, err := s.store.RewriteProtected(ctx, func(k store.Key, data []byte) ([]byte, error) {
		if !seal.IsSealed(data) {
			return key.Seal(data, protectedAD(k))
		}
		if id := seal.KeyID(data); id != key.ID() {
			if created {
				return nil, fmt.Errorf("secrets key file %s was missing, but the protected settings in the database were sealed with a key with id %s: restore that key file (or point --secrets-key-file at it)", path, id)
			}
			return nil, fmt.Errorf("secrets key file %s (key id %s) is not the key the protected settings in the database were sealed with (key id %s): point --secrets-key-file at that key", path, key.ID(), id)
		}
		return nil, nil
	})
	if err != nil {
		if created {
			// The new key seals nothing: remove it, so that the next start
			// gives the same advice instead of a key mismatch.
			if rmErr := os.Remove(path); rmErr != nil {
				s.log.Error("removing the unused secrets key", "file", path, "err", rmErr)
			}
		}
		return nil, err
	}
	if n > 0 {
		s.log.Info("protected settings stored in plain by an older version are now encrypted", "count", n)
	}
	return key, nil
}
