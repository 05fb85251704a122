package sqlstore

import (
	"strconv"
	"sync"

	"github.com/fhirgate/fhirgate/fhir"
)

// readCache keeps current versions of recently read or written resources
// for a store that is the only writer of its database (the embedded SQLite
// store; never PostgreSQL, where other replicas write). Entries are keyed
// by type and id and carry their version number: an entry is only ever
// replaced by a higher version, so a reader that fetched an old version
// just before a writer committed cannot put it back over the new one.
// Writers update the cache after their transaction commits.
type readCache struct {
	shards [32]cacheShard
	budget int // bytes per shard
}

type cacheShard struct {
	mu    sync.Mutex
	m     map[string]cacheEntry
	bytes int
}

type cacheEntry struct {
	version int64
	res     *fhir.Resource // the stored version; a deletion when gone is true
	gone    bool
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

func (c *readCache) get(typ, id string) (cacheEntry, bool) {
	key := cacheKey(typ, id)
	sh := c.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	sh.mu.Unlock()
	return e, ok
}

// put stores a version unless the cache already holds a newer one.
func (c *readCache) put(r *fhir.Resource, gone bool) {
	v, err := strconv.ParseInt(r.VersionID, 10, 64)
	if err != nil {
		return
	}
	key := cacheKey(r.Type, r.ID)
	size := len(r.Raw) + len(key) + 64
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[key]; ok {
		if old.version >= v {
			return
		}
		sh.bytes -= len(old.res.Raw) + len(key) + 64
	}
	for k, e := range sh.m { // evict arbitrary entries until it fits
		if sh.bytes+size <= c.budget {
			break
		}
		sh.bytes -= len(e.res.Raw) + len(k) + 64
		delete(sh.m, k)
	}
	sh.m[key] = cacheEntry{version: v, res: r, gone: gone}
	sh.bytes += size
}

// clear empties the cache (after a transaction removed resources wholesale).
func (c *readCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.m = make(map[string]cacheEntry)
		sh.bytes = 0
		sh.mu.Unlock()
	}
}
