// Package abdmsim simulates, for tests, the parts of ABDM an HIU talks to:
// the HIE-CM gateway (sessions, JWKS, consent requests, artefacts,
// health-information requests, notifications) and one HIP that pushes its
// care contexts' documents encrypted with Fidelius. It speaks the documented
// v0.5 and v3 shapes (STANDARDS.md §9).
//
// It is deterministic: the simulator answers every call with 202 and queues
// what the real gateway would do next (callbacks, pushes); Run delivers the
// queue until it is empty. The patient's decision is the test's: Grant,
// Deny, Revoke, Expire. Faults of the HIP's push are set with PushFault.
package abdmsim

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/adapters/abdm/fidelius"
)

// Fault is something wrong with the HIP's push.
type Fault int

// Push faults.
const (
	NoFault     Fault = iota
	BadChecksum       // the checksum of the first entry does not match
	WrongKey          // encrypted for another key than the HIU's
	DropPage          // the last page is never sent
	Replay            // after a complete push, page 1 is sent again
)

// CareContext is one document the HIP holds.
type CareContext struct {
	Reference string
	Bundle    []byte
}

// Sim is a running simulator.
type Sim struct {
	t       testing.TB
	Version string
	HIPID   string
	CMID    string
	// HIUBase is the HIU's callback base (…/abdm); set before Run.
	HIUBase string
	// HIU is where callbacks are delivered; nil means HTTP to HIUBase.
	HIU http.Handler
	// Now is the clock of the tokens the simulator signs.
	Now func() time.Time
	// PageSize is the entries per pushed page (default 2).
	PageSize int

	srv    *httptest.Server
	key    *rsa.PrivateKey
	forged *rsa.PrivateKey

	mu           sync.Mutex
	outbox       []func()
	requests     map[string]*consentReq // by consent request id
	artefacts    map[string]*consentReq // by artefact id
	careContexts []CareContext
	fault        Fault
	// Received records what the HIU sent, by path.
	Received map[string][][]byte
	// Responses records the HIU's answers to deliveries: "path status".
	Responses []string
}

type consentReq struct {
	id, abha, status string
	artefact         string
	consent          abdm.ConsentRequest
}

// New starts a simulator speaking version (abdm.V05 or abdm.V3).
func New(t testing.TB, version string, careContexts []CareContext) *Sim {
	s := &Sim{t: t, Version: version, HIPID: "SIM-HIP-1", CMID: "sbx", Now: time.Now, PageSize: 2,
		requests: map[string]*consentReq{}, artefacts: map[string]*consentReq{}, careContexts: careContexts,
		Received: map[string][][]byte{}}
	var err error
	if s.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if s.forged, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the gateway base URL.
func (s *Sim) URL() string { return s.srv.URL }

// JWKSURL is where the simulator publishes its signing key.
func (s *Sim) JWKSURL() string {
	if s.Version == abdm.V3 {
		return s.srv.URL + "/api/hiecm/gateway/v3/certs"
	}
	return s.srv.URL + "/v0.5/certs"
}

// PushFault sets the fault of the next pushes.
func (s *Sim) PushFault(f Fault) { s.mu.Lock(); s.fault = f; s.mu.Unlock() }

// Token returns a gateway-signed JWT valid until exp; forged signs it with
// a key the JWKS does not hold (same kid).
func (s *Sim) Token(exp time.Time, forged bool) string {
	key := s.key
	if forged {
		key = s.forged
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": s.srv.URL, "sub": "gateway", "clientId": "gateway", "iat": s.Now().Add(-time.Minute).Unix(), "exp": exp.Unix(),
	})
	tok.Header["kid"] = "sim-1"
	str, err := tok.SignedString(key)
	if err != nil {
		s.t.Fatal(err)
	}
	return str
}

func (s *Sim) jwks() []byte {
	n := base64.RawURLEncoding.EncodeToString(s.key.N.Bytes())
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(s.key.E)).Bytes())
	b, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{"kty": "RSA", "kid": "sim-1", "use": "sig", "alg": "RS256", "n": n, "e": e}}})
	return b
}

func (s *Sim) paths() (init, onNotify, fetch, hireq, notify, sessions, certs string) {
	if s.Version == abdm.V3 {
		return "/api/hiecm/consent/v3/request/init", "/api/hiecm/consent/v3/request/hiu/on-notify", "/api/hiecm/consent/v3/fetch",
			"/api/hiecm/data-flow/v3/health-information/request", "/api/hiecm/data-flow/v3/health-information/notify",
			"/api/hiecm/gateway/v3/sessions", "/api/hiecm/gateway/v3/certs"
	}
	return "/v0.5/consent-requests/init", "/v0.5/consents/hiu/on-notify", "/v0.5/consents/fetch",
		"/v0.5/health-information/cm/request", "/v0.5/health-information/notify", "/v0.5/sessions", "/v0.5/certs"
}

func (s *Sim) callbackPath(kind string) string {
	ps := abdm.CallbackPaths(s.Version) // onInit, notify, onFetch, onRequest, transfer
	switch kind {
	case "on-init":
		return ps[0]
	case "notify":
		return ps[1]
	case "on-fetch":
		return ps[2]
	case "on-request":
		return ps[3]
	}
	return ps[4]
}

func (s *Sim) serve(w http.ResponseWriter, r *http.Request) {
	initP, onNotifyP, fetchP, hireqP, notifyP, sessionsP, certsP := s.paths()
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == certsP {
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.jwks())
		return
	}
	if r.URL.Path == sessionsP {
		var c map[string]string
		json.Unmarshal(body, &c)
		if c["clientId"] == "" || c["clientSecret"] != "sim-secret" || s.Version == abdm.V3 && c["grantType"] != "client_credentials" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"accessToken": "sim-session-token", "expiresIn": 1200, "tokenType": "bearer"})
		return
	}
	if r.Header.Get("Authorization") != "Bearer sim-session-token" || r.Header.Get("X-CM-ID") != s.CMID {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rid := r.Header.Get("REQUEST-ID")
	var env abdm.Envelope
	json.Unmarshal(body, &env)
	if s.Version == abdm.V05 {
		rid = env.RequestID
		if env.Timestamp == "" {
			rid = ""
		}
	} else if env.RequestID != "" || r.Header.Get("TIMESTAMP") == "" {
		rid = "" // v3 keeps them out of the body
	}
	if rid == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.Received[r.URL.Path] = append(s.Received[r.URL.Path], body)
	s.mu.Unlock()
	switch r.URL.Path {
	case initP:
		var m abdm.ConsentInit
		json.Unmarshal(body, &m)
		cr := &consentReq{id: uuid.NewString(), abha: m.Consent.Patient.ID, status: abdm.StatusRequested, consent: m.Consent}
		s.mu.Lock()
		s.requests[cr.id] = cr
		s.mu.Unlock()
		s.queue("on-init", map[string]any{"consentRequest": map[string]string{"id": cr.id}}, rid)
	case fetchP:
		var m abdm.Fetch
		json.Unmarshal(body, &m)
		s.mu.Lock()
		cr := s.artefacts[m.ConsentID]
		s.mu.Unlock()
		if cr == nil {
			s.queue("on-fetch", map[string]any{"error": map[string]any{"code": 404, "message": "no such artefact"}}, rid)
			break
		}
		s.queue("on-fetch", map[string]any{"consent": map[string]any{"status": cr.status, "signature": "c2ln", "consentDetail": s.detail(cr)}}, rid)
	case hireqP:
		var m abdm.HIRequest
		json.Unmarshal(body, &m)
		s.mu.Lock()
		cr := s.artefacts[m.HIRequest.Consent.ID]
		s.mu.Unlock()
		if cr == nil || cr.status != abdm.StatusGranted {
			s.queue("on-request", map[string]any{"error": map[string]any{"code": 400, "message": "consent not granted"}}, rid)
			break
		}
		txn := uuid.NewString()
		s.queue("on-request", map[string]any{"hiRequest": map[string]string{"transactionId": txn, "sessionStatus": "ACKNOWLEDGED"}}, rid)
		s.queuePush(txn, m.HIRequest.DataPushURL, m.HIRequest.KeyMaterial)
	case onNotifyP, notifyP:
		// recorded above
	default:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sim) detail(cr *consentReq) abdm.ConsentDetail {
	c := cr.consent
	var ccs []abdm.CareContext
	for _, cc := range s.careContexts {
		ccs = append(ccs, abdm.CareContext{PatientReference: cr.abha, CareContextReference: cc.Reference})
	}
	return abdm.ConsentDetail{SchemaVersion: "v1", ConsentID: cr.artefact, CreatedAt: stamp(s.Now()), Patient: c.Patient,
		CareContexts: ccs, Purpose: c.Purpose, HIP: abdm.ID{ID: s.HIPID}, HIU: c.HIU, ConsentManager: abdm.ID{ID: s.CMID},
		Requester: c.Requester, HITypes: c.HITypes, Permission: c.Permission}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// queue schedules a callback answering request rid.
func (s *Sim) queue(kind string, body map[string]any, rid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outbox = append(s.outbox, func() { s.Deliver(kind, body, rid, s.Token(s.Now().Add(5*time.Minute), false)) })
}

// Deliver posts one callback now, with the given token. rid, when set, is
// the request answered (resp.requestId / response.requestId). It returns
// the HIU's status.
func (s *Sim) Deliver(kind string, body map[string]any, rid, token string) int {
	own := uuid.NewString()
	return s.DeliverWithID(kind, body, rid, own, token)
}

// DeliverWithID is Deliver with the callback's own request id fixed (to
// test idempotency).
func (s *Sim) DeliverWithID(kind string, body map[string]any, rid, own, token string) int {
	b := map[string]any{}
	for k, v := range body {
		b[k] = v
	}
	if s.Version == abdm.V05 {
		b["requestId"], b["timestamp"] = own, stamp(s.Now())
		if rid != "" {
			b["resp"] = map[string]string{"requestId": rid}
		}
	} else if rid != "" {
		b["response"] = map[string]string{"requestId": rid}
	}
	raw, _ := json.Marshal(b)
	return s.post(s.HIUBase+s.callbackPath(kind), raw, own, token)
}

func (s *Sim) post(url string, raw []byte, own, token string) int {
	req := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-HIU-ID", "fhirgate-hiu")
	if s.Version == abdm.V3 {
		req.Header.Set("REQUEST-ID", own)
		req.Header.Set("TIMESTAMP", stamp(s.Now()))
	}
	var status int
	if s.HIU != nil {
		rec := httptest.NewRecorder()
		s.HIU.ServeHTTP(rec, req)
		status = rec.Code
	} else {
		hreq, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
		hreq.Header = req.Header
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			s.t.Errorf("deliver %s: %v", url, err)
			return 0
		}
		resp.Body.Close()
		status = resp.StatusCode
	}
	s.mu.Lock()
	s.Responses = append(s.Responses, fmt.Sprintf("%s %d", strings.TrimPrefix(url, s.HIUBase), status))
	s.mu.Unlock()
	return status
}

// Run delivers queued callbacks and pushes until none is left.
func (s *Sim) Run() {
	for {
		s.mu.Lock()
		if len(s.outbox) == 0 {
			s.mu.Unlock()
			return
		}
		next := s.outbox[0]
		s.outbox = s.outbox[1:]
		s.mu.Unlock()
		next()
	}
}

// LastRequest is the id of the newest consent request, "" when none.
func (s *Sim) LastRequest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last string
	for id := range s.requests {
		last = id // single-request tests; order does not matter then
	}
	return last
}

// Requests counts the consent requests received.
func (s *Sim) Requests() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.requests) }

// Decide records the patient's decision on a consent request and queues the
// notify: GRANTED creates one artefact (one HIP).
func (s *Sim) Decide(consentRequestID, status string) (artefactID string) {
	s.mu.Lock()
	cr := s.requests[consentRequestID]
	if cr == nil {
		s.mu.Unlock()
		s.t.Fatalf("abdmsim: no consent request %s", consentRequestID)
	}
	cr.status = status
	var arts []map[string]string
	if status == abdm.StatusGranted && cr.artefact == "" {
		cr.artefact = uuid.NewString()
		s.artefacts[cr.artefact] = cr
	}
	if cr.artefact != "" && status != abdm.StatusDenied {
		arts = append(arts, map[string]string{"id": cr.artefact})
	}
	artefactID = cr.artefact
	s.mu.Unlock()
	n := map[string]any{"consentRequestId": consentRequestID, "status": status, "consentArtefacts": arts}
	if arts == nil {
		n["consentArtefacts"] = []any{}
	}
	s.queue("notify", map[string]any{"notification": n}, "")
	return artefactID
}

// queuePush schedules the HIP's push of every care context.
func (s *Sim) queuePush(txn, url string, km abdm.KeyMaterial) {
	s.mu.Lock()
	fault := s.fault
	ccs := s.careContexts
	size := s.PageSize
	s.mu.Unlock()
	hiuPub, err := base64.StdEncoding.DecodeString(km.DHPublicKey.KeyValue)
	if err != nil {
		s.t.Errorf("abdmsim: HIU key: %v", err)
		return
	}
	hiuNonce, _ := base64.StdEncoding.DecodeString(km.Nonce)
	hip, _ := fidelius.GenerateKey(nil)
	nonce, _ := fidelius.NewNonce()
	encryptFor := hiuPub
	if fault == WrongKey {
		other, _ := fidelius.GenerateKey(nil)
		encryptFor = other.PublicKey()
	}
	var entries []abdm.Entry
	for i, cc := range ccs {
		ct, err := fidelius.Encrypt(hip, encryptFor, nonce, hiuNonce, cc.Bundle)
		if err != nil {
			s.t.Errorf("abdmsim: encrypt: %v", err)
			return
		}
		sum := md5.Sum(cc.Bundle)
		if fault == BadChecksum && i == 0 {
			sum[0] ^= 1
		}
		entries = append(entries, abdm.Entry{Content: base64.StdEncoding.EncodeToString(ct), Media: "application/fhir+json",
			Checksum: hex.EncodeToString(sum[:]), CareContextReference: cc.Reference})
	}
	pages := (len(entries) + size - 1) / size
	hipKM := abdm.KeyMaterial{CryptoAlg: "ECDH", Curve: "Curve25519",
		DHPublicKey: abdm.DHPublicKey{Expiry: stamp(s.Now().Add(time.Hour)), Parameters: "Curve25519/32byte random key", KeyValue: hip.PublicKeyBase64()},
		Nonce:       base64.StdEncoding.EncodeToString(nonce)}
	page := func(p int) []byte {
		lo, hi := (p-1)*size, min(p*size, len(entries))
		b, _ := json.Marshal(abdm.DataNotification{PageNumber: p, PageCount: pages, TransactionID: txn, Entries: entries[lo:hi], KeyMaterial: hipKM})
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := 1; p <= pages; p++ {
		if fault == DropPage && p == pages {
			continue
		}
		body := page(p)
		s.outbox = append(s.outbox, func() { s.post(url, body, "", s.Token(s.Now().Add(5*time.Minute), false)) })
	}
	if fault == Replay {
		body := page(1)
		s.outbox = append(s.outbox, func() { s.post(url, body, "", s.Token(s.Now().Add(5*time.Minute), false)) })
	}
}
