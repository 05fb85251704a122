package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/server"
)

// importSamples reads <module root>/../shared/testdata/sub/*ext.
func importSamples(t *testing.T, sub, ext string) map[string][]byte {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "shared", "testdata", sub))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	if len(files) == 0 {
		t.Skipf("no samples in %s", dir)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// TestImportOperation posts every C-CDA and HL7 v2 sample to
// Patient/{id}/$import and checks the answer: a collection Bundle with an
// OperationOutcome first, the local Patient, and the kept original.
func TestImportOperation(t *testing.T) {
	ccdas := importSamples(t, "ccda", ".xml")
	hl7s := importSamples(t, "hl7v2", ".hl7")
	eachStoreWith(t, server.Config{}, func(t *testing.T, h *harness) {
		mustStatus(t, h.do(http.MethodPut, "/Patient/imp", []byte(`{"resourceType":"Patient","id":"imp","name":[{"family":"Import"}]}`)), http.StatusCreated)
		post := func(ct string, body []byte) map[string]any {
			t.Helper()
			w := h.do(http.MethodPost, "/Patient/imp/$import", body, "Content-Type: "+ct)
			mustStatus(t, w, http.StatusOK)
			return jsonMap(t, w.Body.Bytes())
		}
		check := func(name, ct string, b map[string]any) {
			t.Helper()
			if b["resourceType"] != "Bundle" || b["type"] != "collection" {
				t.Fatalf("%s: not a collection Bundle", name)
			}
			entries, _ := b["entry"].([]any)
			if len(entries) < 4 {
				t.Fatalf("%s: %d entries", name, len(entries))
			}
			first := entries[0].(map[string]any)["resource"].(map[string]any)
			if first["resourceType"] != "OperationOutcome" {
				t.Errorf("%s: first entry is %v, want the OperationOutcome", name, first["resourceType"])
			}
			var patient, original bool
			for _, e := range entries[1:] {
				r := e.(map[string]any)["resource"].(map[string]any)
				if !strings.HasPrefix(e.(map[string]any)["fullUrl"].(string), "http://fhir.test/") {
					t.Errorf("%s: fullUrl %v", name, e.(map[string]any)["fullUrl"])
				}
				switch r["resourceType"] {
				case "Patient":
					patient = patient || r["id"] == "imp"
				case "DocumentReference":
					if strings.Contains(mustJSON(t, r), ct) {
						original = true
					}
				}
			}
			if !patient || !original {
				t.Errorf("%s: local Patient %v, original kept %v", name, patient, original)
			}
		}
		for name, b := range ccdas {
			check(name, "application/cda+xml", post("application/cda+xml", b))
		}
		for name, b := range hl7s {
			check(name, "x-application/hl7-v2+er7", post("x-application/hl7-v2+er7", b))
		}
		// plain XML is taken when it is a ClinicalDocument
		for _, b := range ccdas {
			post("text/xml; charset=utf-8", b)
			break
		}
		// the record is readable through $everything afterwards
		w := h.do(http.MethodGet, "/Patient/imp/$everything?_count=1000", nil)
		mustStatus(t, w, http.StatusOK)
		if !strings.Contains(w.Body.String(), `"DiagnosticReport"`) || !strings.Contains(w.Body.String(), `"Immunization"`) {
			t.Errorf("$everything misses imported results or immunizations")
		}
	})
}

// TestImportOperationErrors: bad requests answer 4xx OperationOutcomes.
func TestImportOperationErrors(t *testing.T) {
	cases := []struct {
		name, path, ct, body string
		want                 int
	}{
		{"unknown patient", "/Patient/nobody/$import", "application/pdf", "%PDF-1.4 x", http.StatusNotFound},
		{"unsupported type", "/Patient/imp/$import", "text/plain", "hello", http.StatusUnsupportedMediaType},
		{"no content type", "/Patient/imp/$import", "", "hello", http.StatusUnsupportedMediaType},
		{"xml that is not cda", "/Patient/imp/$import", "application/xml", "<html/>", http.StatusUnsupportedMediaType},
		{"broken cda", "/Patient/imp/$import", "application/cda+xml", "<ClinicalDocument xmlns='urn:hl7-org:v3'><a>", http.StatusBadRequest},
		{"not hl7", "/Patient/imp/$import", "x-application/hl7-v2+er7", "PID|1\r", http.StatusBadRequest},
		{"hl7 unsupported event", "/Patient/imp/$import", "application/hl7-v2", "MSH|^~\\&|A|B|C|D|20240101||QRY^A19|1|P|2.5\rPID|1||1^^^X\r", http.StatusUnprocessableEntity},
		{"broken json", "/Patient/imp/$import", "application/fhir+json", `{"resourceType":`, http.StatusBadRequest},
		{"not a bundle", "/Patient/imp/$import", "application/fhir+json", `{"resourceType":"Patient"}`, http.StatusUnprocessableEntity},
		{"pdf that is not", "/Patient/imp/$import", "application/pdf", "GIF89a", http.StatusBadRequest},
		{"empty body", "/Patient/imp/$import", "application/pdf", "", http.StatusBadRequest},
		{"file too large", "/Patient/imp/$import", "application/pdf", "%PDF-" + strings.Repeat("x", 1<<17), http.StatusRequestEntityTooLarge},
		{"document too large", "/Patient/imp/$import", "application/cda+xml", "<ClinicalDocument>" + strings.Repeat("x", 1<<16), http.StatusRequestEntityTooLarge},
		{"GET is refused", "/Patient/imp/$import", "", "", http.StatusMethodNotAllowed},
	}
	eachStoreWith(t, server.Config{MaxBodyBytes: 1 << 16, MaxUploadBytes: 1 << 17}, func(t *testing.T, h *harness) {
		mustStatus(t, h.do(http.MethodPut, "/Patient/imp", []byte(`{"resourceType":"Patient","id":"imp"}`)), http.StatusCreated)
		for _, tc := range cases {
			method := http.MethodPost
			if strings.HasPrefix(tc.name, "GET") {
				method = http.MethodGet
			}
			var body []byte
			if tc.body != "" || method == http.MethodPost {
				body = []byte(tc.body)
			}
			w := h.do(method, tc.path, body, "Content-Type: "+tc.ct)
			if w.Code != tc.want {
				t.Errorf("%s: status %d, want %d: %.300s", tc.name, w.Code, tc.want, w.Body.String())
				continue
			}
			outcome(t, w)
		}
		// a PDF is kept as it is
		w := h.do(http.MethodPost, "/Patient/imp/$import", []byte("%PDF-1.7\n%%EOF\n"), "Content-Type: application/pdf")
		mustStatus(t, w, http.StatusOK)
		if !strings.Contains(w.Body.String(), `"Binary"`) || !strings.Contains(w.Body.String(), `"DocumentReference"`) {
			t.Errorf("PDF import answered %.300s", w.Body.String())
		}
	})
}

func mustJSON(t *testing.T, v map[string]any) string {
	t.Helper()
	var b strings.Builder
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				b.WriteString(k)
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		case string:
			b.WriteString(x)
		}
	}
	walk(v)
	return b.String()
}
