package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// lockKey maps a lock name to the int64 an advisory lock takes. Two names
// sharing a key only serialise more than needed.
func lockKey(name string) int64 {
	h := sha256.Sum256([]byte(name))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// Lock implements storage.Tx: advisory locks held until the transaction
// ends, taken in ascending key order (two transactions locking the same
// set cannot deadlock). Keys this transaction already holds are skipped.
func (t *tx) Lock(ctx context.Context, names ...string) error {
	if t.s.dialect.LockSQL == "" || len(names) == 0 {
		return nil
	}
	keys := make([]int64, 0, len(names))
	for _, n := range names {
		k := lockKey(n)
		if !t.locked[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		var ignored any
		if err := t.c.QueryRow(ctx, t.s.dialect.LockSQL, k).Scan(&ignored); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if t.locked == nil {
			t.locked = map[int64]bool{}
		}
		t.locked[k] = true
	}
	return nil
}
