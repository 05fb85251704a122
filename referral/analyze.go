package referral

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// CaseSummary is what the gateway computes from a record for the
// specialist: nothing in it is typed by hand. Every judgement names the
// rule that made it and, for the gateway's own knowledge, the published
// source (knowledge.Citation). It is computed over the resources it is
// given: for a recipient, only what the patient's Consent releases.
type CaseSummary struct {
	// AsOf is the date the summary judges recency against: the asked
	// time, or the date of death for a deceased patient.
	AsOf    time.Time
	Patient PatientFacts
	// Flags are the abnormal results, most recent first.
	Flags []Flag
	// Judged counts the values checked (by the source's interpretation or
	// range, or by the knowledge tables); values of tests no rule covers
	// are neither flagged nor counted.
	Judged int
	// Trends are the repeated tests, by name.
	Trends []Trend
	// Risks are the computed risks and categories, each computable or
	// saying which inputs are missing.
	Risks []Risk
	// Care are the expected tests and reviews for the patient's active
	// conditions and medications, met or not (see Gaps).
	Care []CareCheck
	// Derived are values the gateway computed (eGFR by CKD-EPI 2021 from
	// creatinine where the source reported none).
	Derived []Derived
	// Completeness is the check against the specialty's expected
	// investigations; nil when no specialty was asked for.
	Completeness *Completeness
	// Timeline is the Encounters, oldest first.
	Timeline []*fhir.Resource
	// ActiveConditions are the clinically active, unrefuted Conditions.
	ActiveConditions []*fhir.Resource
	// ActiveMedications are the active MedicationRequests and
	// MedicationStatements.
	ActiveMedications []*fhir.Resource

	byRef map[string]*fhir.Resource
}

// Display is a resource's one-line human label (what it is: its text,
// display or code, never a system URL), following medication references
// within the record.
func (cs *CaseSummary) Display(r *fhir.Resource) string { return display(r, cs.byRef) }

// Gaps are the unmet care checks: missing or overdue tests and reviews.
func (cs *CaseSummary) Gaps() []CareCheck {
	var out []CareCheck
	for _, c := range cs.Care {
		if !c.Met {
			out = append(out, c)
		}
	}
	return out
}

// Basis says which rule judged a value.
type Basis string

const (
	// BySourceInterpretation: the source's own interpretation code.
	BySourceInterpretation Basis = "source-interpretation"
	// BySourceRange: the source's own reference range.
	BySourceRange Basis = "source-range"
	// ByKnowledge: the gateway's cited knowledge tables (the source gave
	// neither).
	ByKnowledge Basis = "knowledge"
)

// Flag is one abnormal value and why it was flagged.
type Flag struct {
	// Resource is the Observation (nil for a Derived value).
	Resource *fhir.Resource
	// Derived is the computed value flagged, when Resource is nil.
	Derived *Derived
	// Component is the LOINC (or first) code of the component judged; ""
	// for the Observation's own value.
	Component string
	// Code is the test's LOINC code ("" when it has none) and Name its label.
	Code, Name string
	// Value and Unit (UCUM or as sent); HasValue is false for a flag the
	// source gave on an Observation without a numeric value.
	Value    float64
	Unit     string
	HasValue bool
	Date     time.Time
	// Interpretation is the v3 ObservationInterpretation code: H, L, HH,
	// LL, A, AA, …
	Interpretation string
	Basis          Basis
	// Rule says the judgement in words: "interpretation H given by the
	// source", "above the source's reference range 3.5–5.0 mmol/L",
	// "stage 2 hypertension range (≥ 140 mmHg)".
	Rule string
	// Citation is set for ByKnowledge.
	Citation *knowledge.Citation
}

// Critical reports an HH, LL or AA flag.
func (f Flag) Critical() bool { return knowledge.Severity(f.Interpretation) == 2 }

// Derived is a value the gateway computed from the record.
type Derived struct {
	// Code is the LOINC code of what was computed (98979-8 for eGFR
	// CKD-EPI 2021) and Name its label.
	Code, Name string
	Value      float64
	Unit       string
	Date       time.Time
	// From are the resources it was computed from.
	From []*fhir.Resource
	// Formula names the equation; Citation its source.
	Formula  string
	Citation knowledge.Citation
	// Interpretation is the flag the knowledge gives it ("" in range).
	Interpretation string
}

// Point is one dated value of a series.
type Point struct {
	Value          float64
	Date           time.Time
	Resource       *fhir.Resource
	Interpretation string
}

// Trend is a repeated test: its course in a few numbers.
type Trend struct {
	Code, Name string
	// Unit is the series' unit (every point converted to it).
	Unit          string
	Count         int
	First, Latest Point
	// Worst is the most abnormal flagged point; nil when none is flagged.
	Worst *Point
	// Flagged counts the flagged points.
	Flagged int
	// SlopePerYear is the least-squares change per year over the series
	// (HasSlope false when all points share one day).
	SlopePerYear float64
	HasSlope     bool
	// Direction is "rising", "falling" or "stable": stable when the fitted
	// change over the whole span is under 5% of the series' mean (the
	// gateway's display rule, not a clinical threshold).
	Direction string
	// Note is a cited remark on the course (KDIGO's rapid eGFR decline).
	Note         string
	NoteCitation *knowledge.Citation
}

// AnalyzeOptions shape the case summary.
type AnalyzeOptions struct {
	// Specialty adds the completeness check for it; nil: none.
	Specialty *Specialty
	// Now is the as-of date; time.Now when zero.
	Now time.Time
	// Knowledge is the reference knowledge; nil: knowledge.Builtin().
	Knowledge *knowledge.Base
}

// measurement is one numeric value of the record.
type measurement struct {
	res       *fhir.Resource
	el        *fjson.Value // the Observation or its component
	component string
	code      string // LOINC ("" when none)
	key       string // series key: LOINC or system|code or text
	name      string
	q         quantity
	date      time.Time
	flag      *Flag
}

// Analyze computes the case summary of one patient's record. resources
// should include the Patient (its sex and birth date drive age- and
// sex-specific rules); without it those rules do not apply.
func Analyze(resources []*fhir.Resource, opts AnalyzeOptions) CaseSummary {
	kb := opts.Knowledge
	if kb == nil {
		kb = knowledge.Builtin()
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	cs := CaseSummary{AsOf: now, byRef: map[string]*fhir.Resource{}}
	for _, r := range resources {
		cs.byRef[r.Type+"/"+r.ID] = r
		if r.Type == "Patient" && cs.Patient.Sex == "" && cs.Patient.BirthDate.IsZero() {
			cs.Patient = patientFacts(r)
		}
	}
	if d := cs.Patient.Deceased; !d.IsZero() && d.Before(now) {
		cs.AsOf = d
	}
	var ms []*measurement
	for _, r := range resources {
		switch r.Type {
		case "Observation":
			if withdrawn(r) {
				continue
			}
			ms = append(ms, cs.judgeObservation(r, kb)...)
		case "Encounter":
			cs.Timeline = append(cs.Timeline, r)
		case "Condition":
			if activeCondition(r) {
				cs.ActiveConditions = append(cs.ActiveConditions, r)
			}
		case "MedicationRequest", "MedicationStatement":
			if activeMedication(r) {
				cs.ActiveMedications = append(cs.ActiveMedications, r)
			}
		}
	}
	sort.SliceStable(cs.Timeline, func(i, j int) bool { return whenOf(cs.Timeline[i]).Before(whenOf(cs.Timeline[j])) })
	ms = append(ms, cs.deriveEGFR(ms, kb)...)
	sort.SliceStable(cs.Flags, func(i, j int) bool { return cs.Flags[i].Date.After(cs.Flags[j].Date) })
	cs.Trends = trends(ms, kb)
	cs.Risks = cs.risks(ms, resources, kb)
	cs.Care = cs.careChecks(ms, resources, kb)
	if opts.Specialty != nil {
		cs.Completeness = checkCompleteness(resources, opts.Specialty)
	}
	return cs
}

// judgeObservation reads an Observation's values (its own and its
// components') and flags the abnormal ones.
func (cs *CaseSummary) judgeObservation(r *fhir.Resource, kb *knowledge.Base) []*measurement {
	root := r.Root()
	date := whenOf(r)
	var out []*measurement
	one := func(el *fjson.Value, component string) {
		cc := el.Get("code")
		m := &measurement{res: r, el: el, component: component, code: loincOf(cc), name: conceptLabel(cc), date: date}
		if m.name == "" {
			m.name = display(r, cs.byRef)
		}
		m.key = seriesKey(cc)
		q, hasQ := quantityOf(el.Get("valueQuantity"))
		m.q = q
		f := cs.judge(m, el, hasQ, kb)
		if f != nil {
			cs.Flags = append(cs.Flags, *f)
			m.flag = f
		}
		if hasQ && q.comparator == "" && m.key != "" {
			out = append(out, m)
		}
	}
	one(root, "")
	for _, comp := range items(root.Get("component")) {
		c := loincOf(comp.Get("code"))
		if c == "" {
			if cds := codings(comp.Get("code")); len(cds) > 0 {
				c = cds[0].Code
			}
		}
		one(comp, c)
	}
	return out
}

// seriesKey groups values of one test: its LOINC code, else its first
// system|code, else its text.
func seriesKey(cc *fjson.Value) string {
	if l := loincOf(cc); l != "" {
		return knowledge.LOINC + "|" + l
	}
	for _, c := range codings(cc) {
		return c.System + "|" + c.Code
	}
	if t := cc.Get("text").String(); t != "" {
		return "text|" + strings.ToLower(t)
	}
	return ""
}

// abnormalCodes are the v3 ObservationInterpretation codes that flag a
// value; any other code (N, normal…) makes the value judged and normal.
var abnormalCodes = map[string]bool{"H": true, "L": true, "HH": true, "LL": true, "A": true, "AA": true, "HU": true, "LU": true}

// judge applies, in order, the source's interpretation, the source's
// reference range and the knowledge tables to one element: the first
// that speaks decides.
func (cs *CaseSummary) judge(m *measurement, el *fjson.Value, hasQ bool, kb *knowledge.Base) *Flag {
	base := Flag{Resource: m.res, Component: m.component, Code: m.code, Name: m.name, Date: m.date}
	if hasQ {
		base.Value, base.Unit, base.HasValue = m.q.value, m.q.unit, true
	}
	// 1. the source's interpretation
	var interp []string
	for _, in := range items(el.Get("interpretation")) {
		for _, c := range codings(in) {
			interp = append(interp, c.Code)
		}
	}
	if len(interp) > 0 {
		cs.Judged++
		for _, code := range interp {
			if abnormalCodes[code] {
				f := base
				f.Interpretation, f.Basis, f.Rule = code, BySourceInterpretation, "interpretation "+code+" given by the source"
				return &f
			}
		}
		return nil
	}
	if !hasQ || m.q.comparator != "" {
		return nil
	}
	v := m.q.value
	analyte := kb.AnalyteFor(m.code)
	// 2. the source's reference range: the first one that applies to this
	// patient and can be compared
	for _, rr := range items(el.Get("referenceRange")) {
		if rr.Get("appliesTo") != nil {
			continue
		}
		if age := rr.Get("age"); age != nil {
			a := cs.Patient.AgeAt(m.date)
			lo, hasLo := quantityOf(age.Get("low"))
			hi, hasHi := quantityOf(age.Get("high"))
			if a < 0 || hasLo && a < lo.value || hasHi && a > hi.value {
				continue
			}
		}
		lo, hasLo := rangeBound(rr.Get("low"), m.q.unit, analyte)
		hi, hasHi := rangeBound(rr.Get("high"), m.q.unit, analyte)
		if !hasLo && !hasHi {
			continue
		}
		cs.Judged++
		f := base
		f.Basis = BySourceRange
		text := sourceRangeText(rr)
		switch {
		case hasLo && v < lo:
			f.Interpretation, f.Rule = knowledge.Low, "below the source's reference range "+text
		case hasHi && v > hi:
			f.Interpretation, f.Rule = knowledge.High, "above the source's reference range "+text
		default:
			return nil
		}
		return &f
	}
	// 3. the knowledge tables
	if analyte == nil {
		return nil
	}
	match, judged := analyte.Judge(v, m.q.unit, cs.Patient.subject(m.date))
	if !judged {
		return nil
	}
	cs.Judged++
	if match == nil {
		return nil
	}
	f := base
	cite := match.Limit.Cite()
	f.Interpretation, f.Basis, f.Citation = match.Code, ByKnowledge, &cite
	f.Rule = RuleText(match, analyte)
	return &f
}

// RuleText says a knowledge match in words: its label, with the limit
// when the label does not state it.
func RuleText(m *knowledge.Match, a *knowledge.Analyte) string {
	l := strings.NewReplacer(">=", "≥", "<=", "≤").Replace(m.Label)
	if strings.ContainsAny(l, "0123456789") {
		return l
	}
	return l + " (" + m.Limit.Describe(a) + ")"
}

// rangeBound reads a reference range limit in the value's unit: the
// limit's own unit converted when it differs (with the analyte's molar
// mass when known); refused when it cannot be converted.
func rangeBound(q *fjson.Value, unit string, a *knowledge.Analyte) (float64, bool) {
	b, ok := quantityOf(q)
	if !ok {
		return 0, false
	}
	if b.unit == "" || unit == "" || b.unit == unit {
		return b.value, true
	}
	var v float64
	var err error
	if a != nil {
		v, err = a.ConvertTo(b.value, b.unit, unit)
	} else {
		v, err = knowledge.Convert(b.value, b.unit, unit, 0)
	}
	return v, err == nil
}

func sourceRangeText(rr *fjson.Value) string {
	lo, hasLo := quantityOf(rr.Get("low"))
	hi, hasHi := quantityOf(rr.Get("high"))
	u := ""
	switch {
	case hasHi:
		u = hi.unit
	case hasLo:
		u = lo.unit
	}
	unit := ""
	if d := knowledge.DisplayUnit(u); d != "" {
		unit = " " + d
	}
	switch {
	case hasLo && hasHi:
		return knowledge.FormatNumber(lo.value) + "–" + knowledge.FormatNumber(hi.value) + unit
	case hasHi:
		return "≤ " + knowledge.FormatNumber(hi.value) + unit
	default:
		return "≥ " + knowledge.FormatNumber(lo.value) + unit
	}
}

// trends summarises every test measured on at least two dates.
func trends(ms []*measurement, kb *knowledge.Base) []Trend {
	byKey := map[string][]*measurement{}
	var keys []string
	for _, m := range ms {
		if m.date.IsZero() {
			continue
		}
		if _, ok := byKey[m.key]; !ok {
			keys = append(keys, m.key)
		}
		byKey[m.key] = append(byKey[m.key], m)
	}
	var out []Trend
	for _, k := range keys {
		series := byKey[k]
		sort.SliceStable(series, func(i, j int) bool { return series[i].date.Before(series[j].date) })
		latest := series[len(series)-1]
		analyte := kb.AnalyteFor(latest.code)
		var pts []Point
		for _, m := range series {
			v, ok := convertFor(analyte, m.q.value, m.q.unit, latest.q.unit)
			if !ok {
				continue
			}
			p := Point{Value: v, Date: m.date, Resource: m.res}
			if m.flag != nil {
				p.Interpretation = m.flag.Interpretation
			}
			pts = append(pts, p)
		}
		if len(pts) < 2 || !pts[0].Date.Before(pts[len(pts)-1].Date) {
			continue
		}
		t := Trend{Code: latest.code, Name: latest.name, Unit: latest.q.unit, Count: len(pts), First: pts[0], Latest: pts[len(pts)-1]}
		for i := range pts {
			if pts[i].Interpretation == "" {
				continue
			}
			t.Flagged++
			if t.Worst == nil || worsePoint(pts[i], *t.Worst) {
				p := pts[i]
				t.Worst = &p
			}
		}
		t.SlopePerYear, t.HasSlope = slope(pts)
		t.Direction = direction(pts, t.SlopePerYear)
		if analyte != nil && analyte.ID == "egfr" && t.HasSlope && t.SlopePerYear < -5 {
			c := kb.Cite("kdigo-ckd-2024", "Chapter 2, definition of rapid progression: sustained decline in eGFR of more than 5 ml/min/1.73 m² per year")
			t.Note, t.NoteCitation = "rapid decline (more than 5 mL/min/1.73 m² per year)", &c
		}
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out
}

// worsePoint ranks by severity, then by distance from the series' normal
// in the flag's direction (higher for H, lower for L).
func worsePoint(a, b Point) bool {
	sa, sb := knowledge.Severity(a.Interpretation), knowledge.Severity(b.Interpretation)
	if sa != sb {
		return sa > sb
	}
	if a.Interpretation != b.Interpretation {
		return false // keep the first of mixed directions
	}
	if strings.HasPrefix(a.Interpretation, "L") {
		return a.Value < b.Value
	}
	return a.Value > b.Value
}

func convertFor(a *knowledge.Analyte, v float64, from, to string) (float64, bool) {
	if from == to {
		return v, true
	}
	var out float64
	var err error
	if a != nil {
		out, err = a.ConvertTo(v, from, to)
	} else {
		out, err = knowledge.Convert(v, from, to, 0)
	}
	return out, err == nil
}

const yearHours = 365.25 * 24

// slope is the ordinary least-squares change per year.
func slope(pts []Point) (float64, bool) {
	t0 := pts[0].Date
	var sx, sy, sxx, sxy float64
	n := float64(len(pts))
	for _, p := range pts {
		x := p.Date.Sub(t0).Hours() / yearHours
		sx += x
		sy += p.Value
		sxx += x * x
		sxy += x * p.Value
	}
	den := n*sxx - sx*sx
	if den <= 1e-12 {
		return 0, false
	}
	return (n*sxy - sx*sy) / den, true
}

func direction(pts []Point, perYear float64) string {
	var mean float64
	for _, p := range pts {
		mean += p.Value
	}
	mean /= float64(len(pts))
	span := pts[len(pts)-1].Date.Sub(pts[0].Date).Hours() / yearHours
	change := perYear * span
	if math.Abs(change) < 0.05*math.Abs(mean) || change == 0 {
		return "stable"
	}
	if change > 0 {
		return "rising"
	}
	return "falling"
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

// investigationCodes are the codes by which a resource shows that an
// investigation was done.
func investigationCodes(r *fhir.Resource) []Coding {
	root := r.Root()
	var ccs []*fjson.Value
	switch r.Type {
	case "Observation", "DiagnosticReport", "Procedure":
		if withdrawn(r) {
			return nil
		}
		ccs = append(ccs, root.Get("code"))
		for _, comp := range items(root.Get("component")) {
			ccs = append(ccs, comp.Get("code"))
		}
	case "ImagingStudy":
		ccs = append(ccs, items(root.Get("procedureCode"))...)
	case "DocumentReference":
		ccs = append(ccs, root.Get("type"))
	default:
		return nil
	}
	var out []Coding
	for _, cc := range ccs {
		for _, c := range codings(cc) {
			if c.System != "" {
				out = append(out, Coding{System: c.System, Code: c.Code})
			}
		}
	}
	return out
}

// items is the elements of an array value; nil for anything else
// (including an absent value).
func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}

func firstOf(v *fjson.Value) *fjson.Value {
	if it := items(v); len(it) > 0 {
		return it[0]
	}
	return nil
}
