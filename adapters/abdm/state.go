package abdm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// The HIU's state — consent requests, their artefacts and transactions, and
// the callback request ids already handled — is one Basic resource per
// source, updated with If-Match (compare and swap), so that it survives a
// restart and two replicas cannot overwrite each other's changes. It holds
// no key material: private keys live in memory only, for one push window.

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

// stateStore loads and saves the ledger.
type stateStore struct {
	st storage.Store
	id string // the Basic's id
}

func newStateStore(st storage.Store, source string) *stateStore {
	return &stateStore{st: st, id: consolidate.LocalID("abdm-state", "Basic", source)}
}

func (s *stateStore) load(ctx context.Context, r storage.Reader) (*ledger, string, error) {
	res, err := r.Read(ctx, "Basic", s.id)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
		return &ledger{Requests: map[string]*request{}}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read ABDM state: %w", err)
	}
	l := &ledger{}
	for _, e := range res.Root().Get("extension").Elems() {
		if e.Get("url").String() == StateSystem+":hiu-state" {
			if err := json.Unmarshal([]byte(e.Get("valueString").String()), l); err != nil {
				return nil, "", fmt.Errorf("decode ABDM state: %w", err)
			}
		}
	}
	if l.Requests == nil {
		l.Requests = map[string]*request{}
	}
	return l, res.VersionID, nil
}

// update applies fn to the ledger and saves it, retrying on a concurrent
// change. fn runs inside the store transaction and may write other
// resources through tx; it must be repeatable.
func (s *stateStore) update(ctx context.Context, fn func(tx storage.Tx, l *ledger) error) error {
	for attempt := 0; ; attempt++ {
		err := s.st.InTx(ctx, func(tx storage.Tx) error {
			l, version, err := s.load(ctx, tx)
			if err != nil {
				return err
			}
			if err := fn(tx, l); err != nil {
				return err
			}
			return s.save(ctx, tx, l, version)
		})
		if errors.Is(err, storage.ErrVersionConflict) && attempt < 5 {
			continue
		}
		return err
	}
}

func (s *stateStore) save(ctx context.Context, tx storage.Tx, l *ledger, version string) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	doc := map[string]any{
		"resourceType": "Basic",
		"id":           s.id,
		"code":         map[string]any{"coding": []any{map[string]string{"system": StateSystem, "code": "hiu-state"}}},
		"extension":    []any{map[string]string{"url": StateSystem + ":hiu-state", "valueString": string(b)}},
	}
	raw, _ := json.Marshal(doc)
	res, err := fhir.Parse(raw)
	if err != nil {
		return err
	}
	if version == "" {
		_, err = tx.Create(ctx, res)
		if errors.Is(err, storage.ErrAlreadyExists) {
			return fmt.Errorf("%w: state created concurrently", storage.ErrVersionConflict)
		}
		return err
	}
	_, _, err = tx.Update(ctx, res, storage.UpdateOptions{IfMatch: version})
	return err
}
