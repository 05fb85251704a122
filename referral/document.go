package referral

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/referral/knowledge"
	relrule "github.com/fhirgate/fhirgate/release"
	"github.com/google/uuid"
)

// Code systems and canonical URLs the documents use.
const (
	LOINC  = "http://loinc.org"
	SNOMED = "http://snomed.info/sct"
	// CaseSummarySystem codes the computed case-summary sections, which
	// IPS does not define.
	CaseSummarySystem = "https://fhirgate.org/fhir/CodeSystem/case-summary"
	// DocumentIdentifierSystem is the system of Bundle.identifier.
	DocumentIdentifierSystem = "urn:ietf:rfc:3986"
	// PatientSummaryType is LOINC 60591-5, the IPS document type.
	PatientSummaryType = "60591-5"
	listEmptyReason    = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
	confidentiality    = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

// Section codes: the IPS sections (LOINC) and the computed ones.
const (
	SectionProblems        = "11450-4"
	SectionMedications     = "10160-0"
	SectionAllergies       = "48765-2"
	SectionResults         = "30954-2"
	SectionVitalSigns      = "8716-3"
	SectionProcedures      = "47519-4"
	SectionImmunizations   = "11369-6"
	SectionImaging         = "18748-4"
	SectionSocialHistory   = "29762-2"
	SectionPlanOfCare      = "18776-5"
	SectionPayers          = "48768-6"
	SectionReasonReferral  = "42349-1"
	SectionDocuments       = "documents"
	SectionAbnormal        = "abnormal-results"
	SectionCompleteness    = "completeness"
	SectionTimeline        = "encounter-timeline"
	SectionActiveMedicines = "active-medications"
	SectionTrends          = "trends"
	SectionRisks           = "risks"
	SectionMissingTests    = "missing-tests"
	SectionDraft           = "machine-written-narrative"
)

// Options shape a document.
type Options struct {
	// Release decides whether a resource may go into the document (the
	// consent filter for the recipient); nil releases everything. The
	// Patient itself must be released.
	Release func(*fhir.Resource) bool
	// Specialty adds the completeness check for it; nil: none.
	Specialty *Specialty
	// Question is the patient's question, given its own section.
	Question string
	// Title is the Composition title; a default names the patient summary.
	Title string
	// BaseURL makes fullUrls of the stored resources ("https://gw/fhir");
	// required.
	BaseURL string
	// Now is the document's timestamp; time.Now when zero.
	Now time.Time
	// NewID names the document, its Composition, Device and Provenance;
	// random UUIDs when nil. It must return UUIDs (they form urn:uuid
	// fullUrls).
	NewID func() string
	// Policies are the Consents ("Consent/x") the release applied,
	// recorded in the Provenance.
	Policies []string
	// Knowledge judges the record; nil: knowledge.Builtin().
	Knowledge *knowledge.Base
	// Narrate, when set, is asked for a machine-written narrative of the
	// computed case summary (see package referral/drafting); the answer
	// is shown in its own section labelled as such and authored by its
	// own Device, and never replaces a computed section. nil: none.
	Narrate func(*CaseSummary) *Draft
}

// Draft is a narrative a text model wrote from the structured summary.
type Draft struct {
	Text string
	// Error says why no draft could be had (the section then says so).
	Error string
	// Model names the model and Endpoint the service's host, for the
	// label and the section's authoring Device.
	Model, Endpoint string
}

// Document is a built document Bundle and what went into it.
type Document struct {
	Bundle *fhir.Resource
	// Summary is the computed case summary, over the released resources.
	Summary CaseSummary
	// Included are the released resources in the document (Patient first).
	Included []*fhir.Resource
	// Withheld counts the resources the release refused.
	Withheld int

	composition *fjson.Value
}

// ErrPatientWithheld means the release refused the Patient: there can be
// no document.
var ErrPatientWithheld = errors.New("the Patient resource is not released")

// sectionDef is one IPS-style section and the resources it takes.
type sectionDef struct {
	code, system, title string
	required            bool // IPS: present even when empty, with emptyReason
}

var ipsSections = []sectionDef{
	{SectionProblems, LOINC, "Problem list", true},
	{SectionAllergies, LOINC, "Allergies and intolerances", true},
	{SectionMedications, LOINC, "Medication summary", true},
	{SectionImmunizations, LOINC, "Immunizations", true},
	{SectionResults, LOINC, "Results", true},
	{SectionVitalSigns, LOINC, "Vital signs", true},
	{SectionProcedures, LOINC, "History of procedures", true},
	{SectionImaging, LOINC, "Diagnostic imaging", true},
	{SectionSocialHistory, LOINC, "Social history", false},
	{SectionPlanOfCare, LOINC, "Plan of care", false},
	{SectionPayers, LOINC, "Payers", false},
	{SectionDocuments, CaseSummarySystem, "Documents", true},
}

// sectionOf places a resource in an IPS section ("" for none: it is in
// the document only if another section refers to it).
func sectionOf(r *fhir.Resource) string {
	switch r.Type {
	case "Condition":
		return SectionProblems
	case "AllergyIntolerance":
		return SectionAllergies
	case "MedicationRequest", "MedicationStatement":
		return SectionMedications
	case "Immunization":
		return SectionImmunizations
	case "DiagnosticReport":
		return SectionResults
	case "ImagingStudy":
		return SectionImaging
	case "Procedure":
		return SectionProcedures
	case "CarePlan":
		return SectionPlanOfCare
	case "Coverage":
		return SectionPayers
	case "DocumentReference":
		return SectionDocuments
	case "Observation":
		for _, cat := range items(r.Root().Get("category")) {
			for _, c := range items(cat.Get("coding")) {
				switch c.Get("code").String() {
				case "vital-signs":
					return SectionVitalSigns
				case "social-history":
					return SectionSocialHistory
				}
			}
		}
		return SectionResults
	case "Encounter":
		return SectionTimeline
	case "Medication", "Device", "Practitioner", "PractitionerRole", "Organization", "Specimen":
		return "support"
	}
	return ""
}

// Summary builds the patient's document Bundle (type document) whose first
// entry is a Composition following the IPS sections, with the computed
// case summary as further sections of the same Composition, the released
// resources, the assembling Device and a Provenance. Patient/$summary is
// Summary without a specialty or question; a second-opinion package is
// Summary with them and the recipient's consent filter.
func Summary(patient *fhir.Resource, resources []*fhir.Resource, opts Options) (*Document, error) {
	if patient == nil || patient.Type != "Patient" {
		return nil, errors.New("referral: a Patient is required")
	}
	if opts.BaseURL == "" {
		return nil, errors.New("referral: Options.BaseURL is required")
	}
	release := opts.Release
	if release == nil {
		release = func(*fhir.Resource) bool { return true }
	}
	if !release(patient) {
		return nil, ErrPatientWithheld
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	newID := opts.NewID
	if newID == nil {
		newID = func() string { return uuid.NewString() }
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	doc := &Document{Included: []*fhir.Resource{patient}}
	seen := map[string]bool{"Patient/" + patient.ID: true}
	bySection := map[string][]*fhir.Resource{}
	for _, r := range resources {
		key := r.Type + "/" + r.ID
		if seen[key] {
			continue
		}
		sec := sectionOf(r)
		if sec == "" {
			continue
		}
		seen[key] = true
		if !release(r) {
			doc.Withheld++
			continue
		}
		doc.Included = append(doc.Included, r)
		bySection[sec] = append(bySection[sec], r)
	}
	doc.Included = referencedSupport(doc.Included)
	doc.Summary = Analyze(doc.Included, AnalyzeOptions{Specialty: opts.Specialty, Now: now, Knowledge: opts.Knowledge})
	byRef := doc.Summary.byRef

	ref := func(r *fhir.Resource) reference { return reference{Reference: r.Type + "/" + r.ID} }
	refs := func(rs []*fhir.Resource) []reference {
		out := make([]reference, len(rs))
		for i, r := range rs {
			out[i] = ref(r)
		}
		return out
	}
	var sections []section
	if opts.Question != "" {
		sections = append(sections, section{
			Title: "Reason for referral", Code: concept(LOINC, SectionReasonReferral, "Reason for referral"),
			Text: narrative("<p>" + html.EscapeString(opts.Question) + "</p>"),
		})
	}
	for _, def := range ipsSections {
		rs := bySection[def.code]
		if len(rs) == 0 && !def.required {
			continue
		}
		sections = append(sections, listSection(def.title, concept(def.system, def.code, def.title), rs, refs, func(r *fhir.Resource) string { return describe(r, byRef) }))
	}
	docID, compID, devID, provID := newID(), newID(), newID(), newID()
	cb := caseBuilder{cs: &doc.Summary, kb: opts.Knowledge, newID: newID, now: now, patient: ref(patient), device: reference{Reference: "urn:uuid:" + devID}, byRef: byRef, release: opts.Release}
	if cb.kb == nil {
		cb.kb = knowledge.Builtin()
	}
	var draft *Draft
	if opts.Narrate != nil {
		draft = opts.Narrate(&doc.Summary)
	}
	sections = append(sections, cb.sections(draft)...)
	title := opts.Title
	if title == "" {
		title = "Patient summary"
	}
	comp := composition{
		ResourceType: "Composition", ID: compID,
		Text:       narrative("<p>" + html.EscapeString(title) + ", assembled by fhirgate on " + html.EscapeString(HumanDate(now.UTC())) + ".</p>" + cb.overview()),
		Identifier: &identifier{System: DocumentIdentifierSystem, Value: "urn:uuid:" + docID},
		Status:     "final", Type: concept(LOINC, PatientSummaryType, "Patient summary Document"),
		Subject: ref(patient), Date: fhir.FormatInstant(now),
		Author: []reference{{Reference: "urn:uuid:" + devID}}, Title: title,
		Confidentiality: highWater(doc.Included),
		Event: []event{{
			Code:   []codeableConcept{concept("http://terminology.hl7.org/CodeSystem/v3-ActClass", "PCPR", "care provision")},
			Period: &period{End: fhir.FormatInstant(now)},
		}},
		Section: sections,
	}
	device := map[string]any{
		"resourceType": "Device", "id": devID,
		"deviceName": []map[string]string{{"name": "fhirgate", "type": "user-friendly-name"}},
	}
	prov := map[string]any{
		"resourceType": "Provenance", "id": provID,
		"target":   []reference{{Reference: "urn:uuid:" + compID}},
		"recorded": fhir.FormatInstant(now),
		"activity": concept("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "CREATE", "create"),
		"agent": []map[string]any{{
			"type": concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "assembler", "Assembler"),
			"who":  reference{Reference: "urn:uuid:" + devID},
		}},
	}
	if len(opts.Policies) > 0 {
		pol := make([]string, len(opts.Policies))
		for i, p := range opts.Policies {
			pol[i] = base + "/" + p
		}
		prov["policy"] = pol
	}
	compJSON := mustJSON(comp)
	entries := []entry{{FullURL: "urn:uuid:" + compID, Resource: compJSON}}
	for _, r := range doc.Included {
		entries = append(entries, entry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: json.RawMessage(r.Raw)}) // as stored: meta.versionId says which snapshot
	}
	entries = append(entries, cb.entries...)
	entries = append(entries, entry{FullURL: "urn:uuid:" + devID, Resource: mustJSON(device)}, entry{FullURL: "urn:uuid:" + provID, Resource: mustJSON(prov)})
	b := bundle{
		ResourceType: "Bundle", ID: docID,
		Meta: &meta{Security: labels(doc.Included, comp.Confidentiality),
			Tag: []coding{{System: relrule.AssembledSystem, Code: relrule.AssembledCode, Display: "assembled by the gateway"}}},
		Identifier: identifier{System: DocumentIdentifierSystem, Value: "urn:uuid:" + docID},
		Type:       "document", Timestamp: fhir.FormatInstant(now),
	}
	doc.Bundle = &fhir.Resource{Type: "Bundle", ID: docID, Raw: assemble(b, entries)}
	root, err := fjson.Parse(compJSON)
	if err != nil {
		return nil, fmt.Errorf("referral: built Composition does not parse: %w", err)
	}
	doc.composition = root
	return doc, nil
}

// assemble writes the Bundle's JSON. The entries' resources are written
// as they are: the stored ones are compact JSON already (the store keeps
// what fhir.Parse compacted) and the gateway's own come from
// encoding/json, so neither is re-encoded or re-parsed; for the largest
// Synthea patient that halves the cost of a summary.
func assemble(b bundle, entries []entry) []byte {
	head := mustJSON(b) // {"resourceType":…,"timestamp":"…"}
	size := len(head) + 16
	for _, e := range entries {
		size += len(e.FullURL) + len(e.Resource) + 32
	}
	out := make([]byte, 0, size)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"entry":[`...)
	for i, e := range entries {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"fullUrl":`...)
		out = fjson.AppendString(out, e.FullURL)
		out = append(out, `,"resource":`...)
		out = append(out, e.Resource...)
		out = append(out, '}')
	}
	return append(out, "]}"...)
}

func listSection(title string, code codeableConcept, rs []*fhir.Resource, refs func([]*fhir.Resource) []reference, label func(*fhir.Resource) string) section {
	s := section{Title: title, Code: code}
	if len(rs) == 0 {
		s.Text = narrative("<p>No information available.</p>")
		s.EmptyReason = &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
		return s
	}
	var sb strings.Builder
	sb.WriteString("<ul>")
	for _, r := range rs {
		sb.WriteString("<li>")
		sb.WriteString(html.EscapeString(label(r)))
		sb.WriteString("</li>")
	}
	sb.WriteString("</ul>")
	s.Text = narrative(sb.String())
	s.Entry = refs(rs)
	return s
}

// confidentiality ranks, lowest first: the document carries the highest
// of its entries (N when none says).
var confRank = map[string]int{"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5}

func highWater(rs []*fhir.Resource) string {
	best := "N"
	for _, r := range rs {
		for _, c := range items(r.Root().Get("meta").Get("security")) {
			if c.Get("system").String() != confidentiality {
				continue
			}
			if code := c.Get("code").String(); confRank[code] > confRank[best] {
				best = code
			}
		}
	}
	return best
}

// labels is the Bundle's meta.security: the confidentiality high-water
// mark and every other label an entry carries, so that a policy that
// withholds data so labelled withholds the whole package too.
func labels(rs []*fhir.Resource, conf string) []coding {
	out := []coding{{System: confidentiality, Code: conf}}
	seen := map[coding]bool{}
	for _, r := range rs {
		for _, c := range items(r.Root().Get("meta").Get("security")) {
			k := coding{System: c.Get("system").String(), Code: c.Get("code").String()}
			if k.Code == "" || k.System == confidentiality || seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// The JSON shapes of what the gateway authors.
type (
	coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	reference struct {
		Reference string `json:"reference,omitempty"`
		Display   string `json:"display,omitempty"`
	}
	identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	}
	period struct {
		Start string `json:"start,omitempty"`
		End   string `json:"end,omitempty"`
	}
	narrativeT struct {
		Status string `json:"status"`
		Div    string `json:"div"`
	}
	meta struct {
		Security []coding `json:"security,omitempty"`
		Tag      []coding `json:"tag,omitempty"`
	}
	section struct {
		Title       string           `json:"title"`
		Code        codeableConcept  `json:"code"`
		Author      []reference      `json:"author,omitempty"`
		Text        narrativeT       `json:"text"`
		Entry       []reference      `json:"entry,omitempty"`
		EmptyReason *codeableConcept `json:"emptyReason,omitempty"`
	}
	event struct {
		Code   []codeableConcept `json:"code,omitempty"`
		Period *period           `json:"period,omitempty"`
	}
	composition struct {
		ResourceType    string          `json:"resourceType"`
		ID              string          `json:"id"`
		Text            narrativeT      `json:"text"`
		Identifier      *identifier     `json:"identifier,omitempty"`
		Status          string          `json:"status"`
		Type            codeableConcept `json:"type"`
		Subject         reference       `json:"subject"`
		Date            string          `json:"date"`
		Author          []reference     `json:"author"`
		Title           string          `json:"title"`
		Confidentiality string          `json:"confidentiality,omitempty"`
		Event           []event         `json:"event,omitempty"`
		Section         []section       `json:"section"`
	}
	entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	bundle struct {
		ResourceType string     `json:"resourceType"`
		ID           string     `json:"id,omitempty"`
		Meta         *meta      `json:"meta,omitempty"`
		Identifier   identifier `json:"identifier"`
		Type         string     `json:"type"`
		Timestamp    string     `json:"timestamp"`
	}
)

func concept(system, code, display string) codeableConcept {
	return codeableConcept{Coding: []coding{{System: system, Code: code, Display: display}}}
}

func narrative(xhtml string) narrativeT {
	return narrativeT{Status: "generated", Div: `<div xmlns="http://www.w3.org/1999/xhtml">` + xhtml + `</div>`}
}

// mustJSON marshals the gateway's own shapes, which cannot fail.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// referencedSupport keeps the supporting resources (Organization,
// Practitioner, Medication, ...) that an included entry refers to,
// directly or through other supporting resources, and drops the others: a
// document's entries are all reachable from its Composition (the HL7
// validator rejects an unreferenced entry), and an insurer or clinician
// that nothing in the package mentions is not the recipient's business.
func referencedSupport(included []*fhir.Resource) []*fhir.Resource {
	keep := make(map[*fhir.Resource]bool, len(included))
	byKey := make(map[string]*fhir.Resource, len(included))
	var queue []*fhir.Resource
	for _, r := range included {
		byKey[r.Type+"/"+r.ID] = r
		if sectionOf(r) != "support" {
			keep[r] = true
			queue = append(queue, r)
		}
	}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		refs(r.Root(), func(ref string) {
			if t := byKey[refKey(ref)]; t != nil && !keep[t] {
				keep[t] = true
				queue = append(queue, t)
			}
		})
	}
	out := included[:0]
	for _, r := range included {
		if keep[r] {
			out = append(out, r)
		}
	}
	return out
}

// refs calls f with every Reference.reference under v.
func refs(v *fjson.Value, f func(string)) {
	switch v.Kind {
	case fjson.Object:
		for _, m := range v.Members {
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				f(m.Value.Str)
			} else {
				refs(m.Value, f)
			}
		}
	case fjson.Array:
		for _, it := range v.Items {
			refs(it, f)
		}
	}
}

// refKey is the Type/id a relative or RESTful absolute reference names.
func refKey(ref string) string {
	ref, _, _ = strings.Cut(ref, "/_history/")
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}
