package consolidate_test

import (
	"context"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// TestReplicasConsolidate: three consolidators, each with its own
// in-process locks and state cache and (on PostgreSQL) its own connection
// pool, as three gateway replicas have, file overlapping batches of one
// patient at the same moment, several rounds: every fact is kept once, as
// with one consolidator, and a replica whose cached state another one made
// stale sees the other's writes.
func TestReplicasConsolidate(t *testing.T) {
	batches, full := overlapping(t, 3)
	type replicaSet func(t *testing.T) []storage.Store
	sets := map[string]replicaSet{
		"sqlite": func(t *testing.T) []storage.Store {
			st := stores(t)["sqlite"](t) // one process owns the file
			return []storage.Store{st, st, st}
		},
		"postgres": func(t *testing.T) []storage.Store {
			cfg := pgtest.Config(t)
			var out []storage.Store
			for range 3 {
				s, err := postgres.Open(context.Background(), cfg, sqlstore.Options{Registry: registry()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				out = append(out, s)
			}
			return out
		},
	}
	for name, open := range sets {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			sts := open(t)
			if _, err := sts[0].Create(ctx, mustParse(t, `{"resourceType":"Patient","id":"local","name":[{"family":"Local"}]}`)); err != nil {
				t.Fatal(err)
			}
			var replicas []*consolidate.Consolidator
			for _, st := range sts {
				replicas = append(replicas, &consolidate.Consolidator{Store: st})
			}
			for round := range 4 {
				var wg sync.WaitGroup
				reps := make([]*consolidate.Report, len(batches))
				errs := make([]error, len(batches))
				for i, b := range batches {
					c := replicas[(i+round)%len(replicas)] // each round, each source on another replica
					wg.Go(func() {
						reps[i], errs[i] = c.Apply(ctx, consolidate.Batch{Source: b.id, PatientID: "local", SourcePatientID: b.pid, Resources: b.rs})
					})
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d, %s: %v", round, batches[i].id, err)
					}
					if r := reps[i]; round > 0 && (r.Created != 0 || r.Updated != 0) {
						t.Errorf("round %d, re-pull of %s changed the record: %+v", round, batches[i].id, r)
					}
				}
			}
			checkRecord(t, sts[0], full, len(batches))
		})
	}
}
