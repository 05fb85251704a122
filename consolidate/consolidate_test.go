package consolidate_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

var registry = sync.OnceValue(func() *search.Registry {
	r, err := search.New(search.Options{})
	if err != nil {
		panic(err)
	}
	return r
})

func stores(t *testing.T) map[string]func(t *testing.T) storage.Store {
	return map[string]func(t *testing.T) storage.Store{
		"sqlite": func(t *testing.T) storage.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlstore.Options{Registry: registry()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) storage.Store {
			s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: registry()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// pulled is one source's delivery of the first Synthea patient.
type pulled struct {
	id  string
	pid string
	rs  []*fhir.Resource
}

func overlapping(t *testing.T, n int) ([]pulled, *adaptertest.Upstream) {
	var out []pulled
	for i := range n {
		up := adaptertest.NewUpstream(t, adaptertest.ServerOptions{Keep: adaptertest.Overlap(i, n)})
		src, err := fhirrest.New(fmt.Sprintf("src-%d", i), fhirrest.Config{Config: up.Config}, up.Options)
		if err != nil {
			t.Fatal(err)
		}
		pid := up.Patients()[0]
		rs, _, err := adapters.Collect(context.Background(), src, adapters.FetchRequest{PatientID: pid})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pulled{src.ID(), pid, rs})
	}
	return out, adaptertest.NewUpstream(t, adaptertest.ServerOptions{})
}

func TestConsolidateOverlap(t *testing.T) {
	batches, full := overlapping(t, 3)
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := open(t)
			if _, err := st.Create(ctx, mustParse(t, `{"resourceType":"Patient","id":"local","name":[{"family":"Local"}]}`)); err != nil {
				t.Fatal(err)
			}
			c := &consolidate.Consolidator{Store: st}
			for round := range 2 {
				for _, b := range batches {
					rep, err := c.Apply(ctx, consolidate.Batch{Source: b.id, PatientID: "local", SourcePatientID: b.pid, Resources: b.rs})
					if err != nil {
						t.Fatal(err)
					}
					if round == 1 && (rep.Created != 0 || rep.Updated != 0 || rep.Unchanged != len(b.rs)) {
						t.Errorf("re-pull of %s: %+v, want everything unchanged", b.id, rep)
					}
				}
			}
			checkRecord(t, st, full, len(batches))
		})
	}
}

// checkRecord checks that the consolidated view holds every resource of the
// full record exactly once, that no duplicate is in it, and that each
// source has its Provenance.
func checkRecord(t *testing.T, st storage.Store, full *adaptertest.Upstream, nSources int) {
	t.Helper()
	ctx := context.Background()
	got := map[string]int{}
	provs := map[string]bool{}
	var all []*fhir.Resource
	req := storage.EverythingRequest{PatientID: "local", Count: 500}
	for {
		page, err := consolidate.View(st).Everything(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Matches...)
		if page.Next == "" {
			break
		}
		req.Cursor = page.Next
	}
	for _, r := range all {
		if consolidate.IsDuplicate(r) {
			t.Errorf("%s/%s is a duplicate in the consolidated view", r.Type, r.ID)
		}
		if r.Type == "Provenance" && tagCode(r, consolidate.TagGenerated) == "pull" {
			for _, a := range r.Root().Get("agent").Items {
				provs[a.Get("who").Get("identifier").Get("value").String()] = true
			}
			if is := validate.Validate(r); validate.HasErrors(is) {
				t.Errorf("authored Provenance invalid: %+v", is)
			}
			continue
		}
		if r.Type == "Patient" && r.ID == "local" {
			continue
		}
		got[tagCode(r, consolidate.TagSourceID)]++
	}
	want := full.Record(full.Patients()[0])
	for _, r := range want {
		k := r.Type + "/" + r.ID
		if r.Type == "Patient" {
			continue
		}
		if got[k] != 1 {
			t.Errorf("%s appears %d times in the consolidated view, want 1", k, got[k])
		}
		delete(got, k)
	}
	for k, n := range got {
		t.Errorf("unexpected %s (%d times) in the consolidated view", k, n)
	}
	if len(provs) != nSources {
		t.Errorf("pull Provenance for %d sources, want %d", len(provs), nSources)
	}
	t.Logf("%d resources in the consolidated view", len(all))
}

func tagCode(r *fhir.Resource, system string) string {
	if m := r.Root().Get("meta"); m != nil {
		if tags := m.Get("tag"); tags != nil {
			for _, tg := range tags.Items {
				if tg.Get("system").String() == system {
					return tg.Get("code").String()
				}
			}
		}
	}
	return ""
}

func mustParse(t *testing.T, s string) *fhir.Resource {
	t.Helper()
	r, err := fhir.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
