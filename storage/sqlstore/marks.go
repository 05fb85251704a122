package sqlstore

import (
	"sync"
	"time"
)

// markCache keeps ChangeMark answers in memory. A consented provider's
// every request asks for the Consent mark; with this it costs a map lookup
// instead of a query.
//
// On a store that is its database's only writer (the same condition as the
// read cache) a mark is kept until a transaction that wrote the type
// commits. Each type has a generation that a commit advances: a reader
// stores the mark it queried only if the generation is still the one it saw
// before querying, so a mark read while a writer committed is never kept.
//
// On a database other processes write too (replicas on one PostgreSQL) a
// mark is kept for ttl from when its query began (SharedMarks), and a
// transaction that wrote a type whose mark is watched waits ttl after its
// commit before it returns (so before its response is sent): by then every
// process's kept mark was read after the commit. A request that begins
// after a revoking write was answered therefore sees the revocation, on
// whichever replica it lands, and only writes of Consents pay for it.
type markCache struct {
	mu  sync.Mutex
	m   map[string]markEntry
	ttl time.Duration // 0: only writer, kept until written
}

type markEntry struct {
	val   int64
	known bool
	gen   uint64
	at    time.Time // when the query that read val began (ttl)
}

func newMarkCache() *markCache { return &markCache{m: map[string]markEntry{}} }

// get returns the kept mark, or the generation to hand to put.
func (c *markCache) get(typ string) (int64, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[typ]
	if e.known && c.ttl > 0 && time.Since(e.at) >= c.ttl {
		return 0, false, e.gen
	}
	return e.val, e.known, e.gen
}

// put keeps a mark queried at generation gen, by a query begun at at.
func (c *markCache) put(typ string, val int64, gen uint64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[typ]; e.gen == gen && (!e.known || !at.Before(e.at)) {
		c.m[typ] = markEntry{val: val, known: true, gen: gen, at: at}
	}
}

// written forgets the marks of types a committed transaction wrote.
func (c *markCache) written(types map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for typ := range types {
		e := c.m[typ]
		c.m[typ] = markEntry{gen: e.gen + 1}
	}
}
