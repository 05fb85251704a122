package referral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
)

// Payer is an insurer the gateway asks about a second opinion's coverage
// (adapters/payer over FHIR; an HCX client would be another). The
// workflow builds the FHIR requests; a Payer carries them.
type Payer interface {
	// ID is the configured source id.
	ID() string
	// Covers reports whether the insurer answers for a Coverage whose
	// payor Organizations (those the gateway holds) are payors.
	Covers(coverage *fhir.Resource, payors []*fhir.Resource) bool
	// Benefit names the benefit asked about: category and
	// productOrService, each as system, code, display.
	Benefit() (category, productOrService [3]string)
	// Submit sends a collection Bundle led by a CoverageEligibilityRequest
	// or a Claim and returns the insurer's response
	// (CoverageEligibilityResponse, ClaimResponse). An insurer that cannot
	// be reached answers an error.
	Submit(ctx context.Context, bundle *fhir.Resource) (*fhir.Resource, error)
}

// Coverage check statuses.
const (
	CoverageCovered    = "covered"     // the insurer says the consultation is covered
	CoverageNotCovered = "not-covered" // not in force, or the benefit is excluded
	CoverageUnknown    = "unknown"     // the insurer could not be reached or answered nothing usable
	CoverageNone       = "no-coverage" // the patient has no Coverage on file
	CoverageNoPayer    = "no-payer"    // the patient's insurer is not connected to the gateway
)

// Pre-authorisation outcomes.
const (
	PreauthNotRequired = "not-required"
	PreauthApproved    = "approved"
	PreauthPending     = "pending"
	PreauthDenied      = "denied"
	PreauthUnknown     = "unknown"
)

// Money is an amount in a currency.
type Money struct {
	Value    string // the decimal as the insurer wrote it
	Currency string
}

func (m *Money) String() string {
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m.Value + " " + m.Currency)
}

// CoverageCheck is what the gateway learned from the patient's insurer
// about a second opinion from one recipient.
type CoverageCheck struct {
	Recipient string
	// Coverage is the patient's Coverage asked about ("Coverage/x"); Payer
	// the configured insurer's source id.
	Coverage, Payer string
	// Status is covered, not-covered, unknown, no-coverage or no-payer.
	Status string
	// InNetwork is "in" or "out" when the insurer said.
	InNetwork string
	// Preauthorization is not-required, approved, pending, denied or
	// unknown ("" when not asked); PreAuthRef the insurer's reference.
	Preauthorization, PreAuthRef string
	// What the patient pays, as far as the insurer said.
	Copay        *Money
	CopayPercent string
	Deductible   *Money // what remains of it
	// Message tells the patient, in a sentence or three.
	Message string
	// EligibilityRequest, EligibilityResponse, Claim and ClaimResponse
	// are the stored resources ("Type/id"; "" when there is none).
	EligibilityRequest, EligibilityResponse, Claim, ClaimResponse string

	writes []*fhir.Resource
}

// Insurance is what a Task and the ServiceRequest name in insurance.
func (c *CoverageCheck) Insurance() []string {
	var out []string
	for _, r := range []string{c.Coverage, c.ClaimResponse} {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

const (
	processPriority = "http://terminology.hl7.org/CodeSystem/processpriority"
	claimType       = "http://terminology.hl7.org/CodeSystem/claim-type"
	benefitType     = "http://terminology.hl7.org/CodeSystem/benefit-type"
)

// payerTimeout bounds one question to an insurer: a slow one does not
// hold a request's answer for long (the check says unknown).
const payerTimeout = 20 * time.Second

// CheckCoverage asks the patient's insurer whether a second opinion from
// each recipient is covered, records what it asked and what it was told
// (CoverageEligibilityRequest and -Response, a pre-authorisation Claim and
// its ClaimResponse, all in the patient's record), and says it in words.
// The patient itself or a system client may ask.
func (s *Service) CheckCoverage(ctx context.Context, p *auth.Principal, rec release.Recorder, patientID string, recipients, reasons []string, baseURL string) ([]CoverageCheck, error) {
	if rec != nil {
		rec.Patient("Patient/" + patientID)
	}
	if err := MayOpen(p, patientID); err != nil {
		return nil, err
	}
	if len(recipients) == 0 {
		return nil, paramError(http.StatusBadRequest, "required", "recipient", "at least one recipient is required")
	}
	patient, err := s.cfg.Store.Read(ctx, "Patient", patientID)
	if err != nil {
		return nil, err
	}
	record, err := s.Record(ctx, patientID, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	conds, err := s.reasonConditions(ctx, patientID, reasons)
	if err != nil {
		return nil, err
	}
	var checks []CoverageCheck
	var writes []*fhir.Resource
	for _, rc := range recipients {
		c, err := s.checkCoverage(ctx, patient, record, rc, conds, "", baseURL)
		if err != nil {
			return nil, err
		}
		writes = append(writes, c.writes...)
		checks = append(checks, c)
	}
	if len(writes) > 0 {
		ctx = release.Filing(ctx)
		if err := s.cfg.Store.InTx(ctx, func(tx storage.Tx) error {
			_, err := tx.CreateMany(ctx, writes)
			return err
		}); err != nil {
			return nil, err
		}
	}
	return checks, nil
}

// reasonConditions reads the reasons (Conditions of the patient).
func (s *Service) reasonConditions(ctx context.Context, patientID string, reasons []string) ([]*fhir.Resource, error) {
	var out []*fhir.Resource
	for _, ref := range reasons {
		typ, rid, _ := strings.Cut(ref, "/")
		cond, err := s.cfg.Store.Read(ctx, typ, rid)
		if err != nil || typ != "Condition" || !slices.Contains(s.cfg.Decider.PatientsOf(cond), patientID) {
			return nil, paramError(http.StatusUnprocessableEntity, "not-found", "reason", "reason %s is not a Condition of this patient", ref)
		}
		out = append(out, cond)
	}
	return out, nil
}

// activeCoverages are the patient's Coverages in force now.
func activeCoverages(record []*fhir.Resource, patientID string, now time.Time) []*fhir.Resource {
	var out []*fhir.Resource
	for _, r := range record {
		if r.Type != "Coverage" {
			continue
		}
		root := r.Root()
		if root.Get("status").String() != "active" || localRef(root.Get("beneficiary").Get("reference").String()) != "Patient/"+patientID {
			continue
		}
		per := root.Get("period")
		if t, ok := parseFHIRTime(per.Get("start").String()); ok && now.Before(t) {
			continue
		}
		if t, ok := parseFHIRTime(per.Get("end").String()); ok && now.After(t.Add(24*time.Hour)) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkCoverage asks about one recipient; the insurer's failures are part
// of the answer (status unknown), not errors. serviceRequest names the
// request the pre-authorisation is for ("" when none is open yet).
func (s *Service) checkCoverage(ctx context.Context, patient *fhir.Resource, record []*fhir.Resource, recipient string, reasons []*fhir.Resource, serviceRequest, baseURL string) (CoverageCheck, error) {
	c := CoverageCheck{Recipient: recipient}
	now := s.cfg.Now()
	byRef := map[string]*fhir.Resource{}
	for _, r := range record {
		byRef[r.Type+"/"+r.ID] = r
	}
	covs := activeCoverages(record, patient.ID, now)
	if len(covs) == 0 {
		c.Status = CoverageNone
		c.Message = "No insurance is on file for you, so the gateway could not ask whether a second opinion is covered."
		return c, nil
	}
	var (
		payer  Payer
		cov    *fhir.Resource
		payors []*fhir.Resource
	)
	for _, cv := range covs {
		var orgs []*fhir.Resource
		for _, pr := range cv.Root().Get("payor").Elems() {
			if o := byRef[localRef(pr.Get("reference").String())]; o != nil {
				orgs = append(orgs, o)
			}
		}
		for _, py := range s.cfg.Payers {
			if py.Covers(cv, orgs) {
				payer, cov, payors = py, cv, orgs
				break
			}
		}
		if payer != nil {
			break
		}
	}
	if payer == nil {
		c.Coverage, c.Status = "Coverage/"+covs[0].ID, CoverageNoPayer
		c.Message = fmt.Sprintf("Your insurer (%s) is not connected to the gateway: ask it whether a second opinion from %s is covered.", payorName(covs[0], byRef), recipient)
		return c, nil
	}
	c.Coverage, c.Payer = "Coverage/"+cov.ID, payer.ID()
	insurer := json.RawMessage(`{"reference":"` + firstPayor(cov) + `"}`)
	if raw := cov.Root().Get("payor").Elems(); len(raw) > 0 {
		insurer = rawJSON(raw[0])
	}
	cat, prod := payer.Benefit()
	category, product := concept(cat[0], cat[1], cat[2]), concept(prod[0], prod[1], prod[2])
	var diagnoses []any
	for _, cond := range reasons {
		if cc := cond.Root().Get("code"); cc != nil {
			diagnoses = append(diagnoses, map[string]any{"diagnosisCodeableConcept": rawJSON(cc)})
		}
	}
	item := map[string]any{"category": category, "productOrService": product}
	if len(diagnoses) > 0 {
		item["diagnosis"] = diagnoses
	}
	req := map[string]any{
		"resourceType": "CoverageEligibilityRequest", "id": s.cfg.NewID(), "status": "active",
		"priority":  concept(processPriority, "normal", "Normal"),
		"purpose":   []string{"auth-requirements", "benefits", "validation"},
		"patient":   reference{Reference: "Patient/" + patient.ID},
		"created":   fhir.FormatInstant(now),
		"insurer":   insurer,
		"provider":  reference{Reference: recipient},
		"insurance": []any{map[string]any{"focal": true, "coverage": reference{Reference: "Coverage/" + cov.ID}}},
		"item":      []any{item},
	}
	er, err := s.built(req)
	if err != nil {
		return c, err
	}
	c.EligibilityRequest = "CoverageEligibilityRequest/" + er.ID
	c.writes = append(c.writes, er)
	supporting := append([]*fhir.Resource{patient, cov}, payors...)
	pctx, cancel := context.WithTimeout(ctx, payerTimeout)
	defer cancel()
	resp, err := payer.Submit(pctx, s.submission(er, supporting, baseURL))
	if err != nil {
		s.log.Warn("coverage eligibility: the insurer did not answer", "payer", payer.ID(), "err", err)
		c.Status = CoverageUnknown
		c.Message = fmt.Sprintf("Your insurer could not be reached (%s), so whether a second opinion from %s is covered is not known. The request can still be sent; ask again later.", unreachable(err), recipient)
		return c, nil
	}
	stored, ok := s.ownResponse(resp, "CoverageEligibilityResponse", patient.ID)
	if !ok {
		c.Status = CoverageUnknown
		c.Message = "Your insurer's answer could not be read, so whether a second opinion is covered is not known."
		return c, nil
	}
	c.EligibilityResponse = "CoverageEligibilityResponse/" + stored.ID
	c.writes = append(c.writes, stored)
	el := readEligibility(resp.Root(), "Coverage/"+cov.ID, cat[1])
	c.InNetwork, c.Copay, c.CopayPercent, c.Deductible = el.network, el.copay, el.copayPercent, el.deductible
	switch {
	case el.outcome == "error" || !el.found:
		c.Status = CoverageUnknown
		c.Message = "Your insurer did not say whether a second opinion is covered" + disposition(resp.Root()) + "."
		return c, nil
	case !el.inforce:
		c.Status = CoverageNotCovered
		c.Message = "Your insurance is not in force, so a second opinion is not covered" + disposition(resp.Root()) + "."
		return c, nil
	case el.excluded:
		c.Status = CoverageNotCovered
		c.Message = fmt.Sprintf("Your insurance does not cover a second opinion (%s)%s.", cat[2], disposition(resp.Root()))
		return c, nil
	}
	c.Status = CoverageCovered
	c.Preauthorization = PreauthNotRequired
	if el.authRequired {
		if err := s.preauthorize(ctx, &c, payer, patient, cov, insurer, category, product, diagnoses, supporting, serviceRequest, baseURL); err != nil {
			return c, err
		}
	}
	c.Message = coverageMessage(&c, recipient)
	return c, nil
}

// preauthorize submits the pre-authorisation Claim and reads its answer.
func (s *Service) preauthorize(ctx context.Context, c *CoverageCheck, payer Payer, patient, cov *fhir.Resource, insurer json.RawMessage, category, product codeableConcept, diagnoses []any, supporting []*fhir.Resource, serviceRequest, baseURL string) error {
	now := s.cfg.Now()
	item := map[string]any{"sequence": 1, "category": category, "productOrService": product}
	claim := map[string]any{
		"resourceType": "Claim", "id": s.cfg.NewID(), "status": "active",
		"type":      concept(claimType, "professional", "Professional"),
		"use":       "preauthorization",
		"patient":   reference{Reference: "Patient/" + patient.ID},
		"created":   fhir.FormatInstant(now),
		"insurer":   insurer,
		"provider":  reference{Reference: c.Recipient},
		"priority":  concept(processPriority, "normal", "Normal"),
		"insurance": []any{map[string]any{"sequence": 1, "focal": true, "coverage": reference{Reference: "Coverage/" + cov.ID}}},
	}
	if len(diagnoses) > 0 {
		var ds []any
		var seq []int
		for i, d := range diagnoses {
			dm := map[string]any{"sequence": i + 1}
			for k, v := range d.(map[string]any) {
				dm[k] = v
			}
			ds = append(ds, dm)
			seq = append(seq, i+1)
		}
		claim["diagnosis"] = ds
		item["diagnosisSequence"] = seq
	}
	claim["item"] = []any{item}
	if serviceRequest != "" {
		claim["referral"] = reference{Reference: serviceRequest}
	}
	cl, err := s.built(claim)
	if err != nil {
		return err
	}
	c.Claim = "Claim/" + cl.ID
	c.writes = append(c.writes, cl)
	pctx, cancel := context.WithTimeout(ctx, payerTimeout)
	defer cancel()
	resp, err := payer.Submit(pctx, s.submission(cl, supporting, baseURL))
	if err != nil {
		s.log.Warn("pre-authorisation: the insurer did not answer", "payer", payer.ID(), "err", err)
		c.Preauthorization = PreauthUnknown
		return nil
	}
	stored, ok := s.ownResponse(resp, "ClaimResponse", patient.ID)
	if !ok {
		c.Preauthorization = PreauthUnknown
		return nil
	}
	c.ClaimResponse = "ClaimResponse/" + stored.ID
	c.writes = append(c.writes, stored)
	root := resp.Root()
	c.PreAuthRef = root.Get("preAuthRef").String()
	switch root.Get("outcome").String() {
	case "complete":
		c.Preauthorization = PreauthDenied
		if c.PreAuthRef != "" {
			c.Preauthorization = PreauthApproved
		}
	case "queued", "partial":
		c.Preauthorization = PreauthPending
	default:
		c.Preauthorization = PreauthDenied
	}
	return nil
}

// built parses and validates a resource the workflow authors.
func (s *Service) built(v map[string]any) (*fhir.Resource, error) {
	r, err := fhir.Parse(mustJSON(v))
	if err != nil {
		return nil, err
	}
	if err := s.validate(r); err != nil {
		return nil, fmt.Errorf("referral: built %s does not validate: %w", r.Type, err)
	}
	return r, nil
}

// submission is the collection Bundle an insurer is sent: the request,
// then what it references.
func (s *Service) submission(req *fhir.Resource, supporting []*fhir.Resource, baseURL string) *fhir.Resource {
	base := strings.TrimRight(baseURL, "/")
	full := func(r *fhir.Resource) string {
		if base == "" {
			return "urn:uuid:" + r.ID
		}
		return base + "/" + r.Type + "/" + r.ID
	}
	entries := []entry{{FullURL: full(req), Resource: json.RawMessage(req.Raw)}}
	for _, r := range supporting {
		entries = append(entries, entry{FullURL: full(r), Resource: json.RawMessage(r.Raw)})
	}
	b := mustJSON(map[string]any{"resourceType": "Bundle", "type": "collection", "timestamp": fhir.FormatInstant(s.cfg.Now()), "entry": entries})
	return &fhir.Resource{Type: "Bundle", Raw: b}
}

// ownResponse readies an insurer's response for the patient's record: a
// response of the kind asked, about this patient, valid, under an id of
// the gateway's; ok is false otherwise.
func (s *Service) ownResponse(resp *fhir.Resource, typ, patientID string) (*fhir.Resource, bool) {
	if resp == nil || resp.Type != typ || localRef(resp.Root().Get("patient").Get("reference").String()) != "Patient/"+patientID {
		return nil, false
	}
	r := resp.Rewrite(s.cfg.NewID(), func([]fjson.Member) []fjson.Member { return nil }, "", time.Time{})
	if err := s.validate(r); err != nil {
		s.log.Warn("an insurer's response is not valid FHIR", "type", typ)
		return nil, false
	}
	return r, true
}

// eligibility is what a CoverageEligibilityResponse says of one benefit.
type eligibility struct {
	outcome                  string
	found, inforce, excluded bool
	authRequired             bool
	network                  string
	copay, deductible        *Money
	copayPercent             string
}

// readEligibility reads the response's insurance for the Coverage (or its
// first) and in it the item of the benefit category (or its first).
func readEligibility(root *fjson.Value, coverage, category string) eligibility {
	el := eligibility{outcome: root.Get("outcome").String()}
	ins := root.Get("insurance").Elems()
	var in *fjson.Value
	for _, i := range ins {
		if localRef(i.Get("coverage").Get("reference").String()) == coverage {
			in = i
		}
	}
	if in == nil && len(ins) > 0 {
		in = ins[0]
	}
	if in == nil {
		return el
	}
	el.inforce = in.Get("inforce") == nil || in.Get("inforce").Bool()
	items := in.Get("item").Elems()
	var it *fjson.Value
	for _, x := range items {
		for _, c := range x.Get("category").Get("coding").Elems() {
			if c.Get("code").String() == category {
				it = x
			}
		}
	}
	if it == nil && len(items) > 0 {
		it = items[0]
	}
	el.found = true
	if it == nil {
		return el
	}
	el.excluded = it.Get("excluded").Bool()
	el.authRequired = it.Get("authorizationRequired").Bool()
	for _, c := range it.Get("network").Get("coding").Elems() {
		if code := c.Get("code").String(); code == "in" || code == "out" {
			el.network = code
		}
	}
	for _, b := range it.Get("benefit").Elems() {
		var typ string
		for _, c := range b.Get("type").Get("coding").Elems() {
			if c.Get("system").String() == benefitType {
				typ = c.Get("code").String()
			}
		}
		switch typ {
		case "copay":
			el.copay = money(b.Get("allowedMoney"))
		case "copay-percent":
			if v := b.Get("allowedUnsignedInt"); v != nil {
				el.copayPercent = v.Str
			}
		case "deductible":
			if a := money(b.Get("allowedMoney")); a != nil {
				if u := money(b.Get("usedMoney")); u != nil && u.Currency == a.Currency {
					av, err1 := strconv.ParseFloat(a.Value, 64)
					uv, err2 := strconv.ParseFloat(u.Value, 64)
					if err1 == nil && err2 == nil {
						a = &Money{Value: strconv.FormatFloat(max(av-uv, 0), 'f', 2, 64), Currency: a.Currency}
					}
				}
				el.deductible = a
			}
		}
	}
	return el
}

func money(v *fjson.Value) *Money {
	if v == nil || v.Get("value") == nil {
		return nil
	}
	return &Money{Value: v.Get("value").Str, Currency: v.Get("currency").String()}
}

func disposition(root *fjson.Value) string {
	if d := root.Get("disposition").String(); d != "" {
		return ": " + d
	}
	return ""
}

// coverageMessage tells the patient what was learned of a covered
// consultation.
func coverageMessage(c *CoverageCheck, recipient string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "A second opinion from %s is covered by your insurance", recipient)
	switch c.InNetwork {
	case "in":
		b.WriteString(" (in network)")
	case "out":
		b.WriteString(" (out of network)")
	}
	b.WriteString(".")
	switch c.Preauthorization {
	case PreauthApproved:
		fmt.Fprintf(&b, " Pre-authorisation was required and is approved (reference %s).", c.PreAuthRef)
	case PreauthPending:
		b.WriteString(" Pre-authorisation is required and the insurer has not decided yet.")
	case PreauthDenied:
		b.WriteString(" Pre-authorisation is required and the insurer did not grant it.")
	case PreauthUnknown:
		b.WriteString(" Pre-authorisation is required, but the insurer could not be reached for it.")
	}
	var pays []string
	if c.Copay != nil {
		pays = append(pays, c.Copay.String()+" (co-payment)")
	}
	if c.CopayPercent != "" {
		pays = append(pays, c.CopayPercent+"% of the cost (co-insurance)")
	}
	if c.Deductible != nil {
		pays = append(pays, "what remains of your deductible, "+c.Deductible.String())
	}
	if len(pays) > 0 {
		b.WriteString(" You pay " + strings.Join(pays, " and ") + ".")
	}
	return b.String()
}

// unreachable says why an insurer did not answer: adapter errors name
// the source, the request and the status, never what was sent.
func unreachable(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return err.Error()
}

func firstPayor(cov *fhir.Resource) string {
	for _, p := range cov.Root().Get("payor").Elems() {
		return p.Get("reference").String()
	}
	return ""
}

// payorName names a Coverage's insurer for people.
func payorName(cov *fhir.Resource, byRef map[string]*fhir.Resource) string {
	for _, p := range cov.Root().Get("payor").Elems() {
		if d := p.Get("display").String(); d != "" {
			return d
		}
		if o := byRef[localRef(p.Get("reference").String())]; o != nil {
			if n := o.Root().Get("name").String(); n != "" {
				return n
			}
		}
	}
	return "on file"
}

// Parameter renders the check as a Parameters parameter named coverage
// (the answer of $second-opinion and $coverage-check).
func (c *CoverageCheck) Parameter() map[string]any {
	ref := func(name, r string) map[string]any {
		return map[string]any{"name": name, "valueReference": map[string]string{"reference": r}}
	}
	parts := []any{ref("recipient", c.Recipient), map[string]any{"name": "status", "valueCode": c.Status}}
	if c.Coverage != "" {
		parts = append(parts, ref("coverage", c.Coverage))
	}
	if c.Payer != "" {
		parts = append(parts, map[string]any{"name": "payer", "valueString": c.Payer})
	}
	if c.InNetwork != "" {
		parts = append(parts, map[string]any{"name": "inNetwork", "valueBoolean": c.InNetwork == "in"})
	}
	if c.Preauthorization != "" {
		parts = append(parts, map[string]any{"name": "preauthorization", "valueCode": c.Preauthorization})
	}
	if c.PreAuthRef != "" {
		parts = append(parts, map[string]any{"name": "preAuthRef", "valueString": c.PreAuthRef})
	}
	money := func(name string, m *Money) {
		if m == nil {
			return
		}
		v := map[string]any{"value": json.Number(m.Value)}
		if m.Currency != "" {
			v["currency"] = m.Currency
		}
		parts = append(parts, map[string]any{"name": name, "valueMoney": v})
	}
	money("copay", c.Copay)
	if c.CopayPercent != "" {
		parts = append(parts, map[string]any{"name": "copayPercent", "valueDecimal": json.Number(c.CopayPercent)})
	}
	money("deductibleRemaining", c.Deductible)
	for _, r := range [][2]string{{"eligibilityRequest", c.EligibilityRequest}, {"eligibilityResponse", c.EligibilityResponse}, {"claim", c.Claim}, {"claimResponse", c.ClaimResponse}} {
		if r[1] != "" {
			parts = append(parts, ref(r[0], r[1]))
		}
	}
	parts = append(parts, map[string]any{"name": "message", "valueString": c.Message})
	return map[string]any{"name": "coverage", "part": parts}
}
