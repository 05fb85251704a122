package conformance_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/conformance"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/shlink"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// The suite itself only speaks HTTP; this test builds an in-process gateway
// on each store and points the suite at it.

var stores = []struct {
	name string
	open func(t *testing.T, reg *search.Registry) storage.Store
}{
	{"sqlite", func(t *testing.T, reg *search.Registry) storage.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"), sqlstore.Options{Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t *testing.T, reg *search.Registry) storage.Store {
		s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// gateway serves a validating gateway on a fresh store.
func gateway(t *testing.T, open func(t *testing.T, reg *search.Registry) storage.Store) *httptest.Server {
	return wrappedGateway(t, open, nil)
}

// wrappedGateway is gateway with a handler in front (nil: none).
func wrappedGateway(t *testing.T, open func(t *testing.T, reg *search.Registry) storage.Store, wrap func(http.Handler) http.Handler) *httptest.Server {
	return observedGateway(t, open, wrap, nil)
}

// observedGateway is wrappedGateway recording its requests in m (nil: none).
func observedGateway(t *testing.T, open func(t *testing.T, reg *search.Registry) storage.Store, wrap func(http.Handler) http.Handler, m *observe.Metrics) *httptest.Server {
	t.Helper()
	// the base URL is only known once the listener exists
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	reg, err := search.New(search.Options{BaseURL: base, Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	st := open(t, reg)
	t.Cleanup(func() { st.Close() })
	// the notification service, as `fhirgate serve` runs it: it takes part
	// in every write of a Subscription
	svc, err := notify.New(context.Background(), notify.Config{Store: st, BaseURL: base, AllowHTTP: true, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc.Install()
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	// and the audit trail, as `fhirgate serve` keeps it
	trail, err := audit.Open(context.Background(), st, audit.Options{Keys: audit.NewKeyring(audit.Key{ID: "test", Secret: []byte("0123456789abcdef0123456789abcdef")}), Server: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(trail.Close)
	srv := server.New(server.Config{Store: st, Search: reg, Validator: validate.Default(), BaseURL: base, Auditor: trail, Metrics: m})
	srv.RegisterSubscriptions(svc)
	// and SMART Health Links, as `fhirgate serve` serves them
	links, err := shlink.New(context.Background(), shlink.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterShareLinks(links)
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(h)
	}
	ts.Config.Handler = h
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func TestConformance(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			m := observe.NewMetrics("test", "")
			seen := &requestLog{}
			ts := observedGateway(t, s.open, seen.wrap, m)
			rep, err := conformance.Run(context.Background(), conformance.Options{BaseURL: ts.URL, HTTPClient: ts.Client(), AllSearchParams: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range rep.Failures() {
				t.Errorf("%s [%s]: %s", res.Check, res.Claim, res.Detail)
			}
			for _, res := range rep.KnownBugs() {
				t.Logf("known gateway bug %s: %s", res.Check, res.Detail)
			}
			t.Logf("%d checks, %d passed, %d known bugs, %d resources created, %d deleted, %s",
				len(rep.Results), rep.Count(conformance.Pass), rep.Count(conformance.KnownBug), rep.Created, rep.Cleaned, rep.Elapsed)
			checkMetrics(t, m, seen)
		})
	}
}
