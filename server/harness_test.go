package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// harness is a server on a real store, driven in process.
type harness struct {
	t     testing.TB
	store storage.Store
	srv   *server.Server
}

type storeKind struct {
	name string
	open func(t testing.TB) storage.Store
}

// testRegistry is the search registry the test stores index with.
var testRegistry = func() *search.Registry {
	r, err := search.New(search.Options{BaseURL: "http://fhir.test", Reserved: []string{"_cursor"}})
	if err != nil {
		panic(err)
	}
	return r
}()

var storeKinds = []storeKind{
	{"sqlite", func(t testing.TB) storage.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"), sqlstore.Options{Registry: testRegistry})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t testing.TB) storage.Store {
		s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: testRegistry})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// trailKeys seal the trails of the tests.
var trailKeys = audit.NewKeyring(audit.Key{ID: "test", Secret: []byte("0123456789abcdef0123456789abcdef")})

// openTrail starts an audit trail on st, closed when the test ends
// (before the store: cleanups run in reverse).
func openTrail(t testing.TB, st storage.Store) *audit.Trail {
	t.Helper()
	tr, err := audit.Open(context.Background(), st, audit.Options{Keys: trailKeys, Server: "http://fhir.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// eachStore runs fn once per store kind, as subtests, on a validating server.
func eachStore(t *testing.T, fn func(t *testing.T, h *harness)) {
	eachStoreWith(t, server.Config{}, fn)
}

// eachStoreWith is eachStore with a server config.
func eachStoreWith(t *testing.T, cfg server.Config, fn func(t *testing.T, h *harness)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			fn(t, newHarness(t, k, cfg))
		})
	}
}

// noValidation is a Validator that accepts everything: tests of storage
// behaviour use it to store resources the validator rightly flags.
type noValidation struct{}

func (noValidation) Validate(*fhir.Resource) []fhir.Issue { return nil }

// baseFromHost as a harness's BaseURL leaves the server without one: it
// takes its base from each request's Host.
const baseFromHost = "(from the Host header)"

func newHarness(t testing.TB, k storeKind, cfg server.Config) *harness {
	st := k.open(t)
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	if cfg.Validator == nil {
		cfg.Validator = validate.Default()
	}
	switch cfg.BaseURL {
	case "":
		cfg.BaseURL = "http://fhir.test"
	case baseFromHost:
		cfg.BaseURL = ""
	}
	cfg.Search = testRegistry
	if cfg.Auditor == nil {
		// the audit trail is on, as in fhirgate serve (and in the benchmarks)
		cfg.Auditor = openTrail(t, st)
	}
	return &harness{t: t, store: st, srv: server.New(cfg)}
}

// do sends one request; headers are "Name: value" strings.
func (h *harness) do(method, path string, body []byte, headers ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	return w
}

// mustStatus fails unless the response has the status.
func mustStatus(t testing.TB, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d; body: %.600s", w.Code, want, w.Body.String())
	}
}

// jsonMap decodes a body into a generic map.
func jsonMap(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %.300s", err, b)
	}
	return m
}

// outcome checks that a body is an OperationOutcome with an error issue
// and returns its first issue.
func outcome(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("Content-Type %q", ct)
	}
	m := jsonMap(t, w.Body.Bytes())
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", w.Body.String())
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues")
	}
	is := issues[0].(map[string]any)
	if is["severity"] != "error" && is["severity"] != "fatal" {
		t.Fatalf("first issue severity %v", is["severity"])
	}
	if is["code"] == nil || is["code"] == "" {
		t.Fatalf("issue without code")
	}
	return is
}

var _ = http.StatusOK

func serverConfigForFuzz() server.Config { return server.Config{MaxBodyBytes: 1 << 16} }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// eventually polls cond until it holds, failing the test when it still
// does not after 30 seconds (state other goroutines write, such as the
// audit trail's batches or a pull's progress, is waited for, not slept on).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after 30 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// entriesOf returns a Bundle's entries; a Bundle without any (an empty
// search) has none.
func entriesOf(t testing.TB, body []byte) []any {
	t.Helper()
	es, _ := jsonMap(t, body)["entry"].([]any)
	return es
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func mustRequest(t testing.TB, method, path string) *http.Request {
	t.Helper()
	return httptest.NewRequest(method, path, nil)
}
