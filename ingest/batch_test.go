package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/mllp"
	"github.com/fhirgate/fhirgate/storage"
)

// batchOf wraps messages in FHS/BHS … BTS/FTS.
func batchOf(msgs ...string) []byte {
	b := "FHS|^~\\&|LAB|CITY LAB|GW|GW|20240101120000||||F77\rBHS|^~\\&|LAB|CITY LAB|GW|GW|20240101120000||||B77\r"
	for _, m := range msgs {
		b += m
	}
	b += "BTS|" + string(rune('0'+len(msgs))) + "\rFTS|1\r"
	return []byte(b)
}

// segmentsOf lists an acknowledgement batch's MSA codes and control ids.
func msaOf(ack []byte) (codes, ids []string) {
	for _, seg := range strings.Split(string(ack), "\r") {
		if strings.HasPrefix(seg, "MSA|") {
			f := strings.Split(seg, "|")
			codes = append(codes, f[1])
			ids = append(ids, f[2])
		}
	}
	return
}

// TestMLLPBatch: a batch over MLLP is answered by a batch of ACKs, one per
// message in order, each message filed or refused on its own; the batch
// envelope references the sender's.
func TestMLLPBatch(t *testing.T) {
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
		batch := batchOf(
			string(oruAbout("B1", "MRN-7", "Eve", "Betterhalf", "F", "19870101")),
			"MSH|^~\\&|LAB|CITY LAB|GW|GW|20240101120000||QRY^A19|B2|P|2.5\rPID|1||1^^^X\r",
			string(oruAbout("B3", "MRN-7", "Adam", "Everyman", "M", "19700505")),
			string(oruAbout("B4", "MRN-9", "Zed", "Newman", "M", "19600101")),
		)
		ack, err := cl.Send(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		codes, ids := msaOf(ack)
		if strings.Join(codes, ",") != "AA,AR,AE,AA" || strings.Join(ids, ",") != "B1,B2,B3,B4" {
			t.Fatalf("ACKs %v for %v: %q", codes, ids, ack)
		}
		s := string(ack)
		if !strings.HasPrefix(s, "FHS|") || !strings.Contains(s, "BHS|") || !strings.Contains(s, "|B77\r") || !strings.Contains(s, "BTS|4\r") || !strings.HasSuffix(s, "FTS|1\r") {
			t.Errorf("batch envelope: %q", s)
		}
		if n := conditions(t, st, "eve"); n != 1 {
			t.Errorf("%d results filed for eve, want 1 (the wrong-patient message refused)", n)
		}
		// a batch that cannot be read is rejected whole
		ack, err = cl.Send(ctx, []byte("BHS|^~\\&|X\rPID|1\r"))
		if err != nil {
			t.Fatal(err)
		}
		if codes, _ := msaOf(ack); len(codes) != 1 || codes[0] != "AR" {
			t.Errorf("malformed batch answered %q", ack)
		}
	})
}

// TestImportBatch: $import of a batch files each message and answers with
// each message's fate and the batch ACK; a batch none of whose messages
// can be filed is refused with the first message's error.
func TestImportBatch(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		newPatientRaw(t, st, eve)
		im := &ingest.Importer{Store: st, Now: fixedNow}
		res, err := im.Import(ctx, "eve", ingest.MediaHL7v2, batchOf(
			string(oruAbout("I1", "MRN-7", "Eve", "Betterhalf", "F", "19870101")),
			string(oruAbout("I2", "MRN-7", "Adam", "Everyman", "M", "19700505")),
		))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Messages) != 2 || res.Messages[0].Code != "AA" || res.Messages[1].Code != "AE" || !errors.Is(res.Messages[1].Err, ingest.ErrDemographicsMismatch) {
			t.Fatalf("messages %+v", res.Messages)
		}
		if codes, _ := msaOf(res.ACK); strings.Join(codes, ",") != "AA,AE" {
			t.Errorf("batch ACK %q", res.ACK)
		}
		out, _ := json.Marshal(res.Outcome())
		if !strings.Contains(string(out), "message[2]") || !strings.Contains(string(out), "demographics mismatch") {
			t.Errorf("outcome %s", out)
		}
		_, err = im.Import(ctx, "eve", ingest.MediaHL7v2, batchOf(string(oruAbout("I3", "MRN-7", "Adam", "Everyman", "M", "19700505"))))
		if !errors.Is(err, ingest.ErrDemographicsMismatch) {
			t.Errorf("a batch of one wrong-patient message: %v", err)
		}
		if _, err := im.Import(ctx, "eve", ingest.MediaHL7v2, []byte("BHS|^~\\&\rBTS|0\r")); !errors.Is(err, ingest.ErrMalformed) {
			t.Errorf("an empty batch: %v", err)
		}
	})
}

// TestIssue17ADT: the ADT message of issue 17 loses nothing clinical: the
// repeated heart rate (60~120), the penicillin allergy, the stroke, the
// colon biopsy and the insurance are in the record after the import.
func TestIssue17ADT(t *testing.T) {
	msg := samples(t, "hl7v2", ".hl7")["ADT-A01-01.hl7"]
	if msg == nil {
		t.Skip("ADT-A01-01.hl7 not in the shared samples")
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatient(t, st, "adt")
		im := &ingest.Importer{Store: st, Now: fixedNow}
		if _, err := im.Import(context.Background(), "adt", ingest.MediaHL7v2, msg); err != nil {
			t.Fatal(err)
		}
		rec := everything(t, st, "adt")
		find := func(typ, want string) {
			t.Helper()
			for _, r := range rec[typ] {
				if strings.Contains(string(r.Raw), want) {
					return
				}
			}
			t.Errorf("no %s with %s in the record", typ, want)
		}
		find("AllergyIntolerance", "PENICILLIN")
		find("Condition", `"code":"422504002"`)
		find("Procedure", `"code":"76164006"`)
		find("Coverage", "Blue Cross Blue Shield of Texas")
		find("Observation", `"value":120`)
		find("Observation", `"value":60`)
		find("RelatedPerson", "Evan")
	})
}
