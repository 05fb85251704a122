package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// everything pages through a Patient's compartment (stage 0, ordered by
// type and id, the Patient included) and then the resources those refer to
// that are outside the compartment (stage 1: practitioners, organizations,
// medications, locations...). Keyset paging on (stage, type, id) keeps
// pages stable while others write. With a release, stage 0 holds the
// released compartment resources and stage 1 only what a released one
// refers to (and is itself released).
func (s *Store) everything(ctx context.Context, db Conn, req storage.EverythingRequest) (*storage.SearchResult, error) {
	if _, err := s.read(ctx, db, "Patient", req.PatientID); err != nil {
		return nil, err
	}
	count := req.Count
	if count <= 0 {
		count = 1000
	}
	cur := cursor{}
	if req.Cursor != "" {
		var err error
		if cur, err = decodeSearchCursor(req.Cursor); err != nil {
			return nil, err
		}
	}
	ev := &everythingRun{ctx: ctx, s: s, db: db, req: req}
	res := &storage.SearchResult{Total: -1}
	if db == Conn(s.db) {
		// outside a transaction, the record comes from the cache while
		// its marks hold
		e, err := s.cachedRecord(ctx, db, req)
		if err != nil {
			return nil, err
		}
		ev.entry = e
		res.Version = e.version()
		if req.Release == nil && req.IfVersion != "" && req.IfVersion == res.Version {
			res.Unchanged = true
			return res, nil
		}
	}
	if cur.Stage == 0 {
		rs, next, err := fillPage(ctx, ev.rel(), ev.compartment, cur, cur.Type == "", count)
		if err != nil {
			return nil, err
		}
		res.Matches = rs
		if next != nil {
			res.Next = encodeSearchCursor(cursor{Stage: 0, Type: next.Type, ID: next.ID})
			return res, nil
		}
		cur = cursor{Stage: 1}
	}
	room := count - len(res.Matches)
	if room == 0 {
		// stage 1 may be empty: look before promising a next page
		more, _, err := fillPage(ctx, ev.rel(), ev.referenced, cur, cur.Type == "", 1)
		if err != nil {
			return nil, err
		}
		if len(more) > 0 {
			res.Next = encodeSearchCursor(cursor{Stage: 1})
		}
		return res, nil
	}
	rs, next, err := fillPage(ctx, ev.rel(), ev.referenced, cur, cur.Type == "", room)
	if err != nil {
		return nil, err
	}
	res.Matches = append(res.Matches, rs...)
	if next != nil {
		res.Next = encodeSearchCursor(cursor{Stage: 1, Type: next.Type, ID: next.ID})
	}
	return res, nil
}

// everythingRun is one $everything page being read.
type everythingRun struct {
	ctx context.Context
	s   *Store
	db  Conn
	req storage.EverythingRequest
	// decided remembers the release of the compartment resources decided
	// in this call ("Type/id"), so that stage 1 need not read them again.
	decided map[string]bool
	// sources are, with a release, the compartment resources that may
	// lead to stage 1 resources ("Type/id": released), and targets what
	// the released ones refer to; computed once.
	sources map[string]bool
	targets [][2]string
	// entry, when set, is the cached record the run reads instead of the
	// tables.
	entry *recordEntry
	// stage0 marks the compartment rows read in this run ("Type/id").
	stage0 map[string]bool
}

// rel is the release rows are decided by: nil when there is none.
func (ev *everythingRun) rel() storage.Release {
	if ev.req.Release == nil {
		return nil
	}
	return (*everythingRelease)(ev)
}

// everythingRelease decides rows for the pager and remembers the
// compartment's decisions.
type everythingRelease everythingRun

func (e *everythingRelease) Released(ctx context.Context, r *fhir.Resource) (bool, error) {
	// a compartment resource of a type the bound decides needs no more
	if b := e.req.Release.Bound(r.Type); b.None || b.Exact && e.decided != nil && e.inCompartment(r) {
		ok := !b.None && (!b.Restrict || slices.Contains(b.Patients, e.req.PatientID))
		if e.decided != nil {
			e.decided[r.Type+"/"+r.ID] = ok
		}
		return ok, nil
	}
	ok, err := e.req.Release.Released(ctx, r)
	if err == nil && e.decided != nil {
		e.decided[r.Type+"/"+r.ID] = ok
	}
	return ok, err
}

func (e *everythingRelease) Bound(typ string) storage.Bound { return e.req.Release.Bound(typ) }

// inCompartment reports whether r is one of stage 0's rows (the patient's
// compartment) rather than a stage 1 target.
func (e *everythingRelease) inCompartment(r *fhir.Resource) bool { return e.stage0[r.Type+"/"+r.ID] }

func (ev *everythingRun) compartment(pos cursor, first bool, n int) (rows []row, err error) {
	if ev.decided == nil && ev.req.Release != nil {
		ev.decided, ev.stage0 = map[string]bool{}, map[string]bool{}
	}
	if ev.stage0 != nil {
		defer func() {
			for _, r := range rows {
				if r.res != nil {
					ev.stage0[r.res.Type+"/"+r.res.ID] = true
				}
			}
		}()
	}
	if ev.entry != nil {
		return listFetch(0, ev.entry.members)(pos, first, n)
	}
	c := &compiler{}
	q := `SELECT r.res_type, r.res_id, r.version, r.last_updated, r.body FROM idx_patient p
		JOIN resources r ON r.res_type = p.res_type AND r.res_id = p.res_id
		WHERE p.patient_id = ` + c.arg(ev.req.PatientID) + ` AND r.deleted = 0` + ev.s.everythingFilters(c, ev.req, "r", true)
	if len(ev.req.Types) == 0 {
		q += " AND (p.res_type < 'AuditEvent' OR p.res_type > 'AuditEvent')" // two index ranges around the audit trail
	}
	if !first {
		q += " AND (p.res_type > " + c.arg(pos.Type) + " OR (p.res_type = " + c.arg(pos.Type) + " AND p.res_id > " + c.arg(pos.ID) + "))"
	}
	q += " ORDER BY p.res_type, p.res_id"
	if n >= 0 {
		q += " LIMIT " + c.arg(n)
	}
	fq, fargs := c.finish(q)
	return scanTypedRows(ev.ctx, ev.db, 0, fq, fargs)
}
func (s *Store) everythingFilters(c *compiler, req storage.EverythingRequest, alias string, careDates bool) string {
	where := ""
	if len(req.Types) > 0 {
		where += " AND " + alias + ".res_type IN (" + c.inList(req.Types) + ")"
	} else {
		// the audit trail is about the patient but not part of the record;
		// _type=AuditEvent asks for it
		where += " AND " + alias + ".res_type <> 'AuditEvent'"
	}
	if !req.Since.IsZero() {
		where += " AND " + alias + ".last_updated >= " + c.arg(micros(req.Since))
	}
	if careDates && (!req.Start.IsZero() || !req.End.IsZero()) {
		lo, hi := timeKey(req.Start), timeKey(req.End)
		if req.Start.IsZero() {
			lo = timeKey(search.MinTime)
		}
		if req.End.IsZero() {
			hi = timeKey(search.MaxTime)
		}
		// resources with no date at all are kept (they are not outside the window)
		where += " AND (" + alias + ".res_type = 'Patient' OR NOT EXISTS (SELECT 1 FROM idx_date d WHERE d.res_type = " + alias + ".res_type AND d.res_id = " + alias + ".res_id)" +
			" OR EXISTS (SELECT 1 FROM idx_date d WHERE d.res_type = " + alias + ".res_type AND d.res_id = " + alias + ".res_id AND d.lo <= " + c.arg(hi) + " AND d.hi >= " + c.arg(lo) + "))"
	}
	return where
}

// referenced reads stage 1: the resources outside the compartment that
// the compartment refers to (with a release, that released compartment
// resources refer to).
func (ev *everythingRun) referenced(pos cursor, first bool, n int) ([]row, error) {
	if ev.req.Release != nil {
		return ev.releasedReferenced(pos, first, n)
	}
	if ev.entry != nil {
		return listFetch(1, ev.entry.referenced)(pos, first, n)
	}
	c := &compiler{}
	q := `SELECT r.res_type, r.res_id, r.version, r.last_updated, r.body FROM
		(SELECT DISTINCT x.target_type AS t, x.target_id AS i FROM idx_patient p
			JOIN idx_ref x ON x.res_type = p.res_type AND x.res_id = p.res_id
			WHERE p.patient_id = ` + c.arg(ev.req.PatientID) + ` AND x.target_id <> '' AND (p.res_type < 'AuditEvent' OR p.res_type > 'AuditEvent')) refs
		JOIN resources r ON r.res_type = refs.t AND r.res_id = refs.i
		WHERE r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM idx_patient q WHERE q.patient_id = ` + c.arg(ev.req.PatientID) + ` AND q.res_type = r.res_type AND q.res_id = r.res_id)` +
		ev.s.everythingFilters(c, ev.req, "r", false)
	if !first {
		q += " AND (r.res_type > " + c.arg(pos.Type) + " OR (r.res_type = " + c.arg(pos.Type) + " AND r.res_id > " + c.arg(pos.ID) + "))"
	}
	q += " ORDER BY r.res_type, r.res_id LIMIT " + c.arg(n)
	fq, fargs := c.finish(q)
	return scanTypedRows(ev.ctx, ev.db, 1, fq, fargs)
}

// releasedReferenced is referenced under a release: the targets of the
// released compartment resources, in (type, id) order, read in chunks.
func (ev *everythingRun) releasedReferenced(pos cursor, first bool, n int) ([]row, error) {
	targets, err := ev.releasedTargets()
	if err != nil {
		return nil, err
	}
	from := 0
	if !first {
		from = sort.Search(len(targets), func(i int) bool {
			t := targets[i]
			return t[0] > pos.Type || t[0] == pos.Type && t[1] > pos.ID
		})
	}
	chunk := targets[from:min(from+n, len(targets))]
	if ev.entry != nil {
		have := map[[2]string]*fhir.Resource{}
		for _, r := range ev.entry.referenced {
			have[[2]string{r.Type, r.ID}] = r
		}
		out := make([]row, len(chunk))
		for i, t := range chunk {
			out[i] = row{pos: cursor{Stage: 1, Type: t[0], ID: t[1]}}
			if r := have[t]; r != nil {
				out[i].res = fresh(r)
			}
		}
		return out, nil
	}
	byType := map[string][]string{}
	for _, t := range chunk {
		byType[t[0]] = append(byType[t[0]], t[1])
	}
	found := map[string]*fhir.Resource{}
	for typ, ids := range byType {
		c := &compiler{}
		q := "SELECT r.res_id, r.version, r.last_updated, r.body FROM resources r WHERE r.res_type = " + c.arg(typ) +
			" AND r.deleted = 0 AND r.res_id IN (" + c.inList(ids) + ")" + ev.s.everythingFilters(c, ev.req, "r", false)
		fq, fargs := c.finish(q)
		rs, err := scanResources(ev.ctx, ev.db, typ, fq, fargs)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			found[typ+"/"+r.ID] = r
		}
	}
	out := make([]row, len(chunk))
	for i, t := range chunk {
		out[i] = row{res: found[t[0]+"/"+t[1]], pos: cursor{Stage: 1, Type: t[0], ID: t[1]}}
	}
	return out, nil
}

// edges lists every reference from a compartment resource to one outside
// the compartment.
func (ev *everythingRun) edges() ([]recordEdge, error) {
	if ev.entry != nil {
		return ev.entry.edges, nil
	}
	pid := ev.req.PatientID
	rows, err := ev.db.Query(ev.ctx, `SELECT x.res_type, x.res_id, x.target_type, x.target_id FROM idx_patient p
		JOIN idx_ref x ON x.res_type = p.res_type AND x.res_id = p.res_id
		WHERE p.patient_id = ? AND x.target_id <> '' AND (p.res_type < 'AuditEvent' OR p.res_type > 'AuditEvent')
		AND NOT EXISTS (SELECT 1 FROM idx_patient q WHERE q.patient_id = ? AND q.res_type = x.target_type AND q.res_id = x.target_id)`, pid, pid)
	if err != nil {
		return nil, fmt.Errorf("everything: %w", err)
	}
	defer rows.Close()
	var out []recordEdge
	for rows.Next() {
		var e recordEdge
		if err := rows.Scan(&e.from[0], &e.from[1], &e.to[0], &e.to[1]); err != nil {
			return nil, fmt.Errorf("everything: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// releasedTargets lists, sorted, the (type, id) of the resources outside
// the compartment that released compartment resources refer to.
func (ev *everythingRun) releasedTargets() ([][2]string, error) {
	if ev.sources != nil {
		return ev.targets, nil
	}
	ctx, pid := ev.ctx, ev.req.PatientID
	edges, err := ev.edges()
	if err != nil {
		return nil, err
	}
	members := map[string]*fhir.Resource{}
	if ev.entry != nil {
		for _, r := range ev.entry.members {
			members[r.Type+"/"+r.ID] = r
		}
	}
	// decide the referring resources: known from stage 0, by the bound, or
	// read and decided now
	ev.sources = map[string]bool{}
	var unknown [][2]string
	for _, e := range edges {
		key := e.from[0] + "/" + e.from[1]
		if _, ok := ev.sources[key]; ok {
			continue
		}
		if ok, known := ev.decided[key]; known {
			ev.sources[key] = ok
			continue
		}
		b := ev.req.Release.Bound(e.from[0])
		switch {
		case b.None:
			ev.sources[key] = false
		case b.Exact:
			ev.sources[key] = !b.Restrict || slices.Contains(b.Patients, pid)
		case members[key] != nil:
			ok, err := ev.req.Release.Released(ctx, fresh(members[key]))
			if err != nil {
				return nil, err
			}
			ev.sources[key] = ok
		default:
			ev.sources[key] = false
			unknown = append(unknown, e.from)
		}
	}
	if len(unknown) > 0 {
		rs, err := ev.s.loadMany(ctx, ev.db, unknown)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			ok, err := ev.req.Release.Released(ctx, r)
			if err != nil {
				return nil, err
			}
			ev.sources[r.Type+"/"+r.ID] = ok
		}
	}
	seen := map[[2]string]bool{}
	for _, e := range edges {
		if ev.sources[e.from[0]+"/"+e.from[1]] && !seen[e.to] {
			seen[e.to] = true
			ev.targets = append(ev.targets, e.to)
		}
	}
	sort.Slice(ev.targets, func(i, j int) bool {
		a, b := ev.targets[i], ev.targets[j]
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	return ev.targets, nil
}

// scanTyped reads (type, id, version, lastUpdated, body) rows; more is
// true when there was a row beyond count.
func scanTyped(ctx context.Context, db Conn, q string, args []any, count int) ([]*fhir.Resource, bool, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("everything: %w", err)
	}
	defer rows.Close()
	var out []*fhir.Resource
	for rows.Next() {
		if len(out) == count {
			return out, true, nil
		}
		var (
			typ, id string
			v, lu   int64
			body    []byte
		)
		if err := rows.Scan(&typ, &id, &v, &lu, &body); err != nil {
			return nil, false, fmt.Errorf("everything: %w", err)
		}
		out = append(out, &fhir.Resource{Type: typ, ID: id, VersionID: strconv.FormatInt(v, 10), LastUpdated: fromMicros(lu), Raw: body})
	}
	return out, false, rows.Err()
}
