package sqlstore

import "sync"

// markCache keeps ChangeMark answers in memory for a store that is its
// database's only writer (the same condition as the read cache): a mark
// is read from the database once and kept until a transaction that wrote
// the type commits. A consented provider's every request asks for the
// Consent mark; with this it costs a map lookup instead of a query.
//
// Each type has a generation that a commit advances: a reader stores the
// mark it queried only if the generation is still the one it saw before
// querying, so a mark read while a writer committed is never kept.
type markCache struct {
	mu sync.Mutex
	m  map[string]markEntry
}

type markEntry struct {
	val   int64
	known bool
	gen   uint64
}

func newMarkCache() *markCache { return &markCache{m: map[string]markEntry{}} }

// get returns the kept mark, or the generation to hand to put.
func (c *markCache) get(typ string) (int64, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[typ]
	return e.val, e.known, e.gen
}

// put keeps a mark queried at generation gen.
func (c *markCache) put(typ string, val int64, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[typ]; e.gen == gen {
		c.m[typ] = markEntry{val: val, known: true, gen: gen}
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
