// Package sqlite is the embedded store: storage/sqlstore on
// modernc.org/sqlite (pure Go, no cgo), one database file in WAL mode.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

func init() {
	sqlstore.RegisterUniqueViolation(func(err error) bool {
		var se *sqlite.Error
		if errors.As(err, &se) {
			c := se.Code()
			return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	})
}

// Dialect is SQLite's.
var Dialect = sqlstore.Dialect{Name: "sqlite", BatchInsert: "INSERT OR FAIL INTO"}

// Open opens (creating if needed) the database file at path, applies the
// migrations and returns the store. Writes go through one connection that
// takes SQLite's write lock at BEGIN, so writers queue instead of failing;
// reads use a pool of read-only connections that WAL lets run alongside.
func Open(ctx context.Context, path string, opts sqlstore.Options) (*sqlstore.Store, error) {
	db, err := OpenDB(ctx, path)
	if err != nil {
		return nil, err
	}
	applied, err := sqlstore.Migrate(ctx, db, migrations, "migrations")
	if err != nil {
		db.Close()
		return nil, err
	}
	if opts.ReadCacheBytes == 0 {
		// this process is the database's only writer: reads may be cached
		opts.ReadCacheBytes = DefaultReadCacheBytes
	}
	st := sqlstore.New(db, Dialect, opts)
	st.SetMigrations(sqlstore.MigrationNames(migrations, "migrations"))
	if err := st.AfterMigrate(ctx, applied); err != nil {
		db.Close()
		return nil, err
	}
	return st, nil
}

// DefaultReadCacheBytes is the read cache of the embedded store; set
// sqlstore.Options.ReadCacheBytes negative to turn it off.
const DefaultReadCacheBytes = 64 << 20

// Migrate applies the migrations to the database at path and reports which ran.
func Migrate(ctx context.Context, path string) ([]string, error) {
	db, err := OpenDB(ctx, path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return sqlstore.Migrate(ctx, db, migrations, "migrations")
}

// pageSize is the page size of a new database file. Larger pages suit the
// bulk loads (fewer B-tree pages to split and write), smaller ones the
// small commits every read's audit event makes: 8 KiB loaded the Synthea
// set 12% faster than 4 KiB and served reads as fast; 16 KiB loaded no
// faster than 8 and served reads 10% slower, with a 25% higher p99.
const pageSize = 8192

// createFile creates the database file with pageSize pages if it does not
// exist yet. The page size is fixed by the first write, and the driver
// applies a DSN's pragmas in lexical order, journal_mode (which writes the
// header) before page_size: a page_size pragma in the DSN never took
// effect, and earlier versions made every database with 4 KiB pages.
// Existing files keep their page size.
func createFile(ctx context.Context, path string) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath())
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer db.Close()
	for _, q := range []string{fmt.Sprintf("PRAGMA page_size=%d", pageSize), "PRAGMA journal_mode=WAL"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlite: create %s: %w", path, err)
		}
	}
	return nil
}

// OpenDB opens the file without migrating.
func OpenDB(ctx context.Context, path string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	if err := createFile(ctx, path); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", fmt.Sprintf("journal_size_limit(%d)", walFileLimit), "busy_timeout(10000)", "synchronous(NORMAL)", "foreign_keys(1)", "cache_size(-65536)", "temp_store(MEMORY)", "mmap_size(1073741824)", "analysis_limit(2000)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	// Writers do not checkpoint the WAL themselves: a background
	// connection does, so that commits do not pay for copying pages back.
	if _, err := w.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0)*2)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	ck, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	ck.SetMaxOpenConns(1)
	db := &DB{pageSize: pageSize, w: w, r: r, ck: ck, stop: make(chan struct{}), done: make(chan struct{}), analyze: make(chan struct{}, 1)}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// statistics for the query planner: analyse what needs it now, again
	// after bulk writes (Wrote) and periodically (PRAGMA optimize is cheap
	// when nothing changed); analysis_limit, set on every connection (the
	// refreshes run on the writer's), bounds what one ANALYZE reads
	_ = ck.QueryRowContext(ctx, "PRAGMA page_size").Scan(&db.pageSize)
	_, _ = ck.ExecContext(ctx, "PRAGMA optimize=0x10002")
	go db.checkpointer()
	return db, nil
}

// checkpointInterval is how often the WAL is copied back into the database;
// optimizeInterval how often the planner's statistics are refreshed.
const (
	checkpointInterval = 250 * time.Millisecond
	optimizeInterval   = 5 * time.Minute
)

// walLimit bounds the write-ahead log's content. A passive checkpoint
// copies pages back but never rewinds the log while readers are reading
// from it, and under a steady read load (each read also appends its audit
// event) some reader always is: the log grew by gigabytes an hour. Once it
// holds more than walLimit, the checkpointer follows its passive checkpoint
// with a RESTART checkpoint, which holds up writers (for as long as it
// copies what was appended since the passive one a moment before, syncs,
// and waits for the readers still reading from the log, at most
// restartWait: a long read, an export, makes it give up) so that the next
// commit starts the log from its beginning; tried at most every
// restartEvery. Small and often: a restart's pause grows with what the log
// gained since the passive checkpoint and with the readers to wait for,
// and under 8,000 reads a second a log allowed to reach 64 MiB between
// restarts tried every 5 s paused writers for up to a third of a second.
// walFileLimit bounds the file (journal_size_limit truncates it back to
// that after a restart); a file that keeps its size is rewritten in place,
// without growing it, which also costs the file system less.
var (
	walLimit     int64 = 4 << 20
	walFileLimit int64 = 64 << 20
	restartWait        = 2 * time.Millisecond
	restartEvery       = 250 * time.Millisecond
)

// A passive checkpoint of a log that reached walLimit copies thousands of
// frames and syncs them, 35–45 ms, while appends go on: the restart right
// after it copied, with writers held up, the 500–850 frames that came
// meanwhile and paused them for 7–15 ms, twice a second at 2,000 audited
// reads a second (most of the trail's p99 on a VM with slow syncs). Up to
// catchUpPasses more passive checkpoints run first, each copying what came
// during the one before (about 750, 150, 50 frames), until one copies at
// most catchUpFrames: the restart then pauses writers for 1.4–2.5 ms.
const (
	catchUpPasses = 4
	catchUpFrames = 64
)

// analyzeAfterRows is how many versions written since the last analysis
// make the next checkpoint tick refresh the planner's statistics.
const analyzeAfterRows = 1000

// Wrote counts versions a committed transaction wrote (sqlstore.StatsKeeper);
// enough of them wake the background connection to analyse at once.
func (d *DB) Wrote(rows int) {
	if d.pendingRows.Add(int64(rows)) >= analyzeAfterRows {
		select {
		case d.analyze <- struct{}{}:
		default:
		}
	}
}

// checkpointer runs passive checkpoints (which never block writers or
// readers) in the background, and a full one at close; it refreshes the
// planner's statistics after bulk writes and every optimizeInterval.
func (d *DB) checkpointer() {
	defer close(d.done)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	lastOptimize := time.Now()
	var lastRestart time.Time
	optimize := func() {
		// optimize analyses the tables whose size changed enough since
		// their last analysis (or that never had one)
		d.pendingRows.Store(0)
		_, _ = d.w.Exec("PRAGMA optimize=0x10002")
		lastOptimize = time.Now()
	}
	for {
		select {
		case <-d.stop:
			_, _ = d.ck.Exec("PRAGMA optimize")
			_, _ = d.ck.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			return
		case <-d.analyze:
			optimize()
		case <-t.C:
			// copy what the log holds back into the database, waiting
			// for no one; log is how many frames the log holds since it
			// last started from its beginning
			var busy, log, done int64
			passive := func() error {
				return d.ck.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done)
			}
			if err := passive(); err == nil && log*d.pageSize > walLimit && time.Since(lastRestart) > restartEvery {
				// the restart copies, with writers held up, what came
				// since the passive checkpoint: catch up first (each
				// pass copies what came during the one before)
				for range catchUpPasses {
					prev := done
					if passive() != nil || done-prev <= catchUpFrames {
						break
					}
				}
				lastRestart = time.Now()
				d.restart()
			}
			if time.Since(lastOptimize) > optimizeInterval || d.pendingRows.Load() >= analyzeAfterRows {
				optimize()
			}
		}
	}
}

// restart runs the RESTART checkpoint on the writer's connection. Whatever
// connection rewinds the log rewrites the log's header, and every other
// connection that sees a changed header drops its whole page cache before
// its next transaction: run from the checkpointer's connection, each restart
// emptied the writer's cache (64 MiB of B-tree pages, freed and faulted in
// again: a fifth of a bulk load's CPU). The writer that rewound the log
// keeps its cache. The same holds for ANALYZE, which writes statistics
// (optimize above).
func (d *DB) restart() {
	ctx := context.Background()
	c, err := d.w.Conn(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout=%d", restartWait.Milliseconds()))
	_, _ = c.ExecContext(ctx, "PRAGMA wal_checkpoint(RESTART)")
	_, _ = c.ExecContext(ctx, "PRAGMA busy_timeout=10000")
}

// DB adapts database/sql to sqlstore.DB with a writer and a reader pool.
type DB struct {
	// pageSize is the database's page size, a frame of the log
	pageSize int64
	w, r     *sql.DB
	// ck checkpoints the WAL in the background until stop is closed.
	ck         *sql.DB
	stop, done chan struct{}
	// analyze wakes the checkpointer to refresh statistics; pendingRows
	// counts versions written since the last refresh.
	analyze     chan struct{}
	pendingRows atomic.Int64

	// Prepared reader statements, by SQL text. Preparing costs about as
	// much as running a point read, so the hot reads keep theirs. Bounded:
	// dynamically built SQL beyond maxStmts is run unprepared.
	mu     sync.Mutex // serialises preparing
	stmts  sync.Map   // string -> *sql.Stmt
	nstmts int

	// Prepared writer statements, by SQL text, on the writer pool's one
	// connection: a transaction uses them (Tx.StmtContext finds them
	// prepared on its connection) instead of parsing its statements
	// again; parsing was a tenth of the CPU of a read's audit append.
	// A statement cannot be prepared inside a transaction for later ones
	// (the transaction holds the only connection), so one run often
	// enough is noted and prepared at the next Begin. Bounded like stmts.
	wmu    sync.Mutex
	wseen  map[string]int // runs of statements not prepared yet (bounded)
	wwant  []string       // to prepare at the next Begin
	wstmts sync.Map       // string -> *sql.Stmt
	nw     int
}

// prepareAfter is how often a writer statement runs before it is prepared.
const prepareAfter = 4

// noteWrite counts a run of q inside a transaction, unprepared.
func (d *DB) noteWrite(q string) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.nw+len(d.wwant) >= maxStmts {
		return
	}
	if d.wseen == nil || len(d.wseen) >= 4*maxStmts {
		d.wseen = map[string]int{}
	}
	if d.wseen[q]++; d.wseen[q] == prepareAfter {
		delete(d.wseen, q)
		d.wwant = append(d.wwant, q)
	}
}

// prepareWrites prepares the noted writer statements; called with no
// transaction of the caller's open.
func (d *DB) prepareWrites(ctx context.Context) {
	d.wmu.Lock()
	want := d.wwant
	d.wwant = nil
	d.wmu.Unlock()
	for _, q := range want {
		if _, ok := d.wstmts.Load(q); ok {
			continue
		}
		st, err := d.w.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		d.wstmts.Store(q, st)
		d.wmu.Lock()
		d.nw++
		d.wmu.Unlock()
	}
}

const maxStmts = 256

func (d *DB) readStmt(ctx context.Context, q string) *sql.Stmt {
	if st, ok := d.stmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.stmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	if d.nstmts >= maxStmts {
		return nil
	}
	st, err := d.r.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	d.stmts.Store(q, st)
	d.nstmts++
	return st
}

var _ sqlstore.DB = (*DB)(nil)

// Writer returns the single write connection pool (River uses it).
func (d *DB) Writer() *sql.DB { return d.w }

func isWrite(q string) bool {
	q = strings.TrimLeft(q, " \t\n")
	return len(q) < 6 || !strings.EqualFold(q[:6], "SELECT")
}

func (d *DB) pick(q string) *sql.DB {
	if isWrite(q) {
		return d.w
	}
	return d.r
}

func (d *DB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := d.w.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (d *DB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	if !isWrite(q) {
		if st := d.readStmt(ctx, q); st != nil {
			rows, err := st.QueryContext(ctx, args...)
			if err != nil {
				return nil, err
			}
			return sqlRows{rows}, nil
		}
	}
	rows, err := d.pick(q).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (d *DB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	if !isWrite(q) {
		if st := d.readStmt(ctx, q); st != nil {
			return sqlRow{st.QueryRowContext(ctx, args...)}
		}
	}
	return sqlRow{d.pick(q).QueryRowContext(ctx, q, args...)}
}

func (d *DB) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	d.wmu.Lock()
	pending := len(d.wwant) > 0
	d.wmu.Unlock()
	if pending {
		d.prepareWrites(ctx)
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqlTx{tx: tx, d: d}, nil
}

func (d *DB) Ping(ctx context.Context) error {
	if err := d.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return d.r.PingContext(ctx)
}

func (d *DB) Close() error {
	if d.stop != nil {
		close(d.stop)
		<-d.done
		d.stop = nil
	}
	for _, m := range []*sync.Map{&d.stmts, &d.wstmts} {
		m.Range(func(_, st any) bool {
			st.(*sql.Stmt).Close()
			return true
		})
	}
	return errors.Join(d.r.Close(), d.w.Close(), d.ck.Close())
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlRow struct{ *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}

type sqlTx struct {
	tx    *sql.Tx
	d     *DB
	local map[string]*sql.Stmt // the prepared statements as this transaction's
}

// stmt is q prepared for the transaction, or nil (then q is noted).
func (t *sqlTx) stmt(ctx context.Context, q string) *sql.Stmt {
	if st, ok := t.local[q]; ok {
		return st
	}
	p, ok := t.d.wstmts.Load(q)
	if !ok {
		t.d.noteWrite(q)
		return nil
	}
	st := t.tx.StmtContext(ctx, p.(*sql.Stmt))
	if t.local == nil {
		t.local = map[string]*sql.Stmt{}
	}
	t.local[q] = st
	return st
}

func (t *sqlTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := t.stmt(ctx, q); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = t.tx.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *sqlTx) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	var rows *sql.Rows
	var err error
	if st := t.stmt(ctx, q); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = t.tx.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (t *sqlTx) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	if st := t.stmt(ctx, q); st != nil {
		return sqlRow{st.QueryRowContext(ctx, args...)}
	}
	return sqlRow{t.tx.QueryRowContext(ctx, q, args...)}
}

func (t *sqlTx) Commit(context.Context) error   { return t.tx.Commit() }
func (t *sqlTx) Rollback(context.Context) error { return t.tx.Rollback() }
