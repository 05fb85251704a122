package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
		mustStatus(t, h.do(http.MethodPut, "/Patient/imp", []byte(`{"resourceType":"Patient","id":"imp","active":true}`)), http.StatusCreated)
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

// wrongPatientCDA is a C-CDA with one problem about Adam Everyman.
const wrongPatientCDA = `<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <id root="1.2.3.4" extension="wrong-patient"/><code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/><title>Summary</title><effectiveTime value="20240101"/>
 <recordTarget><patientRole><id root="2.16.840.1.113883.19.5" extension="MRN-8"/>
  <patient><name><given>Adam</given><family>Everyman</family></name><administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19700505"/></patient>
 </patientRole></recordTarget>
 <component><structuredBody><component><section>
  <templateId root="2.16.840.1.113883.10.20.22.2.5.1"/><code code="11450-4" codeSystem="2.16.840.1.113883.6.1"/><title>Problems</title>
  <entry><observation classCode="OBS" moodCode="EVN"><code code="55607006" codeSystem="2.16.840.1.113883.6.96"/><statusCode code="completed"/>
   <value xsi:type="CD" code="230690007" codeSystem="2.16.840.1.113883.6.96" displayName="Stroke"/></observation></entry>
 </section></component></structuredBody></component>
</ClinicalDocument>`

// TestImportWrongPatient: over HTTP, on both stores, a C-CDA document and
// an HL7 v2 message about someone else are refused with 422 naming each
// contradiction (paths into the document and the Patient, values in the
// diagnostics); only a system client may file one anyway with
// demographicsMismatch=accept, which the Provenance and the audit trail
// record.
func TestImportWrongPatient(t *testing.T) {
	oru := "MSH|^~\\&|LAB|CITY LAB|GW|GW|20240101120000||ORU^R01^ORU_R01|WP1|P|2.5.1\r" +
		"PID|1||MRN-8^^^MRN&2.16.840.1.113883.19.5&ISO^MR||Everyman^Adam||19700505|M\r" +
		"OBR|1||R1|24331-1^Lipid panel^LN|||20240101\rOBX|1|NM|2093-3^Cholesterol^LN||180|mg/dL|<200||||F\r"
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			// A is "Alpha"; give A a birth date and sex too
			mustStatus(t, s.as("system", http.MethodPut, "/Patient/"+s.pa, []byte(`{"resourceType":"Patient","id":"`+s.pa+`","name":[{"family":"Alpha","given":["Ann"]}],"gender":"female","birthDate":"1980-02-03",
				"identifier":[{"system":"urn:oid:2.16.840.1.113883.19.5","value":"MRN-1"}]}`)), http.StatusOK)
			path := "/Patient/" + s.pa + "/$import"
			facts := func() int {
				w := s.as("system", http.MethodGet, "/Condition?patient="+s.pa+"&_summary=count", nil)
				mustStatus(t, w, http.StatusOK)
				n, _ := jsonMap(t, w.Body.Bytes())["total"].(json.Number).Int64()
				return int(n)
			}
			for _, in := range []struct{ ct, body string }{{"application/cda+xml", wrongPatientCDA}, {"x-application/hl7-v2+er7", oru}} {
				w := s.as("system", http.MethodPost, path, []byte(in.body), "Content-Type: "+in.ct)
				mustStatus(t, w, http.StatusUnprocessableEntity)
				oo := jsonMap(t, w.Body.Bytes())
				var elements []string
				for _, is := range oo["issue"].([]any) {
					is := is.(map[string]any)
					if is["severity"] != "error" {
						continue
					}
					expr := is["expression"].([]any)
					if is["code"] != "business-rule" || len(expr) != 2 || !strings.HasPrefix(expr[1].(string), "Patient.") {
						t.Errorf("%s: issue %v", in.ct, is)
					}
					elements = append(elements, strings.TrimPrefix(is["details"].(map[string]any)["text"].(string), "demographics mismatch: "))
				}
				if got := strings.Join(elements, ","); got != "identifier,name,birthDate,gender" {
					t.Errorf("%s: mismatches %s", in.ct, got)
				}
				if body := w.Body.String(); !strings.Contains(body, "Everyman") || !strings.Contains(body, "Alpha") {
					t.Errorf("%s: the answer does not show the values: %s", in.ct, body)
				}
			}
			if n := facts(); n != 0 {
				t.Fatalf("%d Conditions filed from refused imports", n)
			}
			// the override: only a system client, only with the exact value
			for _, c := range []struct {
				who, query string
				want       int
			}{
				{"patientA", "accept", http.StatusForbidden},
				{"provider", "accept", http.StatusForbidden},
				{"system", "yes", http.StatusBadRequest},
				{"system", "refuse", http.StatusUnprocessableEntity},
			} {
				w := s.as(c.who, http.MethodPost, path+"?demographicsMismatch="+c.query, []byte(wrongPatientCDA), "Content-Type: application/cda+xml")
				mustStatus(t, w, c.want)
			}
			if n := facts(); n != 0 {
				t.Fatalf("%d Conditions filed from refused imports", n)
			}
			w := s.as("system", http.MethodPost, path+"?demographicsMismatch=accept", []byte(wrongPatientCDA), "Content-Type: application/cda+xml")
			mustStatus(t, w, http.StatusOK)
			if n := facts(); n != 1 {
				t.Fatalf("%d Conditions after the override, want 1", n)
			}
			w = s.as("system", http.MethodGet, "/Provenance?patient="+s.pa+"&_count=100", nil)
			mustStatus(t, w, http.StatusOK)
			if b := w.Body.String(); !strings.Contains(b, "demographics-mismatch-accepted") || !strings.Contains(b, `"code":"verifier"`) || !strings.Contains(b, `"value":"hospital"`) {
				t.Errorf("no Provenance records the accepted mismatch: %.2000s", b)
			}
			// the audit trail records the override
			var refusals, accepted int
			for _, ev := range auditEvents(t, s.auditor) {
				if ev.Patient != "Patient/"+s.pa {
					continue
				}
				if strings.Contains(ev.OutcomeDesc, "demographics contradict") {
					refusals++
				}
				if strings.Contains(ev.OutcomeDesc, "accepted 4 contradictions") {
					accepted++
				}
				if strings.Contains(fmt.Sprint(*ev), "Everyman") {
					t.Errorf("an audit event holds the document's values: %+v", *ev)
				}
			}
			if refusals < 2 || accepted != 1 {
				t.Errorf("audit trail: %d refused imports, %d accepted overrides", refusals, accepted)
			}
		})
	}
}

// TestImportHL7Batch: a batch posted to $import answers with every
// message's fate in the OperationOutcome and the batch acknowledgement as
// a Binary entry, one ACK per message.
func TestImportHL7Batch(t *testing.T) {
	oru := func(id string) string {
		return "MSH|^~\\&|LAB|CITY|GW|GW|20240101120000||ORU^R01^ORU_R01|" + id + "|P|2.5.1\rPID|1||M1^^^X^MR||Doe^Jo\rOBR|1||R|24331-1^Lipid^LN\rOBX|1|NM|2093-3^Chol^LN||180|mg/dL\r"
	}
	batch := "BHS|^~\\&|LAB|CITY|GW|GW|20240101120000||||B1\r" + oru("M1") + "MSH|^~\\&|LAB|CITY|GW|GW|20240101||QRY^A19|M2|P|2.5\rPID|1\r" + oru("M3") + "BTS|3\r"
	eachStore(t, func(t *testing.T, h *harness) {
		mustStatus(t, h.do(http.MethodPut, "/Patient/b", []byte(`{"resourceType":"Patient","id":"b","active":true}`)), http.StatusCreated)
		w := h.do(http.MethodPost, "/Patient/b/$import", []byte(batch), "Content-Type: x-application/hl7-v2+er7")
		mustStatus(t, w, http.StatusOK)
		entries := jsonMap(t, w.Body.Bytes())["entry"].([]any)
		oo := mustJSON(t, entries[0].(map[string]any)["resource"].(map[string]any))
		for _, want := range []string{"message[1] (MSH-10 M1) filed", "message[2] (MSH-10 M2) was not filed (AR)", "message[3] (MSH-10 M3) filed"} {
			if !strings.Contains(oo, want) {
				t.Errorf("the outcome does not say %q: %s", want, oo)
			}
		}
		last := entries[len(entries)-1].(map[string]any)["resource"].(map[string]any)
		data, _ := base64.StdEncoding.DecodeString(last["data"].(string))
		if last["resourceType"] != "Binary" || last["contentType"] != "x-application/hl7-v2+er7" || strings.Count(string(data), "MSA|") != 3 ||
			!strings.Contains(string(data), "MSA|AA|M1") || !strings.Contains(string(data), "MSA|AR|M2") || !strings.Contains(string(data), "MSA|AA|M3") {
			t.Errorf("the batch ACK entry: %v %q", last["resourceType"], data)
		}
	})
}
