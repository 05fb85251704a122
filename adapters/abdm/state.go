package abdm

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
)

// The HIU's state lives in the gateway's database (StateStore), so that it
// survives a restart and every replica sees the same: the ledger (consent
// requests, their artefacts and transactions, the callback request ids
// already handled) under one key per source, and one transfer record per
// health-information request (the Fidelius key, the push window, the pages
// received so far, still encrypted by the HIP) sealed with the state key
// (FHIRGATE_STATE_KEY). Each key is changed under a lock every replica
// respects; a change of the ledger may change transfer records, never the
// other way round, so the locks cannot deadlock.

// StateSystem is the code system of the state Basic's code and extension.
const StateSystem = "urn:fhirgate:abdm"

// maxSeen bounds the remembered callback request ids.
const maxSeen = 2000

// Consent request and artefact statuses.
const (
	StatusRequested = "REQUESTED"
	StatusGranted   = "GRANTED"
	StatusDenied    = "DENIED"
	StatusRevoked   = "REVOKED"
	StatusExpired   = "EXPIRED"
	statusError     = "ERROR" // the gateway refused the request (on-init error)
)

// Transaction states.
const (
	txRequested = "requested" // HI request sent, no transactionId yet
	txOpen      = "open"      // transactionId known, waiting for pages
	txDone      = "done"      // every page received and filed
	txFailed    = "failed"    // refused push, missing page or window closed
)

type ledger struct {
	Requests map[string]*request `json:"requests"` // by local Patient id
	Seen     []string            `json:"seen"`
}

// request is the consent request for one patient.
type request struct {
	RequestID        string               `json:"requestId"` // ours, of consent-requests/init
	PatientID        string               `json:"patientId"` // local Patient
	ABHA             string               `json:"abha"`
	ConsentRequestID string               `json:"consentRequestId,omitempty"`
	Status           string               `json:"status"`
	Error            string               `json:"error,omitempty"`
	Created          time.Time            `json:"created"`
	Reported         bool                 `json:"reported,omitempty"` // the outcome was returned by Fetch
	Artefacts        map[string]*artefact `json:"artefacts,omitempty"`
}

// artefact is one consent artefact (one per HIP).
type artefact struct {
	ID             string    `json:"id"`
	Status         string    `json:"status"`
	HIPID          string    `json:"hipId,omitempty"`
	FetchRequestID string    `json:"fetchRequestId,omitempty"`
	Consent        string    `json:"consent,omitempty"` // local Consent id once fetched
	From           string    `json:"from,omitempty"`
	To             string    `json:"to,omitempty"`
	EraseAt        time.Time `json:"eraseAt,omitzero"`
	Tx             *txState  `json:"tx,omitempty"`
	// Filed are the local "Type/id" of what its transfers stored.
	Filed []string `json:"filed,omitempty"`
	// Transfers counts completed transfers.
	Transfers int `json:"transfers,omitempty"`
}

type txState struct {
	HIRequestID   string    `json:"hiRequestId"`
	TransactionID string    `json:"transactionId,omitempty"`
	State         string    `json:"state"`
	Deadline      time.Time `json:"deadline"`
	Problem       string    `json:"problem,omitempty"`
	Filed         int       `json:"filed,omitempty"`
	IssueCount    int       `json:"issueCount,omitempty"`
	Reported      bool      `json:"reported,omitempty"`
}

func (l *ledger) seen(id string) bool {
	for _, s := range l.Seen {
		if s == id {
			return true
		}
	}
	return false
}

func (l *ledger) remember(id string) {
	if id == "" {
		return
	}
	l.Seen = append(l.Seen, id)
	if len(l.Seen) > maxSeen {
		l.Seen = l.Seen[len(l.Seen)-maxSeen:]
	}
}

// byConsentRequest finds the request a gateway consent request id belongs to.
func (l *ledger) byConsentRequest(id string) *request {
	for _, r := range l.Requests {
		if r.ConsentRequestID == id && id != "" {
			return r
		}
	}
	return nil
}

func (l *ledger) byRequestID(id string) *request {
	for _, r := range l.Requests {
		if r.RequestID == id && id != "" {
			return r
		}
	}
	return nil
}

func (l *ledger) artefact(pred func(*artefact) bool) (*request, *artefact) {
	for _, r := range l.Requests {
		for _, a := range r.Artefacts {
			if pred(a) {
				return r, a
			}
		}
	}
	return nil, nil
}

// StateStore keeps values by key in the gateway's database, shared by
// every replica (sqlstore.AdapterState implements it on both stores).
type StateStore interface {
	// Get returns the value under key; nil when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Keys lists the keys that start with prefix.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Update runs fn on the value under key (nil when none) holding a
	// lock on key that every replica respects, and keeps what fn returns
	// (nil deletes the key; an error keeps the value). fn may write the
	// record and other keys meanwhile.
	Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) error
}

// Records is the patient record as the HIU writes it: what it receives is
// filed by consolidation like every source's (*consolidate.Consolidator
// implements it).
type Records interface {
	// Get returns a resource's current version; nil (and no error) when it
	// does not exist or was deleted.
	Get(ctx context.Context, typ, id string) (*fhir.Resource, error)
	// Put stores a resource the HIU authors (a Consent), creating or
	// replacing it.
	Put(ctx context.Context, res *fhir.Resource) error
	// Remove deletes resources ("Type/id"); missing ones are fine.
	Remove(ctx context.Context, refs []string) error
	// Apply files a batch into the patient's consolidated record.
	Apply(ctx context.Context, b consolidate.Batch) (*consolidate.Report, error)
}

// ledgerStore loads and saves a source's ledger.
type ledgerStore struct {
	st      StateStore
	records Records
	key     string
	// legacy is the Basic resource that held the ledger before it moved
	// to the state store; read once when the state store has none.
	legacy string
}

func newLedgerStore(st StateStore, records Records, source string) *ledgerStore {
	return &ledgerStore{st: st, records: records, key: "abdm/" + source + "/ledger",
		legacy: consolidate.LocalID("abdm-state", "Basic", source)}
}

func (s *ledgerStore) decode(ctx context.Context, b []byte) (*ledger, bool, error) {
	l := &ledger{}
	legacy := false
	if b == nil {
		res, err := s.records.Get(ctx, "Basic", s.legacy)
		if err != nil {
			return nil, false, fmt.Errorf("read ABDM state: %w", err)
		}
		if res != nil {
			for _, e := range res.Root().Get("extension").Elems() {
				if e.Get("url").String() == StateSystem+":hiu-state" {
					b, legacy = []byte(e.Get("valueString").String()), true
				}
			}
		}
	}
	if b != nil {
		if err := json.Unmarshal(b, l); err != nil {
			return nil, false, fmt.Errorf("decode ABDM state: %w", err)
		}
	}
	if l.Requests == nil {
		l.Requests = map[string]*request{}
	}
	return l, legacy, nil
}

func (s *ledgerStore) load(ctx context.Context) (*ledger, error) {
	b, err := s.st.Get(ctx, s.key)
	if err != nil {
		return nil, err
	}
	l, _, err := s.decode(ctx, b)
	return l, err
}

// update applies fn to the ledger and saves it, under the ledger's lock.
func (s *ledgerStore) update(ctx context.Context, fn func(l *ledger) error) error {
	fromLegacy := false
	err := s.st.Update(ctx, s.key, func(old []byte) ([]byte, error) {
		l, legacy, err := s.decode(ctx, old)
		if err != nil {
			return nil, err
		}
		fromLegacy = legacy
		if err := fn(l); err != nil {
			return nil, err
		}
		return json.Marshal(l)
	})
	if err == nil && fromLegacy {
		// the ledger moved: the old resource would only mislead
		_ = s.records.Remove(ctx, []string{"Basic/" + s.legacy})
	}
	return err
}
