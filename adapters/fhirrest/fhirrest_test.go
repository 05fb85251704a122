package fhirrest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
)

// server is a scripted FHIR server: each path answers with a fixed body.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	seen  []string
	pages map[string]string // path (with query for searches) -> body
}

const capsR4 = `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server","resource":[
 {"type":"Patient","interaction":[{"code":"read"}]},
 {"type":"Observation","interaction":[{"code":"search-type"}],"searchParam":[{"name":"subject"},{"name":"code"}]},
 {"type":"Condition","interaction":[{"code":"read"}]}]}]}`

const patient = `{"resourceType":"Patient","id":"p1","generalPractitioner":[{"reference":"Practitioner/gone"}]}`

func newServer(t *testing.T, pages map[string]string) *server {
	s := &server{pages: pages}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.RequestURI())
		s.mu.Unlock()
		body, ok := pages[r.URL.Path]
		if !ok {
			body, ok = pages[r.URL.Path+"?"+r.URL.RawQuery]
		}
		w.Header().Set("Date", "Sun, 01 Jun 2025 10:00:00 GMT")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`))
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write([]byte(strings.ReplaceAll(body, "BASE", s.URL)))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func open(t *testing.T, s *server, mod func(*fhirrest.Config)) *fhirrest.Source {
	t.Helper()
	retries := 0
	cfg := fhirrest.Config{Config: upstream.Config{BaseURL: s.URL, MaxRetries: &retries}}
	if mod != nil {
		mod(&cfg)
	}
	src, err := fhirrest.New("src", cfg, adapters.Options{Clock: adaptertest.NewFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func bundle(next string, entries ...string) string {
	link := ""
	if next != "" {
		link = fmt.Sprintf(`"link":[{"relation":"next","url":%q}],`, next)
	}
	return `{"resourceType":"Bundle","type":"searchset",` + link + `"entry":[` + strings.Join(entries, ",") + `]}`
}

func entry(res string) string { return `{"resource":` + res + `,"search":{"mode":"match"}}` }

func TestCapabilityProblems(t *testing.T) {
	for _, tc := range []struct {
		name, metadata string
		want           error
		msg            string
	}{
		{"stu3", `{"resourceType":"CapabilityStatement","fhirVersion":"3.0.2"}`, adapters.ErrNotFHIR, "FHIR 3.0.2"},
		{"not a capability statement", patient, adapters.ErrNotFHIR, "not a CapabilityStatement"},
		{"html", `<html>login</html>`, adapters.ErrNotFHIR, "instead of FHIR JSON"},
		{"json but not fhir", `{"status":"ok"}`, adapters.ErrNotFHIR, "not a FHIR resource"},
		{"bad json", `{"resourceType":"CapabilityStatement",}`, adapters.ErrMalformed, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, map[string]string{"/metadata": tc.metadata})
			_, _, err := adapters.Collect(context.Background(), open(t, s, nil), adapters.FetchRequest{PatientID: "p1"})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	t.Run("no metadata", func(t *testing.T) {
		s := newServer(t, map[string]string{})
		_, _, err := adapters.Collect(context.Background(), open(t, s, nil), adapters.FetchRequest{PatientID: "p1"})
		if !errors.Is(err, adapters.ErrNotFHIR) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestSearchPlan: only declared searchable types are searched, by the
// parameter the server supports; outcome entries become issues; a
// reference that cannot be read is an issue, not a failure.
func TestSearchPlan(t *testing.T) {
	obs := `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Organization/org1"}]}`
	s := newServer(t, map[string]string{
		"/metadata":   capsR4,
		"/Patient/p1": patient,
		"/Observation?_count=100&subject=Patient%2Fp1": bundle("",
			entry(obs),
			`{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"suppressed","details":{"text":"some withheld"}}]},"search":{"mode":"outcome"}}`),
		"/Organization/org1": `{"resourceType":"Organization","id":"org1"}`,
	})
	got, res, err := adapters.Collect(context.Background(), open(t, s, nil), adapters.FetchRequest{PatientID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range got {
		keys = append(keys, r.Type+"/"+r.ID)
	}
	slices.Sort(keys)
	if strings.Join(keys, " ") != "Observation/o1 Organization/org1 Patient/p1" {
		t.Errorf("got %v", keys)
	}
	if res.Method != "search" || res.Resources != 3 || res.ByType["Observation"] != 1 {
		t.Errorf("result %+v", res)
	}
	var codes []string
	for _, is := range res.Issues {
		codes = append(codes, is.Code)
	}
	slices.Sort(codes)
	if strings.Join(codes, ",") != "not-found,suppressed" {
		t.Errorf("issues %+v, want the outcome entry and the unreadable Practitioner", res.Issues)
	}
	if want := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC); !res.Watermark.Equal(want) {
		t.Errorf("watermark %v, want the upstream's Date %v", res.Watermark, want)
	}
	for _, r := range s.requests() {
		if strings.HasPrefix(r, "/Condition") {
			t.Errorf("searched Condition, which the server does not declare searchable: %s", r)
		}
	}
}

// TestUndeclaredTypes: a CapabilityStatement without resources makes the
// adapter try every compartment type; refusals of those become warnings.
func TestUndeclaredTypes(t *testing.T) {
	s := newServer(t, map[string]string{
		"/metadata":   `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server"}]}`,
		"/Patient/p1": `{"resourceType":"Patient","id":"p1"}`,
		"/Encounter?_count=100&patient=Patient%2Fp1": bundle("", entry(`{"resourceType":"Encounter","id":"e1"}`)),
	})
	got, res, err := adapters.Collect(context.Background(), open(t, s, nil), adapters.FetchRequest{PatientID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(res.Issues) < 30 || res.Issues[0].Severity != "warning" {
		t.Errorf("%d resources, %d issues (%+v)", len(got), len(res.Issues), res.Issues[:min(1, len(res.Issues))])
	}
}

func TestPaging(t *testing.T) {
	caps := `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server","resource":[{"type":"Patient","operation":[{"name":"everything"}]}]}]}`
	pageN := func(n int, next string) string {
		return bundle(next, entry(fmt.Sprintf(`{"resourceType":"Observation","id":"o%d"}`, n)))
	}
	for _, tc := range []struct {
		name  string
		pages map[string]string
		want  error
		msg   string
	}{
		{"page limit", map[string]string{
			"/Patient/p1/$everything?_count=100": pageN(1, "BASE/page?n=2"),
			"/page?n=2":                          pageN(2, "BASE/page?n=3"),
			"/page?n=3":                          pageN(3, "BASE/page?n=4"),
		}, adapters.ErrPageLimit, "page limit (2)"},
		{"loop with reordered query", map[string]string{
			"/Patient/p1/$everything?_count=100": pageN(1, "BASE/page?a=1&b=2"),
			"/page?a=1&b=2":                      pageN(2, "BASE/page?b=2&a=1"),
		}, adapters.ErrPageLoop, "links back"},
		{"next link to another server", map[string]string{
			"/Patient/p1/$everything?_count=100": pageN(1, "https://elsewhere.example.org/page"),
		}, adapters.ErrMalformed, "leaves the source's base URL"},
		{"not a bundle", map[string]string{
			"/Patient/p1/$everything?_count=100": patient,
		}, adapters.ErrMalformed, "expected a Bundle, got a Patient"},
		{"bad entry", map[string]string{
			"/Patient/p1/$everything?_count=100": bundle("", entry(`{"resourceType":"Observaton","id":"x"}`)),
		}, adapters.ErrMalformed, "Bundle.entry[0].resource"},
		{"next without url", map[string]string{
			"/Patient/p1/$everything?_count=100": `{"resourceType":"Bundle","link":[{"relation":"next"}]}`,
		}, adapters.ErrMalformed, "no url"},
		{"unknown patient", map[string]string{}, adapters.ErrPatientNotFound, "HTTP 404"},
		{"total larger than the pages", map[string]string{
			"/Patient/p1/$everything?_count=100": `{"resourceType":"Bundle","total":3,"entry":[` + entry(`{"resourceType":"Observation","id":"o1"}`) + `]}`,
		}, adapters.ErrMalformed, "reported 3 matches but its pages held 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.pages["/metadata"] = caps
			s := newServer(t, tc.pages)
			src := open(t, s, func(c *fhirrest.Config) { c.PageLimit = 2 })
			var n int
			_, err := src.Fetch(context.Background(), adapters.FetchRequest{PatientID: "p1"}, func(*fhir.Resource) error { n++; return nil })
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestEverythingNotOffered(t *testing.T) {
	s := newServer(t, map[string]string{"/metadata": capsR4})
	_, err := open(t, s, nil).Everything(context.Background(), adapters.FetchRequest{PatientID: "p1"}, func(*fhir.Resource) error { return nil })
	if !errors.Is(err, adapters.ErrUnsupported) {
		t.Fatalf("err = %v", err)
	}
}

func TestInvalidPatientID(t *testing.T) {
	s := newServer(t, map[string]string{"/metadata": capsR4})
	for _, id := range []string{"", "a/b", "../metadata", strings.Repeat("x", 65)} {
		_, _, err := adapters.Collect(context.Background(), open(t, s, nil), adapters.FetchRequest{PatientID: id})
		if !errors.Is(err, adapters.ErrRejected) {
			t.Errorf("id %q: err = %v", id, err)
		}
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d requests for invalid ids", n)
	}
}
