package consolidate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// snapshot is every resource's current version (without its
// lastUpdated) and version number: what a consolidator wrote.
func snapshot(t *testing.T, st storage.Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	q := storage.HistoryQuery{Count: 1000}
	seen := map[string]bool{}
	for {
		page, err := st.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Entries {
			k := e.Type + "/" + e.ID
			if seen[k] {
				continue // newest first: the first is current
			}
			seen[k] = true
			if e.Resource == nil {
				out[k] = "deleted v" + e.VersionID
				continue
			}
			r := e.Resource.Rewrite(e.ID, nil, "", time.Time{}).Raw
			out[k] = "v" + e.VersionID + " " + strings.Split(string(r), `"lastUpdated":`)[0]
		}
		if page.Next == "" {
			return out
		}
		q.Cursor = page.Next
	}
}

// TestStateCacheEquivalent: consolidating with the state kept between
// batches writes exactly what reading the record for every batch writes,
// through overlapping sources, re-pulls, changed content, a deletion and
// an update made outside consolidation, and a batch that fails.
func TestStateCacheEquivalent(t *testing.T) {
	batches, _ := overlapping(t, 3)
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := func() time.Time { return time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC) }
			var scans []int // Everything calls per batch, with the kept state
			run := func(noCache bool) (map[string]string, []string) {
				inner := open(t)
				n := 0
				st := &countingStore{Store: inner, everything: &n}
				if _, err := st.Create(ctx, mustParse(t, `{"resourceType":"Patient","id":"local","name":[{"family":"Local"}]}`)); err != nil {
					t.Fatal(err)
				}
				c := &consolidate.Consolidator{Store: st, Now: now, NoStateCache: noCache}
				var reports []string
				apply := func(b pulled, rs []*fhir.Resource) {
					t.Helper()
					before := n
					rep, err := c.Apply(ctx, consolidate.Batch{Source: b.id, PatientID: "local", SourcePatientID: b.pid, Resources: rs})
					if !noCache {
						scans = append(scans, n-before)
					}
					if err != nil {
						reports = append(reports, "error: "+errors.Unwrap(err).Error())
						return
					}
					reports = append(reports, fmt.Sprintf("%+v", *rep))
				}
				// sources 0 and 1, then a re-pull of source 0
				apply(batches[0], batches[0].rs)
				apply(batches[1], batches[1].rs)
				apply(batches[0], batches[0].rs)
				// outside consolidation: a kept Condition of source 0 is
				// deleted, a kept Observation of source 1 is edited
				var cond, obs string
				for _, r := range batches[0].rs {
					if r.Type == "Condition" && cond == "" {
						cond = consolidate.LocalID(batches[0].id, "Condition", r.ID)
					}
				}
				for _, r := range batches[1].rs {
					if r.Type == "Observation" && obs == "" {
						obs = consolidate.LocalID(batches[1].id, "Observation", r.ID)
					}
				}
				if _, err := st.Delete(ctx, "Condition", cond, storage.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				o, err := st.Read(ctx, "Observation", obs)
				if err != nil {
					t.Fatal(err)
				}
				edited, err := fhir.Parse([]byte(strings.Replace(string(o.Raw), `"status":"final"`, `"status":"amended"`, 1)))
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := st.Update(ctx, edited, storage.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				// source 2 delivers the same facts (its copy of the deleted
				// Condition must be kept, not a duplicate of a deleted one)
				apply(batches[2], batches[2].rs)
				// source 0 again: its deleted Condition stays deleted, which
				// fails the batch; the state must not keep what rolled back
				apply(batches[0], batches[0].rs)
				// source 1 with changed content
				var changed []*fhir.Resource
				for _, r := range batches[1].rs {
					if r.Type == "Observation" {
						r2, err := fhir.Parse([]byte(strings.Replace(string(r.Raw), `"status":"final"`, `"status":"corrected"`, 1)))
						if err != nil {
							t.Fatal(err)
						}
						r = r2
					}
					changed = append(changed, r)
				}
				apply(batches[1], changed)
				apply(batches[2], batches[2].rs)
				return snapshot(t, st), reports
			}
			fresh, freshReports := run(true)
			cached, cachedReports := run(false)
			if !slices.Equal(freshReports, cachedReports) {
				t.Errorf("reports differ:\nread every time: %v\nkept state:      %v", freshReports, cachedReports)
			}
			if len(fresh) != len(cached) {
				t.Errorf("%d resources read every time, %d with the kept state", len(fresh), len(cached))
			}
			for k, v := range fresh {
				if cached[k] != v {
					t.Errorf("%s differs:\nread every time: %.300s\nkept state:      %.300s", k, v, cached[k])
				}
			}
			if !strings.HasPrefix(cachedReports[4], "error: ") {
				t.Errorf("the batch meant to fail did not: %s", cachedReports[4])
			}
			// the record is read for the first batch, after the changes made
			// outside consolidation, and after the failed batch (the failing one
			// starts from the kept state); the others
			// reuse the kept state
			read := func(i int) bool { return scans[i] > 0 }
			if !read(0) || read(1) || read(2) || !read(3) || read(4) || !read(5) || read(6) {
				t.Errorf("record reads per batch %v", scans)
			}
			t.Logf("%d resources, record reads per batch %v", len(fresh), scans)
		})
	}
}

// countingStore counts the record reads (Everything) of transactions.
type countingStore struct {
	storage.Store
	everything *int
}

func (s *countingStore) InTx(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Store.InTx(ctx, func(tx storage.Tx) error {
		return fn(&countingTx{Tx: tx, everything: s.everything})
	})
}

type countingTx struct {
	storage.Tx
	everything *int
}

func (t *countingTx) Everything(ctx context.Context, req storage.EverythingRequest) (*storage.SearchResult, error) {
	*t.everything++
	return t.Tx.Everything(ctx, req)
}

func (t *countingTx) RecordMark(ctx context.Context, pid string, refs []string) (string, error) {
	return t.Tx.(storage.RecordMarker).RecordMark(ctx, pid, refs)
}
