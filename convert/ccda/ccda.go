// Package ccda converts C-CDA R2.1 documents into FHIR R4 resources.
//
// Convert turns the header (recordTarget with US Core race and ethnicity,
// author, custodian, the document's encounter) into Patient, Practitioner,
// Organization and Encounter, and the entries of every section of the
// templates CCD, Referral Note, Discharge Summary, Consultation Note and
// Progress Note use into resources, one per clinical statement: encounters
// (with their diagnoses), problems, past history and admission and
// discharge diagnoses and health concerns (Condition), medications and
// discharge medications (MedicationStatement), allergies, results
// (DiagnosticReport + Observation), vital signs, social history (birth sex
// onto the Patient), functional, mental and nutritional status, physical
// findings and advance directives (Observation), procedures, immunizations,
// plan of care and instructions (CarePlan with ServiceRequest,
// MedicationRequest and Goal), goals, payers (Coverage), medical equipment
// (Device + DeviceUseStatement), family history (FamilyMemberHistory) and
// reason for referral (ServiceRequest). A Composition holds every section
// with its narrative (sections made only of narrative included) and the
// resources its entries became; each resource keeps its entry's own
// narrative as its text. The original document is always kept as a Binary
// and a DocumentReference, and one Provenance names every converted
// resource as its target and the DocumentReference as its source. Every
// entry is accounted for in Result.Entries; what is not converted is
// reported as fhir.Issues, never dropped silently.
//
// Resources get ids derived from the document's bytes (so converting the same
// document twice gives the same ids) and reference each other as "Type/id";
// TransactionBundle turns them into a Bundle with urn:uuid fullUrls.
package ccda

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/convert/uscore"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// ContentType is the media type under which the original document is kept.
const ContentType = "application/cda+xml"

// FormatCode is the DocumentReference.content.format of a C-CDA R2.1
// document with a structured body (IHE format code).
const FormatCode = "urn:hl7-org:sdwg:ccda-structuredBody:2.1"

// formatSystem is the IHE format-code system.
const formatSystem = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"

// ErrNotCDA reports input that is not a CDA ClinicalDocument.
var ErrNotCDA = errors.New("ccda: not a CDA ClinicalDocument")

// Options tune a conversion.
type Options struct {
	// Now stamps Provenance.recorded and DocumentReference.date; time.Now when nil.
	Now func() time.Time
	// NewID assigns resource ids; ids derived from the document bytes when nil.
	NewID func() string
}

// Result is a converted document.
type Result struct {
	// Resources are every resource produced: the Patient first, then the
	// other header resources, the clinical resources, the Binary, the
	// DocumentReference and the Provenance last.
	Resources []*fhir.Resource
	// Issues report what was not converted, or converted with a loss.
	// Diagnostics may hold document content (patient data): never log them.
	Issues []fhir.Issue
	// PatientID is the id of the Patient made from recordTarget.
	PatientID string
	// DocumentReferenceID is the id of the DocumentReference keeping the original.
	DocumentReferenceID string
	// Subject is what recordTarget says about the patient, with paths into
	// the document, to check it against the Patient it is filed under.
	Subject subject.Demographics
	// Entries account for every entry of every section (and for every
	// section without entries), in document order.
	Entries []EntryAccount
}

// Outcome returns the issues as an OperationOutcome.
func (r *Result) Outcome() *fhir.OperationOutcome { return fhir.NewOutcome(r.Issues...) }

// Bundle returns the resources as a transaction Bundle (see TransactionBundle).
func (r *Result) Bundle() ([]byte, error) { return TransactionBundle(r.Resources) }

// section kinds converted.
const (
	kindEncounters   = "encounters"
	kindProblems     = "problems"
	kindMedications  = "medications"
	kindAllergies    = "allergies"
	kindResults      = "results"
	kindVitals       = "vital-signs"
	kindProcedures   = "procedures"
	kindImmunization = "immunizations"
	kindSocial       = "social-history"
)

// sectionKinds: templateId roots (with and without entries required) and the
// LOINC section code, from C-CDA R2.1 volume 2.
var sectionKinds = []struct {
	kind      string
	templates []string
	loinc     string
}{
	{kindEncounters, []string{"2.16.840.1.113883.10.20.22.2.22", "2.16.840.1.113883.10.20.22.2.22.1"}, "46240-8"},
	{kindProblems, []string{"2.16.840.1.113883.10.20.22.2.5", "2.16.840.1.113883.10.20.22.2.5.1"}, "11450-4"},
	{kindMedications, []string{"2.16.840.1.113883.10.20.22.2.1", "2.16.840.1.113883.10.20.22.2.1.1"}, "10160-0"},
	{kindAllergies, []string{"2.16.840.1.113883.10.20.22.2.6", "2.16.840.1.113883.10.20.22.2.6.1"}, "48765-2"},
	{kindResults, []string{"2.16.840.1.113883.10.20.22.2.3", "2.16.840.1.113883.10.20.22.2.3.1"}, "30954-2"},
	{kindVitals, []string{"2.16.840.1.113883.10.20.22.2.4", "2.16.840.1.113883.10.20.22.2.4.1"}, "8716-3"},
	{kindProcedures, []string{"2.16.840.1.113883.10.20.22.2.7", "2.16.840.1.113883.10.20.22.2.7.1"}, "47519-4"},
	{kindImmunization, []string{"2.16.840.1.113883.10.20.22.2.2", "2.16.840.1.113883.10.20.22.2.2.1"}, "11369-6"},
	{kindSocial, []string{"2.16.840.1.113883.10.20.22.2.17"}, "29762-2"},
}

// sectionKind names the converted kind of a <section> element ("problems",
// "results", …) by templateId, else by LOINC section code; "" for sections
// not converted.
func sectionKind(s *node) string {
	for _, k := range sectionKinds {
		if s.hasTemplate(k.templates...) {
			return k.kind
		}
	}
	code := s.child("code")
	if code != nil && code.attr("code") != "" {
		for _, k := range sectionKinds {
			if code.attr("code") == k.loinc {
				return k.kind
			}
		}
	}
	return ""
}

type converter struct {
	doc     []byte
	root    *node
	ids     map[string]*node
	now     time.Time
	newID   func() string
	issues  []fhir.Issue
	out     []pending
	targets []string // references of converted resources (Provenance targets)

	patientRef   obj
	patientID    string
	subject      subject.Demographics
	people       map[string]string // identifier key -> reference, to share Practitioners
	orgs         map[string]string
	authorRefs   []obj
	custodianRef obj
	noZone       int // timestamps with a time but no timezone, cut to their date

	encounterRef   obj // the document's encounter (componentOf)
	sections       []*compSection
	accounts       []EntryAccount
	planActivities []obj
	planGoals      []obj
	planTitle      string
	planText       string
	planAccount    []string // entries that went into the CarePlan only
	planSection    *compSection
	touched        []string // resources made earlier that the current entry added to
}

type pending struct {
	typ, id string
	body    obj
	where   string
	stmt    *node // the clinical statement it was made from, for its narrative
}

// Convert converts one C-CDA document. It fails only when the input is not a
// CDA document at all (ErrNotCDA, or an XML error); everything else is
// converted as far as possible and the rest reported in Result.Issues.
func Convert(doc []byte, opts Options) (*Result, error) {
	root, err := parseXML(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCDA, err)
	}
	if root.name != "ClinicalDocument" {
		return nil, fmt.Errorf("%w: document element is <%s>", ErrNotCDA, root.name)
	}
	c := &converter{doc: doc, root: root, ids: map[string]*node{}, people: map[string]string{}, orgs: map[string]string{}}
	c.now = time.Now()
	if opts.Now != nil {
		c.now = opts.Now()
	}
	c.newID = opts.NewID
	if c.newID == nil {
		c.newID = derivedIDs(doc)
	}
	indexIDs(root, c.ids)

	c.patient()
	c.header()
	body := root.path("component", "structuredBody")
	if body == nil {
		c.warn("not-supported", "document has no structuredBody; only the header was converted and the original kept", "ClinicalDocument/component")
	}
	for i, comp := range body.all("component") {
		if cs := c.section(comp.child("section"), fmt.Sprintf("ClinicalDocument/component/structuredBody/component[%d]/section", i+1), 0); cs != nil {
			c.sections = append(c.sections, cs)
		}
	}
	c.carePlan()
	docRefID := c.document()
	c.composition(docRefID)
	if c.noZone > 0 {
		c.info(fmt.Sprintf("%d timestamps had a time of day but no timezone; FHIR needs one, so they were kept to their date", c.noZone), "")
	}
	c.listUnconverted()
	c.provenance(docRefID)

	res := &Result{Issues: c.issues, PatientID: c.patientID, DocumentReferenceID: docRefID, Subject: c.subject, Entries: c.accounts}
	for _, p := range c.out {
		full := append(obj{{"resourceType", p.typ}, {"id", p.id}}, p.body...)
		v, err := fjson.Build(full)
		if err != nil {
			return nil, fmt.Errorf("ccda: %s: %w", p.typ, err)
		}
		r, err := fhir.FromValue(v)
		if err != nil {
			return nil, fmt.Errorf("ccda: %s: %w", p.typ, err)
		}
		res.Resources = append(res.Resources, r)
	}
	return res, nil
}

// derivedIDs returns an id generator seeded by the document, so re-importing
// the same document yields the same ids (UUID-shaped).
func derivedIDs(doc []byte) func() string {
	seed := sha256.Sum256(doc)
	var n uint64
	return func() string {
		n++
		var buf [40]byte
		copy(buf[:], seed[:])
		binary.BigEndian.PutUint64(buf[32:], n)
		h := sha256.Sum256(buf[:])
		h[6] = h[6]&0x0f | 0x50 // version 5 shape
		h[8] = h[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}
}

func (c *converter) issue(sev, code, text, where string) {
	is := fhir.Issue{Severity: sev, Code: code, Details: &fhir.IssueDetails{Text: text}}
	if where != "" {
		is.Expression = []string{where}
	}
	c.issues = append(c.issues, is)
}

func (c *converter) warn(code, text, where string) { c.issue(fhir.SeverityWarning, code, text, where) }
func (c *converter) info(text, where string) {
	c.issue(fhir.SeverityInformation, "informational", text, where)
}

// emit queues a resource and returns its reference object.
func (c *converter) emit(typ string, body obj, where string, target bool) obj {
	id := c.newID()
	c.out = append(c.out, pending{typ: typ, id: id, body: body, where: where})
	ref := typ + "/" + id
	if target {
		c.targets = append(c.targets, ref)
	}
	return obj{{"reference", ref}}
}

// emitStmt is emit for a resource made from the clinical statement st,
// whose narrative it will carry.
func (c *converter) emitStmt(st *node, typ string, body obj, where string, target bool) obj {
	ref := c.emit(typ, body, where, target)
	c.out[len(c.out)-1].stmt = st
	return ref
}

// --- header ---

func (c *converter) patient() {
	role := c.root.path("recordTarget", "patientRole")
	if len(c.root.all("recordTarget")) > 1 {
		c.warn("not-supported", "only the first recordTarget was converted", "ClinicalDocument/recordTarget[2]")
	}
	p := role.child("patient")
	c.demographics(role, p)
	body := obj{}.
		add("identifier", identifiers(role.all("id"))).
		add("name", names(p.all("name"))).
		add("telecom", telecoms(role.all("telecom"))).
		add("gender", gender(p.child("administrativeGenderCode")))
	if bt := p.child("birthTime"); bt != nil && bt.attr("value") != "" {
		dt, _, ok := DateTime(bt.attr("value"))
		if ok {
			if len(dt) > 10 {
				dt = dt[:10]
			}
			body = body.add("birthDate", dt)
		} else {
			c.warn("value", "unparseable birthTime dropped", "ClinicalDocument/recordTarget/patientRole/patient/birthTime")
		}
	}
	body = body.add("address", addresses(role.all("addr"))).
		add("maritalStatus", c.concept(p.child("maritalStatusCode")))
	var comms []obj
	for _, lc := range p.all("languageCommunication") {
		if code := lc.child("languageCode").attr("code"); code != "" {
			comms = append(comms, obj{{"language", obj{{"coding", []obj{{{"system", "urn:ietf:bcp:47"}, {"code", code}}}}}}})
		}
	}
	body = body.add("communication", comms)
	var exts []obj
	for _, e := range []struct {
		name string
		race bool
	}{{"raceCode", true}, {"ethnicGroupCode", false}} {
		var codes []uscore.Coding
		for _, n := range append(p.all(e.name), p.allSDTC(e.name)...) {
			if code := n.attr("code"); code != "" {
				sys := SystemURI(n.attr("codeSystem"))
				codes = append(codes, uscore.Coding{System: sys, Code: code, Display: n.attr("displayName")})
			} else if nf := n.attr("nullFlavor"); nf == "UNK" || nf == "ASKU" {
				codes = append(codes, uscore.Coding{System: uscore.NullFlavorSystem, Code: nf})
			}
		}
		var ext map[string]any
		if e.race {
			ext = uscore.Race(codes, "")
		} else {
			ext = uscore.Ethnicity(codes, "")
		}
		if ext != nil {
			exts = append(exts, fromMap(ext))
		}
	}
	if rel := c.concept(p.child("religiousAffiliationCode")); rel != nil {
		exts = append(exts, obj{{"url", "http://hl7.org/fhir/StructureDefinition/patient-religion"}, {"valueCodeableConcept", rel}})
	}
	if bp := p.path("birthplace", "place", "addr"); bp != nil {
		if a := addresses([]*node{bp}); len(a) > 0 {
			exts = append(exts, obj{{"url", "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"}, {"valueAddress", a[0]}})
		}
	}
	body = body.add("extension", exts)
	if role == nil {
		c.warn("required", "document has no recordTarget/patientRole; an empty Patient stands for the subject", "ClinicalDocument/recordTarget")
	}
	c.patientRef = c.emit("Patient", body, "ClinicalDocument/recordTarget", true)
	c.patientID = strings.TrimPrefix(c.patientRef[0].val.(string), "Patient/")
}

// demographics records what recordTarget says about the patient.
func (c *converter) demographics(role, p *node) {
	const base = "ClinicalDocument/recordTarget/patientRole"
	for i, n := range role.all("id") {
		if id := identifier(n); id != nil {
			sys, _ := id.get("system").(string)
			val, _ := id.get("value").(string)
			c.subject.Identifiers = append(c.subject.Identifiers, subject.Identifier{System: sys, Value: val, Path: fmt.Sprintf("%s/id[%d]", base, i+1)})
		}
	}
	for i, n := range p.all("name") {
		for _, hn := range names([]*node{n}) {
			nm := subject.Name{Path: fmt.Sprintf("%s/patient/name[%d]", base, i+1)}
			nm.Family, _ = hn.get("family").(string)
			nm.Given, _ = hn.get("given").([]string)
			nm.Text, _ = hn.get("text").(string)
			c.subject.Names = append(c.subject.Names, nm)
		}
	}
	if bt := p.child("birthTime"); bt != nil {
		if dt, _, ok := DateTime(bt.attr("value")); ok {
			c.subject.BirthDate = subject.Value{Value: dt[:min(len(dt), 10)], Path: base + "/patient/birthTime"}
		}
	}
	if g := p.child("administrativeGenderCode"); g != nil {
		c.subject.Gender = subject.Value{Value: gender(g), Path: base + "/patient/administrativeGenderCode"}
	}
}

func (c *converter) header() {
	for i, a := range c.root.all("author") {
		where := fmt.Sprintf("ClinicalDocument/author[%d]", i+1)
		aa := a.child("assignedAuthor")
		if person := aa.child("assignedPerson"); person != nil {
			c.authorRefs = append(c.authorRefs, c.practitioner(aa, where))
		} else if aa.child("assignedAuthoringDevice") != nil {
			c.info("authoring device not converted", where+"/assignedAuthor/assignedAuthoringDevice")
		}
		if org := aa.child("representedOrganization"); org != nil {
			ref := c.organization(org, where+"/assignedAuthor/representedOrganization")
			if ref != nil && aa.child("assignedPerson") == nil {
				c.authorRefs = append(c.authorRefs, ref)
			}
		}
	}
	if org := c.root.path("custodian", "assignedCustodian", "representedCustodianOrganization"); org != nil {
		c.custodianRef = c.organization(org, "ClinicalDocument/custodian")
	}
	if ee := c.root.path("componentOf", "encompassingEncounter"); ee != nil {
		c.documentEncounter(ee, "ClinicalDocument/componentOf/encompassingEncounter")
	}
}

func idKey(ids []*node) string {
	for _, id := range ids {
		if id.attr("nullFlavor") == "" && id.attr("root") != "" {
			return id.attr("root") + "|" + id.attr("extension")
		}
	}
	return ""
}

// practitioner converts an assignedAuthor/assignedEntity with its person,
// shared by identifier.
func (c *converter) practitioner(role *node, where string) obj {
	key := idKey(role.all("id"))
	if key != "" {
		if ref, ok := c.people[key]; ok {
			return obj{{"reference", ref}}
		}
	}
	body := obj{}.
		add("identifier", identifiers(role.all("id"))).
		add("name", names(role.child("assignedPerson").all("name"))).
		add("telecom", telecoms(role.all("telecom"))).
		add("address", addresses(role.all("addr")))
	ref := c.emit("Practitioner", body, where, true)
	if key != "" {
		c.people[key] = ref[0].val.(string)
	}
	return ref
}

func (c *converter) organization(org *node, where string) obj {
	key := idKey(org.all("id"))
	var name string
	for _, n := range org.all("name") {
		if t := n.textContent(); t != "" {
			name = t
			break
		}
	}
	if key == "" {
		key = "name|" + name
	}
	if ref, ok := c.orgs[key]; ok {
		return obj{{"reference", ref}}
	}
	body := obj{}.
		add("identifier", identifiers(org.all("id"))).
		add("name", name).
		add("telecom", telecoms(org.all("telecom"))).
		add("address", addresses(org.all("addr")))
	if len(body) == 0 {
		return nil
	}
	ref := c.emit("Organization", body, where, true)
	c.orgs[key] = ref[0].val.(string)
	return ref
}

var nameUses = map[string]string{"L": "official", "C": "official", "P": "nickname", "A": "nickname", "ASGN": "usual", "PHON": "anonymous"}

func names(ns []*node) []obj {
	var out []obj
	for _, n := range ns {
		if n.nullFlavored() {
			continue
		}
		var given, prefix, suffix []string
		family := ""
		for _, p := range n.children {
			t := p.textContent()
			if t == "" {
				continue
			}
			switch p.name {
			case "given":
				given = append(given, t)
			case "family":
				if family == "" {
					family = t
				}
			case "prefix":
				prefix = append(prefix, t)
			case "suffix":
				suffix = append(suffix, t)
			}
		}
		hn := obj{}.add("use", nameUses[n.attr("use")]).add("family", family).add("given", given).add("prefix", prefix).add("suffix", suffix)
		if family == "" && len(given) == 0 {
			hn = hn.add("text", n.textContent())
		}
		if len(hn) > 0 {
			out = append(out, hn)
		}
	}
	return out
}

var telecomUses = map[string]string{"HP": "home", "H": "home", "HV": "home", "WP": "work", "MC": "mobile", "PG": "mobile", "TMP": "temp", "BAD": "old"}

func telecoms(ns []*node) []obj {
	var out []obj
	for _, n := range ns {
		v := n.attr("value")
		if v == "" || n.attr("nullFlavor") != "" {
			continue
		}
		sys := "other"
		switch {
		case strings.HasPrefix(v, "tel:"):
			sys, v = "phone", strings.TrimPrefix(v, "tel:")
		case strings.HasPrefix(v, "mailto:"):
			sys, v = "email", strings.TrimPrefix(v, "mailto:")
		case strings.HasPrefix(v, "fax:"):
			sys, v = "fax", strings.TrimPrefix(v, "fax:")
		case strings.HasPrefix(v, "http:"), strings.HasPrefix(v, "https:"):
			sys = "url"
		}
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		use := ""
		for _, u := range strings.Fields(n.attr("use")) {
			if telecomUses[u] != "" {
				use = telecomUses[u]
				break
			}
		}
		out = append(out, obj{}.add("system", sys).add("value", v).add("use", use))
	}
	return out
}

var addrUses = map[string]string{"HP": "home", "H": "home", "HV": "home", "WP": "work", "TMP": "temp", "BAD": "old", "PST": "home"}

func addresses(ns []*node) []obj {
	var out []obj
	for _, n := range ns {
		if n.nullFlavored() {
			continue
		}
		var lines []string
		var city, state, zip, country, district string
		for _, p := range n.children {
			t := p.textContent()
			if t == "" || p.attr("nullFlavor") != "" {
				continue
			}
			switch p.name {
			case "streetAddressLine":
				lines = append(lines, t)
			case "city":
				city = t
			case "state":
				state = t
			case "postalCode":
				zip = t
			case "country":
				country = t
			case "county":
				district = t
			}
		}
		a := obj{}.add("use", addrUses[n.attr("use")]).add("line", lines).add("city", city).add("district", district).add("state", state).add("postalCode", zip).add("country", country)
		if len(lines) == 0 && city == "" && state == "" && zip == "" && country == "" {
			a = a.add("text", n.textContent())
		}
		if len(a) > 0 && !(len(a) == 1 && a[0].key == "use") {
			out = append(out, a)
		}
	}
	return out
}

func gender(n *node) string {
	if n == nil {
		return ""
	}
	if n.attr("nullFlavor") != "" {
		return "unknown"
	}
	switch strings.ToUpper(n.attr("code")) {
	case "M":
		return "male"
	case "F":
		return "female"
	case "UN":
		return "other"
	}
	return "unknown"
}

// --- original document and provenance ---

func (c *converter) document() string {
	bin := obj{}.add("contentType", ContentType).add("securityContext", c.patientRef).add("data", base64.StdEncoding.EncodeToString(c.doc))
	binRef := c.emit("Binary", bin, "", false)
	att := obj{}.add("contentType", ContentType).add("url", binRef[0].val).
		add("size", len(c.doc)).
		add("title", c.root.child("title").textContent())
	hash := sha1Base64(c.doc)
	att = att.add("hash", hash)
	if eff := c.ts(c.root.child("effectiveTime"), "ClinicalDocument/effectiveTime"); eff != "" {
		att = att.add("creation", eff)
	}
	var master obj
	if id := identifier(c.root.child("id")); id != nil {
		master = id
	}
	var authors []any
	for _, a := range c.authorRefs {
		authors = append(authors, a)
	}
	body := obj{}.
		add("masterIdentifier", master).
		add("status", "current").
		add("docStatus", "final").
		add("type", c.concept(c.root.child("code"))).
		add("subject", c.patientRef).
		add("date", c.now.UTC().Format(time.RFC3339)).
		add("author", authors).
		add("custodian", c.custodianRef)
	if conf := coding(c.root.child("confidentialityCode")); conf != nil {
		body = body.add("securityLabel", []obj{{{"coding", []obj{conf}}}})
	}
	body = body.add("content", []obj{{
		{"attachment", att},
		{"format", obj{{"system", formatSystem}, {"code", FormatCode}, {"display", "C-CDA R2.1 Structured Body"}}},
	}})
	ref := c.emit("DocumentReference", body, "", false)
	return strings.TrimPrefix(ref[0].val.(string), "DocumentReference/")
}

func (c *converter) provenance(docRefID string) {
	var targets []any
	for _, t := range c.targets {
		targets = append(targets, obj{{"reference", t}})
	}
	who := c.custodianRef
	if who == nil && len(c.authorRefs) > 0 {
		who = c.authorRefs[0]
	}
	if who == nil {
		who = c.patientRef
	}
	body := obj{}.
		add("target", targets).
		add("recorded", c.now.UTC().Format(time.RFC3339Nano)).
		add("activity", obj{{"coding", []obj{{{"system", "http://terminology.hl7.org/CodeSystem/v3-DataOperation"}, {"code", "CREATE"}}}}, {"text", "converted from C-CDA"}}).
		add("agent", []obj{{
			{"type", obj{{"coding", []obj{{{"system", "http://terminology.hl7.org/CodeSystem/provenance-participant-type"}, {"code", "author"}}}}}},
			{"who", who},
		}}).
		add("entity", []obj{{{"role", "source"}, {"what", obj{{"reference", "DocumentReference/" + docRefID}}}}})
	c.emit("Provenance", body, "", false)
}
