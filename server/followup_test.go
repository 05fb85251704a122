package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/notify"
)

// message builds a follow-up Communication of a Task.
func message(task, pid, sender, recipient, inResponseTo, text string, refs ...string) []byte {
	m := map[string]any{"resourceType": "Communication", "status": "completed",
		"partOf":    []any{map[string]any{"reference": task}},
		"subject":   map[string]any{"reference": "Patient/" + pid},
		"sender":    map[string]any{"reference": sender},
		"recipient": []any{map[string]any{"reference": recipient}},
		"sent":      "2025-03-02T10:00:00Z",
	}
	payload := []any{map[string]any{"contentString": text}}
	for _, r := range refs {
		payload = append(payload, map[string]any{"contentReference": map[string]any{"reference": r}})
	}
	m["payload"] = payload
	if inResponseTo != "" {
		m["inResponseTo"] = []any{map[string]any{"reference": inResponseTo}}
	}
	b, _ := json.Marshal(m)
	return b
}

// TestFollowUp: the specialist asks the patient for results (the Task goes
// on-hold, the patient is notified), the patient answers with two results
// (the Task resumes, the specialist is notified): the one the patient's
// Consent releases to the specialist joins its package and can be read,
// the one it does not (PSY-labelled, under a Consent that denies PSY) does
// not, and the gateway tells the patient so. The conversation is the two
// parties' alone; what breaks the rules is refused.
func TestFollowUp(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			startNotify(t, f.secured)
			// clinic2's Consent denies PSY-labelled data
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic2"}, []string{f.c2}))
			tk, pkg := res.tasks[0], res.packages[0]
			before := entryRefs(t, f.getAs(t, "so2", pkg))

			clinicHook, patientHook := newHookSubscriber(t), newHookSubscriber(t)
			w := f.as("so2", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicMessage, "Task?owner=Organization/clinic2", clinicHook.URL))
			mustStatus(t, w, http.StatusCreated)
			clinicSub := jsonMap(t, w.Body.Bytes())["id"].(string)
			w = f.as("system", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicStatusChanged, "Task?patient=Patient/"+f.pid, patientHook.URL))
			mustStatus(t, w, http.StatusCreated)
			patientSub := jsonMap(t, w.Body.Bytes())["id"].(string)
			clinicHook.next(t) // handshakes
			patientHook.next(t)
			awaitActive(t, f, clinicSub, patientSub)

			f.plainPatch(t, "so2", tk, "accepted", "")
			if m := patientHook.next(t); m["focus"] != "http://fhir.test/"+tk {
				t.Fatalf("status notification %v", m)
			}
			// the specialist asks: the Task goes on-hold, the patient hears of it
			w = f.as("so2", http.MethodPost, "/Communication", message(tk, f.pid, "Organization/clinic2", "Patient/"+f.pid, "", "Please send your latest LDL and your PHQ-9 score."))
			mustStatus(t, w, http.StatusCreated)
			question := "Communication/" + jsonMap(t, w.Body.Bytes())["id"].(string)
			if got := jsonMap(t, f.getAs(t, "patientP", tk)); got["status"] != "on-hold" || bserOf(got) != "3.0" {
				t.Fatalf("after the question the Task is %v/%s", got["status"], bserOf(got))
			}
			if m := patientHook.next(t); m["focus"] != "http://fhir.test/"+tk {
				t.Fatalf("on-hold notification %v", m)
			}
			if m := clinicHook.next(t); m["focus"] != "http://fhir.test/"+question {
				t.Fatalf("message notification %v", m)
			}
			// the clinic has a name, which the gateway's note to the patient uses
			mustStatus(t, f.as("system", http.MethodPut, "/Organization/clinic2", []byte(`{"resourceType":"Organization","id":"clinic2","name":"Heart Second Opinions"}`)), http.StatusCreated)
			// the patient records the two results, then answers with both
			ldl := f.create(t, "patientP", "Observation", `{"resourceType":"Observation","status":"final",
			 "code":{"coding":[{"system":"http://loinc.org","code":"18262-6","display":"LDL Cholesterol"}]},
			 "subject":{"reference":"Patient/`+f.pid+`"},"effectiveDateTime":"2025-03-01","valueQuantity":{"value":3.1,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}}`)
			phq := f.create(t, "patientP", "Observation", `{"resourceType":"Observation","status":"final",
			 "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
			 "code":{"coding":[{"system":"http://loinc.org","code":"44261-6","display":"PHQ-9 total score"}]},
			 "subject":{"reference":"Patient/`+f.pid+`"},"effectiveDateTime":"2025-03-01","valueQuantity":{"value":12,"unit":"{score}"}}`)
			// a file inside the message is refused: it is uploaded first
			inline := strings.Replace(string(message(tk, f.pid, "Patient/"+f.pid, "Organization/clinic2", question, "file")), `"payload":[`, `"payload":[{"contentAttachment":{"contentType":"application/pdf","data":"JVBERi0xLjQK"}},`, 1)
			if w := f.as("patientP", http.MethodPost, "/Communication", []byte(inline)); w.Code != http.StatusUnprocessableEntity {
				t.Fatalf("an inline file: %d %s", w.Code, w.Body.String())
			}
			w = f.as("patientP", http.MethodPost, "/Communication", message(tk, f.pid, "Patient/"+f.pid, "Organization/clinic2", question, "Here they are.", "Observation/"+ldl, "Observation/"+phq))
			mustStatus(t, w, http.StatusCreated)
			answer := "Communication/" + jsonMap(t, w.Body.Bytes())["id"].(string)
			if got := jsonMap(t, f.getAs(t, "patientP", tk)); got["status"] != "in-progress" {
				t.Fatalf("after the answer the Task is %v", got["status"])
			}
			if m := clinicHook.next(t); m["focus"] != "http://fhir.test/"+answer {
				t.Fatalf("answer notification %v", m)
			}
			// the package holds the LDL and not the PHQ-9; it is still the
			// specialist's to fetch
			after := entryRefs(t, f.getAs(t, "so2", pkg))
			if !slices.Contains(after, "Observation/"+ldl) || slices.Contains(after, "Observation/"+phq) {
				t.Fatalf("the package: LDL %v, PHQ-9 %v", slices.Contains(after, "Observation/"+ldl), slices.Contains(after, "Observation/"+phq))
			}
			if len(after) != len(before)+1 {
				t.Errorf("the package went from %d to %d stored resources, want one more", len(before), len(after))
			}
			if !strings.Contains(string(f.getAs(t, "so2", pkg)), `"code":"follow-up"`) {
				t.Error("the package's Composition has no follow-up section")
			}
			f.getAs(t, "so2", "Observation/"+ldl)
			mustStatus(t, f.as("so2", http.MethodGet, "/Observation/"+phq, nil), http.StatusForbidden)
			// the gateway told the patient what was shared and what was not;
			// the specialist sees the question and the answer, not that note
			w = f.as("patientP", http.MethodGet, "/Communication?part-of="+tk, nil)
			mustStatus(t, w, http.StatusOK)
			var notice string
			for _, e := range entriesOf(t, w.Body.Bytes()) {
				r := e.(map[string]any)["resource"].(map[string]any)
				if r["sender"] == nil {
					notice = "Communication/" + r["id"].(string)
					text := r["payload"].([]any)[0].(map[string]any)["contentString"].(string)
					// in words: the clinic's name, the results' names
					if !strings.Contains(text, "Not shared with Heart Second Opinions: PHQ-9 total score.") || !strings.Contains(text, "Shared with Heart Second Opinions (added to its package): LDL Cholesterol.") ||
						strings.Contains(text, "Observation/") || strings.Contains(text, "Organization/") {
						t.Errorf("the notice says %q", text)
					}
				}
			}
			if notice == "" || len(entriesOf(t, w.Body.Bytes())) != 3 {
				t.Fatalf("the patient's conversation: %s", w.Body.String())
			}
			w = f.as("so2", http.MethodGet, "/Communication?part-of="+tk, nil)
			mustStatus(t, w, http.StatusOK)
			var seen []string
			for _, e := range entriesOf(t, w.Body.Bytes()) {
				seen = append(seen, "Communication/"+e.(map[string]any)["resource"].(map[string]any)["id"].(string))
			}
			slices.Sort(seen)
			want := []string{question, answer}
			slices.Sort(want)
			if !slices.Equal(seen, want) {
				t.Errorf("the specialist sees %v, want %v", seen, want)
			}
			mustStatus(t, f.as("so2", http.MethodGet, "/"+notice, nil), http.StatusForbidden)
			// clinic, whose Consent releases every resource of the patient, is
			// no party to this Task: it neither reads nor writes its messages
			mustStatus(t, f.as("so1", http.MethodGet, "/"+answer, nil), http.StatusForbidden)
			mustStatus(t, f.as("so1", http.MethodPost, "/Communication", message(tk, f.pid, "Organization/clinic", "Patient/"+f.pid, "", "hello")), http.StatusForbidden)
			// nor may anyone speak for another
			mustStatus(t, f.as("so2", http.MethodPost, "/Communication", message(tk, f.pid, "Patient/"+f.pid, "Organization/clinic2", "", "forged")), http.StatusUnprocessableEntity)
			mustStatus(t, f.as("patientP", http.MethodPost, "/Communication", message(tk, f.pid, "Patient/"+f.pid, "Organization/clinic", "", "to someone else")), http.StatusUnprocessableEntity)
			// a result of another patient cannot be sent
			other := f.create(t, "system", "Observation", obsFor(f.pb))
			mustStatus(t, f.as("system", http.MethodPost, "/Communication", message(tk, f.pid, "Patient/"+f.pid, "Organization/clinic2", "", "theirs", "Observation/"+other)), http.StatusUnprocessableEntity)
			// messages are not deleted; once the request is over, no more
			mustStatus(t, f.as("patientP", http.MethodDelete, "/"+answer, nil), http.StatusConflict)
			f.plainPatch(t, "patientP", tk, "cancelled", "")
			mustStatus(t, f.as("patientP", http.MethodPost, "/Communication", message(tk, f.pid, "Patient/"+f.pid, "Organization/clinic2", "", "one more thing")), http.StatusConflict)
		})
	}
}
