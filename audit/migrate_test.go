package audit

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// TestMigrate: the AuditEvents of the resource store move into the log,
// re-sealed under the key, in their chain's order, with a last event
// naming the old chain's head; the resource store and its index no longer
// hold them; a second start moves nothing.
func TestMigrate(t *testing.T) {
	for _, k := range reopenable(testRegistry(t)) {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			st := k.open(t)()
			defer st.Close()
			legacy, head := legacyTrail(t, 7)
			// the stored trail had lost its fourth event
			legacy = append(legacy[:3], legacy[4:]...)
			if _, err := st.CreateMany(ctx, legacy); err != nil {
				t.Fatal(err)
			}
			keys := testKeyring()
			tr, err := Open(ctx, st, Options{Keys: keys, Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if n, err := LegacyCount(ctx, st); err != nil || n != 0 {
				t.Fatalf("AuditEvents left in the resource store: %d %v", n, err)
			}
			var idx int
			if err := st.DB().QueryRow(ctx, `SELECT COUNT(*) FROM idx_token WHERE res_type = 'AuditEvent'`).Scan(&idx); err != nil || idx != 0 {
				t.Errorf("index rows left: %d %v", idx, err)
			}
			rep, err := VerifyLog(ctx, st, VerifyOptions{Keys: keys})
			if err != nil || !rep.OK() || rep.Events != 7 {
				t.Fatalf("after the move: %+v %v", rep, err)
			}
			var evs []*Event
			var recs []*storage.AuditRecord
			if err := st.ScanAudit(ctx, 1, func(r *storage.AuditRecord) error {
				e, err := EventOf(r)
				evs, recs = append(evs, e), append(recs, r)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			// in the old chain's order, each as it was
			for i, e := range evs[:6] {
				n := []int{1, 2, 3, 5, 6, 7}[i]
				if !e.Recorded.Equal(t0.Add(time.Duration(n)*time.Second)) || e.Patient != "Patient/p1" || e.Resources[0] != fmt.Sprintf("Observation/o%d", n) {
					t.Errorf("event %d: %+v", i+1, e)
				}
				r, err := Render(recs[i])
				if err != nil || !strings.Contains(string(r.Raw), `"sha256:`) || r.ID != ID(int64(i+1)) {
					t.Errorf("moved event %d renders as %.300s (%v)", i+1, r.Raw, err)
				}
			}
			marker := evs[6]
			if marker.Operation != "audit-migration" || marker.Outcome != MinorFailure ||
				!strings.Contains(marker.OutcomeDesc, head.Hash) || !strings.Contains(marker.OutcomeDesc, "event 4 is missing") {
				t.Errorf("marker %+v", marker)
			}
			// the log finds the moved events by their patient
			page, err := st.SearchAudit(ctx, storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Patient/p1"}, Roles: storage.AuditPatientRole}}})
			if err != nil || len(page.Records) != 6 {
				t.Errorf("moved events of Patient/p1: %v %v", page, err)
			}
			// a second start moves nothing
			if m, err := Migrate(ctx, st, keys, slog.New(slog.DiscardHandler), time.Now); err != nil || m != nil {
				t.Errorf("second migration: %+v %v", m, err)
			}
			if _, err := st.Read(ctx, "AuditEvent", legacy[0].ID); err == nil {
				t.Error("a moved AuditEvent is still readable from the resource store")
			}
		})
	}
}

// TestPostingsMigration: a trail whose references were indexed a row per
// event and reference (before migration 012) is indexed by postings after
// it: the verifier finds the index whole and searches find the events.
func TestPostingsMigration(t *testing.T) {
	for _, k := range reopenable(testRegistry(t)) {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			open := k.open(t)
			st := open()
			keys := testKeyring()
			tr, err := Open(ctx, st, Options{Keys: keys, Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			var evs []Event
			for i := range 40 {
				e := readEvent(i)
				e.Patient = fmt.Sprintf("Patient/p%d", i%3)
				e.Resources = []string{fmt.Sprintf("Observation/o%d", i)}
				evs = append(evs, e)
			}
			if err := tr.Record(ctx, evs[:25]...); err != nil { // one append: postings of many events
				t.Fatal(err)
			}
			if err := tr.Record(ctx, evs[25:]...); err != nil {
				t.Fatal(err)
			}
			tr.Close()
			// the schema as it was: a row per event and reference
			type row struct {
				seq int64
				ref storage.AuditRef
			}
			var rows []row
			if err := st.ScanAuditRefs(ctx, func(seq int64, ref storage.AuditRef) error {
				rows = append(rows, row{seq, ref})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`CREATE TABLE audit_refs (ref TEXT NOT NULL, seq BIGINT NOT NULL, role INTEGER NOT NULL, PRIMARY KEY (ref, seq))`,
				`DROP TABLE audit_postings`,
				`DELETE FROM schema_migrations WHERE name LIKE '012%'`,
			} {
				if _, err := st.DB().Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range rows {
				if _, err := st.DB().Exec(ctx, `INSERT INTO audit_refs (ref, seq, role) VALUES (?, ?, ?)`, r.ref.Ref, r.seq, r.ref.Role); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			st = open()
			defer st.Close()
			rep, err := VerifyLog(ctx, st, VerifyOptions{Keys: keys})
			if err != nil || !rep.OK() || rep.Events != 40 {
				t.Fatalf("after the migration: %+v %v", rep, err)
			}
			page, err := st.SearchAudit(ctx, storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Patient/p1"}, Roles: storage.AuditPatientRole}}, Total: true})
			if err != nil || len(page.Records) != 13 || page.Total != 13 {
				t.Fatalf("events of Patient/p1: %+v %v", page, err)
			}
		})
	}
}

// reopenable are the stores the migrations are tested on: open(t) sets up
// an empty database and returns what opens a store on it (again and again).
func reopenable(reg *search.Registry) []struct {
	name string
	open func(t *testing.T) func() *sqlstore.Store
} {
	return []struct {
		name string
		open func(t *testing.T) func() *sqlstore.Store
	}{
		{"sqlite", func(t *testing.T) func() *sqlstore.Store {
			path := filepath.Join(t.TempDir(), "m.db")
			return func() *sqlstore.Store {
				s, err := sqlite.Open(context.Background(), path, sqlstore.Options{Registry: reg})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
		{"postgres", func(t *testing.T) func() *sqlstore.Store {
			cfg := pgtest.Config(t)
			return func() *sqlstore.Store {
				s, err := postgres.Open(context.Background(), cfg, sqlstore.Options{Registry: reg})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
	}
}

// testRegistry is the search registry the migration tests' stores index with.
func testRegistry(t *testing.T) *search.Registry {
	t.Helper()
	reg, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}
