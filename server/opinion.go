package server

import (
	"encoding/json"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/gin-gonic/gin"
)

// registerOpinions answers Task/[id]/$opinion and publishes the opinion
// profile and its CodeSystem (StructureDefinition/second-opinion,
// CodeSystem/second-opinion), served like the OperationDefinitions.
func (s *Server) registerOpinions() {
	s.RegisterOperation(Operation{
		Name: "opinion", Instance: true, Types: []string{"Task"},
		Def: OpDef{ID: "Task-opinion", Title: "Answer a second-opinion request",
			Description: "The body is the specialist's opinion: a document Bundle whose Composition follows the profile " + s.canonicalBase() + "/StructureDefinition/" + referral.OpinionProfileID +
				" (sections question, agreement, alternatives, plan, tests, urgency, comment of " + referral.OpinionSystem + "; event.detail names this Task and the package reviewed; attester the signing practitioner). " +
				"In one transaction the gateway validates and stores it, adds it to the Task's output and moves the Task: a final opinion completes it (BSeR 7.0), a preliminary one is an interim report (in-progress, BSeR 5.1.4). " +
				"The same can be done with POST Bundle and a PATCH of the Task; both pass the same checks.",
			Parameters: []OpParam{
				param("resource", "in", 1, "1", "Bundle", "The opinion document (or the request body itself)."),
				param("task", "out", 1, "1", "Reference", "The Task, as it now is.", "Task"),
				param("opinion", "out", 1, "1", "Reference", "The stored opinion document.", "Bundle"),
			}},
		Handler: s.submitOpinion,
	})
	s.RegisterOperation(Operation{
		Name: "opinions", Instance: true, Types: []string{"ServiceRequest"}, Idempotent: true,
		Def: OpDef{ID: "ServiceRequest-opinions", Title: "Compare the opinions of a second-opinion request",
			Description: "Every final opinion of the request's completed Tasks that the caller may see (the patient and the requester every one, a specialist its own, a system client what its scopes allow), " +
				"aligned section by section (question, agreement, alternatives, plan, tests, urgency, comment), with where they agree and differ on the agreement with the current diagnosis, the alternative diagnoses, the plan, the tests and the urgency. " +
				"Items are the same when they share a SNOMED CT, ICD-10, ICD-11, LOINC, RxNorm, ATC or CPT code, or, without one, the same text (case, spacing and punctuation aside). Interim reports are left out.",
			Parameters: []OpParam{
				param("request", "out", 1, "1", "Reference", "The ServiceRequest.", "ServiceRequest"),
				withParts(param("opinion", "out", 0, "*", "", "One opinion."),
					param("task", "out", 1, "1", "Reference", "The Task it answers.", "Task"),
					param("document", "out", 1, "1", "Reference", "The opinion document.", "Bundle"),
					param("status", "out", 1, "1", "code", "final or amended."),
					param("performer", "out", 0, "1", "Reference", "The specialist asked (Task.owner).", "Organization", "PractitionerRole"),
					param("attester", "out", 0, "1", "Reference", "The practitioner who signed.", "Practitioner", "PractitionerRole"),
					param("date", "out", 0, "1", "dateTime", "When it was written.")),
				withParts(param("section", "out", 0, "*", "", "One section, across the opinions."),
					param("code", "out", 1, "1", "Coding", "The section's code."),
					withParts(param("entry", "out", 0, "*", "", "What one opinion says in it."),
						param("document", "out", 1, "1", "Reference", "The opinion document.", "Bundle"),
						param("text", "out", 0, "1", "string", "The narrative as text."),
						param("item", "out", 0, "*", "CodeableConcept", "The coded (or text) items of its entries."))),
				withParts(param("comparison", "out", 0, "*", "", "One aspect: agreement, diagnosis, plan, tests or urgency."),
					param("aspect", "out", 1, "1", "code", "agreement | diagnosis | plan | tests | urgency"),
					param("verdict", "out", 1, "1", "code", "agree | differ | single"),
					withParts(param("shared", "out", 0, "*", "", "An item every opinion holds."),
						param("concept", "out", 1, "1", "CodeableConcept", ""), param("heldBy", "out", 1, "*", "Reference", "", "Bundle")),
					withParts(param("differing", "out", 0, "*", "", "An item some opinions hold."),
						param("concept", "out", 1, "1", "CodeableConcept", ""), param("heldBy", "out", 1, "*", "Reference", "", "Bundle"))),
			}},
		Handler: s.compareOpinions,
	})
	s.publish(referral.OpinionProfile(s.canonicalBase()), "StructureDefinition/"+referral.OpinionProfileID)
	s.publish(referral.OpinionCodeSystem(), "CodeSystem/second-opinion")
}

// publish adds a conformance resource the gateway serves by id (read
// only, not stored).
func (s *Server) publish(body []byte, ref string) {
	r, err := fhir.Parse(body)
	if err != nil {
		panic("server: published " + ref + " does not parse: " + err.Error())
	}
	if s.conformance == nil {
		s.conformance = map[string]*fhir.Resource{}
	}
	s.conformance[ref] = r.WithMeta(r.ID, "1", s.started)
}

// submitOpinion answers POST Task/[id]/$opinion.
func (s *Server) submitOpinion(c *gin.Context, _, id string) {
	if _, err := s.authorize(c, "update", "", "Task"); err != nil {
		s.fail(c, err)
		return
	}
	if _, err := s.authorize(c, "create", "", "Bundle"); err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.interaction, a.operation, a.resource = "operation", "opinion", "Task/"+id
	doc, err := s.readResource(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if doc.Type == "Parameters" {
		doc, err = parametersResource(doc, "resource")
		if err != nil {
			s.fail(c, err)
			return
		}
	}
	if err := s.validateWrite(doc, ""); err != nil {
		s.fail(c, err)
		return
	}
	out, err := s.referral.SubmitOpinion(c.Request.Context(), id, doc)
	if err != nil {
		s.fail(c, err)
		return
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []map[string]any{
		{"name": "task", "valueReference": map[string]string{"reference": "Task/" + out.Task.ID + "/_history/" + out.Task.VersionID}},
		{"name": "opinion", "valueReference": map[string]string{"reference": "Bundle/" + out.Opinion.ID + "/_history/" + out.Opinion.VersionID}},
	}})
	s.writeJSON(c, http.StatusOK, b)
}

// compareOpinions answers GET|POST ServiceRequest/[id]/$opinions, reading
// through the caller's release rule.
func (s *Server) compareOpinions(c *gin.Context, _, id string) {
	for _, need := range [][2]string{{"read", "ServiceRequest"}, {"search-type", "Task"}, {"read", "Bundle"}} {
		if _, err := s.authorize(c, need[0], "", need[1]); err != nil {
			s.fail(c, err)
			return
		}
	}
	a := accessOf(c)
	a.interaction, a.operation, a.resource = "operation", "opinions", "ServiceRequest/"+id
	cmp, err := s.referral.Opinions(c.Request.Context(), s.guard(c), id)
	if err != nil {
		s.failRead(c, nil, err, "ServiceRequest/"+id)
		return
	}
	b, err := cmp.Parameters()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, b)
}

// withParts gives a parameter its parts.
func withParts(p OpParam, parts ...OpParam) OpParam {
	p.Parts = parts
	return p
}

// parametersResource returns the resource of a Parameters' named part.
func parametersResource(p *fhir.Resource, name string) (*fhir.Resource, error) {
	for _, pm := range p.Root().Get("parameter").Elems() {
		if pm.Get("name").String() == name && pm.Get("resource") != nil {
			return fhir.FromValue(pm.Get("resource"))
		}
	}
	return nil, fhir.Errorf(http.StatusBadRequest, "required", []string{"Parameters.parameter[" + name + "]"}, "the Parameters carry no %s resource", name)
}
