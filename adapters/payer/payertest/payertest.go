// Package payertest is a fake insurer for tests: a FHIR endpoint that
// answers CoverageEligibilityRequest/$submit and Claim/$submit as a
// payer's would, in the mode the test sets, and keeps what it was sent.
package payertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Modes of the fake insurer.
const (
	// Covered: in force, the consultation covered in network, a 25.00 EUR
	// co-payment, 100.00 EUR left of a 150.00 EUR deductible, no
	// pre-authorisation.
	Covered = "covered"
	// NotCovered: in force, the consultation excluded.
	NotCovered = "not-covered"
	// Preauth: covered out of network with 20% co-insurance,
	// pre-authorisation required; the pre-authorisation Claim is approved
	// (preAuthRef PA-<n>).
	Preauth = "preauth"
	// PreauthPending: as Preauth, but the Claim is queued.
	PreauthPending = "preauth-pending"
	// Down: every request answers 503.
	Down = "down"
)

// Payer is the fake insurer.
type Payer struct {
	*httptest.Server
	// PayorSystem and PayorValue identify it (Coverage.payor.identifier).
	PayorSystem, PayorValue string

	mu       sync.Mutex
	mode     string
	received []map[string]any // the Bundles sent, in order
	claims   int
}

// New starts a fake insurer in mode Covered, closed when the test ends.
func New(t testing.TB) *Payer {
	p := Start()
	t.Cleanup(p.Close)
	return p
}

// Start starts a fake insurer in mode Covered on a loopback port (as
// `fhirgate demo`'s insurer); Close stops it.
func Start() *Payer {
	p := &Payer{PayorSystem: "http://insurers.example/id", PayorValue: "acme-health", mode: Covered}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1", "format": []string{"json"}, "date": "2025-01-01",
			"rest": []any{map[string]any{"mode": "server", "resource": []any{map[string]any{"type": "Coverage", "interaction": []any{map[string]any{"code": "search-type"}}}}}}})
	})
	mux.HandleFunc("POST /CoverageEligibilityRequest/$submit", func(w http.ResponseWriter, r *http.Request) { p.answer(w, r, p.eligibility) })
	mux.HandleFunc("POST /Claim/$submit", func(w http.ResponseWriter, r *http.Request) { p.answer(w, r, p.claim) })
	p.Server = httptest.NewServer(mux)
	return p
}

// SetMode changes how the insurer answers from now on.
func (p *Payer) SetMode(m string) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

// Received returns the request Bundles it was sent, in order.
func (p *Payer) Received() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.received...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *Payer) answer(w http.ResponseWriter, r *http.Request, build func(req map[string]any, mode string) map[string]any) {
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	if mode == Down {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "error", "code": "transient"}}})
		return
	}
	b, _ := io.ReadAll(r.Body)
	var bundle map[string]any
	if err := json.Unmarshal(b, &bundle); err != nil || bundle["resourceType"] != "Bundle" || bundle["type"] != "collection" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "error", "code": "structure"}}})
		return
	}
	entries, _ := bundle["entry"].([]any)
	if len(entries) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "error", "code": "required"}}})
		return
	}
	p.mu.Lock()
	p.received = append(p.received, bundle)
	p.mu.Unlock()
	req, _ := entries[0].(map[string]any)["resource"].(map[string]any)
	writeJSON(w, http.StatusOK, build(req, mode))
}

func coding(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

func money(v, cur string) map[string]any {
	return map[string]any{"value": json.Number(v), "currency": cur}
}

// eligibility answers a CoverageEligibilityRequest.
func (p *Payer) eligibility(req map[string]any, mode string) map[string]any {
	insurance, _ := req["insurance"].([]any)
	var cov any
	if len(insurance) > 0 {
		cov = insurance[0].(map[string]any)["coverage"]
	}
	items, _ := req["item"].([]any)
	var category any
	if len(items) > 0 {
		category = items[0].(map[string]any)["category"]
	}
	item := map[string]any{"category": category, "unit": coding("http://terminology.hl7.org/CodeSystem/benefit-unit", "individual"),
		"term": coding("http://terminology.hl7.org/CodeSystem/benefit-term", "annual")}
	benefit := func(typ string, allowed map[string]any) map[string]any {
		b := map[string]any{"type": coding("http://terminology.hl7.org/CodeSystem/benefit-type", typ)}
		for k, v := range allowed {
			b[k] = v
		}
		return b
	}
	switch mode {
	case Covered:
		item["network"] = coding("http://terminology.hl7.org/CodeSystem/benefit-network", "in")
		item["benefit"] = []any{benefit("copay", map[string]any{"allowedMoney": money("25.00", "EUR")}),
			benefit("deductible", map[string]any{"allowedMoney": money("150.00", "EUR"), "usedMoney": money("50.00", "EUR")})}
		item["authorizationRequired"] = false
	case NotCovered:
		item["excluded"] = true
		item["description"] = "Second opinions are not a benefit of this plan."
	case Preauth, PreauthPending:
		item["network"] = coding("http://terminology.hl7.org/CodeSystem/benefit-network", "out")
		item["benefit"] = []any{benefit("copay-percent", map[string]any{"allowedUnsignedInt": 20})}
		item["authorizationRequired"] = true
	}
	out := map[string]any{
		"resourceType": "CoverageEligibilityResponse", "id": "fake-eligibility", "status": "active",
		"purpose": req["purpose"], "patient": req["patient"], "created": "2025-03-01T10:00:00Z",
		"request":   map[string]any{"reference": "CoverageEligibilityRequest/" + fmt.Sprint(req["id"])},
		"outcome":   "complete",
		"insurer":   req["insurer"],
		"insurance": []any{map[string]any{"coverage": cov, "inforce": true, "item": []any{item}}},
	}
	if mode == NotCovered {
		out["disposition"] = "Second opinions are not a benefit of this plan"
	}
	return out
}

// claim answers a pre-authorisation Claim.
func (p *Payer) claim(req map[string]any, mode string) map[string]any {
	p.mu.Lock()
	p.claims++
	n := p.claims
	p.mu.Unlock()
	out := map[string]any{
		"resourceType": "ClaimResponse", "id": "fake-claim-response", "status": "active",
		"type": req["type"], "use": "preauthorization", "patient": req["patient"], "created": "2025-03-01T10:00:00Z",
		"insurer": req["insurer"], "request": map[string]any{"reference": "Claim/" + fmt.Sprint(req["id"])},
	}
	if mode == PreauthPending {
		out["outcome"], out["disposition"] = "queued", "Under review"
		return out
	}
	out["outcome"], out["disposition"], out["preAuthRef"] = "complete", "Approved", fmt.Sprintf("PA-%d", n)
	return out
}
