package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/jsonpatch"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// Canonicals of the operations this file answers.
const (
	summaryDefinition = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
	// recordLimit bounds the resources one package or summary reads.
	recordLimit = 50000
)

func (s *Server) registerSecondOpinion() {
	s.RegisterOperation(Operation{
		Name:     "second-opinion",
		Instance: true, Types: []string{"Patient"},
		Handler: s.secondOpinion,
	})
	s.RegisterOperation(Operation{
		Name: "summary", Definition: summaryDefinition,
		Instance: true, Types: []string{"Patient"}, Idempotent: true,
		Handler: s.patientSummary,
	})
}

// soParams are the parsed parameters of $second-opinion.
type soParams struct {
	recipients []string
	specialty  json.RawMessage
	spec       *referral.Specialty
	question   string
	reasons    []string
	consents   []string
	requester  string
	due        time.Time
	start, end time.Time
}

func badParam(name, format string, args ...any) error {
	return fhir.Errorf(http.StatusBadRequest, "invalid", []string{"Parameters.parameter[" + name + "]"}, format, args...)
}

// refOf reads a valueReference as "Type/id" of one of the types.
func refOf(p *fjson.Value, name string, types ...string) (string, error) {
	ref := p.Get("valueReference").Get("reference").String()
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !slices.Contains(types, typ) || !fhir.ValidID(id) {
		return "", badParam(name, "%s must be a valueReference to %s", name, strings.Join(types, " or "))
	}
	return ref, nil
}

func (s *Server) readSecondOpinionParams(c *gin.Context) (*soParams, error) {
	r, err := s.readParameters(c, "$second-opinion takes a Parameters resource")
	if err != nil {
		return nil, err
	}
	out := &soParams{}
	date := func(p *fjson.Value, name string) (time.Time, error) {
		t, err := time.Parse("2006-01-02", p.Get("valueDate").String())
		if err != nil {
			return t, badParam(name, "%s must be a valueDate (YYYY-MM-DD)", name)
		}
		return t, nil
	}
	for _, p := range items(r.Root().Get("parameter")) {
		name := p.Get("name").String()
		var err error
		switch name {
		case "recipient":
			var ref string
			if ref, err = refOf(p, name, "Organization", "PractitionerRole"); err == nil {
				if slices.Contains(out.recipients, ref) {
					return nil, badParam(name, "recipient %s is named twice", ref)
				}
				out.recipients = append(out.recipients, ref)
			}
		case "consent":
			var ref string
			if ref, err = refOf(p, name, "Consent"); err == nil && !slices.Contains(out.consents, ref) {
				out.consents = append(out.consents, ref)
			}
		case "reason":
			var ref string
			if ref, err = refOf(p, name, "Condition"); err == nil {
				out.reasons = append(out.reasons, ref)
			}
		case "requester":
			out.requester, err = refOf(p, name, "Organization", "Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device")
		case "specialty":
			cc := p.Get("valueCodeableConcept")
			if cc == nil || cc.Kind != fjson.Object {
				return nil, badParam(name, "specialty must be a valueCodeableConcept")
			}
			out.specialty = json.RawMessage(fjson.AppendCompact(nil, cc))
			for _, cd := range items(cc.Get("coding")) {
				if sp, ok := referral.LookupSpecialty(cd.Get("system").String(), cd.Get("code").String()); ok {
					out.spec = sp
					break
				}
			}
		case "question":
			if out.question = p.Get("valueString").String(); out.question == "" {
				err = badParam(name, "question must be a non-empty valueString")
			}
		case "due":
			out.due, err = date(p, name)
		case "start":
			out.start, err = date(p, name)
		case "end":
			out.end, err = date(p, name)
		default:
			err = badParam(name, "$second-opinion has no parameter %q", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(out.recipients) == 0 {
		return nil, badParam("recipient", "at least one recipient is required")
	}
	if len(out.consents) == 0 {
		return nil, badParam("consent", "at least one consent is required")
	}
	if !out.start.IsZero() && !out.end.IsZero() && out.end.Before(out.start) {
		return nil, badParam("end", "the data window ends before it starts")
	}
	return out, nil
}

func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}

// secondOpinion answers POST Patient/[id]/$second-opinion.
func (s *Server) secondOpinion(c *gin.Context, _, id string) {
	if err := s.secondOpinionErr(c, id); err != nil {
		s.fail(c, err)
	}
}

func (s *Server) secondOpinionErr(c *gin.Context, id string) error {
	if _, err := s.authorize(c, "operation", "second-opinion", "Patient"); err != nil {
		return err
	}
	a := accessOf(c)
	a.resource = "Patient/" + id
	a.patients["Patient/"+id] = true
	p := principal(c)
	if p != nil {
		switch {
		case p.Kind == auth.KindPatient && patientID(p) != id:
			a.refused = "another patient's record"
			return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only ask for opinions on its own record")
		case p.Kind == auth.KindProvider:
			// a provider sees only what Consents give it: it cannot pass the
			// record on to others
			a.refused = "providers do not open second-opinion requests"
			return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "second-opinion requests are opened by the patient or a system client")
		}
	}
	params, err := s.readSecondOpinionParams(c)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	patientRef := "Patient/" + id
	if params.requester == "" || p != nil && p.Kind == auth.KindPatient {
		params.requester = patientRef
	}
	patient, err := s.cfg.Store.Read(ctx, "Patient", id)
	if err != nil {
		return err
	}
	for _, ref := range params.reasons {
		typ, rid, _ := strings.Cut(ref, "/")
		cond, err := s.cfg.Store.Read(ctx, typ, rid)
		if err != nil || !slices.Contains(s.decider.PatientsOf(cond), id) {
			return fhir.Errorf(http.StatusUnprocessableEntity, "not-found", []string{"Parameters.parameter[reason]"}, "reason %s is not a Condition of this patient", ref)
		}
	}
	// the named Consents: active, of this patient, and together covering
	// every recipient
	var consents []*fhir.Resource
	for _, ref := range params.consents {
		_, cid, _ := strings.Cut(ref, "/")
		cr, err := s.cfg.Store.Read(ctx, "Consent", cid)
		if err != nil {
			return fhir.Errorf(http.StatusUnprocessableEntity, "not-found", []string{"Parameters.parameter[consent]"}, "%s cannot be read", ref)
		}
		root := cr.Root()
		if root.Get("status").String() != "active" || root.Get("patient").Get("reference").String() != patientRef {
			return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Parameters.parameter[consent]"}, "%s is not an active Consent of this patient", ref)
		}
		a.consents[ref] = true
		consents = append(consents, cr)
	}
	named := consent.Compile(patientRef, consents, consent.Options{})
	now := s.now()
	recipientConsent := map[string]string{}
	for _, rc := range params.recipients {
		cands := named.Candidates(recipientRequest(rc, now))
		if len(cands) == 0 {
			return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Parameters.parameter[recipient]"}, "no active Consent given permits %s", rc)
		}
		recipientConsent[rc] = cands[0].Reference
	}
	record, err := s.readRecord(ctx, id, params.start, params.end)
	if err != nil {
		return err
	}
	base := s.baseURL(c.Request)
	req := referral.Request{
		Requisition: uuid.NewString(), Patient: patientRef, Requester: params.requester,
		Specialty: params.specialty, Question: params.question, Reasons: params.reasons, Due: params.due, Now: now,
	}
	var (
		writes []*fhir.Resource
		rcpts  []referral.Recipient
	)
	for _, rc := range params.recipients {
		// the package holds what the recipient itself would be released now
		rg := s.decider.RecordGuard(recipientPrincipal(rc), nil, id)
		var relErr error
		doc, err := referral.Summary(patient, record, referral.Options{
			Release: func(r *fhir.Resource) bool {
				ok, err := rg.Released(ctx, r)
				if err != nil && relErr == nil {
					relErr = err
				}
				return ok
			},
			Specialty: params.spec, Question: params.question, BaseURL: base, Now: now,
			Title:    "Second-opinion package for " + rc,
			Policies: []string{recipientConsent[rc]},
		})
		if relErr != nil {
			return relErr
		}
		if errors.Is(err, referral.ErrPatientWithheld) {
			return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Parameters.parameter[consent]"}, "the Consents do not release the Patient resource to %s", rc)
		}
		if err != nil {
			return err
		}
		writes = append(writes, doc.Bundle)
		rcpts = append(rcpts, referral.Recipient{Reference: rc, Package: "Bundle/" + doc.Bundle.ID, Consent: recipientConsent[rc]})
	}
	srID := s.newID()
	writes = append(writes, referral.ServiceRequest(srID, req, rcpts))
	var tasks []string
	for _, rc := range rcpts {
		t := referral.Task(s.newID(), "ServiceRequest/"+srID, req, rc)
		tasks = append(tasks, "Task/"+t.ID)
		writes = append(writes, t)
	}
	for _, w := range writes {
		if err := s.validateWrite(w, ""); err != nil {
			return err
		}
	}
	// the gateway files the request on the patient's behalf: what it
	// writes about nobody (its OperationDefinition) is its own
	ctx = release.Filing(ctx)
	err = s.cfg.Store.InTx(ctx, func(tx storage.Tx) error {
		_, err := tx.CreateMany(ctx, writes)
		return err
	})
	if err != nil {
		return err
	}
	out := map[string]any{"resourceType": "Parameters"}
	prm := []map[string]any{
		{"name": "requisition", "valueIdentifier": map[string]string{"system": referral.RequisitionSystem, "value": req.Requisition}},
		{"name": "serviceRequest", "valueReference": map[string]string{"reference": "ServiceRequest/" + srID}},
	}
	for i, t := range tasks {
		prm = append(prm, map[string]any{"name": "task", "valueReference": map[string]string{"reference": t}},
			map[string]any{"name": "package", "valueReference": map[string]string{"reference": rcpts[i].Package, "display": "for " + rcpts[i].Reference}})
	}
	out["parameter"] = prm
	b, _ := json.Marshal(out)
	s.writeJSON(c, http.StatusOK, b)
	return nil
}

// recipientRequest is the consent question "may this recipient access the
// record for treatment now?".
func recipientRequest(recipient string, now time.Time) consent.Request {
	return consent.Request{Actors: []string{recipient}, Action: consent.ActionAccess, Purpose: []consent.Coding{consent.Treatment}, Time: now}
}

// recipientPrincipal is the provider a second-opinion recipient would be
// when it fetches its package: a package holds what the release rule gives
// it.
func recipientPrincipal(rc string) *auth.Principal {
	p := &auth.Principal{Kind: auth.KindProvider, Scopes: auth.ParseScopes("system/*.rs")}
	if strings.HasPrefix(rc, "Practitioner/") {
		p.FHIRUser = rc
	} else {
		p.Organization = rc
	}
	return p
}

// readRecord reads the patient's compartment and what it refers to, in
// the care-date window (zero: open).
func (s *Server) readRecord(ctx context.Context, id string, start, end time.Time) ([]*fhir.Resource, error) {
	if !end.IsZero() {
		end = end.AddDate(0, 0, 1).Add(-time.Nanosecond)
	}
	req := storage.EverythingRequest{PatientID: id, Start: start, End: end, Count: everythingMaxCount}
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

// patientSummary answers GET|POST Patient/[id]/$summary: the IPS document
// built on the fly, holding what the caller may see (the patient its own
// record, a provider what Consents give it, a system client everything).
func (s *Server) patientSummary(c *gin.Context, _, id string) {
	if _, err := s.authorize(c, "operation", "summary", "Patient"); err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.resource = "Patient/" + id
	if p := principal(c); p != nil && p.Kind == auth.KindPatient && patientID(p) != id {
		a.refused = "another patient's record"
		s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only ask for its own summary"))
		return
	}
	ctx := c.Request.Context()
	patient, err := s.cfg.Store.Read(ctx, "Patient", id)
	if err != nil {
		s.failRead(c, nil, err, "Patient/"+id)
		return
	}
	narrate, err := s.summaryNarrate(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	record, err := s.readRecord(ctx, id, time.Time{}, time.Time{})
	if err != nil {
		s.fail(c, err)
		return
	}
	var relErr error
	doc, err := referral.Summary(patient, record, referral.Options{
		BaseURL: s.baseURL(c.Request), Now: s.now(), Narrate: narrate,
		Release: func(r *fhir.Resource) bool {
			ok, err := s.guard(c).Released(ctx, r)
			if err != nil && relErr == nil {
				relErr = err
			}
			return ok
		},
	})
	if relErr != nil {
		s.fail(c, relErr)
		return
	}
	if errors.Is(err, referral.ErrPatientWithheld) {
		a.refused = "no consent"
		s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "this token may not see Patient/%s", id))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeSummary(c, doc)
}

// isReferralTask reports whether r is a Task of a second-opinion request.
func isReferralTask(r *fhir.Resource) bool {
	if r == nil || r.Type != "Task" {
		return false
	}
	return r.Root().Get("groupIdentifier").Get("system").String() == referral.RequisitionSystem
}

// taskImmutable are the elements of a referral Task no update may change:
// they say what was asked, of whom, by whom.
var taskImmutable = []string{"groupIdentifier", "intent", "code", "focus", "for", "owner", "requester", "authoredOn", "input"}

// checkTaskUpdate applies the referral workflow to PUT Task/[id]: it
// reads the current version and checks the change.
func (s *Server) checkTaskUpdate(c *gin.Context, typ, id string, res *fhir.Resource) error {
	if typ != "Task" {
		return nil
	}
	cur, err := s.cfg.Store.Read(c.Request.Context(), typ, id)
	if err != nil {
		cur = nil // a create (or the store answers the error later)
	}
	return s.checkTaskTransition(c, cur, res)
}

// checkTaskPatch applies the referral workflow to PATCH Task/[id]: the
// patch is applied to the current version here to see the new state (the
// store applies it again inside its transaction).
func (s *Server) checkTaskPatch(c *gin.Context, typ, id string, doc []byte) error {
	if typ != "Task" {
		return nil
	}
	cur, err := s.cfg.Store.Read(c.Request.Context(), typ, id)
	if err != nil || !isReferralTask(cur) {
		return nil
	}
	ops, err := jsonpatch.Parse(doc)
	if err != nil {
		return nil // the patch path answers the malformed document
	}
	patched, err := jsonpatch.Apply(cur.Root(), ops)
	if err != nil {
		return nil
	}
	next, err := fhir.Parse(fjson.AppendCompact(nil, patched))
	if err != nil {
		return nil
	}
	return s.checkTaskTransition(c, cur, next)
}

// checkTaskTransition enforces the referral Task workflow on a change from
// old (nil: none) to next: requested → received → accepted | rejected →
// in-progress → completed, cancelled by the requester or the patient,
// failed by the owner; the BSeR businessStatus of each state; a completed
// Task has output; what was asked, of whom and by whom does not change.
// Violations answer 409 with an OperationOutcome; a party that is neither
// owner nor requester 403.
func (s *Server) checkTaskTransition(c *gin.Context, old, next *fhir.Resource) error {
	if !isReferralTask(old) {
		if isReferralTask(next) {
			if p := principal(c); p != nil && p.Kind != auth.KindSystem {
				return fhir.Errorf(http.StatusConflict, "business-rule", []string{"Task.groupIdentifier"}, "referral Tasks are created by Patient/[id]/$second-opinion")
			}
		}
		return nil
	}
	conflict := func(expr string, format string, args ...any) error {
		accessOf(c).refused = "illegal referral Task change"
		return fhir.Errorf(http.StatusConflict, "business-rule", []string{expr}, format, args...)
	}
	if next == nil || next.Type != "Task" {
		return conflict("Task", "a referral Task stays a Task")
	}
	or, nr := old.Root(), next.Root()
	for _, k := range taskImmutable {
		a, b := or.Get(k), nr.Get(k)
		if (a == nil) != (b == nil) || a != nil && !fjson.Equal(a, b) {
			return conflict("Task."+k, "Task.%s of a referral Task cannot change", k)
		}
	}
	party := s.taskParty(c, or)
	if party == 0 {
		accessOf(c).refused = "neither owner nor requester of the referral Task"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "only the owner or the requester of a referral Task may change it")
	}
	from, to := or.Get("status").String(), nr.Get("status").String()
	if err := referral.CheckTransition(from, to, party); err != nil {
		return conflict("Task.status", "%s", err.Error())
	}
	if err := referral.CheckBusinessStatus(to, bserCode(nr), bserCode(or)); err != nil {
		return conflict("Task.businessStatus", "%s", err.Error())
	}
	if to == "completed" && len(items(nr.Get("output"))) == 0 {
		return conflict("Task.output", "a completed referral Task points at the opinion in output")
	}
	return nil
}

// taskParty says which side of the Task the principal is on.
func (s *Server) taskParty(c *gin.Context, task *fjson.Value) referral.Party {
	p := principal(c)
	if p == nil || p.Kind == auth.KindSystem {
		return referral.Custodian
	}
	owner := task.Get("owner").Get("reference").String()
	requester := task.Get("requester").Get("reference").String()
	subject := task.Get("for").Get("reference").String()
	var party referral.Party
	switch p.Kind {
	case auth.KindProvider:
		actors := p.Actors()
		if owner != "" && slices.Contains(actors, owner) {
			party |= referral.Owner
		}
		if requester != "" && slices.Contains(actors, requester) {
			party |= referral.Requester
		}
	case auth.KindPatient:
		if p.Patient == subject || p.Patient == requester {
			party |= referral.Requester
		}
	}
	return party
}

func bserCode(task *fjson.Value) string {
	for _, c := range items(task.Get("businessStatus").Get("coding")) {
		if c.Get("system").String() == referral.BusinessStatusSystem {
			return c.Get("code").String()
		}
	}
	return ""
}

// referralPatients names the Patient of the two referral resources the
// R4 Patient compartment leaves out, so that release and checkWrite apply
// the Patient's Consents to them: a document Bundle (its Composition's
// subject: the packages) and a Task (its for).
func referralPatients(r *fhir.Resource) []string {
	var ref string
	switch r.Type {
	case "Task":
		ref = r.Root().Get("for").Get("reference").String()
	case "Bundle":
		if r.Root().Get("type").String() != "document" {
			return nil
		}
		first := items(r.Root().Get("entry"))
		if len(first) == 0 {
			return nil
		}
		res := first[0].Get("resource")
		if res.Get("resourceType").String() != "Composition" {
			return nil
		}
		ref = res.Get("subject").Get("reference").String()
	default:
		return nil
	}
	if i := strings.LastIndex(ref, "Patient/"); i >= 0 {
		if id := ref[i+len("Patient/"):]; fhir.ValidID(id) {
			return []string{"Patient/" + id}
		}
	}
	return nil
}
