package referral_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/referral"
)

// This file checks the case summary of every Synthea patient against
// values computed here, from the raw bundle and the raw knowledge tables,
// with code of its own: its own table reader, unit factors, age
// arithmetic, equations and rule matching. The gateway's code paths
// (referral, referral/knowledge) are only called to get the answer under
// test.

type tLimit struct {
	Low, High, Above, AtOrAbove, Below, AtOrBelow *float64
	Unit, Sex, Source                             string
	Critical                                      bool
	AgeMin, AgeMax                                float64
}

type tAnalyte struct {
	ID     string
	LOINC  []string
	Unit   string
	Limits []tLimit
}

type tCare struct {
	ConditionSets []struct {
		ID     string
		SNOMED []string
		ICD10  []string
	}
	MedicationSets []struct {
		ID          string
		Ingredients []string
	}
	TestSets []struct {
		ID       string
		Codes    []struct{ System, Code string }
		Keywords []string
	}
	Rules []struct {
		ID           string
		When         struct{ Condition, Medication string }
		Test         string
		WithinMonths int
	}
}

func readTable(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("knowledge", "data", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// factor converts a value to a limit's unit: the SI definitions and, for
// mass ↔ substance, the molar masses of the conversion tables (Young
// 1987): urea nitrogen 28.014, creatinine 113.12, calcium 40.078, glucose
// 180.16, bilirubin 584.66 g/mol.
func factor(analyte, from, to string) (float64, bool) {
	if from == to {
		return 1, true
	}
	if f, ok := map[[3]string]float64{
		{"urea", "mg/dL", "mmol/L"}:            10 / 28.014,
		{"creatinine", "mg/dL", "umol/L"}:      10000 / 113.12,
		{"calcium", "mg/dL", "mmol/L"}:         10 / 40.078,
		{"glucose", "mg/dL", "mmol/L"}:         10 / 180.16,
		{"glucose-fasting", "mg/dL", "mmol/L"}: 10 / 180.16,
		{"bilirubin", "mg/dL", "umol/L"}:       10000 / 584.66,
	}[[3]string{analyte, from, to}]; ok {
		return f, true
	}
	f, ok := map[[2]string]float64{
		{"g/dL", "g/L"}:                10,
		{"%", "L/L"}:                   0.01,
		{"10*3/uL", "10*9/L"}:          1,
		{"10*6/uL", "10*12/L"}:         1,
		{"mL/min", "mL/min/{1.73_m2}"}: 1,
		{"mL/min/{1.73_m2}", "mL/min"}: 1,
	}[[2]string{from, to}]
	return f, ok
}

func years(birth, at time.Time) float64 {
	y := at.Year() - birth.Year()
	if birth.AddDate(y, 0, 0).After(at) {
		y--
	}
	a := birth.AddDate(y, 0, 0)
	return float64(y) + at.Sub(a).Hours()/birth.AddDate(y+1, 0, 0).Sub(a).Hours()
}

func fhirTime(s string) time.Time {
	for _, l := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(l, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

type tPatient struct {
	sex   string
	birth time.Time
}

type judged struct {
	code    string // "" in range
	sources []string
	matched bool // a limit applied
}

// judgeTable judges one value with the raw table: every applicable limit,
// the most severe code wins (critical first).
func judgeTable(a *tAnalyte, v float64, unit string, p tPatient, at time.Time, missing map[string]bool) judged {
	var out judged
	sev := func(c string) int { return map[string]int{"": 0, "H": 1, "L": 1, "HH": 2, "LL": 2}[c] }
	for _, l := range a.Limits {
		if l.Sex != "" && l.Sex != p.sex {
			continue
		}
		if l.AgeMin > 0 || l.AgeMax > 0 {
			age := years(p.birth, at)
			if age < l.AgeMin || l.AgeMax > 0 && age >= l.AgeMax {
				continue
			}
		}
		lu := l.Unit
		if lu == "" {
			lu = a.Unit
		}
		f, ok := factor(a.ID, unit, lu)
		if !ok {
			// ratios per mass and per mole of creatinine have no factor
			// without assuming one; every other pair must be listed
			if !(a.ID == "uacr" && (lu == "mg/mmol") != (unit == "mg/mmol")) {
				missing[a.ID+": "+unit+" → "+lu] = true
			}
			continue
		}
		out.matched = true
		x := v * f
		code := ""
		switch {
		case l.Low != nil && x < *l.Low, l.Below != nil && x < *l.Below, l.AtOrBelow != nil && x <= *l.AtOrBelow:
			code = "L"
		case l.High != nil && x > *l.High, l.Above != nil && x > *l.Above, l.AtOrAbove != nil && x >= *l.AtOrAbove:
			code = "H"
		}
		if code != "" && l.Critical {
			code += code
		}
		if code == "" {
			continue
		}
		switch {
		case sev(code) > sev(out.code):
			out.code, out.sources = code, []string{l.Source}
		case sev(code) == sev(out.code):
			out.sources = append(out.sources, l.Source)
			if out.code != code { // mixed directions never happen for one value
				out.code = "?"
			}
		}
	}
	return out
}

type tMeasure struct {
	id, comp, code, unit string
	v                    float64
	at                   time.Time
	flag                 string
}

// expectation is everything this file computes for one patient.
type expectation struct {
	flags    map[string]judged // key id|component → code
	measures []tMeasure
	derived  map[string]float64 // date → eGFR CKD-EPI 2021
}

var abnormal = map[string]bool{"H": true, "L": true, "A": true, "HH": true, "LL": true, "AA": true, "HU": true, "LU": true}

func expect(t *testing.T, rec record, analytes map[string]*tAnalyte, missing map[string]bool) expectation {
	var p tPatient
	for _, m := range rec.raw {
		if m["resourceType"] == "Patient" {
			p.sex, _ = m["gender"].(string)
			p.birth = fhirTime(m["birthDate"].(string))
		}
	}
	ex := expectation{flags: map[string]judged{}, derived: map[string]float64{}}
	egfrDays, creat := map[string]bool{}, map[string][]tMeasure{}
	for _, m := range rec.raw {
		if m["resourceType"] != "Observation" || m["status"] == "entered-in-error" || m["status"] == "cancelled" {
			continue
		}
		at := fhirTime(fmt.Sprint(m["effectiveDateTime"]))
		elems := []map[string]any{m}
		for _, c := range asList(m["component"]) {
			elems = append(elems, c.(map[string]any))
		}
		for i, el := range elems {
			code := firstCode(el["code"])
			comp := ""
			if i > 0 {
				comp = code
			}
			key := m["id"].(string) + "|" + comp
			vq, hasQ := el["valueQuantity"].(map[string]any)
			v, _ := vq["value"].(float64)
			unit, _ := vq["code"].(string)
			if interp := asList(el["interpretation"]); len(interp) > 0 {
				c := firstCode(interp[0])
				if abnormal[c] {
					ex.flags[key] = judged{code: c}
				}
			} else if rr := asList(el["referenceRange"]); hasQ && len(rr) > 0 {
				r := rr[0].(map[string]any)
				lo, hi := r["low"].(map[string]any)["value"].(float64), r["high"].(map[string]any)["value"].(float64)
				if v < lo {
					ex.flags[key] = judged{code: "L"}
				} else if v > hi {
					ex.flags[key] = judged{code: "H"}
				}
			} else if a := analytes[code]; hasQ && a != nil {
				if j := judgeTable(a, v, unit, p, at, missing); j.code != "" {
					ex.flags[key] = j
				}
			}
			if hasQ {
				ms := tMeasure{id: m["id"].(string), comp: comp, code: code, unit: unit, v: v, at: at, flag: ex.flags[key].code}
				ex.measures = append(ex.measures, ms)
				day := at.Format("2006-01-02")
				if a := analytes[code]; a != nil && a.ID == "egfr" {
					egfrDays[day] = true
				}
				if code == "2160-0" || code == "38483-4" {
					creat[day] = append(creat[day], ms)
				}
			}
		}
	}
	// CKD-EPI 2021 (Inker 2021, Table/Appendix: 142 × min(Scr/κ,1)^α × max(Scr/κ,1)^−1.200 × 0.9938^age × 1.012 if female)
	for day, vs := range creat {
		if egfrDays[day] {
			continue
		}
		for _, c := range vs {
			scr, age := c.v, years(p.birth, c.at)
			if age < 18 {
				continue
			}
			k, a, s := 0.9, -0.302, 1.0
			if p.sex == "female" {
				k, a, s = 0.7, -0.241, 1.012
			}
			ex.derived[day] = 142 * math.Pow(math.Min(scr/k, 1), a) * math.Pow(math.Max(scr/k, 1), -1.2) * math.Pow(0.9938, age) * s
		}
	}
	return ex
}

// TestCaseSummarySynthea: for every Synthea patient, the flags are
// exactly the out-of-range values (by the source's interpretation, its
// range, or the cited tables), the trends, the risks and the care checks
// agree with what this file computes from the raw bundle.
func TestCaseSummarySynthea(t *testing.T) {
	var ranges struct{ Analytes []*tAnalyte }
	readTable(t, "ranges.json", &ranges)
	analytes := map[string]*tAnalyte{}
	for _, a := range ranges.Analytes {
		for _, c := range a.LOINC {
			analytes[c] = a
		}
	}
	var care tCare
	readTable(t, "care.json", &care)
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	missing := map[string]bool{}
	total := map[string]int{}
	for _, f := range syntheaFiles(t) {
		rec := loadRecord(t, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			cs := referral.Analyze(rec.resources, referral.AnalyzeOptions{Now: now})
			ex := expect(t, rec, analytes, missing)
			// flags
			got := map[string]string{}
			for _, f := range cs.Flags {
				if f.Resource == nil {
					continue
				}
				key := f.Resource.ID + "|" + f.Component
				if _, dup := got[key]; dup {
					t.Errorf("%s flagged twice", key)
				}
				got[key] = f.Interpretation
				want, ok := ex.flags[key]
				if !ok {
					t.Errorf("%s %s %v %s flagged %s (%s) but is in range", f.Resource.ID, f.Name, f.Value, f.Unit, f.Interpretation, f.Rule)
					continue
				}
				if f.Interpretation != want.code {
					t.Errorf("%s %s %v: flag %s, want %s", f.Resource.ID, f.Name, f.Value, f.Interpretation, want.code)
				}
				if f.Basis == referral.ByKnowledge && (f.Citation == nil || !slices.Contains(want.sources, f.Citation.Source.ID)) {
					t.Errorf("%s: cites %v, want one of %v", key, f.Citation, want.sources)
				}
				total[string(f.Basis)]++
			}
			for key, want := range ex.flags {
				if _, ok := got[key]; !ok {
					t.Errorf("%s is out of range (%s) but not flagged", key, want.code)
				}
			}
			// derived eGFR
			nd := 0
			for _, d := range cs.Derived {
				w, ok := ex.derived[d.Date.Format("2006-01-02")]
				if !ok || math.Abs(w-d.Value) > 1e-9*w {
					t.Errorf("computed eGFR %v on %s, want %v (%v)", d.Value, d.Date, w, ok)
				}
				nd++
			}
			if nd != len(ex.derived) {
				t.Errorf("%d computed eGFR values, want %d", nd, len(ex.derived))
			}
			total["derived"] += nd
			checkTrends(t, cs, ex)
			checkRisks(t, cs, rec, ex, now)
			checkCare(t, cs, rec, care, now)
			for _, r := range cs.Risks {
				if r.Computable {
					total["risk "+r.ID]++
				}
			}
			total["gaps"] += len(cs.Gaps())
			total["trends"] += len(cs.Trends)
			total["care"] += len(cs.Care)
		})
	}
	if len(missing) > 0 {
		t.Errorf("the test has no conversion factor for: %v", missing)
	}
	for _, k := range []string{"risk egfr-ckd-epi-2021", "risk ckd-stage", "risk bp-category", "risk bmi-category", "risk ascvd-pce", "risk cha2ds2-vasc", "gaps"} {
		if total[k] == 0 {
			t.Errorf("%s never exercised by the data: %v", k, total)
		}
	}
	if total[string(referral.ByKnowledge)] == 0 || total[string(referral.BySourceInterpretation)] == 0 || total[string(referral.BySourceRange)] == 0 || total["trends"] == 0 || total["care"] == 0 {
		t.Errorf("a rule went unexercised: %v", total)
	}
	t.Logf("checked: %v", total)
}

func checkTrends(t *testing.T, cs referral.CaseSummary, ex expectation) {
	t.Helper()
	groups := map[string][]tMeasure{}
	for _, m := range ex.measures {
		if !m.at.IsZero() {
			k := m.code
			groups[k] = append(groups[k], m)
		}
	}
	want := map[string][]tMeasure{}
	for k, ms := range groups {
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].at.Before(ms[j].at) })
		if len(ms) >= 2 && ms[0].at.Before(ms[len(ms)-1].at) {
			want[k] = ms
		}
	}
	seen := map[string]bool{}
	for _, tr := range cs.Trends {
		if tr.Code == referral.LOINCeGFR2021 && strings.Contains(tr.Name, "computed") {
			continue
		}
		ms, ok := want[tr.Code]
		if !ok {
			t.Errorf("trend %s (%s) not expected", tr.Name, tr.Code)
			continue
		}
		seen[tr.Code] = true
		last := ms[len(ms)-1]
		if tr.Count != len(ms) || tr.Latest.Value != last.v*mustFactor(t, last.unit, tr.Unit) || !tr.Latest.Date.Equal(last.at) {
			t.Errorf("trend %s: %d points latest %v on %s, want %d latest %v on %s", tr.Name, tr.Count, tr.Latest.Value, tr.Latest.Date, len(ms), last.v, last.at)
		}
		// least squares by the normal equations, time in years of 365.25 days
		var sx, sy, sxx, sxy float64
		flagged := 0
		var worst *tMeasure
		for i, m := range ms {
			x := m.at.Sub(ms[0].at).Hours() / (365.25 * 24)
			y := m.v * mustFactor(t, m.unit, tr.Unit)
			sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
			if m.flag != "" {
				flagged++
				if worst == nil || worse(ms[i], *worst) {
					worst = &ms[i]
				}
			}
		}
		n := float64(len(ms))
		slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
		if !tr.HasSlope || math.Abs(slope-tr.SlopePerYear) > 1e-9*math.Max(1, math.Abs(slope)) {
			t.Errorf("trend %s: slope %v, want %v", tr.Name, tr.SlopePerYear, slope)
		}
		if tr.Flagged != flagged || (worst == nil) != (tr.Worst == nil) || worst != nil && tr.Worst.Value != worst.v*mustFactor(t, worst.unit, tr.Unit) {
			t.Errorf("trend %s: %d flagged worst %+v, want %d worst %+v", tr.Name, tr.Flagged, tr.Worst, flagged, worst)
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("no trend for %s", k)
		}
	}
}

func mustFactor(t *testing.T, from, to string) float64 {
	f, ok := factor("*", from, to)
	if !ok {
		t.Fatalf("no factor %s → %s", from, to)
	}
	return f
}

var severity = map[string]int{"H": 1, "L": 1, "A": 1, "HU": 1, "LU": 1, "HH": 2, "LL": 2, "AA": 2}

func worse(a, b tMeasure) bool {
	sa, sb := severity[a.flag], severity[b.flag]
	if sa != sb {
		return sa > sb
	}
	if a.flag != b.flag {
		return false
	}
	if strings.HasPrefix(a.flag, "L") {
		return a.v < b.v
	}
	return a.v > b.v
}

// rawRecord indexes a raw bundle for the risk and care checks.
type rawRecord struct {
	sex         string
	birth, asOf time.Time
	conditions  []map[string]any // active, unrefuted
	everConds   []map[string]any
	activeMeds  []string // medication texts
	measures    []tMeasure
	smoking     string
}

func indexRaw(rec record, ex expectation, now time.Time) rawRecord {
	var rr rawRecord
	rr.asOf = now
	var smokeAt time.Time
	for _, m := range rec.raw {
		switch m["resourceType"] {
		case "Patient":
			rr.sex, _ = m["gender"].(string)
			rr.birth = fhirTime(m["birthDate"].(string))
			if d := fhirTime(fmt.Sprint(m["deceasedDateTime"])); !d.IsZero() && d.Before(now) {
				rr.asOf = d
			}
		case "Condition":
			if firstCode(m["verificationStatus"]) == "refuted" || firstCode(m["verificationStatus"]) == "entered-in-error" {
				continue
			}
			rr.everConds = append(rr.everConds, m)
			switch firstCode(m["clinicalStatus"]) {
			case "active", "recurrence", "relapse":
				rr.conditions = append(rr.conditions, m)
			}
		case "MedicationRequest":
			if m["status"] == "active" {
				cc, _ := m["medicationCodeableConcept"].(map[string]any)
				txt := fmt.Sprint(cc["text"])
				for _, c := range asList(cc["coding"]) {
					txt += " | " + fmt.Sprint(c.(map[string]any)["display"])
				}
				rr.activeMeds = append(rr.activeMeds, txt)
			}
		case "Observation":
			if firstCode(m["code"]) == "72166-2" {
				at := fhirTime(fmt.Sprint(m["effectiveDateTime"]))
				if rr.smoking == "" || at.After(smokeAt) {
					smokeAt = at
					switch firstCode(m["valueCodeableConcept"]) {
					case "449868002", "428041000124106", "77176002", "65568007", "428071000124103", "428061000124105":
						rr.smoking = "current"
					case "266919005", "8517006", "405746006":
						rr.smoking = "non"
					default:
						rr.smoking = "?"
					}
				}
			}
		}
	}
	rr.measures = ex.measures
	return rr
}

func inSet(conds []map[string]any, snomed, icd []string) map[string]any {
	for _, c := range conds {
		cc, _ := c["code"].(map[string]any)
		for _, x := range asList(cc["coding"]) {
			xm := x.(map[string]any)
			code, _ := xm["code"].(string)
			switch xm["system"] {
			case "http://snomed.info/sct":
				if slices.Contains(snomed, code) {
					return c
				}
			case "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm":
				for _, p := range icd {
					if strings.HasPrefix(code, p) {
						return c
					}
				}
			}
		}
	}
	return nil
}

func wordIn(text, word string) bool {
	t, w := strings.ToLower(text), strings.ToLower(word)
	for i := 0; i+len(w) <= len(t); i++ {
		if t[i:i+len(w)] == w && (i == 0 || !(t[i-1] >= 'a' && t[i-1] <= 'z' || t[i-1] >= '0' && t[i-1] <= '9')) {
			return true
		}
	}
	return false
}

// latest measures of codes, all on the latest date.
func latestMeasures(ms []tMeasure, codes ...string) []tMeasure {
	var out []tMeasure
	for _, m := range ms {
		if !slices.Contains(codes, m.code) || m.at.IsZero() {
			continue
		}
		if len(out) == 0 || m.at.After(out[0].at) {
			out = []tMeasure{m}
		} else if m.at.Equal(out[0].at) {
			out = append(out, m)
		}
	}
	return out
}

func checkRisks(t *testing.T, cs referral.CaseSummary, rec record, ex expectation, now time.Time) {
	t.Helper()
	var care tCare
	readTable(t, "care.json", &care)
	set := func(id string) ([]string, []string) {
		for _, c := range care.ConditionSets {
			if c.ID == id {
				return c.SNOMED, c.ICD10
			}
		}
		t.Fatalf("no condition set %s", id)
		return nil, nil
	}
	rr := indexRaw(rec, ex, now)
	risk := map[string]referral.Risk{}
	for _, r := range cs.Risks {
		risk[r.ID] = r
		if r.Citation.Source == nil {
			t.Errorf("risk %s has no citation", r.ID)
		}
		if !r.Computable && r.NotApplicable == "" && len(r.Missing) == 0 {
			t.Errorf("risk %s is not computable without saying why", r.ID)
		}
	}
	// eGFR by CKD-EPI 2021 on the latest creatinine
	cr := latestMeasures(rr.measures, "2160-0", "38483-4")
	if r := risk["egfr-ckd-epi-2021"]; len(cr) == 0 {
		if r.Computable || !slices.Contains(r.Missing, "serum creatinine") {
			t.Errorf("eGFR without creatinine: %+v", r)
		}
	} else if age := years(rr.birth, cr[0].at); age >= 18 {
		ok := false
		for _, c := range cr {
			k, a, s := 0.9, -0.302, 1.0
			if rr.sex == "female" {
				k, a, s = 0.7, -0.241, 1.012
			}
			w := 142 * math.Pow(math.Min(c.v/k, 1), a) * math.Pow(math.Max(c.v/k, 1), -1.2) * math.Pow(0.9938, age) * s
			ok = ok || math.Abs(w-r.Value) < 1e-9*w
		}
		if !ok || !r.Computable {
			t.Errorf("eGFR risk %v, want CKD-EPI 2021 of one of %v", r.Value, cr)
		}
	}
	// BMI category (WHO) from the latest BMI
	if b := latestMeasures(rr.measures, "39156-5"); len(b) > 0 {
		r := risk["bmi-category"]
		if years(rr.birth, b[0].at) >= 20 {
			v := r.Value
			want := map[bool]string{true: "Underweight"}[v < 18.5]
			switch {
			case v >= 40:
				want = "Obese class III"
			case v >= 35:
				want = "Obese class II"
			case v >= 30:
				want = "Obese class I"
			case v >= 25:
				want = "Pre-obese"
			case v >= 18.5:
				want = "Normal range"
			}
			found := false
			for _, m := range b {
				found = found || m.v == v
			}
			if !found || r.Category != want {
				t.Errorf("BMI %v %s, want one of %v as %s", v, r.Category, b, want)
			}
		} else if r.Computable {
			t.Errorf("BMI category for a child: %+v", r)
		}
	}
	// BP category: mean of the readings on the two latest days with both
	days := map[string][2][]float64{}
	for _, m := range rr.measures {
		d := m.at.Format("2006-01-02")
		x := days[d]
		switch m.code {
		case "8480-6":
			x[0] = append(x[0], m.v)
		case "8462-4":
			x[1] = append(x[1], m.v)
		}
		days[d] = x
	}
	var keys []string
	for d, x := range days {
		if len(x[0]) > 0 && len(x[1]) > 0 {
			keys = append(keys, d)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	if r := risk["bp-category"]; len(keys) > 0 && years(rr.birth, fhirTime(keys[0])) >= 18 {
		var sys, dia []float64
		for _, d := range keys[:min(2, len(keys))] {
			sys, dia = append(sys, days[d][0]...), append(dia, days[d][1]...)
		}
		avg := func(v []float64) float64 {
			s := 0.0
			for _, x := range v {
				s += x
			}
			return s / float64(len(v))
		}
		s, d := avg(sys), avg(dia)
		want := "Normal"
		switch {
		case s >= 140 || d >= 90:
			want = "Stage 2 hypertension"
		case s >= 130 || d >= 80:
			want = "Stage 1 hypertension"
		case s >= 120:
			want = "Elevated"
		}
		if r.Category != want || math.Abs(r.Value-s) > 1e-9 {
			t.Errorf("BP %v %s, want %v %s", r.Value, r.Category, s, want)
		}
	}
	// CKD category from the latest eGFR (reported or computed)
	if r := risk["ckd-stage"]; r.Computable {
		var cands []float64
		var latest time.Time
		for _, m := range rr.measures {
			if slices.Contains([]string{"33914-3", "48642-3", "48643-1", "62238-1", "69405-9", "88293-6", "88294-4", "98979-8"}, m.code) && !m.at.Before(latest) {
				if m.at.After(latest) {
					cands = nil
				}
				latest = m.at
				cands = append(cands, m.v)
			}
		}
		for day, v := range ex.derived {
			if at := fhirTime(day); at.After(latest) {
				latest, cands = at, []float64{v}
			}
		}
		ok := false
		for _, v := range cands {
			g := "G5"
			switch {
			case v >= 90:
				g = "G1"
			case v >= 60:
				g = "G2"
			case v >= 45:
				g = "G3a"
			case v >= 30:
				g = "G3b"
			case v >= 15:
				g = "G4"
			}
			ok = ok || strings.HasPrefix(r.Category, g+" ") || r.Category == g
		}
		if !ok {
			t.Errorf("CKD category %s, want the G category of one of %v", r.Category, cands)
		}
	}
	// pooled cohort equations: the inputs read here, the equation checked
	// against the guideline's worked examples (TestPooledCohortExamples)
	if r := risk["ascvd-pce"]; r.Computable {
		sn, icd := set("ascvd")
		if inSet(rr.everConds, sn, icd) != nil {
			t.Errorf("ASCVD risk computed with established ASCVD")
		}
		age := years(rr.birth, rr.asOf)
		tc, hdl, sbp := latestMeasures(rr.measures, "2093-3"), latestMeasures(rr.measures, "2085-9"), latestMeasures(rr.measures, "8480-6")
		dsn, dicd := set("diabetes")
		treated := false
		var meds tCare
		readTable(t, "care.json", &meds)
		for _, ms := range meds.MedicationSets {
			if ms.ID != "antihypertensive" {
				continue
			}
			for _, m := range rr.activeMeds {
				for _, in := range ms.Ingredients {
					treated = treated || wordIn(m, in)
				}
			}
		}
		want := 100 * referral.PooledCohortRisk(rr.sex, "", age, tc[0].v, hdl[0].v, sbp[0].v, treated, rr.smoking == "current", inSet(rr.conditions, dsn, dicd) != nil)
		if math.Abs(want-r.Value) > 1e-9 {
			t.Errorf("ASCVD risk %v, want %v", r.Value, want)
		}
	}
	// CHA2DS2-VASc in atrial fibrillation
	asn, aicd := set("atrial-fibrillation")
	r := risk["cha2ds2-vasc"]
	if inSet(rr.conditions, asn, aicd) == nil {
		if r.Computable {
			t.Errorf("CHA2DS2-VASc without AF")
		}
		return
	}
	score := 0
	for _, c := range []struct {
		id string
		n  int
	}{{"heart-failure", 1}, {"hypertension", 1}, {"diabetes", 1}, {"stroke-tia", 2}, {"vascular-disease", 1}} {
		sn, icd := set(c.id)
		if inSet(rr.everConds, sn, icd) != nil {
			score += c.n
		}
	}
	age := years(rr.birth, rr.asOf)
	if age >= 75 {
		score += 2
	} else if age >= 65 {
		score++
	}
	if rr.sex == "female" {
		score++
	}
	if !r.Computable || int(r.Value) != score {
		t.Errorf("CHA2DS2-VASc %v, want %d", r.Value, score)
	}
}

func checkCare(t *testing.T, cs referral.CaseSummary, rec record, care tCare, now time.Time) {
	t.Helper()
	rr := indexRaw(rec, expectation{}, now)
	lastDone := map[string]time.Time{}
	for _, m := range rec.raw {
		typ := m["resourceType"]
		if m["status"] == "entered-in-error" || m["status"] == "cancelled" || m["status"] == "not-done" {
			continue
		}
		var ccs []any
		switch typ {
		case "Observation", "DiagnosticReport", "Procedure":
			ccs = append(ccs, m["code"])
			for _, c := range asList(m["component"]) {
				ccs = append(ccs, c.(map[string]any)["code"])
			}
		case "ImagingStudy":
			ccs = asList(m["procedureCode"])
		case "DocumentReference":
			ccs = []any{m["type"]}
		default:
			continue
		}
		at := time.Time{}
		for _, k := range []string{"effectiveDateTime", "performedDateTime", "started", "date", "issued"} {
			if s, ok := m[k].(string); ok && at.IsZero() {
				at = fhirTime(s)
			}
		}
		for _, k := range []string{"effectivePeriod", "performedPeriod"} {
			if p, ok := m[k].(map[string]any); ok && at.IsZero() {
				at = fhirTime(fmt.Sprint(p["start"]))
			}
		}
		for _, ts := range care.TestSets {
			match := false
			for i, cc := range ccs {
				ccm, _ := cc.(map[string]any)
				for _, c := range asList(ccm["coding"]) {
					cm := c.(map[string]any)
					for _, want := range ts.Codes {
						match = match || cm["system"] == want.System && cm["code"] == want.Code
					}
					if i == 0 || typ == "ImagingStudy" {
						for _, k := range ts.Keywords {
							match = match || wordIn(fmt.Sprint(cm["display"]), k)
						}
					}
				}
				if i == 0 || typ == "ImagingStudy" {
					for _, k := range ts.Keywords {
						match = match || wordIn(fmt.Sprint(ccm["text"]), k)
					}
				}
			}
			if match && (lastDone[ts.ID].IsZero() || at.After(lastDone[ts.ID])) {
				lastDone[ts.ID] = at
			}
		}
	}
	type res struct {
		met  bool
		last string
	}
	want := map[string]res{}
	for _, r := range care.Rules {
		triggered := false
		if r.When.Condition != "" {
			for _, c := range care.ConditionSets {
				if c.ID == r.When.Condition {
					triggered = inSet(rr.conditions, c.SNOMED, c.ICD10) != nil
				}
			}
		} else {
			for _, ms := range care.MedicationSets {
				if ms.ID != r.When.Medication {
					continue
				}
				for _, m := range rr.activeMeds {
					for _, in := range ms.Ingredients {
						triggered = triggered || wordIn(m, in)
					}
				}
			}
		}
		if !triggered {
			continue
		}
		last, done := lastDone[r.Test]
		met := done && (r.WithinMonths == 0 || !last.AddDate(0, r.WithinMonths, 0).Before(rr.asOf))
		want[r.ID] = res{met: met, last: last.Format("2006-01-02")}
	}
	got := map[string]res{}
	for _, c := range cs.Care {
		if c.Kind != referral.CareTest {
			continue
		}
		got[c.RuleID] = res{met: c.Met, last: c.LastDone.Format("2006-01-02")}
		if c.Citation.Source == nil || c.Citation.Where == "" {
			t.Errorf("care check %s without citation", c.RuleID)
		}
		if !c.Met && c.Trigger == "" {
			t.Errorf("care gap %s without its trigger", c.RuleID)
		}
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("care rule %s: got %+v, want %+v", id, got[id], w)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("care rule %s applied but its trigger is not in the record", id)
		}
	}
}

// TestPooledCohortExamples: the equations reproduce the worked examples
// of the 2013 ACC/AHA risk assessment guideline (age 55, total
// cholesterol 213 mg/dL, HDL 50 mg/dL, untreated systolic 120 mmHg,
// non-smoker, no diabetes) within 0.1 percentage point: the published
// coefficients are rounded to three decimals (the white-men example
// computes to 5.38% against the 5.3% printed).
func TestPooledCohortExamples(t *testing.T) {
	for _, c := range []struct {
		sex, race string
		want      float64
	}{{"female", "white", 2.1}, {"female", "black", 3.0}, {"male", "white", 5.3}, {"male", "black", 6.1}} {
		got := 100 * referral.PooledCohortRisk(c.sex, c.race, 55, 213, 50, 120, false, false, false)
		if math.Abs(got-c.want) >= 0.1 {
			t.Errorf("%s %s: %.2f%%, want %.1f%%", c.race, c.sex, got, c.want)
		}
	}
}
