package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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
	case <-time.After(60 * time.Second):
		// generous: a delivery that failed once under load is retried
		// only after River's leader has moved it back to available (tests
		// that cause events first wait for their Subscriptions to be
		// active: awaitActive)
		t.Fatal("no notification arrived")
		return nil
	}
}

// awaitActive waits until the Subscriptions are active: the endpoint has
// the handshake before the gateway has recorded its answer, and an event
// that happens before that is, by the spec, not the Subscription's.
func awaitActive(t *testing.T, f *soFixture, ids ...string) {
	t.Helper()
	for _, id := range ids {
		for i := 0; jsonMap(t, f.getAs(t, "system", "Subscription/"+id))["status"] != "active"; i++ {
			if i > 1500 {
				t.Fatalf("Subscription/%s not active", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func subscriptionBody(topic, filter, endpoint string) []byte {
	return []byte(`{"resourceType":"Subscription","status":"requested","reason":"second opinions",
"meta":{"profile":["` + notify.ProfileSubscription + `"]},"criteria":"` + topic + `",
"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":"` + filter + `"}]},
"channel":{"type":"rest-hook","endpoint":"` + endpoint + `","payload":"application/fhir+json",
"_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"id-only"}]}}}`)
}

// startNotify runs the notification service on the fixture's store, as
// the gateway does.
func startNotify(t *testing.T, s *secured) {
	t.Helper()
	svc, err := notify.New(context.Background(), notify.Config{
		Store: s.store, BaseURL: "http://fhir.test", AllowHTTP: true,
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
	s.srv.RegisterSubscriptions(svc)
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
			startNotify(t, f.secured)

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
			awaitActive(t, f, subID, patientSub)
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

// coreSubscription is an R4 core Subscription: search criteria, no topic.
func coreSubscription(id, status string) []byte {
	idField := ""
	if id != "" {
		idField = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Subscription",` + idField + `"status":"` + status + `","reason":"glucose results","criteria":"Observation?code=1234",
"channel":{"type":"rest-hook","endpoint":"https://x.example/hook","payload":"application/fhir+json"}}`)
}

// refusedCriteria checks a 422 whose OperationOutcome names
// Subscription.criteria (prefixed with the entry inside a Bundle) and the
// topics served.
func refusedCriteria(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	refusedAt(t, w, `"Subscription.criteria"`)
}

// refusedAt is refusedCriteria with the expression the refusal must name
// (inside a transaction, the entry's path).
func refusedAt(t *testing.T, w *httptest.ResponseRecorder, expr string) {
	t.Helper()
	mustStatus(t, w, http.StatusUnprocessableEntity)
	oo := outcome(t, w)
	b, _ := json.Marshal(oo)
	if !strings.Contains(string(b), expr) {
		t.Errorf("the refusal does not name %s: %s", expr, b)
	}
	if !strings.Contains(string(b), notify.TopicNewRequest) || !strings.Contains(string(b), notify.TopicStatusChanged) {
		t.Errorf("the refusal does not name the topics served: %s", b)
	}
}

// TestSubscriptionQueryBasedRefused: an R4 core query-based Subscription,
// which the gateway would never notify, is refused on create, update and
// inside a transaction, unless its status is off; /metadata says what is
// served.
func TestSubscriptionQueryBasedRefused(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			startNotify(t, s)
			s.tokens["clinic-w"] = s.is.ClientToken(t, "clinic", "system/*.cruds")
			for _, who := range []string{"system", "clinic-w"} {
				refusedCriteria(t, s.as(who, http.MethodPost, "/Subscription", coreSubscription("", "requested")))
			}
			refusedCriteria(t, s.as("system", http.MethodPut, "/Subscription/q1", coreSubscription("q1", "requested")))
			mustStatus(t, s.as("system", http.MethodGet, "/Subscription/q1", nil), http.StatusNotFound)

			// an inactive record is kept as sent; switching it on is refused
			w := s.as("system", http.MethodPost, "/Subscription", coreSubscription("", "off"))
			mustStatus(t, w, http.StatusCreated)
			id := jsonMap(t, w.Body.Bytes())["id"].(string)
			refusedCriteria(t, s.as("system", http.MethodPut, "/Subscription/"+id, coreSubscription(id, "requested")))
			if got := jsonMap(t, s.as("system", http.MethodGet, "/Subscription/"+id, nil).Body.Bytes())["status"]; got != "off" {
				t.Errorf("the refused update left status %v", got)
			}
			patch := []byte(`[{"op":"replace","path":"/status","value":"active"}]`)
			refusedCriteria(t, s.as("system", http.MethodPatch, "/Subscription/"+id, patch, "Content-Type: application/json-patch+json"))

			// the same inside a transaction: nothing of it is stored
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[
			 {"fullUrl":"urn:uuid:8f0a2b4c-6d8e-4f0a-9b1c-3d5e7f9a1b2c","resource":` + obsFor(s.pa) + `,"request":{"method":"POST","url":"Observation"}},
			 {"resource":` + string(coreSubscription("", "requested")) + `,"request":{"method":"POST","url":"Subscription"}}]}`
			refusedAt(t, s.as("system", http.MethodPost, "/", []byte(tx)), `"Bundle.entry[1].resource.criteria"`)
			count := func(query string) int {
				w := s.as("system", http.MethodGet, query, nil)
				mustStatus(t, w, http.StatusOK)
				entries, _ := jsonMap(t, w.Body.Bytes())["entry"].([]any)
				return len(entries)
			}
			if n := count("/Subscription?status=requested"); n != 0 {
				t.Errorf("%d requested Subscriptions stored", n)
			}
			if n := count("/Observation?subject=Patient/" + s.pa); n != 1 {
				t.Errorf("the refused transaction left %d Observations, want the 1 there was", n)
			}

			// /metadata: the backport profile, its topics, and the refusal
			w = s.as("none", http.MethodGet, "/metadata", nil)
			mustStatus(t, w, http.StatusOK)
			var cs struct {
				Rest []struct {
					Resource []struct {
						Type             string
						SupportedProfile []string
						Documentation    string
						Extension        []struct{ URL, ValueCanonical string }
					}
				}
			}
			if err := json.Unmarshal(w.Body.Bytes(), &cs); err != nil {
				t.Fatal(err)
			}
			for _, r := range cs.Rest[0].Resource {
				if r.Type != "Subscription" {
					continue
				}
				var topics []string
				for _, e := range r.Extension {
					topics = append(topics, e.ValueCanonical)
				}
				if !slices.Contains(r.SupportedProfile, notify.ProfileSubscription) || !slices.Contains(topics, notify.TopicNewRequest) ||
					!slices.Contains(topics, notify.TopicStatusChanged) || !strings.Contains(r.Documentation, "refused") {
					t.Errorf("Subscription in /metadata: %+v", r)
				}
			}
		})
	}
}
