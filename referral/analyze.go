package referral

import (
	"sort"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// CaseSummary is what the gateway computes from a record for the
// specialist: nothing in it is typed by hand.
type CaseSummary struct {
	// Abnormal lists the Observations flagged abnormal, in record order.
	Abnormal []Abnormal
	// Completeness is the check against the specialty's expected
	// investigations; nil when no specialty was asked for.
	Completeness *Completeness
	// Timeline is the Encounters, oldest first.
	Timeline []*fhir.Resource
	// ActiveMedications are the active MedicationRequests and
	// MedicationStatements.
	ActiveMedications []*fhir.Resource
}

// Abnormal is one abnormal result and why it was flagged.
type Abnormal struct {
	Resource *fhir.Resource
	// Reasons are human-readable: "interpretation H",
	// "value 250 above reference range high 200".
	Reasons []string
}

// Completeness says which expected investigations the record holds.
type Completeness struct {
	Specialty *Specialty
	Present   []Found
	Missing   []Investigation
}

// Found is an expected investigation and the resources that show it.
type Found struct {
	Investigation Investigation
	Evidence      []*fhir.Resource
}

// abnormalFlags are the v3 ObservationInterpretation codes that mark a
// result abnormal.
var abnormalFlags = map[string]bool{"H": true, "L": true, "A": true, "HH": true, "LL": true}

// Analyze computes the case summary of resources (one patient's record);
// spec may be nil.
func Analyze(resources []*fhir.Resource, spec *Specialty) CaseSummary {
	var cs CaseSummary
	for _, r := range resources {
		switch r.Type {
		case "Observation":
			if reasons := abnormalReasons(r.Root()); len(reasons) > 0 {
				cs.Abnormal = append(cs.Abnormal, Abnormal{Resource: r, Reasons: reasons})
			}
		case "Encounter":
			cs.Timeline = append(cs.Timeline, r)
		case "MedicationRequest", "MedicationStatement":
			if r.Root().Get("status").String() == "active" {
				cs.ActiveMedications = append(cs.ActiveMedications, r)
			}
		}
	}
	sort.SliceStable(cs.Timeline, func(i, j int) bool {
		return encounterStart(cs.Timeline[i]) < encounterStart(cs.Timeline[j])
	})
	if spec != nil {
		cs.Completeness = checkCompleteness(resources, spec)
	}
	return cs
}

func encounterStart(r *fhir.Resource) string {
	return r.Root().Get("period").Get("start").String()
}

// abnormalReasons says why an Observation (its value or one of its
// components) is abnormal; empty when it is not, or was withdrawn.
func abnormalReasons(root *fjson.Value) []string {
	switch root.Get("status").String() {
	case "entered-in-error", "cancelled":
		return nil
	}
	out := valueReasons(root, "")
	for _, comp := range items(root.Get("component")) {
		out = append(out, valueReasons(comp, codeLabel(comp.Get("code"))+": ")...)
	}
	return out
}

// valueReasons checks one element with interpretation, valueQuantity and
// referenceRange (an Observation or one of its components).
func valueReasons(el *fjson.Value, prefix string) []string {
	var out []string
	for _, in := range items(el.Get("interpretation")) {
		for _, c := range items(in.Get("coding")) {
			if code := c.Get("code").String(); abnormalFlags[code] {
				out = append(out, prefix+"interpretation "+code)
			}
		}
	}
	vq := el.Get("valueQuantity")
	v, ok := number(vq.Get("value"))
	if !ok {
		return out
	}
	for _, rr := range items(el.Get("referenceRange")) {
		// A range that applies to a population or is only text cannot be
		// checked against this patient; the first checkable one decides.
		if rr.Get("appliesTo") != nil || rr.Get("age") != nil {
			continue
		}
		lo, hasLo := bound(rr.Get("low"), vq)
		hi, hasHi := bound(rr.Get("high"), vq)
		if !hasLo && !hasHi {
			continue
		}
		if hasLo && v < lo {
			out = append(out, prefix+"value "+vq.Get("value").Str+" below reference range low "+rr.Get("low").Get("value").Str)
		}
		if hasHi && v > hi {
			out = append(out, prefix+"value "+vq.Get("value").Str+" above reference range high "+rr.Get("high").Get("value").Str)
		}
		break
	}
	return out
}

// bound reads a range limit, refusing one in a unit other than the value's.
func bound(q, value *fjson.Value) (float64, bool) {
	if q == nil {
		return 0, false
	}
	n, ok := number(q.Get("value"))
	if !ok {
		return 0, false
	}
	if a, b := unitOf(q), unitOf(value); a != "" && b != "" && a != b {
		return 0, false
	}
	return n, true
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
	return f, err == nil
}

// checkCompleteness looks for each expected investigation's codes in the
// codes of Observations (and their components), DiagnosticReports,
// Procedures, ImagingStudies and DocumentReferences.
func checkCompleteness(resources []*fhir.Resource, spec *Specialty) *Completeness {
	byCode := map[Coding][]*fhir.Resource{}
	for _, r := range resources {
		for _, c := range investigationCodes(r) {
			if l := byCode[c]; len(l) == 0 || l[len(l)-1] != r {
				byCode[c] = append(l, r)
			}
		}
	}
	out := &Completeness{Specialty: spec}
	for _, inv := range spec.Investigations {
		var ev []*fhir.Resource
		seen := map[*fhir.Resource]bool{}
		for _, c := range inv.Codes {
			for _, r := range byCode[c] {
				if !seen[r] {
					seen[r] = true
					ev = append(ev, r)
				}
			}
		}
		if len(ev) > 0 {
			out.Present = append(out.Present, Found{Investigation: inv, Evidence: ev})
		} else {
			out.Missing = append(out.Missing, inv)
		}
	}
	return out
}

// investigationCodes are the codes by which a resource shows that an
// investigation was done.
func investigationCodes(r *fhir.Resource) []Coding {
	root := r.Root()
	var ccs []*fjson.Value
	switch r.Type {
	case "Observation":
		if s := root.Get("status").String(); s == "entered-in-error" || s == "cancelled" {
			return nil
		}
		ccs = append(ccs, root.Get("code"))
		for _, comp := range items(root.Get("component")) {
			ccs = append(ccs, comp.Get("code"))
		}
	case "DiagnosticReport", "Procedure":
		if s := root.Get("status").String(); s == "entered-in-error" || s == "cancelled" || s == "not-done" {
			return nil
		}
		ccs = append(ccs, root.Get("code"))
	case "ImagingStudy":
		ccs = append(ccs, items(root.Get("procedureCode"))...)
	case "DocumentReference":
		ccs = append(ccs, root.Get("type"))
	default:
		return nil
	}
	var out []Coding
	for _, cc := range ccs {
		for _, c := range items(cc.Get("coding")) {
			if s, code := c.Get("system").String(), c.Get("code").String(); s != "" && code != "" {
				out = append(out, Coding{System: s, Code: code})
			}
		}
	}
	return out
}

// codeLabel is the best human label of a CodeableConcept.
func codeLabel(cc *fjson.Value) string {
	if t := cc.Get("text").String(); t != "" {
		return t
	}
	for _, c := range items(cc.Get("coding")) {
		if d := c.Get("display").String(); d != "" {
			return d
		}
	}
	for _, c := range items(cc.Get("coding")) {
		if code := c.Get("code").String(); code != "" {
			return strings.TrimSpace(c.Get("system").String() + " " + code)
		}
	}
	return "(no code)"
}

// items is the elements of an array value; nil for anything else
// (including an absent value).
func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}
