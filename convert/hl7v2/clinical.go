package hl7v2

import (
	"strings"
)

// --- AL1, IAM: allergies (IG AL1[AllergyIntolerance], IAM[AllergyIntolerance]) ---

// allergenTypes maps HL7 table 0127 to AllergyIntolerance category and type.
var allergenTypes = map[string][2]string{
	"DA": {"medication", "allergy"}, "FA": {"food", "allergy"}, "EA": {"environment", "allergy"},
	"AA": {"environment", "allergy"}, "PA": {"environment", "allergy"}, "LA": {"environment", "allergy"},
	"MA": {"", "allergy"}, "MC": {"", ""}, "DI": {"medication", "intolerance"}, "FI": {"food", "intolerance"},
}

// allergySeverity maps HL7 table 0128 to criticality.
var allergySeverity = map[string]string{"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}

func (c *converter) allergy(typ, allergen, severity Repetition, reactions Field) map[string]any {
	a := obj("patient", c.patient,
		"clinicalStatus", cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"))
	code := concept(allergen)
	if len(code) == 0 {
		c.warn("incomplete", "allergy without an allergen code; recorded as unknown", c.where(3))
		code = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	a["code"] = code
	if t := strings.ToUpper(typ.Comp(1)); t != "" {
		if m, ok := allergenTypes[t]; ok {
			if m[0] != "" {
				a["category"] = []string{m[0]}
			}
			put(a, "type", m[1])
		}
	}
	if sv := strings.ToUpper(severity.Comp(1)); sv != "" {
		put(a, "criticality", allergySeverity[sv])
	}
	for _, r := range reactions {
		if t := strings.Join(nonEmptyAll(r), " "); t != "" {
			appendTo(a, "reaction", obj("manifestation", []any{firstConcept(r, t)}))
		}
	}
	return a
}

// firstConcept is the concept of a CWE repetition, or text when it was
// sent as plain text.
func firstConcept(r Repetition, text string) map[string]any {
	if r.Comp(3) != "" || r.Comp(2) != "" {
		return concept(r)
	}
	return obj("text", text)
}

func (c *converter) al1(s *Segment) {
	if c.patient == nil {
		c.skip("AL1 without PID")
		return
	}
	a := c.allergy(s.Field(2).Rep(0), s.Field(3).Rep(0), s.Field(4).Rep(0), s.Field(5))
	put(a, "onsetDateTime", c.dateTime(s.Get(6, 1), c.where(6)))
	ref := c.emit("AllergyIntolerance", a)
	c.anchor = anchor{seg: "AL1", typ: "AllergyIntolerance", ref: refOf(ref), body: a}
}

// iamStatus maps HL7 table 0438 (allergy clinical status) to clinical and
// verification status.
var iamStatus = map[string][2]string{"U": {"active", "unconfirmed"}, "P": {"active", "unconfirmed"}, "S": {"active", "unconfirmed"},
	"C": {"active", "confirmed"}, "I": {"inactive", ""}, "E": {"", "entered-in-error"}}

func (c *converter) iam(s *Segment) {
	if c.patient == nil {
		c.skip("IAM without PID")
		return
	}
	a := c.allergy(s.Field(2).Rep(0), s.Field(3).Rep(0), s.Field(4).Rep(0), s.Field(5))
	if id := entityID(s.Field(7).Rep(0), ""); id != nil {
		a["identifier"] = []any{id}
	}
	if t := strings.ToUpper(s.Get(9, 1)); t != "" {
		switch t {
		case "AL":
			a["type"] = "allergy"
		case "IN":
			a["type"] = "intolerance"
		}
	}
	put(a, "onsetDateTime", date(s.Get(11, 1)))
	if a["onsetDateTime"] == nil {
		put(a, "onsetString", s.Get(12, 1))
	}
	put(a, "recordedDate", c.dateTime(s.Get(13, 1), c.where(13)))
	if by := s.Field(14).Rep(0); !by.Empty() {
		put(a, "asserter", obj("display", nameText(humanName(by, 1))))
	}
	if st, ok := iamStatus[strings.ToUpper(s.Get(17, 1))]; ok {
		if st[0] != "" {
			a["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", st[0], "")
		} else {
			delete(a, "clinicalStatus")
		}
		if st[1] != "" {
			a["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", st[1], "")
		}
	}
	if strings.ToUpper(s.Get(6, 1)) == "D" {
		// an allergy the sender deleted
		delete(a, "clinicalStatus")
		a["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "entered-in-error", "")
	}
	if by := s.Field(18).Rep(0); !by.Empty() {
		if pr := c.practitioner(by); pr != nil {
			a["recorder"] = pr
		}
	}
	ref := c.emit("AllergyIntolerance", a)
	c.anchor = anchor{seg: "IAM", typ: "AllergyIntolerance", ref: refOf(ref), body: a}
}

// --- DG1: diagnoses (IG DG1[Condition], DG1[Encounter]) ---

// diagnosisRoles maps DG1-6 (table 0052) to Encounter.diagnosis.use.
var diagnosisRoles = map[string][2]string{"A": {"AD", "Admission diagnosis"}, "F": {"DD", "Discharge diagnosis"}, "W": {"CM", "Comorbidity diagnosis"}}

func (c *converter) dg1(s *Segment) {
	if c.patient == nil {
		c.skip("DG1 without PID")
		return
	}
	code := concept(s.Field(3).Rep(0))
	if d := s.Get(4, 1); d != "" {
		if len(code) == 0 {
			code = obj("text", d)
		} else if code["text"] == nil {
			code["text"] = d
		}
	}
	if len(code) == 0 {
		c.skip("DG1 without a diagnosis code or description")
		return
	}
	cat := "encounter-diagnosis"
	if c.encounter == nil {
		cat = "problem-list-item"
	}
	cond := obj("code", code, "subject", c.patient,
		"category", []any{cc("http://terminology.hl7.org/CodeSystem/condition-category", cat, "")},
		"onsetDateTime", c.dateTime(s.Get(5, 1), c.where(5)),
		"recordedDate", c.dateTime(s.Get(19, 1), c.where(19)))
	if cat == "problem-list-item" {
		// con-3: a problem-list item says whether it is active; a diagnosis
		// sent on its own is taken as current
		cond["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "")
	}
	if c.encounter != nil {
		cond["encounter"] = c.encounter
	}
	if id := entityID(s.Field(20).Rep(0), ""); id != nil {
		cond["identifier"] = []any{id}
	}
	if strings.ToUpper(s.Get(21, 1)) == "D" {
		cond["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error", "")
		delete(cond, "clinicalStatus")
	}
	ref := c.emit("Condition", cond)
	for _, r := range s.Field(16) {
		if pr := c.practitioner(r); pr != nil {
			cond["asserter"] = pr
			break
		}
	}
	if c.encBody != nil {
		d := obj("condition", ref)
		if role, ok := diagnosisRoles[strings.ToUpper(s.Get(6, 1))]; ok {
			put(d, "use", cc("http://terminology.hl7.org/CodeSystem/diagnosis-role", role[0], role[1]))
		}
		if rank := positiveInt(s.Get(15, 1)); rank > 0 {
			d["rank"] = rank
		}
		appendTo(c.encBody, "diagnosis", d)
		c.touch(refOf(c.encounter))
	}
	c.anchor = anchor{seg: "DG1", typ: "Condition", ref: refOf(ref), body: cond}
}

// --- PR1: procedures (IG PR1[Procedure]) ---

func (c *converter) pr1(s *Segment) {
	if c.patient == nil {
		c.skip("PR1 without PID")
		return
	}
	code := concept(s.Field(3).Rep(0))
	if d := s.Get(4, 1); d != "" {
		if len(code) == 0 {
			code = obj("text", d)
		} else if code["text"] == nil {
			code["text"] = d
		}
	}
	if len(code) == 0 {
		c.skip("PR1 without a procedure code or description")
		return
	}
	p := obj("status", "completed", "code", code, "subject", c.patient,
		"performedDateTime", c.dateTime(s.Get(5, 1), c.where(5)))
	if c.encounter != nil {
		p["encounter"] = c.encounter
	}
	if t := s.Field(6).Rep(0); !t.Empty() {
		p["category"] = tableConcept(t, "0230")
	}
	if id := entityID(s.Field(19).Rep(0), ""); id != nil {
		p["identifier"] = []any{id}
	}
	if strings.ToUpper(s.Get(20, 1)) == "D" {
		p["status"] = "entered-in-error"
	}
	if r := concept(s.Field(15).Rep(0)); len(r) > 0 {
		p["reasonCode"] = []any{r}
	}
	ref := c.emit("Procedure", p)
	for _, f := range []struct {
		n             int
		code, display string
	}{{8, "88189002", "Anesthesiologist"}, {11, "304292004", "Surgeon"}, {12, "", ""}} {
		for _, r := range s.Field(f.n) {
			pr := c.practitioner(r)
			if pr == nil {
				continue
			}
			perf := obj("actor", pr)
			if f.code != "" {
				perf["function"] = cc("http://snomed.info/sct", f.code, f.display)
			}
			appendTo(p, "performer", perf)
		}
	}
	c.anchor = anchor{seg: "PR1", typ: "Procedure", ref: refOf(ref), body: p}
}

// --- IN1, IN2: insurance (IG IN1[Coverage]) ---

// subscriberRelationships maps HL7 table 0063 to FHIR's
// subscriber-relationship codes.
var subscriberRelationships = map[string]string{"SEL": "self", "SPO": "spouse", "DOM": "common", "CHD": "child", "FCH": "child", "SCH": "child",
	"PAR": "parent", "MTH": "parent", "FTH": "parent", "EXF": "other", "GRD": "other", "OTH": "other"}

func (c *converter) in1(s *Segment) {
	if c.patient == nil {
		c.skip("IN1 without PID")
		return
	}
	c.coverage = nil
	cov := obj("status", "active", "beneficiary", c.patient)
	var ids []any
	if plan := s.Field(2).Rep(0); plan.Comp(1) != "" {
		ids = append(ids, obj("value", plan.Comp(1), "system", systemURI(plan.Comp(3), plan.Comp(14))))
	}
	if pol := s.Get(36, 1); pol != "" {
		ids = append(ids, obj("value", pol, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MB", "Member Number")))
	}
	put(cov, "identifier", ids)
	selfPay := strings.Contains(strings.ToUpper(s.Get(2, 1)+" "+s.Get(2, 2)+" "+s.Get(4, 1)), "SELF PAY")
	if selfPay {
		cov["type"] = cc("http://terminology.hl7.org/CodeSystem/coverage-selfpay", "pay", "PAY")
		cov["payor"] = []any{c.patient}
	} else {
		if t := s.Field(15).Rep(0); !t.Empty() {
			cov["type"] = tableConcept(t, "0086")
		}
		org := s.Field(4).Rep(0)
		payor := c.namedOrganization(org.Comp(1), firstNonEmpty(s.Get(3, 1), org.Comp(10), org.Comp(3)), "", "", s.Field(5), s.Field(7))
		if payor == nil {
			payor = obj("display", firstNonEmpty(s.Get(2, 2), s.Get(2, 1), "unknown insurer"))
		}
		cov["payor"] = []any{payor}
	}
	put(cov, "period", obj("start", date(s.Get(12, 1)), "end", date(s.Get(13, 1))))
	var classes []any
	if g := s.Get(8, 1); g != "" {
		classes = append(classes, obj("type", cc("http://terminology.hl7.org/CodeSystem/coverage-class", "group", "Group"), "value", g, "name", s.Get(9, 1)))
	}
	if p := s.Field(35).Rep(0); p.Comp(1) != "" {
		classes = append(classes, obj("type", cc("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"), "value", p.Comp(1), "name", p.Comp(2)))
	} else if p := s.Field(2).Rep(0); p.Comp(1) != "" && !selfPay {
		classes = append(classes, obj("type", cc("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"), "value", p.Comp(1), "name", p.Comp(2)))
	}
	put(cov, "class", classes)
	if n := positiveInt(s.Get(22, 1)); n > 0 {
		cov["order"] = n
	}
	if id := s.Field(49).Rep(0); id.Comp(1) != "" {
		put(cov, "subscriberId", id.Comp(1))
	} else if pol := s.Get(36, 1); pol != "" {
		put(cov, "subscriberId", pol)
	}
	relRep := s.Field(17).Rep(0)
	insured := humanName(s.Field(16).Rep(0), 1)
	rel := strings.ToUpper(relRep.Comp(1))
	if !relRep.Empty() {
		var codings []any
		if code := subscriberRelationships[rel]; code != "" {
			codings = append(codings, obj("system", "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code", code))
		}
		orig := tableConcept(relRep, "0063")
		if cs, ok := orig["coding"].([]any); ok {
			codings = append(codings, cs...)
		}
		put(cov, "relationship", obj("coding", codings, "text", orig["text"]))
	}
	ref := c.emit("Coverage", cov)
	if c.isPatient(relRep, insured, s.Get(18, 1)) || insured == nil && (rel == "" || rel == "SEL") {
		cov["subscriber"] = c.patient
		cov["policyHolder"] = c.patient
	} else if insured != nil {
		rp := obj("patient", c.patient, "active", true, "name", []any{insured},
			"birthDate", date(s.Get(18, 1)), "address", addresses(s.Field(19)), "gender", genders[s.Get(43, 1)])
		if !relRep.Empty() {
			rp["relationship"] = []any{tableConcept(relRep, "0063")}
		}
		sub := c.emit("RelatedPerson", rp)
		cov["subscriber"] = sub
		cov["policyHolder"] = sub
		c.coverage = &anchor{seg: "IN1", typ: "RelatedPerson", ref: refOf(sub), body: rp}
	}
	if emp := s.Field(11).Rep(0); emp.Comp(1) != "" && cov["policyHolder"] == nil {
		cov["policyHolder"] = c.organization(emp, s.Field(44), nil)
	}
	c.anchor = anchor{seg: "IN1", typ: "Coverage", ref: refOf(ref), body: cov}
}

// in2 adds IN2's identifiers to the Coverage and its subscriber: the
// Medicare and Medicaid numbers, the patient's member number, the
// insured's SSN and phone.
func (c *converter) in2(s *Segment) {
	if c.anchor.typ != "Coverage" {
		c.skip("IN2 without IN1")
		return
	}
	cov := c.anchor.body
	n := 0
	for _, f := range []struct {
		n          int
		typ, label string
	}{{6, "MC", "Patient's Medicare number"}, {8, "MA", "Patient Medicaid number"}} {
		if v := s.Get(f.n, 1); v != "" {
			appendTo(cov, "identifier", obj("value", v, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", f.typ, f.label)))
			n++
		}
	}
	for _, r := range s.Field(61) {
		if id := identifier(r); id != nil {
			if _, typed := id["type"]; !typed {
				id["type"] = cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MB", "Member Number")
			}
			appendTo(cov, "identifier", id)
			n++
		}
	}
	c.touch(c.anchor.ref)
	if sub := c.coverage; sub != nil && refAny(cov["subscriber"]) == sub.ref {
		if ssn := s.Get(2, 1); ssn != "" {
			appendTo(sub.body, "identifier", obj("system", "http://hl7.org/fhir/sid/us-ssn", "value", ssn))
			n++
		}
		for _, t := range telecoms(s.Field(63), "home") {
			appendTo(sub.body, "telecom", t)
			n++
		}
		if n > 0 {
			c.touch(sub.ref)
		}
	}
	if n == 0 {
		c.cur.Resources = nil
		c.skip("IN2 carries no Medicare, Medicaid or member number, nor the insured's SSN or phone")
	}
}
