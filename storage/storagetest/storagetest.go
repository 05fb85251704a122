// Package storagetest is the one suite every storage.Store implementation
// runs: Run(t, newStore) with a factory that returns a fresh, empty store.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Clock is a fake clock a factory can hand to its store so that the suite
// controls time. Each call to Now advances it by a millisecond.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// Now returns the current fake time and advances it by 1 ms.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Factory returns a new empty store that uses clock.
type Factory func(t *testing.T, clock *Clock) storage.Store

// Run runs the whole suite.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store, c *Clock)
	}{
		{"CreateRead", testCreateRead},
		{"Lossless", testLossless},
		{"CreateExisting", testCreateExisting},
		{"ReadMissing", testReadMissing},
		{"UpdateVersions", testUpdateVersions},
		{"UpdateAsCreate", testUpdateAsCreate},
		{"IfMatch", testIfMatch},
		{"ConcurrentIfMatch", testConcurrentIfMatch},
		{"Delete", testDelete},
		{"TxRollback", testTxRollback},
		{"TxReadsOwnWrites", testTxReadsOwnWrites},
		{"History", testHistory},
		{"VersionBodies", testVersionBodies},
		{"HistorySinceAt", testHistorySinceAt},
		{"HistoryBadCursor", testHistoryBadCursor},
		{"CreateMany", testCreateMany},
		{"ReadsSeeLatestUnderConcurrency", testReadsSeeLatest},
		{"Blobs", testBlobsIfAny},
		{"AbandonedUploads", testAbandonedUploads},
		{"ChangeMark", testChangeMark},
		{"ChangeMarkConcurrent", testChangeMarkConcurrent},
		{"LockSerialises", testLockSerialises},
		{"ConcurrentUpdateAsCreate", testConcurrentUpdateAsCreate},
		{"ChangeMarkLateCommit", testChangeMarkLateCommit},
		{"AdapterState", testAdapterState},
		{"Connections", testConnections},
		{"AuditSearch", testAuditSearch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock()
			s := newStore(t, c)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s, c)
		})
	}
}

func mustParse(t *testing.T, body string) *fhir.Resource {
	t.Helper()
	r, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return r
}

func patient(t *testing.T, id, family string) *fhir.Resource {
	return mustParse(t, fmt.Sprintf(`{"resourceType":"Patient","id":%q,"name":[{"family":%q}]}`, id, family))
}

func testCreateRead(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	out, err := s.Create(ctx, patient(t, "p1", "Smith"))
	if err != nil {
		t.Fatal(err)
	}
	if out.VersionID != "1" || out.LastUpdated.IsZero() {
		t.Fatalf("version %q time %v", out.VersionID, out.LastUpdated)
	}
	got, err := s.Read(ctx, "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Raw) != string(out.Raw) {
		t.Fatalf("read %s, created %s", got.Raw, out.Raw)
	}
	if got.VersionID != "1" || !got.LastUpdated.Equal(out.LastUpdated) {
		t.Fatalf("read header %q %v vs %v", got.VersionID, got.LastUpdated, out.LastUpdated)
	}
	root := got.Root()
	if root.Get("meta").Get("versionId").String() != "1" {
		t.Fatalf("meta.versionId not set: %s", got.Raw)
	}
	if lu := root.Get("meta").Get("lastUpdated").String(); lu != fhir.FormatInstant(out.LastUpdated) {
		t.Fatalf("meta.lastUpdated %q, header %v", lu, out.LastUpdated)
	}
	// same type, other id; other type, same id
	if _, err := s.Read(ctx, "Patient", "p2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("other id: %v", err)
	}
	if _, err := s.Read(ctx, "Observation", "p1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("other type: %v", err)
	}
}

func testLossless(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	body := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"w\u00e9ight \"x\""},` +
		`"valueQuantity":{"value":1.50,"unit":"kg"},"_status":{"extension":[{"url":"http://x","valueDecimal":0.10}]},` +
		`"contained":[{"resourceType":"Patient","id":"c"}],"meta":{"tag":[{"code":"t"}]}}`
	out, err := s.Create(ctx, mustParse(t, body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx, "Observation", "o1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"value":1.50`, `"valueDecimal":0.10`, `w\u00e9ight \"x\"`, `"contained":[{"resourceType":"Patient","id":"c"}]`, `"tag":[{"code":"t"}]`} {
		if !strings.Contains(string(got.Raw), want) {
			t.Errorf("stored body lost %s: %s", want, got.Raw)
		}
	}
	if string(got.Raw) != string(out.Raw) {
		t.Fatalf("read differs from create")
	}
}

func testCreateExisting(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "p1", "A")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, patient(t, "p1", "B")); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("want ErrAlreadyExists, got %v", err)
	}
	if _, err := s.Delete(ctx, "Patient", "p1", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, patient(t, "p1", "C")); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("create over a deleted id: want ErrAlreadyExists, got %v", err)
	}
}

func testReadMissing(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Read(ctx, "Patient", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("read: %v", err)
	}
	if _, err := s.VRead(ctx, "Patient", "nope", "1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("vread: %v", err)
	}
	if _, err := s.Create(ctx, patient(t, "p1", "A")); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"2", "0", "-1", "x", "", "99999999999999999999"} {
		if _, err := s.VRead(ctx, "Patient", "p1", v); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("vread version %q: %v", v, err)
		}
	}
	if _, _, err := s.Update(ctx, patient(t, "nope", "A"), storage.UpdateOptions{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if _, err := s.Delete(ctx, "Patient", "nope", storage.DeleteOptions{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func testUpdateVersions(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	first, err := s.Create(ctx, patient(t, "p1", "V1"))
	if err != nil {
		t.Fatal(err)
	}
	var last *fhir.Resource
	for i := 2; i <= 5; i++ {
		out, created, err := s.Update(ctx, patient(t, "p1", fmt.Sprintf("V%d", i)), storage.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if created || out.VersionID != fmt.Sprint(i) {
			t.Fatalf("update %d: created=%v version=%s", i, created, out.VersionID)
		}
		if !out.LastUpdated.After(first.LastUpdated) {
			t.Fatalf("lastUpdated did not advance")
		}
		last = out
	}
	cur, err := s.Read(ctx, "Patient", "p1")
	if err != nil || cur.VersionID != "5" || string(cur.Raw) != string(last.Raw) {
		t.Fatalf("current: %v %v", err, cur)
	}
	for i := 1; i <= 5; i++ {
		v, err := s.VRead(ctx, "Patient", "p1", fmt.Sprint(i))
		if err != nil {
			t.Fatalf("vread %d: %v", i, err)
		}
		if !strings.Contains(string(v.Raw), fmt.Sprintf(`"family":"V%d"`, i)) || v.VersionID != fmt.Sprint(i) {
			t.Fatalf("vread %d returned %s", i, v.Raw)
		}
	}
}

func testUpdateAsCreate(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	out, created, err := s.Update(ctx, patient(t, "new", "A"), storage.UpdateOptions{AllowCreate: true})
	if err != nil || !created || out.VersionID != "1" {
		t.Fatalf("update-as-create: %v created=%v %+v", err, created, out)
	}
	out, created, err = s.Update(ctx, patient(t, "new", "B"), storage.UpdateOptions{AllowCreate: true, Method: "PATCH"})
	if err != nil || created || out.VersionID != "2" {
		t.Fatalf("second update: %v created=%v", err, created)
	}
	h, err := s.History(ctx, storage.HistoryQuery{Type: "Patient", ID: "new"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != 2 || h.Entries[0].Method != "PATCH" || h.Entries[1].Method != "PUT" {
		t.Fatalf("history methods: %+v", h.Entries)
	}
}

func testIfMatch(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "p1", "A")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, patient(t, "p1", "B"), storage.UpdateOptions{IfMatch: "2"}); !errors.Is(err, storage.ErrVersionConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, _, err := s.Update(ctx, patient(t, "p1", "B"), storage.UpdateOptions{IfMatch: "1"}); err != nil {
		t.Fatalf("matching If-Match: %v", err)
	}
	if _, _, err := s.Update(ctx, patient(t, "p1", "C"), storage.UpdateOptions{IfMatch: "1"}); !errors.Is(err, storage.ErrVersionConflict) {
		t.Fatalf("now stale If-Match: %v", err)
	}
	if _, _, err := s.Update(ctx, patient(t, "zz", "C"), storage.UpdateOptions{IfMatch: "1", AllowCreate: true}); !errors.Is(err, storage.ErrVersionConflict) {
		t.Fatalf("If-Match on a missing resource: %v", err)
	}
	if _, err := s.Delete(ctx, "Patient", "p1", storage.DeleteOptions{IfMatch: "1"}); !errors.Is(err, storage.ErrVersionConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if _, err := s.Delete(ctx, "Patient", "p1", storage.DeleteOptions{IfMatch: "2"}); err != nil {
		t.Fatalf("delete with matching If-Match: %v", err)
	}
}

func testConcurrentIfMatch(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "p1", "A")); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok, stale int
		other     []error
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			_, _, err := s.Update(ctx, patient(t, "p1", fmt.Sprintf("W%d", i)), storage.UpdateOptions{IfMatch: "1"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, storage.ErrVersionConflict):
				stale++
			default:
				other = append(other, err)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	if ok != 1 || stale != n-1 || len(other) > 0 {
		t.Fatalf("concurrent If-Match updates: %d succeeded, %d conflicts, other errors %v", ok, stale, other)
	}
	cur, err := s.Read(ctx, "Patient", "p1")
	if err != nil || cur.VersionID != "2" {
		t.Fatalf("after the race: %v version %v", err, cur)
	}
}

func testDelete(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "p1", "A")); err != nil {
		t.Fatal(err)
	}
	vid, err := s.Delete(ctx, "Patient", "p1", storage.DeleteOptions{})
	if err != nil || vid != "2" {
		t.Fatalf("delete: %v %q", err, vid)
	}
	if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, storage.ErrGone) {
		t.Fatalf("read after delete: %v", err)
	}
	if _, err := s.VRead(ctx, "Patient", "p1", "2"); !errors.Is(err, storage.ErrGone) {
		t.Fatalf("vread of the deletion: %v", err)
	}
	if _, err := s.VRead(ctx, "Patient", "p1", "1"); err != nil {
		t.Fatalf("earlier versions stay readable: %v", err)
	}
	vid, err = s.Delete(ctx, "Patient", "p1", storage.DeleteOptions{})
	if err != nil || vid != "2" {
		t.Fatalf("second delete is a no-op: %v %q", err, vid)
	}
	// update brings it back as a new version
	out, created, err := s.Update(ctx, patient(t, "p1", "B"), storage.UpdateOptions{AllowCreate: true})
	if err != nil || created || out.VersionID != "3" {
		t.Fatalf("resurrect: %v created=%v %v", err, created, out)
	}
	if _, err := s.Read(ctx, "Patient", "p1"); err != nil {
		t.Fatalf("read after resurrect: %v", err)
	}
}

func testTxRollback(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "keep", "A")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx storage.Tx) error {
		if _, err := tx.Create(ctx, patient(t, "t1", "A")); err != nil {
			return err
		}
		if _, _, err := tx.Update(ctx, patient(t, "keep", "B"), storage.UpdateOptions{}); err != nil {
			return err
		}
		if _, err := tx.Delete(ctx, "Patient", "keep", storage.DeleteOptions{}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "t1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("rolled-back create visible: %v", err)
	}
	cur, err := s.Read(ctx, "Patient", "keep")
	if err != nil || cur.VersionID != "1" {
		t.Fatalf("rolled-back update visible: %v %v", err, cur)
	}
	h, err := s.History(ctx, storage.HistoryQuery{})
	if err != nil || h.Total != 1 {
		t.Fatalf("history after rollback: %v total %d", err, h.Total)
	}
	// a failed write inside a transaction also rolls everything back
	err = s.InTx(ctx, func(tx storage.Tx) error {
		if _, err := tx.Create(ctx, patient(t, "t2", "A")); err != nil {
			return err
		}
		_, err := tx.Create(ctx, patient(t, "keep", "dup"))
		return err
	})
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("duplicate in tx: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "t2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("partial transaction visible: %v", err)
	}
}

func testTxReadsOwnWrites(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	err := s.InTx(ctx, func(tx storage.Tx) error {
		if _, err := tx.Create(ctx, patient(t, "a", "A")); err != nil {
			return err
		}
		r, err := tx.Read(ctx, "Patient", "a")
		if err != nil {
			return fmt.Errorf("read own write: %w", err)
		}
		if _, _, err := tx.Update(ctx, patient(t, "a", "B"), storage.UpdateOptions{IfMatch: r.VersionID}); err != nil {
			return err
		}
		v, err := tx.VRead(ctx, "Patient", "a", "2")
		if err != nil || !strings.Contains(string(v.Raw), `"B"`) {
			return fmt.Errorf("vread own write: %v", err)
		}
		h, err := tx.History(ctx, storage.HistoryQuery{Type: "Patient", ID: "a"})
		if err != nil || h.Total != 2 {
			return fmt.Errorf("history own writes: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testVersionBodies: every version answers its own body, by vread and in
// the history, whether it was written alone or in a batch, is current or
// not, or came after a deletion (bodies are kept once: the current one in
// the resource's row).
func testVersionBodies(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	wrote := map[string]string{}
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("p%d", i)
		if _, err := s.Create(ctx, patient(t, id, "v1")); err != nil {
			t.Fatal(err)
		}
		for v := 1; v <= 3; v++ {
			if v > 1 {
				if _, _, err := s.Update(ctx, patient(t, id, fmt.Sprintf("v%d", v)), storage.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			wrote[fmt.Sprintf("Patient/p%d/%d", i, v)] = fmt.Sprintf(`"family":"v%d"`, v)
		}
	}
	_, err := s.CreateMany(ctx, []*fhir.Resource{patient(t, "m0", "b1"), patient(t, "m1", "b1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, patient(t, "m1", "b2"), storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "Patient", "m1", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, patient(t, "m1", "b4"), storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wrote["Patient/m0/1"], wrote["Patient/m1/1"], wrote["Patient/m1/2"], wrote["Patient/m1/4"] = `"family":"b1"`, `"family":"b1"`, `"family":"b2"`, `"family":"b4"`
	for key, want := range wrote {
		parts := strings.Split(key, "/")
		r, err := s.VRead(ctx, parts[0], parts[1], parts[2])
		if err != nil {
			t.Fatalf("vread %s: %v", key, err)
		}
		if !strings.Contains(string(r.Raw), want) {
			t.Fatalf("vread %s: %s, want %s", key, r.Raw, want)
		}
	}
	if _, err := s.VRead(ctx, "Patient", "m1", "3"); !errors.Is(err, storage.ErrGone) {
		t.Fatalf("vread of the deletion: %v", err)
	}
	seen := 0
	for _, e := range collect(t, s, storage.HistoryQuery{Type: "Patient", Count: 3}) {
		key := e.Type + "/" + e.ID + "/" + e.VersionID
		want, ok := wrote[key]
		if !ok {
			continue
		}
		seen++
		if e.Resource == nil || !strings.Contains(string(e.Resource.Raw), want) {
			t.Fatalf("history %s: %+v, want %s", key, e.Resource, want)
		}
	}
	if seen != len(wrote) {
		t.Fatalf("history listed %d of the %d versions with content", seen, len(wrote))
	}
}

func testHistory(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	// 3 patients x 3 versions + 2 observations, one deleted
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("p%d", i)
		if _, err := s.Create(ctx, patient(t, id, "v1")); err != nil {
			t.Fatal(err)
		}
		for v := 2; v <= 3; v++ {
			if _, _, err := s.Update(ctx, patient(t, id, fmt.Sprintf("v%d", v)), storage.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Create(ctx, mustParse(t, fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "Observation", "o1", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	all := collect(t, s, storage.HistoryQuery{Count: 4})
	if len(all) != 12 {
		t.Fatalf("system history: %d entries, want 12", len(all))
	}
	if all[0].Type != "Observation" || all[0].ID != "o1" || all[0].Method != "DELETE" || all[0].Resource != nil {
		t.Fatalf("newest entry should be the deletion: %+v", all[0])
	}
	for i := 1; i < len(all); i++ {
		if all[i].LastUpdated.After(all[i-1].LastUpdated) {
			t.Fatalf("history not newest first at %d", i)
		}
	}
	seen := map[string]bool{}
	for _, e := range all {
		k := e.Type + "/" + e.ID + "/" + e.VersionID
		if seen[k] {
			t.Fatalf("paging repeated %s", k)
		}
		seen[k] = true
	}
	if n := len(collect(t, s, storage.HistoryQuery{Type: "Patient", Count: 2})); n != 9 {
		t.Fatalf("type history: %d", n)
	}
	inst := collect(t, s, storage.HistoryQuery{Type: "Patient", ID: "p1", Count: 1})
	if len(inst) != 3 || inst[0].VersionID != "3" || inst[2].VersionID != "1" {
		t.Fatalf("instance history: %+v", inst)
	}
}

func collect(t *testing.T, s storage.Store, q storage.HistoryQuery) []storage.HistoryEntry {
	t.Helper()
	var out []storage.HistoryEntry
	for pages := 0; pages < 100; pages++ {
		p, err := s.History(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Entries...)
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
	t.Fatal("history paging does not end")
	return nil
}

func testHistorySinceAt(t *testing.T, s storage.Store, c *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "p", "v1")); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	mid := c.Now()
	c.Advance(time.Hour)
	if _, _, err := s.Update(ctx, patient(t, "p", "v2"), storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	if _, _, err := s.Update(ctx, patient(t, "p", "v3"), storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	since := collect(t, s, storage.HistoryQuery{Type: "Patient", ID: "p", Since: mid})
	if len(since) != 2 || since[1].VersionID != "2" {
		t.Fatalf("_since: %+v", since)
	}
	at := collect(t, s, storage.HistoryQuery{Type: "Patient", ID: "p", At: mid})
	if len(at) != 1 || at[0].VersionID != "1" {
		t.Fatalf("_at: %+v", at)
	}
	if n := len(collect(t, s, storage.HistoryQuery{Since: c.Now().Add(time.Hour)})); n != 0 {
		t.Fatalf("_since in the future: %d", n)
	}
}

func testHistoryBadCursor(t *testing.T, s storage.Store, _ *Clock) {
	for _, cur := range []string{"!!", "eA", "LTE"} { // not base64, "x", "-1"
		if _, err := s.History(context.Background(), storage.HistoryQuery{Cursor: cur}); !errors.Is(err, storage.ErrInvalidCursor) {
			t.Errorf("cursor %q: %v", cur, err)
		}
	}
}

func testCreateMany(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	var batch []*fhir.Resource
	for i := 0; i < 450; i++ { // more than one multi-row chunk
		batch = append(batch, patient(t, fmt.Sprintf("b%d", i), fmt.Sprintf("F%d", i)))
	}
	batch = append(batch, mustParse(t, `{"resourceType":"Observation","id":"b0","valueQuantity":{"value":1.50}}`))
	out, err := s.CreateMany(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(batch) {
		t.Fatalf("%d results for %d resources", len(out), len(batch))
	}
	for i, r := range out {
		got, err := s.Read(ctx, r.Type, r.ID)
		if err != nil || string(got.Raw) != string(r.Raw) || got.VersionID != "1" {
			t.Fatalf("resource %d (%s/%s): %v", i, r.Type, r.ID, err)
		}
	}
	if !strings.Contains(string(out[450].Raw), `"value":1.50`) {
		t.Fatalf("decimal lost: %s", out[450].Raw)
	}
	h, err := s.History(ctx, storage.HistoryQuery{Count: 1000})
	if err != nil || h.Total != 451 {
		t.Fatalf("history total %d (%v)", h.Total, err)
	}
	// the versions are numbered in the batch's order (history: newest first)
	for i, e := range h.Entries {
		if want := batch[len(batch)-1-i]; e.Type != want.Type || e.ID != want.ID {
			t.Fatalf("history entry %d is %s/%s, want %s/%s", i, e.Type, e.ID, want.Type, want.ID)
		}
	}
	// one taken id fails the whole batch
	_, err = s.CreateMany(ctx, []*fhir.Resource{patient(t, "fresh", "A"), patient(t, "b7", "dup")})
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("taken id: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "fresh"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("partial batch visible: %v", err)
	}
	// a duplicate inside the batch too
	_, err = s.CreateMany(ctx, []*fhir.Resource{patient(t, "twin", "A"), patient(t, "twin", "B")})
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("duplicate in batch: %v", err)
	}
}

// testReadsSeeLatest: readers racing a writer never see a version older
// than one they saw before, and after the writer is done every read answers
// its last version (a store that caches reads must keep this).
func testReadsSeeLatest(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	if _, err := s.Create(ctx, patient(t, "hot", "v1")); err != nil {
		t.Fatal(err)
	}
	const versions = 40
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 4)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := s.Read(ctx, "Patient", "hot")
				if err != nil {
					errs <- err
					return
				}
				v := 0
				fmt.Sscan(got.VersionID, &v)
				if v < last {
					errs <- fmt.Errorf("read version %d after %d", v, last)
					return
				}
				last = v
			}
		}()
	}
	for i := 2; i <= versions; i++ {
		if _, _, err := s.Update(ctx, patient(t, "hot", fmt.Sprintf("v%d", i)), storage.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// a rolled-back write must not show
	_ = s.InTx(ctx, func(tx storage.Tx) error {
		if _, _, err := tx.Update(ctx, patient(t, "hot", "never"), storage.UpdateOptions{}); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	got, err := s.Read(ctx, "Patient", "hot")
	if err != nil || got.VersionID != fmt.Sprint(versions) || !strings.Contains(string(got.Raw), fmt.Sprintf(`"v%d"`, versions)) {
		t.Fatalf("after the writer: %v %v", err, got)
	}
	if _, err := s.Delete(ctx, "Patient", "hot", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", "hot"); !errors.Is(err, storage.ErrGone) {
		t.Fatalf("read after delete: %v", err)
	}
}
