// Package lru is a least-recently-used map bounded by the bytes of what it
// holds, for the gateway's kept derived data (records, answered pages).
package lru

import (
	"container/list"
	"sync"
)

// Cache maps keys to values of a given size in bytes, dropping the least
// recently used values once the total exceeds its bound. It is safe for
// concurrent use.
type Cache[V any] struct {
	// Max bounds the total size; MaxEntry one value's (larger ones are not
	// kept).
	Max, MaxEntry int64

	mu    sync.Mutex
	m     map[string]*list.Element
	lru   *list.List
	bytes int64
}

type item[V any] struct {
	key  string
	v    V
	size int64
}

// Get returns the value of key and marks it used.
func (c *Cache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*item[V]).v, true
}

// Put keeps v under key, replacing what key held.
func (c *Cache[V]) Put(key string, v V, size int64) {
	if c.MaxEntry > 0 && size > c.MaxEntry {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.lru = map[string]*list.Element{}, list.New()
	}
	if el, ok := c.m[key]; ok {
		c.bytes -= el.Value.(*item[V]).size
		c.lru.Remove(el)
	}
	c.m[key] = c.lru.PushFront(&item[V]{key: key, v: v, size: size})
	c.bytes += size
	for c.bytes > c.Max && c.lru.Len() > 0 {
		last := c.lru.Back()
		it := last.Value.(*item[V])
		c.lru.Remove(last)
		delete(c.m, it.key)
		c.bytes -= it.size
	}
}
