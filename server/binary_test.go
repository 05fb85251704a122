package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestBinaryAccess: a Binary is in no compartment; its securityContext
// decides who sees it (the patient it names, or whoever may see the
// resource it names), and one without securityContext is for system
// clients only.
func TestBinaryAccess(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			mk := func(typ, body string) string {
				t.Helper()
				w := s.as("system", http.MethodPost, "/"+typ, []byte(body))
				mustStatus(t, w, http.StatusCreated)
				return jsonMap(t, w.Body.Bytes())["id"].(string)
			}
			bin := func(ctx string) string {
				sc := ""
				if ctx != "" {
					sc = `,"securityContext":{"reference":"` + ctx + `"}`
				}
				return mk("Binary", `{"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8="`+sc+`}`)
			}
			docOf := func(pid, label string) string {
				meta := ""
				if label != "" {
					meta = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
				}
				return mk("DocumentReference", `{"resourceType":"DocumentReference",`+meta+`"status":"current","subject":{"reference":"Patient/`+pid+`"},
				 "content":[{"attachment":{"contentType":"text/plain","url":"Binary/x"}}]}`)
			}
			// clinic's Consent from A, with a nested deny of PSY-labelled data
			consentPSY := `{"resourceType":"Consent","id":"` + s.consent + `","status":"active",
 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
 "patient":{"reference":"Patient/` + s.pa + `"},"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
 "provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/clinic"}}],
  "action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}],
  "provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}]}}`
			mustStatus(t, s.as("system", http.MethodPut, "/Consent/"+s.consent, []byte(consentPSY)), http.StatusOK)

			binA := bin("Patient/" + s.pa)
			binAabs := bin("http://fhir.test/Patient/" + s.pa)
			binDocA := bin("DocumentReference/" + docOf(s.pa, ""))
			binPsyA := bin("DocumentReference/" + docOf(s.pa, "PSY"))
			binDocB := bin("DocumentReference/" + docOf(s.pb, ""))
			binNone := bin("")
			binGone := bin("DocumentReference/nosuchdoc")
			binLoop := bin("Binary/" + binNone)
			cases := []struct {
				name, id string
				ok       []string // principals that read it; every other gets 403
			}{
				{"patient context", binA, []string{"patientA", "provider", "system"}},
				{"absolute patient context", binAabs, []string{"patientA", "provider", "system"}},
				{"document of A", binDocA, []string{"patientA", "provider", "system"}},
				{"PSY document of A", binPsyA, []string{"patientA", "system"}},
				{"document of B", binDocB, []string{"patientB", "system"}},
				{"no context", binNone, []string{"system"}},
				{"context missing", binGone, []string{"system"}},
				{"context another Binary", binLoop, []string{"system"}},
			}
			for _, c := range cases {
				for _, who := range []string{"patientA", "patientB", "provider", "provider-nc", "system"} {
					want := http.StatusForbidden
					for _, ok := range c.ok {
						if ok == who {
							want = http.StatusOK
						}
					}
					w := s.as(who, http.MethodGet, "/Binary/"+c.id, nil)
					if w.Code != want {
						t.Errorf("%s as %s: %d, want %d: %.200s", c.name, who, w.Code, want, w.Body.String())
					}
					if w.Code == http.StatusForbidden && strings.Contains(w.Body.String(), "aGVsbG8=") {
						t.Errorf("%s as %s: a refusal carries the content", c.name, who)
					}
					// a search never returns what a read refuses
					w = s.as(who, http.MethodGet, "/Binary?_id="+c.id, nil)
					mustStatus(t, w, http.StatusOK)
					if got := strings.Contains(w.Body.String(), `"id":"`+c.id+`"`); got != (want == http.StatusOK) {
						t.Errorf("%s as %s: search shows it: %v", c.name, who, got)
					}
				}
			}
			// a patient may not store a Binary naming another patient
			w := s.as("patientA", http.MethodPost, "/Binary", []byte(`{"resourceType":"Binary","contentType":"text/plain","data":"aGk=","securityContext":{"reference":"Patient/`+s.pb+`"}}`))
			mustStatus(t, w, http.StatusForbidden)
			w = s.as("patientA", http.MethodPost, "/Binary", []byte(`{"resourceType":"Binary","contentType":"text/plain","data":"aGk=","securityContext":{"reference":"Patient/`+s.pa+`"}}`))
			mustStatus(t, w, http.StatusCreated)
		})
	}
}
