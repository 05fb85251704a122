package validate

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// exampleDefects are errors in the official R4 examples themselves; each
// must be reported exactly as given (and nothing else).
var exampleDefects = map[string]struct{ code, expr, why string }{
	"MedicationRequest-medrx0301.json": {codeStructure, "MedicationRequest.dispenseRequest.performer.reference",
		"the example refers to Practitioner/f001, but MedicationRequest.dispenseRequest.performer is Reference(Organization) in R4"},
	"Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json": {codeValue, "Bundle.entry[2].fullUrl",
		"the entry's fullUrl is .../Patient/pat12 but its resource is Patient/pat2 (the HL7 validator reports this since 2023)"},
}

// TestOfficialExamples validates every official R4 example: none has an
// error, apart from the listed defects of the examples.
func TestOfficialExamples(t *testing.T) {
	files := readFiles(t, "fhir-r4-examples/*/*.json")
	v := New(Options{})
	for path, body := range files {
		name := filepath.Base(path)
		issues := v.ValidateJSON(body)
		for _, is := range issues {
			checkIssueShape(t, is)
		}
		errs := errorIssues(issues)
		if d, ok := exampleDefects[name]; ok {
			if len(errs) != 1 || errs[0].Code != d.code || errs[0].Expression[0] != d.expr {
				t.Errorf("%s: want only the known defect (%s), got\n%s", name, d.why, dump(errs))
			}
			continue
		}
		if len(errs) > 0 {
			t.Errorf("%s: %d errors\n%s", name, len(errs), dump(errs))
		}
	}
	if len(files) < 100 {
		t.Errorf("only %d examples", len(files))
	}
}

// TestSyntheaResources validates every Synthea bundle, and every entry's
// resource on its own: no errors, no warnings.
func TestSyntheaResources(t *testing.T) {
	files := readFiles(t, "synthea-r4/*.json")
	v := New(Options{})
	resources := 0
	for path, body := range files {
		name := filepath.Base(path)
		if issues := v.ValidateJSON(body); len(issues) > 0 {
			t.Errorf("%s: %d issues\n%s", name, len(issues), dump(issues[:min(len(issues), 5)]))
		}
		root, err := fjson.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range root.Get("entry").Items {
			resources++
			r, err := fhir.FromValue(e.Get("resource"))
			if err != nil {
				t.Fatalf("%s entry %d: %v", name, i, err)
			}
			if issues := v.Validate(r); len(issues) > 0 {
				t.Errorf("%s entry %d (%s): %d issues\n%s", name, i, r.Type, len(issues), dump(issues))
			}
		}
	}
	t.Logf("%d Synthea resources validated", resources)
}

// TestNoPatientDataInDetails checks, over invalid inputs, that values from
// the resource appear only in diagnostics.
func TestNoPatientDataInDetails(t *testing.T) {
	const secret = "Zq9SecretValue"
	bodies := []string{
		`{"resourceType":"Patient","birthDate":"` + secret + `"}`,
		`{"resourceType":"Patient","gender":"` + secret + `"}`,
		`{"resourceType":"Patient","id":"` + secret + `_"}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"` + secret + ` x"}}`,
		`{"resourceType":"Patient","managingOrganization":{"reference":"#` + secret + `"}}`,
		`{"resourceType":"Patient","active":"` + secret + `"}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<p>` + secret + `</p>"}}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"` + secret + `"}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"` + secret + `","resource":{"resourceType":"Patient"}}]}`,
		`{"resourceType":"Patient","photo":[{"data":"` + secret + `%"}]}`,
	}
	v := New(Options{})
	for _, b := range bodies {
		issues := v.ValidateJSON([]byte(b))
		if !HasErrors(issues) {
			t.Errorf("%s: no error", b)
		}
		found := false
		for _, is := range issues {
			if strings.Contains(is.Details.Text, secret) {
				t.Errorf("%s: value in details: %q", b, is.Details.Text)
			}
			for _, e := range is.Expression {
				if strings.Contains(e, secret) {
					t.Errorf("%s: value in expression: %q", b, e)
				}
			}
			if strings.Contains(is.Diagnostics, secret) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the offending value is not in diagnostics:\n%s", b, dump(issues))
		}
	}
}
