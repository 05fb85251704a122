package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/notify"
)

// hookSubscriber collects the notification Bundles POSTed to it.
type hookSubscriber struct {
	*httptest.Server
	got chan map[string]string // the status Parameters' values by name, plus "focus"
}

func newHookSubscriber(t *testing.T) *hookSubscriber {
	h := &hookSubscriber{got: make(chan map[string]string, 50)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var bundle struct {
			Type  string
			Entry []struct {
				Resource struct {
					Parameter []struct {
						Name                   string
						ValueCode, ValueString string
						ValueCanonical         string
						Part                   []struct {
							Name           string
							ValueReference struct{ Reference string }
						}
					}
				}
			}
		}
		if err := json.Unmarshal(b, &bundle); err != nil || bundle.Type != "history" || len(bundle.Entry) == 0 {
			t.Errorf("not a notification: %s", b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m := map[string]string{}
		for _, p := range bundle.Entry[0].Resource.Parameter {
			m[p.Name] = p.ValueCode + p.ValueString + p.ValueCanonical
			for _, q := range p.Part {
				if q.Name == "focus" {
					m["focus"] = q.ValueReference.Reference
				}
			}
		}
		h.got <- m
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookSubscriber) next(t *testing.T) map[string]string {
	t.Helper()
	select {
	case m := <-h.got:
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no notification arrived")
		return nil
	}
}

func subscriptionBody(topic, filter, endpoint string) []byte {
	return []byte(`{"resourceType":"Subscription","status":"requested","reason":"second opinions",
"meta":{"profile":["` + notify.ProfileSubscription + `"]},"criteria":"` + topic + `",
"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":"` + filter + `"}]},
"channel":{"type":"rest-hook","endpoint":"` + endpoint + `","payload":"application/fhir+json",
"_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"id-only"}]}}}`)
}

// TestSubscriptionsSecondOpinion: over HTTP with signed tokens, a clinic
// subscribes to its new requests and the requesting system to the
// patient's status changes; a
// $second-opinion notifies the clinic, receiving the Task notifies the
// requester, and $status reports the event count.
func TestSubscriptionsSecondOpinion(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			svc, err := notify.New(context.Background(), notify.Config{
				Store: f.store, BaseURL: "http://fhir.test", AllowHTTP: true,
				PollInterval: 20 * time.Millisecond, RetryDelay: func(int) time.Duration { return 10 * time.Millisecond },
			})
			if err != nil {
				t.Fatal(err)
			}
			svc.Install()
			if err := svc.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = svc.Stop(context.Background()) })
			f.srv.RegisterSubscriptions(svc)

			clinic, patient := newHookSubscriber(t), newHookSubscriber(t)
			w := f.as("so1", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicNewRequest, "Task?owner=Organization/clinic", clinic.URL))
			mustStatus(t, w, http.StatusCreated)
			subID := jsonMap(t, w.Body.Bytes())["id"].(string)
			if m := clinic.next(t); m["type"] != "handshake" {
				t.Fatalf("first notification %v", m)
			}
			// patient tokens may write only their compartment: the requesting
			// system subscribes on the patient's behalf
			w = f.as("system", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicStatusChanged, "Task?patient=Patient/"+f.pid, patient.URL))
			mustStatus(t, w, http.StatusCreated)
			patientSub := jsonMap(t, w.Body.Bytes())["id"].(string)
			patient.next(t)
			for _, id := range []string{subID, patientSub} {
				for i := 0; jsonMap(t, f.getAs(t, "system", "Subscription/"+id))["status"] != "active"; i++ {
					if i > 500 {
						t.Fatalf("Subscription/%s not active", id)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			// a provider may not listen to another organization's requests,
			// nor a patient to another patient's
			w = f.as("so1", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicNewRequest, "Task?owner=Organization/clinic2", clinic.URL))
			mustStatus(t, w, http.StatusForbidden)
			outcome(t, w)
			w = f.as("patientP", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicStatusChanged, "Task?patient=Patient/someone-else", patient.URL))
			mustStatus(t, w, http.StatusForbidden)
			// an unknown topic is refused with an OperationOutcome
			w = f.as("so1", http.MethodPost, "/Subscription", subscriptionBody(notify.TopicBase+"nope", "Task?owner=Organization/clinic", clinic.URL))
			mustStatus(t, w, http.StatusUnprocessableEntity)
			outcome(t, w)

			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, []string{f.c1, f.c2}))
			m := clinic.next(t)
			if m["type"] != "event-notification" || m["events-since-subscription-start"] != "1" || m["focus"] != "http://fhir.test/"+res.tasks[0] {
				t.Fatalf("clinic notified %v, want %s", m, res.tasks[0])
			}
			f.step(t, "so1", res.tasks[0], "received", "2.0", "", 200)
			m = patient.next(t)
			if m["type"] != "event-notification" || m["focus"] != "http://fhir.test/"+res.tasks[0] {
				t.Fatalf("patient notified %v", m)
			}
			select {
			case m := <-clinic.got:
				t.Fatalf("clinic got a second notification %v (clinic2's Task or a status change)", m)
			case <-time.After(200 * time.Millisecond):
			}

			w = f.as("so1", http.MethodGet, "/Subscription/"+subID+"/$status", nil)
			mustStatus(t, w, http.StatusOK)
			if b := w.Body.String(); !strings.Contains(b, `"query-status"`) || !strings.Contains(b, `"events-since-subscription-start","valueString":"1"`) {
				t.Fatalf("$status: %s", b)
			}
			mustStatus(t, f.as("so1", http.MethodGet, "/Subscription/nope/$status", nil), http.StatusNotFound)
		})
	}
}
