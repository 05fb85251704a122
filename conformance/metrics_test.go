package conformance_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/observe"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// requestLog counts the requests a gateway answered, by method and
// status, as its clients saw them.
type requestLog struct {
	mu sync.Mutex
	n  map[[2]string]int
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.n == nil {
			l.n = map[[2]string]int{}
		}
		l.n[[2]string{r.Method, strconv.Itoa(rec.status)}]++
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int)        { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// checkMetrics scrapes /metrics after a conformance run: every request the
// suite made is counted, under its method and status, and the routes of
// the interactions it exercised appear by their patterns.
func checkMetrics(t *testing.T, m *observe.Metrics, seen *requestLog) {
	t.Helper()
	ms := httptest.NewServer(m.Handler())
	defer ms.Close()
	resp, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	fam := fams["fhirgate_http_requests_total"]
	if fam == nil {
		t.Fatal("no fhirgate_http_requests_total in /metrics")
	}
	byMethodStatus := map[[2]string]int{}
	routes := map[string]float64{}
	for _, mt := range fam.Metric {
		labels := map[string]string{}
		for _, l := range mt.Label {
			labels[l.GetName()] = l.GetValue()
		}
		n := mt.Counter.GetValue()
		byMethodStatus[[2]string{labels["method"], labels["status"]}] += int(n)
		routes[labels["method"]+" "+labels["route"]] += n
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for k, n := range seen.n {
		if byMethodStatus[k] != n {
			t.Errorf("%s answered %s %d times, counted %d", k[0], k[1], n, byMethodStatus[k])
		}
	}
	for _, r := range []string{"GET /metadata", "GET /:type", "POST /:type", "GET /:type/:id", "PUT /:type/:id", "PATCH /:type/:id", "DELETE /:type/:id",
		"GET /:type/:id/_history", "GET /:type/:id/_history/:vid", "GET /:type/_history", "GET /_history", "POST /", "PUT /:type", "DELETE /:type",
		"GET /:type/:id/:op"} {
		if routes[r] == 0 {
			t.Errorf("route %s does not appear in /metrics after the conformance run", r)
		}
	}
	for _, name := range []string{"fhirgate_http_request_duration_seconds", "fhirgate_build_info", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	t.Logf("%d series of fhirgate_http_requests_total, %d routes", len(fam.Metric), len(routes))
}
