package server_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
)

// TestBinaryAccess: a Binary is in no compartment; its securityContext
// decides who sees it (the patient it names, or whoever may see the
// resource it names), and one without securityContext is for system
// clients only.
func TestBinaryAccess(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			mk := func(typ, body string) string {
				t.Helper()
				w := s.as("system", http.MethodPost, "/"+typ, []byte(body))
				mustStatus(t, w, http.StatusCreated)
				return jsonMap(t, w.Body.Bytes())["id"].(string)
			}
			bin := func(ctx string) string {
				sc := ""
				if ctx != "" {
					sc = `,"securityContext":{"reference":"` + ctx + `"}`
				}
				return mk("Binary", `{"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8="`+sc+`}`)
			}
			docOf := func(pid, label string) string {
				meta := ""
				if label != "" {
					meta = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
				}
				return mk("DocumentReference", `{"resourceType":"DocumentReference",`+meta+`"status":"current","subject":{"reference":"Patient/`+pid+`"},
				 "content":[{"attachment":{"contentType":"text/plain","url":"Binary/x"}}]}`)
			}
			// clinic's Consent from A, with a nested deny of PSY-labelled data
			consentPSY := `{"resourceType":"Consent","id":"` + s.consent + `","status":"active",
 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
 "patient":{"reference":"Patient/` + s.pa + `"},"organization":[{"reference":"Organization/hospital"}],"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
 "provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/clinic"}}],
  "action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}],
  "provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}]}}`
			mustStatus(t, s.as("system", http.MethodPut, "/Consent/"+s.consent, []byte(consentPSY)), http.StatusOK)

			binA := bin("Patient/" + s.pa)
			binAabs := bin("http://fhir.test/Patient/" + s.pa)
			binDocA := bin("DocumentReference/" + docOf(s.pa, ""))
			binPsyA := bin("DocumentReference/" + docOf(s.pa, "PSY"))
			binDocB := bin("DocumentReference/" + docOf(s.pb, ""))
			binNone := bin("")
			binGone := bin("DocumentReference/nosuchdoc")
			binLoop := bin("Binary/" + binNone)
			cases := []struct {
				name, id string
				ok       []string // principals that read it; every other gets 403
			}{
				{"patient context", binA, []string{"patientA", "provider", "system"}},
				{"absolute patient context", binAabs, []string{"patientA", "provider", "system"}},
				{"document of A", binDocA, []string{"patientA", "provider", "system"}},
				{"PSY document of A", binPsyA, []string{"patientA", "system"}},
				{"document of B", binDocB, []string{"patientB", "system"}},
				{"no context", binNone, []string{"system"}},
				{"context missing", binGone, []string{"system"}},
				{"context another Binary", binLoop, []string{"system"}},
			}
			for _, c := range cases {
				for _, who := range []string{"patientA", "patientB", "provider", "provider-nc", "system"} {
					want := http.StatusForbidden
					for _, ok := range c.ok {
						if ok == who {
							want = http.StatusOK
						}
					}
					w := s.as(who, http.MethodGet, "/Binary/"+c.id, nil)
					if w.Code != want {
						t.Errorf("%s as %s: %d, want %d: %.200s", c.name, who, w.Code, want, w.Body.String())
					}
					if w.Code == http.StatusForbidden && strings.Contains(w.Body.String(), "aGVsbG8=") {
						t.Errorf("%s as %s: a refusal carries the content", c.name, who)
					}
					// a search never returns what a read refuses
					w = s.as(who, http.MethodGet, "/Binary?_id="+c.id, nil)
					mustStatus(t, w, http.StatusOK)
					if got := strings.Contains(w.Body.String(), `"id":"`+c.id+`"`); got != (want == http.StatusOK) {
						t.Errorf("%s as %s: search shows it: %v", c.name, who, got)
					}
				}
			}
			// a patient may not store a Binary naming another patient
			w := s.as("patientA", http.MethodPost, "/Binary", []byte(`{"resourceType":"Binary","contentType":"text/plain","data":"aGk=","securityContext":{"reference":"Patient/`+s.pb+`"}}`))
			mustStatus(t, w, http.StatusForbidden)
			w = s.as("patientA", http.MethodPost, "/Binary", []byte(`{"resourceType":"Binary","contentType":"text/plain","data":"aGk=","securityContext":{"reference":"Patient/`+s.pa+`"}}`))
			mustStatus(t, w, http.StatusCreated)
		})
	}
}

// TestUploadStreaming: files stream into the store within their own
// limit (larger than the body limit), and come back as the content itself
// or as a Binary whose data streams from the store.
func TestUploadStreaming(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			st := k.open(t)
			t.Cleanup(func() { st.Close() })
			// the store as `fhirgate serve` wraps it
			h := &harness{t: t, store: st, srv: server.New(server.Config{
				Store: consolidate.View(st), Search: testRegistry, Validator: validate.Default(),
				BaseURL: "http://fhir.test", MaxBodyBytes: 1 << 16, MaxUploadBytes: 1 << 20,
			})}
			mustStatus(t, h.do(http.MethodPut, "/Patient/up", []byte(`{"resourceType":"Patient","id":"up"}`)), http.StatusCreated)
			pdf := append([]byte("%PDF-1.7\n"), make([]byte, 600<<10)...) // ten times the body limit
			for i := range pdf[9:] {
				pdf[9+i] = byte(i*7 + i/251)
			}
			w := h.do(http.MethodPost, "/Patient/up/$import", pdf, "Content-Type: application/pdf")
			mustStatus(t, w, http.StatusOK)
			var binID, docID string
			var att map[string]any
			for _, e := range jsonMap(t, w.Body.Bytes())["entry"].([]any) {
				res := e.(map[string]any)["resource"].(map[string]any)
				switch res["resourceType"] {
				case "Binary":
					binID = res["id"].(string)
					if _, ok := res["data"]; ok {
						t.Error("the import answer echoes the file")
					}
					if res["securityContext"].(map[string]any)["reference"] == nil || res["_data"] == nil {
						t.Errorf("Binary in the answer: %v", res)
					}
				case "DocumentReference":
					docID = res["id"].(string)
					att = res["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)
				}
			}
			if binID == "" || docID == "" {
				t.Fatalf("import answered %.400s", w.Body.String())
			}
			sum := sha1.Sum(pdf)
			if att["size"] != json.Number(strconv.Itoa(len(pdf))) || att["hash"] != base64.StdEncoding.EncodeToString(sum[:]) || att["url"] != "Binary/"+binID {
				t.Errorf("attachment %v", att)
			}

			// the content itself, for a non-FHIR Accept
			w = h.do(http.MethodGet, "/Binary/"+binID, nil, "Accept: application/pdf")
			mustStatus(t, w, http.StatusOK)
			if !bytes.Equal(w.Body.Bytes(), pdf) {
				t.Errorf("native read: %d bytes, want %d", w.Body.Len(), len(pdf))
			}
			if w.Header().Get("Content-Type") != "application/pdf" || w.Header().Get("X-Content-Type-Options") != "nosniff" ||
				w.Header().Get("Content-Length") != strconv.Itoa(len(pdf)) || w.Header().Get("ETag") != `W/"1"` {
				t.Errorf("native read headers %v", w.Header())
			}
			w = h.do(http.MethodHead, "/Binary/"+binID, nil, "Accept: application/pdf")
			mustStatus(t, w, http.StatusOK)
			if w.Body.Len() != 0 || w.Header().Get("Content-Length") != strconv.Itoa(len(pdf)) {
				t.Errorf("HEAD: %d bytes, headers %v", w.Body.Len(), w.Header())
			}
			w = h.do(http.MethodGet, "/Binary/"+binID+"/_history/1", nil, "Accept: application/pdf, */*;q=0.1")
			if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/fhir+json") {
				// */* admits FHIR JSON: the resource
				t.Errorf("Accept with */* answered %s", w.Header().Get("Content-Type"))
			}
			w = h.do(http.MethodGet, "/Binary/"+binID+"/_history/1", nil, "Accept: application/octet-stream")
			mustStatus(t, w, http.StatusOK)
			if !bytes.Equal(w.Body.Bytes(), pdf) {
				t.Errorf("native vread: %d bytes", w.Body.Len())
			}
			mustStatus(t, h.do(http.MethodGet, "/Binary/"+binID, nil, "Accept: application/pdf", `If-None-Match: W/"1"`), http.StatusNotModified)
			// ranges, across the store's chunks too
			if w.Header().Get("Accept-Ranges") != "bytes" {
				t.Errorf("no Accept-Ranges: %v", w.Header())
			}
			for rng, want := range map[string][2]int{
				"bytes=100-199":       {100, 200},
				"bytes=262000-262300": {262000, 262301},
				"bytes=-10":           {len(pdf) - 10, len(pdf)},
				"bytes=600000-":       {600000, len(pdf)},
			} {
				w := h.do(http.MethodGet, "/Binary/"+binID, nil, "Accept: application/pdf", "Range: "+rng)
				mustStatus(t, w, http.StatusPartialContent)
				if !bytes.Equal(w.Body.Bytes(), pdf[want[0]:want[1]]) || w.Header().Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", want[0], want[1]-1, len(pdf)) {
					t.Errorf("%s: %d bytes, Content-Range %q", rng, w.Body.Len(), w.Header().Get("Content-Range"))
				}
			}
			w = h.do(http.MethodGet, "/Binary/"+binID, nil, "Accept: application/pdf", "Range: bytes=99999999-")
			mustStatus(t, w, http.StatusRequestedRangeNotSatisfiable)
			outcome(t, w)

			// the Binary resource, its data streamed, plain and gzipped
			want := base64.StdEncoding.EncodeToString(pdf)
			w = h.do(http.MethodGet, "/Binary/"+binID, nil)
			mustStatus(t, w, http.StatusOK)
			b := jsonMap(t, w.Body.Bytes())
			if b["data"] != want || b["contentType"] != "application/pdf" || b["_data"] != nil || b["id"] != binID {
				t.Errorf("JSON read: %.300s", w.Body.String())
			}
			w = h.do(http.MethodGet, "/Binary/"+binID, nil, "Accept-Encoding: gzip")
			zr, err := gzip.NewReader(w.Body)
			if err != nil {
				t.Fatal(err)
			}
			unz, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if jsonMap(t, unz)["data"] != want {
				t.Error("gzipped JSON read lost the data")
			}
			// a search lists the stub: a page never carries many files
			w = h.do(http.MethodGet, "/Binary?_id="+binID, nil)
			mustStatus(t, w, http.StatusOK)
			if !strings.Contains(w.Body.String(), storage.BlobExtension) || strings.Contains(w.Body.String(), want[:64]) {
				t.Errorf("search: %.300s", w.Body.String())
			}
			// the same file again: nothing new
			w = h.do(http.MethodPost, "/Patient/up/$import", pdf, "Content-Type: application/pdf")
			mustStatus(t, w, http.StatusOK)
			if !strings.Contains(w.Body.String(), "0 created") && !strings.Contains(w.Body.String(), "2 unchanged") {
				t.Errorf("second import: %.300s", w.Body.String())
			}

			// over the upload limit, announced or not: 413 and nothing kept
			big := append([]byte("%PDF-1.7\n"), make([]byte, 1<<20)...)
			mustStatus(t, h.do(http.MethodPost, "/Patient/up/$import", big, "Content-Type: application/pdf"), http.StatusRequestEntityTooLarge)
			req := httptest.NewRequest(http.MethodPost, "/Patient/up/$import", io.MultiReader(bytes.NewReader(big)))
			req.ContentLength = -1 // chunked: the limit is found while reading
			req.Header.Set("Content-Type", "application/pdf")
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			mustStatus(t, rec, http.StatusRequestEntityTooLarge)
			outcome(t, rec)
			w = h.do(http.MethodGet, "/DocumentReference?subject=Patient/up&_summary=count", nil)
			if jsonMap(t, w.Body.Bytes())["total"] != json.Number("1") {
				t.Errorf("after refused uploads: %s", w.Body.String())
			}

			// clients cannot name stored content themselves
			stub := `{"resourceType":"Binary","contentType":"application/pdf","_data":{"extension":[{"url":"` + storage.BlobExtension + `","valueString":"sha256-00"}]}}`
			w = h.do(http.MethodPost, "/Binary", []byte(stub))
			mustStatus(t, w, http.StatusUnprocessableEntity)
			if !strings.Contains(w.Body.String(), `"Binary.data"`) {
				t.Errorf("refusal without the path: %s", w.Body.String())
			}
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + stub + `,"request":{"method":"POST","url":"Binary"}}]}`
			w = h.do(http.MethodPost, "/", []byte(tx))
			mustStatus(t, w, http.StatusUnprocessableEntity)
			if !strings.Contains(w.Body.String(), "Bundle.entry[0].resource") {
				t.Errorf("transaction refusal without the path: %s", w.Body.String())
			}

			// a Binary with inline data is sent natively too; a malformed
			// contentType is sent as octet-stream
			w = h.do(http.MethodPut, "/Binary/txt", []byte(`{"resourceType":"Binary","id":"txt","contentType":"text/html","data":"PGI+aGk8L2I+"}`))
			mustStatus(t, w, http.StatusCreated)
			w = h.do(http.MethodGet, "/Binary/txt", nil, "Accept: text/html")
			if w.Body.String() != "<b>hi</b>" || w.Header().Get("Content-Security-Policy") == "" {
				t.Errorf("native inline read: %q %v", w.Body.String(), w.Header())
			}
			// /metadata says so
			if md := h.do(http.MethodGet, "/metadata", nil).Body.String(); !strings.Contains(md, "X-Security-Context") || !strings.Contains(md, storage.BlobExtension) {
				t.Error("/metadata does not document Binary's behaviour")
			}
			// other types still speak FHIR JSON only
			mustStatus(t, h.do(http.MethodGet, "/Patient/up", nil, "Accept: application/pdf"), http.StatusNotAcceptable)
			mustStatus(t, h.do(http.MethodGet, "/Binary/nope", nil, "Accept: application/pdf"), http.StatusNotFound)
		})
	}
}

// TestBinaryNativeCreate: POST /Binary with the content itself (R4
// http.html#binary) streams it into the store; X-Security-Context names
// whose it is, and a patient may only name itself.
func TestBinaryNativeCreate(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			pdf := append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("opinion "), 20000)...)
			post := func(who string, body []byte, hdr ...string) *httptest.ResponseRecorder {
				t.Helper()
				return s.as(who, http.MethodPost, "/Binary", body, append([]string{"Content-Type: application/pdf"}, hdr...)...)
			}
			w := post("patientA", pdf, "X-Security-Context: Patient/"+s.pa)
			mustStatus(t, w, http.StatusCreated)
			loc := w.Header().Get("Location")
			if !strings.Contains(loc, "/Binary/") || w.Header().Get("ETag") != `W/"1"` {
				t.Fatalf("create headers %v", w.Header())
			}
			if strings.Contains(w.Body.String(), "opinion opinion") {
				t.Error("the answer echoes the content")
			}
			id := strings.Split(strings.SplitN(loc, "/Binary/", 2)[1], "/")[0]
			w = s.as("patientA", http.MethodGet, "/Binary/"+id, nil, "Accept: application/pdf")
			mustStatus(t, w, http.StatusOK)
			if !bytes.Equal(w.Body.Bytes(), pdf) || w.Header().Get("Content-Type") != "application/pdf" {
				t.Errorf("read back %d bytes as %s", w.Body.Len(), w.Header().Get("Content-Type"))
			}
			b := jsonMap(t, s.as("patientA", http.MethodGet, "/Binary/"+id, nil).Body.Bytes())
			if b["data"] != base64.StdEncoding.EncodeToString(pdf) || b["securityContext"].(map[string]any)["reference"] != "Patient/"+s.pa {
				t.Errorf("as JSON: %v", b["securityContext"])
			}
			mustStatus(t, s.as("patientB", http.MethodGet, "/Binary/"+id, nil, "Accept: application/pdf"), http.StatusForbidden)
			mustStatus(t, s.as("provider", http.MethodGet, "/Binary/"+id, nil, "Accept: application/pdf"), http.StatusOK) // A consents to clinic

			// a patient names only itself; a bad header is a 400
			mustStatus(t, post("patientA", pdf, "X-Security-Context: Patient/"+s.pb), http.StatusForbidden)
			mustStatus(t, post("patientA", pdf), http.StatusForbidden)
			for _, bad := range []string{"garbage", "Nope/1", "Patient/", "Patient/a b"} {
				w := post("system", pdf, "X-Security-Context: "+bad)
				mustStatus(t, w, http.StatusBadRequest)
				if !strings.Contains(w.Body.String(), "Binary.securityContext") {
					t.Errorf("%q: %s", bad, w.Body.String())
				}
			}
			mustStatus(t, post("system", pdf, "If-None-Exist: _id=x"), http.StatusBadRequest)
			mustStatus(t, post("provider-nc", pdf, "X-Security-Context: Patient/"+s.pa), http.StatusForbidden) // read-only scopes
			// a system client may store content without a context: only
			// system clients read it
			w = post("system", []byte("raw bytes"), "Content-Type: application/octet-stream")
			mustStatus(t, w, http.StatusCreated)
			id2 := strings.Split(strings.SplitN(w.Header().Get("Location"), "/Binary/", 2)[1], "/")[0]
			mustStatus(t, s.as("patientA", http.MethodGet, "/Binary/"+id2, nil), http.StatusForbidden)
			w = s.as("system", http.MethodGet, "/Binary/"+id2, nil, "Accept: application/octet-stream")
			if w.Body.String() != "raw bytes" {
				t.Errorf("system read %q", w.Body.String())
			}
		})
	}
}
