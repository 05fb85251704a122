package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Outcome is an AuditEvent.outcome code (http://hl7.org/fhir/audit-event-outcome).
type Outcome string

// The outcomes.
const (
	Success        Outcome = "0"  // the access happened
	MinorFailure   Outcome = "4"  // refused: the request was the client's fault (401, 403, 404, 4xx)
	SeriousFailure Outcome = "8"  // the gateway failed (5xx)
	MajorFailure   Outcome = "12" // the gateway became unavailable
)

// OutcomeForStatus maps an HTTP status to an outcome.
func OutcomeForStatus(status int) Outcome {
	switch {
	case status < 400:
		return Success
	case status < 500:
		return MinorFailure
	}
	return SeriousFailure
}

// Coding is a code in a code system (purpose of use).
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Event is what happened, in the gateway's terms; Build turns it into an
// AuditEvent. Nothing in it may be a resource body or a token: references,
// ids, codes and the request's query only.
type Event struct {
	// Interaction is the FHIR restful interaction: read, vread, update,
	// patch, delete, history-instance, history-type, history-system,
	// create, search-type, search-system, capabilities, transaction,
	// batch or operation.
	Interaction string
	// Operation names the operation when Interaction is "operation"
	// ("$everything").
	Operation string
	Recorded  time.Time
	Outcome   Outcome
	// OutcomeDesc says why a request was refused or failed, in words safe
	// to show the patient ("no consent", "insufficient scope").
	OutcomeDesc string

	// Who: the user or client that asked (Patient/…, Practitioner/…,
	// PractitionerRole/…, Organization/…; "" when only the client is
	// known), the OAuth client, the token's issuer and id (jti), and the
	// client's network address.
	Who           string
	ClientID      string
	Issuer        string
	TokenID       string
	ClientAddress string
	// OnBehalfOf is whom the requestor acted for: the Organization a
	// practitioner acts for, or the Patient a custodian wrote for.
	OnBehalfOf string
	// Origin names the system the data of an import came from (a pull
	// source, an ABDM HIP, the sender of an HL7 v2 message).
	Origin string
	// Purpose is the request's purpose of use.
	Purpose []Coding

	// Server is the gateway's base URL (source.site and the server agent).
	Server string

	// What: the resource acted on ("Observation/1", versioned or not; ""
	// for searches), more resources (the versions a write stored), the
	// type searched, the query string of a search, the patient whose data
	// it is, and the Consents that allowed it.
	Resource     string
	Resources    []string
	ResourceType string
	Query        string
	Patient      string
	Consents     []string
}

// Code systems used by the Basic Audit Log Patterns shape.
const (
	systemEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemInteraction = "http://hl7.org/fhir/restful-interaction"
	systemDCM         = "http://dicom.nema.org/resources/ontology/DCM"
	systemPartType    = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemEntityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	systemSourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemNetwork     = "http://hl7.org/fhir/network-type"
	systemResourceTyp = "http://hl7.org/fhir/resource-types"
)

var interactions = map[string]string{ // interaction -> action code
	"read": "R", "vread": "R", "history-instance": "R", "capabilities": "R",
	"history-type": "E", "history-system": "E", "search-type": "E", "search-system": "E",
	"create": "C", "update": "U", "patch": "U", "delete": "D",
	"transaction": "E", "batch": "E", "operation": "E",
}

// JSON shapes of the parts of an AuditEvent the gateway writes.
type (
	coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value"`
	}
	reference struct {
		Reference  string      `json:"reference,omitempty"`
		Type       string      `json:"type,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	network struct {
		Address string `json:"address"`
		Type    string `json:"type"`
	}
	extension struct {
		URL            string     `json:"url"`
		ValueReference *reference `json:"valueReference,omitempty"`
	}
	agent struct {
		Extension    []extension       `json:"extension,omitempty"`
		Type         *codeableConcept  `json:"type,omitempty"`
		Who          *reference        `json:"who,omitempty"`
		AltID        string            `json:"altId,omitempty"`
		Requestor    bool              `json:"requestor"`
		Policy       []string          `json:"policy,omitempty"`
		Network      *network          `json:"network,omitempty"`
		PurposeOfUse []codeableConcept `json:"purposeOfUse,omitempty"`
	}
	source struct {
		Site     string    `json:"site,omitempty"`
		Observer reference `json:"observer"`
		Type     []coding  `json:"type,omitempty"`
	}
	entity struct {
		What  *reference `json:"what,omitempty"`
		Type  *coding    `json:"type,omitempty"`
		Role  *coding    `json:"role,omitempty"`
		Query string     `json:"query,omitempty"`
	}
	auditEvent struct {
		ResourceType   string            `json:"resourceType"`
		Type           coding            `json:"type"`
		Subtype        []coding          `json:"subtype,omitempty"`
		Action         string            `json:"action,omitempty"`
		Recorded       string            `json:"recorded"`
		Outcome        string            `json:"outcome,omitempty"`
		OutcomeDesc    string            `json:"outcomeDesc,omitempty"`
		PurposeOfEvent []codeableConcept `json:"purposeOfEvent,omitempty"`
		Agent          []agent           `json:"agent"`
		Source         source            `json:"source"`
		Entity         []entity          `json:"entity,omitempty"`
	}
)

// Build returns the AuditEvent for e in the shape of IHE Basic Audit Log
// Patterns: type rest with the interaction as subtype; a client agent
// (DCM 110153, the OAuth client and its address), a server agent (DCM
// 110152, the gateway) and, when known, a user agent (IRCP, the requestor,
// with the token id as policy and the purpose of use); source the gateway;
// entities for the resource (or the query of a search), the patient
// (object-role 1) and each Consent that allowed the access. The event is
// not yet chained: pass it to Seal.
func Build(e Event) (*fhir.Resource, error) {
	body, err := buildJSON(&e)
	if err != nil {
		return nil, err
	}
	return fhir.Parse(body)
}

var errNoTime = errors.New("audit: the event has no time")

// KnownInteraction reports whether Build knows an interaction code.
func KnownInteraction(i string) bool { _, ok := interactions[i]; return ok }

func errUnknownInteraction(i string) error { return fmt.Errorf("audit: unknown interaction %q", i) }

// buildJSON is Build's JSON, starting with {"resourceType":"AuditEvent",.
func buildJSON(e *Event) ([]byte, error) {
	action, ok := interactions[e.Interaction]
	if !ok {
		return nil, errUnknownInteraction(e.Interaction)
	}
	if e.Recorded.IsZero() {
		return nil, errNoTime
	}
	if e.Outcome == "" {
		e.Outcome = Success
	}
	ae := auditEvent{
		ResourceType: "AuditEvent",
		Type:         coding{System: systemEventType, Code: "rest", Display: "Restful Operation"},
		Subtype:      []coding{{System: systemInteraction, Code: e.Interaction}},
		Action:       action,
		Recorded:     fhir.FormatInstant(e.Recorded),
		Outcome:      string(e.Outcome),
		OutcomeDesc:  e.OutcomeDesc,
	}
	if e.Operation != "" {
		op := "$" + strings.TrimPrefix(e.Operation, "$")
		ae.Subtype = append(ae.Subtype, coding{System: "urn:fhirgate:operation", Code: op})
	}
	var purposes []codeableConcept
	for _, p := range e.Purpose {
		purposes = append(purposes, codeableConcept{Coding: []coding{{System: p.System, Code: p.Code, Display: p.Display}}})
	}
	ae.PurposeOfEvent = purposes

	client := agent{
		Type:    &codeableConcept{Coding: []coding{{System: systemDCM, Code: "110153", Display: "Source Role ID"}}},
		Who:     &reference{Display: "unknown client"},
		AltID:   e.ClientID,
		Network: networkOf(e.ClientAddress),
	}
	if e.ClientID != "" {
		client.Who = &reference{Identifier: &identifier{System: e.Issuer, Value: e.ClientID}, Display: e.ClientID}
	}
	server := agent{
		Type:    &codeableConcept{Coding: []coding{{System: systemDCM, Code: "110152", Display: "Destination Role ID"}}},
		Who:     &reference{Display: cmpOr(e.Server, "fhirgate")},
		Network: networkOf(e.Server),
	}
	ae.Agent = []agent{client, server}
	var onBehalf []extension
	if e.OnBehalfOf != "" {
		onBehalf = []extension{{URL: OnBehalfOfURL, ValueReference: &reference{Reference: e.OnBehalfOf}}}
	}
	if e.Who != "" {
		user := agent{
			Type:         &codeableConcept{Coding: []coding{{System: systemPartType, Code: "IRCP", Display: "information recipient"}}},
			Extension:    onBehalf,
			Who:          &reference{Reference: e.Who},
			Requestor:    true,
			PurposeOfUse: purposes,
		}
		if e.TokenID != "" {
			user.Policy = []string{e.TokenID}
		}
		ae.Agent = append(ae.Agent, user)
	} else {
		// The client itself is the requestor.
		ae.Agent[0].Requestor = true
		if e.TokenID != "" {
			ae.Agent[0].Policy = []string{e.TokenID}
		}
		ae.Agent[0].PurposeOfUse = purposes
		ae.Agent[0].Extension = onBehalf
	}
	if e.Origin != "" {
		// where imported data came from: the source system
		ae.Agent = append(ae.Agent, agent{
			Type: &codeableConcept{Coding: []coding{{System: systemDCM, Code: "110153", Display: "Source Role ID"}}},
			Who:  &reference{Display: e.Origin},
		})
	}
	ae.Source = source{
		Site:     e.Server,
		Observer: reference{Display: cmpOr(e.Server, "fhirgate")},
		Type:     []coding{{System: systemSourceType, Code: "4", Display: "Application Server"}},
	}
	for _, r := range e.resources() {
		ae.Entity = append(ae.Entity, entity{
			What: &reference{Reference: r},
			Type: &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role: &coding{System: systemObjectRole, Code: "4", Display: "Domain Resource"},
		})
	}
	if e.Query != "" || strings.HasPrefix(e.Interaction, "search") {
		// sev-1 allows a name or a query, not both: the type searched goes
		// into the query ("Observation?code=...").
		q := e.Query
		if e.ResourceType != "" {
			q = e.ResourceType + "?" + q
		}
		ae.Entity = append(ae.Entity, entity{
			Type:  &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role:  &coding{System: systemObjectRole, Code: "24", Display: "Query"},
			Query: base64.StdEncoding.EncodeToString([]byte(q)),
		})
	}
	if e.Patient != "" {
		ae.Entity = append(ae.Entity, entity{
			What: &reference{Reference: e.Patient},
			Type: &coding{System: systemEntityType, Code: "1", Display: "Person"},
			Role: &coding{System: systemObjectRole, Code: "1", Display: "Patient"},
		})
	}
	for _, c := range e.Consents {
		ae.Entity = append(ae.Entity, entity{
			What: &reference{Reference: c},
			Type: &coding{System: systemResourceTyp, Code: "Consent", Display: "Consent"},
		})
	}
	body, err := json.Marshal(ae)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return body, nil
}

// OnBehalfOfURL is the extension on an agent naming whom it acted for.
const OnBehalfOfURL = "http://hl7.org/fhir/StructureDefinition/auditevent-OnBehalfOf"

// resources lists Resource and Resources without repeats (the patient
// itself, when it is also the resource read, is an entity of its own).
func (e *Event) resources() []string {
	var out []string
	if e.Resource != "" {
		out = append(out, e.Resource)
	}
	for _, r := range e.Resources {
		if r != "" && r != e.Resource {
			out = append(out, r)
		}
	}
	return out
}

func networkOf(addr string) *network {
	switch {
	case addr == "":
		return nil
	case strings.Contains(addr, "://"):
		return &network{Address: addr, Type: "5"} // URI
	}
	return &network{Address: addr, Type: "2"} // IP address
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
