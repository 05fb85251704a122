package hl7v2

import (
	"strings"
)

// --- RXA, RXR and the OBX of a vaccination (IG RXA[Immunization],
// RXR[Immunization], VXU_V04) ---

func (c *converter) rxa(s *Segment) {
	if c.patient == nil {
		c.skip("RXA without PID")
		return
	}
	status := "completed"
	switch s.Get(20, 1) {
	case "RE", "NA":
		status = "not-done"
	}
	if s.Get(21, 1) == "D" {
		status = "entered-in-error"
	}
	vaccine := concept(s.Field(5).Rep(0))
	if len(vaccine) == 0 {
		c.warn("incomplete", "RXA without an administered code (RXA-5)", c.where(5))
		vaccine = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	im := obj("status", status, "vaccineCode", vaccine, "patient", c.patient)
	if dt := c.dateTime(s.Get(3, 1), c.where(3)); dt != "" {
		im["occurrenceDateTime"] = dt
	} else {
		im["occurrenceString"] = "unknown"
		c.warn("incomplete", "RXA without an administration date (RXA-3)", c.where(3))
	}
	if c.encounter != nil {
		im["encounter"] = c.encounter
	}
	if src := s.Get(9, 1); src != "" {
		im["primarySource"] = src == "00"
		if src != "00" {
			put(im, "reportOrigin", concept(s.Field(9).Rep(0)))
		}
	}
	put(im, "recorded", c.dateTime(s.Get(22, 1), c.where(22)))
	put(im, "lotNumber", s.Get(15, 1))
	put(im, "expirationDate", date(s.Get(16, 1)))
	if mvx := s.Field(17).Rep(0); !mvx.Empty() {
		m := obj("display", firstNonEmpty(mvx.Comp(2), mvx.Comp(1)))
		if mvx.Comp(1) != "" {
			m["identifier"] = obj("system", firstNonEmpty(systemURI(mvx.Comp(3), ""), "http://terminology.hl7.org/CodeSystem/MVX"), "value", mvx.Comp(1))
		}
		im["manufacturer"] = m
	}
	if d := decimal(s.Get(6, 1)); d != "" && d != "999" {
		put(im, "doseQuantity", quantity(d, s.Field(7).Rep(0)))
	}
	if status == "not-done" {
		put(im, "statusReason", concept(s.Field(18).Rep(0)))
	}
	if s.Get(20, 1) == "PA" {
		im["isSubpotent"] = true
	}
	if r := concepts(s.Field(19)); len(r) > 0 {
		im["reasonCode"] = r
	}
	if loc := s.Field(27).Rep(0); !loc.Empty() {
		im["location"] = obj("display", strings.Join(nonEmpty(loc.Comp(1), loc.Comp(2), loc.Comp(4)), " "))
	} else if loc := s.Field(11).Rep(0); !loc.Empty() {
		im["location"] = obj("display", strings.Join(nonEmpty(loc.Comp(4), loc.Comp(1)), " "))
	}
	ref := c.emit("Immunization", im)
	for _, r := range s.Field(10) {
		if pr := c.practitioner(r); pr != nil {
			appendTo(im, "performer", obj("function", cc("http://terminology.hl7.org/CodeSystem/v2-0443", "AP", "Administering Provider"), "actor", pr))
		}
	}
	if o := c.order; o != nil && o.orc != nil && o.obr == nil && o.request == nil {
		// the ORC of a vaccination is about this Immunization
		if id := entityID(o.orc.Field(3).Rep(0), "FILL"); id != nil {
			appendTo(im, "identifier", id)
		}
		if id := entityID(o.orc.Field(2).Rep(0), "PLAC"); id != nil {
			appendTo(im, "identifier", id)
		}
		if pr := c.practitioner(o.orc.Field(12).Rep(0)); pr != nil {
			appendTo(im, "performer", obj("function", cc("http://terminology.hl7.org/CodeSystem/v2-0443", "OP", "Ordering Provider"), "actor", pr))
		}
		c.touchAt(o.orcAcct, refOf(ref))
		for _, p := range o.pending {
			appendTo(im, "performer", obj("function", tableConcept(p.role, "0912"), "actor", p.who))
			c.touchAt(p.acct, refOf(ref))
		}
		c.order = nil
	}
	c.immunization = &anchor{seg: "RXA", typ: "Immunization", ref: refOf(ref), body: im}
	c.anchor = *c.immunization
}

func (c *converter) rxr(s *Segment) {
	if c.immunization == nil {
		c.skip("RXR without RXA")
		return
	}
	im := c.immunization.body
	n := 0
	if r := concept(s.Field(1).Rep(0)); len(r) > 0 {
		im["route"] = r
		n++
	}
	if r := concept(s.Field(2).Rep(0)); len(r) > 0 {
		im["site"] = r
		n++
	}
	if n == 0 {
		c.skip("RXR without route or site")
		return
	}
	c.touch(c.immunization.ref)
}

// immunizationDetail converts the OBX of a vaccination that say something
// about it (VFC eligibility, funding source, the vaccine information
// statement given) into the Immunization; false for any other OBX.
func (c *converter) immunizationDetail(s *Segment) bool {
	im := c.immunization.body
	v := s.Field(5).Rep(0)
	switch s.Get(3, 1) {
	case "64994-7": // vaccine funding program eligibility category
		appendTo(im, "programEligibility", concept(v))
	case "30963-3", "63939-3": // vaccine funding source
		im["fundingSource"] = concept(v)
	case "69764-9", "29768-9", "29769-7", "30956-7":
		c.education(im, s.Get(4, 1), s.Get(3, 1), v)
	default:
		return false
	}
	c.touch(c.immunization.ref)
	c.anchor = *c.immunization
	return true
}

// education fills Immunization.education from the VIS observations of one
// OBX-4 group.
func (c *converter) education(im map[string]any, group, code string, v Repetition) {
	eds, _ := im["education"].([]any)
	var ed map[string]any
	for _, e := range eds {
		if m := e.(map[string]any); m["_group"] == group {
			ed = m
		}
	}
	if ed == nil {
		ed = map[string]any{"_group": group}
		im["education"] = append(eds, ed)
	}
	switch code {
	case "69764-9":
		doc := v.Comp(2)
		if v.Comp(1) != "" {
			doc = strings.TrimSpace(doc + " (" + v.Comp(1) + ")")
		}
		put(ed, "documentType", doc)
		if u := attachmentURL(v.Comp(1)); u != "" {
			ed["reference"] = u
		}
	case "30956-7":
		if ed["documentType"] == nil {
			put(ed, "documentType", "VIS for "+firstNonEmpty(v.Comp(2), v.Comp(1)))
		}
	case "29768-9":
		put(ed, "publicationDate", c.dateTime(v.Comp(1), c.where(5)))
	case "29769-7":
		put(ed, "presentationDate", c.dateTime(v.Comp(1), c.where(5)))
	}
}

// finishImmunizations removes the bookkeeping keys education used.
func (c *converter) finishImmunizations() {
	for _, p := range c.out {
		if p.typ != "Immunization" {
			continue
		}
		eds, _ := p.body["education"].([]any)
		var keep []any
		for _, e := range eds {
			m := e.(map[string]any)
			delete(m, "_group")
			if m["documentType"] != nil || m["reference"] != nil {
				keep = append(keep, m)
			} else if len(m) > 0 {
				// imm-1: a date needs the document it is about
				m["documentType"] = "vaccine information statement"
				keep = append(keep, m)
			}
		}
		if len(keep) > 0 {
			p.body["education"] = keep
		} else {
			delete(p.body, "education")
		}
	}
}
