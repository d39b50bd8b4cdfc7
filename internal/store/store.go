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
	"strings"
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
	// SpecRevision is the store revision of the last change of the spec:
	// status writes do not move it, so an agent's own reports never come
	// back to it as changes.
	SpecRevision int64 `json:"specRevision"`
	// Target is the cluster the resource syncs to ("<group>/<cluster>"),
	// empty for resources no agent sees. The store's TargetFunc decides it.
	Target  string    `json:"target,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Store is an open database.
type Store struct {
	db   *sql.DB // the one writer
	read *sql.DB // readers: WAL lets them run beside the writer

	mu       sync.Mutex
	revision int64
	changed  chan struct{} // closed and replaced on every write
	// Per target: the revision of its last spec change or deletion seen by
	// this process, and a channel closed and replaced on the next one, so
	// that an agent's long poll wakes for its own cluster only.
	targets map[string]*targetWatch

	targetOf TargetFunc

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

	// Per-resource sync: the cluster each resource syncs to, the revision of
	// its last spec change, and tombstones of deleted ones, so that an agent
	// asks for what changed since the revision it has. The targets of the
	// resources stored before are filled in from the kinds known then.
	`ALTER TABLE resources ADD COLUMN target TEXT NOT NULL DEFAULT '';
	ALTER TABLE resources ADD COLUMN spec_revision INTEGER NOT NULL DEFAULT 0;
	UPDATE resources SET spec_revision = revision;
	UPDATE resources SET target = grp || '/' || name WHERE kind = 'connectedClusters';
	UPDATE resources SET target = grp || '/' || substr(parent, length('connectedClusters/') + 1)
		WHERE kind = 'extensions' AND parent LIKE 'connectedClusters/%';
	UPDATE resources SET target = json_extract(spec, '$.clusterGroup') || '/' || json_extract(spec, '$.cluster')
		WHERE kind = 'computes' AND json_valid(spec) AND json_extract(spec, '$.cluster') IS NOT NULL;
	CREATE INDEX resources_target ON resources (target, spec_revision);
	CREATE INDEX resources_revision ON resources (revision);
	CREATE TABLE tombstones (
		target TEXT NOT NULL, kind TEXT NOT NULL, grp TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,
		revision INTEGER NOT NULL, deleted TEXT NOT NULL,
		PRIMARY KEY (target, kind, grp, parent, name));
	CREATE INDEX tombstones_target ON tombstones (target, revision);
	CREATE INDEX tombstones_revision ON tombstones (revision);
	CREATE TABLE sync_floor (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
	INSERT INTO sync_floor (id, value) VALUES (1, 0);`,

	// Datastores: the index of each datastore's files (path -> content
	// digest); the bytes are blobs on disk, named by that digest.
	`CREATE TABLE files (
		datastore TEXT NOT NULL, path TEXT NOT NULL,
		sha256 TEXT NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL, updated TEXT NOT NULL,
		PRIMARY KEY (datastore, path));`,
}

// Open opens (creating if needed) the database file and brings its schema up
// to date. Every acknowledged write is on disk: WAL with synchronous=FULL.
func Open(path string) (*Store, error) {
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One writing connection: SQLite has one writer anyway, and a single
	// connection serialises writers without busy retries.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, changed: make(chan struct{}), targets: map[string]*targetWatch{}}
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
	f    func(w *wtx) error
	done chan error
	// quiet writes change no resource (datastore files): they leave the
	// revision where it is, so watchers do not wake for them.
	quiet bool
}

// wtx is the transaction a write runs in: its revision, its time, and the
// targets whose synced resources it changed (so their agents wake).
type wtx struct {
	*sql.Tx
	ctx     context.Context
	rev     int64
	now     string
	touched []string
}

func (w *wtx) touch(target string) {
	if target != "" {
		w.touched = append(w.touched, target)
	}
}

// write runs f in a transaction that advances the revision, and wakes
// watchers once it is committed. Concurrent writes are committed together
// (group commit): each runs under its own savepoint, so one that fails
// changes nothing, and all share one fsync instead of paying one each.
func (s *Store) write(ctx context.Context, f func(w *wtx) error) error {
	return s.enqueue(&writeReq{ctx: ctx, f: f, done: make(chan error, 1)})
}

// writeQuiet runs f like write, but leaves the revision as it is (w.rev
// is the current one): for data no watcher follows.
func (s *Store) writeQuiet(ctx context.Context, f func(w *wtx) error) error {
	return s.enqueue(&writeReq{ctx: ctx, f: f, done: make(chan error, 1), quiet: true})
}

func (s *Store) enqueue(req *writeReq) error {
	ctx := req.ctx
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
	var touched []string
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if _, err := tx.Exec(`SAVEPOINT w`); err != nil {
			fail(err)
			return
		}
		w := &wtx{Tx: tx, ctx: r.ctx, now: now}
		var err error
		if r.quiet {
			err = tx.QueryRowContext(r.ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&w.rev)
		} else {
			err = tx.QueryRowContext(r.ctx, `UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value`).Scan(&w.rev)
		}
		if err == nil {
			err = r.f(w)
		}
		if err != nil {
			errs[i] = err
			if _, err := tx.Exec(`ROLLBACK TO w`); err != nil {
				fail(err)
				return
			}
		} else {
			touched = append(touched, w.touched...)
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
	for _, t := range touched {
		tw := s.watch(t)
		if tw.revision < rev {
			tw.revision = rev
			close(tw.changed)
			tw.changed = make(chan struct{})
		}
	}
	s.mu.Unlock()
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// TargetFunc names the cluster a resource syncs to ("" for none), from its
// key and spec.
type TargetFunc func(k Key, spec json.RawMessage) string

// SetTargets sets how resources are assigned to targets. Call it before the
// first write; without it no resource has a target.
func (s *Store) SetTargets(f TargetFunc) {
	s.mu.Lock()
	s.targetOf = f
	s.mu.Unlock()
}

func (s *Store) target(k Key, spec json.RawMessage) string {
	s.mu.Lock()
	f := s.targetOf
	s.mu.Unlock()
	if f == nil {
		return ""
	}
	return f(k, spec)
}

// targetWatch is what WaitTarget waits on; guarded by Store.mu.
type targetWatch struct {
	revision int64
	changed  chan struct{}
}

func (s *Store) watch(target string) *targetWatch {
	tw, ok := s.targets[target]
	if !ok {
		tw = &targetWatch{changed: make(chan struct{})}
		s.targets[target] = tw
	}
	return tw
}

// WaitTarget blocks until a resource of target has changed its spec or been
// deleted at a revision beyond since (as far as this process has seen), or
// ctx ends. Status writes do not wake it.
func (s *Store) WaitTarget(ctx context.Context, target string, since int64) {
	for {
		s.mu.Lock()
		tw := s.watch(target)
		rev, ch := tw.revision, tw.changed
		s.mu.Unlock()
		if rev > since {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// Create stores a new resource and, when protected is not nil, its protected
// data, in one transaction.
func (s *Store) Create(ctx context.Context, k Key, spec json.RawMessage, protected []byte) (Object, error) {
	target := s.target(k, spec)
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.ExecContext(ctx, `INSERT INTO resources (kind, grp, parent, name, spec, generation, revision, spec_revision, target, created, updated)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, k.Kind, k.Group, k.Parent, k.Name, string(spec), w.rev, w.rev, target, w.now, w.now)
		if err != nil {
			return err
		}
		var n int64
		if err := w.QueryRowContext(ctx, `SELECT changes()`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s: %w", k, ErrExists)
		}
		// The resource is back: it is no longer deleted for anyone.
		if _, err := w.ExecContext(ctx, `DELETE FROM tombstones WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`,
			k.Kind, k.Group, k.Parent, k.Name); err != nil {
			return err
		}
		w.touch(target)
		return setProtected(ctx, w.Tx, k, protected)
	})
	if err != nil {
		return Object{}, err
	}
	return s.Get(ctx, k)
}

// UpdateSpec replaces a resource's spec (and protected data when not nil),
// advancing its generation. With generation > 0 the update only happens if
// the stored generation is still that one. When the new spec syncs to
// another target, the old one gets a tombstone.
func (s *Store) UpdateSpec(ctx context.Context, k Key, spec json.RawMessage, protected []byte, generation int64) (Object, error) {
	target := s.target(k, spec)
	err := s.write(ctx, func(w *wtx) error {
		var old string
		err := w.QueryRowContext(ctx, `SELECT target FROM resources WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`,
			k.Kind, k.Group, k.Parent, k.Name).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %w", k, ErrNotFound)
		}
		if err != nil {
			return err
		}
		res, err := w.ExecContext(ctx, `UPDATE resources SET spec = ?, generation = generation + 1, revision = ?, spec_revision = ?, target = ?, updated = ?
			WHERE kind = ? AND grp = ? AND parent = ? AND name = ? AND (? = 0 OR generation = ?)`,
			string(spec), w.rev, w.rev, target, w.now, k.Kind, k.Group, k.Parent, k.Name, generation, generation)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%s: %w", k, ErrConflict)
		}
		if old != target {
			if err := tombstone(w, old, k); err != nil {
				return err
			}
		}
		w.touch(target)
		return setProtected(ctx, w.Tx, k, protected)
	})
	if err != nil {
		return Object{}, err
	}
	return s.Get(ctx, k)
}

// tombstone records that k no longer syncs to target.
func tombstone(w *wtx, target string, k Key) error {
	if target == "" {
		return nil
	}
	_, err := w.ExecContext(w.ctx, `INSERT INTO tombstones (target, kind, grp, parent, name, revision, deleted) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (target, kind, grp, parent, name) DO UPDATE SET revision = excluded.revision, deleted = excluded.deleted`,
		target, k.Kind, k.Group, k.Parent, k.Name, w.rev, w.now)
	w.touch(target)
	return err
}

// UpdateStatus replaces a resource's status; the spec and generation stay.
func (s *Store) UpdateStatus(ctx context.Context, k Key, status json.RawMessage) (Object, error) {
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.ExecContext(ctx, `UPDATE resources SET status = ?, revision = ?, updated = ?
			WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`, string(status), w.rev, w.now, k.Kind, k.Group, k.Parent, k.Name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%s: %w", k, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return Object{}, err
	}
	return s.Get(ctx, k)
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
// belong to it (Parent "<kind>/<name>" in the same group), leaving a
// tombstone for each of them that had a target.
func (s *Store) Delete(ctx context.Context, k Key) error {
	return s.write(ctx, func(w *wtx) error {
		rows, err := w.QueryContext(ctx, `SELECT kind, grp, parent, name, target FROM resources
			WHERE (kind = ? AND grp = ? AND parent = ? AND name = ?) OR (grp = ? AND parent = ?)`,
			k.Kind, k.Group, k.Parent, k.Name, k.Group, k.Kind+"/"+k.Name)
		if err != nil {
			return err
		}
		type gone struct {
			k      Key
			target string
		}
		var all []gone
		found := false
		for rows.Next() {
			var g gone
			if err := rows.Scan(&g.k.Kind, &g.k.Group, &g.k.Parent, &g.k.Name, &g.target); err != nil {
				rows.Close()
				return err
			}
			found = found || g.k == k
			all = append(all, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%s: %w", k, ErrNotFound)
		}
		for _, g := range all {
			if err := tombstone(w, g.target, g.k); err != nil {
				return err
			}
		}
		for _, table := range []string{"resources", "protected"} {
			if _, err := w.ExecContext(ctx, `DELETE FROM `+table+` WHERE kind = ? AND grp = ? AND parent = ? AND name = ?`, k.Kind, k.Group, k.Parent, k.Name); err != nil {
				return err
			}
			if _, err := w.ExecContext(ctx, `DELETE FROM `+table+` WHERE grp = ? AND parent = ?`, k.Group, k.Kind+"/"+k.Name); err != nil {
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

const columns = `kind, grp, parent, name, spec, status, generation, revision, spec_revision, target, created, updated`

func scan(row interface{ Scan(...any) error }) (Object, error) {
	var o Object
	var spec, status, created, updated string
	if err := row.Scan(&o.Kind, &o.Group, &o.Parent, &o.Name, &spec, &status, &o.Generation, &o.Revision, &o.SpecRevision, &o.Target, &created, &updated); err != nil {
		return o, err
	}
	o.Spec = json.RawMessage(spec)
	if status != "" {
		o.Status = json.RawMessage(status)
	}
	var err error
	if o.Created, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return o, fmt.Errorf("%s: created: %w", o.Key, err)
	}
	if o.Updated, err = time.Parse(time.RFC3339Nano, updated); err != nil {
		return o, fmt.Errorf("%s: updated: %w", o.Key, err)
	}
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
	return s.query(ctx, s.read, `SELECT `+columns+` FROM resources
		WHERE kind = ? AND (? = '' OR grp = ?) AND (? = '*' OR parent = ?) ORDER BY grp, parent, name`,
		kind, group, group, parent, parent)
}

// ListTarget returns the resources of a kind that sync to target.
func (s *Store) ListTarget(ctx context.Context, target, kind string) ([]Object, error) {
	return s.query(ctx, s.read, `SELECT `+columns+` FROM resources WHERE target = ? AND kind = ? ORDER BY grp, parent, name`, target, kind)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) query(ctx context.Context, q querier, query string, args ...any) ([]Object, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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

// Changes is what changed for one target since a revision.
type Changes struct {
	// Revision is the store revision the answer is complete up to: ask
	// for the changes since it next.
	Revision int64
	// Reset is set when Objects is the target's whole state rather than a
	// difference: since was 0, older than the oldest tombstone kept, or
	// newer than the store (a database restored from a backup).
	Reset   bool
	Objects []Object // created or changed spec, in revision order
	Deleted []Key
}

// ChangesSince returns the resources of the given kinds that sync to target
// and whose spec changed after revision since, and those deleted since.
// Everything is read from one snapshot.
func (s *Store) ChangesSince(ctx context.Context, target string, kinds []string, since int64) (Changes, error) {
	var ch Changes
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return ch, err
	}
	defer tx.Rollback()
	var floor int64
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT value FROM revision WHERE id = 1), (SELECT value FROM sync_floor WHERE id = 1)`).Scan(&ch.Revision, &floor); err != nil {
		return ch, err
	}
	ch.Reset = since <= 0 || since < floor || since > ch.Revision
	if ch.Reset {
		since = 0
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(kinds)), ",")
	args := []any{target, since}
	for _, k := range kinds {
		args = append(args, k)
	}
	if ch.Objects, err = s.query(ctx, tx, `SELECT `+columns+` FROM resources WHERE target = ? AND spec_revision > ? AND kind IN (`+in+`)
		ORDER BY spec_revision`, args...); err != nil {
		return ch, err
	}
	if ch.Reset {
		return ch, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT kind, grp, parent, name FROM tombstones WHERE target = ? AND revision > ? AND kind IN (`+in+`)
		ORDER BY revision`, args...)
	if err != nil {
		return ch, err
	}
	defer rows.Close()
	for rows.Next() {
		var k Key
		if err := rows.Scan(&k.Kind, &k.Group, &k.Parent, &k.Name); err != nil {
			return ch, err
		}
		ch.Deleted = append(ch.Deleted, k)
	}
	return ch, rows.Err()
}

// Touched is a resource written (spec or status) or deleted.
type Touched struct {
	Key
	Target  string
	Deleted bool
}

// TouchedSince lists the resources with a target written or deleted after
// revision since, and the revision the list is complete up to. Controllers
// that follow several kinds use it to learn what to look at again.
func (s *Store) TouchedSince(ctx context.Context, since int64) ([]Touched, int64, error) {
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var rev int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return nil, 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT kind, grp, parent, name, target, 0 FROM resources WHERE revision > ? AND target != ''
		UNION ALL SELECT kind, grp, parent, name, target, 1 FROM tombstones WHERE revision > ?`, since, since)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []Touched
	for rows.Next() {
		var t Touched
		if err := rows.Scan(&t.Kind, &t.Group, &t.Parent, &t.Name, &t.Target, &t.Deleted); err != nil {
			return nil, 0, err
		}
		out = append(out, t)
	}
	return out, rev, rows.Err()
}

// CompactTombstones forgets tombstones recorded before the given time. An
// agent that last synced before the newest of them gets its whole state
// again (a reset) instead of the deletions.
func (s *Store) CompactTombstones(ctx context.Context, before time.Time) error {
	return s.write(ctx, func(w *wtx) error {
		var floor sql.NullInt64
		cutoff := before.UTC().Format(time.RFC3339Nano)
		if err := w.QueryRowContext(ctx, `SELECT max(revision) FROM tombstones WHERE deleted < ?`, cutoff).Scan(&floor); err != nil {
			return err
		}
		if !floor.Valid {
			return nil
		}
		if _, err := w.ExecContext(ctx, `DELETE FROM tombstones WHERE revision <= ?`, floor.Int64); err != nil {
			return err
		}
		_, err := w.ExecContext(ctx, `UPDATE sync_floor SET value = max(value, ?) WHERE id = 1`, floor.Int64)
		return err
	})
}
