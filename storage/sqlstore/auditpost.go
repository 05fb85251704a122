package sqlstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/storage"
)

// The trail's references are indexed by posting lists (audit_postings):
// one row per reference and append, listing the events of the append that
// hold the reference and their roles. An append is what every read waits
// for; with a row per reference and event it wrote five index rows for a
// provider's read, each in another part of the index, and those rows were
// a third of the read's cost. A group of reads shares most of its
// references (the client, its organization, a resource read again), so
// the rows now grow with the references a group holds, not with its events.
//
// The postings of one reference never overlap (appends hold the head's
// lock, so they take increasing sequence numbers) and none spans
// postingSpan sequence numbers or more: the one that may list event n is
// the last that starts at or before n, and it starts after n-postingSpan.

// postingSpan bounds the sequence numbers one posting covers.
const postingSpan = 4096

// posting is one row of audit_postings.
type posting struct {
	ref         string
	first, last int64
	events      []byte
}

// postingsOf builds the postings of an append's records (in sequence
// order), sorted by reference.
func postingsOf(recs []*storage.AuditRecord) []posting {
	byRef := map[string]int{}
	var out []posting
	prev := map[string]int64{}
	for _, r := range recs {
		for _, ref := range r.Refs {
			i, ok := byRef[ref.Ref]
			if ok && r.Seq-out[i].first >= postingSpan {
				ok = false
			}
			if !ok {
				out = append(out, posting{ref: ref.Ref, first: r.Seq})
				i = len(out) - 1
				byRef[ref.Ref] = i
				prev[ref.Ref] = r.Seq
			}
			p := &out[i]
			p.events = binary.AppendUvarint(p.events, uint64(r.Seq-prev[ref.Ref]))
			p.events = binary.AppendUvarint(p.events, uint64(ref.Role))
			p.last = r.Seq
			prev[ref.Ref] = r.Seq
		}
	}
	slices.SortFunc(out, func(x, y posting) int {
		return cmp.Or(strings.Compare(x.ref, y.ref), cmp.Compare(x.first, y.first))
	})
	return out
}

var errPosting = errors.New("audit postings: malformed")

// eachPosted calls fn for every event a posting lists, in sequence order,
// until fn returns false.
func eachPosted(first int64, b []byte, fn func(seq int64, role int) bool) error {
	seq := first
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 || d > postingSpan {
			return errPosting
		}
		b = b[n:]
		role, n := binary.Uvarint(b)
		if n <= 0 || role > math.MaxInt32 {
			return errPosting
		}
		b = b[n:]
		seq += int64(d)
		if !fn(seq, int(role)) {
			return nil
		}
	}
	return nil
}

// postingStatements are the INSERTs of the postings of recs.
func postingStatements(recs []*storage.AuditRecord, insert string) []Stmt {
	ps := postingsOf(recs)
	var (
		out []Stmt
		b   strings.Builder
	)
	for start := 0; start < len(ps); {
		chunk := ps[start : start+rowsPerInsert(len(ps)-start)]
		start += len(chunk)
		b.Reset()
		args := make([]any, 0, 4*len(chunk))
		b.WriteString(insert + ` audit_postings (ref, seq, last, events) VALUES `)
		for i, p := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, ?, ?)")
			args = append(args, p.ref, p.first, p.last, p.events)
		}
		out = append(out, Stmt{b.String(), args})
	}
	return out
}

// refStream lists, in the listing's order, the events that hold one of a
// filter's references in one of its roles, within (after, until]
// (ascending) or [.., after) and <= until (descending).
type refStream struct {
	s     *Store
	f     storage.AuditRefFilter
	desc  bool
	after int64 // exclusive bound in the direction; 0: none
	until int64 // 0: none
	cur   []*refCursor
	last  int64 // the last seq returned (to skip duplicates)
	begun bool
}

// refCursor reads one reference's postings a page at a time.
type refCursor struct {
	ref  string
	buf  []int64
	key  int64 // the first seq of the last posting read
	read bool  // a page was read
	done bool  // no more pages
}

const postingPage = 64

func newRefStream(s *Store, f storage.AuditRefFilter, desc bool, after, until int64) *refStream {
	rs := &refStream{s: s, f: f, desc: desc, after: after, until: until}
	for _, ref := range slices.Compact(slices.Sorted(slices.Values(f.Refs))) {
		rs.cur = append(rs.cur, &refCursor{ref: ref})
	}
	return rs
}

// in reports whether seq is within the stream's bounds.
func (rs *refStream) in(seq int64) bool {
	if rs.until > 0 && seq > rs.until {
		return false
	}
	if rs.after > 0 {
		if rs.desc {
			return seq < rs.after
		}
		return seq > rs.after
	}
	return true
}

func (rs *refStream) fill(ctx context.Context, c *refCursor) error {
	for len(c.buf) == 0 && !c.done {
		var (
			sql  string
			args []any
		)
		if !rs.desc {
			lower := c.key
			if !c.read {
				lower = max(rs.after, 0) - postingSpan // may list events after rs.after
			}
			sql = `SELECT seq, events FROM audit_postings WHERE ref = ? AND seq > ? ORDER BY seq LIMIT ?`
			args = []any{c.ref, lower, postingPage}
		} else {
			upper := int64(math.MaxInt64)
			switch {
			case c.read:
				upper = c.key
			case rs.after > 0:
				upper = rs.after
			case rs.until > 0:
				upper = rs.until + 1
			}
			sql = `SELECT seq, events FROM audit_postings WHERE ref = ? AND seq < ? ORDER BY seq DESC LIMIT ?`
			args = []any{c.ref, upper, postingPage}
		}
		n := 0
		err := eachPosting(ctx, rs.s.db, sql, args, func(first int64, ev []byte) (bool, error) {
			n++
			c.key = first
			var got []int64
			if err := eachPosted(first, ev, func(seq int64, role int) bool {
				if role&rs.f.Roles != 0 && rs.in(seq) {
					got = append(got, seq)
				}
				return true
			}); err != nil {
				return false, err
			}
			if rs.desc {
				slices.Reverse(got)
			}
			c.buf = append(c.buf, got...)
			if !rs.desc && rs.until > 0 && first > rs.until {
				n = 0 // past the end
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		c.read = true
		if n < postingPage {
			c.done = true
		}
	}
	return nil
}

// eachPosting runs a query of postings (first event, events) and calls fn
// for each row until fn says stop or fails.
func eachPosting(ctx context.Context, db Conn, sql string, args []any, fn func(first int64, events []byte) (bool, error)) error {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("audit search: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			first int64
			ev    []byte
		)
		if err := rows.Scan(&first, &ev); err != nil {
			return fmt.Errorf("audit search: %w", err)
		}
		if more, err := fn(first, ev); err != nil || !more {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit search: %w", err)
	}
	return nil
}

// next returns the next event of the stream, or false at its end.
func (rs *refStream) next(ctx context.Context) (int64, bool, error) {
	for {
		var best *refCursor
		for _, c := range rs.cur {
			if err := rs.fill(ctx, c); err != nil {
				return 0, false, err
			}
			if len(c.buf) == 0 {
				continue
			}
			if best == nil || (!rs.desc && c.buf[0] < best.buf[0]) || (rs.desc && c.buf[0] > best.buf[0]) {
				best = c
			}
		}
		if best == nil {
			return 0, false, nil
		}
		seq := best.buf[0]
		best.buf = best.buf[1:]
		if rs.begun && seq == rs.last {
			continue // held under two of the filter's references
		}
		rs.begun, rs.last = true, seq
		return seq, true, nil
	}
}

// holding returns which of seqs hold one of f's references in one of its
// roles: for each reference, the posting that may list each event (the
// last starting at or before it) is read, all in one statement.
func (s *Store) holding(ctx context.Context, f storage.AuditRefFilter, seqs []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(seqs) == 0 {
		return out, nil
	}
	want := map[int64]bool{}
	for _, q := range seqs {
		want[q] = true
	}
	vals := strings.TrimSuffix(strings.Repeat("(CAST(? AS BIGINT)), ", len(seqs)), ", ")
	for _, ref := range slices.Compact(slices.Sorted(slices.Values(f.Refs))) {
		args := make([]any, 0, len(seqs)+3)
		args = append(args, ref, ref, int64(postingSpan))
		for _, q := range seqs {
			args = append(args, q)
		}
		err := eachPosting(ctx, s.db, `SELECT p.seq, p.events FROM audit_postings p WHERE p.ref = ? AND p.seq IN (
  SELECT (SELECT MAX(q.seq) FROM audit_postings q WHERE q.ref = ? AND q.seq <= v.column1 AND q.seq > v.column1 - ?) FROM (VALUES `+vals+`) v)`, args,
			func(first int64, ev []byte) (bool, error) {
				return true, eachPosted(first, ev, func(seq int64, role int) bool {
					if want[seq] && role&f.Roles != 0 {
						out[seq] = true
					}
					return true
				})
			})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// searchByRefs answers a query with reference conditions: the events of
// the condition with the fewest references (or the query's Seqs) are the
// candidates, in the listing's order and a chunk at a time; the other
// conditions filter them (those on columns in SQL, reference conditions
// by their postings). With limit < 0 it only counts.
func (s *Store) searchByRefs(ctx context.Context, q storage.AuditQuery, limit int) ([]*storage.AuditRecord, int, error) {
	drive := -1
	if len(q.Seqs) == 0 {
		for i, f := range q.Refs {
			if drive < 0 || len(f.Refs) < len(q.Refs[drive].Refs) {
				drive = i
			}
		}
	}
	var (
		stream *refStream
		seqs   []int64
	)
	if drive >= 0 {
		stream = newRefStream(s, q.Refs[drive], q.Desc, q.After, q.Until)
	} else {
		for _, seq := range q.Seqs {
			if (q.Until == 0 || seq <= q.Until) && (q.After == 0 || (q.Desc && seq < q.After) || (!q.Desc && seq > q.After)) {
				seqs = append(seqs, seq)
			}
		}
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
		if q.Desc {
			slices.Reverse(seqs)
		}
	}
	others := slices.Clone(q.Refs)
	if drive >= 0 {
		others = slices.Delete(others, drive, drive+1)
	}
	onCols := q // the conditions on audit_events' columns
	onCols.Refs, onCols.Seqs, onCols.After, onCols.Until = nil, nil, 0, 0
	where, wargs := auditWhere(onCols)
	onlyRefs := len(where) == 1 // "1 = 1": no condition on the columns
	chunk := 64
	if limit > 0 {
		chunk = min(max(2*limit, 16), 512)
	} else if limit < 0 {
		chunk = 512
	}
	var (
		out   []*storage.AuditRecord
		count int
	)
	for {
		var cand []int64
		if stream != nil {
			for len(cand) < chunk {
				seq, ok, err := stream.next(ctx)
				if err != nil {
					return nil, 0, err
				}
				if !ok {
					break
				}
				cand = append(cand, seq)
			}
		} else {
			n := min(chunk, len(seqs))
			cand, seqs = seqs[:n], seqs[n:]
		}
		if len(cand) == 0 {
			return out, count, nil
		}
		for _, f := range others {
			held, err := s.holding(ctx, f, cand)
			if err != nil {
				return nil, 0, err
			}
			cand = slices.DeleteFunc(cand, func(seq int64) bool { return !held[seq] })
		}
		if len(cand) == 0 {
			continue
		}
		if limit < 0 && onlyRefs && stream != nil {
			// counting what the postings list: the events are there (the
			// verifier holds the postings to them)
			count += len(cand)
			continue
		}
		args := make([]any, 0, len(cand)+len(wargs))
		for _, seq := range cand {
			args = append(args, seq)
		}
		args = append(args, wargs...)
		dir := "ASC"
		if q.Desc {
			dir = "DESC"
		}
		sel := auditCols
		if limit < 0 {
			sel = "e.seq"
		}
		rows, err := s.db.Query(ctx, `SELECT `+sel+` FROM audit_events e WHERE e.seq IN (`+placeholders(len(cand))+`) AND `+strings.Join(where, " AND ")+` ORDER BY e.seq `+dir, args...)
		if err != nil {
			return nil, 0, fmt.Errorf("audit search: %w", err)
		}
		for rows.Next() {
			if limit < 0 {
				var seq int64
				if err := rows.Scan(&seq); err != nil {
					rows.Close()
					return nil, 0, fmt.Errorf("audit search: %w", err)
				}
				count++
				continue
			}
			r, err := scanAudit(rows)
			if err != nil {
				rows.Close()
				return nil, 0, fmt.Errorf("audit search: %w", err)
			}
			out = append(out, r)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, fmt.Errorf("audit search: %w", err)
		}
		if limit > 0 && len(out) >= limit {
			return out, count, nil
		}
	}
}
