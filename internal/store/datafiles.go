package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// FileRow is one file of a datastore's index: where its bytes are (the
// blob named by SHA256) and what they are.
type FileRow struct {
	Path    string
	SHA256  string // hex
	Size    int64
	Mode    uint32
	Updated time.Time
}

// PutFiles records files in a datastore, all of them or none; a path
// already there is replaced. It goes through the writer (so it is ordered
// with every other write and shares its fsync) but moves no revision: files
// are no resource, and nothing that waits on the revision follows them.
func (s *Store) PutFiles(ctx context.Context, datastore string, files []FileRow) error {
	return s.writeQuiet(ctx, func(w *wtx) error {
		for _, f := range files {
			updated := w.now
			if !f.Updated.IsZero() {
				updated = f.Updated.UTC().Format(time.RFC3339Nano)
			}
			if _, err := w.ExecContext(ctx, `INSERT INTO files (datastore, path, sha256, size, mode, updated) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (datastore, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, mode = excluded.mode, updated = excluded.updated`,
				datastore, f.Path, f.SHA256, f.Size, int64(f.Mode), updated); err != nil {
				return fmt.Errorf("datastore %s: %s: %w", datastore, f.Path, err)
			}
		}
		return nil
	})
}

// ListFiles returns the files of a datastore whose path starts with
// prefix, by path. It is a range over the primary key rather than LIKE, so
// that '%' and '_' in names mean themselves.
func (s *Store) ListFiles(ctx context.Context, datastore, prefix string) ([]FileRow, error) {
	query := `SELECT path, sha256, size, mode, updated FROM files WHERE datastore = ? AND path >= ?`
	args := []any{datastore, prefix}
	if end, ok := prefixEnd(prefix); ok {
		query += ` AND path < ?`
		args = append(args, end)
	}
	rows, err := s.read.QueryContext(ctx, query+` ORDER BY path`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FileRow
	for rows.Next() {
		f, err := scanFile(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// GetFile reads one file of a datastore (ErrNotFound when it has none at
// that path).
func (s *Store) GetFile(ctx context.Context, datastore, path string) (FileRow, error) {
	f, err := scanFile(s.read.QueryRowContext(ctx, `SELECT path, sha256, size, mode, updated FROM files WHERE datastore = ? AND path = ?`, datastore, path))
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("datastore %s: %s: %w", datastore, path, ErrNotFound)
	}
	return f, err
}

func scanFile(row interface{ Scan(...any) error }) (FileRow, error) {
	var f FileRow
	var mode int64
	var updated string
	if err := row.Scan(&f.Path, &f.SHA256, &f.Size, &mode, &updated); err != nil {
		return f, err
	}
	f.Mode = uint32(mode)
	t, err := time.Parse(time.RFC3339Nano, updated)
	if err != nil {
		return f, fmt.Errorf("file %s: updated: %w", f.Path, err)
	}
	f.Updated = t
	return f, nil
}

// prefixEnd is the least string above every string that starts with
// prefix (SQLite compares TEXT bytewise), and false when there is none
// (an empty prefix, or one of 0xff bytes only).
func prefixEnd(prefix string) (string, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
