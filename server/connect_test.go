package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/smart/smarttest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/connect"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/seal"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

const portalID = "clinic-portal"

// connectSource is the fake source outside the gateway: a FHIR server (the
// gateway's own code, on its own store, without authentication) behind a
// fake SMART authorization server with a login page.
func connectSource(t *testing.T) (*smarttest.Login, string) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "portal.db"), sqlstore.Options{Registry: testRegistry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fhirSrv := server.New(server.Config{Store: st, Search: testRegistry, BaseURL: "http://portal.invalid"})
	login := &smarttest.Login{Title: "Clinic Portal", ClientID: "fhirgate", RedirectURIs: []string{"http://fhir.test" + connect.CallbackPath},
		People: []smarttest.Person{{Name: "Amy Rivera", Patient: "cp-9"}, {Name: "Bob Stone", Patient: "cp-bob"}}, FHIR: fhirSrv}
	ts := httptest.NewServer(login)
	t.Cleanup(ts.Close)
	login.Base = ts.URL
	for _, body := range []string{
		`{"resourceType":"Patient","id":"cp-9","name":[{"family":"Rivera","given":["Amy"]}],"gender":"female","birthDate":"1967-04-12"}`,
		`{"resourceType":"Observation","id":"cp-obs-1","status":"final","code":{"text":"HbA1c"},"subject":{"reference":"Patient/cp-9"},"effectiveDateTime":"2025-05-01","valueQuantity":{"value":6.1,"unit":"%"}}`,
		`{"resourceType":"Patient","id":"cp-bob","name":[{"family":"Stone","given":["Bob"]}],"gender":"male","birthDate":"1950-01-01"}`,
		`{"resourceType":"Observation","id":"cp-obs-bob","status":"final","code":{"text":"Bob's result"},"subject":{"reference":"Patient/cp-bob"},"effectiveDateTime":"2025-05-02"}`,
	} {
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		req := httptest.NewRequest(http.MethodPut, fmt.Sprintf("/%s/%s", m["resourceType"], m["id"]), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		w := httptest.NewRecorder()
		fhirSrv.ServeHTTP(w, req)
		if w.Code >= 300 {
			t.Fatalf("load portal: %d %s", w.Code, w.Body)
		}
	}
	return login, ts.URL
}

// connectGateway is one gateway replica with a connectable source.
type connectGateway struct {
	*secured
	svc   *connect.Service
	pulls *jobs.Service
}

type connectClock struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *connectClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.d) }
func (c *connectClock) add(d time.Duration) {
	c.mu.Lock()
	c.d += d
	c.mu.Unlock()
}

var testStateKey = bytes.Repeat([]byte{7}, 32)

func newConnectGateway(t *testing.T, st storage.Store, is *authtest.Issuer, sourceURL string, clock *connectClock, logs *syncBuffer, sealed bool) *connectGateway {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v, err := auth.New(config.Auth{Issuers: []config.Issuer{is.Config("fhirgate")}, Clients: []config.Client{
		{ClientID: "clinic", Role: "provider", Organization: "Organization/clinic"},
		{ClientID: "hospital", Role: "system", Organization: "Organization/hospital", Custodian: &config.Custodian{Patients: []string{"*"}}},
	}}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := fhirrest.New(portalID, fhirrest.Config{Config: upstream.Config{BaseURL: sourceURL, Auth: upstream.Auth{Type: upstream.AuthSMARTPatient, ClientID: "fhirgate"}}}, adapters.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	var sl *seal.Sealer
	if sealed {
		if sl, err = seal.New(testStateKey); err != nil {
			t.Fatal(err)
		}
	}
	svc := connect.New(connect.Config{Sources: connect.SourcesOf([]adapters.Source{src}, map[string]string{portalID: "Clinic Portal"}),
		Store: st.(storage.Connections), Sealer: sl, BaseURL: "http://fhir.test", ReturnURLs: []string{"http://fhir.test/app/patient/"}, Now: clock.now, Logger: log})
	aud := openTrail(t, st)
	cons := &consolidate.Consolidator{Store: st}
	pulls, err := jobs.New(context.Background(), jobs.Config{Store: st, Sources: []adapters.Source{src}, Connections: svc, Consolidator: cons, PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := pulls.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pulls.Stop(context.Background()) })
	srv := server.New(server.Config{Store: consolidate.View(st), Search: testRegistry, Validator: validate.Default(), Auth: v, Auditor: aud,
		Pull: pulls, BaseURL: "http://fhir.test", Logger: log, Consolidator: cons})
	srv.RegisterConnect(svc)
	s := &secured{harness: &harness{t: t, store: st, srv: srv}, is: is, auditor: aud}
	s.tokens = map[string]string{
		"amy":      is.PatientToken(t, "Patient/amy", "openid", "fhirUser", "launch/patient", "patient/*.cruds"),
		"bob":      is.PatientToken(t, "Patient/bob", "openid", "fhirUser", "launch/patient", "patient/*.cruds"),
		"provider": is.ClientToken(t, "clinic", "system/*.cruds"),
		"system":   is.ClientToken(t, "hospital", "system/*.cruds"),
	}
	return &connectGateway{secured: s, svc: svc, pulls: pulls}
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// params reads a Parameters answer: name -> values (valueX), and the
// source parts by id.
func connectParams(t *testing.T, w *httptest.ResponseRecorder) (map[string]string, map[string]map[string]string) {
	t.Helper()
	var p struct {
		Parameter []map[string]any `json:"parameter"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("not Parameters: %s", w.Body)
	}
	flat, sources := map[string]string{}, map[string]map[string]string{}
	val := func(m map[string]any) string {
		for k, v := range m {
			if strings.HasPrefix(k, "value") {
				return fmt.Sprint(v)
			}
		}
		return ""
	}
	for _, pm := range p.Parameter {
		name, _ := pm["name"].(string)
		if parts, ok := pm["part"].([]any); ok {
			src := map[string]string{}
			for _, x := range parts {
				xm := x.(map[string]any)
				src[xm["name"].(string)] = val(xm)
			}
			sources[src["id"]] = src
			continue
		}
		flat[name] = val(pm)
	}
	return flat, sources
}

// browserLogin follows an authorize URL as the patient's browser would:
// the source's login page, the chosen person, and the redirect to the
// gateway's callback, which it returns (path and query).
func browserLogin(t *testing.T, authorizeURL, person string) string {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	page := new(bytes.Buffer)
	_, _ = page.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(page.String(), "Sign in as") {
		t.Fatalf("login page: %d %.300s", resp.StatusCode, page)
	}
	u, _ := url.Parse(authorizeURL)
	form := u.Query()
	if person == "" {
		form.Set("deny", "1")
	} else {
		form.Set("patient", person)
	}
	resp, err = hc.PostForm(u.Scheme+"://"+u.Host+u.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Host != "fhir.test" || loc.Path != connect.CallbackPath {
		t.Fatalf("login answer: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.RequestURI()
}

func (g *connectGateway) begin(t *testing.T) string {
	t.Helper()
	w := g.as("amy", "POST", "/Patient/amy/$connect", []byte(`{"resourceType":"Parameters","parameter":[{"name":"source","valueString":"`+portalID+`"},{"name":"returnUrl","valueUri":"http://fhir.test/app/patient/#/sources"}]}`))
	mustStatus(t, w, http.StatusOK)
	p, _ := connectParams(t, w)
	if !strings.Contains(p["authorizeUrl"], "/auth/authorize?") || !strings.Contains(p["authorizeUrl"], "code_challenge_method=S256") {
		t.Fatalf("authorizeUrl %q", p["authorizeUrl"])
	}
	return p["authorizeUrl"]
}

// complete is what the app does when the callback sends the browser back
// with a completion: it finishes the connection as who (a patient id).
func (g *connectGateway) complete(t *testing.T, w *httptest.ResponseRecorder, who string) *httptest.ResponseRecorder {
	t.Helper()
	back, err := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || err != nil || back.Query().Get("complete") == "" || back.Query().Get("result") != "" {
		t.Fatalf("callback: %d %q, want a redirect to the app with a completion", w.Code, w.Header().Get("Location"))
	}
	return g.as(who, "POST", "/Patient/"+who+"/$connect", []byte(`{"resourceType":"Parameters","parameter":[{"name":"source","valueString":"`+back.Query().Get("connect")+`"},{"name":"complete","valueString":"`+back.Query().Get("complete")+`"}]}`))
}

// connectAs signs in at the source as person and has the app finish as
// Amy: the whole connection.
func (g *connectGateway) connectAs(t *testing.T, person string) {
	t.Helper()
	mustStatus(t, g.complete(t, g.callback(browserLogin(t, g.begin(t), person)), "amy"), http.StatusOK)
}

// callback sends the browser's callback request and returns the answer.
func (g *connectGateway) callback(path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := httptest.NewRecorder()
	g.srv.ServeHTTP(w, req)
	return w
}

func (g *connectGateway) pull(t *testing.T, who string) jobs.SourceReport {
	t.Helper()
	w := g.as(who, "POST", "/Patient/amy/$pull?source="+portalID, nil)
	mustStatus(t, w, http.StatusAccepted)
	loc := strings.TrimPrefix(w.Header().Get("Content-Location"), "http://fhir.test")
	var st jobs.Status
	eventually(t, "the pull ends", func() bool {
		r := g.as(who, "GET", loc, nil)
		if r.Code != http.StatusOK {
			return false
		}
		_ = json.Unmarshal(r.Body.Bytes(), &st)
		return st.Done
	})
	return st.Sources[0]
}

func (g *connectGateway) state(t *testing.T) map[string]string {
	t.Helper()
	w := g.as("amy", "GET", "/Patient/amy/$connect", nil)
	mustStatus(t, w, http.StatusOK)
	_, srcs := connectParams(t, w)
	return srcs[portalID]
}

func rawRows(t *testing.T, st storage.Store, query string) [][]byte {
	t.Helper()
	rows, err := st.(*sqlstore.Store).DB().Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

const amyLocal = `{"resourceType":"Patient","id":"amy","name":[{"family":"Rivera","given":["Amy"]}],"gender":"female","birthDate":"1967-04-12"}`

// TestConnect: a patient connects a source with its own login there, pulls
// with the stored (sealed) tokens, refreshes them, is told to reconnect
// when they stop working, and disconnects; forged, replayed, expired
// states and other people are refused.
func TestConnect(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			login, base := connectSource(t)
			is := authtest.NewIssuer(t)
			st := k.open(t)
			t.Cleanup(func() { st.Close() })
			clock, logs := &connectClock{}, &syncBuffer{}
			g := newConnectGateway(t, st, is, base, clock, logs, true)
			mustStatus(t, g.as("system", "PUT", "/Patient/amy", []byte(amyLocal)), http.StatusCreated)
			mustStatus(t, g.as("system", "PUT", "/Patient/bob", []byte(`{"resourceType":"Patient","id":"bob","name":[{"family":"Stone","given":["Bob"]}],"gender":"male","birthDate":"1950-01-01"}`)), http.StatusCreated)

			if md := g.as("amy", "GET", "/metadata", nil).Body.String(); !strings.Contains(md, `"name":"connect"`) || !strings.Contains(md, "OperationDefinition/Patient-connect") {
				t.Errorf("the CapabilityStatement does not declare $connect")
			}
			// who may use it: the patient itself only
			if s := g.state(t); s["status"] != "not-connected" || s["title"] != "Clinic Portal" {
				t.Fatalf("state before: %v", s)
			}
			for _, who := range []string{"provider", "system", "bob"} {
				for _, m := range []string{"GET", "POST"} {
					w := g.as(who, m, "/Patient/amy/$connect?source="+portalID+"&returnUrl=http://fhir.test/app/patient/", nil)
					if w.Code != http.StatusForbidden {
						t.Errorf("%s %s $connect of Amy: %d, want 403", who, m, w.Code)
					}
				}
			}
			// bad input
			for _, tc := range []struct{ q string }{{"source=nope&returnUrl=http://fhir.test/app/patient/"}, {"source=" + portalID + "&returnUrl=https://evil.example/app/patient/"},
				{"source=" + portalID + "&returnUrl=http://fhir.test/elsewhere"}, {"source=" + portalID}, {"returnUrl=http://fhir.test/app/patient/"}} {
				if w := g.as("amy", "POST", "/Patient/amy/$connect?"+tc.q, nil); w.Code != http.StatusBadRequest {
					t.Errorf("%s: %d, want 400", tc.q, w.Code)
				}
			}
			// a pull of a source the patient has not connected
			if w := g.as("amy", "POST", "/Patient/amy/$pull?source="+portalID, nil); w.Code != http.StatusConflict {
				t.Errorf("pull before connecting: %d, want 409", w.Code)
			}

			// a forged state, and a state that expired, store nothing
			if w := g.callback(connect.CallbackPath + "?state=forged&code=x"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "start again") {
				t.Errorf("forged state: %d %s", w.Code, w.Body)
			}
			stale := browserLogin(t, g.begin(t), "cp-9")
			clock.add(connect.StateTTL + time.Second)
			if w := g.callback(stale); w.Code != http.StatusBadRequest {
				t.Errorf("expired state: %d", w.Code)
			}
			clock.add(-connect.StateTTL - time.Second)
			// cancelled at the source: back to the app, nothing stored
			w := g.callback(browserLogin(t, g.begin(t), ""))
			if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "result=denied") {
				t.Errorf("denied: %d %q", w.Code, w.Header().Get("Location"))
			}
			if s := g.state(t); s["status"] != "not-connected" {
				t.Fatalf("after forged, expired, denied: %v", s)
			}

			// a forged login: a connection started for Amy's record, the
			// link followed by Bob, who signs in at the source as himself;
			// his app (signed in as Bob) gets the completion and cannot
			// use it, nothing is stored for anyone, and it is used up
			forged := g.callback(browserLogin(t, g.begin(t), "cp-bob"))
			if w := g.complete(t, forged, "bob"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "another record") {
				t.Errorf("Bob completes a login started for Amy: %d %s", w.Code, w.Body)
			}
			if w := g.complete(t, forged, "amy"); w.Code != http.StatusBadRequest {
				t.Errorf("the refused completion used again: %d", w.Code)
			}
			if s := g.state(t); s["status"] != "not-connected" || len(rawRows(t, st, `SELECT sealed FROM source_connections`)) != 0 {
				t.Fatalf("after a forged login: %v", s)
			}
			if !strings.Contains(g.as("amy", "GET", "/AuditEvent?_count=500", nil).Body.String(), "started for another patient") &&
				!strings.Contains(g.as("bob", "GET", "/AuditEvent?_count=500", nil).Body.String(), "started for another patient") {
				t.Errorf("the refused completion is not in the trail")
			}

			// connect
			cb := browserLogin(t, g.begin(t), "cp-9")
			w = g.callback(cb)
			if w.Code != http.StatusSeeOther {
				t.Fatalf("callback: %d %s", w.Code, w.Body)
			}
			back, _ := url.Parse(w.Header().Get("Location"))
			if back.Host != "fhir.test" || back.Path != "/app/patient/" || back.Query().Get("complete") == "" || back.Query().Get("connect") != portalID || back.Fragment != "/sources" {
				t.Errorf("back to the app: %q", w.Header().Get("Location"))
			}
			// signed in at the source, not connected until the app
			// (signed in as Amy) completes it
			if s := g.state(t); s["status"] != "not-connected" {
				t.Fatalf("before the app completes: %v", s)
			}
			done := g.complete(t, w, "amy")
			mustStatus(t, done, http.StatusOK)
			if p, _ := connectParams(t, done); p["status"] != "connected" {
				t.Errorf("completion answered %v", p)
			}
			if s := g.state(t); s["status"] != "connected" || s["since"] == "" {
				t.Fatalf("after connecting: %v", s)
			}
			// the completion is used up
			if w := g.complete(t, w, "amy"); w.Code != http.StatusBadRequest {
				t.Errorf("completion used twice: %d", w.Code)
			}
			// the same callback again: used up
			if w := g.callback(cb); w.Code != http.StatusBadRequest {
				t.Errorf("replayed state: %d", w.Code)
			}

			// pull with the patient's token; the source patient comes from
			// the login, not from demographic matching
			rep := g.pull(t, "amy")
			if rep.State != "completed" || rep.SourcePatient != "cp-9" || rep.Written == nil || rep.Written.Created == 0 {
				t.Fatalf("pull: %+v", rep)
			}
			ev := g.as("amy", "GET", "/Patient/amy/$everything", nil)
			if !strings.Contains(ev.Body.String(), "HbA1c") || strings.Contains(ev.Body.String(), "Bob's result") {
				t.Errorf("$everything after the pull: %.400s", ev.Body)
			}

			// refresh: the access token expired at the source
			before := rawRows(t, st, `SELECT sealed FROM source_connections`)
			login.ExpireAccess()
			if rep := g.pull(t, "amy"); rep.State != "completed" || login.Refreshes != 1 {
				t.Fatalf("pull after expiry: %+v, refreshes %d", rep, login.Refreshes)
			}
			after := rawRows(t, st, `SELECT sealed FROM source_connections`)
			if len(after) != 1 || bytes.Equal(before[0], after[0]) {
				t.Errorf("the refreshed tokens were not stored")
			}

			// tokens are never in the clear: rows, answers, logs, audit
			toks := login.Tokens()
			if len(toks) < 2 {
				t.Fatalf("tokens at the source: %d", len(toks))
			}
			raw := append(rawRows(t, st, `SELECT sealed FROM source_connections`), rawRows(t, st, `SELECT sealed FROM connect_states`)...)
			raw = append(raw, []byte(g.as("amy", "GET", "/AuditEvent?_count=500", nil).Body.String()), []byte(logs.String()), []byte(g.as("amy", "GET", "/Patient/amy/$connect", nil).Body.String()))
			for _, tok := range toks {
				for _, r := range raw {
					if bytes.Contains(r, []byte(tok)) {
						t.Fatalf("a token is stored or shown in the clear")
					}
				}
			}
			trail := g.as("amy", "GET", "/AuditEvent?_count=500", nil).Body.String()
			for _, want := range []string{"connected source " + portalID, "started connecting source " + portalID, "pull requested from " + portalID} {
				if !strings.Contains(trail, want) {
					t.Errorf("audit trail lacks %q", want)
				}
			}
			// one event for the connection, committed with the tokens
			// (not a second one when the answer is sent)
			if n := strings.Count(trail, "connected source "+portalID+" (the patient"); n != 1 {
				t.Errorf("the connection has %d events", n)
			}

			// the source stops accepting the login: the pull says to
			// reconnect (no 500), and so does the list
			login.RevokeAll()
			login.ExpireAccess()
			rep = g.pull(t, "amy")
			if rep.State != "failed" || !rep.Reconnect || !strings.Contains(rep.Error, "reconnect") {
				t.Fatalf("pull after revocation: %+v", rep)
			}
			if s := g.state(t); s["status"] != "reconnect" {
				t.Errorf("after a refused refresh: %v", s)
			}

			// reconnect, then disconnect: the tokens are forgotten here
			// and revoked there
			g.connectAs(t, "cp-9")
			if s := g.state(t); s["status"] != "connected" {
				t.Fatalf("after reconnecting: %v", s)
			}
			revs := login.Revocations
			w = g.as("amy", "POST", "/Patient/amy/$connect", []byte(`{"resourceType":"Parameters","parameter":[{"name":"source","valueString":"`+portalID+`"},{"name":"disconnect","valueBoolean":true}]}`))
			mustStatus(t, w, http.StatusOK)
			if s := g.state(t); s["status"] != "not-connected" || login.Revocations <= revs || len(rawRows(t, st, `SELECT sealed FROM source_connections`)) != 0 {
				t.Errorf("after disconnecting: %v, revocations %d→%d", s, revs, login.Revocations)
			}
			if n := strings.Count(g.as("amy", "GET", "/AuditEvent?_count=500", nil).Body.String(), "disconnected source "+portalID); n != 1 {
				t.Errorf("the disconnection has %d events", n)
			}

			// Amy's state, but Bob logs in at the source: the login
			// connects, but the pull files nothing of Bob's into Amy's
			// record
			g.connectAs(t, "cp-bob")
			rep = g.pull(t, "amy")
			if rep.State != "failed" || !strings.Contains(rep.Error, "contradicts") {
				t.Fatalf("pull of another patient's record: %+v", rep)
			}
			if strings.Contains(g.as("amy", "GET", "/Patient/amy/$everything", nil).Body.String(), "Bob's result") {
				t.Errorf("Bob's record was filed into Amy's")
			}
		})
	}
}

// TestConnectWithoutKey: without a state key nothing is connected (and so
// no token is ever stored in the clear).
func TestConnectWithoutKey(t *testing.T) {
	_, base := connectSource(t)
	st := storeKinds[0].open(t)
	t.Cleanup(func() { st.Close() })
	g := newConnectGateway(t, st, authtest.NewIssuer(t), base, &connectClock{}, &syncBuffer{}, false)
	mustStatus(t, g.as("system", "PUT", "/Patient/amy", []byte(amyLocal)), http.StatusCreated)
	w := g.as("amy", "POST", "/Patient/amy/$connect?source="+portalID+"&returnUrl=http://fhir.test/app/patient/", nil)
	if w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), seal.KeyEnv) {
		t.Errorf("connect without a key: %d %s", w.Code, w.Body)
	}
	if w := g.callback(connect.CallbackPath + "?state=x&code=y"); w.Code != http.StatusBadRequest {
		t.Errorf("callback without a key: %d", w.Code)
	}
}

// TestConnectAcrossReplicas: the callback reaches another replica than the
// one that started the connection (two gateways on one PostgreSQL).
func TestConnectAcrossReplicas(t *testing.T) {
	cfg := pgtest.Config(t)
	open := func() storage.Store {
		s, err := postgres.Open(context.Background(), cfg, sqlstore.Options{Registry: testRegistry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	_, base := connectSource(t)
	is := authtest.NewIssuer(t)
	clock := &connectClock{}
	a := newConnectGateway(t, open(), is, base, clock, &syncBuffer{}, true)
	b := newConnectGateway(t, open(), is, base, clock, &syncBuffer{}, true)
	mustStatus(t, a.as("system", "PUT", "/Patient/amy", []byte(amyLocal)), http.StatusCreated)
	cb := browserLogin(t, a.begin(t), "cp-9")
	w := b.callback(cb)
	if w := a.callback(cb); w.Code != http.StatusBadRequest {
		t.Errorf("the state was used on the other replica, then again here: %d", w.Code)
	}
	// the app finishes through the first replica
	mustStatus(t, a.complete(t, w, "amy"), http.StatusOK)
	if s := a.state(t); s["status"] != "connected" {
		t.Errorf("the first replica does not see the connection: %v", s)
	}
	if rep := a.pull(t, "amy"); rep.State != "completed" {
		t.Errorf("pull on the first replica: %+v", rep)
	}
}
