package server_test

import (
	"net/http"
	"strings"
	"testing"
)

const badPatient = `{"resourceType":"Patient","birthDate":"1974-13-45","gender":"robot","name":[{"family":"X","given":[""]}],"wibble":true}`

// TestValidationOnWrite: invalid resources are refused with 422 and every
// issue, each with its FHIRPath, on create, update, patch and in a transaction.
func TestValidationOnWrite(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		for _, c := range []struct {
			name, method, path, body string
			hdr                      []string
		}{
			{"create", "POST", "/Patient", badPatient, nil},
			{"update", "PUT", "/Patient/p1", strings.Replace(badPatient, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"p1",`, 1), nil},
			{"transaction", "POST", "/", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + badPatient + `,"request":{"method":"POST","url":"Patient"}}]}`, nil},
		} {
			w := h.do(c.method, c.path, []byte(c.body), c.hdr...)
			if w.Code != http.StatusUnprocessableEntity {
				t.Fatalf("%s: status %d: %s", c.name, w.Code, w.Body.String())
			}
			m := jsonMap(t, w.Body.Bytes())
			var exprs []string
			for _, is := range m["issue"].([]any) {
				for _, e := range is.(map[string]any)["expression"].([]any) {
					exprs = append(exprs, e.(string))
				}
			}
			joined := strings.Join(exprs, " ")
			prefix := "Patient."
			if c.name == "transaction" {
				prefix = "Bundle.entry[0].resource."
			}
			for _, want := range []string{"birthDate", "gender", "name[0].given[0]", "wibble"} {
				if !strings.Contains(joined, prefix+want) {
					t.Errorf("%s: no issue at %s%s in %v", c.name, prefix, want, exprs)
				}
			}
		}
		id := h.create(patientBody)
		w := h.do(http.MethodPatch, "/Patient/"+id, []byte(`[{"op":"add","path":"/gender","value":"robot"}]`), "Content-Type: application/json-patch+json")
		mustStatus(t, w, http.StatusUnprocessableEntity)
		if !strings.Contains(w.Body.String(), "Patient.gender") {
			t.Fatalf("patch: %s", w.Body.String())
		}
		hist := jsonMap(t, h.do(http.MethodGet, "/_history", nil).Body.Bytes())
		if hist["total"].(interface{ String() string }).String() != "1" {
			t.Fatalf("a refused write was stored: %v", hist["total"])
		}
	})
}

func TestValidateOperation(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		id := h.create(patientBody)
		for _, c := range []struct {
			name, method, path, body string
			status                   int
			want                     string // substring of the answer
		}{
			{"valid", "POST", "/Patient/$validate", patientBody, 200, `"All OK"`},
			{"invalid", "POST", "/Patient/$validate", badPatient, 200, `"Patient.birthDate"`},
			{"parameters form", "POST", "/Patient/$validate", `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + badPatient + `},{"name":"mode","valueCode":"create"}]}`, 200, `"Patient.gender"`},
			{"wrong type", "POST", "/Observation/$validate", patientBody, 200, `"severity":"error"`},
			{"update without id", "POST", "/Patient/$validate?mode=update", patientBody, 200, `"Patient.id"`},
			{"update id mismatch", "POST", "/Patient/" + id + "/$validate?mode=update", `{"resourceType":"Patient","id":"other"}`, 200, `"Patient.id"`},
			{"delete", "GET", "/Patient/" + id + "/$validate?mode=delete", "", 200, `"All OK"`},
			{"delete unknown", "GET", "/Patient/nobody/$validate?mode=delete", "", 404, `not-found`},
			{"bad mode", "POST", "/Patient/$validate?mode=frob", patientBody, 400, `"mode"`},
			{"unknown profile", "POST", "/Patient/$validate?profile=http://example.org/nope", patientBody, 400, `"profile"`},
			{"no resource", "POST", "/Patient/$validate", `{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"create"}]}`, 400, `"resource"`},
			{"malformed", "POST", "/Patient/$validate", `{"resourceType":`, 400, `structure`},
			{"unknown op", "POST", "/Patient/$frobnicate", patientBody, 404, `not-supported`},
		} {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			w := h.do(c.method, c.path, body)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
				t.Errorf("%s: %d %s", c.name, w.Code, w.Body.String())
			}
		}
		cs := h.do(http.MethodGet, "/metadata", nil).Body.String()
		if !strings.Contains(cs, `"name":"validate","definition":"https://fhirgate.org/fhir/OperationDefinition/Resource-validate"`) {
			t.Fatal("$validate not in the CapabilityStatement")
		}
	})
}
