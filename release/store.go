package release

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

type guardKey struct{}
type filingKey struct{}

// WithGuard returns ctx carrying the request's guard: every write a
// Checked store makes in that context is checked by it.
func WithGuard(ctx context.Context, g *Guard) context.Context {
	return context.WithValue(ctx, guardKey{}, g)
}

// GuardFrom returns the guard ctx carries, or nil.
func GuardFrom(ctx context.Context) *Guard {
	g, _ := ctx.Value(guardKey{}).(*Guard)
	return g
}

// Filing marks ctx as the gateway filing a document or file into a
// patient's record on the caller's behalf ($import, uploads): resources the
// conversion makes that are about nobody (the document's Organization,
// Practitioner, Medication) may then be written by a patient, while
// everything that is about a patient must still be about itself.
func Filing(ctx context.Context) context.Context { return context.WithValue(ctx, filingKey{}, true) }

func filing(ctx context.Context) bool { v, _ := ctx.Value(filingKey{}).(bool); return v }

// Assembling marks ctx as the gateway writing documents it assembled
// itself (package referral's second-opinion packages): only there may a
// Bundle carry the tag AssembledSystem|AssembledCode.
func Assembling(ctx context.Context) context.Context {
	return context.WithValue(ctx, assemblingKey{}, true)
}

type assemblingKey struct{}

func assembling(ctx context.Context) bool { v, _ := ctx.Value(assemblingKey{}).(bool); return v }

// Checked wraps a store so that every write made in a context carrying a
// Guard (WithGuard) is decided by Guard.CheckWrite inside the write's own
// transaction, once its references are final (a transaction's urn:uuid
// references rewritten, a consolidated batch's ids assigned): a refused
// write rolls the whole transaction back. Writes in other contexts (pull
// jobs, HL7 v2 feeds, ABDM pushes: the gateway's own) pass unchanged.
// Reads pass unchanged: they are decided by the Guard the server reads
// through.
func Checked(st storage.Store) storage.Store {
	if _, ok := st.(*checkedStore); ok {
		return st
	}
	return &checkedStore{Store: st}
}

// Unchecked returns the store a Checked store wraps (st itself otherwise).
func Unchecked(st storage.Store) storage.Store {
	if c, ok := st.(*checkedStore); ok {
		return c.Store
	}
	return st
}

type checkedStore struct {
	storage.Store
}

var (
	_ storage.Blobs        = (*checkedStore)(nil)
	_ storage.RecordMarker = (*checkedStore)(nil)
)

func (s *checkedStore) InTx(ctx context.Context, fn func(tx storage.Tx) error) error {
	g := GuardFrom(ctx)
	if g == nil {
		return s.Store.InTx(ctx, fn)
	}
	return s.Store.InTx(ctx, func(tx storage.Tx) error {
		ct := &checkedTx{Tx: tx, g: g}
		if err := fn(ct); err != nil {
			return err
		}
		// decided once the transaction holds everything it writes, so
		// that a resource may point at one written after it (an upload's
		// Binary names its DocumentReference)
		return ct.checkAll(ctx)
	})
}

func (s *checkedStore) Create(ctx context.Context, res *fhir.Resource) (out *fhir.Resource, err error) {
	if GuardFrom(ctx) == nil {
		return s.Store.Create(ctx, res)
	}
	err = s.InTx(ctx, func(tx storage.Tx) error {
		out, err = tx.Create(ctx, res)
		return err
	})
	return out, err
}

func (s *checkedStore) CreateMany(ctx context.Context, res []*fhir.Resource) (out []*fhir.Resource, err error) {
	if GuardFrom(ctx) == nil {
		return s.Store.CreateMany(ctx, res)
	}
	err = s.InTx(ctx, func(tx storage.Tx) error {
		out, err = tx.CreateMany(ctx, res)
		return err
	})
	return out, err
}

func (s *checkedStore) Update(ctx context.Context, res *fhir.Resource, opts storage.UpdateOptions) (out *fhir.Resource, created bool, err error) {
	if GuardFrom(ctx) == nil {
		return s.Store.Update(ctx, res, opts)
	}
	err = s.InTx(ctx, func(tx storage.Tx) error {
		out, created, err = tx.Update(ctx, res, opts)
		return err
	})
	return out, created, err
}

func (s *checkedStore) Delete(ctx context.Context, typ, id string, opts storage.DeleteOptions) (vid string, err error) {
	if GuardFrom(ctx) == nil {
		return s.Store.Delete(ctx, typ, id, opts)
	}
	err = s.InTx(ctx, func(tx storage.Tx) error {
		vid, err = tx.Delete(ctx, typ, id, opts)
		return err
	})
	return vid, err
}

func (s *checkedStore) blobs() (storage.Blobs, error) {
	b, ok := s.Store.(storage.Blobs)
	if !ok {
		return nil, errors.New("release: the store keeps no blobs")
	}
	return b, nil
}

func (s *checkedStore) PutBlob(ctx context.Context, r io.Reader) (storage.BlobInfo, error) {
	b, err := s.blobs()
	if err != nil {
		return storage.BlobInfo{}, err
	}
	return b.PutBlob(ctx, r)
}

func (s *checkedStore) OpenBlob(ctx context.Context, id string) (io.ReadCloser, storage.BlobInfo, error) {
	b, err := s.blobs()
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	return b.OpenBlob(ctx, id)
}

func (s *checkedStore) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if b, ok := s.Store.(storage.StubReader); ok {
		return b.ReadStub(ctx, typ, id)
	}
	return s.Store.Read(ctx, typ, id)
}

func (s *checkedStore) VReadStub(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	b, err := s.blobs()
	if err != nil {
		return s.Store.VRead(ctx, typ, id, vid)
	}
	return b.VReadStub(ctx, typ, id, vid)
}

func (s *checkedStore) RecordMark(ctx context.Context, patientID string, refs []string) (string, error) {
	rm, ok := s.Store.(storage.RecordMarker)
	if !ok {
		return "", errors.New("release: the store keeps no record marks")
	}
	return rm.RecordMark(ctx, patientID, refs)
}

// checkedTx records each write and checks them all before the
// transaction commits, reading through it (so references to what the
// transaction wrote resolve).
type checkedTx struct {
	storage.Tx
	g      *Guard
	writes []Write
}

func (t *checkedTx) check(_ context.Context, w Write) error {
	t.writes = append(t.writes, w)
	return nil
}

func (t *checkedTx) checkAll(ctx context.Context) error {
	for _, w := range t.writes {
		if err := t.checkOne(ctx, w); err != nil {
			return err
		}
	}
	t.writes = nil
	return nil
}

func (t *checkedTx) checkOne(ctx context.Context, w Write) error {
	w.Within, w.filing, w.quiet, w.assembling = t.Tx, filing(ctx), true, assembling(ctx)
	if err := t.g.CheckWrite(ctx, w); err != nil {
		r := w.New
		if r == nil {
			r = w.Current
		}
		if r != nil {
			return fmt.Errorf("%s/%s: %w", r.Type, r.ID, err)
		}
		return err
	}
	return nil
}

func (t *checkedTx) current(ctx context.Context, typ, id string) *fhir.Resource {
	var (
		cur *fhir.Resource
		err error
	)
	if sr, ok := t.Tx.(storage.StubReader); ok {
		cur, err = sr.ReadStub(ctx, typ, id)
	} else {
		cur, err = t.Tx.Read(ctx, typ, id)
	}
	if err != nil {
		return nil
	}
	return cur
}

func (t *checkedTx) Create(ctx context.Context, res *fhir.Resource) (*fhir.Resource, error) {
	out, err := t.Tx.Create(ctx, res)
	if err != nil {
		return out, err
	}
	return out, t.check(ctx, Write{New: out})
}

func (t *checkedTx) CreateMany(ctx context.Context, res []*fhir.Resource) ([]*fhir.Resource, error) {
	out, err := t.Tx.CreateMany(ctx, res)
	if err != nil {
		return out, err
	}
	for _, r := range out {
		if err := t.check(ctx, Write{New: r}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *checkedTx) Update(ctx context.Context, res *fhir.Resource, opts storage.UpdateOptions) (*fhir.Resource, bool, error) {
	cur := t.current(ctx, res.Type, res.ID)
	out, created, err := t.Tx.Update(ctx, res, opts)
	if err != nil {
		return out, created, err
	}
	return out, created, t.check(ctx, Write{New: out, Current: cur})
}

func (t *checkedTx) Delete(ctx context.Context, typ, id string, opts storage.DeleteOptions) (string, error) {
	cur := t.current(ctx, typ, id)
	vid, err := t.Tx.Delete(ctx, typ, id, opts)
	if err != nil {
		return vid, err
	}
	if cur == nil {
		if typ != "AuditEvent" {
			return vid, nil // it was deleted already: nothing changed
		}
		cur = &fhir.Resource{Type: typ, ID: id}
	}
	return vid, t.check(ctx, Write{Current: cur})
}

func (t *checkedTx) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if sr, ok := t.Tx.(storage.StubReader); ok {
		return sr.ReadStub(ctx, typ, id)
	}
	return t.Tx.Read(ctx, typ, id)
}

func (t *checkedTx) RecordMark(ctx context.Context, patientID string, refs []string) (string, error) {
	rm, ok := t.Tx.(storage.RecordMarker)
	if !ok {
		return "", errors.New("release: the store keeps no record marks")
	}
	return rm.RecordMark(ctx, patientID, refs)
}
