package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/jobs"
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

// backend opens (and reopens) one database.
type backend struct {
	name string
	open func(t *testing.T) storage.Store
}

func backends(t *testing.T) []backend {
	dir := t.TempDir()
	var pgcfg *postgres.Config
	return []backend{
		{"sqlite", func(t *testing.T) storage.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(dir, fmt.Sprintf("%s.db", strings.ReplaceAll(t.Name(), "/", "_"))), sqlstore.Options{Registry: registry()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"postgres", func(t *testing.T) storage.Store {
			if pgcfg == nil {
				c := pgtest.Config(t)
				pgcfg = &c
			}
			s, err := postgres.Open(context.Background(), *pgcfg, sqlstore.Options{Registry: registry()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

type fixture struct {
	ups     []*adaptertest.Upstream
	sources []adapters.Source
	full    *adaptertest.Upstream
}

// newFixture starts n fake upstreams holding overlapping parts of the first
// Synthea patient; opts may add faults per source.
func newFixture(t *testing.T, n int, opts func(i int, o *adaptertest.ServerOptions)) *fixture {
	f := &fixture{full: adaptertest.NewUpstream(t, adaptertest.ServerOptions{})}
	for i := range n {
		o := adaptertest.ServerOptions{Keep: adaptertest.Overlap(i, n), Match: true}
		if opts != nil {
			opts(i, &o)
		}
		up := adaptertest.NewUpstream(t, o)
		pageSize := 0
		if o.Latency > 0 {
			pageSize = 10 // many requests, so that a stop lands mid-fetch
		}
		src, err := fhirrest.New(fmt.Sprintf("src-%d", i), fhirrest.Config{Config: up.Config, PageSize: pageSize}, up.Options)
		if err != nil {
			t.Fatal(err)
		}
		f.ups = append(f.ups, up)
		f.sources = append(f.sources, src)
	}
	return f
}

// localPatient stores the Synthea patient as Patient/local (the gateway's
// own record of the person, which pulls find at each source by identifier).
func (f *fixture) localPatient(t *testing.T, st storage.Store) {
	p := f.full.Patient(f.full.Patients()[0])
	if _, err := st.Create(context.Background(), p.WithMeta("local", "", time.Time{})); err != nil {
		t.Fatal(err)
	}
}

func newService(t *testing.T, st storage.Store, f *fixture) *jobs.Service {
	svc, err := jobs.New(context.Background(), jobs.Config{
		Store: st, Sources: f.sources, MaxAttempts: 3,
		RetryDelay:   func(int) time.Duration { return 10 * time.Millisecond },
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

func wait(t *testing.T, svc *jobs.Service, id string) *jobs.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := svc.Wait(ctx, id, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkRecord: every resource of the full record exactly once in the
// consolidated view, nothing else from the sources.
func checkRecord(t *testing.T, st storage.Store, f *fixture) {
	t.Helper()
	got := map[string]int{}
	req := storage.EverythingRequest{PatientID: "local", Count: 1000}
	for {
		page, err := consolidate.View(st).Everything(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Matches {
			if id := tagCode(r, consolidate.TagSourceID); id != "" {
				got[id]++
			}
		}
		if page.Next == "" {
			break
		}
		req.Cursor = page.Next
	}
	for _, r := range f.full.Record(f.full.Patients()[0]) {
		k := r.Type + "/" + r.ID
		if r.Type == "Patient" {
			continue
		}
		if got[k] != 1 {
			t.Errorf("%s appears %d times, want 1", k, got[k])
		}
		delete(got, k)
	}
	for k, n := range got {
		t.Errorf("unexpected %s (%d times)", k, n)
	}
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

func TestPull(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			// src-1 fails for good (an HTML page); src-2 answers 503 on every
			// request of its first attempt, then recovers.
			fault := &adaptertest.Fault{Do: adaptertest.Status, Status: 503, Times: 6}
			f := newFixture(t, 3, func(i int, o *adaptertest.ServerOptions) {
				switch i {
				case 1:
					o.Faults = []*adaptertest.Fault{{Do: adaptertest.HTML, Times: adaptertest.Forever}}
				case 2:
					o.Faults = []*adaptertest.Fault{fault}
				}
			})
			st := b.open(t)
			defer st.Close()
			f.localPatient(t, st)
			svc := newService(t, st, f)
			defer svc.Stop(context.Background())
			id, err := svc.Enqueue(context.Background(), "local", nil)
			if err != nil {
				t.Fatal(err)
			}
			res := wait(t, svc, id)
			for _, s := range res.Sources {
				t.Logf("%s: %s after %d attempts, fetched %d, err %q", s.Source, s.State, s.Attempts, s.Fetched, s.Error)
				switch s.Source {
				case "src-1":
					if s.State != "failed" || !strings.Contains(s.Error, "FHIR") {
						t.Errorf("src-1: %+v, want failed with a not-FHIR error", s)
					}
				default:
					if s.State != "completed" || s.Written == nil || s.Written.Received == 0 {
						t.Errorf("%s: %+v, want completed", s.Source, s)
					}
				}
			}
			if _, err := svc.Enqueue(context.Background(), "local", []string{"nope"}); err == nil {
				t.Error("unknown source accepted")
			}
			if _, err := svc.Enqueue(context.Background(), "nobody", nil); err == nil {
				t.Error("unknown patient accepted")
			}
			// Mend src-1 and pull again: everything ends consolidated, and a
			// third pull changes nothing.
			f.ups[1] = nil
			up := adaptertest.NewUpstream(t, adaptertest.ServerOptions{Keep: adaptertest.Overlap(1, 3), Match: true})
			src, err := fhirrest.New("src-1", fhirrest.Config{Config: up.Config}, up.Options)
			if err != nil {
				t.Fatal(err)
			}
			f.sources[1] = src
			svc.Stop(context.Background())
			svc = newService(t, st, f)
			defer svc.Stop(context.Background())
			for round := range 2 {
				id, err := svc.Enqueue(context.Background(), "local", nil)
				if err != nil {
					t.Fatal(err)
				}
				res := wait(t, svc, id)
				for _, s := range res.Sources {
					if s.State != "completed" {
						t.Fatalf("round %d: %s %s: %s", round, s.Source, s.State, s.Error)
					}
					if round == 1 && (s.Written.Created != 0 || s.Written.Updated != 0) {
						t.Errorf("re-pull of %s wrote: %+v", s.Source, s.Written)
					}
				}
			}
			checkRecord(t, st, f)
		})
	}
}

// TestResume stops the service mid-pull, closes the store, reopens both,
// and checks that the pull finishes with a correct record.
func TestResume(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t, 3, func(i int, o *adaptertest.ServerOptions) {
				o.Latency = 5 * time.Millisecond // real time, so that the stop lands mid-fetch
			})
			st := b.open(t)
			f.localPatient(t, st)
			svc := newService(t, st, f)
			id, err := svc.Enqueue(context.Background(), "local", nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = svc.Wait(ctx, id, 5*time.Millisecond, func(s *jobs.Status) {
				for _, r := range s.Sources {
					if r.Fetched > 0 {
						cancel() // something is on its way: stop now
					}
				}
			})
			if err == nil {
				t.Fatal("the pull finished before the stop")
			}
			if err := svc.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			mid, err := svc.Status(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if mid.Done {
				t.Fatal("every source finished before the stop: nothing was interrupted")
			}
			t.Logf("at the stop: %s", mid.Progress)
			st.Close()

			st = b.open(t)
			defer st.Close()
			svc = newService(t, st, f)
			defer svc.Stop(context.Background())
			res := wait(t, svc, id)
			for _, s := range res.Sources {
				if s.State != "completed" {
					t.Errorf("%s: %s (%s)", s.Source, s.State, s.Error)
				}
			}
			checkRecord(t, st, f)
		})
	}
}
