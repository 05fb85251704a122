package server_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestTrustRegressions replays each class of leak the security review of
// issue 14 found, on both stores: a provider granting itself consent, a
// patient planting data in another's record, search side doors (_has on
// types outside the compartment, $everything of an unconsented patient,
// Provenance and stored Bundles, includes through withheld resources,
// history totals, paging links) and audit events of others. The property
// test (authzprop) covers the same ground at random; these are the
// examples, kept readable.
func TestTrustRegressions(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			sys := func(method, path, body string) map[string]any {
				t.Helper()
				w := s.as("system", method, path, []byte(body))
				if w.Code >= 300 {
					t.Fatalf("%s %s as system: %d %.300s", method, path, w.Code, w.Body.String())
				}
				return jsonMap(t, w.Body.Bytes())
			}
			status := func(who, method, path, body string, want int, hdr ...string) string {
				t.Helper()
				var b []byte
				if body != "" {
					b = []byte(body)
				}
				w := s.as(who, method, path, b, hdr...)
				if w.Code != want {
					t.Errorf("%s %s as %s: %d, want %d: %.300s", method, path, who, w.Code, want, w.Body.String())
				}
				return w.Body.String()
			}
			// A's record: an Observation performed by a Practitioner and
			// naming a Medication, a Provenance of it, a stored collection
			// Bundle holding it
			prac := sys(http.MethodPost, "/Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Secret-Specialist"}]}`)["id"].(string)
			med := sys(http.MethodPost, "/Medication", `{"resourceType":"Medication","code":{"text":"rare-drug"}}`)["id"].(string)
			mr := sys(http.MethodPost, "/MedicationRequest", `{"resourceType":"MedicationRequest","status":"active","intent":"order",
				"medicationReference":{"reference":"Medication/`+med+`"},"subject":{"reference":"Patient/`+s.pa+`"}}`)["id"].(string)
			obs := sys(http.MethodPost, "/Observation", strings.Replace(obsFor(s.pa), `"status"`, `"performer":[{"reference":"Practitioner/`+prac+`"}],"status"`, 1))["id"].(string)
			prov := sys(http.MethodPost, "/Provenance", `{"resourceType":"Provenance","target":[{"reference":"Observation/`+obs+`"}],
				"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"reference":"Practitioner/`+prac+`"}}]}`)["id"].(string)
			bundle := sys(http.MethodPost, "/Bundle", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://fhir.test/Observation/`+obs+`",
				"resource":`+strings.Replace(obsFor(s.pa), `"resourceType":"Observation",`, `"resourceType":"Observation","id":"`+obs+`",`, 1)+`}]}`)["id"].(string)

			t.Run("self-granted consent", func(t *testing.T) {
				grant := fmt.Sprintf(consentBody, s.pb)
				status("provider-nc", http.MethodPost, "/Consent", grant, http.StatusForbidden)
				status("provider", http.MethodPut, "/Consent/"+s.consent, strings.Replace(fmt.Sprintf(consentBody, s.pa), `"resourceType":"Consent",`, `"resourceType":"Consent","id":"`+s.consent+`",`, 1), http.StatusForbidden)
				status("provider", http.MethodDelete, "/Consent/"+s.consent, "", http.StatusForbidden)
				tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Consent"},"resource":` + grant + `}]}`
				status("provider-nc", http.MethodPost, "/", tx, http.StatusForbidden)
				// another patient, and a system client that is not B's custodian
				status("patientA", http.MethodPost, "/Consent", grant, http.StatusForbidden)
				status("lab", http.MethodPost, "/Consent", grant, http.StatusForbidden)
				// the custodian must say it acts for the patient
				status("system", http.MethodPost, "/Consent", strings.Replace(grant, `"organization":[{"reference":"Organization/hospital"}],`, "", 1), http.StatusUnprocessableEntity)
				// and nothing of B reached clinic2
				status("provider-nc", http.MethodGet, "/Patient/"+s.pb, "", http.StatusForbidden)
				// the custodian's Consent for B, recorded as on B's behalf
				w := s.as("system", http.MethodPost, "/Consent", []byte(grant))
				if w.Code != http.StatusCreated {
					t.Fatalf("custodian: %d %s", w.Code, w.Body.String())
				}
				cid := jsonMap(t, w.Body.Bytes())["id"].(string)
				trail := status("auditor", http.MethodGet, "/AuditEvent?patient=Patient/"+s.pb+"&_count=200", "", http.StatusOK)
				if !strings.Contains(trail, "on the patient's behalf by its custodian Organization/hospital") {
					t.Errorf("the custodian's Consent %s is not recorded as on the patient's behalf: %.600s", cid, trail)
				}
			})

			t.Run("planting", func(t *testing.T) {
				plant := strings.Replace(obsFor(s.pb), `"status"`, `"performer":[{"reference":"Patient/`+s.pa+`"}],"status"`, 1)
				status("patientA", http.MethodPost, "/Observation", plant, http.StatusForbidden)
				tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},"resource":` + plant + `}]}`
				status("patientA", http.MethodPost, "/", tx, http.StatusForbidden)
				status("patientA", http.MethodPost, "/Provenance", `{"resourceType":"Provenance","target":[{"reference":"Patient/`+s.pa+`"},{"reference":"Observation/`+s.oa+`"},{"reference":"Patient/`+s.pb+`"}],"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"reference":"Patient/`+s.pa+`"}}]}`, http.StatusForbidden)
				status("patientA", http.MethodPost, "/Medication", `{"resourceType":"Medication","code":{"text":"x"}}`, http.StatusForbidden)
				status("patientA", http.MethodPut, "/Patient/"+s.pa, `{"resourceType":"Patient","id":"`+s.pa+`","name":[{"family":"Alpha"}],"link":[{"other":{"reference":"Patient/`+s.pb+`"},"type":"seealso"}]}`, http.StatusForbidden)
				// B sees nothing new in its record
				if body := status("patientB", http.MethodGet, "/Observation?subject=Patient/"+s.pb, "", http.StatusOK); strings.Count(body, `"resourceType":"Observation"`) != 1 {
					t.Errorf("B's Observations after the planting attempts: %.400s", body)
				}
				// a binary upload naming another patient
				status("patientA", http.MethodPost, "/Binary", "hello", http.StatusForbidden, "Content-Type: text/plain", "X-Security-Context: Patient/"+s.pb)
			})

			t.Run("side doors", func(t *testing.T) {
				for _, who := range []string{"patientB", "provider-nc"} {
					for _, q := range []string{
						"/Medication?_has:MedicationRequest:medication:subject=Patient/" + s.pa,
						"/Practitioner?_has:Observation:performer:code=8867-4",
						"/Practitioner?name=Secret-Specialist&_has:Observation:performer:subject=Patient/" + s.pa,
						"/Observation?_id=" + obs + "&_include=Observation:performer",
						"/Provenance?target=Observation/" + obs,
						"/Patient?_id=" + s.pa + "&_revinclude=Provenance:target",
						"/Observation?subject:Patient.name=Alpha",
						"/Bundle?_id=" + bundle,
					} {
						body := status(who, http.MethodGet, q, "", http.StatusOK)
						for _, secret := range []string{med, prac, obs, prov, bundle, s.pa} {
							if strings.Contains(body, `"id":"`+secret+`"`) {
								t.Errorf("%s %s: the answer holds %s: %.400s", who, q, secret, body)
							}
						}
					}
					status(who, http.MethodGet, "/Patient/"+s.pa+"/$everything", "", http.StatusForbidden)
					status(who, http.MethodGet, "/Provenance/"+prov, "", http.StatusForbidden)
					status(who, http.MethodGet, "/Bundle/"+bundle, "", http.StatusForbidden)
					status(who, http.MethodGet, "/MedicationRequest/"+mr, "", http.StatusForbidden)
					// counts and links never tell what is withheld
					for _, q := range []string{"/Observation/_history", "/Observation?_total=accurate&code=8867-4", "/Observation?code=8867-4&_summary=count"} {
						body := status(who, http.MethodGet, q, "", http.StatusOK)
						if strings.Contains(body, `"total":`) && !strings.Contains(body, `"total":0`) && !(who == "patientB" && strings.Contains(body, `"total":1`)) {
							t.Errorf("%s %s counts what is withheld: %.300s", who, q, body)
						}
					}
					body := status(who, http.MethodGet, "/Observation?subject=Patient/"+s.pa+"&_count=1", "", http.StatusOK)
					if strings.Contains(body, `"next"`) {
						t.Errorf("%s: paging withheld matches gives a next link: %.300s", who, body)
					}
				}
				// the consented provider does see them
				body := status("provider", http.MethodGet, "/Provenance?target=Observation/"+obs, "", http.StatusOK)
				if !strings.Contains(body, prov) {
					t.Errorf("the consented provider misses the Provenance of A's data: %.300s", body)
				}
				body = status("provider", http.MethodGet, "/Patient/"+s.pa+"/$everything", "", http.StatusOK)
				for _, want := range []string{med, prac, obs} {
					if !strings.Contains(body, want) {
						t.Errorf("the consented provider's $everything misses %s", want)
					}
				}
			})

			t.Run("audit trail", func(t *testing.T) {
				status("provider", http.MethodGet, "/Observation/"+s.oa, "", http.StatusOK)
				// the events are durable before each answer: nothing to flush
				all := jsonMap(t, s.as("auditor", http.MethodGet, "/AuditEvent?_count=1000", nil).Body.Bytes())
				entries, _ := all["entry"].([]any)
				if len(entries) == 0 {
					t.Fatal("no audit events")
				}
				for _, e := range entries {
					id := e.(map[string]any)["resource"].(map[string]any)["id"].(string)
					raw := fmt.Sprint(e)
					if !strings.Contains(raw, "Patient/"+s.pb) {
						status("patientB", http.MethodGet, "/AuditEvent/"+id, "", http.StatusForbidden)
					}
					if !strings.Contains(raw, "clinic2") {
						status("provider-nc", http.MethodGet, "/AuditEvent/"+id, "", http.StatusForbidden)
					}
				}
				for _, who := range []string{"patientB", "provider-nc", "system", "lab"} {
					status(who, http.MethodPost, "/AuditEvent", `{"resourceType":"AuditEvent"}`, http.StatusMethodNotAllowed)
				}
				first := entries[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
				status("system", http.MethodDelete, "/AuditEvent/"+first, "", http.StatusMethodNotAllowed)
				status("none", http.MethodDelete, "/AuditEvent/"+first, "", http.StatusMethodNotAllowed)
				status("auditor", http.MethodGet, "/AuditEvent/"+first, "", http.StatusOK)
			})
			_ = base64.StdEncoding
		})
	}
}
