package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// testLockSerialises checks that transactions locking one key run their
// check-then-write one at a time: each reads a counter resource and writes
// it back incremented, with no If-Match, so any overlap loses an increment.
func testLockSerialises(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, mustParse(t, `{"resourceType":"Basic","id":"counter","code":{"text":"0"}}`)); err != nil {
		t.Fatal(err)
	}
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.InTx(ctx, func(tx storage.Tx) error {
				if err := tx.Lock(ctx, "test:counter", fmt.Sprintf("test:writer-%d", i)); err != nil {
					return err
				}
				// a plain read (no row lock): only the advisory lock orders us
				r, err := tx.Read(ctx, "Basic", "counter")
				if err != nil {
					return err
				}
				var n int
				fmt.Sscan(r.Root().Get("code").Get("text").String(), &n)
				_, _, err = tx.Update(ctx, mustParse(t, fmt.Sprintf(`{"resourceType":"Basic","id":"counter","code":{"text":"%d"}}`, n+1)), storage.UpdateOptions{})
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Read(ctx, "Basic", "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Root().Get("code").Get("text").String(); got != fmt.Sprint(writers) {
		t.Fatalf("counter %s after %d locked increments", got, writers)
	}
}

// testConcurrentUpdateAsCreate races updates of one new id: one creates
// it, the others update it; none fails.
func testConcurrentUpdateAsCreate(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		id := fmt.Sprintf("upsert-%d", round)
		const writers = 16
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created int
			failed  error
		)
		for i := 0; i < writers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, c, err := s.Update(ctx, patient(t, id, fmt.Sprint("F", i)), storage.UpdateOptions{AllowCreate: true})
				mu.Lock()
				defer mu.Unlock()
				if c {
					created++
				}
				if err != nil {
					failed = errors.Join(failed, err)
				}
			}()
		}
		wg.Wait()
		if failed != nil {
			t.Fatalf("round %d: %v", round, failed)
		}
		if created != 1 {
			t.Fatalf("round %d: %d creates, want 1", round, created)
		}
		r, err := s.Read(ctx, "Patient", id)
		if err != nil {
			t.Fatal(err)
		}
		if r.VersionID != fmt.Sprint(writers) {
			t.Fatalf("round %d: version %s, want %d", round, r.VersionID, writers)
		}
	}
}

// testChangeMarkLateCommit: a Consent write that commits after another
// Consent write that began later still moves the mark (on PostgreSQL the
// later one has the greater version sequence and may commit first).
func testChangeMarkLateCommit(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	consent := func(id string) *fhir.Resource {
		return mustParse(t, `{"resourceType":"Consent","id":"`+id+`","status":"active","scope":{"text":"x"},"category":[{"text":"x"}]}`)
	}
	wrote, release, aDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() { // A: writes first, commits last
		aDone <- s.InTx(ctx, func(tx storage.Tx) error {
			if _, err := tx.Create(ctx, consent("late-a")); err != nil {
				return err
			}
			close(wrote)
			<-release
			return nil
		})
	}()
	select {
	case <-wrote:
	case err := <-aDone:
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() { _, err := s.Create(ctx, consent("late-b")); bDone <- err }() // B: may commit before A
	select {                                                                 // give B the chance to commit first where the store lets it
	case err := <-bDone:
		if err != nil {
			t.Fatal(err)
		}
		bDone <- nil
	case <-time.After(300 * time.Millisecond):
	}
	before, err := s.ChangeMark(ctx, "Consent")
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	after, err := s.ChangeMark(ctx, "Consent")
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Fatalf("the mark stayed %d though a Consent write committed after it was read", after)
	}
}

// adapterStateStore is a store that keeps adapters' state (sqlstore).
type adapterStateStore interface {
	AdapterState() *sqlstore.AdapterState
}

// testAdapterState: values by key, absent as nil, deleted by nil, listed
// by prefix, and updates of one key serialised (twenty concurrent
// increments all count).
func testAdapterState(t *testing.T, s storage.Store, _ *Clock) {
	as, ok := s.(adapterStateStore)
	if !ok {
		t.Skip("the store keeps no adapter state")
	}
	st, ctx := as.AdapterState(), context.Background()
	if v, err := st.Get(ctx, "a/x"); err != nil || v != nil {
		t.Fatalf("absent key: %q %v", v, err)
	}
	set := func(k, v string) {
		t.Helper()
		if err := st.Update(ctx, k, func([]byte) ([]byte, error) {
			if v == "" {
				return nil, nil
			}
			return []byte(v), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set("a/x", "1")
	set("a/y", "2")
	set("b/z", "3")
	if keys, err := st.Keys(ctx, "a/"); err != nil || fmt.Sprint(keys) != "[a/x a/y]" {
		t.Fatalf("keys %v %v", keys, err)
	}
	set("a/x", "")
	if v, _ := st.Get(ctx, "a/x"); v != nil {
		t.Fatalf("deleted key answers %q", v)
	}
	// an error from fn keeps the value
	if err := st.Update(ctx, "a/y", func([]byte) ([]byte, error) { return nil, errors.New("no") }); err == nil {
		t.Fatal("fn's error lost")
	}
	if v, _ := st.Get(ctx, "a/y"); string(v) != "2" {
		t.Fatalf("value after a failed update: %q", v)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := st.Update(ctx, "count", func(old []byte) ([]byte, error) {
				var n int
				fmt.Sscan(string(old), &n)
				return []byte(fmt.Sprint(n + 1)), nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if v, _ := st.Get(ctx, "count"); string(v) != "20" {
		t.Fatalf("20 locked increments made %q", v)
	}
}
