package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestUploadInPackage: a PDF the patient uploads joins the second-opinion
// packages as a DocumentReference; a recipient whose Consent releases the
// document fetches the file itself, one whose Consent withholds it (the
// patient labelled it PSY) neither finds it in its package nor fetches it,
// nor does another patient; a revoked Consent stops the fetch.
func TestUploadInPackage(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			pdf := append([]byte("%PDF-1.7\n% echocardiogram report\n"), bytes.Repeat([]byte{0xE2, 0x00, 0x17}, 40000)...)
			w := f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$import", pdf, "Content-Type: application/pdf")
			mustStatus(t, w, http.StatusOK)
			var binID, docID string
			for _, e := range jsonMap(t, w.Body.Bytes())["entry"].([]any) {
				r := e.(map[string]any)["resource"].(map[string]any)
				switch r["resourceType"] {
				case "Binary":
					binID = r["id"].(string)
				case "DocumentReference":
					docID = r["id"].(string)
				}
			}
			if binID == "" || docID == "" {
				t.Fatalf("import: %.300s", w.Body.String())
			}
			// a second, sensitive upload the patient labels PSY
			psyPDF := append([]byte("%PDF-1.7\n% psychiatry letter\n"), bytes.Repeat([]byte{0x42}, 5000)...)
			w = f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$import", psyPDF, "Content-Type: application/pdf")
			mustStatus(t, w, http.StatusOK)
			var psyBin, psyDoc string
			for _, e := range jsonMap(t, w.Body.Bytes())["entry"].([]any) {
				r := e.(map[string]any)["resource"].(map[string]any)
				switch r["resourceType"] {
				case "Binary":
					psyBin = r["id"].(string)
				case "DocumentReference":
					psyDoc = r["id"].(string)
				}
			}
			cur := jsonMap(t, f.getAs(t, "patientP", "DocumentReference/"+psyDoc))
			cur["meta"] = map[string]any{"security": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}}}
			body, _ := json.Marshal(cur)
			mustStatus(t, f.as("patientP", http.MethodPut, "/DocumentReference/"+psyDoc, body), http.StatusOK)

			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, []string{f.c1, f.c2}))
			e1, e2 := entryRefs(t, f.getAs(t, "so1", res.packages[0])), entryRefs(t, f.getAs(t, "so2", res.packages[1]))
			for _, c := range []struct {
				pkg       []string
				ref       string
				want      bool
				recipient string
			}{
				{e1, "DocumentReference/" + docID, true, "clinic"},
				{e1, "DocumentReference/" + psyDoc, true, "clinic"},
				{e2, "DocumentReference/" + docID, true, "clinic2"},
				{e2, "DocumentReference/" + psyDoc, false, "clinic2"},
			} {
				if slices.Contains(c.pkg, c.ref) != c.want {
					t.Errorf("%s's package holds %s: %v, want %v", c.recipient, c.ref, !c.want, c.want)
				}
			}
			fetch := func(who, bin string, want int) {
				t.Helper()
				w := f.as(who, http.MethodGet, "/Binary/"+bin, nil, "Accept: application/pdf")
				if w.Code != want {
					t.Fatalf("%s fetching Binary/%s: %d, want %d: %.200s", who, bin, w.Code, want, w.Body.String())
				}
				if want == http.StatusOK && !bytes.HasPrefix(w.Body.Bytes(), []byte("%PDF-1.7")) {
					t.Fatalf("%s fetching Binary/%s got %.40q", who, bin, w.Body.String())
				}
				if want != http.StatusOK && strings.Contains(w.Body.String(), "PDF-1.7") {
					t.Fatalf("%s: a refusal carries the file", who)
				}
			}
			fetch("so1", binID, http.StatusOK)
			fetch("so1", psyBin, http.StatusOK)
			fetch("so2", binID, http.StatusOK)
			fetch("so2", psyBin, http.StatusForbidden)
			fetch("patientB", binID, http.StatusForbidden)
			fetch("patientP", psyBin, http.StatusOK)
			// the patient sees in its audit trail who fetched its files, and
			// who was refused
			// (events are written in batches after the answer: wait for both;
			// until the first batch lands the search has no entries at all)
			var fetched, refused bool
			eventually(t, "the audit trail shows clinic's fetch and clinic2's refusal", func() bool {
				w := f.as("patientP", http.MethodGet, "/AuditEvent?_count=1000", nil)
				mustStatus(t, w, http.StatusOK)
				for _, e := range entriesOf(t, w.Body.Bytes()) {
					ev, _ := json.Marshal(e.(map[string]any)["resource"])
					if strings.Contains(string(ev), "Binary/"+binID) && strings.Contains(string(ev), `Organization/clinic"`) && strings.Contains(string(ev), `"outcome":"0"`) {
						fetched = true
					}
					if strings.Contains(string(ev), "Binary/"+psyBin) && strings.Contains(string(ev), "Organization/clinic2") && strings.Contains(string(ev), `"outcome":"4"`) {
						refused = true
					}
				}
				return fetched && refused
			})
			// revocation: clinic's next fetch is refused
			revoked := strings.Replace(soConsent(f.pid, "Organization/clinic", false), `"status":"active"`, `"status":"inactive","id":"`+f.c1+`"`, 1)
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c1, []byte(revoked)), http.StatusOK)
			fetch("so1", binID, http.StatusForbidden)
			fetch("so2", binID, http.StatusOK)
		})
	}
}
