package conformance_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/conformance"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// TestConformanceWithToken runs the suite against a gateway that verifies
// OIDC access tokens, with a system client's token: every request carries
// it, /metadata is read without it.
func TestConformanceWithToken(t *testing.T) {
	is := authtest.NewIssuer(t)
	v, err := auth.New(config.Auth{
		Issuers: []config.Issuer{is.Config("fhirgate")},
		Clients: []config.Client{{ClientID: "conformance", Role: "system"}},
	}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	reg, err := search.New(search.Options{BaseURL: base, Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"), sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts.Config.Handler = server.New(server.Config{Store: st, Search: reg, Validator: validate.Default(), Auth: v, BaseURL: base})
	ts.Start()
	t.Cleanup(ts.Close)

	opts := conformance.Options{BaseURL: ts.URL, HTTPClient: ts.Client(), Types: []string{"Patient", "Observation"}}
	// without a token /metadata is read (it is public) and every other
	// request is refused
	rep, err := conformance.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, res := range rep.Failures() {
		failed[res.Check] = res.Detail
	}
	if d := failed["Patient/create"]; !strings.Contains(d, "status 401") {
		t.Errorf("without a token Patient/create: %q, want a 401 failure", d)
	}
	if _, ok := failed["rest/metadata"]; ok {
		t.Errorf("rest/metadata failed: %s", failed["rest/metadata"])
	}

	opts.Token = is.ClientToken(t, "conformance", "system/*.cruds")
	rep, err = conformance.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Failures() {
		t.Errorf("%s [%s]: %.400s", res.Check, res.Claim, res.Detail)
	}
	if rep.Created == 0 || rep.Cleaned != rep.Created {
		t.Errorf("created %d, cleaned %d", rep.Created, rep.Cleaned)
	}
	for _, res := range rep.Results {
		if strings.Contains(res.Detail, opts.Token) {
			t.Fatalf("%s: the token appears in the report", res.Check)
		}
	}
}
