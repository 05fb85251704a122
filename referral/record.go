package referral

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// This file reads the parts of a record the case summary needs: dates,
// codes, labels, quantities and the patient's sex and age.

// parseFHIRTime reads a FHIR date, dateTime or instant ("2019", "2019-03",
// "2019-03-05", "2019-03-05T11:46:26-05:00"); a partial date is its first
// moment. ok is false for anything else.
func parseFHIRTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// HumanDate renders a date for people ("5 Mar 2019"); zero is "".
func HumanDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("2 Jan 2006")
}

// whenOf is the clinically relevant time of a resource: when it was
// observed, performed, started or recorded.
func whenOf(r *fhir.Resource) time.Time {
	root := r.Root()
	if r.Type == "DocumentReference" {
		// when the content was made, not when it was filed (date)
		if t, ok := parseFHIRTime(root.Get("context").Get("period").Get("start").String()); ok {
			return t
		}
	}
	for _, k := range []string{"effectiveDateTime", "effectiveInstant", "performedDateTime", "occurrenceDateTime", "onsetDateTime",
		"authoredOn", "dateAsserted", "started", "recordedDate", "date", "issued"} {
		if t, ok := parseFHIRTime(root.Get(k).String()); ok {
			return t
		}
	}
	for _, k := range []string{"effectivePeriod", "performedPeriod", "period", "effectiveTiming"} {
		if t, ok := parseFHIRTime(root.Get(k).Get("start").String()); ok {
			return t
		}
	}
	return time.Time{}
}

// codings lists a CodeableConcept's codings.
func codings(cc *fjson.Value) []knowledge.Code {
	var out []knowledge.Code
	for _, c := range items(cc.Get("coding")) {
		if code := c.Get("code").String(); code != "" {
			out = append(out, knowledge.Code{System: c.Get("system").String(), Code: code})
		}
	}
	return out
}

// loincOf is the first LOINC code of a CodeableConcept.
func loincOf(cc *fjson.Value) string {
	for _, c := range codings(cc) {
		if c.System == knowledge.LOINC {
			return c.Code
		}
	}
	return ""
}

// conceptTexts are the human texts of a CodeableConcept (text and displays).
func conceptTexts(cc *fjson.Value) []string {
	var out []string
	if t := cc.Get("text").String(); t != "" {
		out = append(out, t)
	}
	for _, c := range items(cc.Get("coding")) {
		if d := c.Get("display").String(); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// systemNames are how people name the code systems when a code has no
// display; other systems show the bare code, never a URL.
var systemNames = map[string]string{
	knowledge.LOINC: "LOINC", knowledge.SNOMED: "SNOMED CT", knowledge.ICD10: "ICD-10", knowledge.ICD10CM: "ICD-10-CM",
	"http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm", "http://hl7.org/fhir/sid/cvx": "CVX", knowledge.ATCSystem: "ATC",
}

// conceptLabel is the best human label of a CodeableConcept: its text, a
// display, or "LOINC 1234-5"; "" when it has none.
func conceptLabel(cc *fjson.Value) string {
	if l := conceptTexts(cc); len(l) > 0 {
		return l[0]
	}
	if cs := codings(cc); len(cs) > 0 {
		if n := systemNames[cs[0].System]; n != "" {
			return n + " " + cs[0].Code
		}
		return cs[0].Code
	}
	return ""
}

// statusLabel is a status CodeableConcept (clinicalStatus,
// verificationStatus) as the bare code people read: "active".
func statusLabel(cc *fjson.Value) string {
	if cs := codings(cc); len(cs) > 0 {
		return cs[0].Code
	}
	return cc.Get("text").String()
}

// quantity is a number with its unit as the source gave them.
type quantity struct {
	value float64
	// unit is the UCUM code when given, else the unit text.
	unit string
	// comparator ("<", ">=", …) makes the value a bound, not a value.
	comparator string
}

func quantityOf(q *fjson.Value) (quantity, bool) {
	if q == nil {
		return quantity{}, false
	}
	v, ok := number(q.Get("value"))
	if !ok {
		return quantity{}, false
	}
	return quantity{value: v, unit: unitOf(q), comparator: q.Get("comparator").String()}, true
}

func unitOf(q *fjson.Value) string {
	if c := q.Get("code").String(); c != "" {
		return c
	}
	return q.Get("unit").String()
}

func number(v *fjson.Value) (float64, bool) {
	if v == nil || v.Kind != fjson.Number {
		return 0, false
	}
	f, err := strconv.ParseFloat(v.Str, 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// PatientFacts are the demographics the summary's rules use.
type PatientFacts struct {
	// Sex is "male" or "female" from Patient.gender; "" otherwise (rules
	// that need it are then not applied).
	Sex       string
	BirthDate time.Time
	// Deceased is the date of death when the record gives one.
	Deceased time.Time
	// Race is "black" when the US Core race extension says Black or
	// African American (OMB 2054-5), else "" (the pooled cohort equations
	// use their white-or-other equations).
	Race string
}

func patientFacts(p *fhir.Resource) PatientFacts {
	var f PatientFacts
	if p == nil {
		return f
	}
	root := p.Root()
	switch root.Get("gender").String() {
	case "male", "female":
		f.Sex = root.Get("gender").String()
	}
	f.BirthDate, _ = parseFHIRTime(root.Get("birthDate").String())
	f.Deceased, _ = parseFHIRTime(root.Get("deceasedDateTime").String())
	for _, ext := range items(root.Get("extension")) {
		if ext.Get("url").String() != "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race" {
			continue
		}
		for _, sub := range items(ext.Get("extension")) {
			if sub.Get("url").String() == "ombCategory" && sub.Get("valueCoding").Get("code").String() == "2054-5" {
				f.Race = "black"
			}
		}
	}
	return f
}

// AgeAt is the age in whole-and-fractional years at t; -1 when unknown.
func (f PatientFacts) AgeAt(t time.Time) float64 {
	if f.BirthDate.IsZero() || t.IsZero() || t.Before(f.BirthDate) {
		return -1
	}
	years := t.Year() - f.BirthDate.Year()
	anniv := f.BirthDate.AddDate(years, 0, 0)
	if anniv.After(t) {
		years--
		anniv = f.BirthDate.AddDate(years, 0, 0)
	}
	next := f.BirthDate.AddDate(years+1, 0, 0)
	return float64(years) + t.Sub(anniv).Hours()/next.Sub(anniv).Hours()
}

func (f PatientFacts) subject(t time.Time) knowledge.Subject {
	return knowledge.Subject{Sex: f.Sex, Age: f.AgeAt(t)}
}

// withdrawn reports a resource its source took back.
func withdrawn(r *fhir.Resource) bool {
	switch r.Root().Get("status").String() {
	case "entered-in-error", "cancelled", "not-done":
		return true
	}
	return false
}

// activeCondition: clinically active (or no status and no abatement) and
// not refuted.
func activeCondition(r *fhir.Resource) bool {
	root := r.Root()
	switch statusLabel(root.Get("verificationStatus")) {
	case "refuted", "entered-in-error":
		return false
	}
	switch statusLabel(root.Get("clinicalStatus")) {
	case "active", "recurrence", "relapse":
		return true
	case "":
		for _, k := range []string{"abatementDateTime", "abatementPeriod", "abatementAge", "abatementString", "abatementRange", "abatementBoolean"} {
			if root.Get(k) != nil {
				return false
			}
		}
		return true
	}
	return false
}

// everCondition: any Condition the record asserts (history counts for
// risk scores), not refuted or withdrawn.
func everCondition(r *fhir.Resource) bool {
	switch statusLabel(r.Root().Get("verificationStatus")) {
	case "refuted", "entered-in-error":
		return false
	}
	return true
}

// activeMedication: an active MedicationRequest or an active or intended
// MedicationStatement.
func activeMedication(r *fhir.Resource) bool {
	s := r.Root().Get("status").String()
	switch r.Type {
	case "MedicationRequest":
		return s == "active"
	case "MedicationStatement":
		return s == "active" || s == "intended"
	}
	return false
}

// medicationConcept is what a MedicationRequest/Statement prescribes,
// following medicationReference to a Medication of the record.
func medicationConcept(r *fhir.Resource, byRef map[string]*fhir.Resource) *fjson.Value {
	root := r.Root()
	if cc := root.Get("medicationCodeableConcept"); cc != nil {
		return cc
	}
	if m := byRef[root.Get("medicationReference").Get("reference").String()]; m != nil {
		return m.Root().Get("code")
	}
	return nil
}

// display is a resource's one-line human label: what it is.
func display(r *fhir.Resource, byRef map[string]*fhir.Resource) string {
	root := r.Root()
	var what string
	switch r.Type {
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense":
		what = conceptLabel(medicationConcept(r, byRef))
		if what == "" {
			what = root.Get("medicationReference").Get("display").String()
		}
	case "Immunization":
		what = conceptLabel(root.Get("vaccineCode"))
	case "Encounter":
		what = conceptLabel(firstOf(root.Get("type")))
		if what == "" {
			what = conceptLabel(root.Get("serviceType"))
		}
		if what == "" {
			what = root.Get("class").Get("display").String()
		}
	case "ImagingStudy":
		what = root.Get("description").String()
		if what == "" && len(items(root.Get("procedureCode"))) > 0 {
			what = conceptLabel(items(root.Get("procedureCode"))[0])
		}
		if what == "" {
			// the series say what it was: "Ultrasound, thoracic"
			var parts []string
			for _, se := range items(root.Get("series")) {
				for _, p := range []string{se.Get("modality").Get("display").String(), se.Get("bodySite").Get("display").String()} {
					if p != "" && !slices.Contains(parts, p) {
						parts = append(parts, p)
					}
				}
			}
			if len(parts) > 0 {
				what = "Imaging: " + strings.Join(parts, ", ")
			}
		}
	case "DocumentReference":
		what = conceptLabel(root.Get("type"))
		if d := root.Get("description").String(); d != "" {
			if what != "" {
				what += ": "
			}
			what += d
		}
	case "Coverage":
		// "Insurance: Acme Health, member 123"
		what = conceptLabel(root.Get("type"))
		if what == "" {
			what = "Insurance"
		}
		for _, p := range items(root.Get("payor")) {
			if d := p.Get("display").String(); d != "" {
				what += ": " + d
				break
			}
			if o := byRef[p.Get("reference").String()]; o != nil && o.Root().Get("name").String() != "" {
				what += ": " + o.Root().Get("name").String()
				break
			}
		}
		if id := root.Get("subscriberId").String(); id != "" {
			what += ", member " + id
		}
	case "CarePlan", "Goal":
		what = root.Get("title").String()
		if what == "" {
			what = conceptLabel(firstOf(root.Get("category")))
		}
		if what == "" {
			what = root.Get("description").String()
		}
		if what == "" {
			what = conceptLabel(root.Get("description"))
		}
	default:
		what = conceptLabel(root.Get("code"))
	}
	if what == "" {
		// no code at all: the category, then the type's own name
		if c := conceptLabel(firstOf(root.Get("category"))); c != "" {
			what = c
		} else {
			what = strings.ToLower(r.Type[:1]) + r.Type[1:]
		}
	}
	return what
}
