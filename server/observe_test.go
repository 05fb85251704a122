package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRequestID: every answer carries X-Request-Id (the caller's when it
// is safe to echo, else a new one), every OperationOutcome names it, and
// every log line the request causes carries it.
func TestRequestID(t *testing.T) {
	logs := &syncBuffer{}
	h := newHarness(t, storeKinds[0], server.Config{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	w := h.do(http.MethodGet, "/Patient/nope", nil, "X-Request-Id: lb-7f3a.42")
	mustStatus(t, w, http.StatusNotFound)
	if got := w.Header().Get("X-Request-Id"); got != "lb-7f3a.42" {
		t.Fatalf("X-Request-Id %q, want the caller's", got)
	}
	m := jsonMap(t, w.Body.Bytes())
	ext, _ := m["extension"].([]any)
	if len(ext) != 1 || ext[0].(map[string]any)["url"] != server.RequestIDExtension || ext[0].(map[string]any)["valueString"] != "lb-7f3a.42" {
		t.Fatalf("OperationOutcome without the request id: %s", w.Body.String())
	}
	line := logs.accessLine(t, "/Patient/nope")
	if line["request_id"] != "lb-7f3a.42" {
		t.Fatalf("access log line without the request id: %v", line)
	}
	// an id that could forge log lines or headers is replaced
	for _, bad := range []string{"a b", strings.Repeat("x", 200), `"}`, "é"} {
		w := h.do(http.MethodGet, "/metadata", nil, "X-Request-Id: "+bad)
		if got := w.Header().Get("X-Request-Id"); got == bad || got == "" {
			t.Fatalf("X-Request-Id %q echoed as %q", bad, got)
		}
	}
	w = h.do(http.MethodGet, "/metadata", nil)
	if w.Header().Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id generated")
	}
}

// TestCORS: preflights from configured origins are answered before
// authentication, with the methods and headers FHIR clients send; answers
// expose the headers FHIR clients read; other origins get nothing.
func TestCORS(t *testing.T) {
	h := newHarness(t, storeKinds[0], server.Config{CORSOrigins: []string{"https://app.example.org"}})
	w := h.do(http.MethodOptions, "/Patient", nil, "Origin: https://app.example.org", "Access-Control-Request-Method: POST",
		"Access-Control-Request-Headers: authorization, content-type, if-none-exist")
	mustStatus(t, w, http.StatusNoContent)
	hd := w.Header()
	if hd.Get("Access-Control-Allow-Origin") != "https://app.example.org" || !strings.Contains(hd.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "If-None-Exist") || hd.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight headers %v", hd)
	}
	w = h.do(http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient"}`), "Origin: https://app.example.org")
	mustStatus(t, w, http.StatusCreated)
	for _, want := range []string{"Location", "ETag", "Content-Location", "X-Request-Id"} {
		if !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), want) {
			t.Fatalf("%s not exposed: %v", want, w.Header())
		}
	}
	if w.Header().Get("Access-Control-Allow-Origin") != "https://app.example.org" {
		t.Fatal("no Access-Control-Allow-Origin on the answer")
	}
	w = h.do(http.MethodOptions, "/Patient", nil, "Origin: https://evil.example", "Access-Control-Request-Method: POST")
	if w.Header().Get("Access-Control-Allow-Origin") != "" || w.Code == http.StatusNoContent {
		t.Fatalf("another origin's preflight: %d %v", w.Code, w.Header())
	}
	if !strings.Contains(strings.Join(w.Header().Values("Vary"), ","), "Origin") {
		t.Fatal("no Vary: Origin")
	}
	// without configured origins, nothing
	plain := newHarness(t, storeKinds[0], server.Config{})
	w = plain.do(http.MethodGet, "/metadata", nil, "Origin: https://app.example.org")
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS headers without configured origins")
	}
}

// TestReadyz: ready when the store answers and is migrated; not ready
// when a migration this build needs is missing, or once draining.
func TestReadyz(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		mustStatus(t, h.do(http.MethodGet, "/readyz", nil), http.StatusOK)
		st := h.store.(*sqlstore.Store)
		if _, err := st.DB().Exec(context.Background(), `DELETE FROM schema_migrations WHERE name = '007_change_marks.sql'`); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, h.do(http.MethodGet, "/readyz", nil), http.StatusServiceUnavailable)
		if _, err := st.DB().Exec(context.Background(), `INSERT INTO schema_migrations (name, applied_at) VALUES ('007_change_marks.sql', 0)`); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, h.do(http.MethodGet, "/readyz", nil), http.StatusOK)
		h.srv.SetDraining()
		mustStatus(t, h.do(http.MethodGet, "/readyz", nil), http.StatusServiceUnavailable)
		mustStatus(t, h.do(http.MethodGet, "/healthz", nil), http.StatusOK)
	})
}

// TestRequestMetrics: requests are counted by method, route pattern and
// status; the route label never holds an id, and no caller can add series:
// methods other than HTTP's own are counted together as "_OTHER".
func TestRequestMetrics(t *testing.T) {
	m := observe.NewMetrics("test", "")
	h := newHarness(t, storeKinds[0], server.Config{Metrics: m})
	id := h.create(`{"resourceType":"Patient"}`)
	h.do(http.MethodGet, "/Patient/"+id, nil)
	h.do(http.MethodGet, "/Patient/"+id, nil)
	h.do(http.MethodGet, "/Patient/nope", nil)
	h.do(http.MethodGet, "/no/such/route/at/all", nil)
	for i := range 50 {
		h.do(fmt.Sprintf("X%dY", i), "/Patient/"+id, nil)
	}
	c := func(method, route, status string) float64 {
		return testutil.ToFloat64(m.RequestCounter().WithLabelValues(method, route, status))
	}
	if c("GET", "/:type/:id", "200") != 2 || c("GET", "/:type/:id", "404") != 1 || c("POST", "/:type", "201") != 1 || c("GET", "unmatched", "404") != 1 || c("_OTHER", "unmatched", "405") != 50 {
		t.Fatalf("counts: read 200 %v, read 404 %v, create %v, unmatched %v, other methods %v", c("GET", "/:type/:id", "200"), c("GET", "/:type/:id", "404"), c("POST", "/:type", "201"), c("GET", "unmatched", "404"), c("_OTHER", "unmatched", "405"))
	}
	for name, want := range map[string]int{"fhirgate_http_requests_total": 5, "fhirgate_http_request_duration_seconds": 5} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n != want {
			t.Fatalf("%s: %d series, want %d (%v)", name, n, want, err)
		}
	}
	if strings.Contains(dump(t, m), "X1Y") {
		t.Fatal("a method the caller made up in the metrics")
	}
	if strings.Contains(dump(t, m), id) {
		t.Fatal("a resource id in the metrics")
	}
}

// dump is the metrics' exposition text.
func dump(t *testing.T, m *observe.Metrics) string {
	t.Helper()
	w := newRecorder()
	m.Handler().ServeHTTP(w, mustRequest(t, http.MethodGet, "/metrics"))
	return w.Body.String()
}
