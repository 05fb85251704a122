package ccda

import (
	"encoding/json"
	"fmt"
	"strings"
)

// section converts one section's entries and returns it for the
// Composition; nested sections are walked too. Every entry is accounted
// for (c.accounts): the resources it became, or why it was not converted.
func (c *converter) section(s *node, where string, depth int) *compSection {
	if s == nil || depth > 5 {
		return nil
	}
	kind := sectionKind(s)
	if kind == "" {
		kind = moreSectionKind(s)
	}
	title := s.child("title").textContent()
	code := s.child("code").attr("code")
	cs := &compSection{title: title, code: c.concept(s.child("code")), text: narrativeDiv(s.child("text"))}
	if kind == kindPlan || kind == kindInstructions || kind == kindAssessPlan || kind == kindInterventions {
		if c.planTitle == "" {
			c.planTitle = title
		}
		if c.planText == "" {
			c.planText = cs.text
		}
		c.planSection = cs
	}
	entries := s.all("entry")
	if kind == "" && len(entries) > 0 {
		c.warn("not-supported", fmt.Sprintf("section %q (LOINC %s) is not converted: %d entries kept only in the original document", title, code, len(entries)), where)
	}
	if len(entries) == 0 {
		c.accounts = append(c.accounts, EntryAccount{Section: title, SectionCode: code, Where: where, Narrative: true})
	}
	for i, e := range entries {
		w := fmt.Sprintf("%s/entry[%d]", where, i+1)
		acct := EntryAccount{Section: title, SectionCode: code, Where: w}
		if kind == "" {
			acct.NotConverted = fmt.Sprintf("the section %q is not converted", title)
			c.accounts = append(c.accounts, acct)
			continue
		}
		before, issues := len(c.out), len(c.issues)
		c.touched = c.touched[:0]
		c.entry(kind, e, w)
		acct.Resources = append(acct.Resources, c.touched...)
		var clinical []int
		for j := before; j < len(c.out); j++ {
			p := c.out[j]
			acct.Resources = append(acct.Resources, p.typ+"/"+p.id)
			switch p.typ {
			case "Practitioner", "Organization", "Device", "Patient":
				continue
			}
			clinical = append(clinical, j)
			cs.entries = append(cs.entries, obj{{"reference", p.typ + "/" + p.id}})
		}
		c.keepNarrative(statement(e), clinical)
		if len(acct.Resources) == 0 {
			acct.NotConverted = "not converted"
			for j := len(c.issues) - 1; j >= issues; j-- {
				if d := c.issues[j].Details; d != nil && d.Text != "" {
					acct.NotConverted = d.Text
					break
				}
			}
		}
		c.accounts = append(c.accounts, acct)
	}
	for i, comp := range s.all("component") {
		if sub := c.section(comp.child("section"), fmt.Sprintf("%s/component[%d]/section", where, i+1), depth+1); sub != nil {
			cs.sections = append(cs.sections, sub)
		}
	}
	return cs
}

// listUnconverted adds an issue for every entry not converted that no
// issue names yet.
func (c *converter) listUnconverted() {
	for _, a := range c.accounts {
		if a.NotConverted == "" {
			continue
		}
		covered := false
		for _, is := range c.issues {
			for _, e := range is.Expression {
				if strings.HasPrefix(a.Where, e) {
					covered = true
				}
			}
		}
		if !covered {
			c.issue("information", "informational", fmt.Sprintf("entry not converted (%s); it is kept in the original document", a.NotConverted), a.Where)
		}
	}
}

// statement returns an entry's clinical statement.
func statement(e *node) *node {
	for _, ch := range e.children {
		switch ch.name {
		case "act", "observation", "substanceAdministration", "supply", "procedure", "encounter", "organizer", "regionOfInterest", "observationMedia":
			return ch
		}
	}
	return nil
}

func (c *converter) entry(kind string, e *node, where string) {
	st := statement(e)
	if st == nil {
		c.warn("not-supported", "entry without a clinical statement", where)
		return
	}
	where += "/" + st.name
	if c.moreEntry(kind, st, where) {
		return
	}
	if kind == kindSocial && st.hasTemplate("2.16.840.1.113883.10.20.22.4.200") {
		c.birthSex(st, where)
		return
	}
	switch kind {
	case kindEncounters:
		if st.name != "encounter" {
			c.unconverted(kind, st, where)
			return
		}
		c.encounter(st, where)
	case kindProblems, kindAllergies:
		obs := concernObservations(st)
		if obs == nil {
			c.unconverted(kind, st, where)
			return
		}
		for i, o := range obs {
			w := where
			if st.name == "act" {
				w = fmt.Sprintf("%s/entryRelationship[%d]/observation", where, i+1)
			}
			if kind == kindProblems {
				c.condition(st, o, w)
			} else {
				c.allergy(st, o, w)
			}
		}
	case kindMedications:
		if st.name != "substanceAdministration" {
			c.unconverted(kind, st, where)
			return
		}
		c.medication(st, where)
	case kindImmunization:
		if st.name != "substanceAdministration" {
			c.unconverted(kind, st, where)
			return
		}
		c.immunization(st, where)
	case kindProcedures:
		if st.name != "procedure" && st.name != "observation" && st.name != "act" {
			c.unconverted(kind, st, where)
			return
		}
		c.procedure(st, where)
	case kindResults, kindVitals, kindSocial:
		category := map[string]string{kindResults: "laboratory", kindVitals: "vital-signs", kindSocial: "social-history"}[kind]
		switch st.name {
		case "observation":
			c.observation(st, category, where)
		case "organizer":
			var refs []any
			for i, comp := range st.all("component") {
				o := comp.child("observation")
				if o == nil {
					c.warn("not-supported", "organizer component that is not an observation not converted", fmt.Sprintf("%s/component[%d]", where, i+1))
					continue
				}
				refs = append(refs, c.observation(o, category, fmt.Sprintf("%s/component[%d]/observation", where, i+1)))
			}
			if kind == kindResults {
				c.report(st, refs, where)
			}
		default:
			c.unconverted(kind, st, where)
		}
	}
}

func (c *converter) unconverted(kind string, st *node, where string) {
	c.warn("not-supported", fmt.Sprintf("%s in the %s section not converted", st.name, kind), where)
}

// concernObservations returns the observations of a concern act (problem or
// allergy concern), or the observation itself when an entry holds one directly.
func concernObservations(st *node) []*node {
	switch st.name {
	case "observation":
		return []*node{st}
	case "act":
		var out []*node
		for _, er := range st.all("entryRelationship") {
			if o := er.child("observation"); o != nil {
				out = append(out, o)
			}
		}
		return out
	}
	return nil
}

func negated(n *node) bool { return strings.EqualFold(n.attr("negationInd"), "true") }

func status(n *node) string { return strings.ToLower(n.child("statusCode").attr("code")) }

func cc(system, code, display string) obj {
	return obj{{"coding", []obj{obj{}.add("system", system).add("code", code).add("display", display)}}}
}

// ids of a statement, as Identifiers.
func (c *converter) stmtIDs(st *node) []obj { return identifiers(st.all("id")) }

// author reference of a statement (first author with a person).
func (c *converter) stmtAuthor(st *node, where string) (obj, string) {
	for _, a := range st.all("author") {
		aa := a.child("assignedAuthor")
		if aa.child("assignedPerson") != nil {
			return c.practitioner(aa, where+"/author"), c.ts(a.child("time"), where+"/author/time")
		}
		if t := c.ts(a.child("time"), where+"/author/time"); t != "" {
			return nil, t
		}
	}
	return nil, ""
}

func (c *converter) encounter(st *node, where string) {
	stat := map[string]string{"completed": "finished", "active": "in-progress", "aborted": "cancelled", "cancelled": "cancelled", "new": "planned"}[status(st)]
	if stat == "" {
		stat = "finished"
		if st.child("statusCode") != nil {
			stat = "unknown"
		}
	}
	class := obj{{"system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"}, {"code", "AMB"}, {"display", "ambulatory"}}
	code := st.child("code")
	for _, cd := range append([]*node{code}, code.all("translation")...) {
		if cd.attr("codeSystem") == "2.16.840.1.113883.5.4" && cd.attr("code") != "" {
			class = obj{}.add("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode").add("code", cd.attr("code")).add("display", cd.attr("displayName"))
		}
	}
	var reasons []obj
	var diagnoses []*node
	for _, er := range st.all("entryRelationship") {
		if o := er.child("observation"); o != nil && er.attr("typeCode") == "RSON" {
			if v := c.concept(o.child("value")); v != nil {
				reasons = append(reasons, v)
			}
		}
		if a := er.child("act"); a != nil && (a.hasTemplate("2.16.840.1.113883.10.20.22.4.80") || a.child("code").attr("code") == "29308-4") {
			diagnoses = append(diagnoses, a)
		}
	}
	var types []obj
	if t := c.concept(code); t != nil {
		types = append(types, t)
	}
	var parts []obj
	for i, p := range st.all("performer") {
		ae := p.child("assignedEntity")
		if ae.child("assignedPerson") == nil {
			continue
		}
		parts = append(parts, obj{{"type", []obj{cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")}},
			{"individual", c.practitioner(ae, fmt.Sprintf("%s/performer[%d]", where, i+1))}})
	}
	var locs []obj
	for _, p := range st.all("participant") {
		if p.attr("typeCode") != "LOC" {
			continue
		}
		role := p.child("participantRole")
		name := firstNonEmpty(role.path("playingEntity", "name").textContent(), c.concept(role.child("code")).text())
		if name != "" {
			locs = append(locs, obj{{"location", obj{{"display", name}}}})
		}
	}
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("class", class).
		add("type", types).
		add("subject", c.patientRef).
		add("participant", parts).
		add("period", c.periodObj(st.child("effectiveTime"), where+"/effectiveTime")).
		add("reasonCode", reasons).
		add("location", locs)
	ref := c.emitStmt(st, "Encounter", body, where, true)
	// encounter diagnoses: Conditions of the encounter
	var dx []obj
	for i, a := range diagnoses {
		for j, o := range nestedObservations(a) {
			w := fmt.Sprintf("%s/entryRelationship[%d]/act/entryRelationship[%d]/observation", where, i+1, j+1)
			before := len(c.out)
			c.condition(a, o, w)
			if len(c.out) == before {
				continue
			}
			p := &c.out[len(c.out)-1]
			p.body = p.body.set("category", []obj{cc("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")}).set("encounter", ref)
			dx = append(dx, obj{{"condition", obj{{"reference", p.typ + "/" + p.id}}}})
		}
	}
	if len(dx) > 0 {
		for i := range c.out {
			if c.out[i].typ+"/"+c.out[i].id == ref[0].val {
				c.out[i].body = c.out[i].body.set("diagnosis", dx)
			}
		}
	}
}

func (c *converter) condition(concern, o *node, where string) {
	start, end, one := c.period(o.child("effectiveTime"), where+"/effectiveTime")
	if start == "" {
		start = one
	}
	clinical := "active"
	switch {
	case end != "":
		clinical = "resolved"
	case status(concern) == "completed" && concern != o:
		clinical = "resolved"
	case status(concern) == "aborted" || status(concern) == "suspended":
		clinical = "inactive"
	}
	// The problem status observation (4.6) says it directly when present.
	for _, er := range o.all("entryRelationship") {
		if so := er.child("observation"); so != nil && so.hasTemplate("2.16.840.1.113883.10.20.22.4.6") {
			switch so.child("value").attr("code") {
			case "55561003":
				if end == "" {
					clinical = "active"
				}
			case "73425007":
				clinical = "inactive"
			case "413322009":
				clinical = "resolved"
			}
		}
	}
	verification := "confirmed"
	if negated(o) {
		verification = "refuted"
	}
	code := c.concept(o.child("value"))
	if code == nil {
		code = c.narrativeConcept(o, where)
	}
	author, recorded := c.stmtAuthor(o, where)
	body := obj{}.
		add("identifier", c.stmtIDs(o)).
		add("clinicalStatus", cc("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical, "")).
		add("verificationStatus", cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification, "")).
		add("category", []obj{cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")}).
		add("code", code).
		add("subject", c.patientRef).
		add("onsetDateTime", start).
		add("abatementDateTime", end).
		add("recordedDate", recorded).
		add("recorder", author)
	c.emitStmt(o, "Condition", body, where, true)
}

// narrativeConcept falls back to the statement's text (inline or referenced
// narrative) when it carries no code.
func (c *converter) narrativeConcept(st *node, where string) obj {
	t := c.originalText(st.child("text"))
	if t == "" {
		return nil
	}
	c.info("no code; the narrative text was kept as code.text", where)
	return obj{{"text", t}}
}

var allergyCategories = map[string][2]string{
	"419511003": {"medication", "allergy"},     // propensity to adverse reaction to drug
	"416098002": {"medication", "allergy"},     // drug allergy
	"59037007":  {"medication", "intolerance"}, // drug intolerance
	"414285001": {"food", "allergy"},           // food allergy
	"235719002": {"food", "intolerance"},       // food intolerance
	"418471000": {"food", "allergy"},           // propensity to adverse reaction to food
	"426232007": {"environment", "allergy"},    // environmental allergy
	"419199007": {"", "allergy"},               // allergy to substance
	"418038007": {"", ""},                      // propensity to adverse reactions to substance
}

func (c *converter) allergy(concern, o *node, where string) {
	start, end, one := c.period(o.child("effectiveTime"), where+"/effectiveTime")
	if start == "" {
		start = one
	}
	var substance *node
	for _, p := range o.all("participant") {
		if pe := p.path("participantRole", "playingEntity"); pe != nil {
			substance = pe
			break
		}
	}
	code := c.concept(substance.child("code"))
	if code == nil {
		code = c.concept(substance.child("name"))
		if t := substance.child("name").textContent(); code == nil && t != "" {
			code = obj{{"text", t}}
		}
	}
	clinical := "active"
	if end != "" || (status(concern) == "completed" && concern != o) {
		clinical = "resolved"
	}
	verification := "confirmed"
	if negated(o) {
		if code == nil {
			// "No known allergies": the negated observation of any substance.
			code = cc("http://snomed.info/sct", "716186003", "No known allergy")
		} else {
			verification = "refuted"
		}
	}
	if code == nil {
		code = c.narrativeConcept(o, where)
	}
	typeCat := allergyCategories[o.child("value").attr("code")]
	var cats []string
	if typeCat[0] != "" {
		cats = []string{typeCat[0]}
	}
	var reactions []obj
	criticality := ""
	for _, er := range o.all("entryRelationship") {
		ro := er.child("observation")
		if ro == nil {
			continue
		}
		switch {
		case ro.hasTemplate("2.16.840.1.113883.10.20.22.4.9") || er.attr("typeCode") == "MFST":
			m := c.concept(ro.child("value"))
			if m == nil {
				c.info("reaction without a manifestation not converted", where+"/entryRelationship")
				continue
			}
			r := obj{}.add("manifestation", []obj{m})
			rs, _, rone := c.period(ro.child("effectiveTime"), where+"/entryRelationship/observation/effectiveTime")
			r = r.add("onset", firstNonEmpty(rs, rone))
			for _, ser := range ro.all("entryRelationship") {
				if so := ser.child("observation"); so != nil && so.hasTemplate("2.16.840.1.113883.10.20.22.4.8") {
					r = r.add("severity", severity(so.child("value").attr("code")))
				}
			}
			reactions = append(reactions, r)
		case ro.hasTemplate("2.16.840.1.113883.10.20.22.4.145"):
			switch ro.child("value").attr("code") {
			case "CRITH":
				criticality = "high"
			case "CRITL":
				criticality = "low"
			case "CRITU":
				criticality = "unable-to-assess"
			}
		}
	}
	author, recorded := c.stmtAuthor(o, where)
	body := obj{}.
		add("identifier", c.stmtIDs(o)).
		add("clinicalStatus", cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", clinical, "")).
		add("verificationStatus", cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", verification, "")).
		add("type", typeCat[1]).
		add("category", cats).
		add("criticality", criticality).
		add("code", code).
		add("patient", c.patientRef).
		add("onsetDateTime", start).
		add("recordedDate", recorded).
		add("recorder", author).
		add("reaction", reactions)
	c.emitStmt(o, "AllergyIntolerance", body, where, true)
}

func severity(code string) string {
	switch code {
	case "255604002":
		return "mild"
	case "6736007":
		return "moderate"
	case "24484000", "399166001":
		return "severe"
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// product returns the consumable's coded product and its lot number.
func (c *converter) product(st *node) (obj, string) {
	mm := st.path("consumable", "manufacturedProduct", "manufacturedMaterial")
	code := c.concept(mm.child("code"))
	if code == nil {
		if t := mm.child("name").textContent(); t != "" {
			code = obj{{"text", t}}
		}
	}
	return code, mm.child("lotNumberText").textContent()
}

// timing splits a substanceAdministration's effectiveTimes into the
// administration period and a repeat (PIVL_TS) if any.
func (c *converter) timing(st *node, where string) (period obj, point string, repeat obj) {
	for _, et := range st.all("effectiveTime") {
		switch et.xsiType() {
		case "PIVL_TS":
			if p := et.child("period"); p != nil {
				if v := decimal(p.attr("value")); v != "" {
					unit := map[string]string{"s": "s", "min": "min", "h": "h", "d": "d", "wk": "wk", "mo": "mo", "a": "a"}[p.attr("unit")]
					if unit != "" {
						repeat = obj{{"frequency", 1}, {"period", json.Number(v)}, {"periodUnit", unit}}
					}
				}
			}
		case "EIVL_TS", "SXPR_TS":
			c.info("event-related or composite timing not converted", where+"/effectiveTime")
		default:
			s, e, one := c.period(et, where+"/effectiveTime")
			if one != "" {
				point = one
			} else if s != "" || e != "" {
				period = obj{}.add("start", s).add("end", e)
			}
		}
	}
	return
}

func (c *converter) medication(st *node, where string) {
	stat := map[string]string{"active": "active", "completed": "completed", "aborted": "stopped", "suspended": "on-hold", "cancelled": "not-taken", "nullified": "entered-in-error", "new": "intended"}[status(st)]
	if stat == "" {
		stat = "unknown"
	}
	if negated(st) {
		stat = "not-taken"
	}
	med, _ := c.product(st)
	if med == nil {
		med = c.narrativeConcept(st, where)
	}
	if med == nil {
		c.warn("incomplete", "medication without a product; recorded as unknown", where)
		med = obj{{"text", "unknown"}}
	}
	period, point, repeat := c.timing(st, where)
	dosage := obj{}.add("text", c.originalText(st.child("text")))
	if repeat != nil {
		dosage = dosage.add("timing", obj{{"repeat", repeat}})
	}
	dosage = dosage.add("route", c.concept(st.child("routeCode")))
	if q := quantity(st.child("doseQuantity")); q != nil {
		dosage = dosage.add("doseAndRate", []obj{{{"doseQuantity", q}}})
	}
	var dosages []obj
	if len(dosage) > 0 {
		dosages = []obj{dosage}
	}
	author, _ := c.stmtAuthor(st, where)
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("medicationCodeableConcept", med).
		add("subject", c.patientRef).
		add("effectiveDateTime", point).
		add("effectivePeriod", period).
		add("informationSource", author).
		add("dosage", dosages)
	c.emitStmt(st, "MedicationStatement", body, where, true)
}

func (c *converter) immunization(st *node, where string) {
	stat := "completed"
	var statusReason obj
	if negated(st) {
		stat = "not-done"
		for _, er := range st.all("entryRelationship") {
			if o := er.child("observation"); o != nil && er.attr("typeCode") == "RSON" {
				statusReason = c.concept(o.child("code"))
			}
		}
	} else if s := status(st); s == "nullified" {
		stat = "entered-in-error"
	}
	vaccine, lot := c.product(st)
	if vaccine == nil {
		c.warn("incomplete", "immunization without a vaccine code; recorded with data-absent-reason", where)
		vaccine = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	period, point, _ := c.timing(st, where)
	if point == "" && period != nil {
		point, _ = period.get("start").(string)
	}
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("statusReason", statusReason).
		add("vaccineCode", vaccine).
		add("patient", c.patientRef)
	if point != "" {
		body = body.add("occurrenceDateTime", point)
	} else {
		c.warn("incomplete", "immunization without a date; occurrence recorded as unknown", where)
		body = body.add("occurrenceString", "unknown")
	}
	body = body.add("lotNumber", lot).
		add("route", c.concept(st.child("routeCode"))).
		add("doseQuantity", quantity(st.child("doseQuantity")))
	if perf, _ := c.stmtAuthor(st, where); perf != nil {
		body = body.add("performer", []obj{{{"actor", perf}}})
	}
	c.emitStmt(st, "Immunization", body, where, true)
}

func (c *converter) procedure(st *node, where string) {
	stat := map[string]string{"completed": "completed", "active": "in-progress", "aborted": "stopped", "cancelled": "not-done", "new": "preparation", "held": "on-hold", "suspended": "on-hold", "nullified": "entered-in-error"}[status(st)]
	if stat == "" {
		stat = "unknown"
	}
	if negated(st) {
		stat = "not-done"
	}
	code := c.concept(st.child("code"))
	if code == nil {
		code = c.narrativeConcept(st, where)
	}
	s, e, one := c.period(st.child("effectiveTime"), where+"/effectiveTime")
	var sites []obj
	for _, t := range st.all("targetSiteCode") {
		if v := c.concept(t); v != nil {
			sites = append(sites, v)
		}
	}
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("code", code).
		add("subject", c.patientRef).
		add("performedDateTime", one).
		add("performedPeriod", obj{}.add("start", s).add("end", e)).
		add("bodySite", sites)
	c.emitStmt(st, "Procedure", body, where, true)
}

var absentReasons = map[string]string{"UNK": "unknown", "ASKU": "asked-unknown", "NAV": "temp-unknown", "NASK": "not-asked", "MSK": "masked", "NA": "not-applicable", "NI": "unknown", "OTH": "unsupported", "NAN": "not-a-number", "NINF": "negative-infinity", "PINF": "positive-infinity"}

// observation converts a result, vital-sign or social-history observation
// and returns its reference.
func (c *converter) observation(o *node, category, where string) obj {
	stat := map[string]string{"completed": "final", "active": "preliminary", "aborted": "cancelled", "cancelled": "cancelled", "nullified": "entered-in-error"}[status(o)]
	if stat == "" {
		stat = "final"
	}
	code := c.concept(o.child("code"))
	if code == nil {
		code = c.narrativeConcept(o, where)
	}
	if code == nil {
		c.warn("incomplete", "observation without a code; recorded with data-absent-reason", where)
		code = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	s, e, one := c.period(o.child("effectiveTime"), where+"/effectiveTime")
	body := obj{}.
		add("identifier", c.stmtIDs(o)).
		add("status", stat).
		add("code", code).
		add("subject", c.patientRef).
		add("effectiveDateTime", one).
		add("effectivePeriod", obj{}.add("start", s).add("end", e))
	if category != "" {
		body = body.set("category", []obj{cc("http://terminology.hl7.org/CodeSystem/observation-category", category, "")})
	}
	if len(o.all("value")) > 1 {
		c.info("observation with several values: only the first converted", where+"/value[2]")
	}
	body = c.value(body, o.child("value"), where+"/value")
	var interp []obj
	for _, ic := range o.all("interpretationCode") {
		if v := c.concept(ic); v != nil {
			interp = append(interp, v)
		}
	}
	body = body.add("interpretation", interp)
	var ranges []obj
	for _, rr := range o.all("referenceRange") {
		or := rr.child("observationRange")
		r := obj{}
		if v := or.child("value"); v != nil && v.attr("nullFlavor") == "" {
			r = r.add("low", quantity(v.child("low"))).add("high", quantity(v.child("high")))
		}
		r = r.add("text", firstNonEmpty(c.originalText(or.child("text")), or.child("text").textContent()))
		if len(r) > 0 {
			ranges = append(ranges, r)
		}
	}
	body = body.add("referenceRange", ranges)
	return c.emitStmt(o, "Observation", body, where, true)
}

// value adds value[x] (or dataAbsentReason) by the value's xsi:type.
func (c *converter) value(body obj, v *node, where string) obj {
	if v == nil {
		return body
	}
	if nf := v.attr("nullFlavor"); nf != "" && v.attr("value") == "" && v.attr("code") == "" {
		if t := c.originalText(v.child("originalText")); t != "" {
			return body.add("valueString", t)
		}
		r := absentReasons[nf]
		if r == "" {
			r = "unknown"
		}
		return body.add("dataAbsentReason", cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", r, ""))
	}
	switch v.xsiType() {
	case "PQ":
		if q := quantity(v); q != nil {
			return body.add("valueQuantity", q)
		}
	case "IVL_PQ":
		r := obj{}.add("low", quantity(v.child("low"))).add("high", quantity(v.child("high")))
		if len(r) > 0 {
			return body.add("valueRange", r)
		}
	case "INT":
		var n int64
		if _, err := fmt.Sscan(v.attr("value"), &n); err == nil && n >= -2147483648 && n <= 2147483647 {
			return body.add("valueInteger", n)
		}
	case "REAL":
		if d := decimal(v.attr("value")); d != "" {
			return body.add("valueQuantity", obj{{"value", json.Number(d)}})
		}
	case "BL":
		switch v.attr("value") {
		case "true":
			return body.add("valueBoolean", true)
		case "false":
			return body.add("valueBoolean", false)
		}
	case "TS":
		if t := c.ts(v, where); t != "" {
			return body.add("valueDateTime", t)
		}
	case "ST", "ED", "":
		if t := firstNonEmpty(v.textContent(), c.originalText(v)); t != "" {
			return body.add("valueString", t)
		}
	case "CD", "CE", "CV", "CO", "CS":
		if cc := c.concept(v); cc != nil {
			return body.add("valueCodeableConcept", cc)
		}
	default:
		if t := v.textContent(); t != "" {
			c.info("value of type "+v.xsiType()+" kept as text", where)
			return body.add("valueString", t)
		}
	}
	c.warn("not-supported", "value of type "+v.xsiType()+" not converted", where)
	return body
}

func (c *converter) report(org *node, refs []any, where string) {
	stat := map[string]string{"completed": "final", "active": "preliminary", "aborted": "cancelled", "cancelled": "cancelled", "nullified": "entered-in-error"}[status(org)]
	if stat == "" {
		stat = "final"
	}
	code := c.concept(org.child("code"))
	if code == nil {
		code = obj{{"text", "Laboratory results"}}
	}
	s, e, one := c.period(org.child("effectiveTime"), where+"/effectiveTime")
	body := obj{}.
		add("identifier", c.stmtIDs(org)).
		add("status", stat).
		add("category", []obj{cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")}).
		add("code", code).
		add("subject", c.patientRef).
		add("effectiveDateTime", one).
		add("effectivePeriod", obj{}.add("start", s).add("end", e)).
		add("result", refs)
	c.emitStmt(org, "DiagnosticReport", body, where, true)
}
