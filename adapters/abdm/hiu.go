// Package abdm is the "abdm" source type: the gateway as a Health
// Information User (HIU) of India's ABDM network, speaking the HIE-CM
// gateway's API v0.5 or v3 (STANDARDS.md §9).
//
// The flow is asynchronous. Fetch sends consents-requests/init for the
// patient's ABHA address (identifier system https://healthid.ndhm.gov.in on
// the local Patient) and reports ErrWaiting; the gateway calls back (on-init,
// hiu/notify, on-fetch, hiu/on-request) on the routes the server mounts under
// /abdm (ServeHTTP); each granted artefact becomes a FHIR Consent and gets a
// health-information request with fresh Fidelius key material; the HIP pushes
// the encrypted documents (paged) to the transfer route, where they are
// decrypted, checksummed, and filed into the patient's consolidated record
// (package consolidate) with a Provenance naming the HIP and care context;
// the HIU then notifies the gateway. A later Fetch reports the outcome.
//
// Callbacks must carry a JWT signed by the gateway (verified against its
// JWKS) and are idempotent by request id. The HIU's state — its ledger and
// each open transfer's key and received pages, sealed with the state key —
// lives in the gateway's database (StateStore), so that any replica can
// take a callback or a push for a request another replica made, and what
// it receives is filed through consolidation (Records). The package knows
// neither the store nor SQL.
package abdm

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm/fidelius"
	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/google/uuid"
)

// ABHASystem is the identifier system of an ABHA address on a Patient.
const ABHASystem = "https://healthid.ndhm.gov.in"

// Outcomes a Fetch reports. Each is returned inside an *adapters.Error.
var (
	// ErrWaiting: the consent request or the transfer is in progress (the
	// patient has not decided yet, or the HIPs have not pushed). It also
	// wraps adapters.ErrUnavailable so that adapters.Temporary is true and a
	// job runner polls again after Error.RetryAfter.
	ErrWaiting = errors.New("waiting for the patient's grant and the HIPs' data")
	// ErrDenied: the patient denied the consent request (or it expired or
	// was revoked before data arrived). The next Fetch starts a new request.
	ErrDenied = errors.New("the patient did not grant the consent request")
	// ErrNoABHA: the local Patient has no ABHA address.
	ErrNoABHA = errors.New("the patient has no ABHA address (identifier system " + ABHASystem + ")")
	// ErrTransfer: a transfer failed (refused push, missing page, push
	// window closed). The next Fetch asks for the data again.
	ErrTransfer = errors.New("the health-information transfer failed")
)

// maxBody bounds callback bodies (pushes carry whole documents).
const maxBody = 64 << 20

// doc is one decrypted document of a push.
type doc struct {
	careContext string
	bundle      []byte
}

// HIU is an "abdm" source.
type HIU struct {
	id      string
	cfg     Config
	p       paths
	state   StateStore
	records Records
	ledger  *ledgerStore
	seal    *sealer
	gw      *gateway
	ver     *verifier
	log     *slog.Logger
	clock   adapters.Clock
}

var _ adapters.Source = (*HIU)(nil)

// Deps are what an HIU keeps its state in and files into.
type Deps struct {
	// State keeps the ledger and the transfer records (required).
	State StateStore
	// Records reads the local Patient and files what HIPs push (required).
	Records Records
}

// New opens an "abdm" source. The state key comes from the environment
// variable StateKeyEnv (opts.LookupEnv); without it, transfers complete
// only on this process and not across a restart (logged at start).
func New(id string, cfg Config, deps Deps, opts adapters.Options) (*HIU, error) {
	opts = opts.WithDefaults()
	cfg.defaults()
	if deps.State == nil || deps.Records == nil {
		return nil, fmt.Errorf("%w: the abdm source needs the state store and the record", adapters.ErrConfig)
	}
	secret, _ := opts.LookupEnv(cfg.SecretEnv)
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	seal, shared, err := newSealer(opts.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", adapters.ErrConfig, err)
	}
	h := &HIU{
		id: id, cfg: cfg, p: pathsFor(cfg.APIVersion), state: deps.State, records: deps.Records,
		ledger: newLedgerStore(deps.State, deps.Records, id), seal: seal,
		log:   opts.Logger.With(slog.Group("source", "type", Type, "id", id)),
		clock: opts.Clock,
	}
	if !shared {
		h.log.Warn("no " + StateKeyEnv + ": ABDM transfers complete only on this process and not across a restart; set the same key on every replica")
	}
	h.gw = &gateway{cfg: cfg, p: h.p, secret: secret, hc: hc, clock: opts.Clock, source: id}
	h.ver = &verifier{url: cfg.JWKSURL, issuer: cfg.Issuer, hc: hc, clock: opts.Clock}
	return h, nil
}

// ID is the source's configured id.
func (h *HIU) ID() string { return h.id }

// APIVersion is the configured API version (v0.5 or v3).
func (h *HIU) APIVersion() string { return h.cfg.APIVersion }

// CallbackPaths lists the paths ServeHTTP answers, relative to /abdm.
func (h *HIU) CallbackPaths() []string { return CallbackPaths(h.cfg.APIVersion) }

// Close releases nothing: the HIU's state lives in the database.
func (h *HIU) Close() error { return nil }

func (h *HIU) now() time.Time { return h.clock.Now() }

func (h *HIU) fetchErr(op string, err error) error {
	e := &adapters.Error{Source: h.id, Op: op, Err: err}
	if errors.Is(err, ErrWaiting) {
		e.RetryAfter = h.cfg.PollInterval
	}
	return e
}

// Fetch starts or continues the consent flow for req.PatientID (the LOCAL
// Patient id: the ABDM source is addressed by the patient's ABHA address,
// read from that Patient). The HIPs' documents are filed into the store when
// they are pushed, not passed to sink: sink is never called. Fetch returns
//
//   - an error wrapping ErrWaiting (and adapters.ErrUnavailable, with
//     RetryAfter) while the patient has not decided or data is still due;
//   - an error wrapping ErrDenied once when the patient denied (or the
//     consent expired or was revoked) — the next Fetch asks again;
//   - an error wrapping ErrTransfer once when a transfer failed — the next
//     Fetch requests the data again;
//   - a Result (Method "abdm-push", Resources = resources filed) once every
//     granted artefact's data has arrived. The next Fetch requests fresh data
//     under the same artefacts while they are valid.
func (h *HIU) Fetch(ctx context.Context, req adapters.FetchRequest, sink adapters.Sink) (adapters.Result, error) {
	res := adapters.Result{Method: "abdm-push"}
	h.Sweep(ctx)
	pat, err := h.records.Get(ctx, "Patient", req.PatientID)
	if err != nil {
		return res, h.fetchErr("read patient", err)
	}
	if pat == nil {
		return res, h.fetchErr("read patient", adapters.ErrPatientNotFound)
	}
	abha := abhaOf(pat)
	if abha == "" {
		return res, h.fetchErr("read patient", fmt.Errorf("%w: %w", adapters.ErrPatientNotFound, ErrNoABHA))
	}

	type action struct {
		init    *ConsentInit
		fetches []string
		hireqs  []*artefact
	}
	var act action
	var outcome error
	err = h.ledger.update(ctx, func(l *ledger) error {
		act, outcome, res = action{}, nil, adapters.Result{Method: "abdm-push"}
		r := l.Requests[req.PatientID]
		if r != nil && r.ABHA != abha {
			r = nil // the patient's ABHA address changed: start over
		}
		start := r == nil
		if r != nil {
			switch r.Status {
			case StatusDenied, StatusExpired, StatusRevoked, statusError:
				if r.Reported {
					start = true
				} else {
					r.Reported = true
					outcome = fmt.Errorf("%w: consent request %s", ErrDenied, strings.ToLower(r.Status))
					if r.Error != "" {
						outcome = fmt.Errorf("%w: consent request refused by the gateway: %s", adapters.ErrRejected, r.Error)
					}
					return nil
				}
			case StatusRequested:
				if r.ConsentRequestID == "" && h.now().Sub(r.Created) > h.cfg.PollInterval {
					// on-init never came: send the same request again
					act.init = h.consentInit(r)
				}
				outcome = ErrWaiting
				return nil
			case StatusGranted:
				outcome = h.continueGranted(r, &res, func(id string) { act.fetches = append(act.fetches, id) }, func(a *artefact) { act.hireqs = append(act.hireqs, a) })
				return nil
			}
		}
		if start {
			r = &request{RequestID: uuid.NewString(), PatientID: req.PatientID, ABHA: abha, Status: StatusRequested, Created: h.now()}
			l.Requests[req.PatientID] = r
			act.init = h.consentInit(r)
			outcome = ErrWaiting
		}
		return nil
	})
	if err != nil {
		return res, h.fetchErr("consent state", err)
	}
	if act.init != nil {
		if err := h.gw.post(ctx, "consent request", h.p.consentInit, act.init.RequestID, act.init); err != nil {
			return res, err
		}
	}
	for _, id := range act.fetches {
		if err := h.fetchArtefact(ctx, id); err != nil {
			return res, err
		}
	}
	for _, a := range act.hireqs {
		if err := h.requestData(ctx, a.ID); err != nil {
			return res, err
		}
	}
	if outcome != nil {
		if errors.Is(outcome, ErrWaiting) {
			outcome = fmt.Errorf("%w (%w, %w)", ErrWaiting, adapters.ErrPending, adapters.ErrUnavailable)
		}
		return res, h.fetchErr("consent flow", outcome)
	}
	return res, nil
}

func liveArtefacts(r *request) int {
	n := 0
	for _, a := range r.Artefacts {
		if a.Status == StatusGranted {
			n++
		}
	}
	return n
}

// continueGranted decides what a granted request needs next.
func (h *HIU) continueGranted(r *request, res *adapters.Result, fetch func(string), hireq func(*artefact)) error {
	waiting, failed := false, ""
	if len(r.Artefacts) == 0 {
		return ErrWaiting
	}
	allReported := true
	for _, a := range r.Artefacts {
		if a.Status != StatusGranted {
			continue
		}
		if a.Consent == "" {
			fetch(a.ID)
			waiting = true
			continue
		}
		t := a.Tx
		switch {
		case t == nil:
			hireq(a)
			waiting = true
		case t.State == txRequested || t.State == txOpen:
			waiting = true
		case t.State == txFailed:
			if !t.Reported {
				failed = t.Problem
				t.Reported = true
			} else {
				hireq(a) // ask again
				waiting = true
			}
		case t.State == txDone:
			if t.Reported {
				continue
			}
			allReported = false
			res.Resources += t.Filed
		}
	}
	if failed != "" {
		return fmt.Errorf("%w: %s", ErrTransfer, failed)
	}
	if waiting {
		return ErrWaiting
	}
	if allReported {
		// everything was reported before: a new pull asks for fresh data
		for _, a := range r.Artefacts {
			if a.Status == StatusGranted && a.Consent != "" {
				hireq(a)
			}
		}
		return ErrWaiting
	}
	for _, a := range r.Artefacts {
		if a.Tx != nil && a.Tx.State == txDone {
			a.Tx.Reported = true
			for _, is := range []int{a.Tx.IssueCount} {
				if is > 0 {
					res.Issues = append(res.Issues, fhir.Issue{Severity: "warning", Code: "invalid",
						Diagnostics: fmt.Sprintf("%d validation issues in the documents from HIP %s (stored anyway)", is, a.HIPID)})
				}
			}
		}
	}
	return nil
}

func abhaOf(p *fhir.Resource) string {
	for _, id := range p.Root().Get("identifier").Elems() {
		if id.Get("system").String() == ABHASystem {
			return id.Get("value").String()
		}
	}
	return ""
}

func (h *HIU) consentInit(r *request) *ConsentInit {
	now := h.now()
	m := &ConsentInit{Envelope: Envelope{RequestID: r.RequestID, Timestamp: stamp(now)}}
	req := h.cfg.Requester
	m.Consent = ConsentRequest{
		Purpose:   Purpose{Text: purposeCodes[h.cfg.Purpose], Code: h.cfg.Purpose, RefURI: "http://terminology.hl7.org/ValueSet/v3-PurposeOfUse"},
		Patient:   ID{ID: r.ABHA},
		HIU:       ID{ID: h.cfg.HIUID},
		Requester: RequesterJSON{Name: req.Name},
		HITypes:   h.cfg.HITypes,
		Permission: Permission{
			AccessMode:  "VIEW",
			DateRange:   DateRange{From: stamp(now.AddDate(-h.cfg.DataYears, 0, 0)), To: stamp(now)},
			DataEraseAt: stamp(now.Add(h.cfg.ConsentValidity)),
			Frequency:   &Frequency{Unit: "HOUR", Value: 1, Repeats: 0},
		},
	}
	if req.Value != "" {
		m.Consent.Requester.Identifier = &RequesterIdentifier{Type: req.Type, Value: req.Value, System: req.System}
	}
	return m
}

// fetchArtefact sends consents/fetch for an artefact.
func (h *HIU) fetchArtefact(ctx context.Context, artefactID string) error {
	rid := uuid.NewString()
	err := h.ledger.update(ctx, func(l *ledger) error {
		if _, a := l.artefact(func(a *artefact) bool { return a.ID == artefactID }); a != nil {
			a.FetchRequestID = rid
		}
		return nil
	})
	if err != nil {
		return h.fetchErr("consent state", err)
	}
	m := &Fetch{Envelope: Envelope{RequestID: rid, Timestamp: stamp(h.now())}, ConsentID: artefactID}
	return h.gw.post(ctx, "fetch consent artefact", h.p.consentFetch, rid, m)
}

// requestData sends a health-information request for an artefact with
// fresh key material.
func (h *HIU) requestData(ctx context.Context, artefactID string) error {
	priv, err := fidelius.GenerateKey(nil)
	if err != nil {
		return err
	}
	nonce, err := fidelius.NewNonce()
	if err != nil {
		return err
	}
	rid := uuid.NewString()
	now := h.now()
	deadline := now.Add(h.cfg.PushWindow)
	var from, to string
	// the transfer record first: a push can only follow the request
	// below, and must find it on whichever replica it reaches
	err = h.updateTransfer(ctx, rid, func(*transfer) (*transfer, error) {
		return &transfer{Priv: priv.Bytes(), Nonce: nonce, Deadline: deadline, Artefact: artefactID, Pages: map[int]page{}}, nil
	})
	if err != nil {
		priv.Destroy()
		return h.fetchErr("transfer state", err)
	}
	var previous string
	err = h.ledger.update(ctx, func(l *ledger) error {
		_, a := l.artefact(func(a *artefact) bool { return a.ID == artefactID })
		if a == nil || a.Status != StatusGranted {
			return fmt.Errorf("artefact %s is not granted", artefactID)
		}
		previous = ""
		if a.Tx != nil {
			previous = a.Tx.HIRequestID // a previous attempt's record
		}
		a.Tx = &txState{HIRequestID: rid, State: txRequested, Deadline: deadline}
		from, to = a.From, a.To
		return h.updateTransfer(ctx, rid, func(t *transfer) (*transfer, error) {
			if t != nil {
				t.HIP = a.HIPID
			}
			return t, nil
		})
	})
	if err != nil {
		priv.Destroy()
		_ = h.dropTransfer(ctx, rid)
		return h.fetchErr("consent state", err)
	}
	if previous != "" && previous != rid {
		_ = h.dropTransfer(ctx, previous)
	}
	m := &HIRequest{Envelope: Envelope{RequestID: rid, Timestamp: stamp(now)}}
	m.HIRequest.Consent = ID{ID: artefactID}
	m.HIRequest.DateRange = DateRange{From: from, To: to}
	m.HIRequest.DataPushURL = h.cfg.CallbackBaseURL + h.p.transfer
	m.HIRequest.KeyMaterial = KeyMaterial{CryptoAlg: "ECDH", Curve: "Curve25519",
		DHPublicKey: DHPublicKey{Expiry: stamp(deadline), Parameters: "Curve25519/32byte random key", KeyValue: priv.PublicKeyBase64()},
		Nonce:       base64.StdEncoding.EncodeToString(nonce)}
	return h.gw.post(ctx, "health-information request", h.p.hiRequest, rid, m)
}

// Sweep closes transactions whose push window has passed: their records
// (key and pages received) are dropped, the transaction is marked failed
// and the gateway is told. A transaction whose every page arrived is left
// to the replica filing it, unless filingGrace has passed since its
// window (that replica died: it is failed like the others, and the next
// Fetch asks again). Fetch calls it; a server may also call it
// periodically. Any replica may sweep: each record is closed once, under
// its lock.
func (h *HIU) Sweep(ctx context.Context) {
	now := h.now()
	type closed struct {
		hiReq, txID, artefact, hip, problem string
		ccs                                 []string
	}
	var done []closed
	keys, err := h.state.Keys(ctx, h.transferPrefix())
	if err != nil {
		h.log.Warn("sweep: list transfers", "err", err)
		return
	}
	for _, key := range keys {
		hiReq := strings.TrimPrefix(key, h.transferPrefix())
		var c *closed
		err := h.updateTransfer(ctx, hiReq, func(t *transfer) (*transfer, error) {
			c = nil
			if t == nil {
				return nil, nil
			}
			switch {
			case t.Filing && now.After(t.Deadline.Add(filingGrace)):
				c = &closed{hiReq, t.TxID, t.Artefact, t.HIP, "filing the transfer was interrupted", nil}
			case !t.Filing && now.After(t.Deadline):
				problem := "push window closed before any page arrived"
				if t.PageCount > 0 {
					problem = fmt.Sprintf("push window closed with %d of %d pages received", len(t.Pages), t.PageCount)
				}
				c = &closed{hiReq, t.TxID, t.Artefact, t.HIP, problem, nil}
				for _, p := range t.Pages {
					for _, e := range p.Entries {
						c.ccs = append(c.ccs, e.CareContext)
					}
				}
			default:
				return t, nil
			}
			return nil, nil
		})
		if errors.Is(err, errUnsealable) {
			// sealed under another state key: nobody here can finish it
			h.log.Warn("sweep: dropping a transfer sealed under another state key", "transfer", hiReq)
			_ = h.dropTransfer(ctx, hiReq)
			continue
		}
		if err != nil {
			h.log.Warn("sweep: close transfer", "err", err)
			continue
		}
		if c != nil {
			done = append(done, *c)
		}
	}
	live := map[string]bool{}
	if keys, err := h.state.Keys(ctx, h.transferPrefix()); err == nil {
		for _, k := range keys {
			live[strings.TrimPrefix(k, h.transferPrefix())] = true
		}
	} else {
		h.log.Warn("sweep: list transfers", "err", err)
		return
	}
	err = h.ledger.update(ctx, func(l *ledger) error {
		for _, c := range done {
			if _, a := l.artefact(func(a *artefact) bool { return a.ID == c.artefact }); a != nil && a.Tx != nil && a.Tx.HIRequestID == c.hiReq && a.Tx.State != txDone {
				a.Tx.State, a.Tx.Problem = txFailed, c.problem
			}
		}
		// transactions whose record is gone (dropped by a refused page
		// elsewhere, or kept under another state key)
		for _, r := range l.Requests {
			for _, a := range r.Artefacts {
				if t := a.Tx; t != nil && (t.State == txRequested || t.State == txOpen) && !live[t.HIRequestID] {
					t.State, t.Problem = txFailed, "key material lost or window closed"
				}
			}
		}
		return nil
	})
	if err != nil {
		h.log.Warn("sweep: save state", "err", err)
	}
	for _, c := range done {
		if c.txID == "" {
			continue // no transaction was opened: nothing to tell
		}
		h.notifyTransfer(ctx, c.artefact, c.txID, c.hip, false, c.ccs, c.problem)
	}
}

// notifyTransfer sends health-information/notify.
func (h *HIU) notifyTransfer(ctx context.Context, artefactID, txID, hipID string, ok bool, careContexts []string, problem string) {
	rid := uuid.NewString()
	m := &HINotify{Envelope: Envelope{RequestID: rid, Timestamp: stamp(h.now())}}
	n := &m.Notification
	n.ConsentID, n.TransactionID, n.DoneAt = artefactID, txID, stamp(h.now())
	n.Notifier = ID{Type: "HIU", ID: h.cfg.HIUID}
	n.StatusNotification.HIPID = hipID
	n.StatusNotification.SessionStatus = "FAILED"
	hi := "ERRORED"
	if ok {
		n.StatusNotification.SessionStatus = "TRANSFERRED"
		if h.cfg.APIVersion == V3 {
			n.StatusNotification.SessionStatus = "RECEIVED"
		}
		hi = "OK"
	}
	n.StatusNotification.StatusResponses = []StatusResponse{}
	for _, cc := range careContexts {
		n.StatusNotification.StatusResponses = append(n.StatusNotification.StatusResponses, StatusResponse{CareContextReference: cc, HIStatus: hi, Description: problem})
	}
	if err := h.gw.post(ctx, "transfer notification", h.p.hiNotify, rid, m); err != nil {
		h.log.Warn("transfer notification failed", "err", err)
	}
}

// ServeHTTP answers the gateway's callbacks and the HIPs' pushes. The path
// may carry the /abdm mount prefix or not.
func (h *HIU) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/abdm")
	if r.Method != http.MethodPost {
		writeErr(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	if err := h.ver.verify(r); err != nil {
		h.log.Warn("callback refused", "path", path, "err", err)
		writeErr(w, http.StatusUnauthorized, "the request is not signed by the ABDM gateway")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	rid := r.Header.Get("REQUEST-ID")
	// what a callback writes (consent artefacts, pushed records) is
	// recorded on the audit trail, in its transactions, as the gateway's
	ctx := audit.WithActivity(r.Context(), &audit.Job{Event: audit.Event{Interaction: "operation",
		Operation: "abdm" + strings.ReplaceAll(strings.TrimPrefix(path, "/"+h.cfg.APIVersion), "/", "-"), Origin: "ABDM gateway"}})
	r = r.WithContext(ctx)
	var status int
	var msg string
	switch path {
	case h.p.onInit:
		status, msg = h.onInit(r.Context(), rid, body)
	case h.p.notify:
		status, msg = h.onNotify(r.Context(), rid, body)
	case h.p.onFetch:
		status, msg = h.onFetch(r.Context(), rid, body)
	case h.p.onRequest:
		status, msg = h.onRequest(r.Context(), rid, body)
	case h.p.transfer:
		status, msg = h.onTransfer(r.Context(), body)
	default:
		status, msg = http.StatusNotFound, "no ABDM callback at this path"
	}
	if status >= 400 {
		writeErr(w, status, msg)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": status, "message": msg}})
	w.Write(b)
}

// decodeCallback parses a callback body and resolves its request id
// (body for v0.5, REQUEST-ID header for v3).
func decodeCallback(body []byte, headerID string, out any, env func() *Envelope) (string, error) {
	if err := json.Unmarshal(body, out); err != nil {
		return "", err
	}
	id := env().RequestID
	if id == "" {
		id = headerID
	}
	if id == "" {
		return "", errors.New("no request id")
	}
	return id, nil
}

// once runs fn on the ledger unless the callback id was handled before; it
// reports whether fn ran.
func (h *HIU) once(ctx context.Context, id string, fn func(l *ledger) error) (bool, error) {
	ran := false
	err := h.ledger.update(ctx, func(l *ledger) error {
		ran = false
		if l.seen(id) {
			return nil
		}
		if err := fn(l); err != nil {
			return err
		}
		l.remember(id)
		ran = true
		return nil
	})
	return ran, err
}

func (h *HIU) onInit(ctx context.Context, hid string, body []byte) (int, string) {
	var m OnInit
	id, err := decodeCallback(body, hid, &m, func() *Envelope { return &m.Envelope })
	if err != nil {
		return http.StatusBadRequest, "malformed on-init: " + err.Error()
	}
	_, err = h.once(ctx, id, func(l *ledger) error {
		r := l.byRequestID(m.answers())
		if r == nil {
			return errUnknown
		}
		switch {
		case m.Error != nil:
			r.Status, r.Error = statusError, m.Error.Message
		case m.ConsentRequest != nil && m.ConsentRequest.ID != "":
			r.ConsentRequestID = m.ConsentRequest.ID
		default:
			return errMalformed
		}
		return nil
	})
	return callbackStatus(err)
}

var (
	errUnknown   = errors.New("refers to no request of this HIU")
	errMalformed = errors.New("malformed callback")
)

func callbackStatus(err error) (int, string) {
	switch {
	case err == nil:
		return http.StatusAccepted, ""
	case errors.Is(err, errUnknown):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, errMalformed):
		return http.StatusBadRequest, err.Error()
	}
	return http.StatusInternalServerError, "could not record the callback"
}

func (h *HIU) onNotify(ctx context.Context, hid string, body []byte) (int, string) {
	var m Notify
	id, err := decodeCallback(body, hid, &m, func() *Envelope { return &m.Envelope })
	if err != nil {
		return http.StatusBadRequest, "malformed notify: " + err.Error()
	}
	n := m.Notification
	var fetch []string
	var acks []Ack
	ran, err := h.once(ctx, id, func(l *ledger) error {
		fetch, acks = nil, nil
		r := l.byConsentRequest(n.ConsentRequestID)
		if r == nil {
			// a revocation may name only artefacts
			for _, ca := range n.ConsentArtefacts {
				if rr, _ := l.artefact(func(a *artefact) bool { return a.ID == ca.ID }); rr != nil {
					r = rr
				}
			}
		}
		if r == nil {
			return errUnknown
		}
		switch n.Status {
		case StatusGranted:
			r.Status = StatusGranted
			r.Reported = false
			if r.Artefacts == nil {
				r.Artefacts = map[string]*artefact{}
			}
			for _, ca := range n.ConsentArtefacts {
				if _, ok := r.Artefacts[ca.ID]; !ok {
					r.Artefacts[ca.ID] = &artefact{ID: ca.ID, Status: StatusGranted}
					fetch = append(fetch, ca.ID)
				}
			}
		case StatusDenied:
			r.Status, r.Reported = StatusDenied, false
		case StatusRevoked, StatusExpired:
			ids := n.ConsentArtefacts
			if len(ids) == 0 {
				for aid := range r.Artefacts {
					ids = append(ids, ID{ID: aid})
				}
			}
			for _, ca := range ids {
				acks = append(acks, Ack{Status: "OK", ConsentID: ca.ID})
				a := r.Artefacts[ca.ID]
				if a == nil {
					continue
				}
				if err := h.withdraw(ctx, l, a, n.Status); err != nil {
					return err
				}
			}
			if liveArtefacts(r) == 0 {
				r.Status, r.Reported = n.Status, false
			}
		default:
			return errMalformed
		}
		return nil
	})
	if err != nil {
		return callbackStatus(err)
	}
	if !ran {
		return http.StatusAccepted, ""
	}
	if len(acks) > 0 {
		ack := &OnNotify{Envelope: Envelope{RequestID: uuid.NewString(), Timestamp: stamp(h.now())}, Acknowledgement: acks}
		if h.cfg.APIVersion == V3 {
			ack.Response = &RespRef{RequestID: id}
		} else {
			ack.Resp = &RespRef{RequestID: id}
		}
		if err := h.gw.post(ctx, "acknowledge notify", h.p.onNotify, ack.RequestID, ack); err != nil {
			h.log.Warn("on-notify failed", "err", err)
		}
	}
	for _, aid := range fetch {
		if err := h.fetchArtefact(ctx, aid); err != nil {
			h.log.Warn("consent artefact fetch failed; the next Fetch retries", "err", err)
		}
	}
	return http.StatusAccepted, ""
}

func (h *HIU) onFetch(ctx context.Context, hid string, body []byte) (int, string) {
	var m OnFetch
	id, err := decodeCallback(body, hid, &m, func() *Envelope { return &m.Envelope })
	if err != nil {
		return http.StatusBadRequest, "malformed on-fetch: " + err.Error()
	}
	var request string
	ran, err := h.once(ctx, id, func(l *ledger) error {
		request = ""
		r, a := l.artefact(func(a *artefact) bool { return a.FetchRequestID == m.answers() && a.FetchRequestID != "" })
		if a == nil {
			return errUnknown
		}
		if m.Error != nil || m.Consent == nil {
			a.Status = statusError
			return nil
		}
		d := m.Consent.ConsentDetail
		if d.ConsentID != a.ID || d.Patient.ID != r.ABHA || d.HIU.ID != h.cfg.HIUID {
			return fmt.Errorf("%w: the artefact does not match the request (consent id, patient or HIU)", errMalformed)
		}
		a.HIPID = d.HIP.ID
		a.From, a.To = d.Permission.DateRange.From, d.Permission.DateRange.To
		if t, err := time.Parse(time.RFC3339, d.Permission.DataEraseAt); err == nil {
			a.EraseAt = t
		}
		status := m.Consent.Status
		if status == "" {
			status = StatusGranted
		}
		cons, err := consentResource(h.id, r.PatientID, h.cfg.HIUID, r.ConsentRequestID, status, d)
		if err != nil {
			return fmt.Errorf("%w: %w", errMalformed, err)
		}
		if err := h.records.Put(ctx, cons); err != nil {
			return err
		}
		a.Consent = cons.ID
		if status == StatusGranted {
			request = a.ID
		} else {
			a.Status = status
		}
		return nil
	})
	if err != nil {
		return callbackStatus(err)
	}
	if ran && request != "" {
		if err := h.requestData(ctx, request); err != nil {
			h.log.Warn("health-information request failed; the next Fetch retries", "err", err)
		}
	}
	return http.StatusAccepted, ""
}

func (h *HIU) onRequest(ctx context.Context, hid string, body []byte) (int, string) {
	var m OnRequest
	id, err := decodeCallback(body, hid, &m, func() *Envelope { return &m.Envelope })
	if err != nil {
		return http.StatusBadRequest, "malformed on-request: " + err.Error()
	}
	var drop string
	_, err = h.once(ctx, id, func(l *ledger) error {
		drop = ""
		_, a := l.artefact(func(a *artefact) bool { return a.Tx != nil && a.Tx.HIRequestID == m.answers() && m.answers() != "" })
		if a == nil {
			return errUnknown
		}
		if m.Error != nil || m.HIRequest == nil || m.HIRequest.TransactionID == "" {
			a.Tx.State, a.Tx.Problem = txFailed, "the gateway refused the health-information request"
			if m.Error != nil {
				a.Tx.Problem += ": " + m.Error.Message
			}
			drop = a.Tx.HIRequestID
			return nil
		}
		a.Tx.TransactionID = m.HIRequest.TransactionID
		a.Tx.State = txOpen
		return h.updateTransfer(ctx, a.Tx.HIRequestID, func(t *transfer) (*transfer, error) {
			if t != nil {
				t.TxID = m.HIRequest.TransactionID
			}
			return t, nil
		})
	})
	if err == nil && drop != "" {
		err = h.dropTransfer(ctx, drop)
	}
	return callbackStatus(err)
}

// md5Matches accepts the checksum as hex or base64 (HIPs differ).
func md5Matches(sum string, plain []byte) bool {
	d := md5.Sum(plain)
	return strings.EqualFold(sum, hex.EncodeToString(d[:])) || sum == base64.StdEncoding.EncodeToString(d[:])
}

// onTransfer receives one page of a push. A page is refused (4xx, nothing
// stored) when its transaction is unknown, closed or already complete, when
// its page numbers are inconsistent or repeated, or when any entry fails to
// decrypt, fails its checksum or is not a FHIR document Bundle; a refused
// page fails the whole transaction (the gateway is told). Pages are kept,
// still encrypted for the transaction's key, in its transfer record, so
// that each may reach any replica; when the last arrives, everything is
// filed.
func (h *HIU) onTransfer(ctx context.Context, body []byte) (int, string) {
	var m DataNotification
	if err := json.Unmarshal(body, &m); err != nil || m.TransactionID == "" {
		return http.StatusBadRequest, "malformed data push"
	}
	l, err := h.ledger.load(ctx)
	if err != nil {
		return http.StatusInternalServerError, "could not read the HIU state"
	}
	_, a := l.artefact(func(a *artefact) bool { return a.Tx != nil && a.Tx.TransactionID == m.TransactionID })
	if a == nil {
		return http.StatusNotFound, "unknown transaction"
	}
	if a.Tx.State != txOpen {
		return http.StatusConflict, "transaction " + a.Tx.State + ": no further pages are accepted"
	}
	hiReq := a.Tx.HIRequestID
	pg := page{PeerKey: m.KeyMaterial.DHPublicKey.KeyValue, PeerNonce: m.KeyMaterial.Nonce}
	var ccs []string
	for _, e := range m.Entries {
		pg.Entries = append(pg.Entries, pageEntry{Content: e.Content, Checksum: e.Checksum, CareContext: e.CareContextReference})
		ccs = append(ccs, e.CareContextReference)
	}
	var (
		status   int
		problem  string
		failed   bool
		complete *transfer
	)
	err = h.updateTransfer(ctx, hiReq, func(t *transfer) (*transfer, error) {
		status, problem, failed, complete = 0, "", false, nil
		fail := func(st int, p string) (*transfer, error) {
			status, problem, failed = st, p, true
			return nil, nil // the record goes: the transaction is over
		}
		switch {
		case t == nil:
			status, problem = http.StatusConflict, "transaction closed: no further pages are accepted"
			return nil, nil
		case t.Filing:
			status, problem = http.StatusConflict, "transaction complete: no further pages are accepted"
			return t, nil
		case h.now().After(t.Deadline):
			return fail(http.StatusConflict, "the push window has closed")
		case m.PageCount < 1 || m.PageNumber < 1 || m.PageNumber > m.PageCount || (t.PageCount != 0 && t.PageCount != m.PageCount):
			return fail(http.StatusBadRequest, fmt.Sprintf("inconsistent page %d of %d", m.PageNumber, m.PageCount))
		}
		if _, dup := t.Pages[m.PageNumber]; dup {
			return fail(http.StatusConflict, fmt.Sprintf("page %d sent twice", m.PageNumber))
		}
		if _, err := t.decrypt(pg); err != nil {
			return fail(http.StatusBadRequest, err.Error())
		}
		t.Pages[m.PageNumber] = pg
		t.PageCount = m.PageCount
		if len(t.Pages) == t.PageCount {
			// complete: close the transaction before filing, so a replay is refused
			t.Filing = true
			complete = t
		}
		return t, nil
	})
	if errors.Is(err, errUnsealable) {
		// kept under another state key: this transaction cannot complete
		_ = h.dropTransfer(ctx, hiReq)
		status, problem, failed, err = http.StatusConflict, "the transaction's key is not available (state key mismatch)", true, nil
	}
	if err != nil {
		h.log.Warn("data push: transfer state", "err", err)
		return http.StatusInternalServerError, "could not record the page"
	}
	switch {
	case failed:
		aid, hip := a.ID, a.HIPID
		if err := h.ledger.update(ctx, func(l *ledger) error {
			if _, a := l.artefact(func(a *artefact) bool { return a.ID == aid }); a != nil && a.Tx != nil && a.Tx.HIRequestID == hiReq {
				a.Tx.State, a.Tx.Problem = txFailed, problem
			}
			return nil
		}); err != nil {
			h.log.Warn("record failed transfer", "err", err)
		}
		h.notifyTransfer(ctx, aid, m.TransactionID, hip, false, ccs, problem)
		return status, problem
	case status != 0:
		return status, problem
	case complete == nil:
		return http.StatusAccepted, ""
	}
	var all []doc
	for p := 1; p <= complete.PageCount; p++ {
		docs, err := complete.decrypt(complete.Pages[p])
		if err != nil { // verified on arrival: the record was tampered with
			return http.StatusInternalServerError, "a stored page no longer decrypts"
		}
		all = append(all, docs...)
	}
	complete.HIP = cmp.Or(complete.HIP, a.HIPID)
	return h.file(ctx, m.TransactionID, hiReq, complete, all)
}
