package sqlstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/internal/lru"
	"github.com/fhirgate/fhirgate/internal/par"
	"github.com/fhirgate/fhirgate/storage"
)

// Write is one stored version, as handed to Hooks.AfterWrite.
type Write struct {
	Type, ID string
	// Resource is the stored version; nil for a deletion.
	Resource *fhir.Resource
	// Created is true when the resource did not exist before.
	Created bool
	// VersionID and Method (POST, PUT, PATCH, DELETE) of the version.
	VersionID, Method string
}

// Hooks let higher layers keep derived data (the search index) in the same
// transaction as every write.
type Hooks struct {
	// AfterWrite runs inside the writing transaction after versions were
	// stored (one call per batch).
	AfterWrite func(ctx context.Context, c Conn, writes []Write) error
}

// Options configure a Store.
type Options struct {
	// Now is the clock; time.Now when nil. Tests fake it.
	Now   func() time.Time
	Hooks Hooks
	// Registry, when set, keeps the search index: every write extracts its
	// search values in the same transaction.
	Registry *search.Registry
	// ReadCacheBytes > 0 keeps current versions in memory for reads. Only
	// for a store that is the sole writer of its database (SQLite).
	ReadCacheBytes int
	// Observe, when set, is called as each store operation starts ("read",
	// "vread", "search", "everything", "history", "tx", "blob-put",
	// "blob-open") and the function it returns as the operation ends, with
	// its error (metrics, traces).
	Observe func(ctx context.Context, op string) func(err error)
}

// Store implements storage.Store on a DB.
type Store struct {
	db       DB
	dialect  Dialect
	now      func() time.Time
	hooks    Hooks
	registry *search.Registry
	cache    *readCache // nil unless this store is its database's only writer
	marks    *markCache // likewise
	// records keeps $everything's records, checked against the database's
	// record marks on every use (so on any store)
	records *lru.Cache[*recordEntry]
	observe func(ctx context.Context, op string) func(err error)
	// migrations are the schema migrations this build needs (Ready).
	migrations []string
	stateLocks stateLocks
	// commitHook runs before every commit of a transaction that wrote
	// (the audit trail's events of the write).
	commitHook storage.CommitHook
	// auditHead is the audit head this process expects (AppendAudit).
	auditHead headCache
	// auditRole is where this process stands in a log shared by several
	// (ClaimAppender): roleUnclaimed, roleAppender or rolePending.
	auditRole atomic.Int32
	// announce, on a database other processes write too, tells them in
	// the transaction what it replaced (ShareCache).
	announce func(ctx context.Context, c Conn, payload string) error
}

var _ storage.Store = (*Store)(nil)

// New returns a Store over db. The schema must already be migrated.
func New(db DB, d Dialect, opts Options) *Store {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	st := &Store{db: db, dialect: d, now: now, hooks: opts.Hooks, registry: opts.Registry, observe: opts.Observe, records: newRecordCache()}
	if opts.ReadCacheBytes > 0 {
		st.cache = newReadCache(opts.ReadCacheBytes)
		st.marks = newMarkCache()
	}
	return st
}

// op starts observing an operation; defer the result with the address
// of the operation's error.
func (s *Store) op(ctx context.Context, name string) func(*error) {
	if s.observe == nil {
		return func(*error) {}
	}
	end := s.observe(ctx, name)
	return func(err *error) { end(*err) }
}

// DB returns the underlying pool, for backends and the search layer.
func (s *Store) DB() DB { return s.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// SetHooks replaces the write hooks; call before the store is used.
func (s *Store) SetHooks(h Hooks) { s.hooks = h }

// Ping implements storage.Store.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Close implements storage.Store.
func (s *Store) Close() error { return s.db.Close() }

// micros is how instants are stored: microseconds since the Unix epoch.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// clock returns the store's "now" truncated to the millisecond precision
// that meta.lastUpdated is written with, so that the stored column and the
// JSON agree.
func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

const readSQL = `SELECT version, last_updated, deleted, body FROM resources WHERE res_type = ? AND res_id = ?`

func readCurrent(ctx context.Context, c Conn, typ, id, forUpdate string) (*fhir.Resource, bool, error) {
	var (
		version, lu int64
		deleted     int
		body        []byte
	)
	err := c.QueryRow(ctx, readSQL+forUpdate, typ, id).Scan(&version, &lu, &deleted, &body)
	if errors.Is(err, ErrNoRows) {
		return nil, false, fmt.Errorf("%s/%s: %w", typ, id, storage.ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", typ, err)
	}
	r := &fhir.Resource{Type: typ, ID: id, VersionID: strconv.FormatInt(version, 10), LastUpdated: fromMicros(lu), Raw: body}
	return r, deleted != 0, nil
}

func (s *Store) read(ctx context.Context, c Conn, typ, id string) (*fhir.Resource, error) {
	r, deleted, err := readCurrent(ctx, c, typ, id, "")
	if err != nil {
		return nil, err
	}
	if deleted {
		return r, fmt.Errorf("%s/%s: %w", typ, id, storage.ErrGone)
	}
	return r, nil
}

// Read implements storage.Reader. A deleted resource answers ErrGone along
// with a Resource that carries only its deleted version and time.
func (s *Store) Read(ctx context.Context, typ, id string) (r *fhir.Resource, err error) {
	defer s.op(ctx, "read")(&err)
	r, err = s.readStub(ctx, typ, id)
	if err != nil || typ != "Binary" {
		return r, err
	}
	return s.inline(ctx, s.db, r)
}

// readStub is Read leaving a blob-backed Binary's content out.
func (s *Store) readStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if s.cache == nil {
		return s.read(ctx, s.db, typ, id)
	}
	e, gen, ok := s.cache.get(typ, id)
	if ok {
		if e.gone {
			return fresh(e.res), fmt.Errorf("%s/%s: %w", typ, id, storage.ErrGone)
		}
		return fresh(e.res), nil
	}
	r, deleted, err := readCurrent(ctx, s.db, typ, id, "")
	if err != nil {
		return nil, err
	}
	s.cache.put(r, deleted, gen)
	if deleted {
		return r, fmt.Errorf("%s/%s: %w", typ, id, storage.ErrGone)
	}
	return r, nil
}

func (s *Store) vread(ctx context.Context, c Conn, typ, id, vid string) (*fhir.Resource, error) {
	v, err := strconv.ParseInt(vid, 10, 64)
	if err != nil || v < 1 {
		return nil, fmt.Errorf("%s/%s version %q: %w", typ, id, vid, storage.ErrNotFound)
	}
	var (
		lu      int64
		deleted int
		body    []byte
	)
	err = c.QueryRow(ctx, `SELECT v.last_updated, v.deleted, `+versionBody+` FROM resource_versions v `+currentJoin+`
		WHERE v.res_type = ? AND v.res_id = ? AND v.version = ?`, typ, id, v).Scan(&lu, &deleted, &body)
	if errors.Is(err, ErrNoRows) {
		return nil, fmt.Errorf("%s/%s version %d: %w", typ, id, v, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("vread %s: %w", typ, err)
	}
	r := &fhir.Resource{Type: typ, ID: id, VersionID: strconv.FormatInt(v, 10), LastUpdated: fromMicros(lu), Raw: body}
	if deleted != 0 {
		return r, fmt.Errorf("%s/%s version %d: %w", typ, id, v, storage.ErrGone)
	}
	return r, nil
}

// VRead implements storage.Reader.
func (s *Store) VRead(ctx context.Context, typ, id, vid string) (r *fhir.Resource, err error) {
	defer s.op(ctx, "vread")(&err)
	r, err = s.vread(ctx, s.db, typ, id, vid)
	if err != nil || typ != "Binary" {
		return r, err
	}
	return s.inline(ctx, s.db, r)
}

// InTx implements storage.Store.
func (s *Store) InTx(ctx context.Context, fn func(tx storage.Tx) error) (err error) {
	defer s.op(ctx, "tx")(&err)
	c, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	t := &tx{s: s, c: c}
	var after func(committed bool)
	defer func() {
		if p := recover(); p != nil {
			_ = c.Rollback(context.WithoutCancel(ctx))
			if after != nil {
				after(false)
			}
			panic(p)
		}
		if err == nil && s.commitHook != nil && (len(t.log) > 0 || t.audited) {
			after, err = s.commitHook(ctx, t, t.log)
		}
		if err == nil && s.announce != nil {
			err = t.announce(ctx)
		}
		if err != nil {
			_ = c.Rollback(context.WithoutCancel(ctx))
			if after != nil {
				after(false)
			}
			return
		}
		cerr := c.Commit(ctx)
		if after != nil {
			after(cerr == nil)
		}
		if s.marks != nil && len(t.types) > 0 {
			// even after a failed commit: a re-read costs one query
			s.marks.written(t.types)
		}
		if cerr != nil {
			err = fmt.Errorf("commit: %w", cerr)
			return
		}
		if t.sealed != nil {
			s.auditHead.set(t.sealed.Seq, t.sealed.Hash, false)
		}
		if s.marks != nil && s.marks.ttl > 0 && t.wroteWatched() {
			// other processes may keep the mark this moved for ttl
			// (SharedMarks): not answered before they have let it go
			time.Sleep(s.marks.ttl)
		}
		if s.cache != nil {
			if len(t.purged) > 0 {
				s.cache.clear()
			}
			for _, e := range t.written {
				s.cache.putWritten(e.res, e.gone)
			}
		}
		if sk, ok := s.db.(StatsKeeper); ok && t.rows > 0 {
			sk.Wrote(t.rows)
		}
	}()
	return fn(t)
}

// StatsKeeper is implemented by databases that keep the query planner's
// statistics current themselves: the store tells them how many versions
// each committed transaction wrote, so that a bulk load is followed by an
// analysis instead of waiting for a periodic one (until then a planner
// without statistics may choose a plan a hundred times slower).
type StatsKeeper interface {
	Wrote(rows int)
}

// CreateMany implements storage.Writer.
func (s *Store) CreateMany(ctx context.Context, res []*fhir.Resource) (out []*fhir.Resource, err error) {
	err = s.InTx(ctx, func(t storage.Tx) error {
		out, err = t.CreateMany(ctx, res)
		return err
	})
	return out, err
}

// Create implements storage.Writer.
func (s *Store) Create(ctx context.Context, res *fhir.Resource) (out *fhir.Resource, err error) {
	err = s.InTx(ctx, func(t storage.Tx) error {
		out, err = t.Create(ctx, res)
		return err
	})
	return out, err
}

// Update implements storage.Writer.
func (s *Store) Update(ctx context.Context, res *fhir.Resource, opts storage.UpdateOptions) (out *fhir.Resource, created bool, err error) {
	err = s.InTx(ctx, func(t storage.Tx) error {
		out, created, err = t.Update(ctx, res, opts)
		return err
	})
	return out, created, err
}

// Delete implements storage.Writer.
func (s *Store) Delete(ctx context.Context, typ, id string, opts storage.DeleteOptions) (vid string, err error) {
	err = s.InTx(ctx, func(t storage.Tx) error {
		vid, err = t.Delete(ctx, typ, id, opts)
		return err
	})
	return vid, err
}

// tx implements storage.Tx on one transaction.
type tx struct {
	s *Store
	c TxConn
	// rows counts the versions written, for the planner's statistics.
	rows int
	// written are the versions to put in the read cache after commit.
	written []cacheEntry
	// types are the resource types written, for the mark cache.
	types map[string]bool
	// locked are the advisory lock keys this transaction holds.
	locked map[int64]bool
	// log is what the transaction wrote, for the commit hook.
	log []storage.Written
	// purged are the types PurgeType removed.
	purged []string
	// sealed is the audit head this transaction's events moved to (the
	// process's expected head once it commits); nil when it appended none
	// or stored them pending.
	sealed *storage.AuditHead
	// audited: the transaction changes a patient's state for the request
	// in its context without writing a resource (underKeyLock): the
	// commit hook runs though log is empty, so the request's events
	// commit with the change.
	audited bool
}

// Conn exposes the transaction's connection to the search layer.
func (t *tx) Conn() Conn { return t.c }

func (t *tx) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := t.s.read(ctx, t.c, typ, id)
	if err != nil || typ != "Binary" {
		return r, err
	}
	return t.s.inline(ctx, t.c, r)
}

func (t *tx) VRead(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	r, err := t.s.vread(ctx, t.c, typ, id, vid)
	if err != nil || typ != "Binary" {
		return r, err
	}
	return t.s.inline(ctx, t.c, r)
}

func (t *tx) History(ctx context.Context, q storage.HistoryQuery) (*storage.HistoryPage, error) {
	return t.s.history(ctx, t.c, q)
}

func (t *tx) Create(ctx context.Context, res *fhir.Resource) (*fhir.Resource, error) {
	if res.ID == "" || !fhir.ValidID(res.ID) {
		return nil, fmt.Errorf("create %s: invalid id", res.Type)
	}
	var one int
	err := t.c.QueryRow(ctx, `SELECT 1 FROM resources WHERE res_type = ? AND res_id = ?`, res.Type, res.ID).Scan(&one)
	if err == nil {
		return nil, fmt.Errorf("%s/%s: %w", res.Type, res.ID, storage.ErrAlreadyExists)
	}
	if !errors.Is(err, ErrNoRows) {
		return nil, fmt.Errorf("create %s: %w", res.Type, err)
	}
	return t.write(ctx, res, 1, "POST", false)
}

func (t *tx) Update(ctx context.Context, res *fhir.Resource, opts storage.UpdateOptions) (*fhir.Resource, bool, error) {
	if res.ID == "" || !fhir.ValidID(res.ID) {
		return nil, false, fmt.Errorf("update %s: invalid id", res.Type)
	}
	method := opts.Method
	if method == "" {
		method = "PUT"
	}
	cur, _, err := readCurrent(ctx, t.c, res.Type, res.ID, t.s.dialect.ForUpdate)
	if errors.Is(err, storage.ErrNotFound) && opts.AllowCreate && t.s.dialect.LockSQL != "" {
		// Update-as-create: no row to lock yet, so two writers of a new id
		// would both insert version 1. Serialise them on the id and look
		// again: the one that waited updates what the first created.
		if err := t.Lock(ctx, "resource:"+res.Type+"/"+res.ID); err != nil {
			return nil, false, err
		}
		cur, _, err = readCurrent(ctx, t.c, res.Type, res.ID, t.s.dialect.ForUpdate)
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if opts.IfMatch != "" {
			return nil, false, fmt.Errorf("%s/%s has no version %s: %w", res.Type, res.ID, opts.IfMatch, storage.ErrVersionConflict)
		}
		if !opts.AllowCreate {
			return nil, false, err
		}
		out, err := t.write(ctx, res, 1, method, false)
		return out, true, err
	case err != nil:
		return nil, false, err
	}
	if opts.IfMatch != "" && opts.IfMatch != cur.VersionID {
		return nil, false, fmt.Errorf("%s/%s is at version %s, not %s: %w", res.Type, res.ID, cur.VersionID, opts.IfMatch, storage.ErrVersionConflict)
	}
	v, _ := strconv.ParseInt(cur.VersionID, 10, 64)
	out, err := t.write(ctx, res, v+1, method, true)
	return out, false, err
}

func (t *tx) Delete(ctx context.Context, typ, id string, opts storage.DeleteOptions) (string, error) {
	cur, deleted, err := readCurrent(ctx, t.c, typ, id, t.s.dialect.ForUpdate)
	if err != nil {
		return "", err
	}
	if opts.IfMatch != "" && opts.IfMatch != cur.VersionID {
		return "", fmt.Errorf("%s/%s is at version %s, not %s: %w", typ, id, cur.VersionID, opts.IfMatch, storage.ErrVersionConflict)
	}
	if deleted {
		return cur.VersionID, nil
	}
	v, _ := strconv.ParseInt(cur.VersionID, 10, 64)
	now := t.s.clock()
	seq, err := t.insertVersion(ctx, typ, id, v+1, now, true, "DELETE")
	if err != nil {
		return "", err
	}
	if err := t.keepPrevious(ctx, typ, id); err != nil {
		return "", err
	}
	if _, err := t.c.Exec(ctx, `UPDATE resources SET version = ?, last_updated = ?, deleted = 1, body = NULL, seq = ? WHERE res_type = ? AND res_id = ?`,
		v+1, micros(now), seq, typ, id); err != nil {
		return "", fmt.Errorf("delete %s: %w", typ, err)
	}
	if err := t.afterWrite(ctx, []Write{{Type: typ, ID: id, VersionID: strconv.FormatInt(v+1, 10), Method: "DELETE"}}); err != nil {
		return "", err
	}
	if t.s.cache != nil {
		t.written = append(t.written, cacheEntry{res: &fhir.Resource{Type: typ, ID: id, VersionID: strconv.FormatInt(v+1, 10), LastUpdated: now}, gone: true})
	}
	return strconv.FormatInt(v+1, 10), nil
}

// Each body is stored once. The current version's is in its resources row
// only (its resource_versions row has none); when a write supersedes it,
// keepPrevious moves it into the version's row, in the same transaction.
// Reads of versions take the body from the current row when the version's
// own is absent (versionBody, currentJoin). Versions written before this
// have both, which reads the same. A load of new resources thus writes
// each body once instead of twice.
const (
	versionBody = "COALESCE(v.body, cur.body)"
	currentJoin = "LEFT JOIN resources cur ON cur.res_type = v.res_type AND cur.res_id = v.res_id AND cur.seq = v.seq"
)

// keepPrevious moves the body of the current version of typ/id from its
// resources row into its resource_versions row, before a write replaces it.
func (t *tx) keepPrevious(ctx context.Context, typ, id string) error {
	if _, err := t.c.Exec(ctx, `UPDATE resource_versions SET body = (SELECT cur.body FROM resources cur WHERE cur.res_type = ? AND cur.res_id = ?)
		WHERE seq = (SELECT cur.seq FROM resources cur WHERE cur.res_type = ? AND cur.res_id = ?) AND body IS NULL`, typ, id, typ, id); err != nil {
		return fmt.Errorf("keep %s version: %w", typ, err)
	}
	return nil
}

// insertVersion writes a version's row, without its body (keepPrevious).
func (t *tx) insertVersion(ctx context.Context, typ, id string, v int64, now time.Time, deleted bool, method string) (int64, error) {
	del := 0
	if deleted {
		del = 1
	}
	var seq int64
	err := t.c.QueryRow(ctx, `INSERT INTO resource_versions (res_type, res_id, version, last_updated, deleted, method) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`,
		typ, id, v, micros(now), del, method).Scan(&seq)
	if err != nil {
		if isUniqueViolation(err) {
			// a concurrent writer took this version first
			if v == 1 {
				return 0, fmt.Errorf("%s/%s: %w", typ, id, storage.ErrAlreadyExists)
			}
			return 0, fmt.Errorf("%s/%s version %d written concurrently: %w", typ, id, v, storage.ErrVersionConflict)
		}
		return 0, fmt.Errorf("write %s version: %w", typ, err)
	}
	return seq, nil
}

// write stores res as version v (meta set here, inside the transaction,
// so that the version id and the time are the ones committed).
func (t *tx) write(ctx context.Context, res *fhir.Resource, v int64, method string, exists bool) (*fhir.Resource, error) {
	now := t.s.clock()
	out := res.WithMeta(res.ID, strconv.FormatInt(v, 10), now)
	// the body is kept once, in the current row (keepPrevious)
	seq, err := t.insertVersion(ctx, out.Type, out.ID, v, now, false, method)
	if err != nil {
		return nil, err
	}
	if exists {
		if err := t.keepPrevious(ctx, out.Type, out.ID); err != nil {
			return nil, err
		}
		_, err = t.c.Exec(ctx, `UPDATE resources SET version = ?, last_updated = ?, deleted = 0, body = ?, seq = ? WHERE res_type = ? AND res_id = ?`,
			v, micros(now), out.Raw, seq, out.Type, out.ID)
	} else {
		_, err = t.c.Exec(ctx, `INSERT INTO resources (res_type, res_id, version, last_updated, deleted, body, seq) VALUES (?, ?, ?, ?, 0, ?, ?)`,
			out.Type, out.ID, v, micros(now), out.Raw, seq)
	}
	if err != nil {
		if isUniqueViolation(err) {
			return nil, fmt.Errorf("%s/%s: %w", out.Type, out.ID, storage.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("write %s: %w", out.Type, err)
	}
	if err := t.afterWrite(ctx, []Write{{Type: out.Type, ID: out.ID, Resource: out, Created: !exists, VersionID: out.VersionID, Method: method}}); err != nil {
		return nil, err
	}
	if t.s.cache != nil {
		t.written = append(t.written, cacheEntry{res: out})
	}
	return out, nil
}

// CreateMany stores each resource as version 1 in few statements: the fast
// path for loading transaction Bundles and pull batches. Any id already
// taken fails the whole call with ErrAlreadyExists. The search values are
// extracted while the versions are written (the extraction is CPU, the
// writes mostly wait for the database).
func (t *tx) CreateMany(ctx context.Context, res []*fhir.Resource) ([]*fhir.Resource, error) {
	now := t.s.clock()
	out := make([]*fhir.Resource, len(res))
	for _, r := range res {
		if r.ID == "" || !fhir.ValidID(r.ID) {
			return nil, fmt.Errorf("create %s: invalid id", r.Type)
		}
	}
	// each body is written out again with its meta: CPU, on all cores
	withMeta := func(i int) { out[i] = res[i].WithMeta(res[i].ID, "1", now) }
	if len(res) < 64 {
		for i := range res {
			withMeta(i)
		}
	} else {
		par.For(len(res), withMeta)
	}
	ws := make([]Write, len(out))
	for i, r := range out {
		ws[i] = Write{Type: r.Type, ID: r.ID, Resource: r, Created: true, VersionID: "1", Method: "POST"}
	}
	extracted := t.s.extractAsync(ws)
	var err error
	if cp, ok := t.c.(Copier); ok && t.s.dialect.NextSeqsSQL != "" && len(out) > 1 {
		err = t.copyVersions(ctx, cp, out, now)
	} else {
		err = t.insertVersions(ctx, out, now)
	}
	if err != nil {
		extracted.wait() // the extraction's goroutines end before the call does
		return nil, err
	}
	if err := t.afterWriteExtracted(ctx, ws, extracted); err != nil {
		return nil, err
	}
	return out, nil
}

// copyVersions writes version 1 of each resource with COPY: the sequence
// numbers are taken first (in one statement, ascending, as a multi-row
// INSERT would have numbered them), so that the current rows can carry
// them too.
func (t *tx) copyVersions(ctx context.Context, cp Copier, out []*fhir.Resource, now time.Time) error {
	rows, err := t.c.Query(ctx, t.s.dialect.NextSeqsSQL, len(out))
	if err != nil {
		return fmt.Errorf("create batch: sequence: %w", err)
	}
	seqs := make([]int64, 0, len(out))
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("create batch: sequence: %w", err)
		}
		seqs = append(seqs, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("create batch: sequence: %w", err)
	}
	if len(seqs) != len(out) {
		return fmt.Errorf("create batch: %d sequence numbers for %d versions", len(seqs), len(out))
	}
	slices.Sort(seqs)
	lu := micros(now)
	vrows := make([][]any, len(out))
	crows := make([][]any, len(out))
	for i, r := range out {
		vrows[i] = []any{seqs[i], r.Type, r.ID, int64(1), lu, int32(0), "POST", nil} // the body: in resources (keepPrevious)
		crows[i] = []any{r.Type, r.ID, int64(1), lu, int32(0), r.Raw, seqs[i]}
	}
	if err := cp.CopyRows(ctx, "resource_versions", []string{"seq", "res_type", "res_id", "version", "last_updated", "deleted", "method", "body"}, vrows); err != nil {
		return createBatchErr(err)
	}
	if err := cp.CopyRows(ctx, "resources", []string{"res_type", "res_id", "version", "last_updated", "deleted", "body", "seq"}, crows); err != nil {
		return createBatchErr(err)
	}
	return nil
}

func createBatchErr(err error) error {
	if isUniqueViolation(err) {
		return fmt.Errorf("create batch: %w", storage.ErrAlreadyExists)
	}
	return fmt.Errorf("create batch: %w", err)
}

// insertVersions writes version 1 of each resource in multi-row INSERTs
// of a few recurring shapes (chunkRows).
func (t *tx) insertVersions(ctx context.Context, out []*fhir.Resource, now time.Time) error {
	for start := 0; start < len(out); {
		chunk := out[start : start+chunkRows(len(out)-start)]
		start += len(chunk)
		var (
			b    strings.Builder
			args = make([]any, 0, len(chunk)*6)
		)
		b.WriteString(t.s.dialect.batchInsert() + ` resource_versions (res_type, res_id, version, last_updated, deleted, method, body) VALUES `)
		for i, r := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, 1, ?, 0, 'POST', NULL)") // the body: in resources (keepPrevious)
			args = append(args, r.Type, r.ID, micros(now))
		}
		b.WriteString(" RETURNING res_type, res_id, seq")
		rows, err := t.c.Query(ctx, b.String(), args...)
		if err != nil {
			return createBatchErr(err)
		}
		seqs := make(map[[2]string]int64, len(chunk))
		for rows.Next() {
			var typ, id string
			var seq int64
			if err := rows.Scan(&typ, &id, &seq); err != nil {
				rows.Close()
				return createBatchErr(err)
			}
			seqs[[2]string{typ, id}] = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return createBatchErr(err)
		}
		b.Reset()
		args = args[:0]
		b.WriteString(t.s.dialect.batchInsert() + ` resources (res_type, res_id, version, last_updated, deleted, body, seq) VALUES `)
		for i, r := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, 1, ?, 0, ?, ?)")
			args = append(args, r.Type, r.ID, micros(now), r.Raw, seqs[[2]string{r.Type, r.ID}])
		}
		if _, err := t.c.Exec(ctx, b.String(), args...); err != nil {
			return createBatchErr(err)
		}
	}
	return nil
}

// watchedTypes are the types whose ChangeMark is a counter advanced by
// every write (callers cache on their marks: the Consent policy cache).
var watchedTypes = map[string]bool{"Consent": true}

// wroteWatched says whether the transaction wrote a watched type.
func (t *tx) wroteWatched() bool {
	for typ := range t.types {
		if watchedTypes[typ] {
			return true
		}
	}
	return false
}

// afterWrite maintains the search index and runs the hooks.
func (t *tx) afterWrite(ctx context.Context, ws []Write) error {
	return t.afterWriteExtracted(ctx, ws, nil)
}

// afterWriteExtracted is afterWrite with the search values already being
// extracted (extractAsync), or extracted here when extracted is nil.
func (t *tx) afterWriteExtracted(ctx context.Context, ws []Write, extracted *extraction) error {
	t.rows += len(ws)
	if t.s.marks != nil {
		if t.types == nil {
			t.types = map[string]bool{}
		}
		for _, w := range ws {
			t.types[w.Type] = true
		}
	}
	counted := map[string]bool{}
	for _, w := range ws {
		if watchedTypes[w.Type] && !counted[w.Type] {
			counted[w.Type] = true
			if _, err := t.c.Exec(ctx, `INSERT INTO change_marks (res_type, n) VALUES (?, 1)
				ON CONFLICT (res_type) DO UPDATE SET n = change_marks.n + 1`, w.Type); err != nil {
				if extracted != nil {
					extracted.wait()
				}
				return fmt.Errorf("change mark %s: %w", w.Type, err)
			}
		}
	}
	pats, err := t.s.reindexWrites(ctx, t.c, ws, t.s.commitHook != nil, extracted)
	if err != nil {
		return err
	}
	if t.s.commitHook != nil {
		for i, w := range ws {
			t.log = append(t.log, storage.Written{Type: w.Type, ID: w.ID, VersionID: w.VersionID, Method: w.Method, Resource: w.Resource, Patients: pats[i]})
		}
	}
	if h := t.s.hooks.AfterWrite; h != nil {
		return h(ctx, t.c, ws)
	}
	return nil
}

// uniqueViolation is set by backends to recognise their driver's
// unique-constraint error.
var uniqueViolation func(error) bool

// RegisterUniqueViolation lets a backend teach the store its driver's
// unique-constraint error.
func RegisterUniqueViolation(f func(error) bool) {
	prev := uniqueViolation
	uniqueViolation = func(err error) bool { return f(err) || (prev != nil && prev(err)) }
}

func isUniqueViolation(err error) bool { return uniqueViolation != nil && uniqueViolation(err) }

// History implements storage.Reader.
func (s *Store) History(ctx context.Context, q storage.HistoryQuery) (p *storage.HistoryPage, err error) {
	defer s.op(ctx, "history")(&err)
	return s.history(ctx, s.db, q)
}

func (s *Store) history(ctx context.Context, c Conn, q storage.HistoryQuery) (*storage.HistoryPage, error) {
	where := "1 = 1"
	var args []any
	if q.Type != "" {
		where += " AND v.res_type = ?"
		args = append(args, q.Type)
	}
	if q.ID != "" {
		where += " AND v.res_id = ?"
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		where += " AND v.last_updated >= ?"
		args = append(args, micros(q.Since))
	}
	if !q.At.IsZero() {
		// the version current at q.At: the newest one at or before it
		where += ` AND v.last_updated <= ? AND NOT EXISTS (SELECT 1 FROM resource_versions n
			WHERE n.res_type = v.res_type AND n.res_id = v.res_id AND n.version > v.version AND n.last_updated <= ?)`
		args = append(args, micros(q.At), micros(q.At))
	}
	total := -1
	if q.Release == nil && q.Cursor == "" {
		// counted on the first page only: a count reads every version, and
		// counting on each page made paging through a long history quadratic
		if err := c.QueryRow(ctx, "SELECT COUNT(*) FROM resource_versions v WHERE "+where, args...).Scan(&total); err != nil {
			return nil, fmt.Errorf("history count: %w", err)
		}
	}
	after := int64(-1)
	if q.Cursor != "" {
		cur, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		after = cur
	}
	count := q.Count
	if count <= 0 {
		count = 50
	}
	page := &storage.HistoryPage{Total: total}
	chunk := count + 1
	if q.Release != nil {
		chunk = max(chunk, 64)
	}
	var lastSeq int64
	for {
		w, a := where, args
		if after >= 0 {
			w += " AND v.seq < ?"
			a = append(slices.Clone(a), after)
		}
		entries, seqs, err := s.historyRows(ctx, c, w, a, chunk)
		if err != nil {
			return nil, err
		}
		for i, e := range entries {
			if q.Release != nil {
				ok, err := s.historyReleased(ctx, c, q.Release, e)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
			}
			if len(page.Entries) == count {
				page.Next = encodeCursor(lastSeq)
				return page, nil
			}
			page.Entries = append(page.Entries, e)
			lastSeq = seqs[i]
		}
		if len(entries) < chunk {
			return page, nil
		}
		after = seqs[len(seqs)-1]
		chunk = min(chunk*2, 2000)
	}
}

// historyRows reads up to n versions, newest first, with their sequence.
func (s *Store) historyRows(ctx context.Context, c Conn, where string, args []any, n int) ([]storage.HistoryEntry, []int64, error) {
	rows, err := c.Query(ctx, `SELECT v.seq, v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.method, `+versionBody+`
		FROM resource_versions v `+currentJoin+` WHERE `+where+` ORDER BY v.seq DESC LIMIT ?`, append(slices.Clone(args), n)...)
	if err != nil {
		return nil, nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var (
		entries []storage.HistoryEntry
		seqs    []int64
	)
	for rows.Next() {
		var (
			seq, ver, lu int64
			deleted      int
			e            storage.HistoryEntry
			body         []byte
		)
		if err := rows.Scan(&seq, &e.Type, &e.ID, &ver, &lu, &deleted, &e.Method, &body); err != nil {
			return nil, nil, fmt.Errorf("history: %w", err)
		}
		e.VersionID = strconv.FormatInt(ver, 10)
		e.LastUpdated = fromMicros(lu)
		if deleted == 0 {
			e.Resource = &fhir.Resource{Type: e.Type, ID: e.ID, VersionID: e.VersionID, LastUpdated: e.LastUpdated, Raw: body}
		}
		entries = append(entries, e)
		seqs = append(seqs, seq)
	}
	return entries, seqs, rows.Err()
}

// historyReleased decides a version: on its content, or for a deletion on
// the newest version before it that has content (none: withheld).
func (s *Store) historyReleased(ctx context.Context, c Conn, rel storage.Release, e storage.HistoryEntry) (bool, error) {
	if b := rel.Bound(e.Type); b.None {
		return false, nil
	}
	r := e.Resource
	if r == nil {
		v, _ := strconv.ParseInt(e.VersionID, 10, 64)
		var (
			ver, lu int64
			body    []byte
		)
		err := c.QueryRow(ctx, `SELECT v.version, v.last_updated, `+versionBody+` FROM resource_versions v `+currentJoin+`
			WHERE v.res_type = ? AND v.res_id = ? AND v.version < ? AND v.deleted = 0
			ORDER BY v.version DESC LIMIT 1`, e.Type, e.ID, v).Scan(&ver, &lu, &body)
		if errors.Is(err, ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("history: %w", err)
		}
		r = &fhir.Resource{Type: e.Type, ID: e.ID, VersionID: strconv.FormatInt(ver, 10), LastUpdated: fromMicros(lu), Raw: body}
	}
	return rel.Released(ctx, r)
}

func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(seq, 10)))
}

func decodeCursor(s string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, storage.ErrInvalidCursor
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0, storage.ErrInvalidCursor
	}
	return n, nil
}

// ChangeMark implements storage.Store: the newest version sequence of the type.
func (s *Store) ChangeMark(ctx context.Context, typ string) (int64, error) {
	if s.marks == nil {
		return s.queryMark(ctx, typ)
	}
	if v, ok, gen := s.marks.get(typ); ok {
		return v, nil
	} else {
		at := time.Now()
		v, err := s.queryMark(ctx, typ)
		if err == nil {
			s.marks.put(typ, v, gen, at)
		}
		return v, err
	}
}

func (s *Store) queryMark(ctx context.Context, typ string) (int64, error) {
	if watchedTypes[typ] {
		var n int64
		err := s.db.QueryRow(ctx, `SELECT n FROM change_marks WHERE res_type = ?`, typ).Scan(&n)
		if err != nil && !errors.Is(err, ErrNoRows) {
			return 0, fmt.Errorf("change mark: %w", err)
		}
		return n, nil
	}
	// Other types: the newest version's sequence. On PostgreSQL a write
	// that commits after one with a greater sequence leaves it unchanged;
	// a type whose mark must catch every write belongs in watchedTypes.
	var seq *int64
	if err := s.db.QueryRow(ctx, `SELECT MAX(seq) FROM resource_versions WHERE res_type = ?`, typ).Scan(&seq); err != nil {
		return 0, fmt.Errorf("change mark: %w", err)
	}
	if seq == nil {
		return 0, nil
	}
	return *seq, nil
}
