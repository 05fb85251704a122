package hl7v2

import (
	"strings"
)

// Segments of ADT and ORU messages that the HL7 v2-to-FHIR IG leaves
// unmapped but that carry facts about the patient a specialist needs: the
// cause of death and the autopsy (PDA), a disability (DB1), a referral
// (RF1), an accident (ACC) and a contact (CTD). Each becomes the resource
// FHIR R4 has for it; what has no element is kept as a note.

// yesNo reads an ID of HL7 table 0136 (Y/N); ok is false when the field is
// empty or something else.
func yesNo(v string) (value, ok bool) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "Y":
		return true, true
	case "N":
		return false, true
	}
	return false, false
}

// flag is an Observation component stating a yes/no fact (code as text).
func flag(text, v string) map[string]any {
	b, ok := yesNo(v)
	if !ok {
		return nil
	}
	return obj("code", obj("text", text), "valueBoolean", b)
}

// placeText is a PL (point of care^room^bed^facility^status^type^building^
// floor^description) as one line.
func placeText(r Repetition) string {
	parts := nonEmpty(r.Comp(1), r.Comp(2), r.Comp(3), r.Sub(4, 1), r.Comp(7), r.Comp(8))
	if d := r.Comp(9); d != "" {
		parts = append(parts, d)
	}
	return strings.Join(parts, ", ")
}

// --- PDA: patient death and autopsy ---

// pda converts the cause of death (PDA-1), where the patient died (PDA-2)
// and the death certificate (PDA-3 to PDA-5) into an Observation "cause of
// death" (LOINC 69453-9), the coroner flag (PDA-9) into one of its
// components, and an autopsy (PDA-6 to PDA-8) into a Procedure.
func (c *converter) pda(s *Segment) {
	if c.patient == nil {
		c.skip("PDA without PID")
		return
	}
	causes := concepts(s.Field(1))
	place := placeText(s.Field(2).Rep(0))
	done := false
	if len(causes) > 0 || place != "" || !s.Field(5).Rep(0).Empty() {
		o := obj("status", "final",
			"code", cc("http://loinc.org", "69453-9", "Cause of death [US Standard Certificate of Death]"),
			"subject", c.patient)
		if len(causes) > 0 {
			o["valueCodeableConcept"] = causes[0]
		} else {
			o["dataAbsentReason"] = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
		}
		for _, more := range causes[min(1, len(causes)):] {
			appendTo(o, "component", obj("code", cc("http://loinc.org", "69453-9", "Cause of death [US Standard Certificate of Death]"), "valueCodeableConcept", more))
		}
		if place != "" {
			appendTo(o, "component", obj("code", cc("http://loinc.org", "58332-8", "Location of death"), "valueString", place))
		}
		appendTo(o, "component", flag("Death certified", s.Get(3, 1)))
		appendTo(o, "component", flag("Coroner case", s.Get(9, 1)))
		put(o, "issued", instant(s.Get(4, 1)))
		if signed := c.dateTime(s.Get(4, 1), c.where(4)); signed != "" && o["issued"] == nil {
			appendTo(o, "note", obj("text", "Death certificate signed "+signed))
		}
		if by := c.practitioner(s.Field(5).Rep(0)); by != nil {
			appendTo(o, "performer", by)
		}
		if c.encounter != nil {
			o["encounter"] = c.encounter
		}
		ref := c.emit("Observation", o)
		c.anchor = anchor{seg: "PDA", typ: "Observation", ref: refOf(ref), body: o}
		done = true
	}
	if autopsy, ok := yesNo(s.Get(6, 1)); ok && autopsy {
		p := obj("status", "completed",
			"code", cc("http://snomed.info/sct", "29240004", "Autopsy examination"),
			"subject", c.patient)
		period := s.Field(7).Rep(0)
		put(p, "performedPeriod", obj("start", c.dateTime(period.Comp(1), c.where(7)), "end", c.dateTime(period.Comp(2), c.where(7))))
		if by := c.practitioner(s.Field(8).Rep(0)); by != nil {
			appendTo(p, "performer", obj("actor", by))
		}
		c.emit("Procedure", p)
		done = true
	}
	if !done {
		c.skip("PDA names no cause of death, place, certifier or autopsy")
	}
}

// --- DB1: disability ---

// db1 converts the patient's disability (DB1-2 PT or empty) into an
// Observation: DB1-4 the value, DB1-5/6 the period, DB1-7/8 the return to
// work and unable to work dates as components. A guarantor's or insured's
// disability is not the patient's record.
func (c *converter) db1(s *Segment) {
	if c.patient == nil {
		c.skip("DB1 without PID")
		return
	}
	if who := strings.ToUpper(s.Get(2, 1)); who != "" && who != "PT" {
		whose := map[string]string{"GT": "the guarantor's", "IN": "the insured's", "AP": "an associated party's", "EM": "an employee's"}[who]
		c.skip("the disability is " + firstNonEmpty(whose, "another person's") + " (DB1-2 " + who + "), not the patient's")
		return
	}
	o := obj("status", "final", "code", obj("text", "Disability"), "subject", c.patient)
	if b, ok := yesNo(s.Get(4, 1)); ok {
		o["valueBoolean"] = b
	}
	put(o, "effectivePeriod", obj("start", date(s.Get(5, 1)), "end", date(s.Get(6, 1))))
	put(o, "identifier", identifiers(s.Field(3)))
	for _, f := range []struct {
		n    int
		text string
	}{{7, "Return to work date"}, {8, "Unable to work date"}} {
		if d := date(s.Get(f.n, 1)); d != "" {
			appendTo(o, "component", obj("code", obj("text", f.text), "valueDateTime", d))
		}
	}
	if o["valueBoolean"] == nil && o["effectivePeriod"] == nil && o["component"] == nil {
		c.skip("DB1 states no disability, period or dates")
		return
	}
	ref := c.emit("Observation", o)
	c.anchor = anchor{seg: "DB1", typ: "Observation", ref: refOf(ref), body: o}
}

// --- RF1: referral information ---

// referralStatus maps HL7 table 0283 to ServiceRequest.status.
var referralStatus = map[string]string{"A": "active", "P": "active", "R": "revoked", "E": "revoked"}

// referralPriority maps HL7 table 0280 to ServiceRequest.priority.
var referralPriority = map[string]string{"S": "stat", "A": "asap", "R": "routine"}

// rf1 converts a referral into a ServiceRequest (category "patient
// referral"): status, priority, type (RF1-3) as the code, disposition and
// category (RF1-4/5) as order details, identifiers (RF1-6, RF1-11), the
// effective and expiration dates as the occurrence period, the process date
// as authoredOn, the reasons (RF1-10, RF1-14); who authorised it and the
// comments (RF1-19 to RF1-24) as notes.
func (c *converter) rf1(s *Segment) {
	if c.patient == nil {
		c.skip("RF1 without PID")
		return
	}
	status := referralStatus[strings.ToUpper(s.Get(1, 1))]
	if status == "" {
		status = "unknown"
	}
	sr := obj("status", status, "intent", "order",
		"category", []any{cc("http://snomed.info/sct", "3457005", "Patient referral")},
		"subject", c.patient)
	put(sr, "priority", referralPriority[strings.ToUpper(s.Get(2, 1))])
	if t := s.Field(3).Rep(0); !t.Empty() {
		sr["code"] = tableConcept(t, "0281")
	}
	for _, f := range []struct {
		n     int
		table string
	}{{4, "0282"}, {5, "0284"}} {
		for _, r := range s.Field(f.n) {
			if d := tableConcept(r, f.table); len(d) > 0 {
				appendTo(sr, "orderDetail", d)
			}
		}
	}
	var ids []any
	if id := entityID(s.Field(6).Rep(0), "PLAC"); id != nil {
		ids = append(ids, id)
	}
	for _, r := range s.Field(11) {
		if id := entityID(r, "FILL"); id != nil {
			ids = append(ids, id)
		}
	}
	put(sr, "identifier", ids)
	put(sr, "occurrencePeriod", obj("start", c.dateTime(s.Get(7, 1), c.where(7)), "end", c.dateTime(s.Get(8, 1), c.where(8))))
	put(sr, "authoredOn", c.dateTime(s.Get(9, 1), c.where(9)))
	put(sr, "reasonCode", concepts(s.Field(10)))
	if t := s.Get(14, 1); t != "" {
		appendTo(sr, "reasonCode", obj("text", t))
	}
	var by []string
	if org := s.Field(19).Rep(0); org.Comp(1) != "" {
		by = append(by, org.Comp(1))
	}
	if pr := s.Field(20).Rep(0); !pr.Empty() {
		by = append(by, firstNonEmpty(nameText(humanName(pr, 2)), pr.Comp(1)))
	}
	if len(by) > 0 {
		appendTo(sr, "note", obj("text", "Authorized by "+strings.Join(by, ", ")))
	}
	for _, n := range []int{21, 24} {
		if t := s.Get(n, 1); t != "" {
			appendTo(sr, "note", obj("text", t))
		}
	}
	if c.encounter != nil {
		sr["encounter"] = c.encounter
	}
	ref := c.emit("ServiceRequest", sr)
	c.anchor = anchor{seg: "RF1", typ: "ServiceRequest", ref: refOf(ref), body: sr}
}

// --- ACC: accident ---

// acc converts an accident into an Observation: when (ACC-1), what (ACC-2,
// table 0050, else the description ACC-8), whether it was job related, the
// patient died or the police were told (ACC-5, ACC-6, ACC-10) as
// components, where (ACC-3, ACC-4, ACC-11), the description and who brought
// the patient in (ACC-9) as notes.
func (c *converter) acc(s *Segment) {
	if c.patient == nil {
		c.skip("ACC without PID")
		return
	}
	o := obj("status", "final", "code", obj("text", "Accident"), "subject", c.patient)
	put(o, "effectiveDateTime", c.dateTime(s.Get(1, 1), c.where(1)))
	desc := s.Get(8, 1)
	if k := s.Field(2).Rep(0); !k.Empty() {
		o["valueCodeableConcept"] = tableConcept(k, "0050")
	} else if desc != "" {
		o["valueString"] = desc
		desc = ""
	}
	for _, f := range []struct {
		n    int
		text string
	}{{5, "Job related"}, {6, "Death"}, {10, "Police notified"}} {
		appendTo(o, "component", flag(f.text, s.Get(f.n, 1)))
	}
	var where []string
	where = append(where, nonEmpty(s.Get(3, 1), s.Get(4, 1))...)
	if a := address(s.Field(11).Rep(0)); a != nil {
		if t := addressText(a); t != "" {
			where = append(where, t)
		}
	}
	if len(where) > 0 {
		appendTo(o, "note", obj("text", "Place: "+strings.Join(where, "; ")))
	}
	if desc != "" {
		appendTo(o, "note", obj("text", desc))
	}
	if b := s.Get(9, 1); b != "" {
		appendTo(o, "note", obj("text", "Brought in by "+b))
	}
	if id := entityID(s.Field(13).Rep(0), ""); id != nil {
		o["identifier"] = []any{id}
	}
	if len(o) <= 3 {
		c.skip("ACC states no date, kind, description or place")
		return
	}
	if c.encounter != nil {
		o["encounter"] = c.encounter
	}
	ref := c.emit("Observation", o)
	c.anchor = anchor{seg: "ACC", typ: "Observation", ref: refOf(ref), body: o}
}

// --- CTD: contact data ---

// ctd converts a contact of the patient (ORU's CTD) into a RelatedPerson,
// as NK1: role (CTD-1, table 0131), name, address, phones and identifiers.
func (c *converter) ctd(s *Segment) {
	if c.patient == nil {
		c.skip("CTD without PID")
		return
	}
	rp := obj("patient", c.patient, "active", true)
	if r := s.Field(1).Rep(0); !r.Empty() {
		rp["relationship"] = []any{tableConcept(r, "0131")}
	}
	put(rp, "name", names(s.Field(2)))
	put(rp, "address", addresses(s.Field(3)))
	put(rp, "telecom", telecoms(s.Field(5), "home"))
	var ids []any
	for _, r := range s.Field(7) {
		if v := r.Comp(1); v != "" {
			ids = append(ids, obj("value", v, "type", obj("text", r.Comp(2))))
		}
	}
	put(rp, "identifier", ids)
	if rp["name"] == nil && rp["telecom"] == nil && rp["address"] == nil {
		c.skip("CTD names nobody")
		return
	}
	ref := c.emit("RelatedPerson", rp)
	c.anchor = anchor{seg: "CTD", typ: "RelatedPerson", ref: refOf(ref), body: rp}
}
