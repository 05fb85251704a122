package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// Sorted searches with more results than this page by keyset instead of
// keeping a snapshot (and may then move a resource whose sort value
// changes between pages).
const (
	maxSnapshotIDs = 20000
	snapshotTTL    = time.Hour
)

// sortedIDs runs the ordered query for ids only.
func (c *compiler) sortedIDs(ctx context.Context, db Conn, outer string, order []string) ([]string, error) {
	q := "SELECT res_id FROM (" + outer + ") z ORDER BY " + strings.Join(order, ", ") + " LIMIT " + c.arg(maxSnapshotIDs+1)
	fq, args := c.finish(q)
	rows, err := db.Query(ctx, fq, args...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// firstSnapshotPage answers the first page of a sorted search from its
// ordered ids, keeping them as a snapshot when a next page follows.
func (s *Store) firstSnapshotPage(ctx context.Context, db Conn, q *search.Query, rel storage.Release, res *storage.SearchResult, typ string, ids []string) (*storage.SearchResult, error) {
	if len(ids) > maxSnapshotIDs {
		ids = ids[:maxSnapshotIDs]
	}
	matches, next, err := fillPage(ctx, rel, s.snapshotFetch(ctx, db, typ, ids), cursor{}, true, q.Count)
	if err != nil {
		return nil, err
	}
	res.Matches = matches
	if next != nil {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		snap := hex.EncodeToString(b)
		now := s.clock()
		if _, err := db.Exec(ctx, `DELETE FROM search_snapshots WHERE created < ?`, micros(now.Add(-snapshotTTL))); err != nil {
			return nil, fmt.Errorf("search snapshot: %w", err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO search_snapshots (id, created, ids) VALUES (?, ?, ?)`, snap, micros(now), []byte(strings.Join(ids, "\n"))); err != nil {
			return nil, fmt.Errorf("search snapshot: %w", err)
		}
		res.Next = encodeSearchCursor(cursor{Snap: snap, Off: next.Off})
	}
	return res, s.includes(ctx, db, q, rel, res)
}

func (s *Store) snapshotPage(ctx context.Context, db Conn, q *search.Query, rel storage.Release, res *storage.SearchResult, typ string, cur cursor) (*storage.SearchResult, error) {
	var blob []byte
	err := db.QueryRow(ctx, `SELECT ids FROM search_snapshots WHERE id = ?`, cur.Snap).Scan(&blob)
	if errors.Is(err, ErrNoRows) {
		return nil, fmt.Errorf("search snapshot expired: %w", storage.ErrInvalidCursor)
	}
	if err != nil {
		return nil, fmt.Errorf("search snapshot: %w", err)
	}
	ids := strings.Split(string(blob), "\n")
	if cur.Off > len(ids) {
		return nil, storage.ErrInvalidCursor
	}
	matches, next, err := fillPage(ctx, rel, s.snapshotFetch(ctx, db, typ, ids), cursor{Off: cur.Off}, false, q.Count)
	if err != nil {
		return nil, err
	}
	res.Matches = matches
	if next != nil {
		res.Next = encodeSearchCursor(cursor{Snap: cur.Snap, Off: next.Off})
	}
	return res, s.includes(ctx, db, q, rel, res)
}

// snapshotFetch reads a snapshot's resources in its order: a row's
// position is the offset just after it; a resource deleted since the
// snapshot is a row without a resource, which pagers skip.
func (s *Store) snapshotFetch(ctx context.Context, db Conn, typ string, ids []string) fetchFunc {
	return func(pos cursor, _ bool, n int) ([]row, error) {
		from := min(pos.Off, len(ids))
		page := ids[from:min(from+n, len(ids))]
		refs := make([][2]string, len(page))
		for i, id := range page {
			refs[i] = [2]string{typ, id}
		}
		loaded, err := s.loadMany(ctx, db, refs)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]*fhir.Resource, len(loaded))
		for _, r := range loaded {
			byID[r.ID] = r
		}
		out := make([]row, len(page))
		for i, id := range page {
			// a resource deleted since the snapshot keeps its place, empty
			out[i] = row{res: byID[id], pos: cursor{Off: from + i + 1}}
		}
		return out, nil
	}
}
