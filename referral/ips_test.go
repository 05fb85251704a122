package referral_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/referral"
)

const ipsBase = "http://hl7.org/fhir/uv/ips/StructureDefinition/"

// ipsValidator loads the IPS profiles from the unpacked hl7.fhir.uv.ips
// NPM package named by FHIRGATE_IPS_PACKAGE (.ci/run fetches it with
// npm pack); without it the test skips, unless FHIRGATE_REQUIRE_IPS is set.
func ipsValidator(t *testing.T) *validate.Validator {
	t.Helper()
	dir := os.Getenv("FHIRGATE_IPS_PACKAGE")
	if dir == "" {
		if os.Getenv("FHIRGATE_REQUIRE_IPS") != "" {
			t.Fatal("FHIRGATE_REQUIRE_IPS is set but FHIRGATE_IPS_PACKAGE is not")
		}
		t.Skip("set FHIRGATE_IPS_PACKAGE to the package/ directory of hl7.fhir.uv.ips (npm pack hl7.fhir.uv.ips@2.0.0) to check the IPS profiles")
	}
	v := validate.Default()
	n, err := v.AddProfileDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n < 30 || !v.HasProfile(ipsBase+"Bundle-uv-ips") || !v.HasProfile(ipsBase+"Composition-uv-ips") {
		t.Fatalf("%s: %d StructureDefinitions, not the IPS package", dir, n)
	}
	return v
}

// TestPackageIPSProfiles: the packages made from Synthea patients conform
// to the IPS profiles: the Bundle, its Composition and Patient, and every
// problem, medication, allergy, procedure, immunization and report. Source
// Observations are kept as the source sent them (Synthea's laboratory
// results carry no performer, which IPS's results profile requires), so
// they are counted, not required to conform.
func TestPackageIPSProfiles(t *testing.T) {
	v := ipsValidator(t)
	profiles := map[string]string{
		"Composition": "Composition-uv-ips", "Patient": "Patient-uv-ips", "Condition": "Condition-uv-ips",
		"MedicationStatement": "MedicationStatement-uv-ips", "MedicationRequest": "MedicationRequest-uv-ips",
		"Medication": "Medication-uv-ips", "AllergyIntolerance": "AllergyIntolerance-uv-ips",
		"Procedure": "Procedure-uv-ips", "Immunization": "Immunization-uv-ips", "DiagnosticReport": "DiagnosticReport-uv-ips",
		"Organization": "Organization-uv-ips", "Practitioner": "Practitioner-uv-ips",
	}
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	checked := map[string]int{}
	for i, f := range syntheaFiles(t) {
		rec := loadRecord(t, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc, err := referral.Summary(rec.patient, rec.resources, referral.Options{
				BaseURL: "https://gw.test/fhir", Now: now, NewID: counter(),
				Specialty: referral.Specialties()[i%len(referral.Specialties())], Question: "Second opinion?",
				Policies: []string{"Consent/c1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if errs := errorsOnly(v.ValidateAgainst(doc.Bundle, ipsBase+"Bundle-uv-ips")); len(errs) > 0 {
				t.Fatalf("the package is not an IPS Bundle: %v", errs)
			}
			for _, e := range doc.Bundle.Root().Get("entry").Elems() {
				r, err := fhir.FromValue(e.Get("resource"))
				if err != nil {
					t.Fatal(err)
				}
				p, ok := profiles[r.Type]
				if !ok {
					continue
				}
				checked[r.Type]++
				if errs := errorsOnly(v.ValidateAgainst(r, ipsBase+p)); len(errs) > 0 {
					t.Errorf("%s/%s is not %s: %v", r.Type, r.ID, p, errs)
				}
			}
		})
	}
	for _, typ := range []string{"Composition", "Patient", "Condition", "Procedure", "Immunization"} {
		if checked[typ] == 0 {
			t.Errorf("no %s was checked: %v", typ, checked)
		}
	}
	t.Logf("checked against IPS profiles: %v", checked)

	// the profiles bite: a package without its identifier is refused
	rec := loadRecord(t, syntheaFiles(t)[0])
	doc, err := referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test/fhir", Now: now, NewID: counter()})
	if err != nil {
		t.Fatal(err)
	}
	broken, err := fhir.Parse([]byte(strings.Replace(string(doc.Bundle.Raw), `"identifier":`, `"_identifierGone":`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, is := range v.ValidateAgainst(broken, ipsBase+"Bundle-uv-ips") {
		if is.Severity == fhir.SeverityError && strings.Contains(is.Details.Text, "Bundle-uv-ips") {
			found = true
		}
	}
	if !found {
		t.Error("a package without identifier passes the IPS Bundle profile")
	}
}
