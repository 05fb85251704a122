package abdm_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/adapters/abdm/abdmsim"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/consolidate"
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

var registry = func() *search.Registry {
	r, err := search.New(search.Options{BaseURL: "http://fhir.test", Reserved: []string{"_cursor"}})
	if err != nil {
		panic(err)
	}
	return r
}()

type storeKind struct {
	name string
	open func(t *testing.T) storage.Store
}

var stores = []storeKind{
	{"sqlite", func(t *testing.T) storage.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"), sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t *testing.T) storage.Store {
		cfg := pgtest.Config(t)
		s, err := postgres.Open(context.Background(), cfg, sqlstore.Options{Registry: registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		pgConfigs.Store(s, cfg)
		return s
	}},
}

// pgConfigs remembers where each PostgreSQL test store lives, for reopen.
var pgConfigs sync.Map // storage.Store -> postgres.Config

// reopen opens another store on the database of st (as another replica
// would, with its own connection pool).
func reopen(t *testing.T, st storage.Store) storage.Store {
	t.Helper()
	cfg, ok := pgConfigs.Load(st)
	if !ok {
		t.Fatal("not a PostgreSQL test store")
	}
	s, err := postgres.Open(context.Background(), cfg.(postgres.Config), sqlstore.Options{Registry: registry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// samples reads NDHM document bundles from ../shared/testdata/abdm-ndhm.
func samples(t *testing.T, names ...string) []abdmsim.CareContext {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
	base := filepath.Join(dir, "..", "shared", "testdata", "abdm-ndhm")
	if _, err := os.Stat(base); err != nil {
		t.Skipf("sample NDHM bundles not found at %s", base)
	}
	var out []abdmsim.CareContext
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(base, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, abdmsim.CareContext{Reference: strings.TrimSuffix(n, ".json"), Bundle: b})
	}
	return out
}

var defaultSamples = []string{"MAXRVH9999PrescriptionDoc20160805.json", "MAXRVH1012OPConsultationDoc20190807.json", "MAXRVH1012ImmunizationDoc20190807.json"}

type env struct {
	t     *testing.T
	st    storage.Store
	sim   *abdmsim.Sim
	hiu   *abdm.HIU
	clock *adaptertest.FakeClock
	srv   *server.Server
	cfg   abdm.Config
	// stateKey replaces the shared state key when set
	stateKey string
}

// replica is another gateway process on st: its own HIU and server.
func (e *env) replica(st storage.Store) (*abdm.HIU, *server.Server) {
	e.t.Helper()
	h, err := abdm.New("abdm", e.cfg, abdm.Deps{State: st.(*sqlstore.Store).AdapterState(), Records: &consolidate.Consolidator{Store: st, Now: e.clock.Now}},
		adapters.Options{Clock: e.clock, LookupEnv: e.env})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Search: registry})
	srv.RegisterABDM(h)
	return h, srv
}

const patientID = "p1"
const abha = "hinapatel79@sbx"

func setup(t *testing.T, kind storeKind, version string, ccs []abdmsim.CareContext) *env {
	t.Helper()
	st := kind.open(t)
	ctx := context.Background()
	pat, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"` + patientID + `","identifier":[{"system":"` + abdm.ABHASystem + `","value":"` + abha + `"}],"name":[{"family":"Patel","given":["Hina"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, pat); err != nil {
		t.Fatal(err)
	}
	clock := adaptertest.NewFakeClock()
	sim := abdmsim.New(t, version, ccs)
	sim.Now = clock.Now
	sim.HIUBase = "http://hiu.test/abdm"
	cfg := abdm.Config{GatewayURL: sim.URL(), APIVersion: version, ClientID: "fhirgate-hiu", SecretEnv: "ABDM_SECRET",
		HIUID: "fhirgate-hiu", CallbackBaseURL: sim.HIUBase, JWKSURL: sim.JWKSURL()}
	e := &env{t: t, st: st, sim: sim, clock: clock, cfg: cfg}
	e.open()
	return e
}

// open (re)opens the HIU and the server, as a restart would.
func (e *env) open() {
	e.t.Helper()
	h, err := abdm.New("abdm", e.cfg, e.deps(), adapters.Options{Clock: e.clock, LookupEnv: e.env})
	if err != nil {
		e.t.Fatal(err)
	}
	e.hiu = h
	e.srv = server.New(server.Config{Store: e.st, Search: registry})
	e.srv.RegisterABDM(h)
	e.sim.HIU = e.srv
}

// deps are what an HIU of this environment keeps its state in and files
// into: the store's adapter state and a consolidator on the store.
func (e *env) deps() abdm.Deps {
	return abdm.Deps{State: e.st.(*sqlstore.Store).AdapterState(), Records: &consolidate.Consolidator{Store: e.st, Now: e.clock.Now}}
}

// env is the environment the HIU reads: the gateway's client secret and a
// state key shared by every HIU of the test (as by every replica).
func (e *env) env(k string) (string, bool) {
	switch k {
	case "ABDM_SECRET":
		return "sim-secret", true
	case abdm.StateKeyEnv:
		return cmp.Or(e.stateKey, "c3RhdGUta2V5LW9mLXRoZS10ZXN0cy0zMi1ieXRlcyE="), true
	}
	return "", false
}

func (e *env) fetch() (adapters.Result, error) {
	return e.hiu.Fetch(context.Background(), adapters.FetchRequest{PatientID: patientID}, func(*fhir.Resource) error {
		e.t.Fatal("the abdm source must not pass resources to the sink")
		return nil
	})
}

// grant runs the flow up to the patient's decision.
func (e *env) request() string {
	e.t.Helper()
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) || !adapters.Temporary(err) {
		e.t.Fatalf("first fetch: %v, want waiting (temporary)", err)
	}
	e.sim.Run()
	cr := e.sim.LastRequest()
	if cr == "" {
		e.t.Fatal("no consent request reached the gateway")
	}
	return cr
}

// record lists the patient's compartment by type.
func (e *env) record() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	req := storage.EverythingRequest{PatientID: patientID, Count: 500}
	for {
		page, err := e.st.Everything(context.Background(), req)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range page.Matches {
			out[r.Type]++
		}
		if page.Next == "" {
			return out
		}
		req.Cursor = page.Next
	}
}

func (e *env) consent() *fhir.Resource {
	e.t.Helper()
	q, err := registry.ParseQuery("Consent", map[string][]string{"patient": {"Patient/" + patientID}}, true)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.st.Search(context.Background(), storage.SearchRequest{Query: q})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(res.Matches) != 1 {
		e.t.Fatalf("%d Consents, want 1", len(res.Matches))
	}
	return res.Matches[0]
}

func (e *env) received(suffix string) [][]byte {
	for p, bs := range e.sim.Received {
		if strings.HasSuffix(p, suffix) {
			return bs
		}
	}
	return nil
}

func lastSessionStatus(t *testing.T, bs [][]byte) string {
	t.Helper()
	if len(bs) == 0 {
		t.Fatal("no transfer notification")
	}
	var m abdm.HINotify
	if err := json.Unmarshal(bs[len(bs)-1], &m); err != nil {
		t.Fatal(err)
	}
	return m.Notification.StatusNotification.SessionStatus
}

func TestEndToEnd(t *testing.T) {
	for _, kind := range stores {
		for _, version := range []string{abdm.V05, abdm.V3} {
			t.Run(kind.name+"/"+version, func(t *testing.T) {
				e := setup(t, kind, version, samples(t, defaultSamples...))
				cr := e.request()
				if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
					t.Fatalf("fetch before the grant: %v", err)
				}
				if e.sim.Requests() != 1 {
					t.Fatalf("%d consent requests, want 1 (a waiting fetch must not ask again)", e.sim.Requests())
				}
				e.sim.Decide(cr, abdm.StatusGranted)
				e.sim.Run()
				for _, r := range e.sim.Responses {
					if !strings.HasSuffix(r, " 202") {
						t.Errorf("HIU answered %s", r)
					}
				}
				res, err := e.fetch()
				if err != nil {
					t.Fatalf("fetch after the transfer: %v", err)
				}
				if res.Resources == 0 {
					t.Fatal("nothing filed")
				}
				rec := e.record()
				for _, typ := range []string{"MedicationRequest", "Composition", "Condition", "Immunization", "Provenance", "Consent"} {
					if rec[typ] == 0 {
						t.Errorf("no %s in the patient's record: %v", typ, rec)
					}
				}
				c := e.consent()
				root := c.Root()
				if root.Get("status").String() != "active" || !strings.Contains(string(c.Raw), "OPConsultation") || !strings.Contains(string(c.Raw), `"IRCP"`) {
					t.Errorf("Consent = %s", c.Raw)
				}
				if is := validate.Validate(c); validate.HasErrors(is) {
					t.Errorf("the authored Consent does not validate: %+v", is)
				}
				if !strings.Contains(string(c.Raw), `"dataPeriod"`) || root.Get("provision").Get("period").Get("end").String() == "" {
					t.Errorf("Consent lacks the data period or expiry: %s", c.Raw)
				}
				want := "TRANSFERRED"
				if version == abdm.V3 {
					want = "RECEIVED"
				}
				if got := lastSessionStatus(t, e.received("health-information/notify")); got != want {
					t.Errorf("transfer notification %s, want %s", got, want)
				}
				// Provenance naming the HIP and care context
				if !provenanceNames(t, e, "SIM-HIP-1", "MAXRVH9999PrescriptionDoc20160805") {
					t.Error("no Provenance names the HIP and the care context")
				}
				// a second fetch asks for fresh data under the same artefact
				before := len(e.received("health-information/notify"))
				if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
					t.Fatalf("re-pull: %v", err)
				}
				e.sim.Run()
				if _, err := e.fetch(); err != nil {
					t.Fatalf("re-pull fetch: %v", err)
				}
				if after := e.record(); after["MedicationRequest"] != rec["MedicationRequest"] || after["Condition"] != rec["Condition"] {
					t.Errorf("a re-pull duplicated data: %v then %v", rec, after)
				}
				if len(e.received("health-information/notify")) != before+1 {
					t.Error("the re-pull did not complete a second transfer")
				}
			})
		}
	}
}

func provenanceNames(t *testing.T, e *env, hip, careContext string) bool {
	q, _ := registry.ParseQuery("Provenance", map[string][]string{}, true)
	res, err := e.st.Search(context.Background(), storage.SearchRequest{Query: q})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Matches {
		s := string(p.Raw)
		if strings.Contains(s, `"value":"`+hip+`"`) && strings.Contains(s, `"value":"`+careContext+`"`) {
			return true
		}
	}
	return false
}
