package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/internal/openloop"
	"github.com/fhirgate/fhirgate/server"
)

// benchClients × GOMAXPROCS goroutines are the parallel clients of the
// read benchmarks: 16 on two cores, as wrk's 32 connections are to a served
// gateway, so that the audit trail's group commit shares its appends as it
// does in production (with GOMAXPROCS clients every read commits alone).
const benchClients = 16

// benchStores runs b once per store kind on a harness.
func benchStores(b *testing.B, fn func(b *testing.B, h *harness)) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		fn(b, newHarness(b, k, server.Config{}))
	})
}

// eachBenchStore runs fn once per store kind (PostgreSQL only when
// configured).
func eachBenchStore(b *testing.B, fn func(b *testing.B, k storeKind)) {
	for _, k := range storeKinds {
		b.Run(k.name, func(b *testing.B) {
			if k.name == "postgres" && os.Getenv("FHIRGATE_TEST_POSTGRES") == "" {
				b.Skip("set FHIRGATE_TEST_POSTGRES")
			}
			fn(b, k)
		})
	}
}

func serve(b *testing.B, h *harness, method, path string, body []byte, want int) {
	req := httptest.NewRequest(method, path, nil)
	if body != nil {
		req = httptest.NewRequest(method, path, bytesReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	if w.Code != want {
		b.Fatalf("%s %s: %d", method, path, w.Code)
	}
}

// BenchmarkCreate measures POST /Patient end to end in process.
func BenchmarkCreate(b *testing.B) {
	benchStores(b, func(b *testing.B, h *harness) {
		body := []byte(patientBody)
		b.SetBytes(int64(len(body)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			serve(b, h, http.MethodPost, "/Patient", body, http.StatusCreated)
		}
	})
}

// BenchmarkRead measures GET /Patient/{id} with parallel clients.
func BenchmarkRead(b *testing.B) {
	benchStores(b, func(b *testing.B, h *harness) {
		id := h.create(patientBody)
		runClients(b, func() {
			serve(b, h, http.MethodGet, "/Patient/"+id, nil, http.StatusOK)
		})
	})
}

// runClients runs fn from benchClients × GOMAXPROCS parallel clients and
// reports the latency percentiles of the calls next to ns/op (the time
// per call of the whole machine): p99-µs is what the slowest reads wait,
// which the audit trail's group commit may raise by at most its interval.
func runClients(b *testing.B, fn func()) {
	var (
		mu  sync.Mutex
		all []time.Duration
	)
	b.SetParallelism(benchClients)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			fn()
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		all = append(all, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	reportLatencies(b, all, false)
}

// reportLatencies reports the p50 and p99 of lat (and p99.9 with tail).
func reportLatencies(b *testing.B, lat []time.Duration, tail bool) {
	openloop.Report(b, "", lat, tail)
}

// BenchmarkReadNoAudit is BenchmarkRead without the audit trail: the
// baseline BenchmarkReadProviderNoAudit compares with (what access control
// costs), and what the trail costs a read.
func BenchmarkReadNoAudit(b *testing.B) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		h := newHarness(b, k, server.Config{})
		id := h.create(patientBody)
		srv := server.New(server.Config{Store: h.store, Search: testRegistry, BaseURL: "http://fhir.test"})
		runClients(b, func() {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/Patient/"+id, nil))
			if w.Code != http.StatusOK {
				b.Fatalf("%d", w.Code)
			}
		})
	})
}

// BenchmarkReadLatency measures what the audit trail adds to a read's
// latency when the gateway is not saturated: reads arrive at a fixed rate
// (an open loop: each is timed from when it was due, so a stall delays
// the ones behind it too) and the same store is read without the trail
// and with it. Closed-loop benchmarks (BenchmarkRead) report the latency
// of a saturated gateway, where 32 clients queue for two cores whatever a
// read costs; here the rise of p99 is what group commit adds: at most its
// interval (audit.DefaultGroupCommit) when a commit takes less.
func BenchmarkReadLatency(b *testing.B) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		h := newHarness(b, k, server.Config{})
		id := h.create(patientBody)
		bare := server.New(server.Config{Store: h.store, Search: testRegistry, BaseURL: "http://fhir.test"})
		for _, rate := range []int{2000, 8000} {
			for _, trail := range []bool{false, true} {
				srv := bare
				if trail {
					srv = h.srv
				}
				b.Run(fmt.Sprintf("rate=%d/trail=%v", rate, trail), func(b *testing.B) {
					lat := openloop.Run(b, rate, func() {
						w := httptest.NewRecorder()
						srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/Patient/"+id, nil))
						if w.Code != http.StatusOK {
							b.Errorf("%d", w.Code)
						}
					})
					openloop.Report(b, "", lat, true)
				})
			}
		}
	})
}

// BenchmarkVRead measures GET /Patient/{id}/_history/{vid}.
func BenchmarkVRead(b *testing.B) {
	benchStores(b, func(b *testing.B, h *harness) {
		id := h.create(patientBody)
		b.SetParallelism(benchClients)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve(b, h, http.MethodGet, "/Patient/"+id+"/_history/1", nil, http.StatusOK)
			}
		})
	})
}

// BenchmarkSyntheaLoad posts every Synthea transaction bundle (validated,
// indexed) and reports resources per second.
func BenchmarkSyntheaLoad(b *testing.B) {
	files := syntheaFiles(b)
	var bodies [][]byte
	n := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
		n += bytesCount(body, `"request":`)
	}
	benchStores(b, func(b *testing.B, h *harness) {
		cpu := startCPU(b, h.store)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, body := range bodies {
				serve(b, h, http.MethodPost, "/", body, http.StatusOK)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "resources/s")
		cpu.report(b, float64(n), "resources")
	})
}

func bytesCount(b []byte, sub string) int { return strings.Count(string(b), sub) }

// BenchmarkEverything measures Patient/$everything of the largest Synthea
// patient (about 700 resources) with the whole Synthea set loaded.
func BenchmarkEverything(b *testing.B) {
	benchStores(b, func(b *testing.B, h *harness) {
		pid := loadLargestSynthea(b, h)
		b.SetParallelism(benchClients)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve(b, h, http.MethodGet, "/Patient/"+pid+"/$everything", nil, http.StatusOK)
			}
		})
	})
}

// BenchmarkReadProviderWithConsent measures a consented provider's read
// (token verification, scope check, consent decision, audit event) next to
// BenchmarkRead's unauthenticated one.
func BenchmarkReadProviderWithConsent(b *testing.B) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		s := newSecured(b, k)
		benchProviderRead(b, s.srv, s.tokens["provider"], "/Observation/"+s.oa)
	})
}

// BenchmarkReadProviderNoAudit is BenchmarkReadProviderWithConsent without
// the audit trail: what token verification, scopes and the Consent
// decision (its change mark included) cost on their own.
func BenchmarkReadProviderNoAudit(b *testing.B) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		s := newSecured(b, k)
		v, err := auth.New(config.Auth{
			Issuers: []config.Issuer{s.is.Config("fhirgate")},
			Clients: []config.Client{{ClientID: "clinic", Role: "provider", Organization: "Organization/clinic"}},
		}, auth.Options{})
		if err != nil {
			b.Fatal(err)
		}
		srv := server.New(server.Config{Store: s.store, Search: testRegistry, Auth: v, BaseURL: "http://fhir.test"})
		benchProviderRead(b, srv, s.tokens["provider"], "/Observation/"+s.oa)
	})
}

// benchProviderRead reads path with a bearer token from parallel clients.
func benchProviderRead(b *testing.B, srv http.Handler, token, path string) {
	hdr := "Bearer " + token
	runClients(b, func() {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", hdr)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d", w.Code)
		}
	})
}

// BenchmarkEverythingSecured measures Patient/$everything of the largest
// Synthea patient as the patient itself and as a provider its Consent
// releases the record to (the release rule decides every resource for the
// provider, its own record's compartment in SQL for the patient).
func BenchmarkEverythingSecured(b *testing.B) {
	benchPatientAndProvider(b, func(pid string) string { return "/Patient/" + pid + "/$everything" })
}

// BenchmarkSearchSecured measures a page of the largest Synthea patient's
// Observations (Observation?patient=…&_count=50) as the patient and as a
// provider its Consent releases the record to.
func BenchmarkSearchSecured(b *testing.B) {
	benchPatientAndProvider(b, func(pid string) string { return "/Observation?patient=" + pid + "&_count=50" })
}

// benchPatientAndProvider loads the Synthea set, gives a provider the
// largest patient's Consent, and reads pathOf(patient id) from parallel
// clients as the patient and as the provider.
func benchPatientAndProvider(b *testing.B, pathOf func(pid string) string) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		s := newSecured(b, k)
		pid := largestSynthea(b, func(body []byte) *httptest.ResponseRecorder {
			return s.as("system", http.MethodPost, "/", body, "Prefer: return=minimal")
		})
		if w := s.as("system", http.MethodPost, "/Consent", []byte(fmt.Sprintf(consentBody, pid))); w.Code != http.StatusCreated {
			b.Fatalf("consent: %d %s", w.Code, w.Body.String())
		}
		patient := s.is.PatientToken(b, "Patient/"+pid, "openid", "fhirUser", "patient/*.rs")
		path := pathOf(pid)
		for _, who := range []struct{ name, token string }{{"patient", patient}, {"provider", s.tokens["provider"]}} {
			b.Run(who.name, func(b *testing.B) { benchProviderRead(b, s.srv, who.token, path) })
		}
	})
}

// BenchmarkReadSameResource puts issue 14's comparison on one footing: the
// same Observation in the same store, read with the same audit trail by an
// unauthenticated client (a server without Auth) and by a provider whose
// Consent releases it (token, scopes, the Consent decision, the release
// rule, and an audit event naming the client, its organisation and the
// Consent).
func BenchmarkReadSameResource(b *testing.B) {
	eachBenchStore(b, func(b *testing.B, k storeKind) {
		s := newSecured(b, k)
		anon := server.New(server.Config{Store: s.store, Search: testRegistry, Auditor: s.auditor, BaseURL: "http://fhir.test"})
		path := "/Observation/" + s.oa
		b.Run("anonymous", func(b *testing.B) {
			runClients(b, func() {
				w := httptest.NewRecorder()
				anon.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("%d", w.Code)
				}
			})
		})
		b.Run("provider", func(b *testing.B) {
			benchProviderRead(b, s.srv, s.tokens["provider"], path)
		})
	})
}
