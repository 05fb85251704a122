package referral

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/google/uuid"
)

// Validator checks resources the workflow writes (*validate.Validator).
type Validator interface {
	Validate(r *fhir.Resource) []fhir.Issue
}

// Config configures a Service.
type Config struct {
	// Store is where the workflow reads and writes: the gateway's store
	// wrapped by release.Checked, so that every write made in a request's
	// context is checked as that caller's write. Required.
	Store storage.Store
	// Decider is the release rule: packages hold what it releases to each
	// recipient, and follow-up results join a package only when it
	// releases them. Required.
	Decider *release.Decider
	// Search is the store's search registry. Required.
	Search *search.Registry
	// Validator checks what the workflow writes; nil: none.
	Validator Validator
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// NewID names created resources; time-ordered UUIDs when nil.
	NewID func() string
	// Logger; nil discards. Never receives resource bodies.
	Logger *slog.Logger
	// Payers are the insurers asked about a second opinion's coverage
	// (sources of type payer); none: coverage is not checked.
	Payers []Payer
	// CanonicalBase is the canonical base of the gateway's conformance
	// resources (the opinion profile); DefaultCanonicalBase when "".
	CanonicalBase string
}

// Service is the second-opinion workflow over the store and the release
// rule: opening a request (packages, ServiceRequest, Tasks), the Task state
// machine, opinions, follow-up messages and coverage checks. The server
// translates HTTP to it; it holds the business rules. Safe for concurrent
// use.
type Service struct {
	cfg Config
	log *slog.Logger

	profileOnce sync.Once
	profiles    *validate.Validator
	profileErr  error
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Store == nil || cfg.Decider == nil || cfg.Search == nil {
		panic("referral: Config.Store, Decider and Search are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}
}

// recordLimit bounds the resources one package or summary reads.
const recordLimit = 50000

// everythingPage is the page size the record is read with.
const everythingPage = 5000

// Record reads the patient's compartment and what it refers to, in the
// care-date window (zero: open), through the store (no release rule: the
// caller decides what of it leaves).
func (s *Service) Record(ctx context.Context, patientID string, start, end time.Time) ([]*fhir.Resource, error) {
	if !end.IsZero() {
		end = end.AddDate(0, 0, 1).Add(-time.Nanosecond)
	}
	req := storage.EverythingRequest{PatientID: patientID, Start: start, End: end, Count: everythingPage}
	var out []*fhir.Resource
	for {
		res, err := s.cfg.Store.Everything(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, res.Matches...)
		if res.Next == "" {
			return out, nil
		}
		if len(out) >= recordLimit {
			return nil, fhir.Errorf(http.StatusUnprocessableEntity, "too-costly", nil, "the record holds more than %d resources; give a data window", recordLimit)
		}
		req.Cursor = res.Next
	}
}

// OpenRequest is one Patient/$second-opinion call.
type OpenRequest struct {
	// PatientID is the patient the request is about.
	PatientID string
	// Recipients ("Organization/x", "PractitionerRole/y") are asked.
	Recipients []string
	// Consents ("Consent/x") of the patient; together they must permit
	// every recipient.
	Consents []string
	// Requester ("Patient/x", "Organization/y"…); the patient when empty
	// or when the caller is the patient.
	Requester string
	// Specialty as sent (a CodeableConcept's JSON); Spec its completeness
	// check when the gateway knows it.
	Specialty json.RawMessage
	Spec      *Specialty
	// Question is the patient's question.
	Question string
	// Reasons are Conditions ("Condition/x") of the patient.
	Reasons []string
	// Due is when the opinion is due; Start and End bound the data window
	// (zero: open).
	Due, Start, End time.Time
	// BaseURL is the FHIR base the packages' fullUrls use.
	BaseURL string
	// Preview asks for the packages only (Service.Preview): nothing is
	// stored. Drafts are Consents not stored, for a preview only: the
	// packages are built as if they were among the patient's active
	// Consents.
	Preview bool
	Drafts  []*fhir.Resource
}

// Opened is what Open created.
type Opened struct {
	Requisition    string
	ServiceRequest string
	// Recipients are in the order asked.
	Recipients []Recipient
	// Tasks are "Task/id", one per recipient, in the same order.
	Tasks []string
	// Coverage is what the patient's insurer said of each recipient, in
	// the same order (none when no payer is configured).
	Coverage []CoverageCheck
}

func paramError(status int, code, name, format string, args ...any) error {
	return fhir.Errorf(status, code, []string{"Parameters.parameter[" + name + "]"}, format, args...)
}

// Open files a second-opinion request: for each recipient a package (a
// document Bundle holding what the release rule gives that recipient now,
// with the computed case summary), then a referral ServiceRequest and one
// Task per recipient under one requisition identifier, all in one
// transaction. Only the patient itself or a system client may open one;
// rec (may be nil) is told the patient and the Consents used.
func (s *Service) Open(ctx context.Context, p *auth.Principal, rec release.Recorder, req OpenRequest) (*Opened, error) {
	patientRef := "Patient/" + req.PatientID
	if rec != nil {
		rec.Patient(patientRef)
	}
	if err := MayOpen(p, req.PatientID); err != nil {
		return nil, err
	}
	if len(req.Recipients) == 0 {
		return nil, paramError(http.StatusBadRequest, "required", "recipient", "at least one recipient is required")
	}
	if len(req.Drafts) > 0 {
		return nil, paramError(http.StatusBadRequest, "value", "consent", "a draft Consent (a resource) is only for preview=true: store the Consent, then name it")
	}
	if len(req.Consents) == 0 {
		return nil, paramError(http.StatusBadRequest, "required", "consent", "at least one consent is required")
	}
	if req.Requester == "" || p != nil && p.Kind == auth.KindPatient {
		req.Requester = patientRef
	}
	patient, err := s.cfg.Store.Read(ctx, "Patient", req.PatientID)
	if err != nil {
		return nil, err
	}
	for _, ref := range req.Reasons {
		typ, rid, _ := strings.Cut(ref, "/")
		cond, err := s.cfg.Store.Read(ctx, typ, rid)
		if err != nil || typ != "Condition" || !slices.Contains(s.cfg.Decider.PatientsOf(cond), req.PatientID) {
			return nil, paramError(http.StatusUnprocessableEntity, "not-found", "reason", "reason %s is not a Condition of this patient", ref)
		}
	}
	// the named Consents: active, of this patient, and together covering
	// every recipient
	var consents []*fhir.Resource
	for _, ref := range req.Consents {
		_, cid, _ := strings.Cut(ref, "/")
		cr, err := s.cfg.Store.Read(ctx, "Consent", cid)
		if err != nil {
			return nil, paramError(http.StatusUnprocessableEntity, "not-found", "consent", "%s cannot be read", ref)
		}
		root := cr.Root()
		if root.Get("status").String() != "active" || root.Get("patient").Get("reference").String() != patientRef {
			return nil, paramError(http.StatusUnprocessableEntity, "business-rule", "consent", "%s is not an active Consent of this patient", ref)
		}
		if rec != nil {
			rec.Consent(ref)
		}
		consents = append(consents, cr)
	}
	named := consent.Compile(patientRef, consents, consent.Options{})
	now := s.cfg.Now()
	recipientConsent := map[string]string{}
	for _, rc := range req.Recipients {
		cands := named.Candidates(recipientRequest(rc, now))
		if len(cands) == 0 {
			return nil, paramError(http.StatusUnprocessableEntity, "business-rule", "recipient", "no active Consent given permits %s", rc)
		}
		recipientConsent[rc] = cands[0].Reference
	}
	record, err := s.Record(ctx, req.PatientID, req.Start, req.End)
	if err != nil {
		return nil, err
	}
	r := Request{
		Requisition: uuid.NewString(), Patient: patientRef, Requester: req.Requester,
		Specialty: req.Specialty, Question: req.Question, Reasons: req.Reasons, Due: req.Due, Now: now,
	}
	var (
		writes []*fhir.Resource
		rcpts  []Recipient
		checks []CoverageCheck
	)
	srID := s.cfg.NewID()
	var conds []*fhir.Resource
	if len(s.cfg.Payers) > 0 {
		if conds, err = s.reasonConditions(ctx, req.PatientID, req.Reasons); err != nil {
			return nil, err
		}
	}
	for _, rc := range req.Recipients {
		doc, err := s.packageFor(ctx, rc, patient, record, req, recipientConsent[rc], now)
		if err != nil {
			return nil, err
		}
		writes = append(writes, doc.Bundle)
		rp := Recipient{Reference: rc, Package: "Bundle/" + doc.Bundle.ID, Consent: recipientConsent[rc]}
		if len(s.cfg.Payers) > 0 {
			// before anything is sent: the insurer's answer (or its
			// silence) is recorded with the request and told to the patient
			c, err := s.checkCoverage(ctx, patient, record, rc, conds, "ServiceRequest/"+srID, req.BaseURL)
			if err != nil {
				return nil, err
			}
			writes = append(writes, c.writes...)
			checks = append(checks, c)
			rp.Insurance = c.Insurance()
		}
		rcpts = append(rcpts, rp)
	}
	writes = append(writes, ServiceRequest(srID, r, rcpts))
	out := &Opened{Requisition: r.Requisition, ServiceRequest: "ServiceRequest/" + srID, Recipients: rcpts, Coverage: checks}
	for _, rc := range rcpts {
		t := Task(s.cfg.NewID(), "ServiceRequest/"+srID, r, rc)
		out.Tasks = append(out.Tasks, "Task/"+t.ID)
		writes = append(writes, t)
	}
	for _, w := range writes {
		if err := s.validate(w); err != nil {
			return nil, err
		}
	}
	// the gateway files the request on the patient's behalf: what it
	// writes about nobody is its own, and the packages are documents it
	// assembled
	ctx = release.Assembling(release.Filing(ctx))
	err = s.cfg.Store.InTx(ctx, func(tx storage.Tx) error {
		_, err := tx.CreateMany(ctx, writes)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MayOpen says whether p may open a second-opinion request about the
// patient: the patient itself or a system client (nil: a gateway without
// authentication), never a provider, which sees only what Consents give it
// and so cannot pass the record on.
func MayOpen(p *auth.Principal, patientID string) error {
	switch {
	case p == nil:
		return nil
	case p.Kind == auth.KindPatient && p.Patient != "Patient/"+patientID:
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only ask for opinions on its own record")
	case p.Kind == auth.KindProvider:
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "second-opinion requests are opened by the patient or a system client")
	}
	return nil
}

// packageFor builds the package of one recipient: what the release rule
// would give it now.
func (s *Service) packageFor(ctx context.Context, rc string, patient *fhir.Resource, record []*fhir.Resource, req OpenRequest, policy string, now time.Time) (*Document, error) {
	rg := s.cfg.Decider.RecordGuard(RecipientPrincipal(rc), nil, req.PatientID)
	var relErr error
	doc, err := Summary(patient, record, Options{
		Release: func(r *fhir.Resource) bool {
			ok, err := rg.Released(ctx, r)
			if err != nil && relErr == nil {
				relErr = err
			}
			return ok
		},
		Specialty: req.Spec, Question: req.Question, BaseURL: req.BaseURL, Now: now,
		Title:    "Second-opinion package for " + rc,
		Policies: []string{policy},
	})
	if relErr != nil {
		return nil, relErr
	}
	if errors.Is(err, ErrPatientWithheld) {
		return nil, paramError(http.StatusUnprocessableEntity, "business-rule", "consent", "the Consents do not release the Patient resource to %s", rc)
	}
	return doc, err
}

// validate answers 422 with every issue when the validator finds errors.
func (s *Service) validate(r *fhir.Resource) error {
	if s.cfg.Validator == nil {
		return nil
	}
	issues := s.cfg.Validator.Validate(r)
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			return &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
		}
	}
	return nil
}

// recipientRequest is the consent question "may this recipient access the
// record for treatment now?".
func recipientRequest(recipient string, now time.Time) consent.Request {
	return consent.Request{Actors: []string{recipient}, Action: consent.ActionAccess, Purpose: []consent.Coding{consent.Treatment}, Time: now}
}

// RecipientPrincipal is the provider a second-opinion recipient would be
// when it fetches its package: a package holds what the release rule gives
// it.
func RecipientPrincipal(rc string) *auth.Principal {
	p := &auth.Principal{Kind: auth.KindProvider, Scopes: auth.ParseScopes("system/*.rs")}
	if strings.HasPrefix(rc, "Practitioner/") {
		p.FHIRUser = rc
	} else {
		p.Organization = rc
	}
	return p
}

// IsTask reports whether r is a Task of a second-opinion request.
func IsTask(r *fhir.Resource) bool {
	return r != nil && r.Type == "Task" && r.Root().Get("groupIdentifier").Get("system").String() == RequisitionSystem
}

// search runs one query through the store (no release rule) and returns
// every match, up to limit.
func (s *Service) search(ctx context.Context, r storage.Reader, typ string, q url.Values, limit int) ([]*fhir.Resource, error) {
	q.Set("_count", "500")
	q.Set("_total", "none")
	parsed, err := s.cfg.Search.ParseQuery(typ, q, true)
	if err != nil {
		return nil, err
	}
	var out []*fhir.Resource
	cursor := ""
	for {
		res, err := r.Search(ctx, storage.SearchRequest{Query: parsed, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		out = append(out, res.Matches...)
		if res.Next == "" || len(out) >= limit {
			return out, nil
		}
		cursor = res.Next
	}
}

// withMembers returns r with the top-level members in set replaced (nil
// removes one) and the others kept byte for byte.
func withMembers(r *fhir.Resource, set map[string]any) (*fhir.Resource, error) {
	root := r.Root()
	out := make([]byte, 0, len(r.Raw)+256)
	out = append(out, '{')
	done := map[string]bool{}
	first := true
	put := func(key string, raw []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = fjson.AppendString(out, key)
		out = append(out, ':')
		out = append(out, raw...)
	}
	for _, m := range root.Members {
		v, ok := set[m.Key]
		if !ok {
			put(m.Key, fjson.AppendCompact(nil, m.Value))
			continue
		}
		done[m.Key] = true
		if v == nil {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		put(m.Key, b)
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if done[k] || set[k] == nil {
			continue
		}
		b, err := json.Marshal(set[k])
		if err != nil {
			return nil, err
		}
		put(k, b)
	}
	out = append(out, '}')
	res, err := fhir.Parse(out)
	if err != nil {
		return nil, err
	}
	res.VersionID, res.LastUpdated = cmp.Or(res.VersionID, r.VersionID), r.LastUpdated
	return res, nil
}
