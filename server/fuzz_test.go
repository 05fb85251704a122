package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequest throws arbitrary methods, paths, queries, headers and bodies
// at the server: whatever comes in, the answer is never a 5xx and never a
// panic, and every error is an OperationOutcome. CI runs it for a bounded
// time (see .ci/run).
func FuzzRequest(f *testing.F) {
	h := newHarness(f, storeKinds[0], serverConfigForFuzz())
	seedID := h.create(patientBody)
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO"}
	ctypes := []string{"", "application/fhir+json", "application/json-patch+json", "text/plain", "application/fhir+json; charset=latin1", ";;", "application/fhir+json; fhirVersion=9"}
	for _, s := range []struct {
		m, ct uint8
		path  string
		body  string
		hdr   string
	}{
		{0, 0, "/Patient/" + seedID, "", ""},
		{1, 1, "/Patient", patientBody, ""},
		{2, 1, "/Patient/" + seedID, `{"resourceType":"Patient","id":"` + seedID + `"}`, `W/"1"`},
		{3, 2, "/Patient/" + seedID, `[{"op":"add","path":"/active","value":true}]`, ""},
		{4, 0, "/Patient/" + seedID, "", `W/"x"`},
		{0, 0, "/_history?_count=2&_since=2020-01-01", "", ""},
		{0, 0, "/Patient/" + seedID + "/_history/1", "", ""},
		{0, 0, "/metadata?_format=xml", "", ""},
		{1, 1, "/Observation", `{"resourceType":"Observation","valueQuantity":{"value":1e999}}`, ""},
		{0, 0, "/%2e%2e/%00", "", ""},
		{1, 1, "/Patient", `{"resourceType":"Patient","a":[[[[[[[[[[[[[]]]]]]]]]]]]]}`, ""},
		{1, 3, "/Binary", "raw content", ""},
		{0, 0, "/Binary/" + seedID + "/_history/1", "", ""},
		{1, 3, "/Patient/" + seedID + "/$import", "%PDF-1.4", ""},
	} {
		f.Add(s.m, s.ct, s.path, []byte(s.body), s.hdr)
	}
	f.Fuzz(func(t *testing.T, m, ct uint8, path string, body []byte, ifMatch string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://fhir.test"+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		if c := ctypes[int(ct)%len(ctypes)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
			req.Header.Set("Prefer", ifMatch)
		}
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q answered %d: %s", req.Method, path, w.Code, w.Body.String())
		}
		if w.Code >= 400 && req.Method != http.MethodHead {
			if !strings.Contains(w.Body.String(), `"resourceType":"OperationOutcome"`) {
				t.Fatalf("%s %q: %d without an OperationOutcome: %s", req.Method, path, w.Code, w.Body.String())
			}
		}
	})
}
