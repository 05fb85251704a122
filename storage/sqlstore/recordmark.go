package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/storage"
)

var (
	_ storage.RecordMarker = (*Store)(nil)
	_ storage.RecordMarker = (*tx)(nil)
)

// RecordMark implements storage.RecordMarker.
func (s *Store) RecordMark(ctx context.Context, patientID string, refs []string) (string, error) {
	return recordMark(ctx, s.db, patientID, refs)
}

// RecordMark implements storage.RecordMarker inside a transaction (it sees
// the transaction's own writes).
func (t *tx) RecordMark(ctx context.Context, patientID string, refs []string) (string, error) {
	return recordMark(ctx, t.c, patientID, refs)
}

// recordMark counts the compartment's members, their versions and the
// versions of refs, and takes the greatest write sequence of those
// versions: any write or deletion of one of them adds a version, one that
// leaves or joins the compartment changes the count. Counting versions,
// not only taking the greatest sequence, matters with several writers: on
// PostgreSQL a write can commit after one with a greater sequence, and
// would otherwise leave the mark unchanged. The versions are read through
// the (res_type, res_id, version) index, without touching bodies.
func recordMark(ctx context.Context, c Conn, patientID string, refs []string) (string, error) {
	var n, versions, maxSeq int64
	err := c.QueryRow(ctx, `SELECT COUNT(*) FROM idx_patient WHERE patient_id = ? AND res_type <> 'AuditEvent'`, patientID).Scan(&n)
	if err == nil {
		err = c.QueryRow(ctx, `SELECT COUNT(*), COALESCE(MAX(v.seq), 0) FROM idx_patient p
			JOIN resource_versions v ON v.res_type = p.res_type AND v.res_id = p.res_id
			WHERE p.patient_id = ? AND p.res_type <> 'AuditEvent'`, patientID).Scan(&versions, &maxSeq)
	}
	if err != nil {
		return "", fmt.Errorf("record mark: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d:%d:%d", n, versions, maxSeq)
	byType := map[string][]string{}
	for _, ref := range refs {
		if typ, id, ok := strings.Cut(ref, "/"); ok {
			byType[typ] = append(byType[typ], id)
		}
	}
	types := make([]string, 0, len(byType))
	for typ := range byType {
		types = append(types, typ)
	}
	slices.Sort(types)
	var found, refSeq int64
	for _, typ := range types {
		ids := byType[typ]
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 500)]
			ids = ids[len(chunk):]
			args := make([]any, 0, len(chunk)+1)
			args = append(args, typ)
			for _, id := range chunk {
				args = append(args, id)
			}
			var cn, cs int64
			q := `SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM resource_versions WHERE res_type = ? AND res_id IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`
			if err := c.QueryRow(ctx, q, args...).Scan(&cn, &cs); err != nil {
				return "", fmt.Errorf("record mark: %w", err)
			}
			found += cn
			refSeq = max(refSeq, cs)
		}
	}
	fmt.Fprintf(&b, "|%d:%d", found, refSeq)
	return b.String(), nil
}
