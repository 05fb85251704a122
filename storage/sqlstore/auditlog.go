package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/storage"
)

// The audit log (storage.AuditLog): audit_events holds one row per event,
// audit_refs the references search and the release rule need, audit_head
// the chain's head. An append locks the head row (PostgreSQL: FOR UPDATE;
// SQLite's writer is exclusive anyway) and releases it at commit, so the
// trail's order is the order in which appenders commit, across replicas.

var (
	_ storage.AuditLog          = (*Store)(nil)
	_ storage.AuditAppenderRole = (*Store)(nil)
	_ storage.AuditAppender     = (*tx)(nil)
	_ storage.CommitHooker      = (*Store)(nil)
	_ storage.AuditPendingLog   = (*Store)(nil)
)

// auditRowsPerInsert bounds the rows of one multi-row INSERT.
const auditRowsPerInsert = 64

// AppendAudit implements storage.AuditAppender in a transaction of its own.
//
// On a database that pipelines (Batcher: PostgreSQL) the append is one
// round trip when this process knows the head: the statements move the
// head from the one this process expects (refusing, rolling everything
// back, when another appender moved it first), insert the events and their
// references, and commit, all sent at once. Otherwise it is two: lock and
// read the head, then store, move it and commit (see headCache for when
// replicas appending at once stop trying the first). An append is the one
// thing every read waits for, and on a busy machine each round trip costs
// a wake-up of both processes.
func (s *Store) AppendAudit(ctx context.Context, recs []*storage.AuditRecord, seal storage.AuditSealer) error {
	if len(recs) == 0 {
		return nil
	}
	if b, ok := s.db.(Batcher); ok && s.storesPending() {
		// another replica holds the appender's role: the events wait
		// pending, sealed by their MAC, for it to seal them into the chain
		if err := b.QueryBatch(ctx, pendingStatements(recs, seal)); err != nil {
			return fmt.Errorf("audit append: %w", err)
		}
		return nil
	}
	if _, ok := s.db.(Batcher); ok && s.dialect.SkipLocked != "" {
		if seq, hash, ok := s.auditHead.fast(); ok && len(recs) <= maxOneStatement {
			// one round trip whatever happens: sealed after the head this
			// process knows, or pending when it moved or is held
			moved, hseq, hhash, err := s.appendOrPend(ctx, recs, seal, seq, hash)
			switch {
			case errors.Is(err, errTooLarge): // the batched way, below
			case err != nil:
				s.auditHead.forget()
				return fmt.Errorf("audit append: %w", err)
			case moved:
				s.auditHead.set(recs[len(recs)-1].Seq, recs[len(recs)-1].Hash, true)
				return nil
			default:
				// where the head was when the events went pending: the
				// next append tries from there
				s.auditHead.set(hseq, hhash, true)
				return nil
			}
		}
	}
	if b, ok := s.db.(Batcher); ok {
		if seq, hash, ok := s.auditHead.fast(); ok {
			// one round trip: move the head from where this process left it
			err := b.QueryBatch(ctx, auditStatements(recs, seal, seq, hash, true, s.dialect.batchInsert()))
			if err == nil {
				s.auditHead.set(recs[len(recs)-1].Seq, recs[len(recs)-1].Hash, true)
				return nil
			}
			s.auditHead.refused()
			if !errors.Is(err, ErrBatchRefused) {
				return fmt.Errorf("audit append: %w", err)
			}
			// another replica (or a write) moved the head or holds it
		}
		// two round trips holding the head's lock: lock and read it, then
		// store, move it and commit; or, when another appender holds it,
		// store the events pending
		var (
			seq     int64
			hash    []byte
			pending bool
		)
		lock := s.dialect.ForUpdate
		if s.dialect.SkipLocked != "" {
			lock = s.dialect.SkipLocked
		}
		err := b.LockedBatch(ctx, Stmt{`SELECT seq, hash FROM audit_head WHERE id = 1` + lock, nil}, []any{&seq, &hash},
			func(found bool) []Stmt {
				if !found {
					pending = true
					return pendingStatements(recs, seal)
				}
				return auditStatements(recs, seal, seq, hash, false, s.dialect.batchInsert())
			})
		if err != nil {
			s.auditHead.forget()
			return fmt.Errorf("audit append: %w", err)
		}
		if pending {
			s.auditHead.forget()
			return nil
		}
		s.auditHead.set(recs[len(recs)-1].Seq, recs[len(recs)-1].Hash, false)
		return nil
	}
	c, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("audit append: begin: %w", err)
	}
	if err := appendAudit(ctx, c, s.dialect, recs, seal, false); err != nil {
		_ = c.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := c.Commit(ctx); err != nil {
		s.auditHead.forget()
		return fmt.Errorf("audit append: commit: %w", err)
	}
	last := recs[len(recs)-1]
	s.auditHead.set(last.Seq, last.Hash, false)
	return nil
}

// Leaser is a database on which a process can hold a lease for as long as
// it lives (PostgreSQL: a session advisory lock on a connection of its
// own, released when the process or its connection dies): the audit
// log's appender role.
type Leaser interface {
	// TryLease takes the lease when nobody holds it, or checks that this
	// process still does, and reports whether it holds it.
	TryLease(ctx context.Context) (bool, error)
}

// The audit log's roles (Store.auditRole).
const (
	roleUnclaimed int32 = iota // never claimed: append to the chain
	roleAppender               // this process holds the role
	rolePending                // another process holds it: store pending
)

// ClaimAppender implements storage.AuditAppenderRole. On a database that
// keeps no pending events (SQLite, one process) this process is always
// the appender. When the lease cannot be checked (the database is
// unreachable) the process appends to the chain, as one that never
// claimed the role does: correctness never depends on the role.
func (s *Store) ClaimAppender(ctx context.Context) (bool, error) {
	l, ok := s.db.(Leaser)
	if !ok || s.dialect.SkipLocked == "" {
		s.auditRole.Store(roleAppender)
		return true, nil
	}
	held, err := l.TryLease(ctx)
	switch {
	case err != nil:
		s.auditRole.Store(roleUnclaimed)
		return false, fmt.Errorf("audit appender role: %w", err)
	case held:
		s.auditRole.Store(roleAppender)
	default:
		s.auditRole.Store(rolePending)
	}
	return held, nil
}

// storesPending reports whether another process holds the appender's role.
func (s *Store) storesPending() bool { return s.auditRole.Load() == rolePending }

// Batcher is a database that runs several statements in one round trip,
// in order, as one transaction: all of them or none.
type Batcher interface {
	// QueryBatch runs stmts; it reports ErrBatchRefused when a statement
	// refused by dividing by zero (how a batch says "not this one").
	QueryBatch(ctx context.Context, stmts []Stmt) error
	// LockedBatch runs first (a query of at most one row, scanned into
	// dest) in a transaction, then the statements then returns (told
	// whether first found its row), and commits: two round trips, the
	// transaction open between them.
	LockedBatch(ctx context.Context, first Stmt, dest []any, then func(found bool) []Stmt) error
}

// TxBatcher is a transaction's connection that sends several statements
// in one round trip, in order (PostgreSQL's pipeline); the first error is
// returned, and the transaction must then be rolled back.
type TxBatcher interface {
	ExecBatch(ctx context.Context, stmts []Stmt) error
}

// Stmt is one statement of a batch ('?' placeholders).
type Stmt struct {
	SQL  string
	Args []any
}

// ErrBatchRefused: a batch's statement refused it; nothing was written.
var ErrBatchRefused = errors.New("batch refused")

// headCache is the audit head this process last wrote: where a
// one-round-trip append expects to find it. While other appenders keep
// moving it (replicas appending at once), a one-round-trip attempt is
// refused more often than not, so after each refusal the next appends go
// the locked way: one, then two, four… up to 64 of them before trying
// again, and back to none after an attempt that went through.
type headCache struct {
	mu      sync.Mutex
	known   bool
	seq     int64
	hash    []byte
	skip    int // locked appends before the next attempt
	penalty int // what the next refusal sets skip to, doubled
}

// fast returns the head to try a one-round-trip append from, if any.
func (h *headCache) fast() (int64, []byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known {
		return 0, nil, false
	}
	if h.skip > 0 {
		h.skip--
		return 0, nil, false
	}
	return h.seq, h.hash, true
}

// set records the head this process wrote (fast: by a one-round-trip append).
func (h *headCache) set(seq int64, hash []byte, fast bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq, h.hash, h.known = seq, hash, true
	if fast {
		h.penalty = 0
	}
}

// refused records that a one-round-trip append found the head moved.
func (h *headCache) refused() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.known = false
	h.penalty = min(max(1, 2*h.penalty), 64)
	h.skip = h.penalty
}

func (h *headCache) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.known = false
}

// AppendAudit implements storage.AuditAppender in the transaction.
func (t *tx) AppendAudit(ctx context.Context, recs []*storage.AuditRecord, seal storage.AuditSealer) error {
	// the head moves: this process expects it where this transaction
	// leaves it once it commits
	t.s.auditHead.forget()
	if err := appendAudit(ctx, t.c, t.s.dialect, recs, seal, t.s.storesPending()); err != nil {
		return err
	}
	if last := recs[len(recs)-1]; last.Seq > 0 {
		t.sealed = &storage.AuditHead{Seq: last.Seq, Hash: last.Hash}
	}
	return nil
}

// appendAudit appends recs in the transaction c, or stores them pending
// (pending: another process holds the appender's role; or the head is
// held by another transaction).
func appendAudit(ctx context.Context, c Conn, d Dialect, recs []*storage.AuditRecord, seal storage.AuditSealer, pending bool) error {
	if len(recs) == 0 {
		return nil
	}
	var (
		seq  int64
		hash []byte
	)
	lock := d.ForUpdate
	if d.SkipLocked != "" {
		lock = d.SkipLocked
	}
	stmts := []Stmt(nil)
	if pending && d.SkipLocked != "" {
		stmts = pendingStatements(recs, seal)
	} else {
		switch err := c.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+lock).Scan(&seq, &hash); {
		case err == nil:
			stmts = auditStatements(recs, seal, seq, hash, false, d.batchInsert())
		case errors.Is(err, ErrNoRows) && d.SkipLocked != "":
			// another appender holds the head: the events wait sealed by
			// their MAC, and the write does not wait for the head
			stmts = pendingStatements(recs, seal)
		default:
			return fmt.Errorf("audit append: head: %w", err)
		}
	}
	if b, ok := c.(TxBatcher); ok && len(stmts) > 1 {
		// the events, their postings and the head's move: one round trip
		// (a Bundle's event names every resource it wrote: a dozen
		// statements of postings)
		if err := b.ExecBatch(ctx, stmts); err != nil {
			return fmt.Errorf("audit append: %w", err)
		}
		return nil
	}
	for _, st := range stmts {
		if _, err := c.Exec(ctx, st.SQL, st.Args...); err != nil {
			return fmt.Errorf("audit append: %w", err)
		}
	}
	return nil
}

// auditStatements seals recs after the head (seq, hash) and returns the
// statements that store them and move the head. With cas, the first
// statement moves the head only from (seq, hash) and divides by zero when
// it is not there (the batch is then refused); without, the caller holds
// the head's lock and the last statement moves it. insert is the dialect's
// batchInsert: every caller fails the whole transaction on any error, so on
// SQLite the rows need no statement journal.
func auditStatements(recs []*storage.AuditRecord, seal storage.AuditSealer, seq int64, hash []byte, cas bool, insert string) []Stmt {
	prevSeq, prevHash := seq, hash
	seq, hash = sealAfter(recs, seal, seq, hash)
	var out []Stmt
	if cas {
		// (the head is locked only if no other appender holds it: a held
		// head refuses at once, without waiting for its holder's commit)
		out = append(out, Stmt{`WITH moved AS (UPDATE audit_head SET seq = ?, hash = ? WHERE id = (SELECT id FROM audit_head WHERE id = 1 AND seq = ? AND hash = ? FOR UPDATE SKIP LOCKED) RETURNING 1)
SELECT 1 / (SELECT count(*) FROM moved)`, []any{seq, hash, prevSeq, nonNil(prevHash)}})
	}
	var b strings.Builder
	for start := 0; start < len(recs); {
		chunk := recs[start : start+rowsPerInsert(len(recs)-start)]
		start += len(chunk)
		b.Reset()
		args := make([]any, 0, 10*len(chunk))
		b.WriteString(insert + ` audit_events (seq, recorded, action, outcome, type, subtype, key_id, prev, hash, body) VALUES `)
		for i, r := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, r.Seq, micros(r.Recorded), r.Action, r.Outcome, r.Type, r.Subtype, r.KeyID, nonNil(r.Prev), r.Hash, r.Body)
		}
		out = append(out, Stmt{b.String(), args})
	}
	// the references: a posting per reference, in key order (the inserts
	// walk the index's pages in order instead of jumping between them)
	out = append(out, postingStatements(recs, insert)...)
	if !cas {
		out = append(out, Stmt{`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, []any{seq, hash}})
	}
	return out
}

// sealAfter numbers and seals recs after the head (seq, hash) and returns
// the head they make.
func sealAfter(recs []*storage.AuditRecord, seal storage.AuditSealer, seq int64, hash []byte) (int64, []byte) {
	for _, r := range recs {
		seq++
		r.Seq = seq
		seal(hash, r)
		hash = r.Hash
	}
	return seq, hash
}

// maxOneStatement bounds the events appendOrPend takes; with their
// references it also keeps to PostgreSQL's parameter bound (13 per event and 4
// per posting, padded: maxPGParams) or leaves the append to the batched way.
const maxOneStatement = 1024

// maxPGParams bounds a statement's parameters (PostgreSQL: 65,535).
const maxPGParams = 65535

// appendOrPend is an append in one statement, run on its own (so one
// round trip with its commit): when the head is where this process last
// saw it (seq, hash) and nobody holds it, recs are sealed after it and
// stored and the head moved (moved); otherwise they are stored pending
// (Seq 0, MACed) and the head as committed is returned. Nobody waits.
func (s *Store) appendOrPend(ctx context.Context, recs []*storage.AuditRecord, seal storage.AuditSealer, seq int64, hash []byte) (moved bool, hseq int64, hhash []byte, err error) {
	// the pending forms first (MACed with no previous seal, sequence 0)
	macs := make([]storage.AuditRecord, len(recs))
	for i, r := range recs {
		macs[i] = storage.AuditRecord{Body: r.Body}
		seal(nil, &macs[i])
	}
	prevSeq, prevHash := seq, hash
	seq, hash = sealAfter(recs, seal, seq, hash)
	ps := postingsOf(recs)
	if 4+13*padded(len(recs))+4*padded(len(ps)) > maxPGParams {
		return false, 0, nil, errTooLarge
	}
	var b strings.Builder
	args := make([]any, 0, 4+13*padded(len(recs))+4*padded(len(ps)))
	b.WriteString(`WITH h AS (SELECT id FROM audit_head WHERE id = 1 AND seq = ? AND hash = ?` + s.dialect.SkipLocked + `),
m AS (UPDATE audit_head SET seq = ?, hash = ? WHERE id IN (SELECT id FROM h) RETURNING 1),
e AS (INSERT INTO audit_events (seq, recorded, action, outcome, type, subtype, key_id, prev, hash, body) SELECT * FROM (VALUES `)
	args = append(args, prevSeq, nonNil(prevHash), seq, hash)
	// (the lists are padded with rows of NULLs to a power of two, so that
	// the statement has a few dozen shapes a connection prepares once,
	// not one per group size and reference count)
	n := padded(len(recs))
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?::bigint, ?::bigint, ?::text, ?::text, ?::text, ?::text, ?::text, ?::bytea, ?::bytea, ?::bytea)")
		if i < len(recs) {
			r := recs[i]
			args = append(args, r.Seq, micros(r.Recorded), r.Action, r.Outcome, r.Type, r.Subtype, r.KeyID, nonNil(r.Prev), r.Hash, r.Body)
		} else {
			args = append(args, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil)
		}
	}
	b.WriteString(`) v WHERE EXISTS (SELECT 1 FROM m) AND v.column1 IS NOT NULL)`)
	if len(ps) > 0 {
		b.WriteString(`,
p AS (INSERT INTO audit_postings (ref, seq, last, events) SELECT * FROM (VALUES `)
		for i := range padded(len(ps)) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?::text, ?::bigint, ?::bigint, ?::bytea)")
			if i < len(ps) {
				p := ps[i]
				args = append(args, p.ref, p.first, p.last, p.events)
			} else {
				args = append(args, nil, nil, nil, nil)
			}
		}
		b.WriteString(`) v WHERE EXISTS (SELECT 1 FROM m) AND v.column1 IS NOT NULL)`)
	}
	b.WriteString(`,
q AS (INSERT INTO audit_pending (key_id, mac, body) SELECT * FROM (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?::text, ?::bytea, ?::bytea)")
		if i < len(recs) {
			args = append(args, macs[i].KeyID, macs[i].Hash, recs[i].Body)
		} else {
			args = append(args, nil, nil, nil)
		}
	}
	b.WriteString(`) v WHERE NOT EXISTS (SELECT 1 FROM m) AND v.column1 IS NOT NULL)
SELECT EXISTS (SELECT 1 FROM m), seq, hash FROM audit_head WHERE id = 1`)
	if err := s.db.QueryRow(ctx, b.String(), args...).Scan(&moved, &hseq, &hhash); err != nil {
		return false, 0, nil, err
	}
	if !moved {
		for i, r := range recs {
			r.Seq, r.KeyID, r.Prev, r.Hash = 0, macs[i].KeyID, nil, macs[i].Hash
		}
	}
	return moved, hseq, hhash, nil
}

var errTooLarge = errors.New("too many parameters for one statement")

// padded is n rounded up to a power of two.
func padded(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

// pendingStatements store recs pending: each MACed by seal with no
// previous seal and sequence number 0 (which no sealed event has), and
// left with Seq 0.
func pendingStatements(recs []*storage.AuditRecord, seal storage.AuditSealer) []Stmt {
	var (
		out []Stmt
		b   strings.Builder
	)
	for _, r := range recs {
		r.Seq = 0
		seal(nil, r)
	}
	for start := 0; start < len(recs); {
		chunk := recs[start : start+rowsPerInsert(len(recs)-start)]
		start += len(chunk)
		b.Reset()
		args := make([]any, 0, 3*len(chunk))
		b.WriteString(`INSERT INTO audit_pending (key_id, mac, body) VALUES `)
		for i, r := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, ?)")
			args = append(args, r.KeyID, r.Hash, r.Body)
		}
		out = append(out, Stmt{b.String(), args})
	}
	return out
}

// SealPending implements storage.AuditPendingLog.
func (s *Store) SealPending(ctx context.Context, max int, open func(storage.PendingAudit) (*storage.AuditRecord, error), seal storage.AuditSealer) (sealed, refused int, err error) {
	if s.dialect.SkipLocked == "" || max <= 0 {
		return 0, 0, nil
	}
	var waiting bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_pending WHERE NOT refused)`).Scan(&waiting); err != nil {
		return 0, 0, fmt.Errorf("audit seal: %w", err)
	}
	if !waiting {
		return 0, 0, nil
	}
	c, err := s.db.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("audit seal: begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = c.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// the head, waiting for whoever holds it: the sealer is not a request
	var (
		seq  int64
		hash []byte
	)
	if err := c.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+s.dialect.ForUpdate).Scan(&seq, &hash); err != nil {
		return 0, 0, fmt.Errorf("audit seal: head: %w", err)
	}
	// (read after the head is held: another sealer's moves are visible)
	rows, err := c.Query(ctx, `SELECT id, key_id, mac, body FROM audit_pending WHERE NOT refused ORDER BY id LIMIT ?`, max)
	if err != nil {
		return 0, 0, fmt.Errorf("audit seal: %w", err)
	}
	var (
		recs      []*storage.AuditRecord
		ids, bads []any
	)
	for rows.Next() {
		var p storage.PendingAudit
		if err := rows.Scan(&p.ID, &p.KeyID, &p.MAC, &p.Body); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("audit seal: %w", err)
		}
		r, err := open(p)
		if err != nil {
			bads = append(bads, p.ID)
			continue
		}
		recs = append(recs, r)
		ids = append(ids, p.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("audit seal: %w", err)
	}
	stmts := []Stmt(nil)
	if len(recs) > 0 {
		stmts = auditStatements(recs, seal, seq, hash, false, s.dialect.batchInsert())
	}
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		stmts = append(stmts, Stmt{`DELETE FROM audit_pending WHERE id IN (` + placeholders(len(chunk)) + `)`, chunk})
	}
	for start := 0; start < len(bads); start += 1000 {
		chunk := bads[start:min(start+1000, len(bads))]
		stmts = append(stmts, Stmt{`UPDATE audit_pending SET refused = true WHERE id IN (` + placeholders(len(chunk)) + `)`, chunk})
	}
	for _, st := range stmts {
		if _, err := c.Exec(ctx, st.SQL, st.Args...); err != nil {
			return 0, 0, fmt.Errorf("audit seal: %w", err)
		}
	}
	done = true
	if err := c.Commit(ctx); err != nil {
		s.auditHead.forget()
		return 0, 0, fmt.Errorf("audit seal: commit: %w", err)
	}
	if len(recs) > 0 { // the head moved: appends try from there
		s.auditHead.set(recs[len(recs)-1].Seq, recs[len(recs)-1].Hash, false)
	}
	return len(recs), len(bads), nil
}

// ScanPendingAudit implements storage.AuditPendingLog.
func (s *Store) ScanPendingAudit(ctx context.Context, fn func(storage.PendingAudit) error) error {
	if s.dialect.SkipLocked == "" {
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT id, key_id, mac, body, refused FROM audit_pending ORDER BY id`)
	if err != nil {
		return fmt.Errorf("audit pending: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p storage.PendingAudit
		if err := rows.Scan(&p.ID, &p.KeyID, &p.MAC, &p.Body, &p.Refused); err != nil {
			return fmt.Errorf("audit pending: %w", err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return rows.Err()
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const auditCols = `e.seq, e.recorded, e.action, e.outcome, e.type, e.subtype, e.key_id, e.prev, e.hash, e.body`

func scanAudit(rows Rows) (*storage.AuditRecord, error) {
	r := &storage.AuditRecord{}
	var rec int64
	if err := rows.Scan(&r.Seq, &rec, &r.Action, &r.Outcome, &r.Type, &r.Subtype, &r.KeyID, &r.Prev, &r.Hash, &r.Body); err != nil {
		return nil, err
	}
	r.Recorded = fromMicros(rec)
	return r, nil
}

// SearchAudit implements storage.AuditLog. Without reference conditions
// it is one statement in sequence order; with them the postings of one of
// them drive it (searchByRefs).
func (s *Store) SearchAudit(ctx context.Context, q storage.AuditQuery) (*storage.AuditPage, error) {
	count := q.Count
	if count <= 0 {
		count = 50
	}
	page := &storage.AuditPage{Total: -1}
	for _, f := range q.Refs {
		if len(f.Refs) == 0 {
			// a condition no event meets
			if q.Total {
				page.Total = 0
			}
			return page, nil
		}
	}
	if len(q.Refs) > 0 {
		if q.Total {
			all := q
			all.After = 0
			_, n, err := s.searchByRefs(ctx, all, -1)
			if err != nil {
				return nil, err
			}
			page.Total = n
		}
		recs, _, err := s.searchByRefs(ctx, q, count+1)
		if err != nil {
			return nil, err
		}
		if len(recs) > count {
			page.Next = recs[count-1].Seq
			recs = recs[:count]
		}
		page.Records = recs
		return page, nil
	}
	where, args := auditWhere(q)
	if q.Total {
		if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM audit_events e WHERE `+strings.Join(where, " AND "), args...).Scan(&page.Total); err != nil {
			return nil, fmt.Errorf("audit search count: %w", err)
		}
	}
	dir, cmp := "ASC", ">"
	if q.Desc {
		dir, cmp = "DESC", "<"
	}
	if q.After > 0 {
		where = append(where, "e.seq "+cmp+" ?")
		args = append(args, q.After)
	}
	rows, err := s.db.Query(ctx, `SELECT `+auditCols+` FROM audit_events e WHERE `+strings.Join(where, " AND ")+` ORDER BY e.seq `+dir+` LIMIT ?`, append(args, count+1)...)
	if err != nil {
		return nil, fmt.Errorf("audit search: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("audit search: %w", err)
		}
		if len(page.Records) == count {
			page.Next = page.Records[count-1].Seq
			break
		}
		page.Records = append(page.Records, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit search: %w", err)
	}
	return page, nil
}

// auditWhere compiles the conditions of q on the columns of audit_events e
// (not its cursor, not its reference conditions: searchByRefs has those).
func auditWhere(q storage.AuditQuery) ([]string, []any) {
	where := []string{"1 = 1"}
	var args []any
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		where = append(where, col+" IN ("+placeholders(len(vals))+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if len(q.Seqs) > 0 {
		where = append(where, "e.seq IN ("+placeholders(len(q.Seqs))+")")
		for _, v := range q.Seqs {
			args = append(args, v)
		}
	}
	if q.Until > 0 {
		where = append(where, "e.seq <= ?")
		args = append(args, q.Until)
	}
	if !q.From.IsZero() {
		where = append(where, "e.recorded >= ?")
		args = append(args, micros(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "e.recorded < ?")
		args = append(args, micros(q.To))
	}
	in("e.action", q.Action)
	in("e.outcome", q.Outcome)
	in("e.type", q.Type)
	in("e.subtype", q.Subtype)
	return where, args
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// ScanAudit implements storage.AuditLog, a page of rows at a time.
func (s *Store) ScanAudit(ctx context.Context, from int64, fn func(*storage.AuditRecord) error) error {
	const page = 1000
	next := from
	for {
		rows, err := s.db.Query(ctx, `SELECT `+auditCols+` FROM audit_events e WHERE e.seq >= ? ORDER BY e.seq LIMIT ?`, next, page)
		if err != nil {
			return fmt.Errorf("audit scan: %w", err)
		}
		var recs []*storage.AuditRecord
		for rows.Next() {
			r, err := scanAudit(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("audit scan: %w", err)
			}
			recs = append(recs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit scan: %w", err)
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(recs) < page {
			return nil
		}
		next = recs[len(recs)-1].Seq + 1
	}
}

// ScanAuditRefs implements storage.AuditLog: the postings in key order, a
// page at a time, each event they list.
func (s *Store) ScanAuditRefs(ctx context.Context, fn func(seq int64, ref storage.AuditRef) error) error {
	const page = 1000
	var (
		lastRef   string
		lastFirst int64 = math.MinInt64
	)
	for {
		rows, err := s.db.Query(ctx, `SELECT ref, seq, events FROM audit_postings WHERE ref > ? OR (ref = ? AND seq > ?) ORDER BY ref, seq LIMIT ?`, lastRef, lastRef, lastFirst, page)
		if err != nil {
			return fmt.Errorf("audit scan refs: %w", err)
		}
		var got []posting
		for rows.Next() {
			var p posting
			if err := rows.Scan(&p.ref, &p.first, &p.events); err != nil {
				rows.Close()
				return fmt.Errorf("audit scan refs: %w", err)
			}
			got = append(got, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit scan refs: %w", err)
		}
		for _, p := range got {
			var ferr error
			if err := eachPosted(p.first, p.events, func(seq int64, role int) bool {
				ferr = fn(seq, storage.AuditRef{Ref: p.ref, Role: role})
				return ferr == nil
			}); err != nil {
				// an edited posting: what it lists up to the damage, then
				// a reference the verifier cannot match to any event
				ferr = fn(p.first, storage.AuditRef{Ref: p.ref, Role: -1})
			}
			if ferr != nil {
				return ferr
			}
		}
		if len(got) < page {
			return nil
		}
		lastRef, lastFirst = got[len(got)-1].ref, got[len(got)-1].first
	}
}

// AuditHead implements storage.AuditLog.
func (s *Store) AuditHead(ctx context.Context) (storage.AuditHead, error) {
	var h storage.AuditHead
	err := s.db.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, ErrNoRows) {
		return h, nil // the head row was deleted: the verifier reports it
	}
	if err != nil {
		return h, fmt.Errorf("audit head: %w", err)
	}
	return h, nil
}

// SaveAuditCheckpoint implements storage.AuditLog.
func (s *Store) SaveAuditCheckpoint(ctx context.Context, seq int64, checkpoint string) error {
	if _, err := s.db.Exec(ctx, `INSERT INTO audit_checkpoints (seq, checkpoint) VALUES (?, ?)`, seq, checkpoint); err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	return nil
}

// AuditCheckpoints implements storage.AuditLog.
func (s *Store) AuditCheckpoints(ctx context.Context) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT checkpoint FROM audit_checkpoints ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("audit checkpoints: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetCommitHook implements storage.CommitHooker; call before the store is used.
func (s *Store) SetCommitHook(h storage.CommitHook) { s.commitHook = h }

// PurgeType removes every version of every resource of typ, with its
// search index, inside the transaction: the AuditEvents of the resource
// store, once moved into the audit log.
func (t *tx) PurgeType(ctx context.Context, typ string) (int64, error) {
	var n int64
	for _, table := range append([]string{"resource_versions", "resources"}, indexTables...) {
		k, err := t.c.Exec(ctx, "DELETE FROM "+table+" WHERE res_type = ?", typ)
		if err != nil {
			return 0, fmt.Errorf("purge %s from %s: %w", typ, table, err)
		}
		if table == "resource_versions" {
			n = k
		}
	}
	if t.types == nil {
		t.types = map[string]bool{}
	}
	t.types[typ] = true
	t.purged = append(t.purged, typ)
	return n, nil
}

// rowsPerInsert is how many of n rows the next multi-row INSERT of the
// audit log carries: 64, 16, 4 or 1 (see chunkOf).
func rowsPerInsert(n int) int { return chunkOf(n, auditRowsPerInsert, 16, 4, 1) }
