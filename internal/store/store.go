// Package store keeps the workspace's state durably in SQLite (a pure-Go
// driver, no cgo): resources as JSON documents keyed by kind, resource group,
// parent and name, their protected settings apart from them, and one global
// revision that every write advances so that watchers (the relay to cluster
// agents) learn of changes without polling.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors callers tell apart.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("changed since read")
)

// Key names one resource.
type Key struct {
	Kind  string `json:"kind"`
	Group string `json:"resourceGroup"`
	// Parent is "<kind>/<name>" of the resource this one belongs to (an
	// extension to its connected cluster), empty for top-level resources.
	Parent string `json:"parent,omitempty"`
	Name   string `json:"name"`
}

func (k Key) String() string {
	s := k.Kind + " " + k.Group + "/"
	if k.Parent != "" {
		s += k.Parent + "/"
	}
	return s + k.Name
}

// Object is a stored resource.
type Object struct {
	Key
	Spec       json.RawMessage `json:"spec"`
	Status     json.RawMessage `json:"status,omitempty"`
	Generation int64           `json:"generation"` // advances when the spec changes
	Revision   int64           `json:"revision"`   // the store revision of the last write
	Created    time.Time       `json:"created"`
	Updated    time.Time       `json:"updated"`
}

// Store is an open database.
type Store struct {
	db   *sql.DB // the one writer
	read *sql.DB // readers: WAL lets them run beside the writer

	mu       sync.Mutex
	revision int64
	changed  chan struct{} // closed and replaced on every write

	queue     chan *writeReq
	stopped   chan struct{}
	closeOnce sync.Once
}

// migrations are applied in order, each once; their index+1 is the schema
// version recorded in the database. Never edit one that has shipped: add more.
var migrations = []string{
	`CREATE TABLE resources (
		kind TEXT NOT NULL, grp TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,
		spec TEXT NOT NULL, status TEXT NOT NULL DEFAULT '',
		generation INTEGER NOT NULL, revision INTEGER NOT NULL,
		created TEXT NOT NULL, updated TEXT NOT NULL,
		PRIMARY KEY (kind, grp, parent, name));
	CREATE TABLE protected (
		kind TEXT NOT NULL, grp TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,
		data BLOB NOT NULL,
		PRIMARY KEY (kind, grp, parent, name));
	CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
	INSERT INTO revision (id, value) VALUES (1, 0);`,
}

// Open opens (creating if needed) the database file and brings its schema up
// to date. Every acknowledged write is on disk: WAL with synchronous=FULL.
func Open(path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One writing connection: SQLite has one writer anyway, and a single
	// connection serialises writers without busy retries.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, changed: make(chan struct{})}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	// Readers get their own pool so that a burst of writes, each waiting on
	// fsync, does not hold up every request that only reads.
	s.read, err = sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, err
	}
	s.read.SetMaxOpenConns(8)
	if err := db.QueryRow(`SELECT value FROM revision WHERE id = 1`).Scan(&s.revision); err != nil {
		db.Close()
		return nil, err
	}
	s.queue, s.stopped = make(chan *writeReq, maxBatch), make(chan struct{})
	go s.writer()
	return s, nil
}

func (s *Store) migrate() error {
	if _, err := s.db.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var version int
	err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.db.Exec(`INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade outpost", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := s.db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.Exec(`UPDATE schema_version SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Close finishes the writes in flight and closes the database. No write may
// start after Close.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.queue)
		<-s.stopped
		s.read.Close()
		err = s.db.Close()
	})
	return err
}

// Revision is the revision of the last write.
func (s *Store) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revision
}

// Wait blocks until the store's revision is beyond since, or ctx ends, and
// returns the revision it saw.
func (s *Store) Wait(ctx context.Context, since int64) int64 {
	for {
		s.mu.Lock()
		rev, ch := s.revision, s.changed
		s.mu.Unlock()
		if rev > since {
			return rev
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return rev
		}
	}
}

// writeReq is one caller's change, waiting for the writer.
type writeReq struct {
	ctx  context.Context
	f    func(tx *sql.Tx, rev int64, now string) error
	done chan error
}

// write runs f in a transaction that advances the revision, and wakes
// watchers once it is committed. Concurrent writes are committed together
// (group commit): each runs under its own savepoint, so one that fails
// changes nothing, and all share one fsync instead of paying one each.
func (s *Store) write(ctx context.Context, f func(tx *sql.Tx, rev int64, now string) error) error {
	req := &writeReq{ctx: ctx, f: f, done: make(chan error, 1)}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done
}

// maxBatch bounds a group commit, so that one transaction stays short.
const maxBatch = 256

func (s *Store) writer() {
	defer close(s.stopped)
	for first := range s.queue {
		batch := []*writeReq{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*writeReq) {
	errs := make([]error, len(batch))
	fail := func(err error) {
		for _, r := range batch {
			r.done <- err
		}
	}
	tx, err := s.db.Begin()
	if err != nil {
		fail(err)
		return
	}
	defer tx.Rollback()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var rev int64
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if _, err := tx.Exec(`SAVEPOINT w`); err != nil {
			fail(err)
			return
		}
		err := tx.QueryRowContext(r.ctx, `UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value`).Scan(&rev)
		if err == nil {
			err = r.f(tx, rev, now)
		}
		if err != nil {
			errs[i] = err
			if _, err := tx.Exec(`ROLLBACK TO w`); err != nil {
				fail(err)
				return
			}
		}
		if _, err := tx.Exec(`RELEASE w`); err != nil {
			fail(err)
			return
		}
	}
	if err := tx.QueryRow(`SELECT value FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		fail(err)
		return
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	s.mu.Lock()
	if rev != s.revision {
		s.revision = rev
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// Create stores a new resource and, when protected is not nil, its protected
// data, in one transaction.
func (s *Store) Create(ctx context.Context, k Key, spec json.RawMessage, protected []byte) (Object, error) {
	err := s.write(ctx, func(tx *sql.Tx, rev int64, now string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO resources (kind, grp, parent, name, spec, generation, revision, created, updated)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO NOTHING`, k.Kind, k.Group, k.Parent, k.Name, string(spec), rev, now, now)
		if err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT changes()`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s: %w", k, ErrExists)
		}
		return setProtected(ctx, tx, k, protected)
	})
	if err != nil {
		return Object{}, err
	}
	return s.Get(ctx, k)
}

// UpdateSpec replaces a resource's spec (and protected data when not nil),
// advancing its generation. With generation > 0 the update only happens if
// the stored generation is still that one.
func (s *Store) UpdateSpec(ctx context.Context, k Key, spec json.RawMessage, protected []byte, generation int64) (Object, error) {
	err := s.write(ctx, func(tx *sql.Tx, rev int64, now string) error {
		res, err := tx.ExecContext(ctx, `UPDATE resources SET spec = ?, generation = generation + 1, revision = ?, updated = ?
			WHERE kind = ? AND grp = ? AND parent = ? AND name = ? AND (? = 0 OR generation = ?)`,
			string(spec), rev, now, k.Kind, k.Group, k.Parent, k.Name, generation, generation)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return s.missingOrConflict(ctx, tx, k)
		}
		return setProtected(ctx, tx, k, protected)
	})
	if err != nil {
		return Object{}, err
	}
	return s.Get(ctx, k)
}

// UpdateStatus replaces a resource's status; the spec and generation stay.
func (s *Store) UpdateStatus(ctx context.Context, k Key, status json.RawMessage) (Object, error) {
	err := s.write(ctx, func(tx *sql.Tx, rev int64, now string) error {
		res, err := tx.ExecContext(ctx, `UPDATE resources SET status = ?, revision = ?, updated = ?
			WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`, string(status), rev, now, k.Kind, k.Group, k.Parent, k.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%s: %w", k, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return Object{}, err
	}
	return s.Get(ctx, k)
}

func (s *Store) missingOrConflict(ctx context.Context, tx *sql.Tx, k Key) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM resources WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`,
		k.Kind, k.Group, k.Parent, k.Name).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", k, ErrConflict)
}

func setProtected(ctx context.Context, tx *sql.Tx, k Key, data []byte) error {
	if data == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO protected (kind, grp, parent, name, data) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (kind, grp, parent, name) DO UPDATE SET data = excluded.data`, k.Kind, k.Group, k.Parent, k.Name, data)
	return err
}

// Delete removes a resource, its protected data, and the resources that
// belong to it (Parent "<kind>/<name>" in the same group).
func (s *Store) Delete(ctx context.Context, k Key) error {
	return s.write(ctx, func(tx *sql.Tx, _ int64, _ string) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM resources WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`, k.Kind, k.Group, k.Parent, k.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%s: %w", k, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM protected WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`, k.Kind, k.Group, k.Parent, k.Name); err != nil {
			return err
		}
		for _, table := range []string{"resources", "protected"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE grp = ? AND parent = ?`, k.Group, k.Kind+"/"+k.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

// Protected returns a resource's protected data (nil when it has none).
func (s *Store) Protected(ctx context.Context, k Key) ([]byte, error) {
	var data []byte
	err := s.read.QueryRowContext(ctx, `SELECT data FROM protected WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`,
		k.Kind, k.Group, k.Parent, k.Name).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return data, err
}

const columns = `kind, grp, parent, name, spec, status, generation, revision, created, updated`

func scan(row interface{ Scan(...any) error }) (Object, error) {
	var o Object
	var spec, status, created, updated string
	if err := row.Scan(&o.Kind, &o.Group, &o.Parent, &o.Name, &spec, &status, &o.Generation, &o.Revision, &created, &updated); err != nil {
		return o, err
	}
	o.Spec = json.RawMessage(spec)
	if status != "" {
		o.Status = json.RawMessage(status)
	}
	o.Created, _ = time.Parse(time.RFC3339Nano, created)
	o.Updated, _ = time.Parse(time.RFC3339Nano, updated)
	return o, nil
}

// Get reads one resource.
func (s *Store) Get(ctx context.Context, k Key) (Object, error) {
	o, err := scan(s.read.QueryRowContext(ctx, `SELECT `+columns+` FROM resources WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`,
		k.Kind, k.Group, k.Parent, k.Name))
	if errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	return o, err
}

// List returns the resources of a kind, in one group (all groups when group
// is empty) and under one parent (any parent when parent is "*"), by name.
func (s *Store) List(ctx context.Context, kind, group, parent string) ([]Object, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+columns+` FROM resources
		WHERE kind = ? AND (? = '' OR grp = ?) AND (? = '*' OR parent = ?) ORDER BY grp, parent, name`,
		kind, group, group, parent, parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		o, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
