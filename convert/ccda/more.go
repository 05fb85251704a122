package ccda

import (
	"fmt"
	"strings"
)

// Sections beyond the core clinical ones: plan of care, assessment and plan
// and instructions (CarePlan with ServiceRequest, MedicationRequest and
// Goal activities), interventions (Procedure when carried out, else a plan
// activity),
// goals, health concerns, functional, mental and nutritional status and
// physical exam findings (Observation), payers (Coverage), advance
// directives (Observation), medical equipment (Device with
// DeviceUseStatement), family history (FamilyMemberHistory), past medical
// history and admission and discharge diagnoses (Condition), admission and
// discharge medications, and reason for referral (ServiceRequest). Mappings follow
// HL7's C-CDA on FHIR.

const (
	kindPlan          = "plan-of-care"
	kindGoals         = "goals"
	kindConcerns      = "health-concerns"
	kindFunctional    = "functional-status"
	kindMental        = "mental-status"
	kindNutrition     = "nutrition"
	kindExam          = "physical-exam"
	kindPayers        = "payers"
	kindAdvance       = "advance-directives"
	kindEquipment     = "medical-equipment"
	kindFamily        = "family-history"
	kindPastHistory   = "past-medical-history"
	kindAdmitDx       = "admission-diagnosis"
	kindDischargeDx   = "discharge-diagnosis"
	kindDischargeMed  = "discharge-medications"
	kindAdministered  = "medications-administered"
	kindInstructions  = "instructions"
	kindReferral      = "reason-for-referral"
	kindAssessPlan    = "assessment-and-plan"
	kindInterventions = "interventions"
	kindAdmissionMed  = "admission-medications"
)

// moreSectionKinds: templateId roots and LOINC section codes of C-CDA R2.1.
var moreSectionKinds = []struct {
	kind      string
	templates []string
	loinc     []string
}{
	{kindPlan, []string{"2.16.840.1.113883.10.20.22.2.10"}, []string{"18776-5"}},
	{kindGoals, []string{"2.16.840.1.113883.10.20.22.2.60"}, []string{"61146-7"}},
	{kindConcerns, []string{"2.16.840.1.113883.10.20.22.2.58"}, []string{"75310-3"}},
	{kindFunctional, []string{"2.16.840.1.113883.10.20.22.2.14"}, []string{"47420-5"}},
	{kindMental, []string{"2.16.840.1.113883.10.20.22.2.56"}, []string{"10190-7"}},
	{kindNutrition, []string{"2.16.840.1.113883.10.20.22.2.57"}, []string{"61144-2"}},
	{kindExam, []string{"2.16.840.1.113883.10.20.2.10", "2.16.840.1.113883.10.20.22.2.63", "2.16.840.1.113883.10.20.22.2.65"}, []string{"29545-1", "8709-8", "10184-0"}},
	{kindPayers, []string{"2.16.840.1.113883.10.20.22.2.18"}, []string{"48768-6"}},
	{kindAdvance, []string{"2.16.840.1.113883.10.20.22.2.21", "2.16.840.1.113883.10.20.22.2.21.1"}, []string{"42348-3"}},
	{kindEquipment, []string{"2.16.840.1.113883.10.20.22.2.23"}, []string{"46264-8"}},
	{kindFamily, []string{"2.16.840.1.113883.10.20.22.2.15"}, []string{"10157-6"}},
	{kindPastHistory, []string{"2.16.840.1.113883.10.20.22.2.20"}, []string{"11348-0"}},
	{kindAdmitDx, []string{"2.16.840.1.113883.10.20.22.2.43"}, []string{"46241-6", "42347-5"}},
	{kindDischargeDx, []string{"2.16.840.1.113883.10.20.22.2.24"}, []string{"11535-2", "78375-3"}},
	{kindDischargeMed, []string{"2.16.840.1.113883.10.20.22.2.11", "2.16.840.1.113883.10.20.22.2.11.1"}, []string{"10183-2", "75311-1"}},
	{kindAdministered, []string{"2.16.840.1.113883.10.20.22.2.38"}, []string{"29549-3"}},
	{kindInstructions, []string{"2.16.840.1.113883.10.20.22.2.45"}, []string{"69730-0"}},
	{kindReferral, []string{"1.3.6.1.4.1.19376.1.5.3.1.3.1"}, []string{"42349-1"}},
	{kindAssessPlan, []string{"2.16.840.1.113883.10.20.22.2.9"}, []string{"51847-2"}},
	{kindInterventions, []string{"2.16.840.1.113883.10.20.21.2.3"}, []string{"62387-6"}},
	{kindAdmissionMed, []string{"2.16.840.1.113883.10.20.22.2.44"}, []string{"42346-7"}},
}

func moreSectionKind(s *node) string {
	for _, k := range moreSectionKinds {
		if s.hasTemplate(k.templates...) {
			return k.kind
		}
	}
	code := s.child("code").attr("code")
	for _, k := range moreSectionKinds {
		for _, l := range k.loinc {
			if code == l {
				return k.kind
			}
		}
	}
	return ""
}

// moreEntry converts an entry of the sections above; false when the kind
// is not one of them.
func (c *converter) moreEntry(kind string, st *node, where string) bool {
	switch kind {
	case kindPlan, kindInstructions, kindAssessPlan:
		c.planned(st, where)
	case kindInterventions:
		// an intervention carried out is a Procedure; one intended, a
		// planned activity like the plan of treatment's
		if st.attr("moodCode") == "EVN" && (st.name == "act" || st.name == "procedure") {
			c.procedure(st, where)
		} else {
			c.planned(st, where)
		}
	case kindGoals:
		if st.name != "observation" {
			c.unconverted(kind, st, where)
			break
		}
		c.goal(st, where)
	case kindConcerns:
		c.healthConcern(st, where)
	case kindFunctional, kindMental, kindNutrition, kindExam, kindAdvance:
		c.statusObservations(kind, st, where)
	case kindPayers:
		c.coverage(st, where)
	case kindEquipment:
		c.equipment(st, where)
	case kindFamily:
		c.familyHistory(st, where)
	case kindPastHistory, kindAdmitDx, kindDischargeDx:
		obs := nestedObservations(st)
		if len(obs) == 0 {
			c.unconverted(kind, st, where)
			break
		}
		for i, o := range obs {
			w := where
			if o != st {
				w = fmt.Sprintf("%s/entryRelationship[%d]/observation", where, i+1)
			}
			c.conditionOf(kind, st, o, w)
		}
	case kindDischargeMed, kindAdministered, kindAdmissionMed:
		sa := st
		if st.name == "act" {
			// Discharge (or Admission) Medication act around the
			// medication activity
			for _, er := range st.all("entryRelationship") {
				if s := er.child("substanceAdministration"); s != nil {
					sa = s
					where += "/entryRelationship/substanceAdministration"
					break
				}
			}
		}
		if sa.name != "substanceAdministration" {
			c.unconverted(kind, st, where)
			break
		}
		c.medication(sa, where)
	case kindReferral:
		c.request(st, where, "order")
	default:
		return false
	}
	return true
}

// nestedObservations are the observations of an entry: itself, or those
// of an act (concern, diagnosis act) around them.
func nestedObservations(st *node) []*node {
	if st.name == "observation" {
		return []*node{st}
	}
	var out []*node
	for _, er := range st.all("entryRelationship") {
		if o := er.child("observation"); o != nil {
			out = append(out, o)
		}
	}
	return out
}

// conditionOf converts a past-history, admission or discharge diagnosis.
func (c *converter) conditionOf(kind string, act, o *node, where string) {
	before := len(c.out)
	c.condition(act, o, where)
	if len(c.out) == before {
		return
	}
	p := &c.out[len(c.out)-1]
	switch kind {
	case kindAdmitDx, kindDischargeDx:
		p.body = p.body.set("category", []obj{cc("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")})
		if c.encounterRef != nil {
			p.body = p.body.set("encounter", c.encounterRef)
		}
	}
}

// --- plan of care ---

// intents maps a planned act's moodCode to a request's intent.
var intents = map[string]string{"INT": "plan", "RQO": "order", "PRP": "proposal", "PRMS": "directive", "ARQ": "order", "APT": "order", "EVN.CRT": "plan", "GOL": "plan"}

// planned converts a plan-of-care entry: a goal, a planned medication or
// immunization (MedicationRequest), an instruction (a CarePlan activity
// described in words), or any other planned act, encounter, observation,
// procedure or supply (ServiceRequest). Each becomes an activity of the
// document's CarePlan.
func (c *converter) planned(st *node, where string) {
	switch {
	case st.name == "observation" && (st.attr("moodCode") == "GOL" || st.hasTemplate("2.16.840.1.113883.10.20.22.4.121")):
		ref := c.goal(st, where)
		c.carePlanGoal(ref)
	case st.hasTemplate("2.16.840.1.113883.10.20.22.4.20") || st.name == "act" && strings.EqualFold(st.child("code").attr("code"), "409073007"):
		// an instruction: words for the patient
		text := firstNonEmpty(c.originalText(st.child("text")), c.concept(st.child("code")).text())
		if text == "" {
			c.warn("incomplete", "an instruction without text", where)
			return
		}
		c.carePlanActivity(obj{{"detail", obj{}.add("kind", "CommunicationRequest").add("code", c.concept(st.child("code"))).
			add("status", "not-started").add("description", text)}})
		c.planAccount = append(c.planAccount, where)
	case st.name == "substanceAdministration":
		ref := c.medicationRequest(st, where)
		c.carePlanActivity(obj{{"reference", ref}})
	case st.name == "act" || st.name == "encounter" || st.name == "observation" || st.name == "procedure" || st.name == "supply":
		ref := c.request(st, where, "")
		if ref != nil {
			c.carePlanActivity(obj{{"reference", ref}})
		}
	default:
		c.unconverted(kindPlan, st, where)
	}
}

// request converts a planned act, encounter, observation, procedure or
// supply (or a referral) into a ServiceRequest.
func (c *converter) request(st *node, where, intent string) obj {
	code := c.concept(st.child("code"))
	if code == nil {
		code = c.narrativeConcept(st, where)
	}
	if code == nil {
		if pe := st.path("participant", "participantRole", "playingDevice"); pe != nil {
			code = c.concept(pe.child("code"))
		}
	}
	if code == nil {
		// what the planned act refers to (a planned encounter around the
		// encounter it plans)
		for _, er := range st.all("entryRelationship") {
			if inner := statement(er); inner != nil {
				if code = c.concept(inner.child("code")); code == nil {
					code = c.narrativeConcept(inner, where)
				}
				if code != nil {
					break
				}
			}
		}
	}
	if code == nil {
		c.warn("incomplete", "a planned "+st.name+" without a code or text", where)
		return nil
	}
	if intent == "" {
		intent = intents[st.attr("moodCode")]
	}
	if intent == "" {
		intent = "plan"
	}
	stat := map[string]string{"active": "active", "new": "active", "completed": "completed", "aborted": "revoked", "cancelled": "revoked", "suspended": "on-hold", "held": "on-hold", "nullified": "entered-in-error"}[status(st)]
	if stat == "" {
		stat = "active"
	}
	author, authored := c.stmtAuthor(st, where)
	s, e, one := c.period(st.child("effectiveTime"), where+"/effectiveTime")
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("intent", intent).
		add("code", code).
		add("subject", c.patientRef).
		add("occurrenceDateTime", one).
		add("occurrencePeriod", obj{}.add("start", s).add("end", e)).
		add("authoredOn", authored).
		add("requester", author)
	if p := st.child("priorityCode").attr("code"); p != "" {
		body = body.add("priority", map[string]string{"S": "stat", "A": "asap", "R": "routine", "UR": "urgent", "EM": "urgent", "EL": "routine"}[p])
	}
	var reasons []obj
	for _, er := range st.all("entryRelationship") {
		if o := er.child("observation"); o != nil && er.attr("typeCode") == "RSON" {
			if v := c.concept(o.child("value")); v != nil {
				reasons = append(reasons, v)
			}
		}
	}
	body = body.add("reasonCode", reasons)
	if st.name == "observation" {
		if v := c.concept(st.child("value")); v != nil {
			body = body.add("orderDetail", []obj{v})
		}
	}
	if sites := c.sites(st, where); len(sites) > 0 {
		body = body.add("bodySite", sites)
	}
	return c.emitStmt(st, "ServiceRequest", body, where, true)
}

func (c *converter) sites(st *node, where string) []obj {
	var out []obj
	for _, t := range st.all("targetSiteCode") {
		if v := c.concept(t); v != nil {
			out = append(out, v)
		}
	}
	return out
}

// medicationRequest converts a planned medication or immunization.
func (c *converter) medicationRequest(st *node, where string) obj {
	med, _ := c.product(st)
	if med == nil {
		med = c.narrativeConcept(st, where)
	}
	if med == nil {
		c.warn("incomplete", "planned medication without a product; recorded as unknown", where)
		med = obj{{"text", "unknown"}}
	}
	intent := intents[st.attr("moodCode")]
	if intent == "" || intent == "directive" {
		intent = "plan"
	}
	stat := map[string]string{"active": "active", "completed": "completed", "aborted": "stopped", "cancelled": "cancelled", "suspended": "on-hold", "nullified": "entered-in-error", "new": "draft"}[status(st)]
	if stat == "" {
		stat = "active"
	}
	period, point, repeat := c.timing(st, where)
	dosage := obj{}.add("text", c.originalText(st.child("text")))
	timing := obj{}
	if repeat != nil {
		timing = timing.add("repeat", repeat)
	}
	if point != "" {
		timing = timing.add("event", []string{point})
	}
	dosage = dosage.add("timing", timing).add("route", c.concept(st.child("routeCode")))
	if q := quantity(st.child("doseQuantity")); q != nil {
		dosage = dosage.add("doseAndRate", []obj{{{"doseQuantity", q}}})
	}
	author, authored := c.stmtAuthor(st, where)
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("intent", intent).
		add("medicationCodeableConcept", med).
		add("subject", c.patientRef).
		add("authoredOn", authored).
		add("requester", author)
	if len(dosage) > 0 {
		body = body.add("dosageInstruction", []obj{dosage})
	}
	if period != nil {
		body = body.add("dispenseRequest", obj{{"validityPeriod", period}})
	}
	return c.emitStmt(st, "MedicationRequest", body, where, true)
}

// carePlanActivity adds an activity to the document's CarePlan.
func (c *converter) carePlanActivity(a obj) { c.planActivities = append(c.planActivities, a) }

func (c *converter) carePlanGoal(ref obj) {
	if ref != nil {
		c.planGoals = append(c.planGoals, ref)
	}
}

// carePlan makes the document's CarePlan of the planned activities, goals
// and instructions, with the plan section's narrative.
func (c *converter) carePlan() {
	if len(c.planActivities) == 0 && len(c.planGoals) == 0 {
		return
	}
	var goals []any
	for _, g := range c.planGoals {
		goals = append(goals, g)
	}
	var acts []any
	for _, a := range c.planActivities {
		acts = append(acts, a)
	}
	title := firstNonEmpty(c.planTitle, "Plan of care")
	body := obj{}.
		add("status", "active").
		add("intent", "plan").
		add("category", []obj{cc("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan", "Assessment and Plan of Treatment")}).
		add("title", title).
		add("subject", c.patientRef).
		add("author", firstRef(c.authorRefs)).
		add("goal", goals).
		add("activity", acts)
	if c.planText != "" {
		body = append(obj{{"text", obj{{"status", "additional"}, {"div", c.planText}}}}, body...)
	}
	ref := c.emit("CarePlan", body, "", true)
	for _, w := range c.planAccount {
		c.accountFor(w, ref[0].val.(string))
	}
	if c.planSection != nil {
		c.planSection.entries = append(c.planSection.entries, ref)
	}
}

func firstRef(refs []obj) obj {
	if len(refs) == 0 {
		return nil
	}
	return refs[0]
}

// --- goals ---

func (c *converter) goal(o *node, where string) obj {
	desc := c.concept(o.child("value"))
	if desc == nil {
		desc = c.concept(o.child("code"))
	}
	if desc == nil {
		desc = c.narrativeConcept(o, where)
	}
	if desc == nil {
		c.warn("incomplete", "goal without a code, value or text; recorded as unknown", where)
		desc = obj{{"text", "unknown"}}
	}
	life := map[string]string{"active": "active", "completed": "completed", "cancelled": "cancelled", "aborted": "cancelled", "suspended": "on-hold", "new": "proposed", "nullified": "entered-in-error"}[status(o)]
	if life == "" {
		life = "active"
	}
	s, e, one := c.period(o.child("effectiveTime"), where+"/effectiveTime")
	author, _ := c.stmtAuthor(o, where)
	body := obj{}.
		add("identifier", c.stmtIDs(o)).
		add("lifecycleStatus", life).
		add("description", desc).
		add("subject", c.patientRef).
		add("startDate", dateOnly(firstNonEmpty(s, one))).
		add("expressedBy", author)
	if e != "" {
		body = body.add("target", []obj{{{"dueDate", dateOnly(e)}}})
	}
	if v := o.child("value"); v != nil && (v.xsiType() == "PQ" || v.xsiType() == "IVL_PQ") {
		t := obj{}.add("measure", c.concept(o.child("code")))
		if q := quantity(v); q != nil {
			t = t.add("detailQuantity", q)
		} else if r := (obj{}).add("low", quantity(v.child("low"))).add("high", quantity(v.child("high"))); len(r) > 0 {
			t = t.add("detailRange", r)
		}
		if e != "" {
			t = t.add("dueDate", dateOnly(e))
		}
		if len(t) > 0 {
			body = body.set("target", []obj{t})
			body = body.set("description", obj{{"text", firstNonEmpty(c.originalText(o.child("text")), c.concept(o.child("code")).text(), "goal")}})
		}
	}
	return c.emitStmt(o, "Goal", body, where, true)
}

func dateOnly(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// --- health concerns ---

func (c *converter) healthConcern(st *node, where string) {
	obs := nestedObservations(st)
	if len(obs) == 0 {
		// a concern act with only its own code
		if code := c.concept(st.child("code")); code != nil && st.name == "act" {
			obs = []*node{st}
		}
	}
	if len(obs) == 0 {
		c.unconverted(kindConcerns, st, where)
		return
	}
	for i, o := range obs {
		w := where
		if o != st {
			w = fmt.Sprintf("%s/entryRelationship[%d]/observation", where, i+1)
		}
		code := c.concept(o.child("value"))
		if code == nil {
			code = c.concept(o.child("code"))
		}
		if code == nil {
			code = c.narrativeConcept(o, w)
		}
		if code == nil {
			c.warn("incomplete", "health concern without a code or text", w)
			continue
		}
		clinical := "active"
		if status(st) == "completed" {
			clinical = "resolved"
		}
		s, e, one := c.period(o.child("effectiveTime"), w+"/effectiveTime")
		author, recorded := c.stmtAuthor(o, w)
		body := obj{}.
			add("identifier", c.stmtIDs(o)).
			add("clinicalStatus", cc("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical, "")).
			add("category", []obj{cc("http://hl7.org/fhir/us/core/CodeSystem/condition-category", "health-concern", "Health Concern")}).
			add("code", code).
			add("subject", c.patientRef).
			add("onsetDateTime", firstNonEmpty(s, one)).
			add("abatementDateTime", e).
			add("recordedDate", recorded).
			add("recorder", author)
		if e != "" {
			body = body.set("clinicalStatus", cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", ""))
		}
		c.emitStmt(o, "Condition", body, w, true)
	}
}

// --- functional, mental, nutritional status, exam findings, advance
// directives: Observations ---

// statusCategories are the Observation categories of the status sections.
var statusCategories = map[string]obj{
	kindFunctional: cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-category", "functional-status", "Functional Status"),
	kindMental:     cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-category", "cognitive-status", "Cognitive Status"),
	kindNutrition:  cc("http://terminology.hl7.org/CodeSystem/observation-category", "exam", "Exam"),
	kindExam:       cc("http://terminology.hl7.org/CodeSystem/observation-category", "exam", "Exam"),
	kindAdvance:    cc("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey"),
}

// statusObservations converts an observation of these sections, or an
// organizer of them (an Observation with its members), or a problem
// observation among them (a Condition), or the supplies they name
// (devices the patient uses).
func (c *converter) statusObservations(kind string, st *node, where string) {
	switch st.name {
	case "observation":
		c.statusObservation(kind, st, where)
	case "organizer":
		var members []any
		for i, comp := range st.all("component") {
			w := fmt.Sprintf("%s/component[%d]", where, i+1)
			switch {
			case comp.child("observation") != nil:
				if ref := c.statusObservation(kind, comp.child("observation"), w+"/observation"); ref != nil {
					members = append(members, ref)
				}
			case comp.child("supply") != nil:
				c.supply(comp.child("supply"), w+"/supply")
			case comp.child("procedure") != nil:
				c.procedure(comp.child("procedure"), w+"/procedure")
			default:
				c.warn("not-supported", "organizer component not converted", w)
			}
		}
		code := c.concept(st.child("code"))
		if code == nil {
			code = obj{{"text", strings.ReplaceAll(kind, "-", " ")}}
		}
		s, e, one := c.period(st.child("effectiveTime"), where+"/effectiveTime")
		body := obj{}.
			add("identifier", c.stmtIDs(st)).
			add("status", "final").
			add("category", []obj{statusCategories[kind]}).
			add("code", code).
			add("subject", c.patientRef).
			add("effectiveDateTime", one).
			add("effectivePeriod", obj{}.add("start", s).add("end", e)).
			add("hasMember", members)
		c.emitStmt(st, "Observation", body, where, true)
	case "supply":
		c.supply(st, where)
	case "act":
		if obs := nestedObservations(st); len(obs) > 0 {
			for i, o := range obs {
				c.statusObservation(kind, o, fmt.Sprintf("%s/entryRelationship[%d]/observation", where, i+1))
			}
			return
		}
		c.unconverted(kind, st, where)
	default:
		c.unconverted(kind, st, where)
	}
}

func (c *converter) statusObservation(kind string, o *node, where string) obj {
	if o.hasTemplate("2.16.840.1.113883.10.20.22.4.4", "2.16.840.1.113883.10.20.22.4.68", "2.16.840.1.113883.10.20.22.4.73") {
		// a problem (functional or cognitive): a Condition
		c.condition(o, o, where)
		return nil
	}
	ref := c.observation(o, "", where)
	if ref == nil {
		return nil
	}
	p := &c.out[len(c.out)-1]
	p.body = p.body.set("category", []obj{statusCategories[kind]})
	// supplies a status observation names: devices the patient uses
	for i, er := range o.all("entryRelationship") {
		if s := er.child("supply"); s != nil {
			c.supply(s, fmt.Sprintf("%s/entryRelationship[%d]/supply", where, i+1))
		}
	}
	return ref
}

// --- payers ---

// coverage converts a Coverage Activity: one Coverage per Policy Activity.
func (c *converter) coverage(st *node, where string) {
	var policies []*node
	if st.hasTemplate("2.16.840.1.113883.10.20.22.4.61") {
		policies = []*node{st}
	} else {
		for _, er := range st.all("entryRelationship") {
			if a := er.child("act"); a != nil {
				policies = append(policies, a)
			}
		}
	}
	if len(policies) == 0 {
		c.unconverted(kindPayers, st, where)
		return
	}
	for i, pol := range policies {
		w := where
		if pol != st {
			w = fmt.Sprintf("%s/entryRelationship[%d]/act", where, i+1)
		}
		c.policy(pol, w)
	}
}

// policy converts a Policy Activity: the payer (performer with
// representedOrganization), the covered party (participant COV: member id,
// relationship), the policy holder (participant HLD).
func (c *converter) policy(pol *node, where string) {
	var payor obj
	for _, p := range pol.all("performer") {
		ae := p.child("assignedEntity")
		if ae == nil || p.hasTemplate("2.16.840.1.113883.10.20.22.4.88") || ae.child("code").attr("code") == "GUAR" {
			continue // the guarantor pays the bill, not the policy
		}
		if org := ae.child("representedOrganization"); org != nil {
			payor = c.organization(org, where+"/performer/assignedEntity/representedOrganization")
		}
		if payor == nil && ae.child("assignedPerson") != nil {
			payor = c.practitioner(ae, where+"/performer/assignedEntity")
		}
		if payor != nil {
			break
		}
	}
	typ := c.concept(pol.child("code"))
	if payor == nil {
		if t := typ.text(); strings.Contains(strings.ToLower(t), "self") {
			payor = c.patientRef
		}
	}
	if payor == nil {
		payor = obj{{"display", firstNonEmpty(typ.text(), "unknown payer")}}
	}
	stat := "active"
	if s := status(pol); s == "cancelled" || s == "aborted" || s == "nullified" {
		stat = "cancelled"
	}
	body := obj{}.
		add("identifier", c.stmtIDs(pol)).
		add("status", stat).
		add("type", typ).
		add("beneficiary", c.patientRef).
		add("payor", []obj{payor})
	for _, p := range pol.all("participant") {
		role := p.child("participantRole")
		switch p.attr("typeCode") {
		case "COV":
			if id := identifier(role.child("id")); id != nil {
				body = body.add("subscriberId", id.get("value"))
			}
			rel := role.child("code")
			if r := c.concept(rel); r != nil {
				if code := map[string]string{"SELF": "self", "SPS": "spouse", "SPOUSE": "spouse", "CHILD": "child", "FTH": "parent", "MTH": "parent", "PRN": "parent", "DOMPART": "common"}[rel.attr("code")]; code != "" {
					r = r.set("coding", append([]obj{{{"system", "http://terminology.hl7.org/CodeSystem/subscriber-relationship"}, {"code", code}}}, codings(r)...))
				}
				body = body.add("relationship", r)
			}
			s, e, _ := c.period(p.child("time"), where+"/participant/time")
			body = body.add("period", obj{}.add("start", s).add("end", e))
		case "HLD":
			name := names(role.path("playingEntity").all("name"))
			if len(name) > 0 {
				rp := obj{}.add("patient", c.patientRef).add("identifier", identifiers(role.all("id"))).add("name", name).
					add("address", addresses(role.all("addr"))).
					add("relationship", []obj{cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "POLHOLD", "policy holder")})
				ref := c.emit("RelatedPerson", rp, where+"/participant", true)
				body = body.add("policyHolder", ref).add("subscriber", ref)
			}
		}
	}
	if body.get("subscriber") == nil && body.get("relationship") != nil && strings.Contains(fmt.Sprint(body.get("relationship")), "self") {
		body = body.add("subscriber", c.patientRef)
	}
	c.emitStmt(pol, "Coverage", body, where, true)
}

func codings(o obj) []obj {
	if cs, ok := o.get("coding").([]obj); ok {
		return cs
	}
	return nil
}

// --- medical equipment ---

// equipment converts a Medical Equipment Organizer, a Non-Medicinal
// Supply Activity or a procedure that placed a device.
func (c *converter) equipment(st *node, where string) {
	switch st.name {
	case "supply":
		c.supply(st, where)
	case "procedure":
		c.procedure(st, where)
	case "organizer":
		for i, comp := range st.all("component") {
			w := fmt.Sprintf("%s/component[%d]", where, i+1)
			switch {
			case comp.child("supply") != nil:
				c.supply(comp.child("supply"), w+"/supply")
			case comp.child("procedure") != nil:
				c.procedure(comp.child("procedure"), w+"/procedure")
			default:
				c.warn("not-supported", "medical equipment component not converted", w)
			}
		}
	default:
		c.unconverted(kindEquipment, st, where)
	}
}

// supply converts a Non-Medicinal Supply Activity: the Device (Product
// Instance: its identifier is the UDI when it has one) and a
// DeviceUseStatement.
func (c *converter) supply(st *node, where string) {
	role := st.path("participant", "participantRole")
	dev := role.child("playingDevice")
	typ := c.concept(dev.child("code"))
	if typ == nil {
		if mm := st.path("product", "manufacturedProduct", "manufacturedMaterial"); mm != nil {
			typ = c.concept(mm.child("code"))
			if typ == nil && mm.child("name").textContent() != "" {
				typ = obj{{"text", mm.child("name").textContent()}}
			}
		}
	}
	if typ == nil {
		typ = c.narrativeConcept(st, where)
	}
	if typ == nil {
		c.warn("incomplete", "supply without a device code or text", where)
		return
	}
	device := obj{}.add("identifier", identifiers(role.all("id"))).add("type", typ).add("patient", c.patientRef)
	if udi := role.child("id"); udi != nil && udi.attr("root") == "2.16.840.1.113883.3.3719" && udi.attr("extension") != "" {
		device = device.add("udiCarrier", []obj{{{"carrierHRF", udi.attr("extension")}}})
	}
	if m := role.path("scopingEntity", "desc").textContent(); m != "" {
		device = device.add("manufacturer", m)
	}
	dref := c.emit("Device", device, where, true)
	stat := map[string]string{"completed": "completed", "active": "active", "aborted": "stopped", "cancelled": "not-done", "nullified": "entered-in-error", "new": "intended"}[status(st)]
	if stat == "" {
		stat = "completed"
	}
	s, e, one := c.period(st.child("effectiveTime"), where+"/effectiveTime")
	use := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", stat).
		add("subject", c.patientRef).
		add("timingDateTime", one).
		add("timingPeriod", obj{}.add("start", s).add("end", e)).
		add("device", dref)
	c.emitStmt(st, "DeviceUseStatement", use, where, true)
}

// --- family history ---

func (c *converter) familyHistory(st *node, where string) {
	var rel *node
	var comps []*node
	switch st.name {
	case "organizer":
		rel = st.path("subject", "relatedSubject")
		for _, comp := range st.all("component") {
			if o := comp.child("observation"); o != nil {
				comps = append(comps, o)
			}
		}
	case "observation":
		rel = st.path("subject", "relatedSubject")
		comps = []*node{st}
	default:
		c.unconverted(kindFamily, st, where)
		return
	}
	relationship := c.concept(rel.child("code"))
	if relationship == nil {
		relationship = obj{{"text", "family member"}}
	}
	subj := rel.child("subject")
	body := obj{}.
		add("identifier", c.stmtIDs(st)).
		add("status", "completed").
		add("patient", c.patientRef).
		add("relationship", relationship)
	if g := gender(subj.child("administrativeGenderCode")); g != "" && subj.child("administrativeGenderCode") != nil {
		body = body.add("sex", cc("http://hl7.org/fhir/administrative-gender", g, ""))
	}
	if bt := c.ts(subj.child("birthTime"), where+"/subject/relatedSubject/subject/birthTime"); bt != "" {
		body = body.add("bornDate", dateOnly(bt))
	}
	var conds []obj
	deceased := false
	for i, o := range comps {
		w := where
		if o != st {
			w = fmt.Sprintf("%s/component[%d]/observation", where, i+1)
		}
		code := c.concept(o.child("value"))
		if code == nil {
			code = c.narrativeConcept(o, w)
		}
		if code == nil {
			c.warn("incomplete", "family history observation without a condition", w)
			continue
		}
		cond := obj{}.add("code", code)
		for _, er := range o.all("entryRelationship") {
			eo := er.child("observation")
			switch {
			case eo == nil:
			case eo.hasTemplate("2.16.840.1.113883.10.20.22.4.31"): // age
				if q := quantity(eo.child("value")); q != nil {
					cond = cond.add("onsetAge", q.set("system", "http://unitsofmeasure.org"))
				}
			case eo.hasTemplate("2.16.840.1.113883.10.20.22.4.47") || er.attr("typeCode") == "CAUS": // death
				cond = cond.add("contributedToDeath", true)
				deceased = true
			}
		}
		if cond.get("onsetAge") == nil {
			if on := c.ts(o.child("effectiveTime"), w+"/effectiveTime"); on != "" {
				cond = cond.add("onsetString", on)
			} else if low := c.ts(o.path("effectiveTime", "low"), w+"/effectiveTime/low"); low != "" {
				cond = cond.add("onsetString", low)
			}
		}
		conds = append(conds, cond)
	}
	if deceased {
		body = body.add("deceasedBoolean", true)
	}
	body = body.add("condition", conds)
	c.emitStmt(st, "FamilyMemberHistory", body, where, true)
}
