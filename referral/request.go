package referral

import (
	"encoding/json"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Request is one second-opinion request, as the gateway records it.
type Request struct {
	// Requisition is the value of the requisition identifier
	// (RequisitionSystem) shared by the ServiceRequest and every Task.
	Requisition string
	// Patient ("Patient/x") the request is about.
	Patient string
	// Requester ("Patient/x", "Organization/y", …) who asks.
	Requester string
	// Specialty asked for, as sent (a CodeableConcept's JSON); nil: none.
	Specialty json.RawMessage
	// Question is the patient's question.
	Question string
	// Reasons are Condition references.
	Reasons []string
	// Due is the date the opinion is due (zero: none).
	Due time.Time
	// Now is when the request is made.
	Now time.Time
}

// Recipient is one addressee with its package and Consent.
type Recipient struct {
	// Reference ("Organization/x" or "PractitionerRole/y").
	Reference string
	// Package is "Bundle/id" of the recipient's package.
	Package string
	// Consent is "Consent/id", the Consent that covers the recipient.
	Consent string
	// Insurance ("Coverage/x", "ClaimResponse/y": the patient's coverage
	// and the pre-authorisation) of a second opinion from the recipient.
	Insurance []string
}

// ServiceRequest builds the referral order addressed to the recipients
// (intent order, referral category, supportingInfo the packages and
// Consents). id is its id.
func ServiceRequest(id string, req Request, rcpts []Recipient) *fhir.Resource {
	sr := map[string]any{
		"resourceType": "ServiceRequest", "id": id,
		"requisition": identifier{System: RequisitionSystem, Value: req.Requisition},
		"status":      "active", "intent": "order",
		"category":   []codeableConcept{concept(SNOMED, "3457005", "Patient referral")},
		"code":       concept(SNOMED, "183860000", "Referral for second opinion"),
		"subject":    reference{Reference: req.Patient},
		"authoredOn": fhir.FormatInstant(req.Now),
	}
	if req.Requester != "" {
		sr["requester"] = reference{Reference: req.Requester}
	}
	var perf, info []reference
	seen := map[string]bool{}
	for _, r := range rcpts {
		perf = append(perf, reference{Reference: r.Reference})
		for _, s := range []string{r.Package, r.Consent} {
			if s != "" && !seen[s] {
				seen[s] = true
				info = append(info, reference{Reference: s})
			}
		}
	}
	sr["performer"] = perf
	if len(info) > 0 {
		sr["supportingInfo"] = info
	}
	if len(req.Specialty) > 0 {
		sr["performerType"] = req.Specialty
	}
	var ins []reference
	for _, r := range rcpts {
		for _, i := range r.Insurance {
			if !seen[i] {
				seen[i] = true
				ins = append(ins, reference{Reference: i})
			}
		}
	}
	if len(ins) > 0 {
		sr["insurance"] = ins
	}
	if len(req.Reasons) > 0 {
		var rs []reference
		for _, r := range req.Reasons {
			rs = append(rs, reference{Reference: r})
		}
		sr["reasonReference"] = rs
	}
	if req.Question != "" {
		sr["note"] = []map[string]string{{"text": req.Question}}
	}
	if !req.Due.IsZero() {
		sr["occurrencePeriod"] = period{End: req.Due.Format("2006-01-02")}
	}
	return mustResource(sr)
}

// Task builds the workflow Task of one recipient: status requested, intent
// order, code fulfill, focus the ServiceRequest, owner the recipient,
// input the package, businessStatus BSeR 2.0.
func Task(id, serviceRequest string, req Request, r Recipient) *fhir.Resource {
	t := map[string]any{
		"resourceType": "Task", "id": id,
		"groupIdentifier": identifier{System: RequisitionSystem, Value: req.Requisition},
		"status":          "requested",
		"businessStatus":  concept(BusinessStatusSystem, "2.0", BusinessStatusDisplay["2.0"]),
		"intent":          "order",
		"code":            concept(TaskCodeSystem, "fulfill", "Fulfill the focal request"),
		"focus":           reference{Reference: serviceRequest},
		"for":             reference{Reference: req.Patient},
		"authoredOn":      fhir.FormatInstant(req.Now),
		"lastModified":    fhir.FormatInstant(req.Now),
		"owner":           reference{Reference: r.Reference},
		"input": []map[string]any{{
			"type":           codeableConcept{Text: "second-opinion package"},
			"valueReference": reference{Reference: r.Package},
		}},
	}
	if req.Requester != "" {
		t["requester"] = reference{Reference: req.Requester}
	}
	if req.Question != "" {
		t["description"] = req.Question
	}
	if len(r.Insurance) > 0 {
		var ins []reference
		for _, i := range r.Insurance {
			ins = append(ins, reference{Reference: i})
		}
		t["insurance"] = ins
	}
	if !req.Due.IsZero() {
		t["restriction"] = map[string]any{"period": period{End: req.Due.Format("2006-01-02")}}
	}
	return mustResource(t)
}

func mustResource(v any) *fhir.Resource {
	r, err := fhir.Parse(mustJSON(v))
	if err != nil {
		panic(err) // the gateway's own shapes always parse
	}
	return r
}
