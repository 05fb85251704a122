// Package postgres is the PostgreSQL store: storage/sqlstore on a pgx v5 pool.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

func init() {
	sqlstore.RegisterUniqueViolation(func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	})
}

// Dialect is PostgreSQL's.
var Dialect = sqlstore.Dialect{Name: "postgres", ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED", LockSQL: "SELECT pg_advisory_xact_lock(?)",
	NextSeqsSQL: "SELECT nextval(pg_get_serial_sequence('resource_versions', 'seq')) FROM generate_series(1, ?)"}

// MarkTTL is how long a replica keeps a change mark (the Consent mark a
// consented provider's every request checks) before reading it again, and
// how long a write of a Consent waits after its commit before it is
// answered (sqlstore.SharedMarks): a revocation holds on every replica for
// the next request, at the cost of this much latency on Consent writes.
var MarkTTL = 25 * time.Millisecond

// Config says where the store lives.
type Config struct {
	// URL is a postgres:// connection URL.
	URL string
	// Schema, when set, is created if missing and used as the search_path
	// (tests isolate themselves this way).
	Schema string
}

// DefaultMaxConns is the connection pool's size unless the URL sets
// pool_max_conns.
const DefaultMaxConns = 16

// migrationLock is the advisory lock key that serialises migrations when
// several gateway replicas start at once.
const migrationLock = 0x66686972 // "fhir"

// Open connects, applies the migrations and returns the store.
func Open(ctx context.Context, cfg Config, opts sqlstore.Options) (*sqlstore.Store, error) {
	db, err := OpenDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	applied, err := migrate(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if opts.ReadCacheBytes == 0 {
		opts.ReadCacheBytes = DefaultReadCacheBytes
	}
	st := sqlstore.New(db, Dialect, opts)
	st.SharedMarks(MarkTTL)
	db.shareCache(st, cfg.Schema)
	st.SetMigrations(sqlstore.MigrationNames(migrations, "migrations"))
	if err := st.AfterMigrate(ctx, applied); err != nil {
		db.Close()
		return nil, err
	}
	if len(applied) > 0 {
		// new tables and indexes start without statistics
		if _, err := db.pool.Exec(ctx, "ANALYZE "+statsTables); err != nil {
			db.Close()
			return nil, fmt.Errorf("postgres: analyze: %w", err)
		}
	}
	return st, nil
}

// Migrate applies the migrations and reports which ran.
func Migrate(ctx context.Context, cfg Config) ([]string, error) {
	db, err := OpenDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *DB) ([]string, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock) }()
	return sqlstore.Migrate(ctx, db, migrations, "migrations")
}

// OpenDB connects without migrating.
func OpenDB(ctx context.Context, cfg Config) (*DB, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad URL: %w", err)
	}
	if cfg.Schema != "" {
		if !validIdent(cfg.Schema) {
			return nil, fmt.Errorf("postgres: invalid schema name %q", cfg.Schema)
		}
		pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	}
	if !strings.Contains(cfg.URL, "pool_max_conns") {
		// pgx's default (the larger of 4 and the CPU count) is small for a
		// server: a transaction waiting on a lock (a conditional write, a
		// patient's consolidation) holds its connection while it waits.
		pc.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.Schema != "" {
		if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+cfg.Schema); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: create schema: %w", err)
		}
	}
	db := &DB{pool: pool}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// DB adapts a pgx pool to sqlstore.DB.
type DB struct {
	pool *pgxpool.Pool

	// pendingRows counts versions written since the last ANALYZE,
	// analyzedRows those written before it; analyzing is set while one
	// runs (sqlstore.StatsKeeper).
	pendingRows  atomic.Int64
	analyzedRows atomic.Int64
	analyzing    atomic.Bool
	stats        sync.WaitGroup

	// stopListen ends the read cache's listener (listen.go).
	stopListen func()
	listening  sync.WaitGroup

	// lease is the session that holds the audit log's appender role, if
	// this process does (lease.go); closed is set by Close.
	leaseMu sync.Mutex
	lease   *pgx.Conn
	closed  bool
}

// analyzeAfterRows is how many versions written since the last ANALYZE
// make the store analyse its tables at once, rather than when autovacuum's
// thresholds (a fraction of each table) are next crossed: the planner
// chooses by these statistics, and a bulk load into young tables changes
// them most.
const analyzeAfterRows = 5000

// statsTables are the tables searches plan over.
var statsTables = "resources, resource_versions, idx_string, idx_token, idx_ref, idx_date, idx_number, idx_quantity, idx_uri, idx_patient"

// Wrote implements sqlstore.StatsKeeper: after enough writes, one ANALYZE
// of the search tables runs in the background (never two at once). Enough
// is analyzeAfterRows, then as many as this process had written at the
// previous ANALYZE: the intervals double, so that a long load pays for a
// logarithmic number of analyses (each samples up to 30,000 rows of ten
// tables, about half a CPU-second) instead of one per 5,000 rows, and a
// large database is left to autovacuum's own analyses (at 10% of a table).
func (d *DB) Wrote(rows int) {
	pending := d.pendingRows.Add(int64(rows))
	if !analyzeDue(pending, d.analyzedRows.Load()) || !d.analyzing.CompareAndSwap(false, true) {
		return
	}
	d.analyzedRows.Add(d.pendingRows.Swap(0))
	d.stats.Add(1)
	go func() {
		defer d.stats.Done()
		defer d.analyzing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, _ = d.pool.Exec(ctx, "ANALYZE "+statsTables)
	}()
}

// analyzeDue says whether pending versions, written after before others
// (since the process started), call for an ANALYZE.
func analyzeDue(pending, before int64) bool {
	return pending >= max(analyzeAfterRows, before)
}

var _ sqlstore.DB = (*DB)(nil)

// Pool returns the pgx pool (River uses it).
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// rebound keeps the rebinding of the statements the gateway runs again and
// again. Searches build their SQL from the request (parameters, their
// order, modifiers, how many values): only the first maxRebound texts are
// kept, so that callers varying their searches cannot grow it without end.
var (
	rebound  sync.Map // '?' SQL -> '$n' SQL
	nRebound atomic.Int64
)

const maxRebound = 4096

// rebind turns '?' placeholders into PostgreSQL's $1, $2, ...
func rebind(q string) string {
	if v, ok := rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	if nRebound.Load() < maxRebound {
		if _, loaded := rebound.LoadOrStore(q, out); !loaded {
			nRebound.Add(1)
		}
	}
	return out
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type conn struct{ q querier }

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.q.Query(ctx, rebind(q), args...)
	if err != nil {
		return nil, err
	}
	return pgRows{rows}, nil
}

func (c conn) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return pgRow{c.q.QueryRow(ctx, rebind(q), args...)}
}

func (d *DB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return conn{d.pool}.Exec(ctx, q, args...)
}

func (d *DB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	return conn{d.pool}.Query(ctx, q, args...)
}

func (d *DB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return conn{d.pool}.QueryRow(ctx, q, args...)
}

func (d *DB) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgTx{conn{tx}, tx}, nil
}

func (d *DB) Ping(ctx context.Context) error {
	if err := d.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

func (d *DB) Close() error {
	d.closeLease()
	if d.stopListen != nil {
		d.stopListen()
	}
	d.listening.Wait()
	d.stats.Wait()
	d.pool.Close()
	return nil
}

// QueryBatch implements sqlstore.Batcher: the statements go in one round
// trip and run in one implicit transaction (pgx's batch: one Sync).
func (d *DB) QueryBatch(ctx context.Context, stmts []sqlstore.Stmt) error {
	b := &pgx.Batch{}
	for _, s := range stmts {
		b.Queue(rebind(s.SQL), s.Args...)
	}
	return batchErr(execAll(d.pool.SendBatch(ctx, b), len(stmts)))
}

// LockedBatch implements sqlstore.Batcher on one connection: BEGIN and
// first in one round trip, then's statements and COMMIT in another.
func (d *DB) LockedBatch(ctx context.Context, first sqlstore.Stmt, dest []any, then func(found bool) []sqlstore.Stmt) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(rebind(first.SQL), first.Args...)
	res := conn.SendBatch(ctx, b)
	found := true
	_, err = res.Exec()
	if err == nil {
		err = res.QueryRow().Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
	}
	if e := res.Close(); e != nil && err == nil {
		err = e
	}
	if err != nil {
		abort(ctx, conn)
		return batchErr(err)
	}
	stmts := then(found)
	b = &pgx.Batch{}
	for _, s := range stmts {
		b.Queue(rebind(s.SQL), s.Args...)
	}
	b.Queue("COMMIT") // after an error in the batch, PostgreSQL rolls back instead
	if err := execAll(conn.SendBatch(ctx, b), len(stmts)+1); err != nil {
		abort(ctx, conn)
		return batchErr(err)
	}
	return nil
}

// abort ends a transaction LockedBatch left open, or the connection.
func abort(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	if _, err := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
	}
}

// execAll reads n results of a batch and closes it: the first error.
func execAll(res pgx.BatchResults, n int) error {
	var err error
	for range n {
		if _, e := res.Exec(); e != nil && err == nil {
			err = e
		}
	}
	if e := res.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

func batchErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "22012" { // division_by_zero
		return sqlstore.ErrBatchRefused
	}
	return err
}

var _ sqlstore.Batcher = (*DB)(nil)

type pgRows struct{ pgx.Rows }

func (r pgRows) Close() { r.Rows.Close() }

type pgRow struct{ pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}

type pgTx struct {
	conn
	tx pgx.Tx
}

func (t pgTx) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgTx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// CopyRows bulk-loads rows with COPY inside the transaction.
func (t pgTx) CopyRows(ctx context.Context, table string, cols []string, rows [][]any) error {
	_, err := t.tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
	return err
}

// CopyRowsFrom copies the rows next produces, inside the transaction.
func (t pgTx) CopyRowsFrom(ctx context.Context, table string, cols []string, next func() ([]any, error)) error {
	_, err := t.tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(next))
	return err
}

var _ sqlstore.StreamCopier = pgTx{}

// ExecBatch implements sqlstore.TxBatcher: the statements in one round
// trip, inside the transaction.
func (t pgTx) ExecBatch(ctx context.Context, stmts []sqlstore.Stmt) error {
	b := &pgx.Batch{}
	for _, s := range stmts {
		b.Queue(rebind(s.SQL), s.Args...)
	}
	return execAll(t.tx.SendBatch(ctx, b), len(stmts))
}

var _ sqlstore.TxBatcher = pgTx{}
