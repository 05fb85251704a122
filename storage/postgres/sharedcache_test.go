package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/jackc/pgx/v5"
)

// twoReplicas opens two stores on one schema, as two gateway processes on
// one database.
func twoReplicas(t *testing.T) (cfg postgres.Config, a, b *sqlstore.Store) {
	t.Helper()
	cfg = pgtest.Config(t)
	open := func() *sqlstore.Store {
		s, err := postgres.Open(context.Background(), cfg, sqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if !s.CacheShared() {
			t.Fatal("the PostgreSQL store keeps no shared read cache")
		}
		return s
	}
	return cfg, open(), open()
}

func patient(t *testing.T, id, family string) *fhir.Resource {
	t.Helper()
	r, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitVersion reads through s until it answers version want (or a later
// one), failing after a few seconds.
func waitVersion(t *testing.T, s storage.Store, id string, want int64, gone bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := s.Read(context.Background(), "Patient", id)
		if gone && errors.Is(err, storage.ErrGone) || !gone && err == nil {
			if v, _ := strconv.ParseInt(r.VersionID, 10, 64); v >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			var got string
			if r != nil {
				got = r.VersionID
			}
			t.Fatalf("Patient/%s: still version %q (%v), want version %d (gone %v)", id, got, err, want, gone)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A version written through one replica replaces what the other holds in
// its cache, and a deletion too; a replica never answers an older version
// once it has answered a newer one.
func TestSharedReadCache(t *testing.T) {
	ctx := context.Background()
	_, a, b := twoReplicas(t)
	if _, _, err := a.Update(ctx, patient(t, "p1", "One"), storage.UpdateOptions{AllowCreate: true}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, b, "p1", 1, false)
	for v := int64(2); v <= 5; v++ {
		if _, _, err := a.Update(ctx, patient(t, "p1", fmt.Sprint("V", v)), storage.UpdateOptions{AllowCreate: true}); err != nil {
			t.Fatal(err)
		}
		waitVersion(t, b, "p1", v, false)
	}
	if _, err := a.Delete(ctx, "Patient", "p1", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, b, "p1", 6, true)
	// and the other way round
	if _, _, err := b.Update(ctx, patient(t, "p1", "Back"), storage.UpdateOptions{AllowCreate: true}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, "p1", 7, false)
}

// Readers on one replica race writers on the other: every reader sees
// versions in order, and when the writers stop both replicas answer the
// last version.
func TestSharedReadCacheRace(t *testing.T) {
	ctx := context.Background()
	_, a, b := twoReplicas(t)
	const ids, writes = 4, 40
	for i := range ids {
		if _, _, err := a.Update(ctx, patient(t, fmt.Sprint("r", i), "v1"), storage.UpdateOptions{AllowCreate: true}); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		served int
	)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]int64{}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprint("r", (g+n)%ids)
				r, err := b.Read(ctx, "Patient", id)
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
				v, _ := strconv.ParseInt(r.VersionID, 10, 64)
				if v < last[id] {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("reader %d: Patient/%s version %d after %d", g, id, v, last[id]))
					mu.Unlock()
				}
				last[id] = v
				mu.Lock()
				served++
				mu.Unlock()
			}
		}()
	}
	var ww sync.WaitGroup
	for i := range ids {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for w := 2; w <= writes; w++ {
				if _, _, err := a.Update(ctx, patient(t, fmt.Sprint("r", i), fmt.Sprint("v", w)), storage.UpdateOptions{AllowCreate: true}); err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	for i := range ids {
		waitVersion(t, b, fmt.Sprint("r", i), writes, false)
	}
	t.Logf("%d reads served during %d writes", served, ids*(writes-1))
}

// A replica whose listening connection is cut stops serving from its
// cache: after the cut, a version written through the other replica is
// answered once the listener is back (which starts from an empty cache),
// and the listener comes back by itself.
func TestSharedReadCacheListenerLost(t *testing.T) {
	ctx := context.Background()
	cfg, a, b := twoReplicas(t)
	if _, _, err := a.Update(ctx, patient(t, "p1", "One"), storage.UpdateOptions{AllowCreate: true}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, b, "p1", 1, false)
	conn, err := pgx.Connect(ctx, cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	kill := func() int {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'fhirgate-cache-listener' AND datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// every listener of the database, this test's two among them
	if n := kill(); n < 2 {
		t.Fatalf("terminated %d listeners, want at least 2", n)
	}
	if _, _, err := a.Update(ctx, patient(t, "p1", "Two"), storage.UpdateOptions{AllowCreate: true}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, b, "p1", 2, false)
	// the listeners came back: announcements flow again
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fhirgate-cache-listener'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the listeners did not reconnect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for v := int64(3); v <= 4; v++ {
		if _, _, err := a.Update(ctx, patient(t, "p1", fmt.Sprint("V", v)), storage.UpdateOptions{AllowCreate: true}); err != nil {
			t.Fatal(err)
		}
		waitVersion(t, b, "p1", v, false)
	}
}

// TestSharedMarksRevocation: a replica keeps the Consent mark (a consented
// provider's every request reads it) yet, once a write of a Consent on
// another replica has returned, its next read of the mark is the new one:
// the revocation holds for the next request wherever it lands. The reader
// replica is kept busy reading the mark throughout, so its kept mark is
// always as fresh as the cache allows.
func TestSharedMarksRevocation(t *testing.T) {
	_, a, b := twoReplicas(t)
	ctx := context.Background()
	consent := func(status string) *fhir.Resource {
		r, err := fhir.Parse([]byte(`{"resourceType":"Consent","id":"c1","status":"` + status + `","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"coding":[{"code":"INFA"}]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if _, _, err := a.Update(ctx, consent("active"), storage.UpdateOptions{AllowCreate: true}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.ChangeMark(ctx, "Consent"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := range 40 {
		status := []string{"inactive", "active"}[i%2]
		before, err := b.ChangeMark(ctx, "Consent")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.Update(ctx, consent(status), storage.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		after, err := b.ChangeMark(ctx, "Consent")
		if err != nil {
			t.Fatal(err)
		}
		if after == before {
			t.Fatalf("round %d: the other replica still reads the Consent mark %d after the write returned", i, after)
		}
	}
}
