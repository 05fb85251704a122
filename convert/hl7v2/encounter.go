package hl7v2

import (
	"encoding/json"
	"strings"
)

// --- PV1, PV2: the visit (IG PV1[Encounter], PV2[Encounter]) ---

var patientClasses = map[string][2]string{"I": {"IMP", "inpatient encounter"}, "O": {"AMB", "ambulatory"}, "E": {"EMER", "emergency"},
	"P": {"PRENC", "pre-admission"}, "R": {"AMB", "ambulatory"}, "B": {"AMB", "ambulatory"}, "C": {"AMB", "ambulatory"}, "N": {"AMB", "ambulatory"}}

// pv1Participants are PV1's practitioner fields and their participation
// types.
var pv1Participants = []struct {
	n    int
	code string
}{{7, "ATND"}, {8, "REF"}, {9, "CON"}, {17, "ADM"}, {52, "PART"}}

func (c *converter) pv1(s *Segment) {
	if c.patient == nil {
		c.skip("PV1 without PID")
		return
	}
	if c.encBody != nil {
		c.skip("a second PV1: one visit per message")
		return
	}
	pc := s.Get(2, 1)
	class, ok := patientClasses[pc]
	if !ok {
		class = [2]string{"AMB", "ambulatory"}
		if pc != "" && pc != "U" {
			c.warn("code-invalid", "unknown patient class (PV1-2); ambulatory assumed", c.where(2))
		}
	}
	status := "in-progress"
	end := c.dateTime(s.Get(45, 1), c.where(45))
	switch {
	case c.code == "ADT" && c.trigger == "A03" || end != "":
		status = "finished"
	case c.code == "ADT" && (c.trigger == "A05" || c.trigger == "A14"):
		status = "planned"
	case c.code == "ADT" && c.trigger == "A11":
		status = "cancelled"
	case pc == "P":
		status = "planned"
	case c.code != "ADT":
		status = "unknown"
	}
	e := obj("status", status,
		"class", obj("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code", class[0], "display", class[1]),
		"subject", c.patient,
		"period", obj("start", c.dateTime(s.Get(44, 1), c.where(44)), "end", end))
	if id := identifier(s.Field(19).Rep(0)); id != nil {
		if _, typed := id["type"]; !typed {
			id["type"] = cc("http://terminology.hl7.org/CodeSystem/v2-0203", "VN", "Visit number")
		}
		put(e, "identifier", []any{id})
	}
	if t := s.Field(4).Rep(0); !t.Empty() {
		put(e, "type", []any{tableConcept(t, "0007")})
	}
	if svc := s.Field(10).Rep(0); !svc.Empty() {
		put(e, "serviceType", tableConcept(svc, "0069"))
	}
	hosp := map[string]any{}
	if v := s.Field(13).Rep(0); !v.Empty() {
		put(hosp, "reAdmission", tableConcept(v, "0092"))
	}
	if v := s.Field(14).Rep(0); !v.Empty() {
		put(hosp, "admitSource", tableConcept(v, "0023"))
	}
	if v := s.Field(36).Rep(0); !v.Empty() {
		put(hosp, "dischargeDisposition", tableConcept(v, "0112"))
	}
	if v := s.Field(37).Rep(0); v.Comp(1) != "" {
		put(hosp, "destination", obj("display", v.Comp(1)))
	}
	if v := s.Field(38).Rep(0); !v.Empty() {
		put(hosp, "dietPreference", []any{tableConcept(v, "0114")})
	}
	if v := s.Field(6).Rep(0); !v.Empty() {
		put(hosp, "origin", obj("display", strings.Join(nonEmpty(v.Sub(1, 1), v.Comp(2), v.Comp(3), v.Comp(4)), " ")))
	}
	put(e, "hospitalization", hosp)
	c.encBody = e
	c.encounter = c.emit("Encounter", e)
	for _, f := range pv1Participants {
		for _, r := range s.Field(f.n) {
			if pr := c.practitioner(r); pr != nil {
				appendTo(e, "participant", obj("type", []any{cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", f.code, "")}, "individual", pr))
			}
		}
	}
	var locs []any
	for _, n := range []int{3, 11, 42, 43} {
		loc := s.Field(n).Rep(0)
		if loc.Empty() {
			continue
		}
		disp := strings.Join(nonEmpty(loc.Sub(1, 1), loc.Comp(2), loc.Comp(3), loc.Comp(4), loc.Comp(9)), " ")
		if disp == "" {
			continue
		}
		l := obj("location", obj("display", disp))
		if n == 3 {
			put(l, "status", "active")
		}
		if n == 43 || n == 42 {
			put(l, "status", "planned")
		}
		if n == 11 {
			put(l, "status", "reserved")
		}
		locs = append(locs, l)
	}
	put(e, "location", locs)
	c.anchor = anchor{seg: "PV1", typ: "Encounter", ref: refOf(c.encounter), body: e}
}

// pv2 adds the visit's reason, description, length and priority.
func (c *converter) pv2(s *Segment) {
	if c.encBody == nil {
		c.skip("PV2 without PV1")
		return
	}
	e := c.encBody
	n := 0
	if r := concept(s.Field(3).Rep(0)); len(r) > 0 {
		appendTo(e, "reasonCode", r)
		n++
	}
	if r := concept(s.Field(4).Rep(0)); len(r) > 0 {
		appendTo(e, "reasonCode", r) // transfer reason
		n++
	}
	if d := s.Get(12, 1); d != "" {
		appendTo(e, "type", obj("text", d))
		n++
	}
	if days := decimal(s.Get(11, 1)); days != "" {
		e["length"] = obj("value", json.Number(days), "unit", "days", "system", "http://unitsofmeasure.org", "code", "d")
		n++
	}
	if p := s.Get(25, 1); p != "" {
		if code, ok := map[string][2]string{"1": {"EM", "emergency"}, "2": {"UR", "urgent"}, "3": {"EL", "elective"}}[p]; ok {
			e["priority"] = cc("http://terminology.hl7.org/CodeSystem/v3-ActPriority", code[0], code[1])
		} else {
			e["priority"] = tableConcept(s.Field(25).Rep(0), "0217")
		}
		n++
	}
	if ref := s.Field(13).Rep(0); !ref.Empty() {
		if pr := c.practitioner(ref); pr != nil {
			appendTo(e, "participant", obj("type", []any{cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "REF", "")}, "individual", pr))
			n++
		}
	}
	if ex := c.dateTime(s.Get(8, 1), c.where(8)); ex != "" && e["status"] == "planned" {
		if p, ok := e["period"].(map[string]any); ok {
			put(p, "start", ex)
		} else {
			e["period"] = obj("start", ex)
		}
		n++
	}
	if n == 0 {
		c.skip("PV2 carries no reason, description, length, priority or referral that is converted")
		return
	}
	c.touch(refOf(c.encounter))
}
