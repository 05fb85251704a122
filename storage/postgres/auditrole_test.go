package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// One replica at a time holds the audit log's appender role: it appends
// to the chain while the others store their events pending (one insert,
// no wait for the head). The role is a session advisory lock keyed by
// schema: another schema's gateway holds its own; when the holder goes,
// the next replica to ask takes it. Whatever the roles, everything ends up
// sealed in one dense chain.
func TestAuditAppenderRole(t *testing.T) {
	ctx := context.Background()
	cfg, a, b := twoReplicas(t)
	// before anyone claims the role, both append to the chain (as before)
	for _, s := range []*sqlstore.Store{a, b} {
		recs := records("unclaimed", 2)
		if err := s.AppendAudit(ctx, recs, testSeal); err != nil {
			t.Fatal(err)
		}
		if recs[0].Seq == 0 {
			t.Fatal("an append before the role was claimed went pending")
		}
	}
	if held, err := a.ClaimAppender(ctx); err != nil || !held {
		t.Fatalf("the first replica to claim the role did not get it: %v, %v", held, err)
	}
	if held, err := a.ClaimAppender(ctx); err != nil || !held {
		t.Fatalf("the holder lost the role on asking again: %v, %v", held, err)
	}
	if held, err := b.ClaimAppender(ctx); err != nil || held {
		t.Fatalf("a second replica took the role while the first holds it: %v, %v", held, err)
	}
	// another schema of the same database: a gateway of its own
	other, err := postgres.Open(ctx, pgtest.Config(t), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if held, err := other.ClaimAppender(ctx); err != nil || !held {
		t.Fatalf("a gateway on another schema shares the role: %v, %v", held, err)
	}

	// the holder appends to the chain; the other stores pending, also
	// inside a write's transaction and under concurrency
	holderAppends(t, a, "holder")
	for i := range 3 { // alone: nothing holds the head, yet b stores pending
		recs := records(fmt.Sprint("alone", i), 1)
		if err := b.AppendAudit(ctx, recs, testSeal); err != nil || recs[0].Seq != 0 {
			t.Fatalf("a replica without the role appended to the chain (event %d, %v)", recs[0].Seq, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				s := []*sqlstore.Store{a, b}[g%2]
				recs := records(fmt.Sprint("g", g, "-", i), 1+i%3)
				if err := s.AppendAudit(ctx, recs, testSeal); err != nil {
					errs <- err
					continue
				}
				if s == b && recs[0].Seq != 0 {
					errs <- fmt.Errorf("a replica without the role appended to the chain (event %d)", recs[0].Seq)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// (the holder's own appends go pending too when the head moved since
	// its last or another of its appends holds it: here they run at once)
	if n := pendingCount(t, cfg); n < 3+2*(1+2+3+1+2) {
		t.Fatalf("%d events pending, want at least the second replica's %d", n, 3+2*(1+2+3+1+2))
	}
	if _, bad, err := a.SealPending(ctx, 1<<20, openTest, testSeal); err != nil || bad != 0 {
		t.Fatalf("sealing: %d refused, %v", bad, err)
	}

	// the holder goes: the next replica to ask takes the role, and appends
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if held, err := b.ClaimAppender(ctx); err != nil || !held {
		t.Fatalf("the role was not taken over when its holder closed: %v, %v", held, err)
	}
	holderAppends(t, b, "new holder")
	if _, bad, err := b.SealPending(ctx, 1<<20, openTest, testSeal); err != nil || bad != 0 {
		t.Fatalf("sealing: %d refused, %v", bad, err)
	}
	if n := pendingCount(t, cfg); n != 0 {
		t.Fatalf("%d events still pending", n)
	}
	checkChain(t, cfg, 2+2+3+3+3+2*(1+2+3+1+2)+2*(1+2+3+1+2)+3+3)
}

// holderAppends appends twice through the holder of the role: the first
// goes pending if another process moved the head since this one's last
// append (the one-round-trip append expects it where it left it), the
// second must then append to the chain.
func holderAppends(t *testing.T, s *sqlstore.Store, tag string) {
	t.Helper()
	for i := range 2 {
		recs := records(fmt.Sprint(tag, i), 3)
		if err := s.AppendAudit(context.Background(), recs, testSeal); err != nil {
			t.Fatal(err)
		}
		if i == 1 && recs[0].Seq == 0 {
			t.Fatal("the holder's append went pending twice in a row")
		}
	}
}

// pendingCount is how many events wait in the schema's audit_pending.
func pendingCount(t *testing.T, cfg postgres.Config) int {
	t.Helper()
	db, err := postgres.OpenDB(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit_pending`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
