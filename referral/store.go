package referral

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
)

// Store wraps st (the Service's store, or one that writes to it) so that
// every write a request makes follows the workflow, whatever road it takes
// (PUT, PATCH, a transaction or batch entry, a conditional update): a
// referral Task moves only by the state machine (the gateway setting the
// matching businessStatus), and follow-up messages and opinions are tied
// to the Task they belong to. The rules run inside the write's own
// transaction, on the version current there, before the release rule
// decides the whole transaction (release.Checked). Writes in a context
// without a request's guard (pulls, feeds: the gateway's own) pass
// unchanged.
func (s *Service) Store(st storage.Store) storage.Store {
	return &workflowStore{Store: st, s: s}
}

type workflowStore struct {
	storage.Store
	s *Service
}

var (
	_ storage.Blobs        = (*workflowStore)(nil)
	_ storage.RecordMarker = (*workflowStore)(nil)
)

// caller is the principal of a request's write; ok is false outside a
// request (the gateway's own writes).
func caller(ctx context.Context) (p *auth.Principal, ok bool) {
	g := release.GuardFrom(ctx)
	if g == nil {
		return nil, false
	}
	return g.Principal(), true
}

func (w *workflowStore) InTx(ctx context.Context, fn func(tx storage.Tx) error) error {
	if _, ok := caller(ctx); !ok {
		return w.Store.InTx(ctx, fn)
	}
	return w.Store.InTx(ctx, func(tx storage.Tx) error {
		return fn(&workflowTx{Tx: tx, s: w.s})
	})
}

func (w *workflowStore) Create(ctx context.Context, res *fhir.Resource) (out *fhir.Resource, err error) {
	if _, ok := caller(ctx); !ok {
		return w.Store.Create(ctx, res)
	}
	err = w.InTx(ctx, func(tx storage.Tx) error {
		out, err = tx.Create(ctx, res)
		return err
	})
	return out, err
}

func (w *workflowStore) CreateMany(ctx context.Context, res []*fhir.Resource) (out []*fhir.Resource, err error) {
	if _, ok := caller(ctx); !ok {
		return w.Store.CreateMany(ctx, res)
	}
	err = w.InTx(ctx, func(tx storage.Tx) error {
		out, err = tx.CreateMany(ctx, res)
		return err
	})
	return out, err
}

func (w *workflowStore) Update(ctx context.Context, res *fhir.Resource, opts storage.UpdateOptions) (out *fhir.Resource, created bool, err error) {
	if _, ok := caller(ctx); !ok {
		return w.Store.Update(ctx, res, opts)
	}
	err = w.InTx(ctx, func(tx storage.Tx) error {
		out, created, err = tx.Update(ctx, res, opts)
		return err
	})
	return out, created, err
}

func (w *workflowStore) Delete(ctx context.Context, typ, id string, opts storage.DeleteOptions) (vid string, err error) {
	if _, ok := caller(ctx); !ok {
		return w.Store.Delete(ctx, typ, id, opts)
	}
	err = w.InTx(ctx, func(tx storage.Tx) error {
		vid, err = tx.Delete(ctx, typ, id, opts)
		return err
	})
	return vid, err
}

func (w *workflowStore) blobs() (storage.Blobs, error) {
	b, ok := w.Store.(storage.Blobs)
	if !ok {
		return nil, errors.New("referral: the store keeps no blobs")
	}
	return b, nil
}

func (w *workflowStore) PutBlob(ctx context.Context, r io.Reader) (storage.BlobInfo, error) {
	b, err := w.blobs()
	if err != nil {
		return storage.BlobInfo{}, err
	}
	return b.PutBlob(ctx, r)
}

func (w *workflowStore) OpenBlob(ctx context.Context, id string) (io.ReadCloser, storage.BlobInfo, error) {
	b, err := w.blobs()
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	return b.OpenBlob(ctx, id)
}

func (w *workflowStore) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if b, ok := w.Store.(storage.StubReader); ok {
		return b.ReadStub(ctx, typ, id)
	}
	return w.Store.Read(ctx, typ, id)
}

func (w *workflowStore) VReadStub(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	b, err := w.blobs()
	if err != nil {
		return w.Store.VRead(ctx, typ, id, vid)
	}
	return b.VReadStub(ctx, typ, id, vid)
}

func (w *workflowStore) RecordMark(ctx context.Context, patientID string, refs []string) (string, error) {
	rm, ok := w.Store.(storage.RecordMarker)
	if !ok {
		return "", errors.New("referral: the store keeps no record marks")
	}
	return rm.RecordMark(ctx, patientID, refs)
}

// workflowTx applies the workflow to each write of a request's
// transaction.
type workflowTx struct {
	storage.Tx
	s *Service
}

func (t *workflowTx) Create(ctx context.Context, res *fhir.Resource) (*fhir.Resource, error) {
	res, err := t.s.beforeWrite(ctx, t.Tx, nil, res)
	if err != nil {
		return nil, err
	}
	out, err := t.Tx.Create(ctx, res)
	if err != nil {
		return out, err
	}
	return out, t.s.afterWrite(ctx, t.Tx, nil, out)
}

func (t *workflowTx) CreateMany(ctx context.Context, res []*fhir.Resource) ([]*fhir.Resource, error) {
	in := make([]*fhir.Resource, len(res))
	for i, r := range res {
		var err error
		if in[i], err = t.s.beforeWrite(ctx, t.Tx, nil, r); err != nil {
			return nil, err
		}
	}
	out, err := t.Tx.CreateMany(ctx, in)
	if err != nil {
		return out, err
	}
	for _, r := range out {
		if err := t.s.afterWrite(ctx, t.Tx, nil, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *workflowTx) Update(ctx context.Context, res *fhir.Resource, opts storage.UpdateOptions) (*fhir.Resource, bool, error) {
	cur, err := t.Tx.Read(ctx, res.Type, res.ID)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrGone) {
			return nil, false, err
		}
		cur = nil
	}
	res, err = t.s.beforeWrite(ctx, t.Tx, cur, res)
	if err != nil {
		return nil, false, err
	}
	out, created, err := t.Tx.Update(ctx, res, opts)
	if err != nil {
		return out, created, err
	}
	return out, created, t.s.afterWrite(ctx, t.Tx, cur, out)
}

func (t *workflowTx) Delete(ctx context.Context, typ, id string, opts storage.DeleteOptions) (string, error) {
	if typ == "Communication" {
		cur, err := t.Tx.Read(ctx, typ, id)
		if err == nil {
			p, _ := caller(ctx)
			if _, err := t.s.messageWrite(ctx, t.Tx, p, cur, nil); err != nil {
				return "", err
			}
		}
	}
	if typ == "Bundle" {
		cur, err := t.Tx.Read(ctx, typ, id)
		if err == nil {
			p, _ := caller(ctx)
			if _, err := t.s.opinionWrite(ctx, t.Tx, p, cur, nil); err != nil {
				return "", err
			}
		}
	}
	if typ == "Task" {
		cur, err := t.Tx.Read(ctx, typ, id)
		if err == nil && IsTask(cur) {
			if p, _ := caller(ctx); p != nil && p.Kind != auth.KindSystem {
				return "", fhir.Errorf(http.StatusConflict, "business-rule", []string{"Task"}, "a referral Task is the record of a second-opinion request: it is cancelled (status cancelled), not deleted")
			}
		}
	}
	return t.Tx.Delete(ctx, typ, id, opts)
}

func (t *workflowTx) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if sr, ok := t.Tx.(storage.StubReader); ok {
		return sr.ReadStub(ctx, typ, id)
	}
	return t.Tx.Read(ctx, typ, id)
}

func (t *workflowTx) RecordMark(ctx context.Context, patientID string, refs []string) (string, error) {
	rm, ok := t.Tx.(storage.RecordMarker)
	if !ok {
		return "", errors.New("referral: the store keeps no record marks")
	}
	return rm.RecordMark(ctx, patientID, refs)
}

// beforeWrite applies the workflow's rules to a write of next over cur
// (nil for a creation) and returns what is to be stored.
func (s *Service) beforeWrite(ctx context.Context, tx storage.Tx, cur, next *fhir.Resource) (*fhir.Resource, error) {
	p, _ := caller(ctx)
	switch {
	case IsTask(cur) || IsTask(next):
		return s.taskChange(ctx, tx, p, cur, next)
	case next != nil && next.Type == "Bundle" || cur != nil && cur.Type == "Bundle":
		return s.opinionWrite(ctx, tx, p, cur, next)
	case next != nil && next.Type == "Communication" || cur != nil && cur.Type == "Communication":
		return s.messageWrite(ctx, tx, p, cur, next)
	}
	return next, nil
}

// afterWrite is what a stored write sets off in the same transaction: a
// new follow-up message moves its Task and shares what it points at.
func (s *Service) afterWrite(ctx context.Context, tx storage.Tx, cur, stored *fhir.Resource) error {
	if cur == nil && stored != nil && stored.Type == "Communication" {
		return s.messageEffects(ctx, tx, stored)
	}
	return nil
}
