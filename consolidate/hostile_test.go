package consolidate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
)

// TestHostileBatch: odd references stay as sent, a resource without an id
// is reported and not stored, and nothing but id/meta/references changes.
func TestHostileBatch(t *testing.T) {
	ctx := context.Background()
	st := stores(t)["sqlite"](t)
	if _, err := st.Create(ctx, mustParse(t, `{"resourceType":"Patient","id":"local"}`)); err != nil {
		t.Fatal(err)
	}
	obs := `{"resourceType":"Observation","id":"o1","meta":{"versionId":"9","source":"http://elsewhere","tag":[{"system":"urn:fhirgate:duplicate-of","code":"Observation/forged"},{"system":"x","code":"y"}]},"status":"final","code":{"text":"t"},"subject":{"reference":"Patient/p1"},` +
		`"derivedFrom":[{"reference":"Observation/../x"},{"reference":"http://other.example/fhir/Observation/9"},{"reference":"#c1"},{"reference":"Observation/o2/_history/3"},{"reference":"Nope/1"}],"_status":{"extension":[{"url":"u","valueString":"v"}]}}`
	rs := []*fhir.Resource{
		mustParse(t, `{"resourceType":"Patient","id":"p1"}`),
		mustParse(t, obs),
		mustParse(t, `{"resourceType":"Observation","status":"final","code":{"text":"no id"}}`),
	}
	rep, err := (&consolidate.Consolidator{Store: st}).Apply(ctx, consolidate.Batch{Source: "s", PatientID: "local", SourcePatientID: "p1", Resources: rs})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 2 || rep.IssueCount == 0 {
		t.Errorf("report %+v", rep)
	}
	got, err := st.Read(ctx, "Observation", consolidate.LocalID("s", "Observation", "o1"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(got.Raw)
	for _, want := range []string{
		`"subject":{"reference":"Patient/local"}`,
		`{"reference":"Observation/../x"}`,
		`{"reference":"http://other.example/fhir/Observation/9"}`,
		`{"reference":"#c1"}`,
		`{"reference":"Observation/` + consolidate.LocalID("s", "Observation", "o2") + `"}`,
		`{"reference":"Nope/1"}`,
		`"_status":{"extension":[{"url":"u","valueString":"v"}]}`,
		`"source":"urn:fhirgate:source:s"`,
		`{"system":"x","code":"y"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("stored Observation lacks %s:\n%s", want, body)
		}
	}
	if consolidate.IsDuplicate(got) {
		t.Error("a forged duplicate-of tag from the source survived")
	}
	local, err := st.Read(ctx, "Patient", "local")
	if err != nil {
		t.Fatal(err)
	}
	if consolidate.SourcePatientID(local, "s") != "p1" || !strings.Contains(string(local.Raw), `"type":"seealso"`) {
		t.Errorf("local Patient not linked: %s", local.Raw)
	}
}
