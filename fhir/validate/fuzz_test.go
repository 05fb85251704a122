package validate

import (
	"testing"
)

// FuzzValidateJSON feeds arbitrary bytes to the validator: it must never
// panic, and every issue must be well formed.
func FuzzValidateJSON(f *testing.F) {
	for _, s := range []string{basePatient, baseObservation, baseCondition, baseBundle,
		`{"resourceType":"Patient","_birthDate":[null],"birthDate":[null]}`,
		`{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"2","type":"string"}]}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"x","resource":{"resourceType":"Bundle","type":"collection"}}]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Patient","contained":[{"resourceType":"Patient"}]}]}`,
		`{"resourceType":"Observation","status":"final","code":{},"valueQuantity":{"value":1e400}}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">&nbsp;<a href=\"x\">y</a></div>"}}`,
	} {
		f.Add([]byte(s))
	}
	v := New(Options{BestPractice: true})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, is := range v.ValidateJSON(body) {
			checkIssueShape(t, is)
		}
	})
}
