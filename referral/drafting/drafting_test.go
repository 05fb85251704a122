package drafting_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/referral/drafting"
)

func summary(t *testing.T) *referral.CaseSummary {
	t.Helper()
	var rs []*fhir.Resource
	for _, s := range []string{
		`{"resourceType":"Patient","id":"p","name":[{"family":"Secretname","given":["Ann"]}],"gender":"female","birthDate":"1950-02-03","identifier":[{"system":"urn:mrn","value":"MRN-77123"}],"address":[{"city":"Springfield"}]}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"6298-4","display":"Potassium"}]},"subject":{"reference":"Patient/p"},"effectiveDateTime":"2024-01-05","valueQuantity":{"value":6.7,"unit":"mmol/L","code":"mmol/L"}}`,
		`{"resourceType":"Condition","id":"c1","clinicalStatus":{"coding":[{"code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}]},"subject":{"reference":"Patient/p"}}`,
	} {
		r, err := fhir.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	cs := referral.Analyze(rs, referral.AnalyzeOptions{Now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)})
	return &cs
}

// TestDraft: the request is a chat completion with the de-identified
// facts and the key; the answer becomes a Draft naming the model.
func TestDraft(t *testing.T) {
	var got struct {
		Model    string
		Messages []struct{ Role, Content string }
	}
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		auth = r.Header.Get("Authorization")
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"model":"m-2024","choices":[{"message":{"content":"  Hyperkalaemia at 6.7 mmol/L.  "}}]}`)
	}))
	defer srv.Close()
	t.Setenv("DRAFT_KEY", "sk-test")
	c, err := drafting.New(drafting.Config{Endpoint: srv.URL + "/v1/", Model: "m", APIKeyEnv: "DRAFT_KEY"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Draft(context.Background(), summary(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.Text != "Hyperkalaemia at 6.7 mmol/L." || d.Model != "m-2024" || !strings.HasPrefix(d.Endpoint, "127.0.0.1:") {
		t.Errorf("draft %+v", d)
	}
	if auth != "Bearer sk-test" || got.Model != "m" || len(got.Messages) != 2 || got.Messages[0].Role != "system" {
		t.Fatalf("request: auth %q, %+v", auth, got)
	}
	facts := got.Messages[1].Content
	for _, leak := range []string{"Secretname", "Ann", "MRN-77123", "Springfield", "1950"} {
		if strings.Contains(facts, leak) {
			t.Errorf("the model was sent %q: %s", leak, facts)
		}
	}
	for _, want := range []string{"Potassium", "6.7 mmol/L", "HH", "Diabetes mellitus type 2", "75 years", "female"} {
		if !strings.Contains(facts, want) {
			t.Errorf("the facts lack %q: %s", want, facts)
		}
	}
}

// TestDraftFailures: every failure is an ErrModel that names no data.
func TestDraftFailures(t *testing.T) {
	release := make(chan struct{})
	var servers []*httptest.Server
	defer func() {
		close(release) // the slow handler returns, so its server can close
		for _, s := range servers {
			s.Close()
		}
	}()
	for name, h := range map[string]http.HandlerFunc{
		"500":        func(w http.ResponseWriter, r *http.Request) { http.Error(w, "patient Secretname", 500) },
		"not json":   func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") },
		"no choices": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"choices":[]}`) },
		"empty text": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"choices":[{"message":{"content":" "}}]}`)
		},
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			servers = append(servers, srv)
			c, err := drafting.New(drafting.Config{Endpoint: srv.URL, Model: "m", Timeout: 100 * time.Millisecond}, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Draft(context.Background(), summary(t))
			if !errors.Is(err, drafting.ErrModel) || strings.Contains(err.Error(), "Secretname") {
				t.Errorf("%v", err)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	for name, c := range map[string]drafting.Config{
		"http remote":   {Endpoint: "http://models.example.org/v1", Model: "m"},
		"no model":      {Endpoint: "https://models.example.org/v1"},
		"relative":      {Endpoint: "/v1", Model: "m"},
		"negative":      {Endpoint: "https://models.example.org/v1", Model: "m", Timeout: -1},
		"key env unset": {Endpoint: "https://models.example.org/v1", Model: "m", APIKeyEnv: "FHIRGATE_SURELY_UNSET_KEY"},
	} {
		if _, err := drafting.New(c, nil); !errors.Is(err, drafting.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := drafting.New(drafting.Config{Endpoint: "http://127.0.0.1:9/v1", Model: "m"}, nil); err != nil {
		t.Errorf("loopback http: %v", err)
	}
}
