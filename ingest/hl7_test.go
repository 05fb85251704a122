package ingest_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/mllp"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// withControlID returns msg with MSH-10 replaced, so that one sample makes
// many distinct messages.
func withControlID(msg []byte, id string) []byte {
	lines := bytes.SplitN(msg, []byte("\n"), 2)
	head := string(lines[0])
	head = strings.TrimRight(head, "\r")
	f := strings.Split(head, "|")
	for len(f) <= 9 {
		f = append(f, "")
	}
	f[9] = id
	out := []byte(strings.Join(f, "|") + "\r")
	if len(lines) == 2 {
		out = append(out, lines[1]...)
	}
	return out
}

func ackCode(ack []byte) string {
	for _, seg := range bytes.Split(ack, []byte("\r")) {
		if bytes.HasPrefix(seg, []byte("MSA|")) {
			f := strings.Split(string(seg), "|")
			if len(f) > 1 {
				return f[1]
			}
		}
	}
	return ""
}

// reopenable opens a store that can be closed and opened again on the
// same data.
func reopenable(t testing.TB, kind string) func() storage.Store {
	ctx := context.Background()
	switch kind {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "mllp.db")
		return func() storage.Store {
			s, err := sqlite.Open(ctx, path, sqlstore.Options{Registry: registry})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	default:
		cfg := pgtest.Config(t)
		return func() storage.Store {
			s, err := postgres.Open(ctx, cfg, sqlstore.Options{Registry: registry})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
}

// TestMLLPEndToEnd sends the HL7 v2 samples (each under several control
// ids) over several MLLP connections at once, many messages per
// connection, with a malformed message and a sender that hangs up
// mid-message among them. After the listener and the store are closed and
// the store reopened, every acknowledged message's original and patient
// are there.
func TestMLLPEndToEnd(t *testing.T) {
	base := samples(t, "hl7v2", ".hl7")
	names := make([]string, 0, len(base))
	for n := range base {
		names = append(names, n)
	}
	sort.Strings(names)
	const conns, rounds = 4, 3
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			open := reopenable(t, kind)
			st := open()
			srv := &mllp.Server{Handler: &ingest.HL7Handler{Store: st, Search: registry, Now: fixedNow}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()

			// a sender that hangs up inside a frame
			if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				_, _ = c.Write(append([]byte{mllp.StartBlock}, base[names[0]][:40]...))
				c.Close()
			}

			var (
				mu    sync.Mutex
				acked [][]byte
				wg    sync.WaitGroup
				errs  = make(chan error, conns)
			)
			for c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					cl, err := mllp.Dial(ctx, ln.Addr().String())
					if err != nil {
						errs <- err
						return
					}
					defer cl.Close()
					for r := range rounds {
						for i, n := range names {
							msg := withControlID(base[n], fmt.Sprintf("C%dR%dM%d", c, r, i))
							ack, err := cl.Send(ctx, msg)
							if err != nil {
								errs <- fmt.Errorf("%s: %w", n, err)
								return
							}
							if code := ackCode(ack); code != "AA" {
								errs <- fmt.Errorf("%s: ACK %s: %q", n, code, ack)
								return
							}
							mu.Lock()
							acked = append(acked, msg)
							mu.Unlock()
						}
						// a malformed message is rejected and the connection goes on
						ack, err := cl.Send(ctx, []byte("MSH|^^|bad\r"))
						if err != nil {
							errs <- err
							return
						}
						if code := ackCode(ack); code != "AR" {
							errs <- fmt.Errorf("malformed message answered %s", code)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			<-served
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if want := conns * rounds * len(names); len(acked) != want {
				t.Fatalf("%d messages acknowledged, want %d", len(acked), want)
			}

			st = open()
			defer st.Close()
			hashes := map[string]bool{}
			q, err := registry.ParseQuery("DocumentReference", url.Values{"_count": {"1000"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			req := storage.SearchRequest{Query: q}
			for {
				page, err := st.Search(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range page.Matches {
					for _, c := range d.Root().Get("content").Items {
						hashes[c.Get("attachment").Get("hash").String()] = true
					}
				}
				if page.Next == "" {
					break
				}
				req.Cursor = page.Next
			}
			for _, msg := range acked {
				sum := sha1.Sum(msg)
				if !hashes[base64.StdEncoding.EncodeToString(sum[:])] {
					t.Errorf("acknowledged message %.40q is not stored", msg)
				}
			}
			// each sample's patient is one local Patient, found again by
			// every message about it
			pq, err := registry.ParseQuery("Patient", url.Values{"_count": {"1000"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			page, err := st.Search(context.Background(), storage.SearchRequest{Query: pq})
			if err != nil {
				t.Fatal(err)
			}
			local := 0
			for _, p := range page.Matches {
				if !consolidate.IsDuplicate(p) {
					local++
				}
			}
			if local == 0 || local > len(names) {
				t.Errorf("%d local Patients for %d samples", local, len(names))
			}
		})
	}
}

// TestHL7HandlerMatchesPatient: a message whose PID-3 names a local
// Patient's identifier is filed into that record, not a new one.
func TestHL7HandlerMatchesPatient(t *testing.T) {
	msg := samples(t, "hl7v2", ".hl7")["ORU-R01-01.hl7"]
	if msg == nil {
		t.Skip("ORU-R01-01 sample missing")
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		h := &ingest.HL7Handler{Store: st, Search: registry, Now: fixedNow}
		im := &ingest.Importer{Store: st}
		hm, err := im.ConvertHL7v2(msg)
		if err != nil {
			t.Fatal(err)
		}
		ids := hm.Patient.Root().Get("identifier")
		if ids == nil || len(ids.Items) == 0 {
			t.Skip("the sample's PID has no identifier")
		}
		var first string
		for _, id := range ids.Items {
			if id.Get("system").String() != "" {
				first = id.Get("system").String() + "|" + id.Get("value").String()
				break
			}
		}
		if first == "" {
			t.Skip("no PID-3 identifier with a system")
		}
		sys, val, _ := strings.Cut(first, "|")
		newPatientWithID(t, st, "known", sys, val)
		pid, ack := h.Handle(ctx, msg)
		if ackCode(ack) != "AA" {
			t.Fatalf("ACK %q", ack)
		}
		if pid != "known" {
			t.Errorf("filed into Patient/%s, want Patient/known", pid)
		}
		if rec := everything(t, st, "known"); len(rec["DiagnosticReport"]) == 0 || len(rec["Observation"]) == 0 {
			t.Errorf("the known patient's record holds %d reports, %d observations", len(rec["DiagnosticReport"]), len(rec["Observation"]))
		}
		// a second message about the same patient goes to the same record
		pid2, ack := h.Handle(ctx, withControlID(msg, "SECOND"))
		if ackCode(ack) != "AA" || pid2 != "known" {
			t.Errorf("second message: ACK %q, patient %s", ackCode(ack), pid2)
		}
	})
}

func newPatientWithID(t *testing.T, st storage.Store, id, system, value string) {
	t.Helper()
	body := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"identifier":[{"system":%q,"value":%q}]}`, id, system, value)
	newPatientRaw(t, st, body)
}

// TestHL7AuditTrail: what an HL7 v2 message files is on the audit trail,
// committed with it: an import from the message's sender, about the
// patient it was filed into, naming the versions stored.
func TestHL7AuditTrail(t *testing.T) {
	msg := samples(t, "hl7v2", ".hl7")["ORU-R01-01.hl7"]
	if msg == nil {
		t.Skip("ORU-R01-01 sample missing")
	}
	eachStore(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		keys := audit.NewKeyring(audit.Key{ID: "t", Secret: []byte("0123456789abcdef0123456789abcdef")})
		tr, err := audit.Open(ctx, st, audit.Options{Keys: keys, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		h := &ingest.HL7Handler{Store: st, Search: registry, Now: fixedNow}
		if ack := h.HandleMessage(ctx, msg); ackCode(ack) != "AA" {
			t.Fatalf("ACK %q", ack)
		}
		var evs []*audit.Event
		if err := tr.Log().ScanAudit(ctx, 1, func(r *storage.AuditRecord) error {
			e, err := audit.EventOf(r)
			evs = append(evs, e)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range evs {
			if e.Operation != "hl7v2" || !strings.HasPrefix(e.Origin, "HL7 v2 from ") || e.Patient == "" {
				t.Errorf("event %+v", e)
				continue
			}
			for _, r := range e.Resources {
				found = found || strings.HasPrefix(r, "Observation/") && strings.Contains(r, "/_history/")
			}
		}
		if !found {
			t.Errorf("no event names a stored Observation: %d events", len(evs))
		}
		if rep, err := audit.VerifyLog(ctx, tr.Log(), audit.VerifyOptions{Keys: keys}); err != nil || !rep.OK() {
			t.Errorf("verify: %v %v", err, rep.Problems)
		}
	})
}
