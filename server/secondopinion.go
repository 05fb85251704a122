package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
	"github.com/gin-gonic/gin"
)

// Canonicals of the operations this file answers.
const (
	summaryDefinition = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
)

func (s *Server) registerSecondOpinion() {
	def := builtinDefs["second-opinion"]
	def.Parameters = append(slices.Clone(def.Parameters), coverageParam())
	s.RegisterOperation(Operation{
		Name:     "second-opinion",
		Instance: true, Types: []string{"Patient"},
		Def:     def,
		Handler: s.secondOpinion,
	})
	s.RegisterOperation(Operation{
		Name: "summary", Definition: summaryDefinition,
		Instance: true, Types: []string{"Patient"}, Idempotent: true,
		Handler: s.patientSummary,
	})
	if len(s.cfg.Payers) > 0 {
		s.RegisterOperation(Operation{
			Name: "coverage-check", Instance: true, Types: []string{"Patient"},
			Def: OpDef{ID: "Patient-coverage-check", Title: "Ask the patient's insurer whether a second opinion is covered",
				Description: "For each recipient, the gateway asks the insurer of the patient's Coverage (a configured payer source) with a CoverageEligibilityRequest ($submit) for the consultation benefit and, where the insurer requires it, submits a pre-authorisation Claim (use preauthorization); it records the requests and responses in the patient's record and answers what it learned, without opening a request. $second-opinion does the same before it sends. The patient itself or a system client may ask.",
				Parameters: []OpParam{
					param("recipient", "in", 1, "*", "Reference", "Who would be asked.", "Organization", "PractitionerRole"),
					param("reason", "in", 0, "*", "Reference", "The diagnoses the opinion is about (sent to the insurer).", "Condition"),
					coverageParam(),
				}},
			Handler: s.coverageCheck,
		})
	}
	s.AddCapabilities(func(cs *CapabilityStatement) {
		if r := cs.ResourceEntry("Task"); r != nil {
			r.Documentation = referral.StateMachine()
		}
	})
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

func (s *Server) readSecondOpinionParams(c *gin.Context) (*referral.OpenRequest, error) {
	r, err := s.readParameters(c, "$second-opinion takes a Parameters resource")
	if err != nil {
		return nil, err
	}
	out := &referral.OpenRequest{}
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
				if slices.Contains(out.Recipients, ref) {
					return nil, badParam(name, "recipient %s is named twice", ref)
				}
				out.Recipients = append(out.Recipients, ref)
			}
		case "consent":
			if res := p.Get("resource"); res != nil {
				// a draft, for preview=true: what the package would hold
				// under a Consent not yet given
				var d *fhir.Resource
				if d, err = fhir.FromValue(res); err == nil {
					out.Drafts = append(out.Drafts, d)
				} else {
					err = badParam(name, "consent resource: %v", err)
				}
				break
			}
			var ref string
			if ref, err = refOf(p, name, "Consent"); err == nil && !slices.Contains(out.Consents, ref) {
				out.Consents = append(out.Consents, ref)
			}
		case "preview":
			v := p.Get("valueBoolean")
			if v == nil || v.Kind != fjson.Bool {
				err = badParam(name, "preview must be a valueBoolean")
			} else {
				out.Preview = v.Bool()
			}
		case "reason":
			var ref string
			if ref, err = refOf(p, name, "Condition"); err == nil {
				out.Reasons = append(out.Reasons, ref)
			}
		case "requester":
			out.Requester, err = refOf(p, name, "Organization", "Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device")
		case "specialty":
			cc := p.Get("valueCodeableConcept")
			if cc == nil || cc.Kind != fjson.Object {
				return nil, badParam(name, "specialty must be a valueCodeableConcept")
			}
			out.Specialty = json.RawMessage(fjson.AppendCompact(nil, cc))
			for _, cd := range items(cc.Get("coding")) {
				if sp, ok := referral.LookupSpecialty(cd.Get("system").String(), cd.Get("code").String()); ok {
					out.Spec = sp
					break
				}
			}
		case "question":
			if out.Question = p.Get("valueString").String(); out.Question == "" {
				err = badParam(name, "question must be a non-empty valueString")
			}
		case "due":
			out.Due, err = date(p, name)
		case "start":
			out.Start, err = date(p, name)
		case "end":
			out.End, err = date(p, name)
		default:
			err = badParam(name, "$second-opinion has no parameter %q", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(out.Recipients) == 0 {
		return nil, badParam("recipient", "at least one recipient is required")
	}
	if len(out.Consents)+len(out.Drafts) == 0 {
		return nil, badParam("consent", "at least one consent is required")
	}
	if len(out.Drafts) > 0 && !out.Preview {
		return nil, badParam("consent", "a draft Consent (a resource) is only for preview=true: store the Consent, then name it")
	}
	if !out.Start.IsZero() && !out.End.IsZero() && out.End.Before(out.Start) {
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

// coverageParam describes the coverage answer of $coverage-check and
// $second-opinion.
func coverageParam() OpParam {
	return withParts(param("coverage", "out", 0, "*", "", "What the insurer said of one recipient."),
		param("recipient", "out", 1, "1", "Reference", "", "Organization", "PractitionerRole"),
		param("status", "out", 1, "1", "code", "covered | not-covered | unknown (the insurer could not be reached or said nothing usable) | no-coverage (none on file) | no-payer (the insurer is not connected)"),
		param("coverage", "out", 0, "1", "Reference", "The patient's Coverage asked about.", "Coverage"),
		param("payer", "out", 0, "1", "string", "The configured payer source."),
		param("inNetwork", "out", 0, "1", "boolean", "Whether the recipient is in the insurer's network, when it said."),
		param("preauthorization", "out", 0, "1", "code", "not-required | approved | pending | denied | unknown"),
		param("preAuthRef", "out", 0, "1", "string", "The insurer's pre-authorisation reference."),
		param("copay", "out", 0, "1", "Money", "The co-payment."),
		param("copayPercent", "out", 0, "1", "decimal", "The co-insurance, in percent."),
		param("deductibleRemaining", "out", 0, "1", "Money", "What remains of the deductible."),
		param("eligibilityRequest", "out", 0, "1", "Reference", "", "CoverageEligibilityRequest"),
		param("eligibilityResponse", "out", 0, "1", "Reference", "", "CoverageEligibilityResponse"),
		param("claim", "out", 0, "1", "Reference", "", "Claim"),
		param("claimResponse", "out", 0, "1", "Reference", "", "ClaimResponse"),
		param("message", "out", 1, "1", "string", "What it means, for the patient."))
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
	if err := referral.MayOpen(principal(c), id); err != nil {
		a.refused = "not the patient's own request"
		return err
	}
	params, err := s.readSecondOpinionParams(c)
	if err != nil {
		return err
	}
	params.PatientID, params.BaseURL = id, s.baseURL(c.Request)
	if params.Preview {
		return s.secondOpinionPreview(c, a, params)
	}
	out, err := s.referral.Open(c.Request.Context(), principal(c), a, *params)
	if err != nil {
		return err
	}
	prm := []map[string]any{
		{"name": "requisition", "valueIdentifier": map[string]string{"system": referral.RequisitionSystem, "value": out.Requisition}},
		{"name": "serviceRequest", "valueReference": map[string]string{"reference": out.ServiceRequest}},
	}
	for i, t := range out.Tasks {
		rc := out.Recipients[i]
		prm = append(prm, map[string]any{"name": "task", "valueReference": map[string]string{"reference": t}},
			map[string]any{"name": "package", "valueReference": map[string]string{"reference": rc.Package, "display": "for " + rc.Reference}})
	}
	for _, cc := range out.Coverage {
		prm = append(prm, cc.Parameter())
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": prm})
	s.writeJSON(c, http.StatusOK, b)
	return nil
}

// coverageCheck answers POST Patient/[id]/$coverage-check: the patient's
// insurer asked, for each recipient, whether a second opinion is covered,
// without opening a request.
func (s *Server) coverageCheck(c *gin.Context, _, id string) {
	if _, err := s.authorize(c, "operation", "second-opinion", "Patient"); err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.operation, a.resource = "coverage-check", "Patient/"+id
	if err := referral.MayOpen(principal(c), id); err != nil {
		a.refused = "not the patient's own request"
		s.fail(c, err)
		return
	}
	params, err := s.readParameters(c, "$coverage-check takes a Parameters resource")
	if err != nil {
		s.fail(c, err)
		return
	}
	var recipients, reasons []string
	for _, p := range items(params.Root().Get("parameter")) {
		name := p.Get("name").String()
		var ref string
		switch name {
		case "recipient":
			ref, err = refOf(p, name, "Organization", "PractitionerRole")
			recipients = append(recipients, ref)
		case "reason":
			ref, err = refOf(p, name, "Condition")
			reasons = append(reasons, ref)
		default:
			err = badParam(name, "$coverage-check has no parameter %q", name)
		}
		if err != nil {
			s.fail(c, err)
			return
		}
	}
	checks, err := s.referral.CheckCoverage(c.Request.Context(), principal(c), a, id, recipients, reasons, s.baseURL(c.Request))
	if err != nil {
		s.fail(c, err)
		return
	}
	prm := []any{}
	for _, cc := range checks {
		prm = append(prm, cc.Parameter())
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": prm})
	s.writeJSON(c, http.StatusOK, b)
}

// secondOpinionPreview answers $second-opinion with preview=true: the
// package each recipient would receive, under the Consents named and the
// drafts given, built by the same release rule; nothing is stored.
func (s *Server) secondOpinionPreview(c *gin.Context, a release.Recorder, params *referral.OpenRequest) error {
	accessOf(c).operation = "second-opinion (preview)"
	out, err := s.referral.Preview(c.Request.Context(), principal(c), a, *params)
	if err != nil {
		return err
	}
	b := []byte(`{"resourceType":"Parameters","parameter":[`)
	for i, pv := range out {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"preview","part":[{"name":"recipient","valueReference":{"reference":`...)
		b = fjson.AppendString(b, pv.Recipient)
		b = append(b, `}},{"name":"package","resource":`...)
		b = append(b, pv.Package.Raw...)
		b = append(b, "}]}"...)
	}
	b = append(b, "]}"...)
	s.writeJSON(c, http.StatusOK, b)
	return nil
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
	record, err := s.referral.Record(ctx, id, time.Time{}, time.Time{})
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
