package server_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/server"
)

const patientBody = `{"resourceType":"Patient","name":[{"family":"Chalmers","given":["Peter"]}],"birthDate":"1974-12-25","extension":[{"url":"http://example.org/x","valueDecimal":1.50}]}`

// create posts a body and returns the new id.
func (h *harness) create(body string) string {
	h.t.Helper()
	typ := jsonMap(h.t, []byte(body))["resourceType"].(string)
	w := h.do(http.MethodPost, "/"+typ, []byte(body))
	mustStatus(h.t, w, http.StatusCreated)
	return jsonMap(h.t, w.Body.Bytes())["id"].(string)
}

func TestCreateReadHeaders(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		w := h.do(http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient","id":"client-chosen","active":true}`))
		mustStatus(t, w, http.StatusCreated)
		m := jsonMap(t, w.Body.Bytes())
		id := m["id"].(string)
		if id == "client-chosen" {
			t.Fatal("create kept the client's id; the server assigns ids")
		}
		if got, want := w.Header().Get("Location"), "http://fhir.test/Patient/"+id+"/_history/1"; got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
		if w.Header().Get("ETag") != `W/"1"` || w.Header().Get("Last-Modified") == "" {
			t.Fatalf("headers %v", w.Header())
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		r := h.do(http.MethodGet, "/Patient/"+id, nil)
		mustStatus(t, r, http.StatusOK)
		if r.Header().Get("ETag") != `W/"1"` || r.Header().Get("Last-Modified") != w.Header().Get("Last-Modified") {
			t.Fatalf("read headers %v", r.Header())
		}
		// conditional read
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+id, nil, `If-None-Match: W/"1"`), http.StatusNotModified)
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+id, nil, `If-None-Match: W/"0"`), http.StatusOK)
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+id, nil, "If-Modified-Since: "+r.Header().Get("Last-Modified")), http.StatusNotModified)
		// HEAD
		hd := h.do(http.MethodHead, "/Patient/"+id, nil)
		mustStatus(t, hd, http.StatusOK)
		if hd.Body.Len() != 0 || hd.Header().Get("ETag") != `W/"1"` {
			t.Fatalf("HEAD: %d body bytes, headers %v", hd.Body.Len(), hd.Header())
		}
		// _format and Accept variants that mean JSON
		for _, v := range []struct{ path, accept string }{
			{"/Patient/" + id + "?_format=json", ""},
			{"/Patient/" + id + "?_format=application/fhir%2Bjson", ""},
			{"/Patient/" + id, "application/json"},
			{"/Patient/" + id, "application/fhir+json; fhirVersion=4.0"},
			{"/Patient/" + id, "text/html, */*;q=0.1"},
			{"/Patient/" + id + "?_format=json", "application/xml"}, // _format wins over Accept
		} {
			var hdr []string
			if v.accept != "" {
				hdr = append(hdr, "Accept: "+v.accept)
			}
			mustStatus(t, h.do(http.MethodGet, v.path, nil, hdr...), http.StatusOK)
		}
		// _pretty
		p := h.do(http.MethodGet, "/Patient/"+id+"?_pretty=true", nil)
		if !strings.Contains(p.Body.String(), "\n  \"resourceType\"") {
			t.Fatalf("_pretty not indented: %s", p.Body.String())
		}
	})
}

func TestUpdateDeleteVersions(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		id := h.create(patientBody)
		upd := strings.Replace(patientBody, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
		upd = strings.Replace(upd, "Chalmers", "Windsor", 1)
		w := h.do(http.MethodPut, "/Patient/"+id, []byte(upd), `If-Match: W/"1"`)
		mustStatus(t, w, http.StatusOK)
		if w.Header().Get("ETag") != `W/"2"` || w.Header().Get("Location") != "" {
			t.Fatalf("update headers %v", w.Header())
		}
		// stale If-Match
		is := outcome(t, mustCode(t, h.do(http.MethodPut, "/Patient/"+id, []byte(upd), `If-Match: W/"1"`), http.StatusPreconditionFailed))
		if is["code"] != "conflict" {
			t.Fatalf("412 issue code %v", is["code"])
		}
		// vread both versions
		v1 := h.do(http.MethodGet, "/Patient/"+id+"/_history/1", nil)
		mustStatus(t, v1, http.StatusOK)
		if !strings.Contains(v1.Body.String(), "Chalmers") || v1.Header().Get("ETag") != `W/"1"` {
			t.Fatalf("vread 1: %s", v1.Body.String())
		}
		if !strings.Contains(h.do(http.MethodGet, "/Patient/"+id+"/_history/2", nil).Body.String(), "Windsor") {
			t.Fatal("vread 2 wrong")
		}
		// update-as-create
		w = h.do(http.MethodPut, "/Patient/chosen-id", []byte(`{"resourceType":"Patient","id":"chosen-id"}`))
		mustStatus(t, w, http.StatusCreated)
		if w.Header().Get("Location") != "http://fhir.test/Patient/chosen-id/_history/1" {
			t.Fatalf("update-as-create Location %q", w.Header().Get("Location"))
		}
		// delete, then 410
		d := h.do(http.MethodDelete, "/Patient/"+id, nil)
		mustStatus(t, d, http.StatusNoContent)
		if d.Header().Get("ETag") != `W/"3"` {
			t.Fatalf("delete ETag %q", d.Header().Get("ETag"))
		}
		g := h.do(http.MethodGet, "/Patient/"+id, nil)
		if is := outcome(t, mustCode(t, g, http.StatusGone)); is["code"] != "deleted" {
			t.Fatalf("410 issue %v", is)
		}
		if g.Header().Get("ETag") != `W/"3"` {
			t.Fatalf("410 keeps the deleted version's ETag, got %q", g.Header().Get("ETag"))
		}
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+id+"/_history/3", nil), http.StatusGone)
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+id+"/_history/1", nil), http.StatusOK)
		mustStatus(t, h.do(http.MethodDelete, "/Patient/"+id, nil), http.StatusNoContent)
		// history of the instance: 3 entries, newest first, deletion without resource
		hist := jsonMap(t, h.do(http.MethodGet, "/Patient/"+id+"/_history", nil).Body.Bytes())
		entries := hist["entry"].([]any)
		if hist["type"] != "history" || len(entries) != 3 {
			t.Fatalf("history: %v", hist)
		}
		first := entries[0].(map[string]any)
		if first["resource"] != nil || first["request"].(map[string]any)["method"] != "DELETE" {
			t.Fatalf("newest history entry should be the deletion: %v", first)
		}
		last := entries[2].(map[string]any)
		if last["request"].(map[string]any)["method"] != "POST" || last["response"].(map[string]any)["etag"] != `W/"1"` {
			t.Fatalf("oldest entry: %v", last)
		}
	})
}

// mustCode checks the status and returns the response for further checks.
func mustCode(t testing.TB, w *httptest.ResponseRecorder, want int) *httptest.ResponseRecorder {
	t.Helper()
	mustStatus(t, w, want)
	return w
}

func TestPrefer(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		w := h.do(http.MethodPost, "/Patient", []byte(patientBody), "Prefer: return=minimal")
		mustStatus(t, w, http.StatusCreated)
		if w.Body.Len() != 0 || w.Header().Get("Location") == "" || w.Header().Get("ETag") == "" {
			t.Fatalf("return=minimal: body %q headers %v", w.Body.String(), w.Header())
		}
		w = h.do(http.MethodPost, "/Patient", []byte(patientBody), "Prefer: return=OperationOutcome")
		mustStatus(t, w, http.StatusCreated)
		if m := jsonMap(t, w.Body.Bytes()); m["resourceType"] != "OperationOutcome" {
			t.Fatalf("return=OperationOutcome: %s", w.Body.String())
		}
		w = h.do(http.MethodPost, "/Patient", []byte(patientBody), "Prefer: return=representation")
		if m := jsonMap(t, w.Body.Bytes()); m["resourceType"] != "Patient" {
			t.Fatalf("return=representation: %s", w.Body.String())
		}
	})
}

func TestGzip(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		big := `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 4000) + `</div>"}}`
		id := h.create(big)
		w := h.do(http.MethodGet, "/Patient/"+id, nil, "Accept-Encoding: gzip")
		mustStatus(t, w, http.StatusOK)
		if w.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("no gzip: %v", w.Header())
		}
		zr, err := gzip.NewReader(bytes.NewReader(w.Body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || !bytes.Contains(plain, []byte(strings.Repeat("x", 4000))) {
			t.Fatalf("gzip body: %v", err)
		}
		if w := h.do(http.MethodGet, "/Patient/"+id, nil); w.Header().Get("Content-Encoding") != "" {
			t.Fatal("gzip without Accept-Encoding")
		}
	})
}

func TestPatch(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		id := h.create(patientBody)
		patch := func(doc string, hdr ...string) *httptest.ResponseRecorder {
			return h.do(http.MethodPatch, "/Patient/"+id, []byte(doc), append([]string{"Content-Type: application/json-patch+json"}, hdr...)...)
		}
		w := patch(`[{"op":"replace","path":"/birthDate","value":"1974-12-26"},{"op":"add","path":"/active","value":true}]`)
		mustStatus(t, w, http.StatusOK)
		body := w.Body.String()
		if !strings.Contains(body, `"birthDate":"1974-12-26"`) || !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"valueDecimal":1.50`) {
			t.Fatalf("patched: %s", body)
		}
		if w.Header().Get("ETag") != `W/"2"` {
			t.Fatalf("patch ETag %q", w.Header().Get("ETag"))
		}
		hist := jsonMap(t, h.do(http.MethodGet, "/Patient/"+id+"/_history", nil).Body.Bytes())
		if m := hist["entry"].([]any)[0].(map[string]any)["request"].(map[string]any)["method"]; m != "PATCH" {
			t.Fatalf("history method %v", m)
		}
		for _, c := range []struct {
			name, doc string
			hdr       []string
			status    int
		}{
			{"test fails", `[{"op":"test","path":"/birthDate","value":"1900-01-01"}]`, nil, 422},
			{"missing path", `[{"op":"remove","path":"/deceasedBoolean"}]`, nil, 422},
			{"change id", `[{"op":"replace","path":"/id","value":"other"}]`, nil, 422},
			{"change type", `[{"op":"replace","path":"/resourceType","value":"Observation"}]`, nil, 422},
			{"not an array", `{"op":"add"}`, nil, 400},
			{"unknown op", `[{"op":"frobnicate","path":"/a"}]`, nil, 400},
			{"not json", `[{`, nil, 400},
			{"stale If-Match", `[{"op":"add","path":"/active","value":false}]`, []string{`If-Match: W/"1"`}, 412},
			{"breaks the resource", `[{"op":"replace","path":"/resourceType","value":"NoSuchType"}]`, nil, 422},
		} {
			w := patch(c.doc, c.hdr...)
			if w.Code != c.status {
				t.Errorf("%s: status %d, want %d: %s", c.name, w.Code, c.status, w.Body.String())
				continue
			}
			outcome(t, w)
		}
		// none of the failed patches wrote anything
		if v := h.do(http.MethodGet, "/Patient/"+id, nil).Header().Get("ETag"); v != `W/"2"` {
			t.Fatalf("failed patches changed the resource: ETag %s", v)
		}
		mustStatus(t, h.do(http.MethodPatch, "/Patient/"+id, []byte(`[]`)), http.StatusUnsupportedMediaType)
		mustStatus(t, h.do(http.MethodPatch, "/Patient/unknown", []byte(`[]`), "Content-Type: application/json-patch+json"), http.StatusNotFound)
	})
}

// TestConcurrentIfMatch: two updates with the same If-Match, exactly one
// succeeds and the other gets 412.
func TestConcurrentIfMatch(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		for round := 0; round < 5; round++ {
			id := h.create(patientBody)
			body := []byte(`{"resourceType":"Patient","id":"` + id + `","active":true}`)
			var wg sync.WaitGroup
			codes := make([]int, 2)
			start := make(chan struct{})
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					codes[i] = h.do(http.MethodPut, "/Patient/"+id, body, `If-Match: W/"1"`).Code
				}()
			}
			close(start)
			wg.Wait()
			ok, pre := 0, 0
			for _, c := range codes {
				switch c {
				case http.StatusOK:
					ok++
				case http.StatusPreconditionFailed:
					pre++
				}
			}
			if ok != 1 || pre != 1 {
				t.Fatalf("round %d: statuses %v, want one 200 and one 412", round, codes)
			}
		}
	})
}

// TestErrorStatuses: every error status with its OperationOutcome.
func TestErrorStatuses(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		id := h.create(patientBody)
		gone := h.create(patientBody)
		mustStatus(t, h.do(http.MethodDelete, "/Patient/"+gone, nil), http.StatusNoContent)
		small := newHarness(t, storeKinds[0], server.Config{MaxBodyBytes: 100})
		cases := []struct {
			name         string
			h            *harness
			method, path string
			body         string
			hdr          []string
			status       int
			code         string
			expr         string
		}{
			{"malformed JSON", h, "POST", "/Patient", `{"resourceType":"Patient",`, nil, 400, "structure", ""},
			{"duplicate key", h, "POST", "/Patient", `{"resourceType":"Patient","active":true,"active":false}`, nil, 400, "structure", "Patient.active"},
			{"not an object", h, "POST", "/Patient", `[1,2]`, nil, 400, "structure", ""},
			{"no resourceType", h, "POST", "/Patient", `{"active":true}`, nil, 400, "required", "resourceType"},
			{"unknown resourceType", h, "POST", "/Patient", `{"resourceType":"Patientt"}`, nil, 400, "value", "resourceType"},
			{"bad id in body", h, "PUT", "/Patient/x", `{"resourceType":"Patient","id":"a b"}`, nil, 400, "value", "Patient.id"},
			{"empty body", h, "POST", "/Patient", ``, nil, 400, "required", ""},
			{"invalid utf-8", h, "POST", "/Patient", "{\"resourceType\":\"Patient\",\"x\":\"\xff\"}", nil, 400, "structure", "Patient.x"},
			{"bad _count", h, "GET", "/Patient/_history?_count=abc", "", nil, 400, "value", "_count"},
			{"bad _since", h, "GET", "/_history?_since=yesterday", "", nil, 400, "value", "_since"},
			{"malformed query", h, "GET", "/_history?_cursor=%%%", "", nil, 400, "invalid", ""},
			{"bad cursor", h, "GET", "/_history?_cursor=bm9wZQ", "", nil, 400, "invalid", ""},
			{"bad If-Match", h, "PUT", "/Patient/" + id, `{"resourceType":"Patient","id":"` + id + `"}`, []string{"If-Match: *,\"1\""}, 400, "invalid", ""},
			{"update without id", h, "PUT", "/Patient/" + id, `{"resourceType":"Patient"}`, nil, 400, "required", "Patient.id"},
			{"bad id in URL", h, "GET", "/Patient/a_b", "", nil, 400, "value", ""},
			{"unknown type", h, "GET", "/Patientt/1", "", nil, 404, "not-supported", ""},
			{"unknown type create", h, "POST", "/Nope", `{"resourceType":"Patient"}`, nil, 404, "not-supported", ""},
			{"unknown id", h, "GET", "/Patient/does-not-exist", "", nil, 404, "not-found", ""},
			{"unknown version", h, "GET", "/Patient/" + id + "/_history/9", "", nil, 404, "not-found", ""},
			{"unknown instance history", h, "GET", "/Patient/nobody/_history", "", nil, 404, "not-found", ""},
			{"unknown path", h, "GET", "/Patient/1/_history/1/x", "", nil, 404, "not-supported", ""},
			{"unknown operation", h, "GET", "/Patient/$nope", "", nil, 404, "not-supported", ""},
			{"method not allowed", h, "POST", "/Patient/" + id, `{"resourceType":"Patient"}`, nil, 405, "not-supported", ""},
			{"method not allowed on metadata", h, "DELETE", "/metadata", "", nil, 405, "not-supported", ""},
			{"Accept xml", h, "GET", "/Patient/" + id, "", []string{"Accept: application/fhir+xml"}, 406, "not-supported", ""},
			{"_format xml", h, "GET", "/Patient/" + id + "?_format=xml", "", nil, 406, "not-supported", "_format"},
			{"wrong fhirVersion", h, "GET", "/Patient/" + id, "", []string{"Accept: application/fhir+json; fhirVersion=3.0"}, 406, "not-supported", ""},
			{"text/plain body", h, "POST", "/Patient", patientBody, []string{"Content-Type: text/plain"}, 415, "not-supported", ""},
			{"form body", h, "POST", "/Patient", patientBody, []string{"Content-Type: application/x-www-form-urlencoded"}, 415, "not-supported", ""},
			{"xml body", h, "POST", "/Patient", patientBody, []string{"Content-Type: application/fhir+xml"}, 415, "not-supported", ""},
			{"latin-1 body", h, "POST", "/Patient", patientBody, []string{"Content-Type: application/fhir+json; charset=iso-8859-1"}, 415, "not-supported", ""},
			{"stale If-Match", h, "PUT", "/Patient/" + id, `{"resourceType":"Patient","id":"` + id + `"}`, []string{`If-Match: W/"7"`}, 412, "conflict", ""},
			{"stale If-Match delete", h, "DELETE", "/Patient/" + id, "", []string{`If-Match: W/"7"`}, 412, "conflict", ""},
			{"If-Match on unknown", h, "PUT", "/Patient/brand-new", `{"resourceType":"Patient","id":"brand-new"}`, []string{`If-Match: W/"1"`}, 412, "conflict", ""},
			{"deleted", h, "GET", "/Patient/" + gone, "", nil, 410, "deleted", ""},
			{"too large", small, "POST", "/Patient", `{"resourceType":"Patient","text":{"div":"` + strings.Repeat("a", 200) + `"}}`, nil, 413, "too-long", ""},
			{"type mismatch on create", h, "POST", "/Observation", patientBody, nil, 422, "invalid", "resourceType"},
			{"type mismatch on update", h, "PUT", "/Observation/" + id, `{"resourceType":"Patient","id":"` + id + `"}`, nil, 422, "invalid", "resourceType"},
			{"id mismatch on update", h, "PUT", "/Patient/" + id, `{"resourceType":"Patient","id":"someone-else"}`, nil, 422, "invalid", "Patient.id"},
			{"delete unknown", h, "DELETE", "/Patient/never-was", "", nil, 404, "not-found", ""},
		}
		for _, c := range cases {
			var body []byte
			if c.body != "" || c.method == "POST" || c.method == "PUT" {
				body = []byte(c.body)
			}
			w := c.h.do(c.method, c.path, body, c.hdr...)
			if w.Code != c.status {
				t.Errorf("%s: status %d, want %d: %s", c.name, w.Code, c.status, w.Body.String())
				continue
			}
			is := outcome(t, w)
			if is["code"] != c.code {
				t.Errorf("%s: issue code %v, want %s", c.name, is["code"], c.code)
			}
			if c.expr != "" {
				ex, _ := is["expression"].([]any)
				if len(ex) == 0 || ex[0] != c.expr {
					t.Errorf("%s: expression %v, want %s", c.name, ex, c.expr)
				}
			}
			if d, _ := is["details"].(map[string]any); d == nil || d["text"] == "" {
				t.Errorf("%s: issue without details text", c.name)
			}
		}
		// nothing half-written: the failed writes left the patient at version 1
		if v := h.do(http.MethodGet, "/Patient/"+id, nil).Header().Get("ETag"); v != `W/"1"` {
			t.Fatalf("failed writes changed the resource: ETag %s", v)
		}
	})
}

func TestHistoryPaging(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		ids := map[string]bool{}
		for i := 0; i < 7; i++ {
			ids[h.create(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"%d"}}`, i))] = true
		}
		h.create(patientBody)
		next := "/Observation/_history?_count=3"
		seen := map[string]bool{}
		pages := 0
		for next != "" {
			pages++
			b := jsonMap(t, h.do(http.MethodGet, next, nil).Body.Bytes())
			// counted on the first page only (a count reads the whole history)
			if pages == 1 && b["total"] != json.Number("7") || pages > 1 && b["total"] != nil {
				t.Fatalf("page %d: total %v", pages, b["total"])
			}
			next = nextPath(b)
			for _, e := range b["entry"].([]any) {
				u := e.(map[string]any)["fullUrl"].(string)
				id := u[strings.LastIndex(u, "/")+1:]
				if seen[id] || !ids[id] {
					t.Fatalf("page %d: unexpected or repeated %s", pages, id)
				}
				seen[id] = true
			}
		}
		if pages != 3 || len(seen) != 7 {
			t.Fatalf("%d pages, %d entries", pages, len(seen))
		}
		sys := jsonMap(t, h.do(http.MethodGet, "/_history?_count=100", nil).Body.Bytes())
		if sys["total"].(json.Number) != "8" {
			t.Fatalf("system history total %v", sys["total"])
		}
	})
}

func TestCapabilityStatement(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		w := h.do(http.MethodGet, "/metadata", nil)
		mustStatus(t, w, http.StatusOK)
		cs := jsonMap(t, w.Body.Bytes())
		if cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" || cs["kind"] != "instance" {
			t.Fatalf("capability statement header: %v", cs["fhirVersion"])
		}
		rest := cs["rest"].([]any)[0].(map[string]any)
		res := rest["resource"].([]any)
		if len(res) != 146 {
			t.Fatalf("%d resource types", len(res))
		}
		// every claimed interaction has a route
		registered := map[string]bool{}
		for _, r := range h.srv.Routes() {
			registered[r.Name] = true
		}
		for _, r := range res {
			for _, in := range r.(map[string]any)["interaction"].([]any) {
				code := in.(map[string]any)["code"].(string)
				if !registered[code] {
					t.Fatalf("%v claims %s, which no route serves", r.(map[string]any)["type"], code)
				}
			}
		}
	})
}

// TestAbsentArraysNoPanic: bodies without the arrays the handlers read
// (a Parameters without parameter, a Consent without scope coding) are
// answered, not 500.
func TestAbsentArraysNoPanic(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		pid := h.create(patientBody)
		w := h.do(http.MethodPost, "/Patient/"+pid+"/$everything", []byte(`{"resourceType":"Parameters"}`))
		mustStatus(t, w, http.StatusOK)
		w = h.do(http.MethodPost, "/Consent", []byte(`{"resourceType":"Consent","status":"active","scope":{"text":"x"},"category":[{"text":"x"}],"policyRule":{"text":"x"},"provision":{"type":"permit"}}`))
		if w.Code >= 500 {
			t.Fatalf("Consent without scope coding: %d %s", w.Code, w.Body.String())
		}
	})
}

// TestCapabilityStatementHosts: without a configured base URL each Host
// gets the statement of its own base, and the gateway keeps only a few of
// them: a caller making up Host headers cannot grow its memory (each
// statement is about 400 KB).
func TestCapabilityStatementHosts(t *testing.T) {
	h := newHarness(t, storeKinds[0], server.Config{BaseURL: baseFromHost})
	for i := range 40 {
		req := httptest.NewRequest(http.MethodGet, "/metadata", nil)
		req.Host = fmt.Sprintf("h%d.example", i%20)
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, req)
		mustStatus(t, w, http.StatusOK)
		impl, _ := jsonMap(t, w.Body.Bytes())["implementation"].(map[string]any)
		if want := fmt.Sprintf("http://h%d.example", i%20); impl["url"] != want {
			t.Fatalf("Host %s: implementation.url %v", req.Host, impl["url"])
		}
	}
	if n := server.CachedCapabilities(h.srv); n == 0 || n > 8 {
		t.Fatalf("%d statements kept for 20 hosts", n)
	}
	// a full cache takes new hosts: the first ones sent do not hold it
	if !server.CapabilitiesKept(h.srv, "http://h19.example") {
		t.Fatal("the last host's statement was not kept")
	}
}
