package clients_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// EnvVar makes the npm client tests required instead of skippable.
const EnvVar = "FHIRGATE_NPM_CLIENTS"

// scripts are the client scripts, each run against a fresh gateway; the
// module is a package each needs in node_modules.
var scripts = []struct{ script, module string }{
	{"fhirkit.mjs", "fhir-kit-client"},
	{"medplum.mjs", filepath.Join("@medplum", "core")},
	{"smart.mjs", "fhirclient"},
}

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

// node returns the node binary, skipping (or failing, when EnvVar=1) when
// node or the npm packages are missing.
func node(t *testing.T) string {
	t.Helper()
	required := os.Getenv(EnvVar) == "1"
	skip := func(why string) {
		if required {
			t.Fatalf("%s, and %s=1 requires this test: run `cd clients && npm ci --omit=optional`", why, EnvVar)
		}
		t.Skipf("%s: run `cd clients && npm ci --omit=optional` to test the npm FHIR clients (set %s=1 to require it)", why, EnvVar)
	}
	bin, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed")
	}
	for _, s := range scripts {
		if _, err := os.Stat(filepath.Join("node_modules", s.module, "package.json")); err != nil {
			skip("clients/node_modules lacks " + s.module)
		}
	}
	return bin
}

// gateway serves a secured, validating, auditing gateway on a fresh store
// and returns its base URL and a token of a system client allowed to do
// everything.
// wrap, when not nil, is put in front of the gateway.
func gateway(t *testing.T, open func(t *testing.T, reg *search.Registry) storage.Store, wrap func(http.Handler) http.Handler) (base, token string) {
	t.Helper()
	is := authtest.NewIssuer(t)
	is.TokenTTL = time.Hour // slow machines must not see the token expire mid-script
	v, err := auth.New(config.Auth{
		Issuers: []config.Issuer{is.Config("fhirgate")},
		Clients: []config.Client{{ClientID: "hospital", Role: "system"}},
	}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// the base URL is only known once the listener exists
	ts := httptest.NewUnstartedServer(nil)
	base = "http://" + ts.Listener.Addr().String()
	reg, err := search.New(search.Options{BaseURL: base, Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	st := open(t, reg)
	t.Cleanup(func() { st.Close() })
	keys := audit.NewKeyring(audit.Key{ID: "test", Secret: []byte("0123456789abcdef0123456789abcdef")})
	aud, err := audit.Open(context.Background(), st, audit.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aud.Close)
	var h http.Handler = server.New(server.Config{Store: st, Search: reg, Validator: validate.Default(), Auth: v, Auditor: aud, BaseURL: base})
	if wrap != nil {
		h = wrap(h)
	}
	ts.Config.Handler = h
	ts.Start()
	t.Cleanup(ts.Close)
	return base, is.ClientToken(t, "hospital", "system/*.cruds")
}

// runScript runs one client script against base with token and returns
// its combined output and exit error.
func runScript(t *testing.T, bin, script, base, token string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, script)
	cmd.Env = append(os.Environ(), "FHIR_BASE="+base, "FHIR_TOKEN="+token)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestClients runs each client script against its own gateway on each store.
func TestClients(t *testing.T) {
	bin := node(t)
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			for _, s := range scripts {
				t.Run(s.script, func(t *testing.T) {
					base, token := gateway(t, st.open, nil)
					out, err := runScript(t, bin, s.script, base, token)
					t.Logf("%s:\n%s", s.script, out)
					if err != nil {
						t.Fatalf("%s failed: %v", s.script, err)
					}
				})
			}
		})
	}
}

// TestClientsCatchFaults shows that the scripts fail, naming the step, when
// the gateway misbehaves: a token the gateway refuses, and a gateway that
// answers a read of an unknown id with a resource.
func TestClientsCatchFaults(t *testing.T) {
	bin := node(t)
	lying := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/Patient/no-such-patient-0" {
				w.Header().Set("Content-Type", "application/fhir+json")
				w.Write([]byte(`{"resourceType":"Patient","id":"no-such-patient-0","meta":{"versionId":"1"}}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	faults := []struct {
		name, wantStep string
		wrap           func(http.Handler) http.Handler
		token          func(good string) string
	}{
		{"refused token", "create", nil, func(good string) string { return good + "x" }},
		{"unknown id found", "error: read of an unknown id", lying, func(good string) string { return good }},
	}
	for _, f := range faults {
		for _, s := range scripts {
			t.Run(f.name+"/"+s.script, func(t *testing.T) {
				base, token := gateway(t, stores[0].open, f.wrap)
				out, err := runScript(t, bin, s.script, base, f.token(token))
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("%s: got %v, want a non-zero exit; output:\n%s", s.script, err, out)
				}
				if want := `FAILED at "` + f.wantStep + `"`; !strings.Contains(out, want) {
					t.Errorf("%s output lacks %q:\n%s", s.script, want, out)
				}
			})
		}
	}
}
