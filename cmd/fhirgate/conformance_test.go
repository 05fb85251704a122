package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// testGateway serves a validating gateway on a fresh SQLite store; wrap,
// when set, sits in front of it.
func testGateway(t *testing.T, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	reg, err := search.New(search.Options{BaseURL: base, Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"), sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var h http.Handler = server.New(server.Config{Store: st, Search: reg, Validator: validate.Default(), BaseURL: base})
	if wrap != nil {
		h = wrap(h)
	}
	ts.Config.Handler = h
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func TestCmdConformance(t *testing.T) {
	ts := testGateway(t, nil)
	var out, errb bytes.Buffer
	err := cmdConformance(context.Background(), []string{"--url", ts.URL, "--types", "Patient, Observation"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"CHECK", "Patient/read", "Observation/search:token:", "system/transaction", "rest/status-406", " 0 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Encounter/") {
		t.Errorf("--types did not restrict the types")
	}
}

// TestCmdConformanceFails: a server that drops ETag headers fails, and the
// command says so with a non-zero exit and only the problems printed.
func TestCmdConformanceFails(t *testing.T) {
	ts := testGateway(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				if k != "Etag" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	})
	var out, errb bytes.Buffer
	err := cmdConformance(context.Background(), []string{"--url", ts.URL, "--types", "Patient", "--problems"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "checks failed") {
		t.Fatalf("err = %v, want failed checks\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Patient/read") || !strings.Contains(out.String(), `ETag ""`) {
		t.Errorf("the table does not show the ETag failure:\n%s", out.String())
	}
	if strings.Contains(out.String(), "  pass  ") {
		t.Errorf("--problems printed passing checks:\n%s", out.String())
	}
}

func TestCmdConformanceFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--url is required"},
		{[]string{"--url", "http://127.0.0.1:1", "extra"}, "unexpected argument"},
		{[]string{"--url", "http://127.0.0.1:1", "--parallel", "0"}, "--parallel"},
		{[]string{"--url", "http://127.0.0.1:1", "--timeout", "1s"}, "metadata"}, // nothing listens there
	} {
		var out, errb bytes.Buffer
		t.Setenv("FHIRGATE_CONFORMANCE_URL", "")
		err := cmdConformance(context.Background(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}
