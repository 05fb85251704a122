package postgres_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage"
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
	if n := want - 1; n != 6*3+2*(1+2+3+4+5)*4 {
		t.Fatalf("%d events, want %d", n, 6*3+2*(1+2+3+4+5)*4)
	}
	var head int64
	if err := conn.QueryRow(ctx, `SELECT seq FROM `+cfg.Schema+`.audit_head WHERE id = 1`).Scan(&head); err != nil || head != want-1 {
		t.Fatalf("head %d (%v), want %d", head, err, want-1)
	}
}
