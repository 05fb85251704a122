package referral

import (
	"sort"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// CareKind says what a care check asks for.
type CareKind string

const (
	// CareTest is an expected test (a missing one when not Met).
	CareTest CareKind = "test"
	// CareReview is a value that calls for a review of the treatment (a
	// metformin dose at a low eGFR, anticoagulation in AF).
	CareReview CareKind = "review"
)

// CareCheck is one guideline expectation applied to the record: a test a
// condition or medication calls for, or a review a value calls for.
type CareCheck struct {
	Kind CareKind
	// RuleID is the knowledge rule ("diabetes-hba1c").
	RuleID string
	// Text is what the guideline expects.
	Text string
	// Test names the expected test (CareTest).
	Test string
	// Trigger is the condition or medication that calls for it, and
	// TriggerResource the resource showing it.
	Trigger         string
	TriggerResource *fhir.Resource
	// Met: the test was done within the interval (CareTest); a review is
	// never met (it is only listed when its condition holds).
	Met bool
	// LastDone is when the test was last done (zero: never in the record)
	// and LastResource the resource showing it.
	LastDone     time.Time
	LastResource *fhir.Resource
	// WithinMonths is the interval (0: at least once) and DueBy the date
	// the last test expires(d) (zero when never done or no interval).
	WithinMonths int
	DueBy        time.Time
	// Value is the value that triggered a review, with its date.
	Value     string
	ValueDate time.Time
	Citation  knowledge.Citation
}

// careChecks applies every rule whose trigger the record holds.
func (cs *CaseSummary) careChecks(ms []*measurement, resources []*fhir.Resource, kb *knowledge.Base) []CareCheck {
	trigger := func(t knowledge.Trigger) (*fhir.Resource, string) {
		if t.Condition != "" {
			set := kb.ConditionSet(t.Condition)
			if r := cs.hasCondition(resources, set, true); r != nil {
				return r, set.Name + ": " + display(r, cs.byRef)
			}
			return nil, ""
		}
		set := kb.MedicationSet(t.Medication)
		if r := cs.onMedication(set); r != nil {
			return r, set.Name + ": " + display(r, cs.byRef)
		}
		return nil, ""
	}
	// evidence: each test's latest resource
	type done struct {
		at  time.Time
		res *fhir.Resource
	}
	last := map[string]done{}
	for _, r := range resources {
		codes, texts := evidenceOf(r)
		if codes == nil && texts == nil {
			continue
		}
		at := whenOf(r)
		for _, t := range kb.Tests {
			if t.MatchesTest(codes, texts) {
				if d, ok := last[t.ID]; !ok || at.After(d.at) {
					last[t.ID] = done{at: at, res: r}
				}
			}
		}
	}
	var out []CareCheck
	for _, rule := range kb.Rules {
		tr, label := trigger(rule.When)
		if tr == nil {
			continue
		}
		test := kb.TestSet(rule.Test)
		c := CareCheck{Kind: CareTest, RuleID: rule.ID, Text: rule.Text, Test: test.Name, Trigger: label, TriggerResource: tr,
			WithinMonths: rule.WithinMonths, Citation: rule.Cite()}
		if d, ok := last[test.ID]; ok {
			c.LastDone, c.LastResource = d.at, d.res
			if rule.WithinMonths == 0 {
				c.Met = true
			} else if !d.at.IsZero() {
				c.DueBy = d.at.AddDate(0, rule.WithinMonths, 0)
				c.Met = !c.DueBy.Before(cs.AsOf)
			}
		}
		out = append(out, c)
	}
	// reviews: the strictest one that holds per trigger and analyte
	type key struct{ trigger, analyte string }
	best := map[key]int{}
	for _, rv := range kb.Reviews {
		tr, label := trigger(rv.When)
		if tr == nil {
			continue
		}
		a := kb.Analyte(rv.Analyte)
		var latest *measurement
		for _, m := range ms {
			if kb.AnalyteFor(m.code) != a || m.date.IsZero() {
				continue
			}
			if latest == nil || m.date.After(latest.date) || m.date.Equal(latest.date) && latest.code == LOINCeGFR2021 {
				latest = m
			}
		}
		if latest == nil {
			continue
		}
		v, err := a.ConvertTo(latest.q.value, latest.q.unit, a.Unit)
		if err != nil || v >= rv.Below {
			continue
		}
		c := CareCheck{Kind: CareReview, RuleID: rv.ID, Text: rv.Text, Trigger: label, TriggerResource: tr,
			Value: valueText(latest.q.value, latest.q.unit), ValueDate: latest.date, LastDone: latest.date, LastResource: latest.res,
			Citation: rv.Cite()}
		k := key{rv.When.Condition + rv.When.Medication, rv.Analyte}
		if i, ok := best[k]; ok {
			if rv.Below < kb.Reviews[indexOfReview(kb, out[i].RuleID)].Below {
				out[i] = c
			}
			continue
		}
		best[k] = len(out)
		out = append(out, c)
	}
	if rv := cs.anticoagulationReview(resources, kb); rv != nil {
		out = append(out, *rv)
	}
	sort.SliceStable(out, func(i, j int) bool { return !out[i].Met && out[j].Met })
	return out
}

func indexOfReview(kb *knowledge.Base, id string) int {
	for i, r := range kb.Reviews {
		if r.ID == id {
			return i
		}
	}
	return 0
}

// anticoagulationReview: atrial fibrillation whose CHA₂DS₂-VASc calls for
// oral anticoagulation, with no active oral anticoagulant.
func (cs *CaseSummary) anticoagulationReview(resources []*fhir.Resource, kb *knowledge.Base) *CareCheck {
	var score *Risk
	for i := range cs.Risks {
		if cs.Risks[i].ID == "cha2ds2-vasc" && cs.Risks[i].Computable {
			score = &cs.Risks[i]
		}
	}
	if score == nil || score.Interpretation != "oral anticoagulation recommended" {
		return nil
	}
	if cs.onMedication(kb.MedicationSet("oral-anticoagulant")) != nil {
		return nil
	}
	af := score.Inputs[0]
	return &CareCheck{Kind: CareReview, RuleID: "af-anticoagulation", Test: "",
		Text:    "Atrial fibrillation with CHA₂DS₂-VASc " + score.Category + ": oral anticoagulation is recommended and none is active in the record",
		Trigger: "Atrial fibrillation: " + af.Value, TriggerResource: af.Resource, Value: score.Category, ValueDate: score.Date,
		Citation: *score.InterpretationCitation}
}

// evidenceOf is the codes and labels by which a resource shows that a
// test or examination was done; nil for resources that show none.
func evidenceOf(r *fhir.Resource) ([]knowledge.Code, []string) {
	root := r.Root()
	var codes []knowledge.Code
	var texts []string
	switch r.Type {
	case "Observation", "DiagnosticReport", "Procedure":
		if withdrawn(r) {
			return nil, nil
		}
		codes = append(codes, codings(root.Get("code"))...)
		texts = append(texts, conceptTexts(root.Get("code"))...)
		for _, comp := range items(root.Get("component")) {
			codes = append(codes, codings(comp.Get("code"))...)
		}
	case "ImagingStudy":
		for _, pc := range items(root.Get("procedureCode")) {
			codes = append(codes, codings(pc)...)
			texts = append(texts, conceptTexts(pc)...)
		}
		if d := root.Get("description").String(); d != "" {
			texts = append(texts, d)
		}
	case "DocumentReference":
		codes = append(codes, codings(root.Get("type"))...)
		texts = append(texts, conceptTexts(root.Get("type"))...)
	default:
		return nil, nil
	}
	return codes, texts
}
