package hl7v2

import (
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/convert/uscore"
)

// --- PID: Patient (IG PID[Patient]) ---

func (c *converter) pid(s *Segment) {
	if c.patient != nil {
		c.skip("a second PID: one patient per message")
		return
	}
	p := map[string]any{}
	var ids []any
	for _, n := range []int{3, 2, 4} {
		for i, r := range s.Field(n) {
			id := identifier(r)
			if id == nil {
				continue
			}
			ids = append(ids, id)
			sys, _ := id["system"].(string)
			c.subject.Identifiers = append(c.subject.Identifiers, subject.Identifier{System: sys, Value: id["value"].(string), Path: fmt.Sprintf("PID-%d[%d]", n, i+1)})
		}
	}
	if an := identifier(s.Field(18).Rep(0)); an != nil {
		if _, typed := an["type"]; !typed {
			an["type"] = cc("http://terminology.hl7.org/CodeSystem/v2-0203", "AN", "Account number")
		}
		ids = append(ids, an)
	}
	if ssn := s.Get(19, 1); ssn != "" {
		ids = append(ids, obj("system", "http://hl7.org/fhir/sid/us-ssn", "value", ssn, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "")))
	}
	if dl := s.Field(20).Rep(0); dl.Comp(1) != "" {
		ids = append(ids, obj("value", dl.Comp(1), "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", "DL", ""), "assigner", obj("display", dl.Comp(2))))
	}
	put(p, "identifier", ids)
	var pnames []any
	for i, r := range s.Field(5) {
		n := humanName(r, 1)
		if n == nil {
			continue
		}
		pnames = append(pnames, n)
		given, _ := n["given"].([]string)
		family, _ := n["family"].(string)
		c.subject.Names = append(c.subject.Names, subject.Name{Family: family, Given: given, Path: fmt.Sprintf("PID-5[%d]", i+1)})
	}
	pnames = append(pnames, names(s.Field(9))...) // aliases
	put(p, "name", pnames)
	var tel []any
	tel = append(tel, telecoms(s.Field(13), "home")...)
	tel = append(tel, telecoms(s.Field(14), "work")...)
	put(p, "telecom", tel)
	sex := genders[s.Get(8, 1)]
	put(p, "gender", sex)
	birth := date(s.Get(7, 1))
	put(p, "birthDate", birth)
	c.subject.Gender = subject.Value{Value: sex, Path: "PID-8"}
	c.subject.BirthDate = subject.Value{Value: birth, Path: "PID-7"}
	if dd := s.Get(29, 1); dd != "" {
		put(p, "deceasedDateTime", c.dateTime(dd, "PID-29"))
	} else if s.Get(30, 1) == "Y" {
		p["deceasedBoolean"] = true
	} else if s.Get(30, 1) == "N" {
		p["deceasedBoolean"] = false
	}
	addrs := addresses(s.Field(11))
	if county := s.Get(12, 1); county != "" && len(addrs) > 0 {
		if _, ok := addrs[0].(map[string]any)["district"]; !ok {
			addrs[0].(map[string]any)["district"] = county
		}
	}
	put(p, "address", addrs)
	if ms := s.Field(16).Rep(0); ms.Comp(1) != "" {
		put(p, "maritalStatus", tableConcept(ms, "0002"))
	}
	if lang := s.Field(15).Rep(0); !lang.Empty() {
		l := concept(lang)
		if cs, ok := l["coding"].([]any); ok && len(cs) > 0 {
			if first := cs[0].(map[string]any); first["system"] == nil || first["system"] == "http://terminology.hl7.org/CodeSystem/v2-0296" {
				first["system"] = "urn:ietf:bcp:47"
			}
		}
		put(p, "communication", []any{obj("language", l, "preferred", true)})
	}
	if mb := s.Get(24, 1); mb == "Y" || mb == "N" {
		if n := positiveInt(s.Get(25, 1)); n > 0 && mb == "Y" {
			p["multipleBirthInteger"] = n
		} else {
			p["multipleBirthBoolean"] = mb == "Y"
		}
	}
	var exts []any
	if race := raceEthnicity(s.Field(10), "0005", true); race != nil {
		exts = append(exts, race)
	}
	if eth := raceEthnicity(s.Field(22), "0189", false); eth != nil {
		exts = append(exts, eth)
	}
	if mm := s.Field(6).Rep(0); mm.Sub(1, 1) != "" {
		exts = append(exts, obj("url", "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString", mm.Sub(1, 1)))
	}
	if rel := s.Field(17).Rep(0); !rel.Empty() {
		exts = append(exts, obj("url", "http://hl7.org/fhir/StructureDefinition/patient-religion", "valueCodeableConcept", tableConcept(rel, "0006")))
	}
	if bp := s.Get(23, 1); bp != "" {
		exts = append(exts, obj("url", "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress", obj("text", bp)))
	}
	put(p, "extension", exts)
	c.patBody = p
	c.patient = c.emit("Patient", p)
	c.patID = strings.TrimPrefix(refOf(c.patient), "Patient/")
	c.anchor = anchor{seg: "PID", typ: "Patient", ref: refOf(c.patient), body: p}
}

// legacyRace and legacyEthnicity map the codes of HL7's own tables 0005 and
// 0189 (v2.3 and earlier) to CDC codes.
var (
	legacyRace = map[string][2]string{"W": {"2106-3", "White"}, "B": {"2054-5", "Black or African American"}, "A": {"2028-9", "Asian"},
		"I": {"1002-5", "American Indian or Alaska Native"}, "H": {"2076-8", "Native Hawaiian or Other Pacific Islander"}}
	legacyEthnicity = map[string][2]string{"H": {"2135-2", "Hispanic or Latino"}, "N": {"2186-5", "Not Hispanic or Latino"}}
)

// raceEthnicity builds the US Core race (PID-10) or ethnicity (PID-22)
// extension: CDC codes (CDCREC, HL70005 codes like 2106-3), the legacy
// single-letter codes, U/UNK for unknown.
func raceEthnicity(f Field, table string, race bool) map[string]any {
	var codes []uscore.Coding
	var texts []string
	for _, r := range f {
		for _, alt := range [][3]int{{1, 2, 3}, {4, 5, 6}} {
			code, disp, sys := r.Comp(alt[0]), r.Comp(alt[1]), strings.ToUpper(r.Comp(alt[2]))
			if code == "" {
				continue
			}
			switch {
			case len(code) == 6 && code[4] == '-':
				codes = append(codes, uscore.Coding{System: uscore.CDCSystem, Code: code, Display: disp})
			case code == "U" || code == "UNK":
				codes = append(codes, uscore.Coding{System: uscore.NullFlavorSystem, Code: "UNK"})
			case code == "ASKU":
				codes = append(codes, uscore.Coding{System: uscore.NullFlavorSystem, Code: "ASKU"})
			case sys == "" || sys == "HL7"+table:
				m := legacyEthnicity
				if race {
					m = legacyRace
				}
				if v, ok := m[code]; ok {
					codes = append(codes, uscore.Coding{System: uscore.CDCSystem, Code: v[0], Display: v[1]})
				} else if disp != "" {
					texts = append(texts, disp)
				}
			}
		}
		if t := r.Comp(9); t != "" {
			texts = append(texts, t)
		}
	}
	text := strings.Join(texts, ", ")
	if race {
		return uscore.Race(codes, text)
	}
	return uscore.Ethnicity(codes, text)
}

// --- PD1: the patient's primary care (IG PD1[Patient]) ---

func (c *converter) pd1(s *Segment) {
	if c.patBody == nil {
		c.skip("PD1 without PID")
		return
	}
	n := 0
	for _, r := range s.Field(3) {
		if org := c.organization(r, nil, nil); org != nil {
			c.generalPractitioner(org)
			n++
		}
	}
	for _, r := range s.Field(4) {
		if pr := c.practitioner(r); pr != nil {
			c.generalPractitioner(pr)
			n++
		}
	}
	if n == 0 {
		c.skip("PD1 names no primary care provider or facility; its other fields are not converted")
	}
}

// generalPractitioner adds ref to Patient.generalPractitioner once.
func (c *converter) generalPractitioner(ref map[string]any) {
	if c.generalPractices[refOf(ref)] {
		c.touch(refOf(c.patient))
		return
	}
	c.generalPractices[refOf(ref)] = true
	appendTo(c.patBody, "generalPractitioner", ref)
	c.touch(refOf(c.patient))
}

// --- NK1: next of kin and contacts (IG NK1[RelatedPerson]) ---

func (c *converter) nk1(s *Segment) {
	if c.patient == nil {
		c.skip("NK1 without PID")
		return
	}
	rp := obj("patient", c.patient, "active", true)
	put(rp, "identifier", identifiers(s.Field(33)))
	nm := names(s.Field(2))
	if len(nm) == 0 {
		if org := s.Field(13).Rep(0); org.Comp(1) != "" {
			nm = []any{obj("text", org.Comp(1))}
		}
	}
	put(rp, "name", nm)
	var rel []any
	if r := s.Field(3).Rep(0); !r.Empty() {
		rel = append(rel, tableConcept(r, "0063"))
	}
	if r := s.Field(7).Rep(0); !r.Empty() {
		rel = append(rel, tableConcept(r, "0131"))
	}
	put(rp, "relationship", rel)
	var tel []any
	tel = append(tel, telecoms(s.Field(5), "home")...)
	tel = append(tel, telecoms(s.Field(6), "work")...)
	tel = append(tel, telecoms(s.Field(31), "home")...)
	put(rp, "telecom", tel)
	put(rp, "address", addresses(s.Field(4)))
	put(rp, "gender", genders[s.Get(15, 1)])
	put(rp, "birthDate", date(s.Get(16, 1)))
	put(rp, "period", obj("start", date(s.Get(8, 1)), "end", date(s.Get(9, 1))))
	if l := s.Field(20).Rep(0); !l.Empty() {
		put(rp, "communication", []any{obj("language", concept(l))})
	}
	if len(rp) <= 2 {
		c.skip("NK1 names nobody")
		return
	}
	ref := c.emit("RelatedPerson", rp)
	c.anchor = anchor{seg: "NK1", typ: "RelatedPerson", ref: refOf(ref), body: rp}
}

// --- GT1: the guarantor (a RelatedPerson unless it is the patient) ---

func (c *converter) gt1(s *Segment) {
	if c.patient == nil {
		c.skip("GT1 without PID")
		return
	}
	name := humanName(s.Field(3).Rep(0), 1)
	if c.isPatient(s.Field(11).Rep(0), name, s.Get(8, 1)) {
		c.skip("the guarantor is the patient")
		return
	}
	rp := obj("patient", c.patient, "active", true)
	var ids []any
	ids = append(ids, identifiers(s.Field(2))...)
	if ssn := s.Get(12, 1); ssn != "" {
		ids = append(ids, obj("system", "http://hl7.org/fhir/sid/us-ssn", "value", ssn))
	}
	put(rp, "identifier", ids)
	if name != nil {
		put(rp, "name", []any{name})
	} else if org := s.Field(21).Rep(0); org.Comp(1) != "" {
		put(rp, "name", []any{obj("text", org.Comp(1))})
	}
	rel := []any{cc("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "GUAR", "guarantor")}
	if r := s.Field(11).Rep(0); !r.Empty() {
		rel = append(rel, tableConcept(r, "0063"))
	}
	rp["relationship"] = rel
	var tel []any
	tel = append(tel, telecoms(s.Field(6), "home")...)
	tel = append(tel, telecoms(s.Field(7), "work")...)
	put(rp, "telecom", tel)
	put(rp, "address", addresses(s.Field(5)))
	put(rp, "birthDate", date(s.Get(8, 1)))
	put(rp, "gender", genders[s.Get(9, 1)])
	put(rp, "period", obj("start", date(s.Get(13, 1)), "end", date(s.Get(14, 1))))
	ref := c.emit("RelatedPerson", rp)
	c.anchor = anchor{seg: "GT1", typ: "RelatedPerson", ref: refOf(ref), body: rp}
}

// isPatient reports whether a person a segment names (guarantor, insured)
// is the patient: relationship "self", or the patient's name and birth
// date.
func (c *converter) isPatient(rel Repetition, name map[string]any, birth string) bool {
	switch strings.ToUpper(rel.Comp(1)) {
	case "SEL", "SELF", "18", "01":
		return true
	}
	if name == nil {
		return false
	}
	given, _ := name["given"].([]string)
	family, _ := name["family"].(string)
	doc := subject.Demographics{Names: []subject.Name{{Family: family, Given: given, Path: "x"}}}
	if b := date(birth); b != "" {
		doc.BirthDate = subject.Value{Value: b, Path: "x"}
	} else if c.subject.BirthDate.Value != "" {
		return false // a namesake without a birth date to tell them apart
	}
	pat := subject.Demographics{Names: c.subject.Names, BirthDate: c.subject.BirthDate}
	return len(c.subject.Names) > 0 && len(subject.Compare(doc, pat)) == 0
}

// --- ROL: roles (IG ROL[Patient-GeneralPractitioner], ROL[Encounter-
// PractitionerRole]) ---

// primaryCare roles (HL7 table 0443) go to Patient.generalPractitioner.
var primaryCare = map[string]bool{"PP": true, "FHCP": true}

func (c *converter) rol(s *Segment) {
	role := s.Field(3).Rep(0)
	who := s.Field(4).Rep(0)
	if c.patient == nil || who.Empty() {
		c.skip("ROL without a person")
		return
	}
	pr := c.practitioner(who)
	if pr == nil {
		c.skip("ROL without a person")
		return
	}
	c.participate(role, "0443", pr, obj("start", dtm(s.Get(5, 1)), "end", dtm(s.Get(6, 1))))
}

// participate attaches a person with a role to the resource the segments
// before it made: Patient.generalPractitioner for primary care, a
// Procedure's performer, an Encounter's participant, an order's requester
// or performer, a report's interpreter, an Observation's performer, an
// Immunization's performer, a document's author. It skips the segment when
// there is nothing to attach to.
func (c *converter) participate(role Repetition, table string, who map[string]any, period map[string]any) {
	code := strings.ToUpper(role.Comp(1))
	roleCC := tableConcept(role, table)
	a := c.anchor
	switch {
	case primaryCare[code]:
		c.generalPractitioner(who)
	case a.typ == "ORC" && c.order != nil:
		// a vaccination's order: for the RXA that follows
		c.order.pending = append(c.order.pending, participation{role: role, who: who, acct: len(c.accounts) - 1})
	case a.typ == "Procedure":
		appendTo(a.body, "performer", obj("function", roleCC, "actor", who))
		c.touch(a.ref)
	case a.typ == "Observation":
		appendTo(a.body, "performer", who)
		c.touch(a.ref)
	case (a.typ == "ServiceRequest" || a.typ == "DiagnosticReport") && c.order != nil:
		switch {
		case code == "OP" || code == "ORP" || code == "EP":
			c.order.request.body["requester"] = who
			c.touch(c.order.request.ref)
		case (code == "RO" || code == "PI" || code == "RI") && c.order.report != nil:
			appendTo(c.order.report.body, "resultsInterpreter", who)
			c.touch(c.order.report.ref)
		case code == "RCT" || code == "CP":
			c.skip("a recipient of copies has no place in FHIR R4's ServiceRequest or DiagnosticReport")
		default:
			appendTo(c.order.request.body, "performer", who)
			c.touch(c.order.request.ref)
		}
	case a.typ == "Immunization":
		appendTo(a.body, "performer", obj("function", roleCC, "actor", who))
		c.touch(a.ref)
	case a.typ == "DocumentReference":
		appendTo(a.body, "author", who)
		c.touch(a.ref)
	case a.typ == "Appointment" && !strings.HasPrefix(refOf(who), "Organization/"):
		appendTo(a.body, "participant", obj("type", []any{roleCC}, "actor", who, "status", "accepted"))
		c.touch(a.ref)
	case c.encBody != nil && strings.HasPrefix(refOf(who), "Organization/"):
		if c.encBody["serviceProvider"] != nil {
			c.skip("an organization taking part in a visit that has its service provider")
			return
		}
		c.encBody["serviceProvider"] = who
		c.touch(refOf(c.encounter))
	case c.encBody != nil:
		appendTo(c.encBody, "participant", obj("type", []any{roleCC}, "period", period, "individual", who))
		c.touch(refOf(c.encounter))
	default:
		c.skip("a " + firstNonEmpty(code, "participant") + " role without a visit or order to attach it to")
	}
}

// --- PRT: participation (v2.7+) ---

func (c *converter) prt(s *Segment) {
	if c.patient == nil {
		c.skip("PRT without PID")
		return
	}
	role := s.Field(4).Rep(0)
	var who map[string]any
	if p := s.Field(5).Rep(0); !p.Empty() {
		who = c.practitioner(p)
	}
	if who == nil {
		if o := s.Field(8).Rep(0); !o.Empty() {
			who = c.organization(o, s.Field(14), s.Field(15))
		}
	}
	if who == nil {
		c.skip("PRT names no person or organization (a location or device participation is not converted)")
		return
	}
	c.participate(role, "0912", who, obj("start", dtm(s.Get(11, 1)), "end", dtm(s.Get(12, 1))))
}
