package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/referral/knowledge"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// loadLargestSynthea posts every Synthea bundle and returns the id of the
// largest patient.
func loadLargestSynthea(b *testing.B, h *harness) string {
	return largestSynthea(b, func(body []byte) *httptest.ResponseRecorder {
		return h.do(http.MethodPost, "/", body, "Prefer: return=minimal")
	})
}

// largestSynthea posts every Synthea bundle with post, fails on an answer
// other than 200, and returns the id of the largest patient.
func largestSynthea(b *testing.B, post func(body []byte) *httptest.ResponseRecorder) string {
	b.Helper()
	var pid string
	most := 0
	for _, f := range syntheaFiles(b) {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		w := post(body)
		if w.Code != http.StatusOK {
			b.Fatalf("load %s: %d", f, w.Code)
		}
		if n := strings.Count(string(body), `"request":`); n > most {
			most = n
			loc := w.Body.String()
			i := strings.Index(loc, `"location":"Patient/`)
			pid = loc[i+len(`"location":"Patient/`):]
			pid = pid[:strings.Index(pid, "/")]
		}
	}
	return pid
}

// BenchmarkPatientSummary measures Patient/$summary (the IPS document
// with the computed case summary: flags, trends, risks, missing tests)
// of the largest Synthea patient, with the whole Synthea set loaded and
// the knowledge tables already in memory, as FHIR JSON and as the
// printable page; one request at a time. The SQLite store is reopened
// after the load so the planner has the statistics it keeps (Open and
// Close run PRAGMA optimize, and a running store every 5 minutes); the
// "cold" case measures the same right after a bulk load.
func BenchmarkPatientSummary(b *testing.B) {
	knowledge.Builtin() // loaded once per process, at the first summary
	run := func(b *testing.B, h *harness, pid string) {
		for _, c := range []struct{ name, query string }{{"json", ""}, {"html", "?_format=html"}} {
			b.Run(c.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					serve(b, h, http.MethodGet, "/Patient/"+pid+"/$summary"+c.query, nil, http.StatusOK)
				}
			})
		}
	}
	b.Run("sqlite", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "fhirgate.db")
		open := func() *harness {
			st, err := sqlite.Open(context.Background(), path, sqlstore.Options{Registry: testRegistry})
			if err != nil {
				b.Fatal(err)
			}
			return &harness{t: b, store: st, srv: server.New(server.Config{Store: st, Search: testRegistry, Validator: validate.Default(), BaseURL: "http://fhir.test"})}
		}
		h := open()
		pid := loadLargestSynthea(b, h)
		b.Run("cold", func(b *testing.B) { run(b, h, pid) })
		h.store.Close()
		h = open()
		defer h.store.Close()
		run(b, h, pid)
	})
	b.Run("postgres", func(b *testing.B) {
		if os.Getenv("FHIRGATE_TEST_POSTGRES") == "" {
			b.Skip("set FHIRGATE_TEST_POSTGRES")
		}
		h := newHarness(b, storeKinds[1], server.Config{})
		run(b, h, loadLargestSynthea(b, h))
	})
}
