package referral_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// opinionJSON builds an opinion document as a specialist's system would,
// as a generic map the cases then break.
func opinionJSON() map[string]any {
	pt := map[string]any{"reference": "Patient/p1"}
	obs := func(code, system, value string) map[string]any {
		return map[string]any{"resourceType": "Observation", "status": "final", "subject": pt,
			"code":                 map[string]any{"coding": []any{map[string]any{"system": referral.OpinionSystem, "code": code}}},
			"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": system, "code": value}}}}
	}
	section := func(code, text string, entries ...string) map[string]any {
		s := map[string]any{"title": code, "code": map[string]any{"coding": []any{map[string]any{"system": referral.OpinionSystem, "code": code}}},
			"text": map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">` + text + `</div>`}}
		var es []any
		for _, e := range entries {
			es = append(es, map[string]any{"reference": e})
		}
		if es != nil {
			s["entry"] = es
		}
		return s
	}
	return map[string]any{
		"resourceType": "Bundle", "type": "document", "timestamp": "2025-03-01T10:00:00Z",
		"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:6f1c0b1e-0000-4000-8000-000000000001"},
		"entry": []any{
			map[string]any{"fullUrl": "urn:uuid:6f1c0b1e-0000-4000-8000-000000000002", "resource": map[string]any{
				"resourceType": "Composition", "status": "final",
				"type":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "11488-4"}}},
				"subject": pt, "date": "2025-03-01T10:00:00Z", "title": "Second opinion",
				"author":   []any{map[string]any{"reference": "Practitioner/dr-rao"}},
				"attester": []any{map[string]any{"mode": "legal", "time": "2025-03-01T10:00:00Z", "party": map[string]any{"reference": "Practitioner/dr-rao"}}},
				"event":    []any{map[string]any{"detail": []any{map[string]any{"reference": "Task/t1"}, map[string]any{"reference": "Bundle/pkg1"}}}},
				"section": []any{
					section("question", "Do I need a stent?"),
					section("agreement", "I agree.", "urn:uuid:6f1c0b1e-0000-4000-8000-000000000003"),
					section("alternatives", "Also consider angina.", "urn:uuid:6f1c0b1e-0000-4000-8000-000000000004"),
					section("plan", "Statin.", "urn:uuid:6f1c0b1e-0000-4000-8000-000000000005"),
					section("urgency", "Routine.", "urn:uuid:6f1c0b1e-0000-4000-8000-000000000006"),
				},
			}},
			map[string]any{"fullUrl": "urn:uuid:6f1c0b1e-0000-4000-8000-000000000003", "resource": obs("diagnosis-agreement", referral.OpinionSystem, "agree")},
			map[string]any{"fullUrl": "urn:uuid:6f1c0b1e-0000-4000-8000-000000000004", "resource": map[string]any{"resourceType": "Condition", "subject": pt,
				"code": map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "194828000", "display": "Angina"}}}}},
			map[string]any{"fullUrl": "urn:uuid:6f1c0b1e-0000-4000-8000-000000000005", "resource": map[string]any{"resourceType": "MedicationRequest", "status": "draft", "intent": "proposal", "subject": pt,
				"medicationCodeableConcept": map[string]any{"text": "atorvastatin 20 mg daily"}}},
			map[string]any{"fullUrl": "urn:uuid:6f1c0b1e-0000-4000-8000-000000000006", "resource": obs("urgency", "http://hl7.org/fhir/request-priority", "routine")},
		},
	}
}

func newTestService(t *testing.T) *referral.Service {
	t.Helper()
	reg, err := search.New(search.Options{BaseURL: "http://fhir.test"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/db", sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return referral.New(referral.Config{Store: st, Decider: release.New(release.Options{Store: st, Search: reg}), Search: reg})
}

func parse(t *testing.T, m map[string]any) *fhir.Resource {
	t.Helper()
	b, _ := json.Marshal(m)
	r, err := fhir.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOpinionProfile: the published profile loads into the validator, a
// well-formed opinion passes it and the workflow's checks, and each way
// of breaking one is refused with the path of the problem.
func TestOpinionProfile(t *testing.T) {
	v := validate.New(validate.Options{})
	if err := v.AddProfile(referral.OpinionProfile("")); err != nil {
		t.Fatal(err)
	}
	if err := v.AddProfile(referral.OpinionProfile("https://example.org/fhir")); err != nil || !v.HasProfile("https://example.org/fhir/StructureDefinition/second-opinion") {
		t.Fatalf("a canonical base of one's own: %v", err)
	}
	svc := newTestService(t)
	good := parse(t, opinionJSON())
	if issues := validate.Default().Validate(good); validate.HasErrors(issues) {
		t.Fatalf("the document is not valid R4: %v", issues)
	}
	o, err := svc.ParseOpinion(good)
	if err != nil {
		t.Fatalf("a good opinion: %v", err)
	}
	if o.Task != "Task/t1" || o.Package != "Bundle/pkg1" || o.Attester != "Practitioner/dr-rao" || !o.Final() || o.Agreement() != "agree" || o.Urgency() != "routine" {
		t.Errorf("parsed %+v", o)
	}
	comp := func(m map[string]any) map[string]any {
		return m["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	}
	sections := func(m map[string]any) []any { return comp(m)["section"].([]any) }
	for name, c := range map[string]struct {
		breakIt func(m map[string]any)
		path    string
	}{
		"no urgency section": {func(m map[string]any) { comp(m)["section"] = sections(m)[:4] }, "section"},
		"no attester":        {func(m map[string]any) { delete(comp(m), "attester") }, "attester"},
		"not a consult note": {func(m map[string]any) { comp(m)["type"] = map[string]any{"text": "letter"} }, "type"},
		"no subject":         {func(m map[string]any) { delete(comp(m), "subject") }, "subject"},
		"no package": {func(m map[string]any) {
			comp(m)["event"] = []any{map[string]any{"detail": []any{map[string]any{"reference": "Task/t1"}}}}
		}, "event"},
		"an entry elsewhere": {func(m map[string]any) {
			sections(m)[2].(map[string]any)["entry"] = []any{map[string]any{"reference": "Condition/elsewhere"}}
		}, "section[2].entry[0]"},
		"a test that is not": {func(m map[string]any) {
			sections(m)[3].(map[string]any)["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] = "tests"
		}, "section"},
		"unknown agreement": {func(m map[string]any) {
			m["entry"].([]any)[1].(map[string]any)["resource"].(map[string]any)["valueCodeableConcept"] = map[string]any{"text": "maybe"}
		}, "section"},
		"another patient": {func(m map[string]any) {
			m["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)["subject"] = map[string]any{"reference": "Patient/p2"}
		}, "section[2].entry[0]"},
		"a draft":         {func(m map[string]any) { comp(m)["status"] = "entered-in-error" }, "status"},
		"not a document":  {func(m map[string]any) { m["type"] = "collection" }, "Bundle.type"},
		"a section twice": {func(m map[string]any) { comp(m)["section"] = append(sections(m), sections(m)[0]) }, "section"},
		"urgency not a level": {func(m map[string]any) {
			m["entry"].([]any)[4].(map[string]any)["resource"].(map[string]any)["valueCodeableConcept"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] = "soon"
		}, "section"},
	} {
		t.Run(name, func(t *testing.T) {
			m := opinionJSON()
			c.breakIt(m)
			_, err := svc.ParseOpinion(parse(t, m))
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != 422 {
				t.Fatalf("%v, want a 422", err)
			}
			found := false
			for _, is := range fe.Issues {
				for _, e := range is.Expression {
					found = found || strings.Contains(e, c.path)
				}
			}
			if !found {
				t.Errorf("no issue at %s: %v", c.path, fe.Issues)
			}
		})
	}
}
