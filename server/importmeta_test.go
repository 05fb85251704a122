package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestUploadMetadata: a file uploaded with $import carries the title, type
// and date its uploader gave (query parameters or X- headers) on its
// DocumentReference; a value its parameter does not take answers 400
// naming it, and nothing is filed.
func TestUploadMetadata(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		mustStatus(t, h.do(http.MethodPut, "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1"}`)), http.StatusCreated)
		pdf := []byte("%PDF-1.4\n% ECG report\n")
		w := h.do(http.MethodPost, "/Patient/p1/$import?title=ECG+report%2C+March&type=11524-6&date=2025-03-14&specialty=394579002", pdf, "Content-Type: application/pdf")
		mustStatus(t, w, http.StatusOK)
		doc := docRefOf(t, w.Body.Bytes())
		if doc["description"] != "ECG report, March" {
			t.Errorf("description = %v", doc["description"])
		}
		if att := doc["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any); att["title"] != "ECG report, March" {
			t.Errorf("attachment.title = %v", att["title"])
		}
		if c := doc["type"].(map[string]any)["coding"].([]any)[0].(map[string]any); c["system"] != "http://loinc.org" || c["code"] != "11524-6" {
			t.Errorf("type = %v", c)
		}
		ctx := doc["context"].(map[string]any)
		if p := ctx["period"].(map[string]any); p["start"] != "2025-03-14" {
			t.Errorf("context.period = %v", p)
		}
		if c := ctx["practiceSetting"].(map[string]any)["coding"].([]any)[0].(map[string]any); c["system"] != "http://snomed.info/sct" || c["code"] != "394579002" {
			t.Errorf("practiceSetting = %v", c)
		}

		// the headers, percent-encoded (any title travels in a header)
		w = h.do(http.MethodPost, "/Patient/p1/$import", []byte("%PDF-1.4\n% a second file\n"), "Content-Type: application/pdf",
			"X-Title: %E0%A4%88%E0%A4%B8%E0%A5%80%E0%A4%9C%E0%A5%80 report", "X-Document-Type: http://example.org/types|scan", "X-Document-Date: 2025-03-14T09:30:00Z")
		mustStatus(t, w, http.StatusOK)
		doc = docRefOf(t, w.Body.Bytes())
		if doc["description"] != "ईसीजी report" {
			t.Errorf("header title = %v", doc["description"])
		}
		if c := doc["type"].(map[string]any)["coding"].([]any)[0].(map[string]any); c["system"] != "http://example.org/types" || c["code"] != "scan" {
			t.Errorf("header type = %v", c)
		}

		for _, q := range []string{"type=not+a+loinc", "type=|x", "date=14/03/2025", "date=2025-13-01", "title=" + strings.Repeat("x", 501), "title=a%00b", "title=a&title=b", "specialty=a%20%20b"} {
			w := h.do(http.MethodPost, "/Patient/p1/$import?"+q, []byte("%PDF-1.4\n% refused "+q+"\n"), "Content-Type: application/pdf")
			mustStatus(t, w, http.StatusBadRequest)
			name, _, _ := strings.Cut(q, "=")
			if oo := outcome(t, w); !strings.Contains(w.Body.String(), `"expression":["`+name+`"]`) {
				t.Errorf("%s: %v", q, oo)
			}
		}
		w = h.do(http.MethodGet, "/DocumentReference?patient=p1&_summary=count", nil)
		if n := fmt.Sprint(jsonMap(t, w.Body.Bytes())["total"]); n != "2" {
			t.Errorf("%v DocumentReferences after the refusals, want 2", n)
		}
	})
}

func docRefOf(t *testing.T, body []byte) map[string]any {
	t.Helper()
	for _, e := range entriesOf(t, body) {
		if r := e.(map[string]any)["resource"].(map[string]any); r["resourceType"] == "DocumentReference" {
			return r
		}
	}
	t.Fatalf("no DocumentReference in %s", body)
	return nil
}
