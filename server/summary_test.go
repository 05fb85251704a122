package server_test

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/referral/drafting"
	"github.com/fhirgate/fhirgate/server"
)

// fakeModel is an OpenAI-compatible chat-completions endpoint that
// records what it was sent.
type fakeModel struct {
	mu     sync.Mutex
	bodies []string
	fail   bool
}

func (m *fakeModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.bodies = append(m.bodies, string(b))
	fail := m.fail
	m.mu.Unlock()
	if fail || r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer test-key" {
		http.Error(w, `{"error":"nope"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"model":"fake-1","choices":[{"message":{"role":"assistant","content":"The patient has obesity.\n\nBlood pressure is high."},"finish_reason":"stop"}]}`)
}

func (m *fakeModel) last() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.bodies) == 0 {
		return ""
	}
	return m.bodies[len(m.bodies)-1]
}

// TestSummaryHTMLAndNarrative, on both stores: $summary as a printable
// page (by Accept and by _format), well-formed, strict headers, holding
// only what the caller may see; narrative=draft asks the configured model
// with the released, de-identified summary only, labels the answer as
// machine-written, and survives a failing model.
func TestSummaryHTMLAndNarrative(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			model := &fakeModel{}
			ms := httptest.NewServer(model)
			t.Cleanup(ms.Close)
			t.Setenv("FHIRGATE_TEST_MODEL_KEY", "test-key")
			nar, err := drafting.New(drafting.Config{Endpoint: ms.URL + "/v1", Model: "fake-1", APIKeyEnv: "FHIRGATE_TEST_MODEL_KEY"}, ms.Client())
			if err != nil {
				t.Fatal(err)
			}
			f := newSOFixture(t, k, func(c *server.Config) { c.Narrator = nar })
			path := "/Patient/" + f.pid + "/$summary"
			for name, req := range map[string]struct {
				path   string
				accept string
			}{
				"browser Accept": {path, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
				"_format=html":   {path + "?_format=html", ""},
				"_format mime":   {path + "?_format=text/html", "application/fhir+json"},
			} {
				var hdr []string
				if req.accept != "" {
					hdr = append(hdr, "Accept: "+req.accept)
				}
				w := f.as("so2", http.MethodGet, req.path, nil, hdr...)
				mustStatus(t, w, http.StatusOK)
				if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					t.Fatalf("%s: Content-Type %s", name, ct)
				}
				if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || w.Header().Get("Cache-Control") != "no-store" {
					t.Errorf("%s: headers %v", name, w.Header())
				}
				body := w.Body.String()
				wellFormed(t, body)
				for _, want := range []string{"Abnormal results", "Risks", "Missing tests and reviews", "Trends", "Darin"} {
					if !strings.Contains(body, want) {
						t.Errorf("%s: page lacks %q", name, want)
					}
				}
				if strings.Contains(body, "Depressive disorder") || strings.Contains(body, "<script") {
					t.Errorf("%s: the page shows what clinic2 may not see, or a script", name)
				}
			}
			// FHIR JSON stays the default
			w := f.as("so2", http.MethodGet, path, nil, "Accept: application/fhir+json")
			mustStatus(t, w, http.StatusOK)
			if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/fhir+json") {
				t.Errorf("JSON Accept: %s", w.Header().Get("Content-Type"))
			}
			mustStatus(t, f.as("so2", http.MethodGet, path+"?_format=xml", nil), http.StatusNotAcceptable)
			mustStatus(t, f.as("so2", http.MethodGet, path+"?narrative=poem", nil), http.StatusBadRequest)

			// the draft: from what clinic2 may see only, de-identified
			w = f.as("so2", http.MethodGet, path+"?narrative=draft", nil)
			mustStatus(t, w, http.StatusOK)
			sent := model.last()
			if sent == "" || strings.Contains(sent, "Depressive") || strings.Contains(sent, "Darin") || strings.Contains(sent, f.pid) {
				t.Errorf("the model was sent withheld or identifying data (or nothing): %.300s", sent)
			}
			var req struct {
				Model    string
				Messages []struct{ Role, Content string }
			}
			if err := json.Unmarshal([]byte(sent), &req); err != nil || req.Model != "fake-1" || len(req.Messages) != 2 || !strings.Contains(req.Messages[1].Content, "abnormalResults") {
				t.Errorf("request %+v (%v)", req, err)
			}
			comp := jsonMap(t, w.Body.Bytes())["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
			found := false
			for _, s := range comp["section"].([]any) {
				sm := s.(map[string]any)
				if strings.Contains(sm["title"].(string), "Machine-written") {
					found = true
					div := sm["text"].(map[string]any)["div"].(string)
					if !strings.Contains(div, "Machine-written draft") || !strings.Contains(div, "Blood pressure is high.") || sm["author"] == nil {
						t.Errorf("draft section %v", sm)
					}
				}
			}
			if !found {
				t.Error("no machine-written section")
			}
			// the disclosure to the model is in the patient's audit trail
			eventually(t, "the audit trail records the summary sent to the model", func() bool {
				w := f.as("patientP", http.MethodGet, "/AuditEvent?_count=1000", nil)
				mustStatus(t, w, http.StatusOK)
				for _, e := range entriesOf(t, w.Body.Bytes()) {
					ev, _ := json.Marshal(e.(map[string]any)["resource"])
					if strings.Contains(string(ev), "sent to the configured narrative model at 127.0.0.1") && strings.Contains(string(ev), "Organization/clinic2") {
						return true
					}
				}
				return false
			})
			// the patient's own draft may speak of its PSY condition
			mustStatus(t, f.as("patientP", http.MethodGet, path+"?narrative=draft", nil), http.StatusOK)
			if !strings.Contains(model.last(), "Depressive") {
				t.Error("the patient's own draft lacks its own condition")
			}
			// a failing model: the summary still answers, saying so
			model.mu.Lock()
			model.fail = true
			model.mu.Unlock()
			w = f.as("so2", http.MethodGet, path+"?narrative=draft&_format=html", nil)
			mustStatus(t, w, http.StatusOK)
			if !strings.Contains(w.Body.String(), "No machine-written draft") || !strings.Contains(w.Body.String(), "Abnormal results") {
				t.Error("a failing model broke the summary")
			}
		})
	}
}

// TestSummaryNarrativeNotConfigured: asking for a draft without a model
// is a clear 400.
func TestSummaryNarrativeNotConfigured(t *testing.T) {
	f := newSOFixture(t, storeKinds[0])
	w := f.as("patientP", http.MethodGet, "/Patient/"+f.pid+"/$summary?narrative=draft", nil)
	mustStatus(t, w, http.StatusBadRequest)
	outcome(t, w)
}

// wellFormed parses a page as XML (the renderer writes XHTML).
func wellFormed(t *testing.T, page string) {
	t.Helper()
	page = strings.TrimPrefix(page, "<!DOCTYPE html>\n")
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("the page is not well-formed: %v", err)
		}
	}
}
