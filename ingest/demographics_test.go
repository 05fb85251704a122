package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/mllp"
	"github.com/fhirgate/fhirgate/storage"
)

// eve is the target Patient of the wrong-patient tests.
const eve = `{"resourceType":"Patient","id":"eve","identifier":[{"system":"urn:oid:2.16.840.1.113883.19.5","value":"MRN-7"}],
	"name":[{"family":"Betterhalf","given":["Eve","Marie"]}],"gender":"female","birthDate":"1987-01-01"}`

// cdaAbout is a small C-CDA with one problem, about the person described.
func cdaAbout(mrn, given, family, sex, birth string) []byte {
	return []byte(`<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <id root="1.2.3.4" extension="` + mrn + given + family + sex + birth + `"/>
 <code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/><title>Summary</title><effectiveTime value="20240101"/>
 <recordTarget><patientRole><id root="2.16.840.1.113883.19.5" extension="` + mrn + `"/>
  <patient><name><given>` + given + `</given><family>` + family + `</family></name>
   <administrativeGenderCode code="` + sex + `" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="` + birth + `"/></patient>
 </patientRole></recordTarget>
 <component><structuredBody><component><section>
  <templateId root="2.16.840.1.113883.10.20.22.2.5.1"/><code code="11450-4" codeSystem="2.16.840.1.113883.6.1"/><title>Problems</title>
  <entry><observation classCode="OBS" moodCode="EVN"><code code="55607006" codeSystem="2.16.840.1.113883.6.96"/>
   <statusCode code="completed"/><effectiveTime><low value="20200101"/></effectiveTime>
   <value xsi:type="CD" code="230690007" codeSystem="2.16.840.1.113883.6.96" displayName="Stroke"/></observation></entry>
 </section></component></structuredBody></component>
</ClinicalDocument>`)
}

// oruAbout is an ORU^R01 with one result, about the person described.
func oruAbout(control, mrn, given, family, sex, birth string) []byte {
	return []byte("MSH|^~\\&|LAB|CITY LAB|GW|GW|20240101120000||ORU^R01^ORU_R01|" + control + "|P|2.5.1\r" +
		"PID|1||" + mrn + "^^^MRN&2.16.840.1.113883.19.5&ISO^MR||" + family + "^" + given + "||" + birth + "|" + sex + "\r" +
		"OBR|1||R1|24331-1^Lipid panel^LN|||20240101\r" +
		"OBX|1|NM|2093-3^Cholesterol^LN||180|mg/dL|<200||||F\r")
}

func conditions(t *testing.T, st storage.Store, pid string) int {
	t.Helper()
	return len(everything(t, st, pid)["Condition"]) + len(everything(t, st, pid)["Observation"])
}

// TestImportRefusesWrongPatient: a C-CDA document, an HL7 v2 message or a
// FHIR Bundle whose demographics contradict the target Patient is refused
// with every contradiction named and nothing filed; what says the same
// thing differently (case, accents, order of given names, a coarser birth
// date) or leaves things out is filed; an accepted mismatch is filed and
// recorded in the Provenance.
func TestImportRefusesWrongPatient(t *testing.T) {
	type tc struct {
		name, ct string
		body     []byte
		want     []string // mismatching elements; none: filed
	}
	cases := []tc{
		{"same person (C-CDA)", ingest.MediaCDA, cdaAbout("MRN-7", "Eve", "Betterhalf", "F", "19870101"), nil},
		{"said differently (C-CDA)", ingest.MediaCDA, cdaAbout("MRN-7", "Marie Ève", "BETTERHALF", "F", "1987"), nil},
		{"nothing but a name (C-CDA)", ingest.MediaCDA, cdaAbout("", "E.", "Betterhalf", "", ""), nil},
		{"another person (C-CDA)", ingest.MediaCDA, cdaAbout("MRN-8", "Adam", "Everyman", "M", "19700505"), []string{"identifier", "name", "birthDate", "gender"}},
		{"another birth date (C-CDA)", ingest.MediaCDA, cdaAbout("MRN-7", "Eve", "Betterhalf", "F", "19870102"), []string{"birthDate"}},
		{"same person (HL7 v2)", ingest.MediaHL7v2, oruAbout("A1", "MRN-7", "Eve", "Betterhalf", "F", "19870101"), nil},
		{"another person (HL7 v2)", ingest.MediaHL7v2, oruAbout("A2", "MRN-8", "Adam", "Everyman", "M", "19700505"), []string{"identifier", "name", "birthDate", "gender"}},
		{"another sex (HL7 v2)", ingest.MediaHL7v2, oruAbout("A3", "MRN-7", "Eve", "Betterhalf", "M", ""), []string{"gender"}},
		{"another person (FHIR)", ingest.MediaFHIRJSON, []byte(`{"resourceType":"Bundle","type":"collection","entry":[
			{"fullUrl":"urn:uuid:4b1e3f0a-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Everyman","given":["Adam"]}]}},
			{"resource":{"resourceType":"Condition","subject":{"reference":"urn:uuid:4b1e3f0a-0000-4000-8000-000000000001"},"code":{"text":"stroke"}}}]}`), []string{"name"}},
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		im := &ingest.Importer{Store: st, Now: fixedNow}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				// each case files into a record of its own
				pid := fmt.Sprintf("eve%d", i)
				newPatientRaw(t, st, strings.Replace(eve, `"id":"eve"`, `"id":"`+pid+`"`, 1))
				res, err := im.Import(ctx, pid, c.ct, c.body)
				if len(c.want) == 0 {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					if len(res.Accepted) != 0 || conditions(t, st, pid) == 0 {
						t.Errorf("accepted %v, %d facts filed", res.Accepted, conditions(t, st, pid))
					}
					return
				}
				var me *ingest.MismatchError
				if !errors.As(err, &me) || !errors.Is(err, ingest.ErrDemographicsMismatch) {
					t.Fatalf("err %v, want a MismatchError", err)
				}
				var got []string
				for _, m := range me.Mismatches {
					got = append(got, m.Element)
					if m.SourcePath == "" || !strings.HasPrefix(m.TargetPath, "Patient.") {
						t.Errorf("mismatch without paths: %+v", m)
					}
					// the error's text may be logged: it holds no value
					if m.SourceValue != "" && strings.Contains(err.Error(), m.SourceValue) || strings.Contains(err.Error(), m.TargetValue) {
						t.Errorf("the error text holds a value: %s", err)
					}
				}
				if strings.Join(got, ",") != strings.Join(c.want, ",") {
					t.Errorf("mismatches %v, want %v", got, c.want)
				}
				if n := conditions(t, st, pid); n != 0 {
					t.Fatalf("%d facts filed from a refused import", n)
				}
				// a system client's explicit override files it, and says so
				res, err = im.ImportWith(ctx, pid, c.ct, c.body, ingest.Options{AcceptMismatch: true, AcceptedBy: "city-ehr"})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Accepted) != len(c.want) || conditions(t, st, pid) == 0 {
					t.Fatalf("override: accepted %d, %d facts filed", len(res.Accepted), conditions(t, st, pid))
				}
				checkAcceptedProvenance(t, everything(t, st, pid)["Provenance"], res.Accepted)
			})
		}
	})
}

// checkAcceptedProvenance: one of provs names the accepting client as a
// verifier and lists every accepted contradiction by its paths.
func checkAcceptedProvenance(t *testing.T, provs []*fhir.Resource, accepted []subject.Mismatch) {
	t.Helper()
	for _, p := range provs {
		raw := string(p.Raw)
		if !strings.Contains(raw, "demographics-mismatch-accepted") {
			continue
		}
		if !strings.Contains(raw, `"code":"verifier"`) || !strings.Contains(raw, `"value":"city-ehr"`) {
			t.Errorf("the Provenance does not name the client as verifier: %s", raw)
		}
		for _, m := range accepted {
			if !strings.Contains(raw, m.SourcePath) || !strings.Contains(raw, m.TargetPath) {
				t.Errorf("the Provenance does not name %s", m.SourcePath)
			}
		}
		if len(p.Root().Get("target").Items) < 2 {
			t.Errorf("the Provenance targets %d resources", len(p.Root().Get("target").Items))
		}
		return
	}
	t.Errorf("no Provenance records the accepted mismatch among %d", len(provs))
}

// TestMLLPRefusesWrongPatient: over MLLP a message whose PID-3 names a
// local Patient but whose name, birth date or sex contradict it is
// answered AE, one ERR per contradiction located at its PID field and
// without the stored Patient's values, and nothing is stored; the same
// patient's own message is accepted on the same connection.
func TestMLLPRefusesWrongPatient(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatientRaw(t, st, eve)
		srv := &mllp.Server{Handler: &ingest.HL7Handler{Store: st, Search: registry, Now: fixedNow}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			<-served
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cl, err := mllp.Dial(ctx, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()

		ack, err := cl.Send(ctx, oruAbout("W1", "MRN-7", "Adam", "Everyman", "M", "19700505"))
		if err != nil {
			t.Fatal(err)
		}
		if ackCode(ack) != "AE" {
			t.Fatalf("ACK %q, want AE", ack)
		}
		var errs []string
		for _, seg := range strings.Split(string(ack), "\r") {
			if strings.HasPrefix(seg, "ERR|") {
				errs = append(errs, seg)
			}
		}
		want := []string{"PID^1^5^1", "PID^1^7", "PID^1^8"}
		if len(errs) != len(want) {
			t.Fatalf("ERR segments %q, want %d", errs, len(want))
		}
		for i, e := range errs {
			if f := strings.Split(e, "|"); len(f) < 6 || f[2] != want[i] && !strings.HasPrefix(f[2], want[i]+"^") || !strings.Contains(f[5], "demographics-mismatch") {
				t.Errorf("ERR %q, want location %s and the application code", e, want[i])
			}
		}
		for _, v := range []string{"Betterhalf", "1987", "female"} {
			if strings.Contains(string(ack), v) {
				t.Errorf("the ACK tells the sender the stored Patient's %q", v)
			}
		}
		if n := conditions(t, st, "eve"); n != 0 {
			t.Fatalf("%d facts stored from a refused message", n)
		}
		if docs := everything(t, st, "eve")["DocumentReference"]; len(docs) != 0 {
			t.Fatalf("the refused message's original was kept")
		}
		// the right patient's message goes through on the same connection
		ack, err = cl.Send(ctx, oruAbout("W2", "MRN-7", "Eve", "Betterhalf", "F", "19870101"))
		if err != nil {
			t.Fatal(err)
		}
		if ackCode(ack) != "AA" || conditions(t, st, "eve") == 0 {
			t.Fatalf("ACK %q, %d facts", ack, conditions(t, st, "eve"))
		}
	})
}
