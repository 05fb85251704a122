package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/storage"
)

// AdapterState keeps small values by key for source adapters that must
// remember things between callbacks (the ABDM HIU's consent ledger and the
// key material of its open transfers), in the store's database so that
// every replica sees them. It implements abdm.StateStore.
type AdapterState struct {
	s *Store
}

// stateLocks serialise AdapterState.Update per key in this process (on
// SQLite, whose one process is the database's only writer).
type stateLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// AdapterState returns the store's adapter state.
func (s *Store) AdapterState() *AdapterState { return &AdapterState{s: s} }

// Get returns the value under key; nil when there is none.
func (a *AdapterState) Get(ctx context.Context, key string) ([]byte, error) {
	return getState(ctx, a.s.db, key)
}

func getState(ctx context.Context, c Conn, key string) ([]byte, error) {
	var v []byte
	err := c.QueryRow(ctx, `SELECT value FROM adapter_state WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("adapter state %s: %w", key, err)
	}
	return v, nil
}

// Keys lists the keys that start with prefix, in order.
func (a *AdapterState) Keys(ctx context.Context, prefix string) ([]string, error) {
	rows, err := a.s.db.Query(ctx, `SELECT key FROM adapter_state WHERE key >= ? AND key < ? ORDER BY key`, prefix, prefix+"\U0010FFFF")
	if err != nil {
		return nil, fmt.Errorf("adapter state keys: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

// Update runs fn on the value under key (nil when none) while holding a
// lock on key that every process sharing the database respects, and keeps
// what fn returns (nil deletes the key). fn may write elsewhere meanwhile
// (the patient's record, other keys): on PostgreSQL the lock is an
// advisory lock of a transaction of its own, which holds nothing fn's
// writes need; on SQLite, whose single writer fn's writes need, it is a
// lock of this process, the database's only one, and the value is written
// in a short transaction after fn. An error from fn keeps the value.
func (a *AdapterState) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) error {
	return a.s.underKeyLock(ctx, "adapter-state:"+key, false, func(c Conn) (func(Conn) error, error) {
		old, err := getState(ctx, c, key)
		if err != nil {
			return nil, err
		}
		v, err := fn(old)
		if err != nil {
			return nil, err
		}
		return func(c Conn) error { return putState(ctx, c, key, v, a.s.clock()) }, nil
	})
}

// underKeyLock runs read while holding a lock on key that every process
// sharing the database respects, then the write it returns. On PostgreSQL
// both run in one transaction holding an advisory lock (which holds
// nothing else read's work may need); on SQLite, whose single writer
// read's work may need, the lock is one of this process (the database's
// only one), read runs outside a transaction and write in a short one.
// audited: the write changes a patient's state on behalf of the request
// in ctx (a source connection), so the transaction it commits in carries
// the request's audit events (the commit hook runs with nothing written).
func (s *Store) underKeyLock(ctx context.Context, key string, audited bool, read func(c Conn) (write func(c Conn) error, err error)) error {
	if s.dialect.LockSQL == "" {
		unlock := s.stateLocks.lock(key)
		defer unlock()
		write, err := read(s.db)
		if err != nil {
			return err
		}
		if !audited {
			return s.inTx(ctx, write)
		}
		return s.InTx(ctx, func(t storage.Tx) error {
			tx := t.(*tx)
			tx.audited = true
			return write(tx.c)
		})
	}
	return s.InTx(ctx, func(t storage.Tx) error {
		tx := t.(*tx)
		tx.audited = audited
		if err := tx.Lock(ctx, key); err != nil {
			return err
		}
		write, err := read(tx.c)
		if err != nil {
			return err
		}
		return write(tx.c)
	})
}

func putState(ctx context.Context, c Conn, key string, v []byte, now interface{ UnixMicro() int64 }) error {
	var err error
	if v == nil {
		_, err = c.Exec(ctx, `DELETE FROM adapter_state WHERE key = ?`, key)
	} else {
		_, err = c.Exec(ctx, `INSERT INTO adapter_state (key, value, updated) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated`, key, v, now.UnixMicro())
	}
	if err != nil {
		return fmt.Errorf("adapter state %s: %w", key, err)
	}
	return nil
}

// lock locks key in this process; the returned function unlocks it.
func (sl *stateLocks) lock(key string) func() {
	sl.mu.Lock()
	if sl.locks == nil {
		sl.locks = map[string]*keyLock{}
	}
	l := sl.locks[key]
	if l == nil {
		l = &keyLock{}
		sl.locks[key] = l
	}
	l.refs++
	sl.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		sl.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(sl.locks, key)
		}
		sl.mu.Unlock()
	}
}
