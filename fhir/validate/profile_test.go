package validate

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

const testProfileURL = "http://example.org/fhir/StructureDefinition/test-patient"

// testProfile builds a Patient profile from the core Patient snapshot:
// birthDate 1..1, gender fixed to "female", identifier 1..* with a slice
// "mrn" (pattern on type, 1..1), an extension slice birthPlace (1..1), and
// an invariant tst-1 that the name has a family.
func testProfile(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir(t), "fhir-r4-definitions", "profiles-resources.assembled.json"))
	if err != nil {
		t.Skip(err)
	}
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	var sd map[string]any
	for _, e := range b.Entry {
		if e.Resource["id"] == "Patient" {
			sd = e.Resource
		}
	}
	if sd == nil {
		t.Fatal("no Patient definition")
	}
	sd["url"] = testProfileURL
	sd["name"] = "TestPatient"
	sd["derivation"] = "constraint"
	sd["baseDefinition"] = "http://hl7.org/fhir/StructureDefinition/Patient"
	snap := sd["snapshot"].(map[string]any)
	var out []any
	for _, x := range snap["element"].([]any) {
		el := x.(map[string]any)
		switch el["path"] {
		case "Patient":
			el["constraint"] = append(el["constraint"].([]any), map[string]any{
				"key": "tst-1", "severity": "error", "human": "Every name has a family name",
				"expression": "name.all(family.exists())",
			})
		case "Patient.birthDate":
			el["min"] = 1
		case "Patient.gender":
			el["fixedCode"] = "female"
		case "Patient.extension":
			el["slicing"] = map[string]any{"discriminator": []any{map[string]any{"type": "value", "path": "url"}}, "rules": "open"}
			out = append(out, el)
			out = append(out, map[string]any{
				"id": "Patient.extension:birthPlace", "path": "Patient.extension", "sliceName": "birthPlace",
				"min": 1, "max": "1", "base": map[string]any{"path": "DomainResource.extension", "min": 0, "max": "*"},
				"type": []any{map[string]any{"code": "Extension", "profile": []any{"http://hl7.org/fhir/StructureDefinition/patient-birthPlace"}}},
			})
			continue
		case "Patient.identifier":
			el["min"] = 1
			el["slicing"] = map[string]any{"discriminator": []any{map[string]any{"type": "pattern", "path": "type"}}, "rules": "open"}
			out = append(out, el)
			out = append(out,
				map[string]any{"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn",
					"min": 1, "max": "1", "base": map[string]any{"path": "Patient.identifier", "min": 0, "max": "*"},
					"type": []any{map[string]any{"code": "Identifier"}}},
				map[string]any{"id": "Patient.identifier:mrn.type", "path": "Patient.identifier.type",
					"min": 1, "max": "1", "base": map[string]any{"path": "Identifier.type", "min": 0, "max": "1"},
					"type":                   []any{map[string]any{"code": "CodeableConcept"}},
					"patternCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}}}},
			)
			continue
		}
		out = append(out, el)
	}
	snap["element"] = out
	raw, err := json.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

const profiledPatient = `{
  "resourceType": "Patient",
  "meta": {"profile": ["` + testProfileURL + `|1.0"]},
  "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Pune"}}],
  "identifier": [
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "1"},
    {"system": "http://example.org/other", "value": "2"}
  ],
  "name": [{"family": "Doe"}],
  "gender": "female",
  "birthDate": "1980-01-01"
}`

func TestProfiles(t *testing.T) {
	v := New(Options{})
	if err := v.AddProfile(testProfile(t)); err != nil {
		t.Fatal(err)
	}
	if !v.HasProfile(testProfileURL+"|2") || len(v.Profiles()) != 1 {
		t.Fatal("profile not loaded")
	}
	if issues := v.ValidateJSON([]byte(profiledPatient)); len(issues) > 0 {
		t.Fatalf("conforming resource has issues:\n%s", dump(issues))
	}
	cases := []struct {
		name       string
		edits      []any
		code, expr string
	}{
		{"missing birthDate", []any{"birthDate", deleteMark}, codeRequired, "Patient.birthDate"},
		{"wrong fixed gender", []any{"gender", "male"}, codeValue, "Patient.gender"},
		{"no identifier", []any{"identifier", deleteMark}, codeRequired, "Patient.identifier"},
		{"no mrn slice", []any{"identifier.0.type.coding.0.code", "XX"}, codeRequired, "Patient.identifier"},
		{"two mrn slices", []any{"identifier.1.type", map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR", "display": "x"}}}}, codeStructure, "Patient.identifier"},
		{"no birthPlace extension", []any{"extension.0.url", "http://example.org/other"}, codeRequired, "Patient.extension"},
		{"invariant of the profile", []any{"name", []any{map[string]any{"given": []any{"Jane"}}}}, codeInvariant, "Patient"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := decode(t, profiledPatient)
			for i := 0; i < len(c.edits); i += 2 {
				edit(t, doc, c.edits[i].(string), c.edits[i+1])
			}
			body, _ := json.Marshal(doc)
			issues := v.ValidateJSON(body)
			for _, is := range issues {
				checkIssueShape(t, is)
				if is.Code == c.code && is.Expression[0] == c.expr && is.Severity == fhir.SeverityError {
					if !strings.Contains(is.Details.Text, testProfileURL) {
						t.Errorf("profile issue does not name the profile: %q", is.Details.Text)
					}
					return
				}
			}
			t.Errorf("want %s at %s, got\n%s", c.code, c.expr, dump(issues))
		})
	}
	// Without the claim the profile is not applied...
	doc := decode(t, profiledPatient)
	edit(t, doc, "meta", deleteMark)
	edit(t, doc, "birthDate", deleteMark)
	body, _ := json.Marshal(doc)
	if issues := v.ValidateJSON(body); len(issues) > 0 {
		t.Errorf("profile applied to a resource that does not claim it:\n%s", dump(issues))
	}
	// ...unless the caller asks for it.
	r, err := fhir.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if issues := v.ValidateAgainst(r, testProfileURL); !HasErrors(issues) {
		t.Error("ValidateAgainst did not apply the profile")
	}
	if issues := v.ValidateAgainst(r, "http://example.org/unknown"); !HasErrors(issues) {
		t.Error("ValidateAgainst with an unknown profile is not an error")
	}
	// A validator without the profile only warns about the claim.
	issues := New(Options{}).ValidateJSON([]byte(profiledPatient))
	if len(issues) != 1 || issues[0].Severity != fhir.SeverityWarning || issues[0].Code != codeNotSupp || issues[0].Expression[0] != "Patient.meta.profile" {
		t.Errorf("unknown profile: want one warning, got\n%s", dump(issues))
	}
}

func TestAddProfilesErrors(t *testing.T) {
	v := New(Options{})
	if err := v.AddProfile([]byte(`{"resourceType":"StructureDefinition","url":"http://x","kind":"resource","type":"Patient"}`)); !errors.Is(err, ErrNotStructureDefinition) {
		t.Errorf("no snapshot: %v", err)
	}
	if err := v.AddProfile([]byte(`{"resourceType":"Patient"}`)); !errors.Is(err, ErrNotStructureDefinition) {
		t.Errorf("not a StructureDefinition: %v", err)
	}
	if err := v.AddProfile([]byte(`{`)); err == nil {
		t.Error("bad JSON accepted")
	}
	sd := testProfile(t)
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},{"resource":` + string(sd) + `}]}`
	n, err := v.AddProfiles([]byte(bundle))
	if err != nil || n != 1 || !v.HasProfile(testProfileURL) {
		t.Errorf("AddProfiles from a Bundle: %d, %v", n, err)
	}
	bad := strings.Replace(string(sd), `"type":"Patient"`, `"type":"Nonsense"`, 1)
	if err := v.AddProfile([]byte(bad)); err == nil {
		t.Error("profile of an unknown type accepted")
	}
}

// TestConcurrentUse validates from several goroutines while profiles are
// added (run with -race).
func TestConcurrentUse(t *testing.T) {
	v := New(Options{})
	sd := testProfile(t)
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- true }()
			for i := 0; i < 20; i++ {
				v.ValidateJSON([]byte(profiledPatient))
				v.ValidateJSON([]byte(baseObservation))
			}
		}()
	}
	for i := 0; i < 5; i++ {
		if err := v.AddProfile(sd); err != nil {
			t.Error(err)
		}
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if issues := v.ValidateJSON([]byte(profiledPatient)); len(issues) > 0 {
		t.Errorf("issues after concurrent use:\n%s", dump(issues))
	}
}
