package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// narrowConsent is soConsent for clinic2 with extra conditions on the root
// permit (a dataPeriod, a class list) and, with deny, a nested deny of
// PSY-labelled data; status is active or inactive. id names the Consent
// for a PUT.
func narrowConsent(pid, id, status, extra string, deny bool) []byte {
	body := soConsent(pid, "Organization/clinic2", deny)
	body = strings.Replace(body, `"status":"active"`, `"id":"`+id+`","status":"`+status+`"`, 1)
	body = strings.Replace(body, `"action":[`, extra+`,"action":[`, 1)
	return []byte(body)
}

const (
	windowStart = "2015-01-01"
	windowEnd   = "2016-12-31"
	classes     = `"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Observation"},{"system":"http://hl7.org/fhir/resource-types","code":"Condition"}`
)

// TestWorkflowReleaseNarrowConsent: a Consent whose permit limits the data
// (a dataPeriod, a class list) still lets the consented specialist see
// the request addressed to it — its inbox Task, the ServiceRequest — and
// fetch its package, which holds only what the Consent permits; another
// provider does not see the Task; a nested deny added later of a label a
// package entry carries refuses the package but not the Task; revoking
// the Consent hides all three.
func TestWorkflowReleaseNarrowConsent(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			for _, v := range []struct {
				name  string
				extra string
				// inPackage checks one entry of the package
				inPackage func(t *testing.T, typ string, res map[string]any)
			}{
				{"dataPeriod", `"dataPeriod":{"start":"` + windowStart + `","end":"` + windowEnd + `"}`, func(t *testing.T, typ string, res map[string]any) {
					if typ != "Observation" {
						return
					}
					d, _ := res["effectiveDateTime"].(string)
					if d == "" {
						d, _ = res["issued"].(string)
					}
					if d < windowStart || d > windowEnd+"T23:59:59.999Z" {
						t.Errorf("Observation/%v of %q is outside the Consent's data period", res["id"], d)
					}
				}},
				{"class", classes + `,{"system":"http://hl7.org/fhir/resource-types","code":"Patient"}]`, func(t *testing.T, typ string, res map[string]any) {
					if !slices.Contains([]string{"Patient", "Observation", "Condition"}, typ) {
						t.Errorf("%s/%v in a package of Observations and Conditions", typ, res["id"])
					}
				}},
			} {
				t.Run(v.name, func(t *testing.T) {
					testNarrowConsent(t, k, v.extra, v.inPackage)
				})
			}
		})
	}
}

func testNarrowConsent(t *testing.T, k storeKind, extra string, inPackage func(*testing.T, string, map[string]any)) {
	f := newSOFixture(t, k)
	// a PSY-labelled Observation inside the window
	psyObs := f.create(t, "system", "Observation", `{"resourceType":"Observation","status":"final",
	 "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
	 "code":{"coding":[{"system":"http://loinc.org","code":"44249-1","display":"PHQ-9 quick depression assessment panel"}]},
	 "subject":{"reference":"Patient/`+f.pid+`"},"effectiveDateTime":"2016-03-01","valueQuantity":{"value":12,"unit":"{score}"}}`)
	// clinic2's Consent becomes the narrow one
	mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", extra, false)), http.StatusOK)
	res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic2"}, []string{f.c2}))
	task, sr, pkg := res.tasks[0], res.serviceRequest, res.packages[0]

	inbox := func(who string) []string {
		t.Helper()
		w := f.as(who, http.MethodGet, "/Task?owner=Organization/clinic2&status=requested", nil)
		mustStatus(t, w, http.StatusOK)
		var ids []string
		entries, _ := jsonMap(t, w.Body.Bytes())["entry"].([]any)
		for _, e := range entries {
			if r, ok := e.(map[string]any)["resource"].(map[string]any); ok {
				ids = append(ids, "Task/"+r["id"].(string))
			}
		}
		return ids
	}
	get := func(who, ref string, want int) []byte {
		t.Helper()
		w := f.as(who, http.MethodGet, "/"+ref, nil)
		if w.Code != want {
			t.Fatalf("%s GET %s: %d, want %d: %.300s", who, ref, w.Code, want, w.Body.String())
		}
		return w.Body.Bytes()
	}

	// the specialist finds and reads its request and its package
	if got := inbox("so2"); !slices.Equal(got, []string{task}) {
		t.Fatalf("clinic2's inbox holds %v, want %s", got, task)
	}
	get("so2", task, http.StatusOK)
	get("so2", sr, http.StatusOK)
	body := get("so2", pkg, http.StatusOK)
	var doc struct {
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range doc.Entry {
		if strings.HasPrefix(e.FullURL, "urn:uuid:") {
			continue // the Composition, Device and Provenance the gateway wrote
		}
		typ := e.Resource["resourceType"].(string)
		count[typ]++
		inPackage(t, typ, e.Resource)
	}
	if count["Patient"] != 1 || count["Observation"] == 0 || count["Condition"] == 0 {
		t.Fatalf("package holds %v", count)
	}
	if !slices.Contains(entryRefs(t, body), "Observation/"+psyObs) {
		t.Fatalf("the PSY Observation is not in the package")
	}
	// the specialist works on its Task
	f.step(t, "so2", task, "received", "2.0", "", http.StatusOK)

	// another provider with a Consent of its own is not party to the Task
	get("so1", task, http.StatusForbidden)
	if w := f.as("so1", http.MethodGet, "/Task?owner=Organization/clinic2", nil); strings.Contains(w.Body.String(), strings.TrimPrefix(task, "Task/")) {
		t.Fatalf("clinic finds clinic2's Task: %.300s", w.Body.String())
	}

	// the patient adds a nested deny of PSY data: the package holds some,
	// so the next fetch is refused; the request stays visible
	mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", extra, true)), http.StatusOK)
	get("so2", pkg, http.StatusForbidden)
	get("so2", task, http.StatusOK)
	get("so2", sr, http.StatusOK)
	get("so2", "Observation/"+psyObs, http.StatusForbidden)

	// the patient revokes the Consent: nothing of the request is visible
	mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "inactive", extra, true)), http.StatusOK)
	get("so2", task, http.StatusForbidden)
	get("so2", sr, http.StatusForbidden)
	get("so2", pkg, http.StatusForbidden)
	f.step(t, "so2", task, "accepted", "3.0", "", http.StatusForbidden)
	// (the Task is received now, so the requested inbox is empty anyway)
	if w := f.as("so2", http.MethodGet, "/Task?owner=Organization/clinic2", nil); strings.Contains(w.Body.String(), strings.TrimPrefix(task, "Task/")) {
		t.Fatalf("a revoked Consent leaves the Task in the inbox: %.300s", w.Body.String())
	}
	// the patient and the requesting side still see it
	get("patientP", task, http.StatusOK)
}

// TestWorkflowReleaseRevokedBeforeFetch: the package made under a
// Consent is refused once the Consent is inactive, even if the provider
// never fetched it before; re-activating it releases it again.
func TestWorkflowReleaseRevokedBeforeFetch(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			extra := `"dataPeriod":{"start":"` + windowStart + `","end":"` + windowEnd + `"}`
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", extra, false)), http.StatusOK)
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic2"}, []string{f.c2}))
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "inactive", extra, false)), http.StatusOK)
			for _, ref := range []string{res.packages[0], res.tasks[0], res.serviceRequest} {
				mustStatus(t, f.as("so2", http.MethodGet, "/"+ref, nil), http.StatusForbidden)
			}
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", extra, false)), http.StatusOK)
			for _, ref := range []string{res.packages[0], res.tasks[0], res.serviceRequest} {
				mustStatus(t, f.as("so2", http.MethodGet, "/"+ref, nil), http.StatusOK)
			}
			// a deny of clinic2 itself, for now, withdraws the relationship
			now := time.Now().UTC()
			until := `"provision":[{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/clinic2"}}],"period":{"start":"` +
				now.AddDate(0, 0, -1).Format("2006-01-02") + `","end":"` + now.AddDate(0, 0, 7).Format("2006-01-02") + `"}}]`
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", extra+","+until, false)), http.StatusOK)
			for _, ref := range []string{res.packages[0], res.tasks[0], res.serviceRequest} {
				mustStatus(t, f.as("so2", http.MethodGet, "/"+ref, nil), http.StatusForbidden)
			}
		})
	}
}

// TestWorkflowReleaseClassWithoutPatient: a Consent whose classes leave
// out Patient cannot carry a package (a document names its patient), and
// $second-opinion says so.
func TestWorkflowReleaseClassWithoutPatient(t *testing.T) {
	f := newSOFixture(t, storeKinds[0])
	mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", classes+"]", false)), http.StatusOK)
	w := f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$second-opinion", soParams(f.pid, []string{"Organization/clinic2"}, []string{f.c2}))
	mustStatus(t, w, http.StatusUnprocessableEntity)
	outcome(t, w)
}

// TestWorkflowReleaseForeignDocument: a document Bundle stored by someone
// else is decided entry by entry too, whatever its references look like:
// an Observation outside the Consent's data period (referring to its
// patient by urn:uuid) refuses the document, and so does a Composition
// written outside it (only the gateway's own packages have a Composition
// that is not decided on its own).
func TestWorkflowReleaseForeignDocument(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			extra := `"dataPeriod":{"start":"` + windowStart + `","end":"` + windowEnd + `"}`
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "active", extra, false)), http.StatusOK)
			doc := func(effective, written string) string {
				return `{"resourceType":"Bundle","type":"document","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:0c3b1a62-2a0c-4f4e-9f0e-5d1e0d3c1a01"},
				 "timestamp":"2024-05-01T10:00:00Z","entry":[
				 {"fullUrl":"urn:uuid:5b6c9a2e-1d7f-4e1a-8c3d-2f4e6a8b0c11","resource":{"resourceType":"Composition","status":"final",
				  "type":{"coding":[{"system":"http://loinc.org","code":"11502-2"}]},"subject":{"reference":"Patient/` + f.pid + `"},
				  "date":"` + written + `","author":[{"reference":"Organization/lab"}],"title":"Lab report",
				  "section":[{"title":"Results","entry":[{"reference":"urn:uuid:7d8e9f10-2a3b-4c5d-8e6f-7a8b9c0d1e22"}]}]}},
				 {"fullUrl":"urn:uuid:7d8e9f10-2a3b-4c5d-8e6f-7a8b9c0d1e22","resource":{"resourceType":"Observation","status":"final",
				  "code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c33"},
				  "effectiveDateTime":"` + effective + `","valueQuantity":{"value":5.4,"unit":"mmol/L"}}},
				 {"fullUrl":"urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c33","resource":{"resourceType":"Patient","name":[{"family":"Skiles"}]}}]}`
			}
			in := f.create(t, "system", "Bundle", doc("2016-02-01", "2016-02-03"))
			out := f.create(t, "system", "Bundle", doc("2019-02-01", "2016-02-03"))
			// the Composition is the lab's writing about the patient, dated
			// when written: data like any other entry
			late := f.create(t, "system", "Bundle", doc("2016-02-01", "2024-05-01"))
			mustStatus(t, f.as("so2", http.MethodGet, "/Bundle/"+in, nil), http.StatusOK)
			mustStatus(t, f.as("so2", http.MethodGet, "/Bundle/"+out, nil), http.StatusForbidden)
			mustStatus(t, f.as("so2", http.MethodGet, "/Bundle/"+late, nil), http.StatusForbidden)
			// without a Consent naming it, a provider sees neither
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, narrowConsent(f.pid, f.c2, "inactive", extra, false)), http.StatusOK)
			mustStatus(t, f.as("so2", http.MethodGet, "/Bundle/"+in, nil), http.StatusForbidden)
		})
	}
}
