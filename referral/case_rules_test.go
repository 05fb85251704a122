package referral_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/referral"
)

// builder makes a small record by hand.
type builder struct {
	t  *testing.T
	rs []*fhir.Resource
	n  int
}

func (b *builder) add(body string) string {
	b.n++
	id := fmt.Sprintf("r%d", b.n)
	r, err := fhir.Parse([]byte(strings.Replace(body, `{"resourceType":`, `{"id":"`+id+`","resourceType":`, 1)))
	if err != nil {
		b.t.Fatal(err)
	}
	b.rs = append(b.rs, r)
	return id
}

func (b *builder) obs(loinc, date string, value float64, unit string, extra string) string {
	return b.add(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/p"},"effectiveDateTime":%q,"valueQuantity":{"value":%v,"unit":%q,"code":%q}%s}`,
		loinc, date, value, unit, unit, extra))
}

func (b *builder) bp(date string, sys, dia float64) string {
	return b.add(fmt.Sprintf(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p"},"effectiveDateTime":%q,
	"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic"}]},"valueQuantity":{"value":%v,"unit":"mm[Hg]","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4","display":"Diastolic"}]},"valueQuantity":{"value":%v,"unit":"mm[Hg]","code":"mm[Hg]"}}]}`, date, sys, dia))
}

func (b *builder) cond(snomed, display string) string {
	return b.add(fmt.Sprintf(`{"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":%q,"display":%q}]},"subject":{"reference":"Patient/p"},"onsetDateTime":"2015-01-01"}`, snomed, display))
}

func (b *builder) med(text string) string {
	return b.add(fmt.Sprintf(`{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":%q},"subject":{"reference":"Patient/p"},"authoredOn":"2016-01-01"}`, text))
}

// TestCaseRules: the patient (a man on metformin, insulin and
// hydrochlorothiazide whose systolic pressure was 148–195 mmHg and eGFR
// 31.9–56.7 over years, none of it flagged by his sources) and hand-made
// edge cases, against hand-checked expectations.
func TestCaseRules(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	b := &builder{t: t}
	b.add(`{"resourceType":"Patient","gender":"male","birthDate":"1955-06-01","name":[{"family":"Example"}]}`)
	b.cond("44054006", "Diabetes mellitus type 2")
	b.cond("433144002", "Chronic kidney disease stage 3")
	b.cond("38341003", "Hypertension")
	b.med("Metformin hydrochloride 500 MG Oral Tablet")
	b.med("Insulin glargine 100 UNT/ML")
	b.med("Hydrochlorothiazide 25 MG Oral Tablet")
	var egfr []string
	for i, v := range []float64{56.7, 50.2, 44.0, 38.5, 31.9} {
		egfr = append(egfr, b.obs("33914-3", fmt.Sprintf("%d-03-01", 2016+2*i), v, "mL/min/{1.73_m2}", ""))
	}
	for i, s := range []float64{148, 160, 172, 195, 150} {
		b.bp(fmt.Sprintf("%d-03-01", 2016+2*i), s, 85)
	}
	hba1c := b.obs("4548-4", "2024-05-01", 8.1, "%", "")
	normal := b.obs("6298-4", "2024-05-01", 5.9, "mmol/L", `,"interpretation":[{"coding":[{"code":"N"}]}]`)                                               // source says normal: wins over the table
	creat := b.obs("2160-0", "2024-05-01", 200, "umol/L", `,"referenceRange":[{"low":{"value":0.7,"code":"mg/dL"},"high":{"value":1.3,"code":"mg/dL"}}]`) // the source's range, converted
	wbc := b.obs("26464-8", "2024-05-01", 4300, "{cells}/uL", "")
	odd := b.obs("718-7", "2024-05-01", 9, "furlongs", "")
	cs := referral.Analyze(b.rs, referral.AnalyzeOptions{Now: now})

	flag := map[string]referral.Flag{}
	for _, f := range cs.Flags {
		if f.Resource != nil {
			flag[f.Resource.ID+"|"+f.Component] = f
		}
	}
	for _, id := range egfr {
		if f, ok := flag[id+"|"]; !ok || f.Interpretation != "L" || f.Citation == nil || f.Citation.Source.ID != "kdigo-ckd-2024" {
			t.Errorf("eGFR %s: %+v", id, f)
		}
	}
	sbp := 0
	for k, f := range flag {
		if strings.HasSuffix(k, "|8480-6") {
			sbp++
			if f.Citation == nil || f.Citation.Source.ID != "acc-aha-bp-2017" {
				t.Errorf("systolic flag without its guideline: %+v", f)
			}
			if f.Value == 195 && f.Interpretation != "HH" || f.Value < 180 && f.Interpretation != "H" {
				t.Errorf("systolic %v flagged %s", f.Value, f.Interpretation)
			}
		}
	}
	if sbp != 5 {
		t.Errorf("%d of 5 systolic pressures flagged", sbp)
	}
	if f := flag[hba1c+"|"]; f.Interpretation != "H" || !strings.Contains(f.Rule, "6.5") {
		t.Errorf("HbA1c 8.1%%: %+v", f)
	}
	if _, ok := flag[normal+"|"]; ok {
		t.Error("the source's N interpretation was overridden")
	}
	if f := flag[creat+"|"]; f.Basis != referral.BySourceRange || f.Interpretation != "H" {
		t.Errorf("creatinine 200 µmol/L against the source's 0.7–1.3 mg/dL: %+v", f)
	}
	if _, ok := flag[wbc+"|"]; ok {
		t.Error("4300 cells/µL (4.3 ×10⁹/L) flagged")
	}
	if _, ok := flag[odd+"|"]; ok {
		t.Error("a value in an unknown unit was judged")
	}

	var trend *referral.Trend
	for i := range cs.Trends {
		if cs.Trends[i].Code == "33914-3" {
			trend = &cs.Trends[i]
		}
	}
	if trend == nil || trend.Direction != "falling" || trend.Latest.Value != 31.9 || trend.Worst == nil || trend.Worst.Value != 31.9 || trend.Flagged != 5 {
		t.Fatalf("eGFR trend %+v", trend)
	}
	if trend.SlopePerYear > -3 || trend.SlopePerYear < -3.5 || trend.Note != "" {
		t.Errorf("eGFR falling about 3.1 a year, not rapid: %v %q", trend.SlopePerYear, trend.Note)
	}

	risk := map[string]referral.Risk{}
	for _, r := range cs.Risks {
		risk[r.ID] = r
	}
	if r := risk["ckd-stage"]; !r.Computable || r.Category != "G3b" || !strings.Contains(r.Interpretation, "more than 3 months apart") || len(r.Missing) != 1 {
		t.Errorf("CKD category %+v", r)
	}
	if r := risk["bp-category"]; r.Category != "Stage 2 hypertension" {
		t.Errorf("BP category %+v", r)
	}
	if r := risk["bmi-category"]; r.Computable || len(r.Missing) == 0 {
		t.Errorf("BMI without height or weight: %+v", r)
	}
	if r := risk["ascvd-pce"]; r.Computable || !strings.Contains(strings.Join(r.Missing, ","), "cholesterol") {
		t.Errorf("ASCVD without lipids: %+v", r)
	}

	care := map[string]referral.CareCheck{}
	for _, c := range cs.Care {
		care[c.RuleID] = c
	}
	if c := care["diabetes-hba1c"]; c.Met || !c.LastDone.Equal(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)) || !c.DueBy.Equal(time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("HbA1c 10 months old: %+v", c)
	}
	if c := care["diabetes-retina"]; c.Met || !c.LastDone.IsZero() {
		t.Errorf("retinal exam never done: %+v", c)
	}
	if c := care["ckd-potassium"]; !c.Met {
		t.Errorf("potassium within 12 months: %+v", c)
	}
	// metformin at the latest eGFR, 30.6 computed (CKD-EPI 2021) from the
	// creatinine of 1 May 2024: the dose review (below 45), not the stop
	if c, ok := care["metformin-egfr-below-45"]; !ok || c.Kind != referral.CareReview || !strings.Contains(c.Value, "30.6") || c.LastResource == nil || c.LastResource.ID != creat {
		t.Errorf("metformin review %+v", c)
	}
	if _, ok := care["metformin-egfr-below-30"]; ok {
		t.Error("stop metformin at eGFR 31.9")
	}

	// a lower eGFR: only the stricter review
	b.obs("33914-3", "2025-01-15", 27, "mL/min/{1.73_m2}", "")
	cs = referral.Analyze(b.rs, referral.AnalyzeOptions{Now: now})
	n := 0
	for _, c := range cs.Care {
		if strings.HasPrefix(c.RuleID, "metformin-egfr-below") {
			n++
			if c.RuleID != "metformin-egfr-below-30" {
				t.Errorf("at eGFR 27: %s", c.RuleID)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d metformin reviews at eGFR 27", n)
	}
}

// TestCHA2DS2VAScReview: a 70-year-old woman with AF and hypertension
// scores 3 (hypertension, age 65–74, female): anticoagulation recommended,
// a review when none is active, none when she takes one.
func TestCHA2DS2VAScReview(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	b := &builder{t: t}
	b.add(`{"resourceType":"Patient","gender":"female","birthDate":"1955-01-01"}`)
	b.cond("49436004", "Atrial fibrillation")
	b.cond("38341003", "Hypertension")
	review := func() (referral.Risk, bool) {
		cs := referral.Analyze(b.rs, referral.AnalyzeOptions{Now: now})
		var r referral.Risk
		for _, x := range cs.Risks {
			if x.ID == "cha2ds2-vasc" {
				r = x
			}
		}
		for _, c := range cs.Care {
			if c.RuleID == "af-anticoagulation" {
				return r, true
			}
		}
		return r, false
	}
	r, rv := review()
	if !r.Computable || r.Value != 3 || r.Interpretation != "oral anticoagulation recommended" || !rv {
		t.Errorf("CHA2DS2-VASc %+v, review %v", r, rv)
	}
	b.med("Apixaban 5 MG Oral Tablet")
	if _, rv := review(); rv {
		t.Error("a review although apixaban is active")
	}
}

// TestChildNotJudgedByAdultTables: adult limits do not judge a child.
func TestChildNotJudgedByAdultTables(t *testing.T) {
	b := &builder{t: t}
	b.add(`{"resourceType":"Patient","gender":"male","birthDate":"2015-01-01"}`)
	b.bp("2024-01-01", 135, 85)
	b.obs("2093-3", "2024-01-01", 250, "mg/dL", "")
	cs := referral.Analyze(b.rs, referral.AnalyzeOptions{Now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)})
	if len(cs.Flags) != 0 {
		t.Errorf("a child judged by adult tables: %+v", cs.Flags)
	}
	for _, r := range cs.Risks {
		if r.ID == "bp-category" && r.Computable {
			t.Errorf("adult BP category for a child: %+v", r)
		}
	}
}
