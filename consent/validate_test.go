package consent

import (
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// exampleConsent is the second-opinion Consent of STANDARDS.md §5.3.
const exampleConsent = `{
  "resourceType": "Consent", "id": "so1",
  "status": "active",
  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
  "patient": {"reference": "Patient/p1"},
  "dateTime": "2025-03-01T10:15:00Z",
  "performer": [{"reference": "Patient/p1"}],
  "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
  "provision": {
    "type": "permit",
    "period": {"start": "2025-03-01", "end": "2025-06-01"},
    "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
               "reference": {"reference": "Organization/second-opinion-clinic"}}],
    "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
    "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
    "dataPeriod": {"start": "2020-01-01"},
    "data": [{"meaning": "related", "reference": {"reference": "ServiceRequest/so-req-1"}}],
    "provision": [{"type": "deny", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"},
                                                     {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}]
  }
}`

// edit applies "path=value" replacements of whole JSON snippets.
func edit(t *testing.T, js string, pairs ...string) *fhir.Resource {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(js, pairs[i]) {
			t.Fatalf("edit: %q not in the example", pairs[i])
		}
		js = strings.Replace(js, pairs[i], pairs[i+1], 1)
	}
	return resource(t, js)
}

func TestValidate(t *testing.T) {
	if issues := Validate(resource(t, exampleConsent), ValidateOptions{Patient: "Patient/p1"}); len(issues) != 0 {
		t.Fatalf("the example Consent has issues: %+v", issues)
	}
	type want struct{ code, expr string }
	for _, tc := range []struct {
		name  string
		res   *fhir.Resource
		opts  ValidateOptions
		wants []want
	}{
		{"not a Consent", resource(t, `{"resourceType":"Patient","id":"x"}`), ValidateOptions{}, []want{{"invalid", "Patient"}}},
		{"wrong scope", edit(t, exampleConsent, `"code": "patient-privacy"`, `"code": "research"`), ValidateOptions{}, []want{{"value", "Consent.scope"}}},
		{"no status", edit(t, exampleConsent, `"status": "active",`, ``), ValidateOptions{}, []want{{"required", "Consent.status"}}},
		{"bad status", edit(t, exampleConsent, `"status": "active"`, `"status": "on"`), ValidateOptions{}, []want{{"value", "Consent.status"}}},
		{"no patient", edit(t, exampleConsent, `"patient": {"reference": "Patient/p1"},`, ``), ValidateOptions{}, []want{{"required", "Consent.patient"}}},
		{"patient not a Patient", edit(t, exampleConsent, `"patient": {"reference": "Patient/p1"}`, `"patient": {"reference": "Group/g"}`), ValidateOptions{}, []want{{"value", "Consent.patient.reference"}}},
		{"absolute patient", edit(t, exampleConsent, `"patient": {"reference": "Patient/p1"}`, `"patient": {"reference": "https://x.org/Patient/p1"}`), ValidateOptions{}, []want{{"value", "Consent.patient.reference"}}},
		{"someone else's patient", resource(t, exampleConsent), ValidateOptions{Patient: "Patient/p2"}, []want{{"forbidden", "Consent.patient.reference"}}},
		{"no category", edit(t, exampleConsent, `"category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],`, ``), ValidateOptions{}, []want{{"required", "Consent.category"}}},
		{"ppc-1", edit(t, exampleConsent, `"policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},`, ``), ValidateOptions{}, []want{{"invariant", "Consent"}}},
		{"no provision", resource(t, exampleConsent[:strings.Index(exampleConsent, `,
  "provision"`)]+"}"), ValidateOptions{}, []want{{"required", "Consent.provision"}}},
		{"root deny", edit(t, exampleConsent, `"type": "permit"`, `"type": "deny"`), ValidateOptions{}, []want{{"value", "Consent.provision.type"}}},
		{"no actor", edit(t, exampleConsent, `"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
               "reference": {"reference": "Organization/second-opinion-clinic"}}],`, ``), ValidateOptions{}, []want{{"required", "Consent.provision.actor"}}},
		{"actor a Patient", edit(t, exampleConsent, `"Organization/second-opinion-clinic"`, `"Patient/p9"`), ValidateOptions{}, []want{{"value", "Consent.provision.actor[0].reference"}}},
		{"actor absolute", edit(t, exampleConsent, `"Organization/second-opinion-clinic"`, `"https://x.org/Organization/a"`), ValidateOptions{}, []want{{"value", "Consent.provision.actor[0].reference"}, {"value", "Consent.provision.actor[0].reference.reference"}}},
		{"actor without role", edit(t, exampleConsent, `"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},`, ``), ValidateOptions{}, []want{{"required", "Consent.provision.actor[0].role"}}},
		{"inverted period", edit(t, exampleConsent, `"end": "2025-06-01"`, `"end": "2025-01-01"`), ValidateOptions{}, []want{{"invariant", "Consent.provision.period"}}},
		{"bad period date", edit(t, exampleConsent, `"start": "2025-03-01"`, `"start": "2025-02-30"`), ValidateOptions{}, []want{{"value", "Consent.provision.period.start"}}},
		{"bad data period", edit(t, exampleConsent, `"dataPeriod": {"start": "2020-01-01"}`, `"dataPeriod": {"start": "soon"}`), ValidateOptions{}, []want{{"value", "Consent.provision.dataPeriod.start"}}},
		{"nested without type", edit(t, exampleConsent, `"provision": [{"type": "deny", `, `"provision": [{`), ValidateOptions{}, []want{{"required", "Consent.provision.provision[0].type"}}},
		{"nested bad type", edit(t, exampleConsent, `"provision": [{"type": "deny", `, `"provision": [{"type": "maybe", `), ValidateOptions{}, []want{{"value", "Consent.provision.provision[0].type"}}},
		{"bad confidentiality", edit(t, exampleConsent, `"code": "R"}`, `"code": "X"}`), ValidateOptions{}, []want{{"value", "Consent.provision.provision[0].securityLabel[1].code"}}},
		{"label without system", edit(t, exampleConsent, `{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}`, `{"code": "PSY"}`), ValidateOptions{}, []want{{"required", "Consent.provision.provision[0].securityLabel[0]"}}},
		{"bad data meaning", edit(t, exampleConsent, `"meaning": "related"`, `"meaning": "everything"`), ValidateOptions{}, []want{{"value", "Consent.provision.data[0].meaning"}}},
		{"purpose without system", edit(t, exampleConsent, `"purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]`, `"purpose": [{"code": "TREAT"}]`), ValidateOptions{}, []want{{"required", "Consent.provision.purpose[0]"}}},
		{"unknown class type", edit(t, exampleConsent, `"dataPeriod"`, `"class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observations"}], "dataPeriod"`), ValidateOptions{}, []want{{"value", "Consent.provision.class[0].code"}}},
		{"action text only", edit(t, exampleConsent, `"action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]`, `"action": [{"text": "look"}]`), ValidateOptions{}, []want{{"required", "Consent.provision.action[0]"}}},
		{"provision not an object", edit(t, exampleConsent, `"provision": [{"type": "deny",`, `"provision": [1, {"type": "deny",`), ValidateOptions{}, []want{{"structure", "Consent.provision.provision[0]"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issues := Validate(tc.res, tc.opts)
			var got []want
			for _, is := range issues {
				if is.Severity == fhir.SeverityError {
					got = append(got, want{is.Code, is.Expression[0]})
				}
				if strings.Contains(is.Details.Text, "second-opinion-clinic") || strings.Contains(is.Details.Text, "p9") {
					t.Errorf("an issue quotes the Consent: %q", is.Details.Text)
				}
			}
			if !slices.Equal(got, tc.wants) {
				t.Errorf("issues %v, want %v", got, tc.wants)
			}
		})
	}
}

func TestValidateWarnsOnUnevaluatedClass(t *testing.T) {
	res := edit(t, exampleConsent, `"dataPeriod"`, `"class": [{"system": "urn:ietf:bcp:13", "code": "application/pdf"}], "dataPeriod"`)
	issues := Validate(res, ValidateOptions{})
	if len(issues) != 1 || issues[0].Severity != fhir.SeverityWarning || issues[0].Expression[0] != "Consent.provision.class[0]" {
		t.Errorf("issues %+v", issues)
	}
}

func TestValidateHostileNesting(t *testing.T) {
	deep := `{"type": "deny"}`
	for range 50 {
		deep = `{"type": "deny", "provision": [` + deep + `]}`
	}
	res := edit(t, exampleConsent, `"provision": [{"type": "deny", `, `"provision": [`+deep+`, {"type": "deny", `)
	issues := Validate(res, ValidateOptions{})
	n := 0
	for _, is := range issues {
		if is.Code == "too-costly" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d too-costly issues, want 1: %+v", n, issues)
	}
	wide := strings.Repeat(`{"type": "deny"}, `, 500)
	res = edit(t, exampleConsent, `"provision": [{"type": "deny", `, `"provision": [`+wide+`{"type": "deny", `)
	if issues := Validate(res, ValidateOptions{}); len(issues) != 1 || issues[0].Code != "too-costly" {
		t.Errorf("wide: %d issues", len(issues))
	}
}

// TestExampleConsentDecides runs the STANDARDS.md example end to end.
func TestExampleConsentDecides(t *testing.T) {
	s := samples(t)
	sr := resource(t, `{"resourceType":"ServiceRequest","id":"so-req-1","status":"active","intent":"order","authoredOn":"2025-03-01","subject":{"reference":"Patient/p1"},"supportingInfo":[{"reference":"Observation/o1"},{"reference":"Observation/o2"}]}`)
	p := Compile("Patient/p1", []*fhir.Resource{resource(t, exampleConsent)}, Options{Resolve: func(ref string) (*fhir.Resource, error) { return sr, nil }})
	req := Request{Actors: []string{"Organization/second-opinion-clinic"}, Purpose: []Coding{Treatment}, Time: now}
	for _, c := range []struct {
		res  *fhir.Resource
		want Effect
	}{
		{sr, Permit},
		{s.obs, Permit},         // in the package, after 2020
		{s.obsPsy, Deny},        // in the package, but PSY
		{s.obsOther, NoConsent}, // not in the package
		{s.pat, Permit},         // the package's subject
	} {
		if got := p.DecideResource(req, c.res); got.Effect != c.want {
			t.Errorf("%s/%s: %v, want %v", c.res.Type, c.res.ID, got, c.want)
		}
	}
	late := req
	late.Time = now.AddDate(0, 3, 0) // after 2025-06-01
	if got := p.DecideResource(late, s.obs); got.Effect != NoConsent {
		t.Errorf("after the consent period: %v", got)
	}
}

// FuzzConsent feeds arbitrary JSON to the validator and the decision point:
// neither may panic, and a Consent the validator accepts must compile.
func FuzzConsent(f *testing.F) {
	f.Add([]byte(exampleConsent))
	f.Add([]byte(`{"resourceType":"Consent","status":"active","provision":{"type":"permit","provision":[{"provision":[{}]}]}}`))
	f.Add([]byte(`{"resourceType":"Consent","provision":{"period":{"start":1},"actor":[{"reference":"x"}],"data":[{}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := fhir.Parse(body)
		if err != nil {
			return
		}
		issues := Validate(res, ValidateOptions{Patient: "Patient/p1"})
		p := Compile("Patient/p1", []*fhir.Resource{res}, Options{})
		if res.Type == "Consent" && len(issues) == 0 && res.Root().Get("status").String() == "active" && p.Len() != 1 {
			t.Errorf("a valid active Consent was skipped: %v", p.Skipped())
		}
		p.DecideResource(Request{Actors: []string{"Organization/a"}, Time: now}, res)
		p.Candidates(Request{Actors: []string{"Organization/a"}, Time: now})
	})
}
