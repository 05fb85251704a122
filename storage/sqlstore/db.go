// Package sqlstore is the one SQL implementation of storage.Store that the
// SQLite and PostgreSQL backends share: same statements, same behaviour,
// with the few dialect differences (placeholders, migrations, locking)
// supplied by each backend. Backends adapt their driver to DB.
package sqlstore

import (
	"context"
	"errors"
)

// ErrNoRows is what a Row.Scan of an empty result answers; backends map
// their driver's own error to it.
var ErrNoRows = errors.New("sqlstore: no rows")

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result.
type Row interface {
	Scan(dest ...any) error
}

// Conn runs statements. SQL is written with '?' placeholders; the dialect
// rewrites them.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) Row
}

// TxConn is a Conn inside a transaction.
type TxConn interface {
	Conn
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// DB is a backend's connection pool.
type DB interface {
	Conn
	// Begin starts a read-write transaction. SQLite takes the write lock
	// immediately; PostgreSQL uses READ COMMITTED plus row locks.
	Begin(ctx context.Context) (TxConn, error)
	Ping(ctx context.Context) error
	Close() error
}

// Dialect names the SQL differences between backends.
type Dialect struct {
	Name string
	// ForUpdate is appended to a SELECT that reads a row about to be
	// changed (" FOR UPDATE" on PostgreSQL, "" on SQLite whose write lock
	// is already exclusive).
	ForUpdate string
	// SkipLocked is appended to a SELECT that locks a row unless another
	// transaction holds it (" FOR UPDATE SKIP LOCKED" on PostgreSQL): the
	// audit log's appenders then store their events pending instead of
	// waiting for the head (audit_pending). Empty where there is one
	// writer anyway (SQLite): there is no pending table.
	SkipLocked string
	// LockSQL takes a transaction-scoped exclusive lock on one int64 key
	// ("SELECT pg_advisory_xact_lock(?)" on PostgreSQL); empty where
	// transactions are already serialised (SQLite's single writer).
	LockSQL string
	// NextSeqsSQL, when set, takes ? new sequence numbers of
	// resource_versions.seq (one per row), so that versions can be written
	// with COPY (a Copier) and still be numbered by the database.
	NextSeqsSQL string
	// BatchInsert begins the multi-row INSERTs of new rows (index rows,
	// new resources' first versions). SQLite's "INSERT OR FAIL INTO" ends
	// such a statement at its first error without undoing the statement's
	// earlier rows, so SQLite keeps no statement journal for it (a copy of
	// every page the statement changes: 6% of a bulk load's CPU). Every
	// caller fails the whole transaction on any error, so nothing of a
	// failed statement survives. Empty means "INSERT INTO".
	BatchInsert string
}

// batchInsert is the dialect's BatchInsert or the standard form.
func (d Dialect) batchInsert() string {
	if d.BatchInsert != "" {
		return d.BatchInsert
	}
	return "INSERT INTO"
}

// Copier is implemented by connections that can bulk-load rows faster than
// multi-row INSERTs (PostgreSQL's COPY). The index writer uses it when the
// transaction's connection offers it.
type Copier interface {
	CopyRows(ctx context.Context, table string, cols []string, rows [][]any) error
}

// StreamCopier is a Copier that can also copy rows as a function produces
// them: next returns the next row, or nil at the end (the row may be
// reused once next is called again). An error from next aborts the copy
// and is returned.
type StreamCopier interface {
	Copier
	CopyRowsFrom(ctx context.Context, table string, cols []string, next func() ([]any, error)) error
}
