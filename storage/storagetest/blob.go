package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// trickle hands out its content a few odd-sized pieces at a time, as a
// network body does, and fails with err once it has given failAt bytes.
type trickle struct {
	b      []byte
	off    int
	failAt int
	err    error
}

func (t *trickle) Read(p []byte) (int, error) {
	if t.err != nil && t.off >= t.failAt {
		return 0, t.err
	}
	if t.off >= len(t.b) {
		return 0, io.EOF
	}
	n := min(len(p), 7919, len(t.b)-t.off)
	if t.err != nil {
		n = min(n, t.failAt-t.off)
	}
	copy(p, t.b[t.off:t.off+n])
	t.off += n
	return n, nil
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testBlobsIfAny runs the storage.Blobs checks on stores that offer it.
func testBlobsIfAny(t *testing.T, s storage.Store, _ *Clock) {
	bs, ok := s.(storage.Blobs)
	if !ok {
		t.Skip("the store does not implement storage.Blobs")
	}
	testBlobs(t, s, bs)
}

func testBlobs(t *testing.T, s storage.Store, bs storage.Blobs) {
	ctx := context.Background()
	content := randomBytes(1<<20+12345, 1) // several chunks, the last one short
	sum := sha256.Sum256(content)
	info, err := bs.PutBlob(ctx, &trickle{b: content})
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256-" + hex.EncodeToString(sum[:]); info.ID != want || info.Size != int64(len(content)) {
		t.Fatalf("PutBlob = %+v, want %s, %d bytes", info, want, len(content))
	}
	readAll := func(id string) []byte {
		t.Helper()
		rc, got, err := bs.OpenBlob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != int64(len(b)) {
			t.Fatalf("OpenBlob size %d, read %d", got.Size, len(b))
		}
		return b
	}
	if !bytes.Equal(readAll(info.ID), content) {
		t.Fatal("content read back differs")
	}
	// ranges, across chunk boundaries too
	rc, _, err := bs.OpenBlob(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	rs, ok := rc.(io.ReadSeeker)
	if !ok {
		t.Fatal("a blob reader does not seek")
	}
	for _, r := range [][2]int{{0, 10}, {262100, 262200}, {262144, 262145}, {len(content) - 7, len(content)}, {5, 600000}, {1 << 20, 1<<20 + 12345}} {
		if _, err := rs.Seek(int64(r[0]), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, r[1]-r[0])
		if _, err := io.ReadFull(rs, got); err != nil {
			t.Fatalf("range %v: %v", r, err)
		}
		if !bytes.Equal(got, content[r[0]:r[1]]) {
			t.Fatalf("range %v differs", r)
		}
	}
	if end, err := rs.Seek(0, io.SeekEnd); err != nil || end != int64(len(content)) {
		t.Fatalf("seek to the end: %d, %v", end, err)
	}
	if n, err := rs.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	if _, err := rs.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek before the start accepted")
	}
	rc.Close()
	// the same content again: the same blob
	again, err := bs.PutBlob(ctx, bytes.NewReader(content))
	if err != nil || again != info {
		t.Fatalf("second PutBlob = %+v, %v", again, err)
	}
	if !bytes.Equal(readAll(info.ID), content) {
		t.Fatal("content differs after storing it twice")
	}
	// empty content is a blob too
	empty, err := bs.PutBlob(ctx, strings.NewReader(""))
	if err != nil || empty.Size != 0 || len(readAll(empty.ID)) != 0 {
		t.Fatalf("empty blob: %+v, %v", empty, err)
	}
	// a reader failing half-way leaves nothing behind
	other := randomBytes(600<<10, 2)
	osum := sha256.Sum256(other)
	errLimit := errors.New("over the limit")
	if _, err := bs.PutBlob(ctx, &trickle{b: other, failAt: 500 << 10, err: errLimit}); !errors.Is(err, errLimit) {
		t.Fatalf("failing reader: %v", err)
	}
	if _, _, err := bs.OpenBlob(ctx, "sha256-"+hex.EncodeToString(osum[:])); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("OpenBlob after a failed put: %v", err)
	}
	if _, _, err := bs.OpenBlob(ctx, "sha256-nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("OpenBlob of an unknown id: %v", err)
	}

	// a Binary naming the blob: reads inline it, stubs and lists do not
	bin := mustParse(t, `{"resourceType":"Binary","id":"up1","contentType":"application/pdf","securityContext":{"reference":"Patient/p1"}}`)
	stub, err := storage.BlobStub(bin, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, stub); err != nil {
		t.Fatal(err)
	}
	wantData := base64.StdEncoding.EncodeToString(content)
	checkInlined := func(what string, raw []byte) {
		t.Helper()
		r := mustParse(t, string(raw))
		root := r.Root()
		if got := root.Get("data").String(); got != wantData {
			t.Fatalf("%s: data has %d characters, want %d", what, len(got), len(wantData))
		}
		if root.Get("_data") != nil || root.Get("contentType").String() != "application/pdf" || root.Get("securityContext") == nil {
			t.Fatalf("%s: %.300s", what, raw)
		}
	}
	r, err := s.Read(ctx, "Binary", "up1")
	if err != nil {
		t.Fatal(err)
	}
	checkInlined("Read", r.Raw)
	if r.VersionID != "1" {
		t.Fatalf("Read version %q", r.VersionID)
	}
	r, err = s.VRead(ctx, "Binary", "up1", "1")
	if err != nil {
		t.Fatal(err)
	}
	checkInlined("VRead", r.Raw)
	r, err = bs.ReadStub(ctx, "Binary", "up1")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := storage.BlobOf(r); !ok || id != info.ID || r.Root().Get("data") != nil {
		t.Fatalf("ReadStub: %.300s", r.Raw)
	}
	var buf bytes.Buffer
	rc, _, err = bs.OpenBlob(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteInlined(&buf, r, rc); err != nil {
		t.Fatal(err)
	}
	checkInlined("WriteInlined", buf.Bytes())
	err = s.InTx(ctx, func(tx storage.Tx) error {
		r, err := tx.Read(ctx, "Binary", "up1")
		if err != nil {
			return err
		}
		checkInlined("Tx.Read", r.Raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// a new version keeps naming the content; history lists stubs
	stub2, err := storage.BlobStub(mustParse(t, `{"resourceType":"Binary","id":"up1","contentType":"application/pdf","securityContext":{"reference":"Patient/p2"}}`), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, stub2, storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err = s.Read(ctx, "Binary", "up1")
	if err != nil {
		t.Fatal(err)
	}
	checkInlined("Read v2", r.Raw)
	h, err := s.History(ctx, storage.HistoryQuery{Type: "Binary", ID: "up1", Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != 2 {
		t.Fatalf("history has %d entries", len(h.Entries))
	}
	for _, e := range h.Entries {
		if id, ok := storage.BlobOf(e.Resource); !ok || id != info.ID {
			t.Fatalf("history entry %s: %.200s", e.VersionID, e.Resource.Raw)
		}
	}
	// a Binary with inline data is untouched by all this
	small := mustParse(t, `{"resourceType":"Binary","id":"small","contentType":"text/plain","data":"aGVsbG8="}`)
	if _, err := s.Create(ctx, small); err != nil {
		t.Fatal(err)
	}
	r, err = s.Read(ctx, "Binary", "small")
	if err != nil || r.Root().Get("data").String() != "aGVsbG8=" {
		t.Fatalf("inline Binary: %v %s", err, r.Raw)
	}
}

// testAbandonedUploads: chunks of an upload interrupted by a crash (here:
// a reader that panics, so PutBlob cannot clean up) are removed by an
// upload a day later, and not before.
func testAbandonedUploads(t *testing.T, s storage.Store, c *Clock) {
	bs, ok := s.(storage.Blobs)
	sq, ok2 := s.(interface{ DB() sqlstore.DB })
	if !ok || !ok2 {
		t.Skip("not an SQL store with blobs")
	}
	ctx := context.Background()
	chunks := func() int {
		t.Helper()
		var n int
		if err := sq.DB().QueryRow(ctx, `SELECT COUNT(*) FROM blob_chunks`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	func() {
		defer func() { _ = recover() }()
		_, _ = bs.PutBlob(ctx, io.MultiReader(bytes.NewReader(randomBytes(600<<10, 3)), panicReader{}))
	}()
	left := chunks()
	if left < 2 {
		t.Fatalf("the interrupted upload left %d chunks; the test needs some", left)
	}
	if _, err := bs.PutBlob(ctx, strings.NewReader("soon after")); err != nil {
		t.Fatal(err)
	}
	if got := chunks(); got != left+1 {
		t.Fatalf("an upload in progress (or recently crashed) was removed: %d chunks, want %d", got, left+1)
	}
	c.Advance(25 * time.Hour)
	if _, err := bs.PutBlob(ctx, strings.NewReader("a day later")); err != nil {
		t.Fatal(err)
	}
	if got := chunks(); got != 2 {
		t.Fatalf("%d chunks after the cleanup, want the 2 stored blobs' ones", got)
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("the process dies mid-upload") }

// testChangeMark: the mark of a type changes with every committed write of
// it (create, update, delete, batch create), not with a rolled-back one nor
// with writes of other types, and is the same however often it is asked
// (the embedded store answers it from memory between writes).
func testChangeMark(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	mark := func() int64 {
		t.Helper()
		m, err := s.ChangeMark(ctx, "Consent")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m0 := mark()
	consent := func(id string) *fhir.Resource {
		return mustParse(t, `{"resourceType":"Consent","id":"`+id+`","status":"active","scope":{"text":"x"},"category":[{"text":"x"}]}`)
	}
	steps := []struct {
		name    string
		write   func() error
		changes bool
	}{
		{"create", func() error { _, err := s.Create(ctx, consent("c1")); return err }, true},
		{"another type", func() error { _, err := s.Create(ctx, patient(t, "p-mark", "Mark")); return err }, false},
		{"update", func() error { _, _, err := s.Update(ctx, consent("c1"), storage.UpdateOptions{}); return err }, true},
		{"batch", func() error { _, err := s.CreateMany(ctx, []*fhir.Resource{consent("c2"), consent("c3")}); return err }, true},
		{"rolled back", func() error {
			err := s.InTx(ctx, func(tx storage.Tx) error {
				if _, err := tx.Create(ctx, consent("c4")); err != nil {
					return err
				}
				return errors.New("abandon")
			})
			if err == nil {
				return errors.New("the transaction committed")
			}
			return nil
		}, false},
		{"delete", func() error { _, err := s.Delete(ctx, "Consent", "c2", storage.DeleteOptions{}); return err }, true},
	}
	prev := m0
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := mark()
		if again := mark(); again != got {
			t.Fatalf("%s: the mark moved without a write: %d then %d", st.name, got, again)
		}
		if (got != prev) != st.changes {
			t.Errorf("%s: mark %d → %d, want a change: %v", st.name, prev, got, st.changes)
		}
		prev = got
	}
}

// testChangeMarkConcurrent: readers asking for the mark while a writer
// commits never leave a stale mark behind: after each write returns, the
// mark has moved.
func testChangeMarkConcurrent(t *testing.T, s storage.Store, _ *Clock) {
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = s.ChangeMark(ctx, "Consent")
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	prev, err := s.ChangeMark(ctx, "Consent")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		c := mustParse(t, fmt.Sprintf(`{"resourceType":"Consent","id":"cc%d","status":"active","scope":{"text":"x"},"category":[{"text":"x"}]}`, i))
		if _, err := s.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		m, err := s.ChangeMark(ctx, "Consent")
		if err != nil {
			t.Fatal(err)
		}
		if m == prev {
			t.Fatalf("write %d: the mark did not move (%d): a stale mark was kept", i, m)
		}
		prev = m
	}
}
