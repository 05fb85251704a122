package audit_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

var registry = func() *search.Registry {
	r, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		panic(err)
	}
	return r
}()

var keys = audit.NewKeyring(audit.Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")})

type kind struct {
	name string
	open func(t testing.TB) *sqlstore.Store
}

var kinds = []kind{
	{"sqlite", func(t testing.TB) *sqlstore.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"), sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t testing.TB) *sqlstore.Store {
		s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

func each(t *testing.T, fn func(t *testing.T, st *sqlstore.Store)) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k.open(t)) })
	}
}

func open(t testing.TB, st storage.Store, opts audit.Options) *audit.Trail {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = keys
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = -1
	}
	tr, err := audit.Open(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func read(i int, patient string) audit.Event {
	return audit.Event{Interaction: "read", Recorded: t0.Add(time.Duration(i) * time.Second), Who: "Organization/clinic", ClientID: "clinic",
		Resource: fmt.Sprintf("Observation/o%d", i), Patient: patient, Consents: []string{"Consent/c1"}}
}

func mustVerify(t *testing.T, lg storage.AuditLog, c *audit.Checkpoint) audit.Report {
	t.Helper()
	rep, err := audit.VerifyLog(context.Background(), lg, audit.VerifyOptions{Keys: keys, Checkpoint: c})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func patient(id string) *fhir.Resource {
	r, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"` + id + `","name":[{"family":"X"}]}`))
	if err != nil {
		panic(err)
	}
	return r
}

func observation(id, pid string) *fhir.Resource {
	r, err := fhir.Parse([]byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + pid + `"}}`))
	if err != nil {
		panic(err)
	}
	return r
}

// TestTrail: recorded events are durable when Record returns; a write's
// events commit with it, naming the stored versions and every patient; a
// rolled-back write leaves nothing; searches see what they should.
func TestTrail(t *testing.T) {
	each(t, func(t *testing.T, st *sqlstore.Store) {
		ctx := context.Background()
		tr := open(t, st, audit.Options{Server: "http://gw.test"})
		lg := tr.Log()

		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := tr.Record(ctx, read(i, fmt.Sprintf("Patient/p%d", i%4))); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()

		job := audit.WithActivity(ctx, &audit.Job{Event: audit.Event{Interaction: "operation", Operation: "pull", Origin: "city-hospital", ClientID: "hospital"}})
		if _, err := st.CreateMany(job, []*fhir.Resource{patient("pa"), observation("oa", "pa"), observation("ob", "pb")}); err != nil {
			t.Fatal(err)
		}
		// moving an Observation to another patient touches both
		if _, _, err := st.Update(ctx, observation("oa", "pc"), storage.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// the gateway's own bookkeeping touches no patient: no event
		org, _ := fhir.Parse([]byte(`{"resourceType":"Organization","id":"org1","name":"x"}`))
		if _, err := st.Create(ctx, org); err != nil {
			t.Fatal(err)
		}
		before, _ := lg.AuditHead(ctx)
		boom := errors.New("boom")
		if err := st.InTx(job, func(tx storage.Tx) error {
			if _, err := tx.Create(job, observation("oz", "pa")); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		after, _ := lg.AuditHead(ctx)
		if after.Seq != before.Seq {
			t.Errorf("a rolled-back write moved the head from %d to %d", before.Seq, after.Seq)
		}
		if after.Seq != 40+2+2 {
			t.Errorf("head %d, want 44 events", after.Seq)
		}

		search := func(q storage.AuditQuery) []*audit.Event { t.Helper(); return searchEvents(t, lg, q) }
		pa := search(storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Patient/pa"}, Roles: storage.AuditPatientRole}}, Count: 10})
		if len(pa) != 2 {
			t.Fatalf("events of Patient/pa: %d", len(pa))
		}
		if e := pa[0]; e.Operation != "pull" || e.Origin != "city-hospital" || !slices.Contains(e.Resources, "Observation/oa/_history/1") || !slices.Contains(e.Resources, "Patient/pa/_history/1") || slices.Contains(e.Resources, "Observation/ob/_history/1") {
			t.Errorf("pull event %+v", e)
		}
		if e := pa[1]; e.Interaction != "update" || !slices.Contains(e.Resources, "Observation/oa/_history/2") {
			t.Errorf("update event %+v", e)
		}
		if pc := search(storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Patient/pc"}, Roles: storage.AuditPatientRole}}}); len(pc) != 1 {
			t.Errorf("the patient an Observation moved to has %d events", len(pc))
		}
		// paging, newest first, with a total that counts the restriction only
		var seen []string
		q := storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Organization/clinic", "@clinic"}, Roles: storage.AuditAgent | storage.AuditClient}}, Desc: true, Count: 7, Total: true}
		for {
			page, err := lg.SearchAudit(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != 40 {
				t.Errorf("total %d", page.Total)
			}
			for _, r := range page.Records {
				seen = append(seen, audit.ID(r.Seq))
			}
			if page.Next == 0 {
				break
			}
			q.After = page.Next
		}
		if len(seen) != 40 || !slices.IsSortedFunc(seen, func(a, b string) int { return strings.Compare(b, a) }) {
			t.Errorf("paged %d events: %v", len(seen), seen)
		}
		// date range and codes
		got := search(storage.AuditQuery{From: t0.Add(10 * time.Second), To: t0.Add(20 * time.Second), Action: []string{"R"}, Outcome: []string{"0"}, Count: 100})
		if len(got) != 10 {
			t.Errorf("date range: %d events", len(got))
		}
		ent := search(storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Observation/o7"}, Roles: storage.AuditEntity}}})
		if len(ent) != 1 || ent[0].Resource != "Observation/o7" {
			t.Errorf("entity search: %v", ent)
		}
		if rep := mustVerify(t, lg, nil); !rep.OK() || rep.Events != 44 {
			t.Errorf("verify: %+v", rep)
		}
	})
}

// TestReplicas: gateways on one PostgreSQL append to one trail, whose
// order the database decides: several stores (each its own pool, as
// replicas have) record and write at once; the trail is dense, verifies,
// and holds every event once.
func TestReplicas(t *testing.T) {
	ctx := context.Background()
	cfg := pgtest.Config(t)
	const replicas, perReplica = 3, 60
	var trails []*audit.Trail
	var stores []*sqlstore.Store
	for range replicas {
		st, err := postgres.Open(ctx, cfg, sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
		trails = append(trails, open(t, st, audit.Options{}))
	}
	var wg sync.WaitGroup
	for r := range replicas {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perReplica / 4 {
					n := r*1000 + g*100 + i
					if i%5 == 0 {
						// a write: its event commits with it
						pid := fmt.Sprintf("r%d", n)
						job := audit.WithActivity(ctx, &audit.Job{Event: audit.Event{Interaction: "create", ClientID: fmt.Sprintf("replica-%d", r)}})
						if _, err := stores[r].Create(job, patient(pid)); err != nil {
							t.Error(err)
						}
						continue
					}
					if err := trails[r].Record(ctx, read(n, fmt.Sprintf("Patient/x%d", n))); err != nil {
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	// what replicas stored pending while another held the head is sealed
	// by whichever settles first
	for _, tr := range trails {
		if err := tr.Settle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep := mustVerify(t, stores[0], nil)
	if !rep.OK() || rep.Pending != 0 || rep.Events != replicas*perReplica || rep.Head.Seq != replicas*perReplica {
		t.Fatalf("trail of %d replicas: %d events, head %d, problems %v", replicas, rep.Events, rep.Head.Seq, rep.Problems)
	}
	// each event once: every read's Observation appears exactly once
	seen := countEvents(t, stores[1], func(e *audit.Event) string { return e.Resource + e.Patient })
	for k, n := range seen {
		if n != 1 && k != "" {
			t.Errorf("%s recorded %d times", k, n)
		}
	}
	// a checkpoint from any replica names the one head
	c0, _ := trails[0].Checkpoint(ctx)
	c2, _ := trails[2].Checkpoint(ctx)
	if c0.Seq != c2.Seq || c0.Hash != c2.Hash || c0.Seq != replicas*perReplica {
		t.Errorf("checkpoints of two replicas: %+v %+v", c0, c2)
	}
}

// TestGroupCommit: an append waits for the requests in flight (Begin) to
// join it, and a lone request never waits for the group-commit window
// (here an hour, so that a wait would hang the test).
func TestGroupCommit(t *testing.T) {
	each(t, func(t *testing.T, st *sqlstore.Store) {
		tr := open(t, st, audit.Options{GroupCommit: time.Hour})
		ctx := context.Background()
		end := tr.Begin()
		end()
		if err := tr.Record(ctx, read(1, "Patient/p1")); err != nil {
			t.Fatal(err)
		}
		endB := tr.Begin() // another request is being answered
		endA := tr.Begin()
		doneA := make(chan error, 1)
		go func() { endA(); doneA <- tr.Record(ctx, read(2, "Patient/p1")) }()
		select {
		case err := <-doneA:
			t.Fatalf("the append did not wait for the request in flight (err %v)", err)
		case <-time.After(100 * time.Millisecond):
		}
		endB() // it ends without an event of its own: the append goes
		if err := <-doneA; err != nil {
			t.Fatal(err)
		}
		endB() // twice is harmless
		// both requests of a pair record: the first waits for the second
		endC, endD := tr.Begin(), tr.Begin()
		var wg sync.WaitGroup
		for i, end := range []func(){endC, endD} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				end()
				if err := tr.Record(ctx, read(3+i, "Patient/p2")); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if rep := mustVerify(t, tr.Log(), nil); !rep.OK() || rep.Events != 4 {
			t.Fatalf("%d events, problems %v", rep.Events, rep.Problems)
		}
	})
}

// TestRegroup: after an append of at least four events, a smaller group
// waits (here for up to an hour) for as many to ask again, as clients that
// ask again at once do; after an append of fewer, a lone event never
// waits (open-loop clients never come back: it would wait the whole
// interval for an arrival).
func TestRegroup(t *testing.T) {
	each(t, func(t *testing.T, st *sqlstore.Store) {
		tr := open(t, st, audit.Options{GroupCommit: time.Hour})
		ctx := context.Background()
		n := 0
		// group records n events in one append: their requests are in
		// flight until all of them have recorded
		group := func(size int) {
			t.Helper()
			guard := tr.Begin()
			errs := make(chan error, size)
			for range size {
				n++
				go func(i int) {
					end := tr.Begin()
					end()
					errs <- tr.Record(ctx, read(i, "Patient/p1"))
				}(n)
			}
			waitQueued(t, tr, size)
			guard() // nobody else in flight: the append goes
			for range size {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		}
		// lone records one event and reports whether it returned within
		// wait (errs gets its result either way)
		lone := func(errs chan error, wait time.Duration) bool {
			n++
			go func(i int) { errs <- tr.Record(ctx, read(i, "Patient/p2")) }(n)
			select {
			case err := <-errs:
				if err != nil {
					t.Fatal(err)
				}
				return true
			case <-time.After(wait):
				return false
			}
		}
		errs := make(chan error, 4)
		group(2)
		if !lone(errs, 10*time.Second) {
			t.Fatal("after an append of two, a lone event waited for the group-commit interval")
		}
		group(4)
		if lone(errs, 100*time.Millisecond) {
			t.Fatal("after an append of four, a lone event did not wait for the clients to ask again")
		}
		for range 3 { // they ask again: the append of four goes
			n++
			go func(i int) { errs <- tr.Record(ctx, read(i, "Patient/p3")) }(n)
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if rep := mustVerify(t, tr.Log(), nil); !rep.OK() || rep.Events != n {
			t.Fatalf("%d events (want %d), problems %v", rep.Events, n, rep.Problems)
		}
	})
}

// waitQueued waits until n events wait in the batch being formed.
func waitQueued(t *testing.T, tr *audit.Trail, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d events queued, want %d", tr.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRecordRace: requests that append their own events (nobody else in
// flight) and requests whose events the writer groups, all at once: every
// event is appended once, the chain verifies, and nothing is recorded
// after Close.
func TestRecordRace(t *testing.T) {
	each(t, func(t *testing.T, st *sqlstore.Store) {
		tr := open(t, st, audit.Options{GroupCommit: time.Millisecond})
		ctx := context.Background()
		const workers, per = 16, 40
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					end := tr.Begin()
					if i%3 == 0 {
						time.Sleep(time.Duration(w%4) * 100 * time.Microsecond)
					}
					end()
					if err := tr.Record(ctx, read(w*per+i, fmt.Sprintf("Patient/p%d", w))); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if rep := mustVerify(t, tr.Log(), nil); !rep.OK() || rep.Events != workers*per {
			t.Fatalf("%d events (want %d), problems %v", rep.Events, workers*per, rep.Problems)
		}
		tr.Close()
		if err := tr.Record(ctx, read(0, "Patient/p0")); !errors.Is(err, audit.ErrClosed) {
			t.Fatalf("Record after Close: %v", err)
		}
	})
}

// panicky is a store whose next audit append panics.
type panicky struct {
	*sqlstore.Store
	panicNext atomic.Bool
}

func (p *panicky) AppendAudit(ctx context.Context, recs []*storage.AuditRecord, seal storage.AuditSealer) error {
	if p.panicNext.CompareAndSwap(true, false) {
		panic("append blew up")
	}
	return p.Store.AppendAudit(ctx, recs, seal)
}

// TestRecordPanic: a request whose own append panics (the server recovers
// the panic for that request) leaves the trail working: the next events
// are appended and the chain verifies.
func TestRecordPanic(t *testing.T) {
	each(t, func(t *testing.T, st *sqlstore.Store) {
		p := &panicky{Store: st}
		tr := open(t, p, audit.Options{})
		ctx := context.Background()
		p.panicNext.Store(true)
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the append's panic did not reach the request")
				}
			}()
			_ = tr.Record(ctx, read(1, "Patient/p1")) // alone: appended by the request itself
		}()
		done := make(chan error, 1)
		go func() { done <- tr.Record(ctx, read(2, "Patient/p1")) }()
		waitDone(t, done, 10*time.Second, "the trail is stuck after a panicked append")
		if rep := mustVerify(t, tr.Log(), nil); !rep.OK() || rep.Events != 1 {
			t.Fatalf("%d events, problems %v", rep.Events, rep.Problems)
		}
	})
}

// TestPendingSealed: while another transaction holds the trail's head (a
// replica committing its append), a read's events are stored pending and
// Record answers without waiting; verify counts them, and names a pending
// event forged without the key or a genuine one blocked from sealing.
// Once the head is free the trail's sealer moves them into the trail on
// its own, and the trail verifies.
func TestPendingSealed(t *testing.T) {
	ctx := context.Background()
	cfg := pgtest.Config(t)
	st, err := postgres.Open(ctx, cfg, sqlstore.Options{Registry: registry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var stored, sealed, refused atomic.Int64
	tr := open(t, st, audit.Options{OnPending: func(st, se, re int) {
		stored.Add(int64(st))
		sealed.Add(int64(se))
		refused.Add(int64(re))
	}})
	for i := range 3 {
		if err := tr.Record(ctx, read(i, "Patient/p1")); err != nil {
			t.Fatal(err)
		}
	}
	db := st.DB()
	holder, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	if err := holder.QueryRow(ctx, `SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&seq); err != nil || seq != 3 {
		t.Fatalf("head %d %v", seq, err)
	}
	released := false
	defer func() {
		if !released {
			holder.Rollback(ctx)
		}
	}()
	done := make(chan error)
	go func() {
		for i := 3; i < 8; i++ {
			if err := tr.Record(ctx, read(i, "Patient/p2")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waitDone(t, done, 20*time.Second, "Record waited for the head another transaction holds")
	if rep := mustVerify(t, st, nil); !rep.OK() || rep.Events != 3 || rep.Pending != 5 {
		t.Fatalf("while held: %d events, %d pending, problems %v; want 3, 5, none", rep.Events, rep.Pending, rep.Problems)
	}
	// a forged pending event (no key), and a genuine one marked refused
	if _, err := db.Exec(ctx, `INSERT INTO audit_pending (key_id, mac, body) SELECT key_id, mac, body || '\x00'::bytea FROM audit_pending ORDER BY id LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE audit_pending SET refused = true WHERE id = (SELECT min(id) FROM audit_pending)`); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, st, nil)
	if rep.Pending != 4 || len(rep.Problems) != 2 || rep.Problems[0].Kind != audit.PendingEdited || rep.Problems[1].Kind != audit.PendingEdited ||
		!strings.Contains(rep.Problems[0].String(), "marked refused") || !strings.Contains(rep.Problems[1].String(), "MAC does not verify") {
		t.Fatalf("tampered pending: %d pending, problems %v", rep.Pending, rep.Problems)
	}
	if _, err := db.Exec(ctx, `UPDATE audit_pending SET refused = false WHERE id = (SELECT min(id) FROM audit_pending)`); err != nil {
		t.Fatal(err)
	}
	// the head free again: the sealer, told of the pending events, seals
	// them without being asked
	released = true
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		h, err := st.AuditHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.Seq == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("head %d, want 8: the pending events were not sealed", h.Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if stored.Load() != 5 || sealed.Load() != 5 || refused.Load() != 1 {
		t.Errorf("OnPending: %d stored, %d sealed, %d refused; want 5, 5, 1", stored.Load(), sealed.Load(), refused.Load())
	}
	rep = mustVerify(t, st, nil)
	if rep.Events != 8 || rep.Pending != 0 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].String(), "MAC does not verify") {
		t.Fatalf("after sealing: %d events, %d pending, problems %v; want 8, 0, the forged one", rep.Events, rep.Pending, rep.Problems)
	}
	// the sealed events are the ones recorded, each once
	seen := countEvents(t, st, func(e *audit.Event) string { return e.Resource })
	for i := range 8 {
		if seen[fmt.Sprintf("Observation/o%d", i)] != 1 {
			t.Fatalf("events by resource: %v", seen)
		}
	}
	if _, err := db.Exec(ctx, `DELETE FROM audit_pending`); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, st, nil); !rep.OK() {
		t.Fatal(rep.Problems)
	}
}

// waitDone waits for one result on done, failing with msg after d.
func waitDone(t *testing.T, done <-chan error, d time.Duration, msg string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatal(msg)
	}
}

// countEvents counts the trail's events by key.
// searchEvents returns the events of one page of an audit search.
func searchEvents(t *testing.T, lg storage.AuditLog, q storage.AuditQuery) []*audit.Event {
	t.Helper()
	page, err := lg.SearchAudit(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []*audit.Event
	for _, r := range page.Records {
		e, err := audit.EventOf(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func countEvents(t *testing.T, lg storage.AuditLog, key func(*audit.Event) string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	if err := lg.ScanAudit(context.Background(), 1, func(r *storage.AuditRecord) error {
		e, err := audit.EventOf(r)
		if err != nil {
			return err
		}
		seen[key(e)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seen
}

// touching is an Activity that touched patients (a request's) and keeps
// what the store's transactions committed for it.
type touching struct {
	audit.Job
	patients  []string
	mu        sync.Mutex
	committed []string
}

func (a *touching) Touched() []string { return a.patients }
func (a *touching) Committed(ps []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.committed = append(a.committed, ps...)
}

// TestConnectionWriteAudited: a patient's source connection (its tokens
// at a source) is stored or deleted in a transaction that carries the
// request's events, so an answered request never lacks them; a refused
// change (fn's error) leaves neither the connection nor an event.
func TestConnectionWriteAudited(t *testing.T) {
	each(t, func(t *testing.T, st *sqlstore.Store) {
		ctx := context.Background()
		tr := open(t, st, audit.Options{Server: "http://gw.test"})
		lg := tr.Log()
		if _, err := st.Create(ctx, patient("amy")); err != nil {
			t.Fatal(err)
		}
		var n0 int // the Patient's creation's events
		events := func() []*audit.Event {
			t.Helper()
			return searchEvents(t, lg, storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{"Patient/amy"}, Roles: storage.AuditPatientRole}}, Count: 20})[n0:]
		}
		n0 = len(events())
		act := &touching{Job: audit.Job{Event: audit.Event{Interaction: "operation", Operation: "connect", Who: "Patient/amy", ClientID: "patient-app"}}, patients: []string{"Patient/amy"}}
		now := time.Now().UTC().Truncate(time.Millisecond)
		put := func(fn func()) error {
			return st.UpdateSourceConnection(audit.WithActivity(ctx, act), "amy", "portal", func(*storage.SourceConnection) (*storage.SourceConnection, error) {
				fn()
				return &storage.SourceConnection{Patient: "amy", Source: "portal", Sealed: []byte{1}, Connected: now, Updated: now}, nil
			})
		}
		if err := put(func() { act.Event.OutcomeDesc = "connected source portal" }); err != nil {
			t.Fatal(err)
		}
		evs := events()
		if len(evs) != 1 || evs[0].Operation != "connect" || evs[0].OutcomeDesc != "connected source portal" {
			t.Fatalf("events after connecting: %+v", evs)
		}
		if !slices.Equal(act.committed, []string{"Patient/amy"}) {
			t.Errorf("the request was told its events for %v committed, want Patient/amy", act.committed)
		}
		// a refused change: nothing stored, no event
		boom := errors.New("boom")
		if err := st.UpdateSourceConnection(audit.WithActivity(ctx, act), "amy", "other", func(*storage.SourceConnection) (*storage.SourceConnection, error) {
			return nil, boom
		}); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if n := len(events()); n != 1 {
			t.Errorf("a refused change added events: %d", n)
		}
		// deleting the connection is recorded with it too
		act.Event.OutcomeDesc = ""
		if err := st.UpdateSourceConnection(audit.WithActivity(ctx, act), "amy", "portal", func(*storage.SourceConnection) (*storage.SourceConnection, error) {
			act.Event.OutcomeDesc = "disconnected source portal"
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if evs := events(); len(evs) != 2 || evs[1].OutcomeDesc != "disconnected source portal" {
			t.Errorf("events after disconnecting: %+v", evs)
		}
		if cs, err := st.SourceConnections(ctx, "amy"); err != nil || len(cs) != 0 {
			t.Errorf("connections %v, %v", cs, err)
		}
		// a job's refresh of a connection (no activity) records nothing
		if err := put(func() {}); err != nil {
			t.Fatal(err)
		}
		if err := st.UpdateSourceConnection(ctx, "amy", "portal", func(c *storage.SourceConnection) (*storage.SourceConnection, error) { return c, nil }); err != nil {
			t.Fatal(err)
		}
		// nor does a pull job's (a Job activity, which touches no patient)
		pull := audit.WithActivity(ctx, &audit.Job{Event: audit.Event{Interaction: "operation", Operation: "pull", Origin: "portal"}})
		if err := st.UpdateSourceConnection(pull, "amy", "portal", func(c *storage.SourceConnection) (*storage.SourceConnection, error) { return c, nil }); err != nil {
			t.Fatal(err)
		}
		if head, err := lg.AuditHead(ctx); err != nil || head.Seq != int64(n0+3) {
			t.Errorf("trail head %+v, %v: want %d events in all", head, err, n0+3)
		}
		if n := len(events()); n != 3 {
			t.Errorf("events after a refresh without a request: %d, want 3", n)
		}
		if rep := mustVerify(t, lg, nil); !rep.OK() {
			t.Errorf("verify: %+v", rep)
		}
	})
}

// TestAppenderRole: of the trails on one PostgreSQL database, the first
// to open holds the appender's role: the others' events go pending
// (durable, MACed) and the holder seals them within moments without being
// asked; when the holder stops, another takes the role and appends to the
// chain itself. The trail verifies throughout.
func TestAppenderRole(t *testing.T) {
	ctx := context.Background()
	cfg := pgtest.Config(t)
	openStore := func() *sqlstore.Store {
		st, err := postgres.Open(ctx, cfg, sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	pending := func(st *sqlstore.Store) int {
		n := 0
		if err := st.ScanPendingAudit(ctx, func(storage.PendingAudit) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitSealed := func(st *sqlstore.Store) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); pending(st) > 0; {
			if time.Now().After(deadline) {
				t.Fatalf("%d events still pending after 10 s", pending(st))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stA, stB := openStore(), openStore()
	a := open(t, stA, audit.Options{})
	b := open(t, stB, audit.Options{})
	if err := a.Record(ctx, read(1, "Patient/p1")); err != nil {
		t.Fatal(err)
	}
	if n := pending(stA); n != 0 {
		t.Fatalf("the holder's event went pending (%d)", n)
	}
	for i := range 5 {
		if err := b.Record(ctx, read(10+i, "Patient/p2")); err != nil {
			t.Fatal(err)
		}
	}
	// b's events are durable before Record returns, pending; nobody calls
	// Settle: the holder's sweep seals them
	if n := pending(stB); n == 0 {
		t.Fatal("a trail without the role appended to the chain")
	}
	waitSealed(stB)
	if rep := mustVerify(t, stB, nil); !rep.OK() || rep.Events != 6 {
		t.Fatalf("verify: %d events, %v", rep.Events, rep.Problems)
	}

	// the holder stops (its session, and the lock with it, goes)
	a.Close()
	stA.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := b.Record(ctx, read(20, "Patient/p3")); err != nil {
			t.Fatal(err)
		}
		if pending(stB) == 0 {
			break // appended to the chain: b holds the role now
		}
		if time.Now().After(deadline) {
			t.Fatal("no other trail took the appender's role after its holder stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 3 { // and goes on appending to it
		if err := b.Record(ctx, read(30+i, "Patient/p3")); err != nil {
			t.Fatal(err)
		}
		if n := pending(stB); n != 0 {
			t.Fatalf("the new holder's event went pending (%d)", n)
		}
	}
	if rep := mustVerify(t, stB, nil); !rep.OK() || rep.Pending != 0 || rep.Events < 10 {
		t.Fatalf("verify after the takeover: %d events, %d pending, %v", rep.Events, rep.Pending, rep.Problems)
	}
}
