package sqlstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// everything pages through a Patient's compartment (stage 0, ordered by
// type and id, the Patient included) and then the resources those refer to
// that are outside the compartment (stage 1: practitioners, organizations,
// medications, locations...). Keyset paging on (stage, type, id) keeps
// pages stable while others write.
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
	res := &storage.SearchResult{Total: -1}
	if cur.Stage == 0 {
		rs, more, err := s.everythingCompartment(ctx, db, req, cur, count)
		if err != nil {
			return nil, err
		}
		res.Matches = rs
		if more {
			last := rs[len(rs)-1]
			res.Next = encodeSearchCursor(cursor{Stage: 0, Type: last.Type, ID: last.ID})
			return res, nil
		}
		cur = cursor{Stage: 1}
	}
	room := count - len(res.Matches)
	if room == 0 {
		res.Next = encodeSearchCursor(cursor{Stage: 1})
		return res, nil
	}
	rs, more, err := s.everythingReferenced(ctx, db, req, cur, room)
	if err != nil {
		return nil, err
	}
	res.Matches = append(res.Matches, rs...)
	if more {
		last := rs[len(rs)-1]
		res.Next = encodeSearchCursor(cursor{Stage: 1, Type: last.Type, ID: last.ID})
	}
	return res, nil
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

func (s *Store) everythingCompartment(ctx context.Context, db Conn, req storage.EverythingRequest, cur cursor, count int) ([]*fhir.Resource, bool, error) {
	c := &compiler{}
	q := `SELECT r.res_type, r.res_id, r.version, r.last_updated, r.body FROM idx_patient p
		JOIN resources r ON r.res_type = p.res_type AND r.res_id = p.res_id
		WHERE p.patient_id = ` + c.arg(req.PatientID) + ` AND r.deleted = 0` + s.everythingFilters(c, req, "r", true)
	if len(req.Types) == 0 {
		q += " AND (p.res_type < 'AuditEvent' OR p.res_type > 'AuditEvent')" // two index ranges around the audit trail
	}
	if cur.Type != "" {
		q += " AND (p.res_type > " + c.arg(cur.Type) + " OR (p.res_type = " + c.arg(cur.Type) + " AND p.res_id > " + c.arg(cur.ID) + "))"
	}
	q += " ORDER BY p.res_type, p.res_id LIMIT " + c.arg(count+1)
	fq, fargs := c.finish(q)
	return scanTyped(ctx, db, fq, fargs, count)
}

func (s *Store) everythingReferenced(ctx context.Context, db Conn, req storage.EverythingRequest, cur cursor, count int) ([]*fhir.Resource, bool, error) {
	c := &compiler{}
	// the targets of the compartment's references, then those outside it
	q := `SELECT r.res_type, r.res_id, r.version, r.last_updated, r.body FROM
		(SELECT DISTINCT x.target_type AS t, x.target_id AS i FROM idx_patient p
			JOIN idx_ref x ON x.res_type = p.res_type AND x.res_id = p.res_id
			WHERE p.patient_id = ` + c.arg(req.PatientID) + ` AND x.target_id <> '' AND (p.res_type < 'AuditEvent' OR p.res_type > 'AuditEvent')) refs
		JOIN resources r ON r.res_type = refs.t AND r.res_id = refs.i
		WHERE r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM idx_patient q WHERE q.patient_id = ` + c.arg(req.PatientID) + ` AND q.res_type = r.res_type AND q.res_id = r.res_id)` +
		s.everythingFilters(c, req, "r", false)
	if cur.Type != "" {
		q += " AND (r.res_type > " + c.arg(cur.Type) + " OR (r.res_type = " + c.arg(cur.Type) + " AND r.res_id > " + c.arg(cur.ID) + "))"
	}
	q += " ORDER BY r.res_type, r.res_id LIMIT " + c.arg(count+1)
	fq, fargs := c.finish(q)
	return scanTyped(ctx, db, fq, fargs, count)
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
