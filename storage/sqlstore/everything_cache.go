package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/internal/lru"
	"github.com/fhirgate/fhirgate/storage"
)

// $everything reads a patient's whole record, and its largest pages are a
// megabyte of bodies read from hundreds of rows: far more than serving the
// same bytes again. A record is kept here, as read, for as long as nothing
// in it changed: every entry carries the patient's record mark (a number
// the writing transaction increments for every patient whose compartment a
// write touches, see bumpRecordMarks) and a mark of the resources outside
// the compartment it refers to (their count and greatest write sequence).
// Both are read from the database on every use, so an entry written by
// one replica and changed through another is never served stale; they are
// read before the record itself, so an entry is never newer than its
// marks. What a caller is given of an entry is decided per request by its
// release, exactly as for rows read from the tables.

// Bounds of the record cache.
const (
	everythingCacheBytes = 64 << 20
	everythingEntryMax   = 16 << 20
)

// recordEntry is one patient's record under one set of filters.
type recordEntry struct {
	key  string
	mark int64
	// refsMark covers targets (present or not).
	refsMark string
	// members is stage 0 in (type, id) order; referenced stage 1 in (type,
	// id) order (the targets of every member outside the compartment, the
	// filters applied); edges link each member to its targets.
	members    []*fhir.Resource
	referenced []*fhir.Resource
	edges      []recordEdge
	targets    [][2]string
	bytes      int64
}

type recordEdge struct{ from, to [2]string }

func newRecordCache() *lru.Cache[*recordEntry] {
	return &lru.Cache[*recordEntry]{Max: everythingCacheBytes, MaxEntry: everythingEntryMax}
}

// recordKey names a record under the request's filters.
func recordKey(req storage.EverythingRequest) string {
	types := append([]string(nil), req.Types...)
	sort.Strings(types)
	return req.PatientID + "|" + strings.Join(types, ",") + "|" + strconv.FormatInt(micros(req.Start), 10) + "|" +
		strconv.FormatInt(micros(req.End), 10) + "|" + strconv.FormatInt(micros(req.Since), 10)
}

// recordMarkOf reads a patient's record mark (0 before its first write).
func recordMarkOf(ctx context.Context, db Conn, patientID string) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT n FROM record_marks WHERE patient_id = ?`, patientID).Scan(&n)
	if errors.Is(err, ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("record mark: %w", err)
	}
	return n, nil
}

// refsMarkOf is the count and greatest write sequence of the current rows
// of refs (deleted ones included): a target written, deleted or created
// since changes it.
func refsMarkOf(ctx context.Context, db Conn, refs [][2]string) (string, error) {
	if len(refs) == 0 {
		return "0:0", nil
	}
	byType := map[string][]string{}
	for _, r := range refs {
		byType[r[0]] = append(byType[r[0]], r[1])
	}
	c := &compiler{}
	var ors []string
	for typ, ids := range byType {
		ors = append(ors, "(res_type = "+c.arg(typ)+" AND res_id IN ("+c.inList(ids)+"))")
	}
	sort.Strings(ors)
	q, args := c.finish("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM resources WHERE " + strings.Join(ors, " OR "))
	var n, seq int64
	if err := db.QueryRow(ctx, q, args...).Scan(&n, &seq); err != nil {
		return "", fmt.Errorf("record mark: %w", err)
	}
	return strconv.FormatInt(n, 10) + ":" + strconv.FormatInt(seq, 10), nil
}

// cachedRecord returns the patient's record under the request's filters,
// from the cache when its marks still hold, else read whole and kept.
func (s *Store) cachedRecord(ctx context.Context, db Conn, req storage.EverythingRequest) (*recordEntry, error) {
	key := recordKey(req)
	mark, err := recordMarkOf(ctx, db, req.PatientID)
	if err != nil {
		return nil, err
	}
	if e, ok := s.records.Get(key); ok && e.mark == mark {
		rm, err := refsMarkOf(ctx, db, e.targets)
		if err != nil {
			return nil, err
		}
		if rm == e.refsMark {
			return e, nil
		}
	}
	e := &recordEntry{key: key, mark: mark}
	ev := &everythingRun{ctx: ctx, s: s, db: db, req: req}
	rows, err := ev.compartment(cursor{}, true, -1)
	if err != nil {
		return nil, err
	}
	inCompartment := map[[2]string]bool{}
	for _, r := range rows {
		e.members = append(e.members, r.res)
		inCompartment[[2]string{r.res.Type, r.res.ID}] = true
		e.bytes += int64(len(r.res.Raw))
	}
	// the edges from every member (the filters do not apply to the
	// members that lead to stage 1: the tables' stage 1 follows the whole
	// compartment too)
	q, err := db.Query(ctx, `SELECT x.res_type, x.res_id, x.target_type, x.target_id FROM idx_patient p
		JOIN idx_ref x ON x.res_type = p.res_type AND x.res_id = p.res_id
		WHERE p.patient_id = ? AND x.target_id <> '' AND (p.res_type < 'AuditEvent' OR p.res_type > 'AuditEvent')
		AND NOT EXISTS (SELECT 1 FROM idx_patient q WHERE q.patient_id = ? AND q.res_type = x.target_type AND q.res_id = x.target_id)`, req.PatientID, req.PatientID)
	if err != nil {
		return nil, fmt.Errorf("everything: %w", err)
	}
	seen := map[[2]string]bool{}
	for q.Next() {
		var ed recordEdge
		if err := q.Scan(&ed.from[0], &ed.from[1], &ed.to[0], &ed.to[1]); err != nil {
			q.Close()
			return nil, fmt.Errorf("everything: %w", err)
		}
		e.edges = append(e.edges, ed)
		if !seen[ed.to] {
			seen[ed.to] = true
			e.targets = append(e.targets, ed.to)
		}
	}
	q.Close()
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("everything: %w", err)
	}
	sort.Slice(e.targets, func(i, j int) bool { return lessRef(e.targets[i], e.targets[j]) })
	if e.refsMark, err = refsMarkOf(ctx, db, e.targets); err != nil {
		return nil, err
	}
	e.referenced, err = ev.loadTargets(e.targets)
	if err != nil {
		return nil, err
	}
	for _, r := range e.referenced {
		e.bytes += int64(len(r.Raw))
	}
	s.records.Put(key, e, e.bytes)
	return e, nil
}

// version names the state of the record the entry holds: its key and
// marks.
func (e *recordEntry) version() string {
	return e.key + "@" + strconv.FormatInt(e.mark, 10) + "/" + e.refsMark
}

func lessRef(a, b [2]string) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// loadTargets reads the current versions of targets with the request's
// filters (type, lastUpdated), in targets' order, leaving out the missing.
func (ev *everythingRun) loadTargets(targets [][2]string) ([]*fhir.Resource, error) {
	byType := map[string][]string{}
	for _, t := range targets {
		byType[t[0]] = append(byType[t[0]], t[1])
	}
	found := map[[2]string]*fhir.Resource{}
	for typ, ids := range byType {
		for start := 0; start < len(ids); start += 500 {
			chunk := ids[start:min(start+500, len(ids))]
			c := &compiler{}
			q := "SELECT r.res_id, r.version, r.last_updated, r.body FROM resources r WHERE r.res_type = " + c.arg(typ) +
				" AND r.deleted = 0 AND r.res_id IN (" + c.inList(chunk) + ")" + ev.s.everythingFilters(c, ev.req, "r", false)
			fq, fargs := c.finish(q)
			rs, err := scanResources(ev.ctx, ev.db, typ, fq, fargs)
			if err != nil {
				return nil, err
			}
			for _, r := range rs {
				found[[2]string{typ, r.ID}] = r
			}
		}
	}
	var out []*fhir.Resource
	for _, t := range targets {
		if r := found[t]; r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// listFetch pages through resources already in (type, id) order.
func listFetch(stage int, rs []*fhir.Resource) fetchFunc {
	return func(pos cursor, first bool, n int) ([]row, error) {
		from := 0
		if !first {
			from = sort.Search(len(rs), func(i int) bool {
				return lessRef([2]string{pos.Type, pos.ID}, [2]string{rs[i].Type, rs[i].ID})
			})
		}
		if n < 0 {
			n = len(rs)
		}
		out := make([]row, 0, min(n, len(rs)-from))
		for _, r := range rs[from:min(from+n, len(rs))] {
			out = append(out, row{res: fresh(r), pos: cursor{Stage: stage, Type: r.Type, ID: r.ID}})
		}
		return out, nil
	}
}

// fresh is a request's own copy of a kept resource: the bytes are shared,
// the parsed tree (which Root builds lazily, unsynchronised) is not.
func fresh(r *fhir.Resource) *fhir.Resource {
	return &fhir.Resource{Type: r.Type, ID: r.ID, VersionID: r.VersionID, LastUpdated: r.LastUpdated, Raw: r.Raw}
}
