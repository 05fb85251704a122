package storagetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage"
)

// testAuditSearch: searches of the audit log by reference, columns,
// sequence numbers and direction, paged to the end, and their totals, agree
// with an oracle over what was appended, for appends of one event, of
// hundreds sharing references, and of more events than one posting spans;
// ScanAuditRefs lists every indexed reference once.
func testAuditSearch(t *testing.T, s storage.Store, _ *Clock) {
	lg, ok := s.(storage.AuditLog)
	if !ok {
		t.Skip("the store keeps no audit log")
	}
	ctx := context.Background()
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	pool := []string{"@c1", "@c2", "Organization/o1", "Organization/o2"}
	for i := range 5 {
		pool = append(pool, fmt.Sprintf("Patient/p%d", i))
	}
	for i := range 20 {
		pool = append(pool, fmt.Sprintf("Observation/x%d", i))
	}
	actions := []string{"R", "C", "U", "E"}
	seal := func(prev []byte, r *storage.AuditRecord) {
		h := sha256.New()
		h.Write(prev)
		_ = binary.Write(h, binary.BigEndian, r.Seq)
		r.KeyID, r.Prev, r.Hash = "k", prev, h.Sum(nil)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []*storage.AuditRecord
	newRec := func(refs int) *storage.AuditRecord {
		r := &storage.AuditRecord{Recorded: base.Add(time.Duration(rng.IntN(1000)) * time.Second), Action: actions[rng.IntN(len(actions))], Outcome: "0", Type: "rest", Subtype: "read", Body: []byte("{}")}
		for _, i := range rng.Perm(len(pool))[:refs] {
			r.Refs = append(r.Refs, storage.AuditRef{Ref: pool[i], Role: 1 + rng.IntN(31)})
		}
		return r
	}
	batches := []int{1, 1, 300, 1, 50, 5000, 2, 120}
	for _, n := range batches {
		recs := make([]*storage.AuditRecord, n)
		for i := range recs {
			recs[i] = newRec(1 + rng.IntN(6))
		}
		if n == 5000 {
			for _, r := range recs {
				if !slices.ContainsFunc(r.Refs, func(x storage.AuditRef) bool { return x.Ref == "@c1" }) {
					r.Refs = append(r.Refs, storage.AuditRef{Ref: "@c1", Role: storage.AuditClient})
				}
			}
		}
		if err := lg.AppendAudit(ctx, recs, seal); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	// the oracle
	holds := func(r *storage.AuditRecord, f storage.AuditRefFilter) bool {
		for _, x := range r.Refs {
			if slices.Contains(f.Refs, x.Ref) && x.Role&f.Roles != 0 {
				return true
			}
		}
		return false
	}
	matches := func(r *storage.AuditRecord, q storage.AuditQuery) bool {
		if len(q.Seqs) > 0 && !slices.Contains(q.Seqs, r.Seq) || q.Until > 0 && r.Seq > q.Until {
			return false
		}
		if len(q.Action) > 0 && !slices.Contains(q.Action, r.Action) {
			return false
		}
		for _, f := range q.Refs {
			if !holds(r, f) {
				return false
			}
		}
		return true
	}
	// every indexed reference, once
	type triple struct {
		seq  int64
		ref  string
		role int
	}
	var want, got []triple
	for _, r := range all {
		for _, x := range r.Refs {
			want = append(want, triple{r.Seq, x.Ref, x.Role})
		}
	}
	if err := lg.ScanAuditRefs(ctx, func(seq int64, ref storage.AuditRef) error {
		got = append(got, triple{seq, ref.Ref, ref.Role})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	order := func(a, b triple) int {
		if a.seq != b.seq {
			return int(a.seq - b.seq)
		}
		if a.ref < b.ref {
			return -1
		}
		if a.ref > b.ref {
			return 1
		}
		return 0
	}
	slices.SortFunc(want, order)
	slices.SortFunc(got, order)
	if !slices.Equal(got, want) {
		t.Fatalf("ScanAuditRefs listed %d references, %d were appended (or they differ)", len(got), len(want))
	}
	head := all[len(all)-1].Seq
	for i := range 300 {
		var q storage.AuditQuery
		for range rng.IntN(3) {
			f := storage.AuditRefFilter{Roles: 1 + rng.IntN(31)}
			for range 1 + rng.IntN(3) {
				f.Refs = append(f.Refs, pool[rng.IntN(len(pool))])
			}
			q.Refs = append(q.Refs, f)
		}
		if rng.IntN(4) == 0 {
			q.Action = []string{actions[rng.IntN(len(actions))]}
		}
		if rng.IntN(6) == 0 {
			for range 1 + rng.IntN(4) {
				q.Seqs = append(q.Seqs, 1+rng.Int64N(head))
			}
		}
		if rng.IntN(3) == 0 {
			q.Until = 1 + rng.Int64N(head)
		}
		q.Desc = rng.IntN(2) == 0
		q.Count = 1 + rng.IntN(400)
		q.Total = true
		var exp []int64
		for _, r := range all {
			if matches(r, q) {
				exp = append(exp, r.Seq)
			}
		}
		if q.Desc {
			slices.Reverse(exp)
		}
		var seqs []int64
		for pages := 0; ; pages++ {
			page, err := lg.SearchAudit(ctx, q)
			if err != nil {
				t.Fatalf("query %d %+v: %v", i, q, err)
			}
			if pages == 0 && page.Total != len(exp) {
				t.Fatalf("query %d %+v: total %d, want %d", i, q, page.Total, len(exp))
			}
			for _, r := range page.Records {
				seqs = append(seqs, r.Seq)
			}
			if page.Next == 0 {
				break
			}
			if pages > len(exp) {
				t.Fatalf("query %d: pages do not end", i)
			}
			q.After, q.Total = page.Next, false
		}
		if !slices.Equal(seqs, exp) {
			t.Fatalf("query %d %+v:\n got %d events %v\nwant %d events %v", i, q, len(seqs), head10(seqs), len(exp), head10(exp))
		}
	}
}

func head10(s []int64) []int64 {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
