package referral

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// Risk is a computed risk, score or category with the formula named, its
// inputs listed, or why it could not be computed.
type Risk struct {
	// ID is stable: "egfr-ckd-epi-2021", "ckd-stage", "bp-category",
	// "bmi-category", "ascvd-pce", "cha2ds2-vasc".
	ID       string
	Name     string
	Formula  string
	Citation knowledge.Citation
	// Computable is false when an input is missing (Missing says which) or
	// the formula does not apply (NotApplicable says why).
	Computable    bool
	Missing       []string
	NotApplicable string
	// Value (HasValue) with Unit: "%" for the 10-year risk, "points" for a
	// score, "mL/min/{1.73_m2}" for eGFR.
	Value    float64
	HasValue bool
	Unit     string
	// Category names the band ("G3a A2", "Stage 2 hypertension",
	// "Intermediate risk (7.5–19.9%)").
	Category string
	// Interpretation is what the band means, with its citation when it
	// comes from another source than the formula.
	Interpretation         string
	InterpretationCitation *knowledge.Citation
	Inputs                 []Input
	// Date is the date of the latest input.
	Date time.Time
}

// Input is one value a risk was computed from.
type Input struct {
	Name, Value string
	Date        time.Time
	Resource    *fhir.Resource
}

// LOINC codes of the computed eGFR and the values the risks read.
const (
	LOINCeGFR2021 = "98979-8"
	loincSBP      = "8480-6"
	loincDBP      = "8462-4"
	loincBMI      = "39156-5"
	loincSmoking  = "72166-2"
)

var (
	creatinineCodes = map[string]bool{"2160-0": true, "38483-4": true}
	weightCodes     = map[string]bool{"29463-7": true, "3141-9": true}
	heightCodes     = map[string]bool{"8302-2": true, "8306-3": true, "8308-9": true}
	cholCodes       = map[string]bool{"2093-3": true, "14647-2": true}
	hdlCodes        = map[string]bool{"2085-9": true, "14646-4": true}
)

// ckdEPI2021 is the 2021 CKD-EPI creatinine equation (Inker 2021, no race
// term): scr in mg/dL, age in years.
func ckdEPI2021(scr, age float64, female bool) float64 {
	kappa, alpha, sex := 0.9, -0.302, 1.0
	if female {
		kappa, alpha, sex = 0.7, -0.241, 1.012
	}
	r := scr / kappa
	return 142 * math.Pow(math.Min(r, 1), alpha) * math.Pow(math.Max(r, 1), -1.200) * math.Pow(0.9938, age) * sex
}

// deriveEGFR computes eGFR (CKD-EPI 2021) for every adult creatinine
// result on a day with no reported eGFR, and judges it.
func (cs *CaseSummary) deriveEGFR(ms []*measurement, kb *knowledge.Base) []*measurement {
	egfr := kb.Analyte("egfr")
	creat := kb.Analyte("creatinine")
	reported := map[string]bool{}
	for _, m := range ms {
		if a := kb.AnalyteFor(m.code); a != nil && a == egfr && !m.date.IsZero() {
			reported[m.date.Format("2006-01-02")] = true
		}
	}
	cite := kb.Cite("ckd-epi-2021", "2021 CKD-EPI creatinine equation (without race)")
	type pending struct {
		d     Derived
		m     *measurement
		match *knowledge.Match
	}
	var ps []pending
	for _, m := range ms {
		if !creatinineCodes[m.code] || m.date.IsZero() || reported[m.date.Format("2006-01-02")] {
			continue
		}
		age := cs.Patient.AgeAt(m.date)
		scr, err := creat.ConvertTo(m.q.value, m.q.unit, "mg/dL")
		if err != nil || age < 18 || cs.Patient.Sex == "" || scr <= 0 {
			continue
		}
		d := Derived{Code: LOINCeGFR2021, Name: "eGFR (CKD-EPI 2021, computed)", Unit: "mL/min/{1.73_m2}", Date: m.date,
			Value: ckdEPI2021(scr, age, cs.Patient.Sex == "female"), From: []*fhir.Resource{m.res},
			Formula: "CKD-EPI 2021 creatinine equation", Citation: cite}
		// res is the creatinine it comes from: what a check citing this
		// value points at
		nm := &measurement{res: m.res, code: LOINCeGFR2021, key: knowledge.LOINC + "|" + LOINCeGFR2021 + "|computed", name: d.Name,
			q: quantity{value: d.Value, unit: d.Unit}, date: d.Date}
		cs.Judged++
		match, _ := egfr.Judge(d.Value, d.Unit, cs.Patient.subject(d.Date))
		if match != nil {
			d.Interpretation = match.Code
		}
		ps = append(ps, pending{d: d, m: nm, match: match})
	}
	start := len(cs.Derived)
	var out []*measurement
	for _, p := range ps {
		cs.Derived = append(cs.Derived, p.d)
		out = append(out, p.m)
	}
	// flags point into the final Derived slice, which grows no more
	for i, p := range ps {
		if p.match == nil {
			continue
		}
		d := &cs.Derived[start+i]
		c := p.match.Limit.Cite()
		f := Flag{Derived: d, Code: d.Code, Name: d.Name, Value: d.Value, Unit: d.Unit, HasValue: true, Date: d.Date,
			Interpretation: d.Interpretation, Basis: ByKnowledge, Citation: &c,
			Rule: RuleText(p.match, egfr)}
		cs.Flags = append(cs.Flags, f)
		fc := f
		p.m.flag = &fc
	}
	return out
}

// latestOf is the most recent dated measurement whose code is in codes.
func latestOf(ms []*measurement, codes map[string]bool) *measurement {
	var best *measurement
	for _, m := range ms {
		if codes[m.code] && !m.date.IsZero() && (best == nil || m.date.After(best.date)) {
			best = m
		}
	}
	return best
}

func valueText(v float64, unit string) string {
	u := knowledge.DisplayUnit(unit)
	if u == "" {
		return knowledge.FormatNumber(v)
	}
	return knowledge.FormatNumber(v) + " " + u
}

func (cs *CaseSummary) risks(ms []*measurement, resources []*fhir.Resource, kb *knowledge.Base) []Risk {
	return []Risk{
		cs.riskEGFR(ms, kb),
		cs.riskCKDStage(ms, kb),
		cs.riskBP(ms, kb),
		cs.riskBMI(ms, kb),
		cs.riskASCVD(ms, resources, kb),
		cs.riskCHA2DS2VASc(resources, kb),
	}
}

func (cs *CaseSummary) ageInput(at time.Time) (Input, float64) {
	age := cs.Patient.AgeAt(at)
	return Input{Name: "Age", Value: fmt.Sprintf("%d years", int(age)), Date: at}, age
}

func (cs *CaseSummary) riskEGFR(ms []*measurement, kb *knowledge.Base) Risk {
	r := Risk{ID: "egfr-ckd-epi-2021", Name: "Estimated GFR", Formula: "CKD-EPI 2021 creatinine equation (without race)",
		Citation: kb.Cite("ckd-epi-2021", "2021 CKD-EPI creatinine equation"), Unit: "mL/min/{1.73_m2}"}
	cr := latestOf(ms, creatinineCodes)
	if cr == nil {
		r.Missing = append(r.Missing, "serum creatinine")
	}
	if cs.Patient.Sex == "" {
		r.Missing = append(r.Missing, "sex")
	}
	if cs.Patient.BirthDate.IsZero() {
		r.Missing = append(r.Missing, "birth date")
	}
	if len(r.Missing) > 0 {
		return r
	}
	scr, err := kb.Analyte("creatinine").ConvertTo(cr.q.value, cr.q.unit, "mg/dL")
	if err != nil {
		r.Missing = append(r.Missing, "serum creatinine in a convertible unit (got "+cr.q.unit+")")
		return r
	}
	in, age := cs.ageInput(cr.date)
	if age < 18 {
		r.NotApplicable = "the equation is for adults (18 years and older)"
		return r
	}
	r.Computable, r.HasValue = true, true
	r.Value = ckdEPI2021(scr, age, cs.Patient.Sex == "female")
	r.Date = cr.date
	r.Inputs = []Input{{Name: "Serum creatinine", Value: valueText(cr.q.value, cr.q.unit), Date: cr.date, Resource: cr.res}, in,
		{Name: "Sex", Value: cs.Patient.Sex}}
	for _, m := range ms {
		if a := kb.AnalyteFor(m.code); a != nil && a.ID == "egfr" && m.code != LOINCeGFR2021 && sameDay(m.date, cr.date) {
			r.Inputs = append(r.Inputs, Input{Name: "eGFR reported by the laboratory that day", Value: valueText(m.q.value, m.q.unit), Date: m.date, Resource: m.res})
			break
		}
	}
	r.Category, r.Interpretation = gfrCategory(r.Value)
	c := kb.Cite("kdigo-ckd-2024", "Chapter 1, GFR categories")
	r.InterpretationCitation = &c
	return r
}

func sameDay(a, b time.Time) bool { return a.Format("2006-01-02") == b.Format("2006-01-02") }

// gfrCategory is KDIGO's GFR category.
func gfrCategory(v float64) (string, string) {
	switch {
	case v >= 90:
		return "G1", "normal or high"
	case v >= 60:
		return "G2", "mildly decreased"
	case v >= 45:
		return "G3a", "mildly to moderately decreased"
	case v >= 30:
		return "G3b", "moderately to severely decreased"
	case v >= 15:
		return "G4", "severely decreased"
	}
	return "G5", "kidney failure"
}

// albuminuriaCategory is KDIGO's albuminuria category, ACR in mg/g.
func albuminuriaCategory(v float64) (string, string) {
	switch {
	case v < 30:
		return "A1", "normal to mildly increased"
	case v <= 300:
		return "A2", "moderately increased"
	}
	return "A3", "severely increased"
}

// riskCKDStage is KDIGO's GFR and albuminuria category from the latest
// eGFR (reported, else computed) and urine ACR.
func (cs *CaseSummary) riskCKDStage(ms []*measurement, kb *knowledge.Base) Risk {
	r := Risk{ID: "ckd-stage", Name: "CKD category", Formula: "KDIGO classification by GFR and albuminuria",
		Citation: kb.Cite("kdigo-ckd-2024", "Chapter 1, CKD classification by GFR (G1–G5) and albuminuria (A1–A3) categories")}
	egfr := kb.Analyte("egfr")
	var latest *measurement
	var below60 []time.Time
	for _, m := range ms {
		if a := kb.AnalyteFor(m.code); a != egfr || m.date.IsZero() {
			continue
		}
		v, err := egfr.ConvertTo(m.q.value, m.q.unit, egfr.Unit)
		if err != nil {
			continue
		}
		if v < 60 {
			below60 = append(below60, m.date)
		}
		if latest == nil || m.date.After(latest.date) || m.date.Equal(latest.date) && latest.code == LOINCeGFR2021 {
			latest = m
		}
	}
	if latest == nil {
		r.Missing = []string{"eGFR (or serum creatinine with age and sex)"}
		return r
	}
	v, _ := egfr.ConvertTo(latest.q.value, latest.q.unit, egfr.Unit)
	g, gText := gfrCategory(v)
	r.Computable, r.Date = true, latest.date
	name := "eGFR"
	if latest.code == LOINCeGFR2021 {
		name = "eGFR (computed, CKD-EPI 2021)"
	}
	r.Inputs = append(r.Inputs, Input{Name: name, Value: valueText(v, egfr.Unit), Date: latest.date, Resource: latest.res})
	r.Category = g
	r.Interpretation = "GFR " + gText
	uacr := kb.Analyte("uacr")
	var acr *measurement
	for _, m := range ms {
		if kb.AnalyteFor(m.code) == uacr && !m.date.IsZero() && (acr == nil || m.date.After(acr.date)) {
			if _, err := uacr.ConvertTo(m.q.value, m.q.unit, "mg/g"); err == nil {
				acr = m
			}
		}
	}
	if acr != nil {
		av, _ := uacr.ConvertTo(acr.q.value, acr.q.unit, "mg/g")
		a, aText := albuminuriaCategory(av)
		r.Category += " " + a
		r.Interpretation += "; albuminuria " + aText
		r.Inputs = append(r.Inputs, Input{Name: "Urine albumin/creatinine ratio", Value: valueText(acr.q.value, acr.q.unit), Date: acr.date, Resource: acr.res})
		if acr.date.After(r.Date) {
			r.Date = acr.date
		}
	} else {
		r.Missing = []string{"urine albumin/creatinine ratio (albuminuria category)"}
	}
	// CKD needs the abnormality to last more than 3 months
	sort.Slice(below60, func(i, j int) bool { return below60[i].Before(below60[j]) })
	if len(below60) >= 2 && below60[len(below60)-1].Sub(below60[0]) > 90*24*time.Hour {
		r.Interpretation += "; eGFR below 60 on results more than 3 months apart (CKD criterion of duration met)"
	} else if v < 60 {
		r.Interpretation += "; a decreased eGFR needs confirming over more than 3 months before CKD is diagnosed"
	} else {
		r.Interpretation += "; G1–G2 is CKD only with markers of kidney damage (such as albuminuria) for more than 3 months"
	}
	return r
}

// riskBP is the ACC/AHA 2017 blood-pressure category from the mean of the
// readings on the two most recent days that have both pressures.
func (cs *CaseSummary) riskBP(ms []*measurement, kb *knowledge.Base) Risk {
	r := Risk{ID: "bp-category", Name: "Blood pressure category", Formula: "ACC/AHA 2017 categories of BP in adults (mean of readings on 2 occasions)",
		Citation: kb.Cite("acc-aha-bp-2017", "Table 6, categories of BP in adults; Section 4, average of ≥2 readings on ≥2 occasions"), Unit: "mm[Hg]"}
	type day struct {
		sys, dia []float64
		res      []*fhir.Resource
		date     time.Time
	}
	days := map[string]*day{}
	for _, m := range ms {
		if (m.code != loincSBP && m.code != loincDBP) || m.date.IsZero() {
			continue
		}
		v, err := knowledge.Convert(m.q.value, m.q.unit, "mm[Hg]", 0)
		if err != nil {
			continue
		}
		k := m.date.Format("2006-01-02")
		d := days[k]
		if d == nil {
			d = &day{date: m.date}
			days[k] = d
		}
		if m.code == loincSBP {
			d.sys = append(d.sys, v)
		} else {
			d.dia = append(d.dia, v)
		}
		d.res = append(d.res, m.res)
	}
	var ds []*day
	for _, d := range days {
		if len(d.sys) > 0 && len(d.dia) > 0 {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		r.Missing = []string{"systolic and diastolic blood pressure"}
		return r
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].date.After(ds[j].date) })
	if len(ds) > 2 {
		ds = ds[:2]
	}
	if _, age := cs.ageInput(ds[0].date); age >= 0 && age < 18 {
		r.NotApplicable = "the categories are for adults (18 years and older)"
		return r
	}
	var sys, dia []float64
	for _, d := range ds {
		sys = append(sys, d.sys...)
		dia = append(dia, d.dia...)
		r.Inputs = append(r.Inputs, Input{Name: "Blood pressure", Value: knowledge.FormatNumber(mean(d.sys)) + "/" + knowledge.FormatNumber(mean(d.dia)) + " mmHg", Date: d.date, Resource: d.res[0]})
	}
	s, d := mean(sys), mean(dia)
	r.Computable, r.Date = true, ds[0].date
	r.Value, r.HasValue = s, true
	switch {
	case s >= 140 || d >= 90:
		r.Category = "Stage 2 hypertension"
	case s >= 130 || d >= 80:
		r.Category = "Stage 1 hypertension"
	case s >= 120:
		r.Category = "Elevated"
	default:
		r.Category = "Normal"
	}
	r.Interpretation = "mean " + knowledge.FormatNumber(s) + "/" + knowledge.FormatNumber(d) + " mmHg"
	if len(ds) < 2 {
		r.Interpretation += " on a single occasion (the guideline asks for readings on at least 2 occasions)"
	}
	return r
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// riskBMI is the WHO adult BMI class from the latest BMI, or from the
// latest weight and height when no BMI was recorded.
func (cs *CaseSummary) riskBMI(ms []*measurement, kb *knowledge.Base) Risk {
	r := Risk{ID: "bmi-category", Name: "BMI category", Formula: "WHO classification of adults by BMI",
		Citation: kb.Cite("who-trs894-2000", "Table 2.1, classification of adults according to BMI"), Unit: "kg/m2"}
	var bmi float64
	var date time.Time
	if m := latestOf(ms, map[string]bool{loincBMI: true}); m != nil {
		if v, err := knowledge.Convert(m.q.value, m.q.unit, "kg/m2", 0); err == nil {
			bmi, date = v, m.date
			r.Inputs = []Input{{Name: "BMI", Value: valueText(m.q.value, m.q.unit), Date: m.date, Resource: m.res}}
		}
	}
	if date.IsZero() {
		w, h := latestOf(ms, weightCodes), latestOf(ms, heightCodes)
		if w == nil {
			r.Missing = append(r.Missing, "body weight")
		}
		if h == nil {
			r.Missing = append(r.Missing, "body height")
		}
		if w == nil || h == nil {
			r.Missing = append([]string{"BMI"}, r.Missing...)
			return r
		}
		kg, err1 := knowledge.Convert(w.q.value, w.q.unit, "kg", 0)
		m, err2 := knowledge.Convert(h.q.value, h.q.unit, "m", 0)
		if err1 != nil || err2 != nil || m <= 0 {
			r.Missing = []string{"weight and height in convertible units"}
			return r
		}
		bmi, date = kg/(m*m), w.date
		r.Formula += " (BMI = weight / height², computed)"
		r.Inputs = []Input{{Name: "Body weight", Value: valueText(w.q.value, w.q.unit), Date: w.date, Resource: w.res},
			{Name: "Body height", Value: valueText(h.q.value, h.q.unit), Date: h.date, Resource: h.res}}
	}
	if _, age := cs.ageInput(date); age >= 0 && age < 20 {
		r.NotApplicable = "the WHO adult classification applies from age 20; children and adolescents need BMI-for-age"
		return r
	}
	r.Computable, r.Value, r.HasValue, r.Date = true, bmi, true, date
	switch {
	case bmi < 18.5:
		r.Category = "Underweight"
	case bmi < 25:
		r.Category = "Normal range"
	case bmi < 30:
		r.Category = "Pre-obese"
	case bmi < 35:
		r.Category = "Obese class I"
	case bmi < 40:
		r.Category = "Obese class II"
	default:
		r.Category = "Obese class III"
	}
	return r
}

// hasCondition finds a Condition of the set (active only, or any the
// record asserts).
func (cs *CaseSummary) hasCondition(resources []*fhir.Resource, set *knowledge.ConditionSet, activeOnly bool) *fhir.Resource {
	for _, r := range resources {
		if r.Type != "Condition" || activeOnly && !activeCondition(r) || !activeOnly && !everCondition(r) {
			continue
		}
		for _, c := range codings(r.Root().Get("code")) {
			if set.MatchesCondition(c.System, c.Code) {
				return r
			}
		}
	}
	return nil
}

// onMedication finds an active medication of the set.
func (cs *CaseSummary) onMedication(set *knowledge.MedicationSet) *fhir.Resource {
	for _, r := range cs.ActiveMedications {
		cc := medicationConcept(r, cs.byRef)
		if set.MatchesMedication(codings(cc), conceptTexts(cc)) {
			return r
		}
	}
	return nil
}

// smokingStatus reads the latest tobacco smoking status: "current",
// "non" or "" (unknown).
func smokingStatus(resources []*fhir.Resource) (string, *fhir.Resource) {
	var best *fhir.Resource
	var bestDate time.Time
	for _, r := range resources {
		if r.Type != "Observation" || withdrawn(r) || loincOf(r.Root().Get("code")) != loincSmoking {
			continue
		}
		if d := whenOf(r); best == nil || d.After(bestDate) {
			best, bestDate = r, d
		}
	}
	if best == nil {
		return "", nil
	}
	v := best.Root().Get("valueCodeableConcept")
	for _, c := range codings(v) {
		switch c.Code {
		case "449868002", "428041000124106", "77176002", "65568007", "428071000124103", "428061000124105":
			return "current", best
		case "266919005", "8517006", "405746006":
			return "non", best
		}
	}
	for _, t := range conceptTexts(v) {
		lt := strings.ToLower(t)
		switch {
		case strings.Contains(lt, "never") || strings.Contains(lt, "former") || strings.Contains(lt, "ex-smoker"):
			return "non", best
		case strings.Contains(lt, "current") || strings.Contains(lt, "every day") || strings.Contains(lt, "some day"):
			return "current", best
		}
	}
	return "", best
}

// pceCoefficients of the pooled cohort equations (Goff 2013, Table A).
type pceCoefficients struct {
	lnAge, lnAge2, lnTC, lnAgeLnTC, lnHDL, lnAgeLnHDL, lnTreatedSBP, lnAgeLnTreatedSBP, lnUntreatedSBP, lnAgeLnUntreatedSBP, smoker, lnAgeSmoker, diabetes float64
	baseline, meanSum                                                                                                                                      float64
}

var pce = map[string]pceCoefficients{
	"female/white": {lnAge: -29.799, lnAge2: 4.884, lnTC: 13.540, lnAgeLnTC: -3.114, lnHDL: -13.578, lnAgeLnHDL: 3.149,
		lnTreatedSBP: 2.019, lnUntreatedSBP: 1.957, smoker: 7.574, lnAgeSmoker: -1.665, diabetes: 0.661, baseline: 0.9665, meanSum: -29.18},
	"female/black": {lnAge: 17.114, lnTC: 0.940, lnHDL: -18.920, lnAgeLnHDL: 4.475, lnTreatedSBP: 29.291, lnAgeLnTreatedSBP: -6.432,
		lnUntreatedSBP: 27.820, lnAgeLnUntreatedSBP: -6.087, smoker: 0.691, diabetes: 0.874, baseline: 0.9533, meanSum: 86.61},
	"male/white": {lnAge: 12.344, lnTC: 11.853, lnAgeLnTC: -2.664, lnHDL: -7.990, lnAgeLnHDL: 1.769, lnTreatedSBP: 1.797,
		lnUntreatedSBP: 1.764, smoker: 7.837, lnAgeSmoker: -1.795, diabetes: 0.658, baseline: 0.9144, meanSum: 61.18},
	"male/black": {lnAge: 2.469, lnTC: 0.302, lnHDL: -0.307, lnTreatedSBP: 1.916, lnUntreatedSBP: 1.809, smoker: 0.549,
		diabetes: 0.645, baseline: 0.8954, meanSum: 19.54},
}

// PooledCohortRisk is the 10-year ASCVD risk (0–1) of the pooled cohort
// equations; sex "male"/"female", race "black" or anything else (white
// equations), cholesterol in mg/dL, SBP in mmHg.
func PooledCohortRisk(sex, race string, age, tc, hdl, sbp float64, treated, smoker, diabetic bool) float64 {
	key := sex + "/white"
	if race == "black" {
		key = sex + "/black"
	}
	c := pce[key]
	la, lt, lh, ls := math.Log(age), math.Log(tc), math.Log(hdl), math.Log(sbp)
	sum := c.lnAge*la + c.lnAge2*la*la + c.lnTC*lt + c.lnAgeLnTC*la*lt + c.lnHDL*lh + c.lnAgeLnHDL*la*lh
	if treated {
		sum += c.lnTreatedSBP*ls + c.lnAgeLnTreatedSBP*la*ls
	} else {
		sum += c.lnUntreatedSBP*ls + c.lnAgeLnUntreatedSBP*la*ls
	}
	if smoker {
		sum += c.smoker + c.lnAgeSmoker*la
	}
	if diabetic {
		sum += c.diabetes
	}
	return 1 - math.Pow(c.baseline, math.Exp(sum-c.meanSum))
}

// riskASCVD is the pooled-cohort 10-year ASCVD risk for primary
// prevention (ages 40–79, no established ASCVD).
func (cs *CaseSummary) riskASCVD(ms []*measurement, resources []*fhir.Resource, kb *knowledge.Base) Risk {
	r := Risk{ID: "ascvd-pce", Name: "10-year ASCVD risk", Formula: "Pooled cohort equations",
		Citation: kb.Cite("pce-2013", "equation parameters of the pooled cohort equations"), Unit: "%"}
	if c := cs.hasCondition(resources, kb.ConditionSet("ascvd"), false); c != nil {
		r.NotApplicable = "established atherosclerotic cardiovascular disease (" + display(c, cs.byRef) + "): secondary prevention, the equations do not apply"
		return r
	}
	if cs.Patient.Sex == "" {
		r.Missing = append(r.Missing, "sex")
	}
	in, age := cs.ageInput(cs.AsOf)
	if cs.Patient.BirthDate.IsZero() {
		r.Missing = append(r.Missing, "birth date")
	} else if age < 40 || age >= 80 {
		r.NotApplicable = fmt.Sprintf("the equations are valid for ages 40 to 79 (age %d)", int(age))
		return r
	}
	tc, hdl, sbp := latestOf(ms, cholCodes), latestOf(ms, hdlCodes), latestOf(ms, map[string]bool{loincSBP: true})
	chol := kb.Analyte("cholesterol")
	read := func(m *measurement, name, unit string, a *knowledge.Analyte) float64 {
		if m == nil {
			r.Missing = append(r.Missing, name)
			return 0
		}
		v, ok := convertFor(a, m.q.value, m.q.unit, unit)
		if !ok {
			r.Missing = append(r.Missing, name+" in a convertible unit")
			return 0
		}
		r.Inputs = append(r.Inputs, Input{Name: name, Value: valueText(m.q.value, m.q.unit), Date: m.date, Resource: m.res})
		if m.date.After(r.Date) {
			r.Date = m.date
		}
		return v
	}
	tcv := read(tc, "Total cholesterol", "mg/dL", chol)
	hdlv := read(hdl, "HDL cholesterol", "mg/dL", chol)
	sbpv := read(sbp, "Systolic blood pressure", "mm[Hg]", nil)
	smoke, smokeRes := smokingStatus(resources)
	if smoke == "" {
		r.Missing = append(r.Missing, "smoking status")
	}
	if len(r.Missing) > 0 {
		return r
	}
	treatedBy := cs.onMedication(kb.MedicationSet("antihypertensive"))
	diab := cs.hasCondition(resources, kb.ConditionSet("diabetes"), true)
	r.Inputs = append([]Input{in, {Name: "Sex", Value: cs.Patient.Sex}}, r.Inputs...)
	race := "white or other (the white equations)"
	if cs.Patient.Race == "black" {
		race = "Black or African American"
	}
	r.Inputs = append(r.Inputs, Input{Name: "Race equations", Value: race})
	tr := Input{Name: "Treated for high blood pressure", Value: "no"}
	if treatedBy != nil {
		tr = Input{Name: "Treated for high blood pressure", Value: "yes: " + display(treatedBy, cs.byRef), Resource: treatedBy}
	}
	dm := Input{Name: "Diabetes", Value: "no (none in the record)"}
	if diab != nil {
		dm = Input{Name: "Diabetes", Value: "yes: " + display(diab, cs.byRef), Resource: diab}
	}
	r.Inputs = append(r.Inputs, tr, dm, Input{Name: "Current smoker", Value: map[bool]string{true: "yes", false: "no"}[smoke == "current"], Date: whenOf(smokeRes), Resource: smokeRes})
	risk := PooledCohortRisk(cs.Patient.Sex, cs.Patient.Race, age, tcv, hdlv, sbpv, treatedBy != nil, smoke == "current", diab != nil)
	r.Computable, r.Value, r.HasValue = true, risk*100, true
	switch {
	case risk < 0.05:
		r.Category = "Low risk (<5%)"
	case risk < 0.075:
		r.Category = "Borderline risk (5–7.4%)"
	case risk < 0.20:
		r.Category = "Intermediate risk (7.5–19.9%)"
	default:
		r.Category = "High risk (≥20%)"
	}
	c := kb.Cite("acc-aha-chol-2018", "primary prevention: 10-year ASCVD risk categories")
	r.InterpretationCitation = &c
	var out []string
	if tcv < 130 || tcv > 320 {
		out = append(out, "total cholesterol")
	}
	if hdlv < 20 || hdlv > 100 {
		out = append(out, "HDL cholesterol")
	}
	if sbpv < 90 || sbpv > 200 {
		out = append(out, "systolic blood pressure")
	}
	if len(out) > 0 {
		r.Interpretation = "caution: " + strings.Join(out, ", ") + " outside the range the equations were derived on"
	}
	return r
}

// riskCHA2DS2VASc scores stroke risk in atrial fibrillation.
func (cs *CaseSummary) riskCHA2DS2VASc(resources []*fhir.Resource, kb *knowledge.Base) Risk {
	r := Risk{ID: "cha2ds2-vasc", Name: "CHA₂DS₂-VASc", Formula: "CHA₂DS₂-VASc score", Unit: "points",
		Citation: kb.Cite("cha2ds2vasc-2010", "CHA2DS2-VASc scoring")}
	af := cs.hasCondition(resources, kb.ConditionSet("atrial-fibrillation"), true)
	if af == nil {
		r.NotApplicable = "no active atrial fibrillation in the record"
		return r
	}
	r.Inputs = append(r.Inputs, Input{Name: "Atrial fibrillation", Value: display(af, cs.byRef), Date: whenOf(af), Resource: af})
	if cs.Patient.Sex == "" {
		r.Missing = append(r.Missing, "sex")
	}
	if cs.Patient.BirthDate.IsZero() {
		r.Missing = append(r.Missing, "birth date")
	}
	if len(r.Missing) > 0 {
		return r
	}
	score := 0
	add := func(points int, name string, res *fhir.Resource, value string) {
		score += points
		in := Input{Name: fmt.Sprintf("%s (+%d)", name, points), Value: value, Resource: res}
		if res != nil {
			in.Date = whenOf(res)
			if in.Value == "" {
				in.Value = display(res, cs.byRef)
			}
		}
		r.Inputs = append(r.Inputs, in)
	}
	for _, c := range []struct {
		set    string
		name   string
		points int
	}{
		{"heart-failure", "Congestive heart failure", 1},
		{"hypertension", "Hypertension", 1},
		{"diabetes", "Diabetes", 1},
		{"stroke-tia", "Stroke, TIA or thromboembolism", 2},
		{"vascular-disease", "Vascular disease", 1},
	} {
		if res := cs.hasCondition(resources, kb.ConditionSet(c.set), false); res != nil {
			add(c.points, c.name, res, "")
		}
	}
	_, age := cs.ageInput(cs.AsOf)
	switch {
	case age >= 75:
		add(2, "Age 75 or older", nil, fmt.Sprintf("%d years", int(age)))
	case age >= 65:
		add(1, "Age 65–74", nil, fmt.Sprintf("%d years", int(age)))
	}
	if cs.Patient.Sex == "female" {
		add(1, "Female sex", nil, "female")
	}
	r.Computable, r.Value, r.HasValue, r.Date = true, float64(score), true, cs.AsOf
	r.Category = fmt.Sprintf("%d points", score)
	c := kb.Cite("esc-af-2020", "stroke risk assessment with CHA2DS2-VASc: oral anticoagulation recommended at CHA2DS2-VASc ≥2 in men or ≥3 in women (class I), to be considered at 1 in men or 2 in women (class IIa)")
	r.InterpretationCitation = &c
	female := cs.Patient.Sex == "female"
	extra := 0
	if female {
		extra = 1
	}
	switch {
	case score >= 2+extra:
		r.Interpretation = "oral anticoagulation recommended"
	case score == 1+extra:
		r.Interpretation = "oral anticoagulation should be considered"
	default:
		r.Interpretation = "low risk: no antithrombotic therapy for stroke prevention"
	}
	return r
}
