package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
)

// restrictFiles makes the database and SQLite's files beside it readable by
// their owner only: they hold protected settings. The database file is made
// (0600) before SQLite opens it, because SQLite gives its -wal and -shm files
// the database file's mode; files an older version left readable by others
// are narrowed.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("database %s: make it readable by its owner only: %w", path+suffix, err)
		}
	}
	return nil
}

// RewriteProtected passes every resource's protected data through f and
// stores what f returns in its place; f returns nil to leave data as it is.
// The replacements are written in one transaction, each only if the data is
// still what f saw. No resource changes (f re-encodes the data, as when
// sealing it at rest), so no resource's revision moves. It returns how many
// were replaced.
func (s *Store) RewriteProtected(ctx context.Context, f func(k Key, data []byte) ([]byte, error)) (int, error) {
	type change struct {
		k         Key
		old, data []byte
	}
	rows, err := s.read.QueryContext(ctx, `SELECT kind, grp, parent, name, data FROM protected ORDER BY kind, grp, parent, name`)
	if err != nil {
		return 0, err
	}
	var changes []change
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.k.Kind, &c.k.Group, &c.k.Parent, &c.k.Name, &c.old); err != nil {
			rows.Close()
			return 0, err
		}
		if c.data, err = f(c.k, c.old); err != nil {
			rows.Close()
			return 0, err
		}
		if c.data != nil && !bytes.Equal(c.data, c.old) {
			changes = append(changes, c)
		}
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(changes) == 0 {
		return 0, nil
	}
	// Not through the writer: no revision moves, and this runs once, at
	// start. The one write connection serialises it with the writer.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() // after Commit, a no-op
	// The old data is overwritten with zeros, not left in free space: it
	// may be a secret in plain (the writer's connection keeps this on).
	if _, err := tx.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
		return 0, err
	}
	for _, c := range changes {
		res, err := tx.ExecContext(ctx, `UPDATE protected SET data = ? WHERE kind = ? AND grp = ? AND parent = ? AND name = ? AND data = ?`,
			c.data, c.k.Kind, c.k.Group, c.k.Parent, c.k.Name, c.old)
		if err != nil {
			return 0, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, err
		} else if n == 0 {
			return 0, fmt.Errorf("protected data of %s: %w", c.k, ErrConflict)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	// The old pages also live in the write-ahead log until it is
	// checkpointed: copy it into the database and empty it.
	var busy, frames, done int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return 0, fmt.Errorf("checkpoint after rewriting protected data: %w", err)
	}
	if busy != 0 {
		return 0, errors.New("checkpoint after rewriting protected data: the database is busy; the old data may remain in the write-ahead log until the next checkpoint")
	}
	return len(changes), nil
}
