package sqlstore

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// readCache keeps current versions of recently read or written resources.
//
// On a store that is its database's only writer (the embedded SQLite
// store) writers update it after their transactions commit. On a database
// other processes write too (PostgreSQL replicas), every write transaction
// announces the versions it replaced through the database (ShareCache) and
// each process applies the others' announcements as they arrive; the cache
// then serves only while a lease, renewed by the announcements' own
// channel, is current, so that a process that stops hearing them stops
// using what it holds.
//
// Entries are keyed by type and id and carry their version number: an
// entry is only ever replaced by a higher version, so a reader that
// fetched an old version just before a writer committed cannot put it back
// over the new one. An announcement of a version this process has not
// read leaves a placeholder (no body) with that version, which a reader's
// older version cannot replace either. Each shard has a generation that
// clearing it, or evicting a placeholder, advances: a reader keeps the body
// it fetched only if its shard's generation is the one it saw before it
// queried, and otherwise leaves its version as a placeholder; clearing keeps
// the versions as placeholders. So a process never answers a version older
// than one it has answered (TestSharedReadCacheRace).
type readCache struct {
	shards [32]cacheShard
	budget int // bytes per shard
	// leased caches serve only until validUntil (unix nanoseconds).
	leased     bool
	validUntil atomic.Int64
}

type cacheShard struct {
	mu    sync.Mutex
	m     map[string]cacheEntry
	bytes int
	gen   uint64
}

type cacheEntry struct {
	version int64
	res     *fhir.Resource // the stored version; a deletion when gone is true; nil: a placeholder
	gone    bool
}

func (e cacheEntry) size(key string) int {
	n := len(key) + 64
	if e.res != nil {
		n += len(e.res.Raw)
	}
	return n
}

func newReadCache(totalBytes int) *readCache {
	c := &readCache{budget: totalBytes / 32}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func cacheKey(typ, id string) string { return typ + "/" + id }

func (c *readCache) shard(key string) *cacheShard {
	// FNV-1a
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &c.shards[h%uint32(len(c.shards))]
}

// serving says whether the cache may answer reads now.
func (c *readCache) serving() bool {
	return !c.leased || time.Now().UnixNano() < c.validUntil.Load()
}

// get returns a held version (never a placeholder) and the shard's
// generation, to hand to put after a miss.
func (c *readCache) get(typ, id string) (cacheEntry, uint64, bool) {
	key := cacheKey(typ, id)
	sh := c.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	gen := sh.gen
	sh.mu.Unlock()
	if !ok || e.res == nil || !c.serving() {
		return cacheEntry{}, gen, false
	}
	return e, gen, true
}

// put stores a version read at generation gen unless the cache already
// holds, or has been told of, a newer one.
func (c *readCache) put(r *fhir.Resource, gone bool, gen uint64) {
	c.store(r, gone, gen, false)
}

// putWritten stores a version this process committed.
func (c *readCache) putWritten(r *fhir.Resource, gone bool) {
	c.store(r, gone, 0, true)
}

func (c *readCache) store(r *fhir.Resource, gone bool, gen uint64, written bool) {
	v, err := strconv.ParseInt(r.VersionID, 10, 64)
	if err != nil {
		return
	}
	key := cacheKey(r.Type, r.ID)
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !written && sh.gen != gen {
		// the body may predate what the cache lost meanwhile, but the
		// version was current when it was read: keep it as a floor, so
		// that no older version is answered after this one was
		sh.raise(key, v, c.budget)
		return
	}
	e := cacheEntry{version: v, res: r, gone: gone}
	if old, ok := sh.m[key]; ok {
		if old.version > v || old.version == v && old.res != nil {
			return
		}
		sh.bytes -= old.size(key)
		delete(sh.m, key)
	}
	sh.insert(key, e, c.budget)
}

// insert adds an entry, evicting arbitrary others until it fits.
func (sh *cacheShard) insert(key string, e cacheEntry, budget int) {
	size := e.size(key)
	for k, old := range sh.m {
		if sh.bytes+size <= budget {
			break
		}
		if old.res == nil {
			// a reader of an older version could now put it back
			sh.gen++
		}
		sh.bytes -= old.size(k)
		delete(sh.m, k)
	}
	sh.m[key] = e
	sh.bytes += size
}

// announced records that another process committed version v of key:
// anything older held for it is dropped, and a placeholder keeps readers
// of older versions from putting them back.
func (c *readCache) announced(key string, v int64) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.raise(key, v, c.budget)
}

// raise makes v the least version the shard will hold for key: anything
// older held is dropped for a placeholder.
func (sh *cacheShard) raise(key string, v int64, budget int) {
	if old, ok := sh.m[key]; ok {
		if old.version >= v {
			return
		}
		sh.bytes -= old.size(key)
		delete(sh.m, key)
	}
	sh.insert(key, cacheEntry{version: v}, budget)
}

// clear drops every body the cache holds (after a transaction removed
// resources wholesale, or when announcements may have been missed), and
// keeps their versions as placeholders: versions only grow, so what was
// answered stays a floor and no older version is answered after it.
func (c *readCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		m := make(map[string]cacheEntry, len(sh.m))
		bytes := 0
		for k, e := range sh.m {
			p := cacheEntry{version: e.version}
			m[k] = p
			bytes += p.size(k)
		}
		sh.m, sh.bytes = m, bytes
		sh.gen++
		sh.mu.Unlock()
	}
}
