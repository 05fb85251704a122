package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/ccda"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

var registry = func() *search.Registry {
	r, err := search.New(search.Options{BaseURL: "http://fhir.test", Reserved: []string{"_cursor"}})
	if err != nil {
		panic(err)
	}
	return r
}()

var fixedNow = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }

type opener func(t testing.TB, path string) storage.Store

// stores are the store kinds every test runs on; path names a SQLite file
// (so a test can reopen it) and is ignored by PostgreSQL.
var stores = []struct {
	name string
	open opener
}{
	{"sqlite", func(t testing.TB, path string) storage.Store {
		s, err := sqlite.Open(context.Background(), path, sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t testing.TB, _ string) storage.Store {
		s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

func eachStore(t *testing.T, fn func(t *testing.T, st storage.Store)) {
	for _, k := range stores {
		t.Run(k.name, func(t *testing.T) {
			st := k.open(t, filepath.Join(t.TempDir(), "ingest.db"))
			t.Cleanup(func() { st.Close() })
			fn(t, st)
		})
	}
}

// testdata returns <module root>/../shared/testdata/sub, skipping when absent.
func testdata(t testing.TB, sub string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "testdata", sub)
			if _, err := os.Stat(p); err != nil {
				t.Skipf("test data %s not found (expected next to the module root)", p)
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
}

func samples(t testing.TB, sub, ext string) map[string][]byte {
	t.Helper()
	dir := testdata(t, sub)
	files, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s", dir)
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

func newPatient(t testing.TB, st storage.Store, id string) {
	t.Helper()
	p, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"` + id + `","active":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// everything returns the patient's consolidated record by type.
func everything(t testing.TB, st storage.Store, pid string) map[string][]*fhir.Resource {
	t.Helper()
	out := map[string][]*fhir.Resource{}
	req := storage.EverythingRequest{PatientID: pid, Count: 1000}
	for {
		page, err := consolidate.View(st).Everything(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Matches {
			out[r.Type] = append(out[r.Type], r)
		}
		if page.Next == "" {
			return out
		}
		req.Cursor = page.Next
	}
}

// TestImportSamples files every C-CDA and HL7 v2 sample into a patient's
// record: each import writes the converted resources and keeps the
// original, and importing the same input again changes nothing.
func TestImportSamples(t *testing.T) {
	type input struct {
		name, ct string
		body     []byte
	}
	var inputs []input
	for name, b := range samples(t, "ccda", ".xml") {
		inputs = append(inputs, input{name, ingest.MediaCDA, b})
	}
	for name, b := range samples(t, "hl7v2", ".hl7") {
		inputs = append(inputs, input{name, ingest.MediaHL7v2, b})
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		im := &ingest.Importer{Store: st, Now: fixedNow}
		for i, in := range inputs {
			pid := "p" + string(rune('a'+i))
			newPatient(t, st, pid)
			res, err := im.Import(ctx, pid, in.ct, in.body)
			if err != nil {
				t.Fatalf("%s: %v", in.name, err)
			}
			created, _, _ := res.Counts()
			if created < 3 {
				t.Errorf("%s: %d resources created", in.name, created)
			}
			rec := everything(t, st, pid)
			var original bool
			for _, d := range rec["DocumentReference"] {
				for _, c := range d.Root().Get("content").Items {
					ct := c.Get("attachment").Get("contentType").String()
					if ct == in.ct {
						original = true
						url := c.Get("attachment").Get("url").String()
						_, id, _ := strings.Cut(url, "/")
						bin, err := st.Read(ctx, "Binary", id)
						if err != nil {
							t.Fatalf("%s: the original's Binary %s: %v", in.name, url, err)
						}
						if !strings.Contains(string(bin.Raw), `"data"`) {
							t.Errorf("%s: Binary without data", in.name)
						}
					}
				}
			}
			if !original {
				t.Errorf("%s: no DocumentReference keeps the original %s", in.name, in.ct)
			}
			// the local Patient names the document's patient
			local, err := st.Read(ctx, "Patient", pid)
			if err != nil {
				t.Fatal(err)
			}
			if consolidate.SourcePatientID(local, res.Source) == "" {
				t.Errorf("%s: the local Patient has no identifier at source %s", in.name, res.Source)
			}
			again, err := im.Import(ctx, pid, in.ct, in.body)
			if err != nil {
				t.Fatalf("%s again: %v", in.name, err)
			}
			if c, u, _ := again.Counts(); c != 0 || u != 0 {
				t.Errorf("%s imported again: %d created, %d updated, want nothing", in.name, c, u)
			}
		}
	})
}

// TestCCDAAndFHIRConsolidate imports a C-CDA document and a FHIR Bundle
// holding the same problems and medications (under other ids, as another
// system would send them): each fact is kept once, the second copy is
// stored as a duplicate, and a Provenance names both sources.
func TestCCDAAndFHIRConsolidate(t *testing.T) {
	doc := samples(t, "ccda", ".xml")["hl7-ccda-examples_CCD-1.xml"]
	if doc == nil {
		t.Skip("CCD-1 sample missing")
	}
	conv, err := ccda.Convert(doc, ccda.Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	// the FHIR side: the conversion's Patient, Conditions and
	// MedicationStatements, renamed, in a collection Bundle
	want := map[string]int{}
	var entries []map[string]any
	rename := map[string]string{}
	for _, r := range conv.Resources {
		if r.Type == "Patient" || r.Type == "Condition" || r.Type == "MedicationStatement" {
			rename[r.Type+"/"+r.ID] = r.Type + "/fhir-" + r.ID[:8]
		}
	}
	for _, r := range conv.Resources {
		if _, ok := rename[r.Type+"/"+r.ID]; !ok {
			continue
		}
		raw := string(r.Raw)
		for from, to := range rename {
			raw = strings.ReplaceAll(raw, `"`+from+`"`, `"`+to+`"`)
		}
		raw = strings.Replace(raw, `"id":"`+r.ID+`"`, `"id":"fhir-`+r.ID[:8]+`"`, 1)
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, map[string]any{"fullUrl": "http://other.example/fhir/" + r.Type + "/fhir-" + r.ID[:8], "resource": m})
		if r.Type != "Patient" {
			want[r.Type]++
		}
	}
	if want["Condition"] == 0 || want["MedicationStatement"] == 0 {
		t.Fatalf("the sample converted to %v", want)
	}
	bundle, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries})
	if err != nil {
		t.Fatal(err)
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		newPatient(t, st, "pat")
		im := &ingest.Importer{Store: st, Now: fixedNow}
		r1, err := im.Import(ctx, "pat", ingest.MediaCDA, doc)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := im.Import(ctx, "pat", ingest.MediaFHIRJSON, bundle)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Report.Duplicates < want["Condition"]+want["MedicationStatement"] {
			t.Errorf("FHIR import: %d duplicates, want at least %d", r2.Report.Duplicates, want["Condition"]+want["MedicationStatement"])
		}
		rec := everything(t, st, "pat")
		for typ, n := range want {
			if got := len(rec[typ]); got != n {
				t.Errorf("%s: %d in the consolidated record, want %d (one copy each)", typ, got, n)
			}
		}
		// every kept problem and medication has a Provenance naming both
		for _, typ := range []string{"Condition", "MedicationStatement"} {
			for _, r := range rec[typ] {
				ref := r.Type + "/" + r.ID
				p, err := st.Read(ctx, "Provenance", consolidate.LocalID("", "Provenance", "dedup/"+ref))
				if err != nil {
					t.Errorf("%s: no deduplication Provenance: %v", ref, err)
					continue
				}
				agents := string(fjsonRaw(p, "agent"))
				if !strings.Contains(agents, r1.Source) || !strings.Contains(agents, r2.Source) {
					t.Errorf("%s: the Provenance does not name both %s and %s: %s", ref, r1.Source, r2.Source, agents)
				}
			}
		}
	})
}

func fjsonRaw(r *fhir.Resource, key string) []byte {
	if v := r.Root().Get(key); v != nil {
		return fjson.AppendCompact(nil, v)
	}
	return nil
}

// TestImportRejects: bad inputs are refused with the matching error and
// write nothing.
func TestImportRejects(t *testing.T) {
	hl7 := samples(t, "hl7v2", ".hl7")["ADT-A01-01.hl7"]
	pdf := []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
	cases := []struct {
		name, pid, ct string
		body          []byte
		want          error
	}{
		{"unknown patient", "nobody", ingest.MediaCDA, []byte("<ClinicalDocument/>"), ingest.ErrNoPatient},
		{"bad patient id", "../x", ingest.MediaPDF, pdf, ingest.ErrNoPatient},
		{"unsupported type", "pat", "text/plain", []byte("hello"), ingest.ErrUnsupportedMedia},
		{"garbage type", "pat", ";;;", []byte("hello"), ingest.ErrUnsupportedMedia},
		{"xml not cda", "pat", "application/xml", []byte("<html><body/></html>"), ingest.ErrUnsupportedMedia},
		{"cda not cda", "pat", ingest.MediaCDA, []byte("<html><body/></html>"), ingest.ErrMalformed},
		{"cda bad xml", "pat", ingest.MediaCDA, []byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget>`), ingest.ErrMalformed},
		{"hl7 no MSH", "pat", ingest.MediaHL7v2, []byte("PID|1||123\r"), ingest.ErrMalformed},
		{"hl7 bad encoding chars", "pat", ingest.MediaHL7v2, []byte("MSH|^^^^|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||1^^^X\r"), ingest.ErrMalformed},
		{"hl7 truncated", "pat", ingest.MediaHL7v2, hl7[:12], ingest.ErrMalformed},
		{"hl7 unsupported type", "pat", ingest.MediaHL7v2, []byte("MSH|^~\\&|A|B|C|D|20240101||QRY^A19|1|P|2.5\rPID|1||1^^^X\r"), ingest.ErrUnconvertible},
		{"hl7 without PID", "pat", ingest.MediaHL7v2, []byte("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rEVN|A01|20240101\r"), ingest.ErrUnconvertible},
		{"json broken", "pat", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Bundle",`), ingest.ErrMalformed},
		{"json duplicate keys", "pat", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Bundle","type":"collection","type":"batch"}`), ingest.ErrMalformed},
		{"json not a bundle", "pat", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Patient"}`), ingest.ErrUnconvertible},
		{"json searchset", "pat", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Bundle","type":"searchset"}`), ingest.ErrUnconvertible},
		{"json bad entry", "pat", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"NoSuchType"}}]}`), ingest.ErrMalformed},
		{"json two patients", "pat", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a"}},{"resource":{"resourceType":"Patient","id":"b"}}]}`), ingest.ErrUnconvertible},
		{"pdf that is not", "pat", ingest.MediaPDF, []byte("<html>"), ingest.ErrMalformed},
		{"png that is a pdf", "pat", ingest.MediaPNG, pdf, ingest.ErrMalformed},
		{"short dicom", "pat", ingest.MediaDICOM, []byte("DICM"), ingest.ErrMalformed},
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatient(t, st, "pat")
		im := &ingest.Importer{Store: st, Now: fixedNow}
		for _, tc := range cases {
			_, err := im.Import(context.Background(), tc.pid, tc.ct, tc.body)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
			}
		}
		if rec := everything(t, st, "pat"); len(rec) != 1 || len(rec["Patient"]) != 1 {
			t.Errorf("refused imports wrote %d types", len(rec))
		}
	})
}

// TestImportFile keeps a PNG as Binary + DocumentReference, once.
func TestImportFile(t *testing.T) {
	png := append([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'}, bytes.Repeat([]byte{7}, 100)...)
	dicom := append(make([]byte, 128), []byte("DICM\x02\x00")...)
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatient(t, st, "pat")
		im := &ingest.Importer{Store: st, Now: fixedNow}
		for _, f := range []struct {
			ct   string
			body []byte
		}{{ingest.MediaPNG, png}, {ingest.MediaDICOM, dicom}} {
			res, err := im.Import(context.Background(), "pat", f.ct, f.body)
			if err != nil {
				t.Fatal(err)
			}
			if c, _, _ := res.Counts(); c != 2 {
				t.Fatalf("%s: %d created, want Binary + DocumentReference", f.ct, c)
			}
			again, err := im.Import(context.Background(), "pat", f.ct, f.body)
			if err != nil {
				t.Fatal(err)
			}
			if c, _, u := again.Counts(); c != 0 || u != 2 {
				t.Errorf("%s again: %d created, %d unchanged", f.ct, c, u)
			}
		}
		docs := everything(t, st, "pat")["DocumentReference"]
		if len(docs) != 2 {
			t.Fatalf("%d DocumentReferences, want 2", len(docs))
		}
		for _, d := range docs {
			if errs := validateIssues(d); len(errs) > 0 {
				t.Errorf("DocumentReference does not validate: %v", errs)
			}
		}
	})
}

func validateIssues(r *fhir.Resource) []fhir.Issue {
	var errs []fhir.Issue
	for _, is := range validate.Validate(r) {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			errs = append(errs, is)
		}
	}
	return errs
}

func newPatientRaw(t testing.TB, st storage.Store, body string) {
	t.Helper()
	p, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}
