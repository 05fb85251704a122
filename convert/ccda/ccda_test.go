package ccda

import (
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// The walk below counts entries with encoding/xml structs, independently of
// the converter's tree, so that a statement the converter skips shows up.
type xSection struct {
	Templates []struct {
		Root string `xml:"root,attr"`
	} `xml:"templateId"`
	Code struct {
		Code string `xml:"code,attr"`
	} `xml:"code"`
	Entries    []xEntry `xml:"entry"`
	Components []struct {
		Section *xSection `xml:"section"`
	} `xml:"component"`
}

type xEntry struct {
	Act *struct {
		Rels []struct {
			Obs *struct{} `xml:"observation"`
		} `xml:"entryRelationship"`
	} `xml:"act"`
	Observation *struct{} `xml:"observation"`
	SubstAdmin  *struct{} `xml:"substanceAdministration"`
	Procedure   *struct{} `xml:"procedure"`
	Encounter   *struct{} `xml:"encounter"`
	Organizer   *struct {
		Components []struct {
			Obs *struct{} `xml:"observation"`
		} `xml:"component"`
	} `xml:"organizer"`
}

type xDoc struct {
	Components []struct {
		Section *xSection `xml:"section"`
	} `xml:"component>structuredBody>component"`
}

// Section templateId roots (without their ".1" entries-required twin) and
// LOINC codes, from C-CDA R2.1.
var testKinds = map[string][2]string{
	"2.16.840.1.113883.10.20.22.2.22": {"Encounter", "46240-8"},
	"2.16.840.1.113883.10.20.22.2.5":  {"Condition", "11450-4"},
	"2.16.840.1.113883.10.20.22.2.1":  {"MedicationStatement", "10160-0"},
	"2.16.840.1.113883.10.20.22.2.6":  {"AllergyIntolerance", "48765-2"},
	"2.16.840.1.113883.10.20.22.2.3":  {"laboratory", "30954-2"},
	"2.16.840.1.113883.10.20.22.2.4":  {"vital-signs", "8716-3"},
	"2.16.840.1.113883.10.20.22.2.7":  {"Procedure", "47519-4"},
	"2.16.840.1.113883.10.20.22.2.2":  {"Immunization", "11369-6"},
	"2.16.840.1.113883.10.20.22.2.17": {"social-history", "29762-2"},
}

func kindOf(s *xSection) string {
	for _, t := range s.Templates {
		if k, ok := testKinds[t.Root]; ok {
			return k[0]
		}
		if k, ok := testKinds[strings.TrimSuffix(t.Root, ".1")]; ok {
			return k[0]
		}
	}
	for _, k := range testKinds {
		if k[1] == s.Code.Code {
			return k[0]
		}
	}
	return ""
}

// expected counts resources per kind ("Condition", …, and Observation
// categories, plus "DiagnosticReport").
func expected(t *testing.T, data []byte) map[string]int {
	var d xDoc
	if err := xml.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	var walk func(s *xSection)
	walk = func(s *xSection) {
		if s == nil {
			return
		}
		kind := kindOf(s)
		for _, e := range s.Entries {
			switch kind {
			case "Condition", "AllergyIntolerance":
				if e.Observation != nil {
					want[kind]++
				}
				if e.Act != nil {
					for _, r := range e.Act.Rels {
						if r.Obs != nil {
							want[kind]++
						}
					}
				}
			case "MedicationStatement", "Immunization":
				if e.SubstAdmin != nil {
					want[kind]++
				}
			case "Procedure":
				if e.Procedure != nil || e.Observation != nil || e.Act != nil {
					want[kind]++
				}
			case "Encounter":
				if e.Encounter != nil {
					want[kind]++
				}
			case "laboratory", "vital-signs", "social-history":
				if e.Observation != nil {
					want[kind]++
				}
				if e.Organizer != nil {
					if kind == "laboratory" {
						want["DiagnosticReport"]++
					}
					for _, c := range e.Organizer.Components {
						if c.Obs != nil {
							want[kind]++
						}
					}
				}
			}
		}
		for _, c := range s.Components {
			walk(c.Section)
		}
	}
	for _, c := range d.Components {
		walk(c.Section)
	}
	return want
}

func got(rs []*fhir.Resource) map[string]int {
	n := map[string]int{}
	for _, r := range rs {
		switch r.Type {
		case "Observation":
			cat := r.Root().Get("category").Items[0].Get("coding").Items[0].Get("code").Str
			n[cat]++
		default:
			n[r.Type]++
		}
	}
	return n
}

func TestSamples(t *testing.T) {
	dir := sharedtest.Path(t, "ccda")
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	if len(files) == 0 {
		t.Skip("no C-CDA samples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Convert(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Resources {
				for _, is := range validate.Validate(r) {
					if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
						t.Errorf("%s: %s %v %s", r.Type, is.Details.Text, is.Expression, is.Diagnostics)
					}
				}
			}
			bundle, err := res.Bundle()
			if err != nil {
				t.Fatal(err)
			}
			b, err := fhir.Parse(bundle)
			if err != nil {
				t.Fatal(err)
			}
			if issues := validate.Validate(b); validate.HasErrors(issues) {
				t.Errorf("bundle: %v", issues[0])
			}
			// at least one resource per entry of the core sections (other
			// sections add Conditions, Procedures, Encounters…; every entry
			// is checked one by one in TestEveryEntryAccounted)
			want, have := expected(t, data), got(res.Resources)
			for k, n := range want {
				if have[k] < n {
					t.Errorf("%s: %d resources, %d entries in the XML", k, have[k], n)
				}
			}
			// Header, original and provenance are always there.
			for _, typ := range []string{"Patient", "Binary", "DocumentReference", "Provenance"} {
				if have[typ] != 1 {
					t.Errorf("%d %s, want 1", have[typ], typ)
				}
			}
			prov := res.Resources[len(res.Resources)-1]
			if prov.Type != "Provenance" {
				t.Fatalf("last resource is %s", prov.Type)
			}
			if n := len(prov.Root().Get("target").Items); n != len(res.Resources)-3 {
				t.Errorf("Provenance has %d targets, want %d (all but Binary, DocumentReference, Provenance)", n, len(res.Resources)-3)
			}
			if what := prov.Root().Get("entity").Items[0].Get("what").Get("reference").Str; what != "DocumentReference/"+res.DocumentReferenceID {
				t.Errorf("Provenance entity %q", what)
			}
		})
	}
}

func find(rs []*fhir.Resource, typ, substr string) *fhir.Resource {
	for _, r := range rs {
		if r.Type == typ && strings.Contains(string(r.Raw), substr) {
			return r
		}
	}
	return nil
}

func TestSpotChecksCCD1(t *testing.T) {
	data, err := os.ReadFile(sharedtest.Path(t, "ccda", "hl7-ccda-examples_CCD-1.xml"))
	if err != nil {
		t.Skip(err)
	}
	res, err := Convert(data, Options{Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	pat := res.Resources[0].Root()
	if pat.Get("birthDate").Str != "1975-05-01" || pat.Get("gender").Str != "female" {
		t.Errorf("patient: %s", res.Resources[0].Raw)
	}
	doc := find(res.Resources, "DocumentReference", "")
	att := doc.Root().Get("content").Items[0].Get("attachment")
	if got := att.Get("creation").Str; got != "2013-08-15T10:30:00-08:00" {
		t.Errorf("creation %q (TS with minutes and zone)", got)
	}
	if att.Get("contentType").Str != ContentType || doc.Root().Get("content").Items[0].Get("format").Get("code").Str != FormatCode {
		t.Errorf("attachment: %s", doc.Raw)
	}
	if imm := find(res.Resources, "Immunization", `"system":"http://hl7.org/fhir/sid/cvx","code":"88"`); imm == nil {
		t.Error("no influenza Immunization coded in CVX")
	}
	h := find(res.Resources, "Observation", `"code":"8302-2"`)
	if h == nil {
		t.Fatal("no body height")
	}
	q := h.Root().Get("valueQuantity")
	if string(q.Get("value").Raw) != "177" || q.Get("code").Str != "cm" || q.Get("system").Str != "http://unitsofmeasure.org" {
		t.Errorf("height: %s", h.Raw)
	}
	if eff := h.Root().Get("effectiveDateTime").Str; len(eff) != 10 {
		t.Errorf("height date %q keeps day precision", eff)
	}
}

func TestDateTime(t *testing.T) {
	for _, tc := range []struct {
		in, want     string
		exact, valid bool
	}{
		{"2012", "2012", true, true},
		{"201203", "2012-03", true, true},
		{"20120314", "2012-03-14", true, true},
		{"201203141259-0215", "2012-03-14T12:59:00-02:15", true, true},
		{"20120314125930.25+0530", "2012-03-14T12:59:30.25+05:30", true, true},
		{"20120912000000-0000", "2012-09-12T00:00:00Z", true, true},
		{"2012031412", "2012-03-14", false, true},
		{"20121314", "", false, false},
		{"2012-03-14", "", false, false},
		{"201203141259+02", "", false, false},
		{"", "", false, false},
		{"20120314256000+0000", "", false, false},
	} {
		got, exact, ok := DateTime(tc.in)
		if got != tc.want || exact != tc.exact || ok != tc.valid {
			t.Errorf("DateTime(%q) = %q %v %v, want %q %v %v", tc.in, got, exact, ok, tc.want, tc.exact, tc.valid)
		}
	}
}

func TestSystemURI(t *testing.T) {
	for in, want := range map[string]string{
		"2.16.840.1.113883.6.96":   "http://snomed.info/sct",
		"2.16.840.1.113883.6.1":    "http://loinc.org",
		"2.16.840.1.113883.6.88":   "http://www.nlm.nih.gov/research/umls/rxnorm",
		"2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
		"2.16.840.1.113883.6.90":   "http://hl7.org/fhir/sid/icd-10-cm",
		"2.16.840.1.113883.6.69":   "http://hl7.org/fhir/sid/ndc",
		"1.2.3.4":                  "urn:oid:1.2.3.4",
		"not an oid":               "",
		"01.2":                     "",
	} {
		if got := SystemURI(in); got != want {
			t.Errorf("SystemURI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostileInput(t *testing.T) {
	deep := strings.Repeat("<a>", 300) + strings.Repeat("</a>", 300)
	for name, in := range map[string]string{
		"empty":      "",
		"not xml":    "MSH|^~\\&|",
		"wrong root": `<Bundle xmlns="http://hl7.org/fhir"/>`,
		"truncated":  `<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget>`,
		"deep":       `<ClinicalDocument>` + deep + `</ClinicalDocument>`,
	} {
		if _, err := Convert([]byte(in), Options{}); !errors.Is(err, ErrNotCDA) {
			t.Errorf("%s: %v, want ErrNotCDA", name, err)
		}
	}
	// A header-only document still converts, keeps the original and says why.
	res, err := Convert([]byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Issues) < 2 || find(res.Resources, "Binary", "") == nil {
		t.Errorf("issues %v", res.Issues)
	}
	for _, r := range res.Resources {
		if validate.HasErrors(validate.Validate(r)) {
			t.Errorf("%s does not validate: %s", r.Type, r.Raw)
		}
	}
}

func TestDeterministicIDs(t *testing.T) {
	data := []byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patientRole><id root="1.2.3" extension="9"/></patientRole></recordTarget></ClinicalDocument>`)
	a, _ := Convert(data, Options{})
	b, _ := Convert(data, Options{})
	if a.PatientID != b.PatientID || a.PatientID == "" {
		t.Errorf("ids %q %q", a.PatientID, b.PatientID)
	}
}

func BenchmarkConvert(b *testing.B) {
	dir := sharedtest.Path(b, "ccda")
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	var docs [][]byte
	var size int64
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, d)
		size += int64(len(d))
	}
	if len(docs) == 0 {
		b.Skip("no samples")
	}
	b.SetBytes(size / int64(len(docs)))
	i := 0
	for b.Loop() {
		if _, err := Convert(docs[i%len(docs)], Options{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}
