package validate

import "testing"

// TestAcceptedCodings: displays compare without regard to case and runs of
// white space, nested concepts count, systems the validator does not ship
// are not judged, and an attachment's size and hash are only compared
// with data that is there.
func TestAcceptedCodings(t *testing.T) {
	v := New(Options{})
	for _, body := range []string{
		`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active","display":"  ACTIVE "}]}}`,
		`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"relapse","display":"Relapse"}]}}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"not-checked","display":"anything"}]}}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://hl7.org/fhir/administrative-gender","code":"female"}]}}`,
		`{"resourceType":"Patient","photo":[{"url":"http://x.example/p.png","size":12345,"hash":"TK7OU5sDmxbhYgbqJHj4xf+yygU="}]}`,
		`{"resourceType":"Patient","photo":[{"contentType":"image/png","data":"iVBO Rw0K\nGgo=","size":8}]}`,
	} {
		if issues := v.ValidateJSON([]byte(body)); len(issues) > 0 {
			t.Errorf("%s:\n%s", body, dump(issues))
		}
	}
}

// TestQuestionnaireErratum: que-7 as published tests "answer is Boolean"
// (the FHIRPath System type), which a FHIR boolean never is; the erratum
// that later versions applied ("is boolean") is what the validator
// evaluates, so an exists-test with a boolean answer is valid and one with
// another type is not.
func TestQuestionnaireErratum(t *testing.T) {
	v := New(Options{})
	q := func(answer string) string {
		return `{"resourceType":"Questionnaire","status":"active","item":[` +
			`{"linkId":"1","type":"boolean","text":"a"},` +
			`{"linkId":"2","type":"string","text":"b","enableWhen":[{"question":"1","operator":"exists",` + answer + `}]}]}`
	}
	if issues := v.ValidateJSON([]byte(q(`"answerBoolean":true`))); HasErrors(issues) {
		t.Errorf("exists with a boolean answer:\n%s", dump(issues))
	}
	if issues := v.ValidateJSON([]byte(q(`"answerString":"yes"`))); !HasErrors(issues) {
		t.Error("exists with a string answer is accepted")
	}
}
