package conformance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/conformance"
)

// The suite must notice a server that breaks the rules. Each case puts a
// fault in front of a correct gateway and expects named checks to fail.

// rewrite serves the request with h, lets edit change the recorded answer,
// then writes it.
func rewrite(edit func(r *http.Request, rec *httptest.ResponseRecorder)) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			r.Header.Del("Accept-Encoding") // edit plain JSON
			h.ServeHTTP(rec, r)
			edit(r, rec)
			rec.Header().Del("Content-Length")
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	}
}

// editJSON rewrites a JSON answer.
func editJSON(rec *httptest.ResponseRecorder, fn func(m map[string]any)) {
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		return
	}
	fn(m)
	b, _ := json.Marshal(m)
	rec.Body = bytes.NewBuffer(b)
}

func TestConformanceDetectsFaults(t *testing.T) {
	sqlite := stores[0].open
	isRead := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 1 && r.URL.RawQuery == ""
	}
	cases := []struct {
		name  string
		wrap  func(http.Handler) http.Handler
		fails map[string]string // check -> text its detail must hold
	}{
		{"no ETag", rewrite(func(r *http.Request, rec *httptest.ResponseRecorder) { rec.Header().Del("ETag") }),
			map[string]string{"Patient/create": "ETag", "Patient/read": "ETag", "Patient/update": "ETag"}},
		{"Location without version", rewrite(func(r *http.Request, rec *httptest.ResponseRecorder) {
			if l := rec.Header().Get("Location"); l != "" {
				rec.Header().Set("Location", l[:strings.Index(l, "/_history")])
			}
		}), map[string]string{"Patient/create": "Location"}},
		{"errors as text", rewrite(func(r *http.Request, rec *httptest.ResponseRecorder) {
			if rec.Code >= 400 {
				rec.Header().Set("Content-Type", "text/plain")
				rec.Body = bytes.NewBufferString("no")
			}
		}), map[string]string{"rest/status-404-unknown-id": "OperationOutcome", "Patient/versioned-update": "OperationOutcome"}},
		{"invalid resource read", rewrite(func(r *http.Request, rec *httptest.ResponseRecorder) {
			if isRead(r) && rec.Code == http.StatusOK {
				editJSON(rec, func(m map[string]any) { m["gender"] = "robot" })
			}
		}), map[string]string{"Patient/read": "fails validation"}},
		{"_count ignored", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				qv := r.URL.Query()
				qv.Del("_count")
				r.URL.RawQuery = qv.Encode()
				h.ServeHTTP(w, r)
			})
		}, map[string]string{"rest/paging": "first page"}},
		{"search parameters ignored", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/Patient" && strings.Contains(r.URL.Query().Get("_id"), ",") {
					r.URL.RawQuery = "_id=" + r.URL.Query().Get("_id")
				}
				h.ServeHTTP(w, r)
			})
		}, map[string]string{"Patient/search:_tag": "want", "Patient/search:token:active": "want"}},
		{"history oldest first", rewrite(func(r *http.Request, rec *httptest.ResponseRecorder) {
			if strings.HasSuffix(r.URL.Path, "/_history") {
				editJSON(rec, func(m map[string]any) {
					e, _ := m["entry"].([]any)
					for i, j := 0, len(e)-1; i < j; i, j = i+1, j-1 {
						e[i], e[j] = e[j], e[i]
					}
				})
			}
		}), map[string]string{"Patient/history-instance": "newest first"}},
		{"create refused", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/Patient" {
					w.Header().Set("Content-Type", "application/fhir+json")
					w.WriteHeader(http.StatusInternalServerError)
					w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`))
					return
				}
				h.ServeHTTP(w, r)
			})
		}, map[string]string{"Patient/create": "status 500", "unchecked/Patient.interaction:read": "did not run", "rest/prefer": "500",
			"Patient/search-samples": "500", "unchecked/Patient.searchParam:token": "did not run"}},
		{"claims an operation it has no check for", rewrite(func(r *http.Request, rec *httptest.ResponseRecorder) {
			if r.URL.Path == "/metadata" && rec.Code == http.StatusOK {
				editJSON(rec, func(m map[string]any) {
					rest := m["rest"].([]any)[0].(map[string]any)
					rest["operation"] = []any{map[string]any{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}}
					for _, res := range rest["resource"].([]any) {
						if rm := res.(map[string]any); rm["type"] == "Patient" {
							rm["operation"] = append(rm["operation"].([]any), map[string]any{"name": "lastn", "definition": "x"})
						}
					}
				})
			}
		}), map[string]string{"unchecked/rest.system-operation:export": "no check", "unchecked/Patient.operation:lastn": "no check"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := wrappedGateway(t, sqlite, tc.wrap)
			rep, err := conformance.Run(context.Background(), conformance.Options{BaseURL: ts.URL, HTTPClient: ts.Client(), Types: []string{"Patient"}})
			if err != nil {
				t.Fatal(err)
			}
			failed := map[string]string{}
			for _, res := range rep.Failures() {
				failed[res.Check] = res.Detail
			}
			for check, text := range tc.fails {
				d, ok := failed[check]
				switch {
				case !ok:
					t.Errorf("%s did not fail; failures: %v", check, keys(failed))
				case !strings.Contains(d, text):
					t.Errorf("%s failed with %q, want it to mention %q", check, d, text)
				}
			}
			if rep.OK() {
				t.Error("report is OK")
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
