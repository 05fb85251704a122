package sqlstore

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// A read cache on a database that other processes write too (gateway
// replicas on one PostgreSQL) stays correct through announcements: every
// write transaction tells the others, inside the transaction, which
// versions it replaced, and the database delivers that after the commit
// and in commit order (PostgreSQL's NOTIFY). The backend listens, applies
// what arrives with Announced, and renews the cache's lease with
// RenewCache each time a message it sent itself comes back through the
// same channel (everything committed before that message was sent has
// then been applied). Until the lease is renewed, and whenever the channel
// is lost, the cache answers nothing and reads go to the database.

// maxAnnouncement is the largest payload of one announcement (PostgreSQL
// refuses 8,000 bytes or more).
const maxAnnouncement = 7900

// maxAnnouncements is how many announcements one transaction sends before
// it asks every process to clear its cache instead (a bulk update).
const maxAnnouncements = 8

// AnnounceAll is the announcement that clears every process's cache.
const AnnounceAll = "*"

// ShareCache makes the store's read cache safe on a database other
// processes write: announce is called inside every write transaction that
// replaced or deleted versions, with the payloads to deliver to the other
// processes after the commit; the cache serves only under a lease
// (RenewCache). Change marks are not kept as on an only writer: call
// SharedMarks too. Call before the store is used; without a read cache it
// does nothing.
func (s *Store) ShareCache(announce func(ctx context.Context, c Conn, payload string) error) {
	if s.cache == nil {
		return
	}
	s.cache.leased = true
	s.announce = announce
}

// SharedMarks keeps change marks on a database other processes write too:
// each for ttl from when it was read, and a transaction that moved a
// watched mark (a Consent written) returns ttl after its commit, so that a
// request begun after it was answered sees it on every process (markCache).
// With ttl <= 0 marks are read from the database on every use. Call before
// the store is used.
func (s *Store) SharedMarks(ttl time.Duration) {
	if ttl <= 0 {
		s.marks = nil
		return
	}
	s.marks = newMarkCache()
	s.marks.ttl = ttl
}

// CacheShared says whether the store keeps a read cache under ShareCache.
func (s *Store) CacheShared() bool { return s.cache != nil && s.cache.leased }

// RenewCache lets the cache answer reads until the given time.
func (s *Store) RenewCache(until time.Time) {
	if s.cache != nil {
		s.cache.validUntil.Store(until.UnixNano())
	}
}

// SuspendCache stops the cache answering and empties it (announcements
// may have been missed); RenewCache resumes it.
func (s *Store) SuspendCache() {
	if s.cache != nil {
		s.cache.validUntil.Store(0)
		s.cache.clear()
	}
}

// Announced applies an announcement another process (or this one) sent.
func (s *Store) Announced(payload string) {
	if s.cache == nil {
		return
	}
	if payload == AnnounceAll {
		s.cache.clear()
		return
	}
	for line := range strings.SplitSeq(payload, "\n") {
		if line == "" {
			continue
		}
		v, key, ok := strings.Cut(line, " ")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil || n < 1 || !strings.Contains(key, "/") {
			// not ours to understand: trust nothing held
			s.cache.clear()
			return
		}
		s.cache.announced(key, n)
	}
}

// announce sends the transaction's announcements: each version that
// replaced or deleted one a cache may hold ("<version> <type>/<id>" per
// line), or AnnounceAll after a purge or a very large update.
func (t *tx) announce(ctx context.Context) error {
	if len(t.purged) > 0 {
		return t.s.announce(ctx, t.c, AnnounceAll)
	}
	var (
		payloads []string
		b        strings.Builder
	)
	for _, e := range t.written {
		if e.res.VersionID == "1" && !e.gone {
			continue // a new resource: no cache holds it
		}
		line := e.res.VersionID + " " + cacheKey(e.res.Type, e.res.ID) + "\n"
		if b.Len()+len(line) > maxAnnouncement {
			payloads = append(payloads, b.String())
			b.Reset()
		}
		b.WriteString(line)
	}
	if b.Len() > 0 {
		payloads = append(payloads, b.String())
	}
	if len(payloads) > maxAnnouncements {
		payloads = []string{AnnounceAll}
	}
	for _, p := range payloads {
		if err := t.s.announce(ctx, t.c, p); err != nil {
			return err
		}
	}
	return nil
}
