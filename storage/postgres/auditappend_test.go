package postgres_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/jackc/pgx/v5"
)

func testSeal(prev []byte, r *storage.AuditRecord) {
	r.Prev = prev
	h := sha256.Sum256(append(append(append([]byte{}, prev...), strconv.FormatInt(r.Seq, 10)...), r.Body...))
	r.Hash = h[:]
}

func records(tag string, n int) []*storage.AuditRecord {
	out := make([]*storage.AuditRecord, n)
	for i := range out {
		out[i] = &storage.AuditRecord{Recorded: time.Now(), Action: "R", Outcome: "0", Type: "rest", KeyID: "k",
			Body: []byte(fmt.Sprintf("%s-%d", tag, i)), Refs: []storage.AuditRef{{Ref: "Patient/" + tag, Role: storage.AuditEntity}}}
	}
	return out
}

// Two processes append to one trail in turn and at once: each append is
// one pipelined batch when the process knows the head, and a batch whose
// head another process moved is refused whole and tried again from where
// the head is. Afterwards the trail is dense and every event chains to the
// one before it.
func TestAuditAppendReplicas(t *testing.T) {
	ctx := context.Background()
	cfg, a, b := twoReplicas(t)
	for i := range 6 { // in turn: every append after the first finds the head moved
		s := a
		if i%2 == 1 {
			s = b
		}
		if err := s.AppendAudit(ctx, records(fmt.Sprint("turn", i), 3), testSeal); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for g := range 4 { // at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*sqlstore.Store{a, b}[g%2]
			for i := range 10 {
				if err := s.AppendAudit(ctx, records(fmt.Sprint("g", g, "-", i), 1+i%5), testSeal); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// what was stored pending while the other held the head
	if _, bad, err := a.SealPending(ctx, 1<<20, openTest, testSeal); err != nil || bad != 0 {
		t.Fatalf("sealing the pending events: %d refused, %v", bad, err)
	}
	checkChain(t, cfg, 6*3+2*(1+2+3+4+5)*4)
}

// openTest is the SealPending open of testSeal's records: it checks the
// pending MAC (testSeal with no previous seal, sequence number 0).
func openTest(p storage.PendingAudit) (*storage.AuditRecord, error) {
	r := &storage.AuditRecord{Body: p.Body}
	testSeal(nil, r)
	if string(r.Hash) != string(p.MAC) {
		return nil, fmt.Errorf("pending event %d: MAC does not hold", p.ID)
	}
	tag, _, _ := strings.Cut(string(p.Body), "-")
	return &storage.AuditRecord{Recorded: time.Now(), Action: "R", Outcome: "0", Type: "rest", Body: p.Body,
		Refs: []storage.AuditRef{{Ref: "Patient/" + tag, Role: storage.AuditEntity}}}, nil
}

// checkChain checks that the trail holds n events, dense, each chained to
// the one before, and that the head names the last.
func checkChain(t *testing.T, cfg postgres.Config, n int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT seq, prev, hash, body FROM `+cfg.Schema+`.audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var (
		want int64 = 1
		prev []byte
	)
	for rows.Next() {
		var (
			seq        int64
			p, h, body []byte
		)
		if err := rows.Scan(&seq, &p, &h, &body); err != nil {
			t.Fatal(err)
		}
		r := &storage.AuditRecord{Seq: seq, Body: body}
		testSeal(prev, r)
		if seq != want || string(p) != string(prev) || string(h) != string(r.Hash) {
			t.Fatalf("event %d (want %d): does not chain to the one before", seq, want)
		}
		prev, want = h, want+1
	}
	if got := want - 1; got != n {
		t.Fatalf("%d events, want %d", got, n)
	}
	var head int64
	if err := conn.QueryRow(ctx, `SELECT seq FROM `+cfg.Schema+`.audit_head WHERE id = 1`).Scan(&head); err != nil || head != want-1 {
		t.Fatalf("head %d (%v), want %d", head, err, want-1)
	}
}

// An appender that finds the head held by another transaction (a replica
// committing its append, a write) does not wait for it: it stores its
// events pending, MACed, and answers; so does a write's transaction.
// SealPending, once the head is free, moves them into the trail in the
// order it finds them; a pending event whose MAC does not hold is marked
// refused and never sealed.
func TestAuditAppendPending(t *testing.T) {
	ctx := context.Background()
	cfg, a, b := twoReplicas(t)
	if err := a.AppendAudit(ctx, records("first", 2), testSeal); err != nil {
		t.Fatal(err)
	}
	// another appender holds the head
	holder, err := pgx.Connect(ctx, cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	htx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := htx.Exec(ctx, `SELECT seq FROM `+cfg.Schema+`.audit_head WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 3)
	recsA, recsB, recsTx := records("a", 3), records("b", 2), records("tx", 2)
	go func() { done <- a.AppendAudit(ctx, recsA, testSeal) }() // a knows the head: its one-round-trip batch
	go func() { done <- b.AppendAudit(ctx, recsB, testSeal) }() // b does not: the locked way
	go func() {
		done <- b.InTx(ctx, func(tx storage.Tx) error {
			return tx.(storage.AuditAppender).AppendAudit(ctx, recsTx, testSeal)
		})
	}()
	for range 3 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("an append waited for the head another transaction holds")
		}
	}
	for _, r := range append(append(recsA, recsB...), recsTx...) {
		if r.Seq != 0 {
			t.Fatalf("%s: Seq %d, want 0 (stored pending)", r.Body, r.Seq)
		}
	}
	// a forged pending event, and the head still held: nothing is sealed yet
	forger, err := pgx.Connect(ctx, cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close(ctx)
	if _, err := forger.Exec(ctx, `INSERT INTO `+cfg.Schema+`.audit_pending (key_id, mac, body) VALUES ('k', '\x00', 'forged-0')`); err != nil {
		t.Fatal(err)
	}
	sealed := make(chan error, 1)
	var n, bad int
	go func() {
		var err error
		n, bad, err = b.SealPending(ctx, 100, openTest, testSeal)
		sealed <- err
	}()
	select {
	case err := <-sealed:
		t.Fatalf("SealPending did not wait for the head (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := htx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-sealed; err != nil || n != 7 || bad != 1 {
		t.Fatalf("sealed %d, refused %d (%v); want 7 and 1", n, bad, err)
	}
	checkChain(t, cfg, 2+7)
	var pending []storage.PendingAudit
	if err := a.ScanPendingAudit(ctx, func(p storage.PendingAudit) error { pending = append(pending, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || !pending[0].Refused || string(pending[0].Body) != "forged-0" {
		t.Fatalf("left pending: %+v, want the forged event, refused", pending)
	}
	// nothing genuine pending: SealPending answers at once
	if n, _, err := a.SealPending(ctx, 100, openTest, testSeal); err != nil || n != 0 {
		t.Fatalf("sealed %d (%v)", n, err)
	}
	// b sealed, so b's next append goes straight into the trail; a expects
	// the head where it was before: its next append is stored pending (one
	// round trip either way) and tells it where the head is, so the one
	// after goes into the trail
	for _, step := range []struct {
		s       *sqlstore.Store
		pending bool
	}{{b, false}, {a, true}, {a, false}} {
		recs := records("after", 1)
		if err := step.s.AppendAudit(ctx, recs, testSeal); err != nil {
			t.Fatal(err)
		}
		if (recs[0].Seq == 0) != step.pending {
			t.Fatalf("append stored pending: %v, want %v", recs[0].Seq == 0, step.pending)
		}
	}
	if n, _, err := a.SealPending(ctx, 100, openTest, testSeal); err != nil || n != 1 {
		t.Fatalf("sealed %d (%v)", n, err)
	}
	checkChain(t, cfg, 2+7+3)
}

// An append whose references would take more parameters than one
// statement may carry goes the batched way, sealed all the same.
func TestAuditAppendLarge(t *testing.T) {
	ctx := context.Background()
	cfg, a, _ := twoReplicas(t)
	if err := a.AppendAudit(ctx, records("first", 1), testSeal); err != nil { // the head known
		t.Fatal(err)
	}
	recs := records("big", 200)
	for i, r := range recs {
		for k := range 80 {
			r.Refs = append(r.Refs, storage.AuditRef{Ref: fmt.Sprintf("Observation/o%d-%d", i, k), Role: storage.AuditEntity})
		}
	}
	if err := a.AppendAudit(ctx, recs, testSeal); err != nil {
		t.Fatal(err)
	}
	if recs[0].Seq != 2 || recs[199].Seq != 201 {
		t.Fatalf("sealed at %d..%d, want 2..201", recs[0].Seq, recs[199].Seq)
	}
	checkChain(t, cfg, 201)
}
