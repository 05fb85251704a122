package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
)

// auditEvents lists the events of the trail, oldest first.
func auditEvents(t *testing.T, tr *audit.Trail) []*audit.Event {
	t.Helper()
	var out []*audit.Event
	if err := tr.Log().ScanAudit(context.Background(), 1, func(r *storage.AuditRecord) error {
		e, err := audit.EventOf(r)
		out = append(out, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAuditEventReadOnly: every way of writing an AuditEvent answers 405
// to everybody (anonymous too), and the trail is left as it was (but for
// the events of the attempts themselves).
func TestAuditEventReadOnly(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			anon := newHarness(t, k, server.Config{})
			w := s.as("auditor", http.MethodGet, "/AuditEvent?_count=1&_sort=-date", nil)
			mustStatus(t, w, http.StatusOK)
			victim := jsonMap(t, w.Body.Bytes())["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
			id := victim["id"].(string)
			before := s.as("auditor", http.MethodGet, "/AuditEvent/"+id, nil).Body.String()
			forged, _ := json.Marshal(map[string]any{"resourceType": "AuditEvent", "id": id, "type": map[string]any{"code": "rest"},
				"recorded": "2020-01-01T00:00:00Z", "agent": []any{map[string]any{"requestor": true}}, "source": map[string]any{"observer": map[string]any{"display": "x"}}})
			entry := func(method, url string) []byte {
				e := map[string]any{"request": map[string]any{"method": method, "url": url}}
				if method == "POST" || method == "PUT" {
					e["resource"] = json.RawMessage(forged)
				}
				b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{e}})
				return b
			}
			attempts := []struct {
				method, path string
				body         []byte
				hdr          []string
			}{
				{http.MethodPost, "/AuditEvent", forged, nil},
				{http.MethodPut, "/AuditEvent/" + id, forged, nil},
				{http.MethodPut, "/AuditEvent/audit-0000000000999999", forged, nil},
				{http.MethodPatch, "/AuditEvent/" + id, []byte(`[{"op":"replace","path":"/outcome","value":"0"}]`), []string{"Content-Type: application/json-patch+json"}},
				{http.MethodDelete, "/AuditEvent/" + id, nil, nil},
				{http.MethodPut, "/AuditEvent?_id=" + id, forged, nil},
				{http.MethodDelete, "/AuditEvent?_id=" + id, nil, nil},
				{http.MethodPost, "/AuditEvent", forged, []string{"If-None-Exist: _id=" + id}},
				{http.MethodPost, "/", entry("POST", "AuditEvent"), nil},
				{http.MethodPost, "/", entry("PUT", "AuditEvent/"+id), nil},
				{http.MethodPost, "/", entry("DELETE", "AuditEvent/"+id), nil},
			}
			head0, _ := s.auditor.Log().AuditHead(context.Background())
			tries := 0
			for _, who := range append(principals, "auditor", "anonymous") {
				for _, a := range attempts {
					var r interface {
						Result() *http.Response
					}
					var code int
					var body string
					if who == "anonymous" {
						w := anon.do(a.method, a.path, a.body, a.hdr...)
						code, body, r = w.Code, w.Body.String(), w
					} else {
						w := s.as(who, a.method, a.path, a.body, a.hdr...)
						code, body, r = w.Code, w.Body.String(), w
					}
					_ = r
					want := http.StatusMethodNotAllowed // before authentication: for everybody
					if a.path == "/" && map[string]bool{"none": true, "bad-sig": true, "expired": true, "wrong-aud": true}[who] {
						want = http.StatusUnauthorized // a Bundle needs a token; its entries are checked once it has one
					}
					if code != want || !strings.Contains(body, "OperationOutcome") {
						t.Errorf("%s %s as %s: %d %.200s", a.method, a.path, who, code, body)
					}
					tries++
				}
			}
			if after := s.as("auditor", http.MethodGet, "/AuditEvent/"+id, nil).Body.String(); after != before {
				t.Errorf("the event changed:\n%s\n%s", before, after)
			}
			rep, err := audit.VerifyLog(context.Background(), s.auditor.Log(), audit.VerifyOptions{Keys: trailKeys})
			if err != nil || !rep.OK() {
				t.Fatalf("%v %v", err, rep.Problems)
			}
			// every attempt by an authenticated principal is itself on the trail, as a refusal
			evs := auditEvents(t, s.auditor)
			refused := 0
			for _, e := range evs[head0.Seq:] {
				if e.OutcomeDesc == "the audit trail is read-only" && e.Outcome == audit.MinorFailure {
					refused++
				}
			}
			if refused < len(attempts)*5 {
				t.Errorf("%d refusals recorded for %d attempts", refused, tries)
			}
			for _, e := range evs {
				if e.Resource == "AuditEvent/"+id && e.Interaction == "delete" && e.Outcome == audit.Success {
					t.Errorf("a delete of the trail succeeded: %+v", e)
				}
			}
		})
	}
}

// TestAuditEventRelease: each principal sees exactly what the trust model
// gives it of the trail, with exact totals, across pages.
func TestAuditEventRelease(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			// accesses to record: the provider and patient B read
			for i := 0; i < 3; i++ {
				mustStatus(t, s.as("provider", http.MethodGet, "/Observation/"+s.oa, nil), http.StatusOK)
			}
			if w := s.as("patientB", http.MethodGet, "/Observation/"+s.oa, nil); w.Code != http.StatusForbidden {
				t.Fatalf("B reads A's data: %d", w.Code)
			}
			all := auditEvents(t, s.auditor)
			count := func(f func(e *audit.Event) bool) int {
				n := 0
				for _, e := range all {
					if f(e) {
						n++
					}
				}
				return n
			}
			for who, want := range map[string]int{
				"patientA":    count(func(e *audit.Event) bool { return e.Patient == "Patient/"+s.pa }),
				"patientB":    count(func(e *audit.Event) bool { return e.Patient == "Patient/"+s.pb }),
				"provider":    count(func(e *audit.Event) bool { return e.ClientID == "clinic" || e.Who == "Organization/clinic" }),
				"provider-nc": count(func(e *audit.Event) bool { return e.ClientID == "clinic2" || e.Who == "Organization/clinic2" }),
				"auditor":     len(all),
			} {
				// page through 2 at a time: the total and the pages agree
				var got []string
				path := "/AuditEvent?_count=2&_total=accurate"
				total := -1
				for path != "" {
					w := s.as(who, http.MethodGet, strings.TrimPrefix(path, "http://fhir.test"), nil)
					mustStatus(t, w, http.StatusOK)
					b := jsonMap(t, w.Body.Bytes())
					if n, ok := b["total"].(json.Number); ok {
						v, _ := n.Int64()
						total = int(v)
					}
					entries, _ := b["entry"].([]any)
					for _, e := range entries {
						got = append(got, e.(map[string]any)["resource"].(map[string]any)["id"].(string))
					}
					path = ""
					for _, l := range b["link"].([]any) {
						if l.(map[string]any)["relation"] == "next" {
							path = l.(map[string]any)["url"].(string)
						}
					}
				}
				// reading the trail is itself recorded, after the page counted
				if len(got) < want || total != len(got) && who != "auditor" {
					t.Errorf("%s: %d events (total %d), want %d", who, len(got), total, want)
				}
			}
			// patient B's refused attempt is on A's trail, not on B's
			mine := jsonMap(t, s.as("patientA", http.MethodGet, "/AuditEvent?outcome=4&_count=100", nil).Body.Bytes())
			if !strings.Contains(fmt.Sprint(mine["entry"]), "Patient/"+s.pb) {
				t.Errorf("A does not see B's refused attempt on its data")
			}
			// a single event of another is 403, an unknown one 404
			var other string
			for i, e := range all {
				if e.Patient == "Patient/"+s.pb {
					other = audit.ID(int64(i + 1))
				}
			}
			if w := s.as("patientA", http.MethodGet, "/AuditEvent/"+other, nil); w.Code != http.StatusForbidden {
				t.Errorf("A reads B's event: %d", w.Code)
			}
			if w := s.as("patientA", http.MethodGet, "/AuditEvent/audit-0000000099999999", nil); w.Code != http.StatusNotFound {
				t.Errorf("unknown event: %d", w.Code)
			}
			if w := s.as("system", http.MethodGet, "/AuditEvent/"+other, nil); w.Code != http.StatusForbidden {
				t.Errorf("a wildcard-scoped system client reads an event: %d", w.Code)
			}
			// searches by the parameters the trail answers
			for q, want := range map[string]string{
				"patient=Patient/" + s.pa:                  s.pa,
				"entity=Observation/" + s.oa:               s.oa,
				"agent=Organization/clinic&action=R":       "Organization/clinic",
				"agent:identifier=clinic&_sort=-date":      "clinic",
				"date=ge2000-01-01&outcome=0&subtype=read": "read",
				"type=rest&_summary=count":                 "",
			} {
				w := s.as("auditor", http.MethodGet, "/AuditEvent?"+q, nil)
				mustStatus(t, w, http.StatusOK)
				b := jsonMap(t, w.Body.Bytes())
				if want != "" && !strings.Contains(w.Body.String(), want) || b["total"] == nil && want == "" {
					t.Errorf("%s: %.300s", q, w.Body.String())
				}
				if want != "" && strings.Contains(w.Body.String(), `"mode":"outcome"`) {
					t.Errorf("%s: a parameter was ignored: %.300s", q, w.Body.String())
				}
			}
			w := s.as("auditor", http.MethodGet, "/AuditEvent?address=x", nil, "Prefer: handling=strict")
			if w.Code != http.StatusBadRequest {
				t.Errorf("an unindexed parameter in strict handling: %d", w.Code)
			}
			// Patient/[id]/AuditEvent is the patient's events
			w = s.as("patientA", http.MethodGet, "/Patient/"+s.pa+"/AuditEvent", nil)
			mustStatus(t, w, http.StatusOK)
			if !strings.Contains(w.Body.String(), "Patient/"+s.pa) {
				t.Errorf("compartment search: %.300s", w.Body.String())
			}
		})
	}
}

// TestAuditDurableBeforeAnswer: a read's event is in the log when its
// answer arrives; a trail that cannot record refuses to answer (503) and
// gives nothing away.
func TestAuditDurableBeforeAnswer(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		tr := openTrail(t, h.store)
		srv := server.New(server.Config{Store: h.store, Search: testRegistry, Auditor: tr, BaseURL: "http://fhir.test"})
		h2 := &harness{t: t, store: h.store, srv: srv}
		id := h2.create(patientBody)
		before, _ := tr.Log().AuditHead(context.Background())
		mustStatus(t, h2.do(http.MethodGet, "/Patient/"+id, nil), http.StatusOK)
		after, _ := tr.Log().AuditHead(context.Background())
		if after.Seq != before.Seq+1 {
			t.Fatalf("head %d after a read, was %d", after.Seq, before.Seq)
		}
		evs := auditEvents(t, tr)
		if e := evs[len(evs)-1]; e.Patient != "Patient/"+id || e.Interaction != "read" {
			t.Errorf("read event %+v", e)
		}
		// the create's event was committed with the Patient, naming its stored version
		if e := evs[len(evs)-2]; e.Interaction != "create" || len(e.Resources) != 1 || e.Resources[0] != "Patient/"+id+"/_history/1" {
			t.Errorf("create event %+v", e)
		}
		tr.Close()
		for _, path := range []string{"/Patient/" + id, "/Patient?_id=" + id} {
			w := h2.do(http.MethodGet, path, nil)
			if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "Chalmers") || w.Header().Get("ETag") != "" {
				t.Errorf("%s without a trail: %d %.300s", path, w.Code, w.Body.String())
			}
			outcome(t, w)
		}
	})
}

// TestAccessLog: the patient's plain summary of its trail.
func TestAccessLog(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			mustStatus(t, s.as("provider", http.MethodGet, "/Observation/"+s.oa, nil), http.StatusOK)
			mustStatus(t, s.as("patientB", http.MethodGet, "/Observation/"+s.oa, nil), http.StatusForbidden)
			w := s.as("patientA", http.MethodGet, "/Patient/"+s.pa+"/$access-log?_count=500", nil)
			mustStatus(t, w, http.StatusOK)
			body := w.Body.String()
			for _, want := range []string{`"resourceType":"Parameters"`, "Organization/clinic", "Consent/" + s.consent, `"valueCode":"allowed"`, `"valueCode":"refused"`, "Observation/" + s.oa, "was refused read of Observation/" + s.oa} {
				if !strings.Contains(body, want) {
					t.Errorf("access log lacks %s: %.3000s", want, body)
				}
			}
			b := jsonMap(t, w.Body.Bytes())
			for _, p := range b["parameter"].([]any)[1:] {
				parts := fmt.Sprint(p)
				if !strings.Contains(parts, "text") || !strings.Contains(parts, "AuditEvent/audit-") {
					t.Errorf("an access without its sentence or event: %s", parts)
				}
			}
			for who, want := range map[string]int{"patientB": 403, "provider": 403, "system": 403, "auditor": 200} {
				if w := s.as(who, http.MethodGet, "/Patient/"+s.pa+"/$access-log", nil); w.Code != want {
					t.Errorf("%s: %d, want %d", who, w.Code, want)
				}
			}
			// paged, newest first
			w = s.as("patientA", http.MethodGet, "/Patient/"+s.pa+"/$access-log?_count=1", nil)
			if !strings.Contains(w.Body.String(), `"name":"next"`) {
				t.Errorf("no next page: %.300s", w.Body.String())
			}
			mustStatus(t, s.as("none", http.MethodGet, "/OperationDefinition/Patient-access-log", nil), http.StatusUnauthorized)
			d := s.as("patientA", http.MethodGet, "/OperationDefinition/Patient-access-log", nil)
			mustStatus(t, d, http.StatusOK)
			if jsonMap(t, d.Body.Bytes())["code"] != "access-log" {
				t.Errorf("definition %.200s", d.Body.String())
			}
		})
	}
}

// TestAuditNamesProviderReads: a consented provider's searches (plain,
// with _include and _revinclude, compartment) and $everything each leave
// an event of the provider naming the patient whose data they returned.
func TestAuditNamesProviderReads(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			for _, path := range []string{
				"/Observation?patient=" + s.pa,
				"/Observation",
				"/Observation?_id=" + s.oa + "&_include=Observation:subject",
				"/Patient?_id=" + s.pa + "&_revinclude=Observation:subject",
				"/Patient/" + s.pa + "/$everything",
				"/Patient/" + s.pa + "/Observation",
			} {
				before := len(auditEvents(t, s.auditor))
				w := s.as("provider", http.MethodGet, path, nil)
				mustStatus(t, w, http.StatusOK)
				if !strings.Contains(w.Body.String(), `"id":"`+s.oa+`"`) {
					t.Fatalf("%s: the Observation is not returned: %s", path, w.Body.String())
				}
				named := false
				for _, e := range auditEvents(t, s.auditor)[before:] {
					if e.ClientID == "clinic" && e.Patient == "Patient/"+s.pa {
						named = true
					}
				}
				if !named {
					t.Errorf("%s: no event of the provider names Patient/%s", path, s.pa)
				}
			}
		})
	}
}
