package audit_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// TestTamperMatrix: every way of changing the trail behind the gateway's
// back, by someone with the database but without the key, is found and
// named by the verifier given the key and the last published checkpoint.
func TestTamperMatrix(t *testing.T) {
	const n = 30
	type want struct {
		kind     audit.ProblemKind
		seq, end int64
	}
	ctx := context.Background()
	exec := func(t *testing.T, st *sqlstore.Store, sql string, args ...any) {
		t.Helper()
		if _, err := st.DB().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	row := func(t *testing.T, st *sqlstore.Store, seq int64) *storage.AuditRecord {
		t.Helper()
		var found *storage.AuditRecord
		if err := st.ScanAudit(ctx, seq, func(r *storage.AuditRecord) error {
			if found == nil {
				found = r
			}
			return nil
		}); err != nil || found == nil || found.Seq != seq {
			t.Fatalf("event %d: %v", seq, err)
		}
		return found
	}
	// reseal rewrites events from seq on, sealing them with keys as an
	// attacker would who knows the scheme but not the trail's key
	reseal := func(t *testing.T, st *sqlstore.Store, from int64, keys *audit.Keyring) {
		prev := row(t, st, from-1).Hash
		for s := from; s <= n; s++ {
			r := row(t, st, s)
			if s == from {
				e, _ := audit.Decode(r.Body)
				e.Outcome = audit.MinorFailure
				r.Body = audit.Encode(e)
			}
			keys.Seal(prev, r)
			exec(t, st, `UPDATE audit_events SET body = ?, key_id = ?, prev = ?, hash = ? WHERE seq = ?`, r.Body, r.KeyID, r.Prev, r.Hash, s)
			prev = r.Hash
		}
		exec(t, st, `UPDATE audit_head SET hash = ? WHERE id = 1`, prev)
		exec(t, st, `DELETE FROM audit_checkpoints`)
	}
	truncate := func(t *testing.T, st *sqlstore.Store, keep int64) {
		exec(t, st, `DELETE FROM audit_events WHERE seq > ?`, keep)
		exec(t, st, `DELETE FROM audit_postings WHERE seq > ?`, keep)
	}
	rewind := func(t *testing.T, st *sqlstore.Store, keep int64) {
		truncate(t, st, keep)
		var h []byte
		if keep > 0 {
			h = row(t, st, keep).Hash
		}
		exec(t, st, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, keep, append([]byte{}, h...))
		exec(t, st, `DELETE FROM audit_checkpoints`)
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, st *sqlstore.Store, tr *audit.Trail)
		wants  []want
	}{
		{"intact", func(*testing.T, *sqlstore.Store, *audit.Trail) {}, nil},
		{"edited event", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			r := row(t, st, 5)
			e, _ := audit.Decode(r.Body)
			e.Who = "Organization/someone-else"
			exec(t, st, `UPDATE audit_events SET body = ? WHERE seq = 5`, audit.Encode(e))
		}, []want{{audit.Edited, 5, 5}}},
		{"edited column", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			exec(t, st, `UPDATE audit_events SET outcome = '4' WHERE seq = 7`)
		}, []want{{audit.IndexEdited, 7, 7}}},
		{"deleted middle", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			exec(t, st, `DELETE FROM audit_events WHERE seq IN (10, 11)`)
			exec(t, st, `DELETE FROM audit_postings WHERE seq IN (10, 11)`)
		}, []want{{audit.Missing, 10, 11}}},
		{"deleted first", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			exec(t, st, `DELETE FROM audit_events WHERE seq = 1`)
			exec(t, st, `DELETE FROM audit_postings WHERE seq = 1`)
		}, []want{{audit.Missing, 1, 1}}},
		{"deleted tail", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			truncate(t, st, 27)
		}, []want{{audit.Truncated, 28, 30}}},
		{"deleted tail, head rewound", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			rewind(t, st, 27)
		}, []want{{audit.Truncated, 28, 30}}},
		{"deleted all", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			rewind(t, st, 0)
		}, []want{{audit.Truncated, 1, 30}}},
		{"reordered", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			// (each event was appended alone: its postings list it alone)
			exec(t, st, `UPDATE audit_events SET seq = -1 WHERE seq = 4`)
			exec(t, st, `UPDATE audit_events SET seq = 4 WHERE seq = 5`)
			exec(t, st, `UPDATE audit_events SET seq = 5 WHERE seq = -1`)
			exec(t, st, `UPDATE audit_postings SET seq = -1, last = -1 WHERE seq = 4`)
			exec(t, st, `UPDATE audit_postings SET seq = 4, last = 4 WHERE seq = 5`)
			exec(t, st, `UPDATE audit_postings SET seq = 5, last = 5 WHERE seq = -1`)
		}, []want{{audit.Reordered, 4, 0}, {audit.Reordered, 5, 0}}},
		{"re-sealed without the key", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			reseal(t, st, 12, audit.NewKeyring(audit.Key{ID: "k1", Secret: []byte("a key that is not the trail's key")}))
		}, []want{{audit.Edited, 12, 30}, {audit.CheckpointMismatch, 30, 0}}},
		{"re-sealed under another key", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			reseal(t, st, 12, audit.NewKeyring(audit.Key{ID: "k9", Secret: []byte("a key that is not the trail's key")}))
		}, []want{{audit.UnknownKey, 12, 30}, {audit.CheckpointMismatch, 30, 0}}},
		{"search index edited", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			// hide an event from its patient, show another to a stranger
			exec(t, st, `DELETE FROM audit_postings WHERE seq = 8 AND ref = 'Patient/p1'`)
			exec(t, st, `INSERT INTO audit_postings (ref, seq, last, events) VALUES ('Patient/stranger', 9, 9, ?)`, []byte{0, storage.AuditEntity | storage.AuditPatientRole})
		}, []want{{audit.IndexEdited, 8, 8}, {audit.IndexEdited, 9, 9}}},
		{"head row edited", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			exec(t, st, `UPDATE audit_head SET hash = ? WHERE id = 1`, []byte{0})
		}, []want{{audit.HeadEdited, 30, 0}}},
		{"rolled back", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			rewind(t, st, 20) // an older copy of the database restored
		}, []want{{audit.Truncated, 21, 30}}},
		{"rolled back and rewritten", func(t *testing.T, st *sqlstore.Store, tr *audit.Trail) {
			rewind(t, st, 20)
			for i := range 10 {
				if err := tr.Record(ctx, read(100+i, "Patient/p1")); err != nil {
					t.Fatal(err)
				}
			}
			// (this process expected the head at 30: what it stored
			// pending meanwhile is sealed)
			if err := tr.Settle(ctx); err != nil {
				t.Fatal(err)
			}
		}, []want{{audit.CheckpointMismatch, 30, 0}}},
		{"checkpoint forged in the log", func(t *testing.T, st *sqlstore.Store, _ *audit.Trail) {
			c := keys.Checkpoint(storage.AuditHead{Seq: 25, Hash: row(t, st, 25).Hash}, t0)
			c.Seq = 40 // claims more than there is
			exec(t, st, `INSERT INTO audit_checkpoints (seq, checkpoint) VALUES (40, ?)`, c.String())
		}, []want{{audit.CheckpointForged, 0, 0}}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					// a fresh trail on a fresh store
					st := k.open(t)
					tr := open(t, st, audit.Options{})
					for i := range n {
						if err := tr.Record(ctx, read(i, fmt.Sprintf("Patient/p%d", i%3))); err != nil {
							t.Fatal(err)
						}
					}
					cp, err := tr.Checkpoint(ctx)
					if err != nil || cp.Seq != n {
						t.Fatalf("checkpoint %+v %v", cp, err)
					}
					tc.tamper(t, st, tr)
					rep := mustVerify(t, st, &cp)
					var got []want
					for _, p := range rep.Problems {
						w := want{p.Kind, p.Seq, p.Until}
						if w.end == w.seq && (p.Kind == audit.HeadEdited || p.Kind == audit.Reordered || p.Kind == audit.CheckpointMismatch) {
							w.end = 0
						}
						got = append(got, w)
						if p.String() == "" {
							t.Errorf("problem without text: %+v", p)
						}
					}
					if !slices.Equal(got, tc.wants) {
						t.Errorf("problems %v\nwant %v", rep.Problems, tc.wants)
					}
				})
			}
		})
	}
	// a forged checkpoint given to the verifier is refused outright
	each(t, func(t *testing.T, st *sqlstore.Store) {
		tr := open(t, st, audit.Options{})
		if err := tr.Record(ctx, read(1, "Patient/p1")); err != nil {
			t.Fatal(err)
		}
		cp, _ := tr.Checkpoint(ctx)
		cp.Seq = 1000
		if _, err := audit.VerifyLog(ctx, st, audit.VerifyOptions{Keys: keys, Checkpoint: &cp}); err == nil {
			t.Error("a forged checkpoint was accepted")
		}
	})
}
