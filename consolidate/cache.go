package consolidate

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Reading a patient's whole record to find duplicates costs time in
// proportion to the record, on every batch: a lab feed into one patient
// slows as the record grows. The consolidator therefore keeps the state
// it derived from a record (dedup keys, sources, duplicates) between
// batches, with the store's RecordMark of the record at the end of the
// batch that produced it. The next batch of the patient uses it when the
// mark is unchanged (nothing else wrote the record: no REST change or
// deletion of a resource of it, no other writer's batch), updating it
// with what the batch writes; otherwise, and at least every
// cacheMaxBatches batches or cacheMaxAge, it reads the record again.

const (
	cacheMaxBatches  = 200
	cacheMaxAge      = 10 * time.Minute
	cacheMaxPatients = 256 // the states kept at once; the least recently used goes
)

// stateCache holds the cached states of the patients consolidated last.
type stateCache struct {
	mu   sync.Mutex
	m    map[string]*cachedState
	tick uint64
}

func (sc *stateCache) Load(pid string) (any, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	e, ok := sc.m[pid]
	if ok {
		sc.tick++
		e.used = sc.tick
	}
	return e, ok
}

func (sc *stateCache) Delete(pid string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.m, pid)
}

func (sc *stateCache) Store(pid string, e *cachedState) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.m == nil {
		sc.m = map[string]*cachedState{}
	}
	sc.tick++
	e.used = sc.tick
	sc.m[pid] = e
	if len(sc.m) > cacheMaxPatients {
		oldest, at := "", uint64(0)
		for k, v := range sc.m {
			if oldest == "" || v.used < at {
				oldest, at = k, v.used
			}
		}
		delete(sc.m, oldest)
	}
}

// cachedState is one patient's state as of mark.
type cachedState struct {
	st      *state
	mark    string
	refs    []string // the refs the mark covers, sorted
	batches int
	at      time.Time
	used    uint64 // for eviction
}

// sourceOf is the source of a resource a source delivered, "" for the
// gateway's own and anyone else's (scan leaves those out).
func sourceOf(r *fhir.Resource) string {
	src := metaSource(r)
	if !strings.HasPrefix(src, SourcePrefix) || tag(r, TagGenerated) != "" {
		return ""
	}
	return strings.TrimPrefix(src, SourcePrefix)
}

// add records a stored resource as scan does (once, however often it is
// added).
func (st *state) add(r *fhir.Resource) {
	src := sourceOf(r)
	if src == "" {
		return
	}
	ref := r.Type + "/" + r.ID
	ci := copyInfo{ref, src}
	// apply may have recorded it already while deciding the batch
	addOnce := func(cs []copyInfo) []copyInfo {
		if slices.ContainsFunc(cs, func(c copyInfo) bool { return c.ref == ref }) {
			return cs
		}
		return append(cs, ci)
	}
	if of := DuplicateOf(r); of != "" {
		st.dups[of] = addOnce(st.dups[of])
		return
	}
	st.keptSource[ref] = src
	for _, k := range dedupKeys(r) {
		st.kept[k] = addOnce(st.kept[k])
	}
	st.sigs[ref] = refSig(r.Root())
	st.srcIDs[ref] = tag(r, TagSourceID)
}

// remove forgets a stored version recorded with add.
func (st *state) remove(r *fhir.Resource) {
	if sourceOf(r) == "" {
		return
	}
	ref := r.Type + "/" + r.ID
	drop := func(cs []copyInfo) []copyInfo {
		return slices.DeleteFunc(cs, func(c copyInfo) bool { return c.ref == ref })
	}
	if of := DuplicateOf(r); of != "" {
		if st.dups[of] = drop(st.dups[of]); len(st.dups[of]) == 0 {
			delete(st.dups, of)
		}
		return
	}
	delete(st.keptSource, ref)
	for _, k := range dedupKeys(r) {
		if st.kept[k] = drop(st.kept[k]); len(st.kept[k]) == 0 {
			delete(st.kept, k)
		}
	}
	delete(st.sigs, ref)
	delete(st.srcIDs, ref)
}

// refs lists what the state knows of, for the record mark.
func (st *state) refs() []string {
	out := make([]string, 0, len(st.keptSource)+len(st.dups))
	for ref := range st.keptSource {
		out = append(out, ref)
	}
	for _, cs := range st.dups {
		for _, c := range cs {
			out = append(out, c.ref)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// stateFor returns the patient's state: the cached one when the record is
// as the last batch left it, else a fresh scan. The batch changes it in
// place (a failed batch drops it from the cache) and remember adds what
// the batch wrote.
func (c *Consolidator) stateFor(ctx context.Context, tx storage.Tx, pid string) (*state, error) {
	rm, ok := tx.(storage.RecordMarker)
	if ok && !c.NoStateCache {
		if v, found := c.states.Load(pid); found {
			e := v.(*cachedState)
			if e.batches < cacheMaxBatches && time.Since(e.at) < cacheMaxAge {
				mark, err := rm.RecordMark(ctx, pid, e.refs)
				if err != nil {
					return nil, err
				}
				if mark == e.mark {
					return e.st, nil
				}
			}
			c.states.Delete(pid)
		}
	}
	return c.scan(ctx, tx, pid)
}

// written is one resource version a batch stored, with the one it
// replaced (nil for a create).
type written struct{ old, new *fhir.Resource }

// remember updates st with a batch's writes and caches it with the
// record's mark as of those writes (read inside the batch's transaction,
// so that it covers exactly them); the caller forgets it if the
// transaction does not commit.
func (c *Consolidator) remember(ctx context.Context, tx storage.Tx, pid string, st *state, ws []written) error {
	rm, ok := tx.(storage.RecordMarker)
	if !ok || c.NoStateCache {
		return nil
	}
	for _, w := range ws {
		if w.old != nil {
			st.remove(w.old)
		}
		st.add(w.new)
	}
	refs := st.refs()
	mark, err := rm.RecordMark(ctx, pid, refs)
	if err != nil {
		return err
	}
	e := &cachedState{st: st, mark: mark, refs: refs, at: time.Now()}
	if v, found := c.states.Load(pid); found && v.(*cachedState).st == st {
		prev := v.(*cachedState)
		e.batches, e.at = prev.batches+1, prev.at
	}
	c.states.Store(pid, e)
	return nil
}
