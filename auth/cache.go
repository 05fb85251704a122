package auth

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// tokenKey identifies a token in caches without keeping the token itself in
// memory longer than the request.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey {
	// Hashing the string's bytes in place saves the copy; Sum256 keeps
	// no reference to them.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// ttlCache is a bounded map whose entries expire. When full it first drops
// expired entries, then arbitrary ones (Go's map order), down to 7/8 of its
// size, so that inserts stay amortised O(1) and the memory bounded even
// when an attacker sends many distinct tokens.
type ttlCache[V any] struct {
	mu      sync.RWMutex
	max     int
	entries map[tokenKey]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](max int) *ttlCache[V] {
	return &ttlCache[V]{max: max, entries: make(map[tokenKey]ttlEntry[V])}
}

func (c *ttlCache[V]) get(k tokenKey, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k tokenKey, v V, expires, now time.Time) {
	if c.max <= 0 || !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.entries[k]; !exists && len(c.entries) >= c.max {
		for key, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries {
			if len(c.entries) <= c.max*7/8 {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = ttlEntry[V]{v: v, expires: expires}
}

func (c *ttlCache[V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
