package search

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

func tokensOf(ix *Index, param string) []string {
	var out []string
	for _, v := range ix.Tokens {
		if v.Param == param && v.Group == 0 && v.Code != "" {
			out = append(out, v.System+"|"+v.Code)
		}
	}
	sort.Strings(out)
	return out
}

func refsOf(ix *Index, param string) []string {
	var out []string
	for _, v := range ix.Refs {
		if v.Param == param && v.Group == 0 {
			out = append(out, v.TargetType+"/"+v.TargetID)
		}
	}
	sort.Strings(out)
	return out
}

func stringsOf(ix *Index, param string) []string {
	var out []string
	for _, v := range ix.Strings {
		if v.Param == param && v.Group == 0 {
			out = append(out, v.Norm)
		}
	}
	sort.Strings(out)
	return out
}

func datesOf(ix *Index, param string) []DateValue {
	var out []DateValue
	for _, v := range ix.Dates {
		if v.Param == param && v.Group == 0 {
			out = append(out, v)
		}
	}
	return out
}

func TestExtractExamples(t *testing.T) {
	r := testRegistry(t)
	day := func(s string) (time.Time, time.Time) {
		lo, _ := time.Parse("2006-01-02", s)
		return lo, lo.Add(24*time.Hour - 1)
	}

	pat, err := r.Extract(exampleResource(t, "Patient/Patient-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("Patient.given", stringsOf(pat, "given"), []string{"james", "jim", "peter"})
	check("Patient.family", stringsOf(pat, "family"), []string{"chalmers", "windsor"})
	check("Patient.name", stringsOf(pat, "name"), []string{"chalmers", "james", "jim", "peter", "windsor"})
	check("Patient.address-city", stringsOf(pat, "address-city"), []string{"pleasantville"})
	check("Patient.gender", tokensOf(pat, "gender"), []string{"|male"})
	check("Patient.active", tokensOf(pat, "active"), []string{"|true"})
	check("Patient.deceased", tokensOf(pat, "deceased"), []string{"|false"})
	check("Patient.phone", tokensOf(pat, "phone"), []string{"phone|(03) 3410 5613", "phone|(03) 5555 6473", "phone|(03) 5555 8834"})
	check("Patient.email", tokensOf(pat, "email"), nil)
	check("Patient.identifier", tokensOf(pat, "identifier"), []string{"urn:oid:1.2.36.146.595.217.0.1|12345"})
	check("Patient.organization", refsOf(pat, "organization"), []string{"Organization/1"})
	check("Patient._id", tokensOf(pat, "_id"), []string{"|example"})
	check("Patient.Patients", pat.Patients, []string{"example"})
	for _, v := range pat.Tokens {
		if v.Param == "identifier" && (v.TypeSystem != "http://terminology.hl7.org/CodeSystem/v2-0203" || v.TypeCode != "MR") {
			t.Errorf("identifier type = %q|%q", v.TypeSystem, v.TypeCode)
		}
	}
	if ds := datesOf(pat, "birthdate"); len(ds) != 1 {
		t.Errorf("birthdate = %v", ds)
	} else if lo, hi := day("1974-12-25"); !ds[0].Lo.Equal(lo) || !ds[0].Hi.Equal(hi) {
		t.Errorf("birthdate = %v..%v", ds[0].Lo, ds[0].Hi)
	}

	obs, err := r.Extract(exampleResource(t, "Observation/Observation-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	check("Observation.code", tokensOf(obs, "code"), []string{
		"http://acme.org/devices/clinical-codes|body-weight", "http://loinc.org|29463-7", "http://loinc.org|3141-9", "http://snomed.info/sct|27113001"})
	check("Observation.patient", refsOf(obs, "patient"), []string{"Patient/example"})
	check("Observation.subject", refsOf(obs, "subject"), []string{"Patient/example"})
	check("Observation.Patients", obs.Patients, []string{"example"})
	var q []QuantityValue
	for _, v := range obs.Quantities {
		if v.Param == "value-quantity" {
			q = append(q, v)
		}
	}
	if len(q) != 1 || q[0].Value != "185" || q[0].Code != "[lb_av]" || q[0].System != "http://unitsofmeasure.org" || q[0].Unit != "lbs" || q[0].Lo != 184.5 || q[0].Hi != 185.5 {
		t.Errorf("value-quantity = %+v", q)
	}
	groups := map[int][]string{}
	for _, v := range obs.Tokens {
		if v.Param == "code-value-quantity" {
			groups[v.Group] = append(groups[v.Group], fmt.Sprint(v.Component, v.Code))
		}
	}
	for _, v := range obs.Quantities {
		if v.Param == "code-value-quantity" {
			groups[v.Group] = append(groups[v.Group], fmt.Sprint(v.Component, v.Value))
		}
	}
	if len(groups) != 1 {
		t.Errorf("code-value-quantity groups = %v", groups)
	}
	for g, vs := range groups {
		if g == 0 || len(vs) != 5 || !slices.Contains(vs, "1185") {
			t.Errorf("code-value-quantity group %d = %v", g, vs)
		}
	}
	for _, v := range obs.Tokens {
		if v.Param == "code-value-concept" || v.Param == "code-value-string" {
			t.Errorf("composite without a value indexed: %+v", v)
		}
	}

	bp, err := r.Extract(exampleResource(t, "Observation/Observation-blood-pressure.json"))
	if err != nil {
		t.Fatal(err)
	}
	comp := map[int]bool{}
	for _, v := range bp.Quantities {
		if v.Param == "component-code-value-quantity" {
			comp[v.Group] = true
		}
	}
	if len(comp) != 2 {
		t.Errorf("component-code-value-quantity: %d groups, want 2", len(comp))
	}
	check("bp.component-code", tokensOf(bp, "component-code"), []string{
		"http://acme.org/devices/clinical-codes|bp-s", "http://loinc.org|8462-4", "http://loinc.org|8480-6", "http://snomed.info/sct|271649006"})
	check("bp.based-on", nil, nil)
	var ident []string
	for _, v := range bp.Refs {
		if v.Param == "based-on" {
			ident = append(ident, v.IdentifierSystem+"|"+v.IdentifierValue)
		}
	}
	check("bp.based-on identifier", ident, []string{"https://acme.org/identifiers|1234"})
	check("bp._profile", func() (out []string) {
		for _, v := range bp.URIs {
			out = append(out, v.Param+"="+v.Value)
		}
		return
	}(), []string{"_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns"})
}

// extractDoc parses a resource and extracts its search values.
func extractDoc(t testing.TB, r *Registry, doc string) *Index {
	t.Helper()
	res, err := fhir.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := r.Extract(res)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestExtractInline(t *testing.T) {
	r := testRegistry(t)
	extract := func(doc string) *Index { t.Helper(); return extractDoc(t, r, doc) }
	enc := extract(`{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},
		"subject":{"reference":"https://fhirgate.example.org/fhir/Patient/p1"},
		"participant":[{"individual":{"reference":"http://other.org/fhir/Practitioner/d1/_history/3"}}],
		"period":{"start":"2020-01-01T10:00:00+02:00"},
		"length":{"value":90,"unit":"min","system":"http://unitsofmeasure.org","code":"min"}}`)
	if got := refsOf(enc, "patient"); !slices.Equal(got, []string{"Patient/p1"}) {
		t.Errorf("patient = %v", got)
	}
	if !slices.Equal(enc.Patients, []string{"p1"}) {
		t.Errorf("Patients = %v", enc.Patients)
	}
	for _, v := range enc.Refs {
		if v.Param == "practitioner" && (v.URL != "http://other.org/fhir/Practitioner/d1" || v.TargetType != "Practitioner" || v.TargetID != "d1") {
			t.Errorf("practitioner = %+v", v)
		}
		if v.Param == "patient" && v.URL != "" {
			t.Errorf("a reference to the server's own base kept its URL: %+v", v)
		}
	}
	ds := datesOf(enc, "date")
	if len(ds) != 1 || !ds[0].Lo.Equal(time.Date(2020, 1, 1, 8, 0, 0, 0, time.UTC)) || !ds[0].Hi.Equal(MaxTime) {
		t.Errorf("open period = %+v", ds)
	}
	var length []string
	for _, v := range enc.Quantities {
		if v.Param == "length" {
			length = append(length, fmt.Sprintf("%s %s|%s [%g,%g]", v.Value, v.System, v.Code, v.Lo, v.Hi))
		}
	}
	if !slices.Equal(length, []string{"90 http://unitsofmeasure.org|min [89.5,90.5]"}) {
		t.Errorf("length = %v", length)
	}

	mr := extract(`{"resourceType":"MedicationRequest","id":"m","status":"active","intent":"order",
		"medicationReference":{"reference":"Medication/med1"},"subject":{"reference":"Patient/p2"},
		"dosageInstruction":[{"timing":{"event":["2021-03-04","2021-03-05T08:00:00Z"]}}],
		"dispenseRequest":{"quantity":{"value":30}}}`)
	if got := refsOf(mr, "medication"); !slices.Equal(got, []string{"Medication/med1"}) {
		t.Errorf("medication = %v", got)
	}
	if got := tokensOf(mr, "code"); len(got) != 0 {
		t.Errorf("code from a medicationReference = %v", got)
	}

	ra := extract(`{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/p"},
		"prediction":[{"probabilityDecimal":0.25},{"probabilityRange":{"low":{"value":1},"high":{"value":2.0}}}]}`)
	var probs []string
	for _, v := range ra.Numbers {
		if v.Param == "probability" {
			probs = append(probs, fmt.Sprintf("%s[%g,%g]", v.Value, v.Lo, v.Hi))
		}
	}
	if !slices.Equal(probs, []string{"0.25[0.245,0.255]", "[0.5,2.05]"}) {
		t.Errorf("probability = %v", probs)
	}

	money := extract(`{"resourceType":"ChargeItem","status":"billable","code":{"text":"x"},"subject":{"reference":"Patient/p"},
		"priceOverride":{"value":12.50,"currency":"EUR"}}`)
	var cost []QuantityValue
	for _, v := range money.Quantities {
		if v.Param == "price-override" {
			cost = append(cost, v)
		}
	}
	if len(cost) != 1 || cost[0].System != "urn:iso:std:iso:4217" || cost[0].Code != "EUR" || cost[0].Value != "12.50" {
		t.Errorf("price-override = %+v", cost)
	}

	vs := extract(`{"resourceType":"ValueSet","status":"active","url":"http://example.org/vs","version":"2",
		"compose":{"include":[{"system":"http://example.org/cs"}]},
		"useContext":[{"code":{"code":"age"},"valueRange":{"low":{"value":18,"unit":"a"},"high":{"value":65,"unit":"a"}}}]}`)
	var urls []string
	for _, v := range vs.URIs {
		urls = append(urls, v.Param+"="+v.Value)
	}
	slices.Sort(urls)
	if !slices.Equal(urls, []string{"reference=http://example.org/cs", "url=http://example.org/vs"}) {
		t.Errorf("uris = %v", urls)
	}
	var ranges []string
	for _, v := range vs.Quantities {
		if v.Param == "context-quantity" {
			ranges = append(ranges, fmt.Sprintf("%g..%g %s", v.Lo, v.Hi, v.Unit))
		}
	}
	if !slices.Equal(ranges, []string{"17.5..65.5 a"}) {
		t.Errorf("context-quantity = %v", ranges)
	}
	qr := extract(`{"resourceType":"QuestionnaireResponse","status":"completed","questionnaire":"http://example.org/Questionnaire/q1|2"}`)
	var refs []string
	for _, v := range qr.Refs {
		refs = append(refs, fmt.Sprintf("%s=%s|%s %s/%s", v.Param, v.URL, v.Version, v.TargetType, v.TargetID))
	}
	if !slices.Equal(refs, []string{"questionnaire=http://example.org/Questionnaire/q1|2 Questionnaire/q1"}) {
		t.Errorf("canonical refs = %v", refs)
	}

	// Unknown members, wrong JSON types and broken values are skipped,
	// not fatal.
	odd := extract(`{"resourceType":"Patient","id":"odd","birthDate":"not-a-date","gender":7,
		"name":[{"family":["x"]},{"given":[null,"Zoë"]}],"telecom":[{"system":"email"}],
		"managingOrganization":{"reference":"#contained"},"link":[{"other":{"reference":"Patient/other"},"type":"seealso"}]}`)
	if ds := datesOf(odd, "birthdate"); len(ds) != 0 {
		t.Errorf("bad birthDate indexed: %v", ds)
	}
	if got := stringsOf(odd, "given"); !slices.Equal(got, []string{"zoe"}) {
		t.Errorf("given = %v", got)
	}
	if got := refsOf(odd, "organization"); len(got) != 0 {
		t.Errorf("contained reference indexed: %v", got)
	}
	if !slices.Equal(odd.Patients, []string{"odd", "other"}) {
		t.Errorf("Patients = %v", odd.Patients)
	}
}

// jsonMap decodes a resource keeping numbers as written.
func jsonMap(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func codings(cc any) []string {
	var out []string
	m, _ := cc.(map[string]any)
	list, _ := m["coding"].([]any)
	for _, c := range list {
		cm := c.(map[string]any)
		s, _ := cm["system"].(string)
		code, _ := cm["code"].(string)
		out = append(out, s+"|"+code)
	}
	sort.Strings(out)
	return out
}

func refID(ref any) string {
	m, _ := ref.(map[string]any)
	s, _ := m["reference"].(string)
	return s
}

// TestExtractSynthea checks the index of every resource of the Synthea
// bundles against values read straight from the JSON.
func TestExtractSynthea(t *testing.T) {
	r := testRegistry(t)
	files := syntheaFiles(t)
	if testing.Short() {
		files = files[:2]
	}
	counts := map[string]int{}
	for _, f := range files {
		resources := syntheaBundle(t, f)
		var patientID string
		for _, res := range resources {
			if res.Type == "Patient" {
				patientID = res.ID
			}
		}
		for _, res := range resources {
			ix, err := r.Extract(res)
			if err != nil {
				t.Fatalf("%s %s/%s: %v", f, res.Type, res.ID, err)
			}
			counts[res.Type]++
			m := jsonMap(t, res.Raw)
			where := f + " " + res.Type + "/" + res.ID
			if got := tokensOf(ix, "_id"); !slices.Equal(got, []string{"|" + res.ID}) {
				t.Errorf("%s: _id = %v", where, got)
			}
			// Compartment membership: the resource refers to its Patient.
			var wantPatients []string
			if res.Type == "Patient" {
				wantPatients = []string{res.ID}
			} else if r.InPatientCompartment(res.Type) && bytes.Contains(res.Raw, []byte(`"reference":"Patient/`+patientID+`"`)) {
				wantPatients = []string{patientID}
			}
			if !slices.Equal(ix.Patients, wantPatients) {
				t.Errorf("%s: Patients = %v, want %v", where, ix.Patients, wantPatients)
			}
			switch res.Type {
			case "Observation":
				if got, want := tokensOf(ix, "code"), codings(m["code"]); !slices.Equal(got, want) {
					t.Errorf("%s: code = %v, want %v", where, got, want)
				}
				if got, want := refsOf(ix, "patient"), []string{refID(m["subject"])}; !slices.Equal(got, want) {
					t.Errorf("%s: patient = %v, want %v", where, got, want)
				}
				if eff, ok := m["effectiveDateTime"].(string); ok {
					at, err := time.Parse(time.RFC3339, eff)
					if err != nil {
						t.Fatal(err)
					}
					ds := datesOf(ix, "date")
					if len(ds) != 1 || !ds[0].Lo.Equal(at) || !ds[0].Hi.Equal(at.Add(time.Second-1)) {
						t.Errorf("%s: date = %+v, want %v", where, ds, at)
					}
				}
				var got []string
				for _, v := range ix.Quantities {
					if v.Param == "value-quantity" {
						got = append(got, v.Value+" "+v.System+"|"+v.Code)
					}
				}
				var want []string
				if vq, ok := m["valueQuantity"].(map[string]any); ok {
					want = []string{vq["value"].(json.Number).String() + " " + vq["system"].(string) + "|" + vq["code"].(string)}
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: value-quantity = %v, want %v", where, got, want)
				}
				groups := map[int]bool{}
				for _, v := range ix.Quantities {
					if v.Param == "component-code-value-quantity" {
						groups[v.Group] = true
					}
				}
				comps, _ := m["component"].([]any)
				wantGroups := 0
				for _, c := range comps {
					if _, ok := c.(map[string]any)["valueQuantity"]; ok {
						wantGroups++
					}
				}
				if len(groups) != wantGroups {
					t.Errorf("%s: %d component groups, want %d", where, len(groups), wantGroups)
				}
			case "Condition":
				if got, want := tokensOf(ix, "code"), codings(m["code"]); !slices.Equal(got, want) {
					t.Errorf("%s: code = %v, want %v", where, got, want)
				}
				if got, want := tokensOf(ix, "clinical-status"), codings(m["clinicalStatus"]); !slices.Equal(got, want) {
					t.Errorf("%s: clinical-status = %v, want %v", where, got, want)
				}
			case "Patient":
				var want []string
				for _, n := range m["name"].([]any) {
					nm := n.(map[string]any)
					want = append(want, strings.ToLower(foldTest(nm["family"].(string))))
				}
				sort.Strings(want)
				if got := stringsOf(ix, "family"); !slices.Equal(got, want) {
					t.Errorf("%s: family = %v, want %v", where, got, want)
				}
				if got := tokensOf(ix, "gender"); !slices.Equal(got, []string{"|" + m["gender"].(string)}) {
					t.Errorf("%s: gender = %v", where, got)
				}
			case "Encounter":
				p := m["period"].(map[string]any)
				start, _ := time.Parse(time.RFC3339, p["start"].(string))
				end, _ := time.Parse(time.RFC3339, p["end"].(string))
				ds := datesOf(ix, "date")
				if len(ds) != 1 || !ds[0].Lo.Equal(start) || !ds[0].Hi.Equal(end.Add(time.Second-1)) {
					t.Errorf("%s: date = %+v, want %v..%v", where, ds, start, end)
				}
			}
		}
	}
	t.Logf("indexed %v", counts)
}

// foldTest strips the accents that occur in the Synthea names, written
// out independently of Normalize.
func foldTest(s string) string {
	return strings.NewReplacer("á", "a", "é", "e", "í", "i", "ó", "o", "ú", "u", "ñ", "n", "ü", "u", "Á", "A", "É", "E").Replace(s)
}

func BenchmarkExtractSyntheaBundle(b *testing.B) {
	r := testRegistry(b)
	resources := syntheaBundle(b, "Adan_Portillo_22bbe238-220e-495c-8abc-0ce3aa28a605.json")
	b.ReportAllocs()
	values := 0
	for b.Loop() {
		values = 0
		for _, res := range resources {
			ix, err := r.Extract(res)
			if err != nil {
				b.Fatal(err)
			}
			values += ix.Len()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(resources)), "ns/resource")
	b.ReportMetric(float64(values)/float64(len(resources)), "values/resource")
}
