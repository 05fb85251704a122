package sqlstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// A read with a storage.Release returns only what the caller may receive.
// What the release rule decides for a whole type (Bound) is compiled into
// the SQL; the rest is decided row by row, and the pagers below then read
// rows in chunks until a page holds Count released resources and one more
// released resource shows that a next page exists. A search whose
// remaining matches are all withheld therefore ends without a next link,
// and a count is either exact or not given.

// maxMaterialized bounds how many inner resources of a _has or chain a
// caller whose release is decided row by row may have checked per clause:
// beyond it the search is refused as too broad rather than run unbounded.
const maxMaterialized = 10000

// bound returns the release's bound for typ; the zero Bound (nothing
// restricted, all exact) without a release.
func (c *compiler) bound(typ string) storage.Bound {
	if c.rel == nil {
		return storage.Bound{Exact: true}
	}
	return c.rel.Bound(typ)
}

// boundCond is the SQL condition (to AND with) that keeps only resources
// of typ whose id column col passes the bound; "" when it passes all.
func (c *compiler) boundCond(typ, col string, b storage.Bound) string {
	if b.None {
		return " AND 1 = 0"
	}
	if !b.Restrict {
		return ""
	}
	outside := "NOT EXISTS (SELECT 1 FROM idx_patient bp WHERE bp.res_type = " + c.arg(typ) + " AND bp.res_id = " + col + ")"
	if len(b.Patients) == 0 {
		return " AND " + outside
	}
	inside := "EXISTS (SELECT 1 FROM idx_patient bp WHERE bp.res_type = " + c.arg(typ) + " AND bp.res_id = " + col +
		" AND bp.patient_id IN (" + c.inList(b.Patients) + "))"
	return " AND (" + inside + " OR " + outside + ")"
}

// releasedIDs narrows ids (SQL selecting res_id of resources of typ: the
// inner criteria of a _has or a chain) to the resources the caller may
// see: in SQL when the bound decides the type, else by checking each one
// now and inlining the ids that pass.
func (c *compiler) releasedIDs(typ, ids string) (string, error) {
	if c.rel == nil {
		return ids, nil
	}
	b := c.rel.Bound(typ)
	sel := "SELECT r.res_id FROM resources r WHERE r.res_type = " + c.arg(typ) + " AND r.deleted = 0 AND r.res_id IN (" + ids + ")" +
		c.boundCond(typ, "r.res_id", b)
	if b.Exact || b.None {
		return sel, nil
	}
	q, args := c.finish("SELECT r.res_id, r.version, r.last_updated, r.body FROM resources r WHERE r.res_type = " + c.arg(typ) +
		" AND r.deleted = 0 AND r.res_id IN (" + sel + ") ORDER BY r.res_id LIMIT " + c.arg(maxMaterialized+1))
	rs, err := scanResources(c.ctx, c.db, typ, q, args)
	if err != nil {
		return "", err
	}
	if len(rs) > maxMaterialized {
		return "", fmt.Errorf("%w: the inner criteria of a chain or _has on %s match more than %d resources; narrow them", storage.ErrInvalidSearch, typ, maxMaterialized)
	}
	var keep []string
	for _, r := range rs {
		ok, err := c.rel.Released(c.ctx, r)
		if err != nil {
			return "", err
		}
		if ok {
			keep = append(keep, r.ID)
		}
	}
	if len(keep) == 0 {
		return "SELECT r.res_id FROM resources r WHERE 1 = 0", nil
	}
	return "SELECT r.res_id FROM resources r WHERE r.res_type = " + c.arg(typ) + " AND r.res_id IN (" + c.inList(keep) + ")", nil
}

// released filters rs through the release (all of them without one).
func released(ctx context.Context, rel storage.Release, rs []*fhir.Resource) ([]*fhir.Resource, error) {
	if rel == nil {
		return rs, nil
	}
	out := rs[:0:0]
	bounds := map[string]storage.Bound{}
	for _, r := range rs {
		b, ok := bounds[r.Type]
		if !ok {
			b = rel.Bound(r.Type)
			bounds[r.Type] = b
		}
		if b.None {
			continue
		}
		keep, err := rel.Released(ctx, r)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, r)
		}
	}
	return out, nil
}

// row is a resource read by a pager with its position in the order read; a
// row without a resource only advances the position.
type row struct {
	res *fhir.Resource
	pos cursor
}

// fetchFunc reads up to n rows after pos (the zero cursor with first set:
// from the start), in the pager's order.
type fetchFunc func(pos cursor, first bool, n int) ([]row, error)

// fillPage reads rows from start on until count released resources are
// found and one more released row shows there is a next page (whose
// position it returns, that of the page's last resource). Without a
// release every row is released. count < 0 reads to the end.
func fillPage(ctx context.Context, rel storage.Release, fetch fetchFunc, start cursor, first bool, count int) ([]*fhir.Resource, *cursor, error) {
	var (
		out      []*fhir.Resource
		lastPos  cursor
		pos      = start
		chunk    = 64
		filtered = rel != nil
	)
	if count >= 0 {
		chunk = count + 1
		if filtered {
			chunk = max(chunk, 64)
		}
	}
	for {
		rows, err := fetch(pos, first, chunk)
		if err != nil {
			return nil, nil, err
		}
		for _, rw := range rows {
			if rw.res == nil {
				continue
			}
			ok := true
			if filtered {
				if ok, err = rel.Released(ctx, rw.res); err != nil {
					return nil, nil, err
				}
			}
			if !ok {
				continue
			}
			if count >= 0 && len(out) == count {
				next := lastPos
				return out, &next, nil
			}
			out = append(out, rw.res)
			lastPos = rw.pos
		}
		if len(rows) < chunk {
			return out, nil, nil
		}
		pos, first = rows[len(rows)-1].pos, false
		if filtered {
			chunk = min(chunk*2, 2000)
		}
	}
}

// scanRows reads (id, version, lastUpdated, body) rows of one type with
// their keyset position (the id).
func scanRows(ctx context.Context, db Conn, typ, q string, args []any) ([]row, error) {
	rs, err := scanResources(ctx, db, typ, q, args)
	if err != nil {
		return nil, err
	}
	out := make([]row, len(rs))
	for i, r := range rs {
		out[i] = row{res: r, pos: cursor{ID: r.ID}}
	}
	return out, nil
}

// scanTypedRows reads (type, id, version, lastUpdated, body) rows with their
// (stage, type, id) keyset position.
func scanTypedRows(ctx context.Context, db Conn, stage int, q string, args []any) ([]row, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var (
			typ, id string
			v, lu   int64
			body    []byte
		)
		if err := rows.Scan(&typ, &id, &v, &lu, &body); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		out = append(out, row{
			res: &fhir.Resource{Type: typ, ID: id, VersionID: strconv.FormatInt(v, 10), LastUpdated: fromMicros(lu), Raw: body},
			pos: cursor{Stage: stage, Type: typ, ID: id},
		})
	}
	return out, rows.Err()
}
