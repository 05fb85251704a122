package knowledge_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// TestBuiltinCitations: the shipped tables load, and every limit, rule,
// review and molar mass carries a citation to a source with a full
// reference and a link.
func TestBuiltinCitations(t *testing.T) {
	b := knowledge.Builtin()
	if len(b.Analytes) < 40 || len(b.Rules) < 15 || len(b.Sources) < 20 {
		t.Fatalf("tables look truncated: %d analytes, %d rules, %d sources", len(b.Analytes), len(b.Rules), len(b.Sources))
	}
	check := func(what string, c knowledge.Citation) {
		if c.Source == nil || c.Source.Citation == "" || !strings.HasPrefix(c.Source.URL, "https://") || c.Where == "" {
			t.Errorf("%s has no complete citation: %+v", what, c)
		}
	}
	for _, a := range b.Analytes {
		for i, l := range a.Limits {
			check(a.ID+" limit "+string(rune('0'+i)), l.Cite())
		}
		if a.MolarMass > 0 {
			check(a.ID+" molar mass", a.MolarMassCite())
		}
	}
	for _, r := range b.Rules {
		check("rule "+r.ID, r.Cite())
	}
	for _, r := range b.Reviews {
		check("review "+r.ID, r.Cite())
	}
	// the codes Synthea, C-CDA and HL7 v2 samples carry are covered
	for _, c := range []string{"2339-0", "6299-2", "38483-4", "49765-1", "2947-0", "6298-4", "2069-3", "20565-8", "2093-3", "2571-8",
		"18262-6", "2085-9", "4548-4", "6690-2", "789-8", "718-7", "787-2", "785-6", "786-4", "777-3", "4544-3", "33914-3", "14959-1",
		"2885-2", "1751-7", "1975-2", "6768-6", "1742-6", "8480-6", "8462-4", "8867-4", "9279-1", "2710-2", "8310-5", "8331-1", "39156-5",
		"33762-6", "10230-1", "26464-8", "26515-7", "20570-8", "3094-0", "2028-9", "3016-3"} {
		if b.AnalyteFor(c) == nil {
			t.Errorf("LOINC %s has no reference entry", c)
		}
	}
}

// TestLoadRefusesUncited: a table whose entry lacks a citation, cites an
// unknown source or states an unreadable unit does not load.
func TestLoadRefusesUncited(t *testing.T) {
	src := `[{"id":"s","short":"S","citation":"Full reference.","url":"https://example.org/s"}]`
	care := `{"conditionSets":[],"medicationSets":[],"testSets":[],"rules":[],"reviews":[]}`
	good := `{"analytes":[{"id":"k","name":"K","loinc":["1-1"],"unit":"mmol/L","limits":[{"low":1,"high":2,"source":"s","where":"table 1"}]}]}`
	load := func(ranges, care string) error {
		_, err := knowledge.Load(fstest.MapFS{
			"d/sources.json": {Data: []byte(src)}, "d/ranges.json": {Data: []byte(ranges)}, "d/care.json": {Data: []byte(care)},
		}, "d")
		return err
	}
	if err := load(good, care); err != nil {
		t.Fatalf("a good table is refused: %v", err)
	}
	for name, ranges := range map[string]string{
		"no source":      strings.Replace(good, `"source":"s",`, ``, 1),
		"unknown source": strings.Replace(good, `"source":"s"`, `"source":"x"`, 1),
		"no where":       strings.Replace(good, `"where":"table 1"`, `"where":""`, 1),
		"bad unit":       strings.Replace(good, `"mmol/L"`, `"furlongs"`, 1),
		"two bounds":     strings.Replace(good, `"low":1,`, `"low":1,"above":3,`, 1),
		"unknown key":    strings.Replace(good, `"low":1,`, `"lo":1,`, 1),
	} {
		if err := load(ranges, care); !errors.Is(err, knowledge.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	rule := `{"conditionSets":[{"id":"c","name":"C","snomed":["1"]}],"medicationSets":[],"testSets":[{"id":"t","name":"T","keywords":["t"]}],"rules":[{"id":"r","when":{"condition":"c"},"test":"t","text":"x","source":"s","where":"w"}],"reviews":[]}`
	if err := load(good, rule); err != nil {
		t.Fatalf("a good rule is refused: %v", err)
	}
	for name, c := range map[string]string{
		"rule without source": strings.Replace(rule, `"source":"s",`, ``, 1),
		"rule without where":  strings.Replace(rule, `"where":"w"`, `"where":" "`, 1),
		"unknown test":        strings.Replace(rule, `"test":"t"`, `"test":"u"`, 1),
	} {
		if err := load(good, c); !errors.Is(err, knowledge.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestConvert(t *testing.T) {
	b := knowledge.Builtin()
	for _, c := range []struct {
		analyte    string
		v          float64
		from, to   string
		want       float64
		convertErr bool
	}{
		{"creatinine", 1, "mg/dL", "umol/L", 88.40, false},
		{"urea", 20, "mg/dL", "mmol/L", 7.139, false},
		{"glucose", 90, "mg/dL", "mmol/L", 4.996, false},
		{"cholesterol", 200, "mg/dL", "mmol/L", 5.173, false},
		{"sodium", 140, "meq/L", "mmol/L", 140, false},
		{"sodium", 140, "mEq/L", "mmol/L", 140, false},
		{"wbc", 7.2, "10*3/uL", "10*9/L", 7.2, false},
		{"wbc", 4300, "{cells}/uL", "10*9/L", 4.3, false},
		{"wbc", 7.2, "K/uL", "10*9/L", 7.2, false},
		{"rbc", 4.8, "10*6/uL", "10*12/L", 4.8, false},
		{"hemoglobin", 13.5, "g/dL", "g/L", 135, false},
		{"hemoglobin", 13.5, "g/dl", "g/L", 135, false},
		{"hematocrit", 42, "%", "L/L", 0.42, false},
		{"egfr", 61, "mL/min", "mL/min/{1.73_m2}", 61, false},
		{"temperature", 98.6, "[degF]", "Cel", 37, false},
		{"mcv", 90, "um3", "fL", 90, false},
		{"bmi", 30, "kg/m²", "kg/m2", 30, false},
		{"uacr", 3, "mg/mmol", "mg/g", 0, true},
		{"calcium", 9.5, "mg/dL", "mmol/L", 2.370, false},
		{"potassium", 4, "mg/dL", "mmol/L", 0, true}, // no molar mass: refused, not guessed
		{"hba1c", 6.5, "%", "mmol/mol", 0, true},
	} {
		got, err := b.Analyte(c.analyte).ConvertTo(c.v, c.from, c.to)
		if (err != nil) != c.convertErr {
			t.Errorf("%s %v %s → %s: err %v", c.analyte, c.v, c.from, c.to, err)
			continue
		}
		if err == nil && math.Abs(got-c.want) > 0.001*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%s %v %s → %s = %v, want %v", c.analyte, c.v, c.from, c.to, got, c.want)
		}
	}
	if _, err := knowledge.Convert(1, "[lb_av]", "kg", 0); err != nil {
		t.Error(err)
	}
	if v, _ := knowledge.Convert(70, "[in_i]", "cm", 0); math.Abs(v-177.8) > 0.01 {
		t.Errorf("70 in = %v cm", v)
	}
	if v, _ := knowledge.Convert(150, "lbs", "kg", 0); math.Abs(v-68.04) > 0.01 {
		t.Errorf("150 lbs = %v kg", v)
	}
}

// TestJudge: hand-checked values against the cited limits.
func TestJudge(t *testing.T) {
	b := knowledge.Builtin()
	man := knowledge.Subject{Sex: "male", Age: 60}
	woman := knowledge.Subject{Sex: "female", Age: 60}
	child := knowledge.Subject{Sex: "male", Age: 8}
	for _, c := range []struct {
		loinc  string
		v      float64
		unit   string
		s      knowledge.Subject
		code   string // "" in range
		judged bool
	}{
		{"6298-4", 4.2, "mmol/L", man, "", true},
		{"6298-4", 5.4, "mmol/L", man, "H", true},
		{"6298-4", 5.3, "mmol/L", man, "", true},
		{"6298-4", 6.5, "mmol/L", man, "HH", true},
		{"6298-4", 2.5, "mmol/L", man, "LL", true},
		{"6298-4", 3.4, "mEq/L", man, "L", true},
		{"2947-0", 120, "mmol/L", man, "LL", true},
		{"38483-4", 1.3, "mg/dL", man, "", true},
		{"38483-4", 1.3, "mg/dL", woman, "H", true},
		{"38483-4", 4.1, "mg/dL", man, "HH", true},
		{"38483-4", 115, "umol/L", man, "", true},
		{"4548-4", 5.6, "%", man, "", true},
		{"4548-4", 5.7, "%", man, "H", true},
		{"33914-3", 59.9, "mL/min/{1.73_m2}", man, "L", true},
		{"33914-3", 14, "mL/min/{1.73_m2}", man, "LL", true},
		{"8480-6", 129, "mm[Hg]", man, "", true},
		{"8480-6", 130, "mm[Hg]", man, "H", true},
		{"8480-6", 181, "mm[Hg]", man, "HH", true},
		{"8480-6", 181, "mm[Hg]", child, "", false},
		{"39156-5", 24.9, "kg/m2", woman, "", true},
		{"39156-5", 31, "kg/m2", woman, "H", true},
		{"718-7", 12.5, "g/dL", man, "L", true},
		{"718-7", 12.5, "g/dL", woman, "", true},
		{"718-7", 12.5, "g/dL", knowledge.Subject{Age: 40}, "", true}, // sex unknown: only the critical limits apply
		{"718-7", 6.0, "g/dL", knowledge.Subject{Age: 40}, "LL", true},
		{"14959-1", 30, "mg/g", man, "H", true},
		{"14959-1", 29.9, "mg/g", man, "", true},
		{"2339-0", 110, "mg/dL", man, "", true},
		{"2339-0", 50, "mg/dL", man, "LL", true},
		{"8331-1", 38.1, "Cel", man, "H", true},
		{"8867-4", 75, "/min", man, "", true},
		{"8867-4", 75, "furlongs", man, "", false},
	} {
		a := b.AnalyteFor(c.loinc)
		m, judged := a.Judge(c.v, c.unit, c.s)
		got := ""
		if m != nil {
			got = m.Code
			if m.Limit.Cite().Source == nil {
				t.Errorf("%s: match without citation", c.loinc)
			}
		}
		if got != c.code || judged != c.judged {
			t.Errorf("%s %v %s %+v: got %q judged=%v, want %q judged=%v", c.loinc, c.v, c.unit, c.s, got, judged, c.code, c.judged)
		}
	}
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{178.08705005887956: "178", 4.273: "4.27", 0.45412: "0.454", 1234.6: "1235", 6.0: "6", 0.0659: "0.066", 1.31e-14: "0", 30.26: "30.3", -2.5: "-2.5"} {
		if got := knowledge.FormatNumber(v); got != want {
			t.Errorf("FormatNumber(%v) = %q, want %q", v, got, want)
		}
	}
	for u, want := range map[string]string{"mm[Hg]": "mmHg", "10*9/L": "×10⁹/L", "10*3/uL": "×10³/µL", "umol/L": "µmol/L", "{score}": "", "mL/min/{1.73_m2}": "mL/min/1.73 m²", "kg/m2": "kg/m²", "Cel": "°C"} {
		if got := knowledge.DisplayUnit(u); got != want {
			t.Errorf("DisplayUnit(%q) = %q, want %q", u, got, want)
		}
	}
}
