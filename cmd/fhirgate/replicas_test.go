package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/adapters/abdm/abdmsim"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// replicaAuditKey seals the trail the replicas share (one key for all).
const replicaAuditKey = "replicas:c2hhcmVkLWF1ZGl0LWtleS1vZi10aGUtcmVwbGljYXMh"

// replicaEnv is three `fhirgate serve` processes on one PostgreSQL
// database, a round-robin load balancer in front, an OpenID issuer, a
// fake EHR, a simulated ABDM network and a Subscription endpoint.
type replicaEnv struct {
	t        *testing.T
	bin, db  string
	replicas []string // base URLs
	logs     []string // their log files
	lb       *httptest.Server
	lbServed [3]atomic.Int64
	pushes   [3]atomic.Int64 // ABDM data pushes each replica took
	is       *authtest.Issuer
	system   string // tokens
	clinic   string
	patient  string
	hooks    *hookRecorder
	hooksCA  string // the endpoint's certificate, which the replicas trust
}

// hookRecorder is a Subscription endpoint that records notifications.
type hookRecorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []map[string]string // per notification: subscription, type, event-number
}

func (h *hookRecorder) handle(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Entry []struct {
			Resource struct {
				Parameter []struct {
					Name           string `json:"name"`
					ValueString    string `json:"valueString"`
					ValueCode      string `json:"valueCode"`
					ValueReference *struct {
						Reference string `json:"reference"`
					} `json:"valueReference"`
					Part []struct {
						Name        string `json:"name"`
						ValueString string `json:"valueString"`
					} `json:"part"`
				} `json:"parameter"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || len(b.Entry) == 0 {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	n := map[string]string{}
	for _, p := range b.Entry[0].Resource.Parameter {
		switch p.Name {
		case "subscription":
			n["subscription"] = p.ValueReference.Reference
		case "type":
			n["type"] = p.ValueCode
		case "notification-event":
			for _, pt := range p.Part {
				if pt.Name == "event-number" {
					n["event"] = pt.ValueString
				}
			}
		}
	}
	h.mu.Lock()
	h.got = append(h.got, n)
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// events counts the event notifications a subscription received, by
// event number.
func (h *hookRecorder) events(sub string) map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, n := range h.got {
		if strings.HasSuffix(n["subscription"], "/Subscription/"+sub) && n["type"] == "event-notification" {
			out[n["event"]]++
		}
	}
	return out
}

// waitFor polls cond (the state other processes write) for up to 90 s.
func (e *replicaEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("still not so after 90 s: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do sends a request to base (a replica or the load balancer).
func (e *replicaEnv) do(base, method, path, token string, body []byte, headers ...string) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (e *replicaEnv) must(want int, base, method, path, token string, body []byte, headers ...string) map[string]any {
	e.t.Helper()
	st, _, b := e.do(base, method, path, token, body, headers...)
	if st != want {
		e.t.Fatalf("%s %s: %d, want %d: %.400s", method, path, st, want, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// count is the total of a search (as the system client).
func (e *replicaEnv) count(path string) int {
	e.t.Helper()
	m := e.must(http.StatusOK, e.lb.URL, http.MethodGet, path+"&_summary=count", e.system, nil)
	n, _ := m["total"].(float64)
	return int(n)
}

// startReplicas builds the binary and starts the environment.
func startReplicas(t *testing.T) *replicaEnv {
	t.Helper()
	e := &replicaEnv{t: t}
	dir := t.TempDir()
	// the database: a schema of its own, migrated once here
	pc := pgtest.Config(t)
	reg, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(context.Background(), pc, sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	sep := "?"
	if strings.Contains(pc.URL, "?") {
		sep = "&"
	}
	e.db = pc.URL + sep + "search_path=" + pc.Schema + "&pool_max_conns=8"

	e.bin = fhirgateBinary(t)
	e.is = authtest.NewIssuer(t)
	e.system = e.is.ClientToken(t, "city-hospital-ehr", "system/*.cruds")
	e.clinic = e.is.ClientToken(t, "second-look-clinic", "system/*.cruds")
	e.patient = e.is.PatientToken(t, "Patient/local", "openid", "fhirUser", "launch/patient", "patient/*.cruds")

	// notifications go to an HTTPS endpoint the replicas trust
	e.hooks = &hookRecorder{}
	e.hooks.srv = httptest.NewTLSServer(http.HandlerFunc(e.hooks.handle))
	t.Cleanup(e.hooks.srv.Close)
	e.hooksCA = filepath.Join(dir, "hooks-ca.pem")
	if err := os.WriteFile(e.hooksCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.hooks.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	// the load balancer (its URL is the gateways' base URL and ABDM's
	// callback base) spreads requests over the replicas in turn; ABDM's
	// data pushes take turns of their own, so that consecutive pages reach
	// different replicas whatever other traffic comes between them
	var next, nextPush atomic.Int64
	e.lb = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(next.Add(1)-1) % len(e.replicas)
		if strings.HasSuffix(r.URL.Path, "/health-information/transfer") {
			i = int(nextPush.Add(1)-1) % len(e.replicas)
			e.pushes[i].Add(1)
		}
		e.lbServed[i].Add(1)
		u, _ := url.Parse(e.replicas[i])
		httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
	}))
	e.lb.Start()
	t.Cleanup(e.lb.Close)
	return e
}

// serve starts the replicas with a config naming the EHR and ABDM.
func (e *replicaEnv) serve(ehr *adaptertest.Upstream, sim *abdmsim.Sim) {
	t := e.t
	dir := t.TempDir()
	iss := e.is.Config("")
	cfg := fmt.Sprintf(`server:
  baseURL: %s
auth:
  issuers:
    - url: %s
      audience: %s
      fhirUserClaim: fhirUser
  clients:
    - clientID: city-hospital-ehr
      role: system
    - clientID: second-look-clinic
      role: provider
      organization: Organization/second-look-clinic
sources:
  - id: ehr
    type: fhir
    config: {baseURL: %s, auth: {type: none}}
  - id: abdm
    type: abdm
    config:
      gatewayURL: %s
      apiVersion: v0.5
      clientID: fhirgate-hiu
      secretEnv: ABDM_SECRET
      hiuID: fhirgate-hiu
      callbackBaseURL: %s/abdm
      jwksURL: %s
      pollInterval: 1s
`, e.lb.URL, iss.URL, iss.Audience, ehr.URL, sim.URL(), e.lb.URL, sim.JWKSURL())
	cfgFile := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		logFile := filepath.Join(dir, fmt.Sprintf("replica-%d.log", i))
		lf, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(e.bin, "serve", "--addr", "127.0.0.1:0", "--db", e.db, "--config", cfgFile, "--log-level", "info")
		cmd.Env = append(os.Environ(), "ABDM_SECRET=sim-secret", abdm.StateKeyEnv+"=c3RhdGUta2V5LW9mLXRoZS10ZXN0cy0zMi1ieXRlcyE=",
			"SSL_CERT_FILE="+e.hooksCA, "FHIRGATE_AUDIT_KEY="+replicaAuditKey)
		cmd.Stdout, cmd.Stderr = lf, lf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
			}
			lf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logFile)
				t.Logf("replica %d log:\n%s", i, lastLines(string(b), 40))
			}
		})
		e.replicas = append(e.replicas, "")
		e.logs = append(e.logs, logFile)
		addr := ""
		e.waitFor(fmt.Sprintf("replica %d serving", i), func() bool {
			b, _ := os.ReadFile(logFile)
			for _, l := range strings.Split(string(b), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "fhirgate serving" {
					addr, _ = m["addr"].(string)
				}
			}
			if cmd.ProcessState != nil {
				t.Fatalf("replica %d exited:\n%s", i, b)
			}
			return addr != ""
		})
		e.replicas[i] = "http://" + addr
	}
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// TestReplicas runs three `fhirgate serve` processes on one PostgreSQL
// database under a mixed load spread over all three (conditional creates
// on shared identifiers, If-Match updates, transactions, pulls from a fake
// EHR, ABDM pushes spread over the replicas, a second-opinion flow with
// Subscriptions, uploads), then checks that they behaved as one gateway:
// no duplicates, no lost or doubled writes, every pull completed once,
// every notification delivered once.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three gateway processes (-short)")
	}
	e := startReplicas(t)
	ehr := adaptertest.NewUpstream(t, adaptertest.ServerOptions{Auth: adaptertest.AuthNone, Everything: true})
	base := sharedtest.Path(t, "abdm-ndhm")
	var ccs []abdmsim.CareContext
	for _, n := range []string{"MAXRVH9999PrescriptionDoc20160805.json", "MAXRVH1012OPConsultationDoc20190807.json", "MAXRVH1012ImmunizationDoc20190807.json"} {
		b, err := os.ReadFile(filepath.Join(base, n))
		if err != nil {
			t.Skipf("NDHM samples: %v", err)
		}
		ccs = append(ccs, abdmsim.CareContext{Reference: strings.TrimSuffix(n, ".json"), Bundle: b})
	}
	sim := abdmsim.New(t, abdm.V05, ccs)
	sim.HIUBase = e.lb.URL + "/abdm"
	sim.PageSize = 1 // one page per document: the pages spread over the replicas
	e.serve(ehr, sim)
	r := e.replicas

	// the record the EHR holds (the local Patient is a copy of the EHR's:
	// the pull finds it there by its identifiers), the ABDM patient, the
	// provider
	var local map[string]any
	if err := json.Unmarshal(ehr.Patient(ehr.Patients()[0]).Raw, &local); err != nil {
		t.Fatal(err)
	}
	local["id"] = "local"
	delete(local, "meta")
	localBody, _ := json.Marshal(local)
	e.must(http.StatusCreated, r[0], http.MethodPut, "/Patient/local", e.system, localBody)
	e.must(http.StatusCreated, r[1], http.MethodPut, "/Patient/abha-pt", e.system, []byte(`{"resourceType":"Patient","id":"abha-pt","identifier":[{"system":"`+abdm.ABHASystem+`","value":"hinapatel79@sbx"}],"name":[{"family":"Patel","given":["Hina"]}]}`))
	e.must(http.StatusCreated, r[2], http.MethodPut, "/Organization/second-look-clinic", e.system, []byte(`{"resourceType":"Organization","id":"second-look-clinic","name":"Second Look Clinic"}`))

	var wg sync.WaitGroup
	var failures sync.Map
	fail := func(format string, args ...any) { failures.Store(fmt.Sprintf(format, args...), true) }

	// conditional creates: 8 identifiers, 9 writers each, 3 per replica,
	// in the three forms
	const idents, writers = 8, 9
	for k := range idents {
		ident := fmt.Sprintf("shared-%d", k)
		cond := "identifier=" + url.QueryEscape("http://replicas.example/id|"+ident)
		body := []byte(`{"resourceType":"Basic","code":{"text":"replicas"},"identifier":[{"system":"http://replicas.example/id","value":"` + ident + `"}]}`)
		for w := range writers {
			wg.Go(func() {
				base := r[w%3]
				var st int
				switch (w / 3) % 3 {
				case 0:
					st, _, _ = e.do(base, http.MethodPost, "/Basic", e.system, body, "If-None-Exist: "+cond)
				case 1:
					st, _, _ = e.do(base, http.MethodPut, "/Basic?"+cond, e.system, body)
				default:
					tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(body) + `,"request":{"method":"POST","url":"Basic","ifNoneExist":"` + cond + `"}}]}`
					st, _, _ = e.do(base, http.MethodPost, "/", e.system, []byte(tx))
				}
				if st != http.StatusOK && st != http.StatusCreated {
					fail("conditional write of %s on replica %d: %d", ident, w%3, st)
				}
			})
		}
	}

	// If-Match: 4 resources, 5 rounds of 6 writers (2 per replica) racing
	// with the current version
	const ifMatchRes, rounds = 4, 5
	for k := range ifMatchRes {
		e.must(http.StatusCreated, r[k%3], http.MethodPut, fmt.Sprintf("/Basic/race-%d", k), e.system, []byte(fmt.Sprintf(`{"resourceType":"Basic","id":"race-%d","code":{"text":"0"}}`, k)))
		wg.Go(func() {
			for round := range rounds {
				var won atomic.Int32
				var rw sync.WaitGroup
				for w := range 6 {
					rw.Go(func() {
						b := []byte(fmt.Sprintf(`{"resourceType":"Basic","id":"race-%d","code":{"text":"%d-%d"}}`, k, round+1, w))
						st, _, _ := e.do(r[w%3], http.MethodPut, fmt.Sprintf("/Basic/race-%d", k), e.system, b, fmt.Sprintf(`If-Match: W/"%d"`, round+1))
						switch st {
						case http.StatusOK:
							won.Add(1)
						case http.StatusPreconditionFailed:
						default:
							fail("If-Match update of race-%d: %d", k, st)
						}
					})
				}
				rw.Wait()
				if won.Load() != 1 {
					fail("race-%d round %d: %d updates won", k, round, won.Load())
				}
			}
		})
	}

	// transactions through the load balancer
	const txs, perTx = 24, 4
	for i := range txs {
		wg.Go(func() {
			var es []string
			for j := range perTx {
				es = append(es, fmt.Sprintf(`{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":{"resourceType":"Observation","status":"final","code":{"text":"replica load"},
					"subject":{"reference":"Patient/local"},"identifier":[{"system":"http://replicas.example/tx","value":"tx-%d-%d"}]},"request":{"method":"POST","url":"Observation"}}`, j, i, j))
			}
			st, _, b := e.do(e.lb.URL, http.MethodPost, "/", e.system, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(es, ",")+`]}`))
			if st != http.StatusOK {
				fail("transaction %d: %d %.200s", i, st, b)
			}
		})
	}

	// two pulls of the same patient from the EHR at once, on two replicas
	pulls := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			_, h, _ := e.do(r[i], http.MethodPost, "/Patient/local/$pull?source=ehr", e.system, nil)
			pulls[i] = h.Get("Content-Location")
		})
	}

	// ABDM: the pull goes out from one replica; the callbacks and the pages
	// reach the replicas in turn through the load balancer
	var abdmPull string
	wg.Go(func() {
		st, h, b := e.do(r[2], http.MethodPost, "/Patient/abha-pt/$pull?source=abdm", e.system, nil)
		if st != http.StatusAccepted {
			fail("ABDM pull: %d %.200s", st, b)
			return
		}
		abdmPull = h.Get("Content-Location")
		decided := false
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			sim.Run()
			if cr := sim.LastRequest(); cr != "" && !decided {
				sim.Decide(cr, abdm.StatusGranted)
				decided = true
			}
			if st, _, _ := e.do(r[0], http.MethodGet, strings.TrimPrefix(abdmPull, e.lb.URL), e.system, nil); st == http.StatusOK {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		fail("the ABDM pull did not finish")
	})

	// uploads: three files, one of them twice at once on two replicas
	pdfs := [][]byte{
		[]byte("%PDF-1.4\n% discharge letter\n"), []byte("%PDF-1.4\n% echo report\n"), []byte("%PDF-1.4\n% lab sheet\n"),
	}
	for i, pdf := range append(pdfs, pdfs[0]) {
		wg.Go(func() {
			st, _, b := e.do(r[i%3], http.MethodPost, "/Patient/local/$import", e.patient, pdf, "Content-Type: application/pdf")
			if st != http.StatusOK {
				fail("upload %d: %d %.200s", i, st, b)
			}
		})
	}

	// the second-opinion flow, with Subscriptions, each step on another replica
	var requestSub, statusSub, task string
	wg.Go(func() {
		consent := `{"resourceType":"Consent","id":"so-clinic","status":"active",
 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
 "patient":{"reference":"Patient/local"},"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
 "provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/second-look-clinic"}}],
  "action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}]}}`
		if st, _, b := e.do(r[0], http.MethodPut, "/Consent/so-clinic", e.patient, []byte(consent)); st != http.StatusCreated {
			fail("Consent: %d %.300s", st, b)
			return
		}
		sub := func(base, token, topic, filter string) string {
			body := `{"resourceType":"Subscription","status":"requested","reason":"replicas",
"meta":{"profile":["` + notify.ProfileSubscription + `"]},"criteria":"` + topic + `",
"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":"` + filter + `"}]},
"channel":{"type":"rest-hook","endpoint":"` + e.hooks.srv.URL + `/hook","payload":"application/fhir+json",
"_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"id-only"}]}}}`
			st, _, b := e.do(base, http.MethodPost, "/Subscription", token, []byte(body))
			if st != http.StatusCreated {
				fail("Subscription: %d %.300s", st, b)
				return ""
			}
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			id, _ := m["id"].(string)
			e.waitFor("Subscription/"+id+" active", func() bool {
				var s map[string]any
				_, _, b := e.do(e.lb.URL, http.MethodGet, "/Subscription/"+id, e.system, nil)
				_ = json.Unmarshal(b, &s)
				return s["status"] == "active"
			})
			return id
		}
		requestSub = sub(r[1], e.clinic, notify.TopicNewRequest, "Task?owner=Organization/second-look-clinic")
		statusSub = sub(r[2], e.system, notify.TopicStatusChanged, "Task?patient=Patient/local")
		params := `{"resourceType":"Parameters","parameter":[{"name":"recipient","valueReference":{"reference":"Organization/second-look-clinic"}},
 {"name":"consent","valueReference":{"reference":"Consent/so-clinic"}},
 {"name":"specialty","valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"394579002"}]}},
 {"name":"question","valueString":"Is this treatment right?"}]}`
		st, _, b := e.do(r[2], http.MethodPost, "/Patient/local/$second-opinion", e.patient, []byte(params))
		if st != http.StatusOK {
			fail("$second-opinion: %d %.400s", st, b)
			return
		}
		for _, p := range strings.Split(string(b), `"Task/`)[1:] {
			task = "Task/" + p[:strings.IndexAny(p, `"/`)]
			break
		}
		for i, status := range []string{"received", "accepted"} {
			patch := `[{"op":"replace","path":"/status","value":"` + status + `"}]`
			if st, _, b := e.do(r[i%3], http.MethodPatch, "/"+task, e.clinic, []byte(patch), "Content-Type: application/json-patch+json"); st != http.StatusOK {
				fail("Task %s: %d %.300s", status, st, b)
			}
		}
	})
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Error(k); return true })
	if t.Failed() {
		t.FailNow()
	}

	// no duplicates: each shared identifier is one resource
	for k := range idents {
		if n := e.count("/Basic?identifier=" + url.QueryEscape(fmt.Sprintf("http://replicas.example/id|shared-%d", k))); n != 1 {
			t.Errorf("identifier shared-%d: %d resources, want 1", k, n)
		}
	}
	// no lost or doubled writes: one winner per round, one version each
	for k := range ifMatchRes {
		m := e.must(http.StatusOK, e.lb.URL, http.MethodGet, fmt.Sprintf("/Basic/race-%d", k), e.system, nil)
		if v := m["meta"].(map[string]any)["versionId"]; v != strconv.Itoa(rounds+1) {
			t.Errorf("race-%d at version %v, want %d", k, v, rounds+1)
		}
	}
	if n := e.count("/Observation?identifier=" + url.QueryEscape("http://replicas.example/tx|")); n != txs*perTx {
		t.Errorf("%d Observations from the transactions, want %d", n, txs*perTx)
	}
	for i := range txs {
		for j := range perTx {
			if n := e.count("/Observation?identifier=" + url.QueryEscape(fmt.Sprintf("http://replicas.example/tx|tx-%d-%d", i, j))); n != 1 {
				t.Errorf("transaction %d entry %d: %d resources, want 1", i, j, n)
			}
		}
	}
	// every pull completed once: each source job ran one attempt, and the
	// record holds each of the EHR's facts once
	created := 0
	for i, p := range pulls {
		if p == "" {
			t.Fatalf("pull %d has no status URL", i)
		}
		var rep struct {
			Done    bool `json:"done"`
			Sources []struct {
				State    string `json:"state"`
				Attempts int    `json:"attempts"`
				Written  struct {
					Created int `json:"created"`
				} `json:"written"`
			} `json:"sources"`
		}
		e.waitFor("pull "+p, func() bool {
			st, _, b := e.do(r[(i+1)%3], http.MethodGet, strings.TrimPrefix(p, e.lb.URL), e.system, nil)
			_ = json.Unmarshal(b, &rep)
			return st == http.StatusOK
		})
		if !rep.Done || len(rep.Sources) != 1 || rep.Sources[0].State != "completed" || rep.Sources[0].Attempts != 1 {
			t.Errorf("pull %d: %+v", i, rep)
			continue
		}
		created += rep.Sources[0].Written.Created
	}
	kept := map[string]int{}
	for next := "/Patient/local/$everything?_count=1000"; next != ""; {
		m := e.must(http.StatusOK, e.lb.URL, http.MethodGet, next, e.system, nil)
		next = ""
		for _, l := range m["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = strings.TrimPrefix(l.(map[string]any)["url"].(string), e.lb.URL)
			}
		}
		for _, en := range m["entry"].([]any) {
			res := en.(map[string]any)["resource"].(map[string]any)
			meta, _ := res["meta"].(map[string]any)
			tags, _ := meta["tag"].([]any)
			for _, tg := range tags {
				if tg.(map[string]any)["system"] == "urn:fhirgate:source-id" {
					kept[tg.(map[string]any)["code"].(string)]++
				}
			}
		}
	}
	for id, n := range kept {
		if n != 1 {
			t.Errorf("%s from the EHR is %d times in the record", id, n)
		}
	}
	if len(kept) == 0 || created < len(kept) {
		t.Errorf("the pulls created %d resources; the record holds %d of the EHR's", created, len(kept))
	}
	// ABDM: each pushed fact filed once, the pages taken by more than one
	// replica
	for _, typ := range []string{"Immunization", "MedicationRequest", "Condition"} {
		want := 0
		for _, cc := range ccs {
			var b struct {
				Entry []struct {
					Resource struct {
						ResourceType string `json:"resourceType"`
					} `json:"resource"`
				} `json:"entry"`
			}
			_ = json.Unmarshal(cc.Bundle, &b)
			for _, en := range b.Entry {
				if en.Resource.ResourceType == typ {
					want++
				}
			}
		}
		if n := e.count("/" + typ + "?patient=Patient/abha-pt"); n != want {
			t.Errorf("ABDM %s of abha-pt: %d, the documents hold %d", typ, n, want)
		}
	}
	pushReplicas := 0
	for i := range e.pushes {
		if e.pushes[i].Load() > 0 {
			pushReplicas++
		}
	}
	if pushReplicas < 2 {
		t.Errorf("the ABDM pages reached %d replica(s): the test meant them to reach several", pushReplicas)
	}
	// uploads: one DocumentReference per distinct file
	if n := e.count("/DocumentReference?patient=Patient/local"); n != len(pdfs) {
		t.Errorf("%d DocumentReferences for %d distinct uploads", n, len(pdfs))
	}
	// every notification delivered once
	e.waitFor("notifications", func() bool {
		return len(e.hooks.events(requestSub)) >= 1 && len(e.hooks.events(statusSub)) >= 2
	})
	time.Sleep(2 * time.Second) // a doubled delivery would arrive meanwhile (dispatch polls each second)
	if ev := e.hooks.events(requestSub); fmt.Sprint(ev) != "map[1:1]" {
		t.Errorf("new-request notifications by event number: %v, want one event once", ev)
	}
	if ev := e.hooks.events(statusSub); fmt.Sprint(ev) != "map[1:1 2:1]" {
		t.Errorf("status notifications by event number: %v, want events 1 and 2 once each", ev)
	}
	for i := range e.lbServed {
		if e.lbServed[i].Load() == 0 {
			t.Errorf("replica %d took nothing through the load balancer", i)
		}
	}
	// one of them holds the audit trail's appender role (the others store
	// their events pending for it to seal): each logs when it finds
	// itself without the role or takes it over
	holders := 0
	for i, lf := range e.logs {
		b, err := os.ReadFile(lf)
		if err != nil {
			t.Fatal(err)
		}
		held := true // a trail starts as the appender, and logs a change
		for _, l := range strings.Split(string(b), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "audit: appender's role" {
				held, _ = m["held"].(bool)
			}
		}
		if held {
			holders++
			t.Logf("replica %d holds the audit trail's appender role", i)
		}
	}
	if holders != 1 {
		t.Errorf("%d replicas hold the audit trail's appender role, want one", holders)
	}
	// the audit trail of all three is one chain, and it verifies
	out, err := exec.Command(e.bin, "audit", "verify", "--db", e.db, "--audit-key", replicaAuditKey).CombinedOutput()
	if err != nil {
		t.Errorf("audit verify after the replicas' load: %v\n%s", err, lastLines(string(out), 20))
	} else {
		t.Logf("audit verify: %s", lastLines(string(out), 2))
	}
}
