package server

import (
	"container/list"
	"sync"
)

// pageCache keeps the bytes of the $everything pages the gateway answered
// without a release rule (no authentication, or nothing to decide), with
// the version of the record each was read from (storage.SearchResult
// .Version): the store says whether the record is still at that version
// without reading it, and the page is then sent again as it was. Bounded
// by bytes; a page is dropped when its record moves on.
type pageCache struct {
	mu    sync.Mutex
	m     map[string]*pageEntry
	lru   *list.List
	bytes int
}

type pageEntry struct {
	key, version string
	body         []byte
	patients     []string
	elem         *list.Element
}

const (
	pageCacheBytes = 64 << 20
	pageMaxBytes   = 16 << 20
)

func (c *pageCache) get(key string) *pageEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e != nil {
		c.lru.MoveToFront(e.elem)
	}
	return e
}

func (c *pageCache) put(e *pageEntry) {
	if len(e.body) > pageMaxBytes || e.version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.lru = map[string]*pageEntry{}, list.New()
	}
	if old := c.m[e.key]; old != nil {
		c.lru.Remove(old.elem)
		c.bytes -= len(old.body)
	}
	e.elem = c.lru.PushFront(e)
	c.m[e.key] = e
	c.bytes += len(e.body)
	for c.bytes > pageCacheBytes {
		last := c.lru.Back()
		old := last.Value.(*pageEntry)
		c.lru.Remove(last)
		delete(c.m, old.key)
		c.bytes -= len(old.body)
	}
}
