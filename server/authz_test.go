package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/fhirgate/fhirgate/server"
)

// secured is a gateway with OIDC authentication, consent and audit.
type secured struct {
	*harness
	is      *authtest.Issuer
	auditor *audit.Trail
	tokens  map[string]string
	pa, pb  string // patients A and B
	oa      string // an Observation of A
	consent string // the Consent of A for Organization/clinic
}

const consentBody = `{"resourceType":"Consent","status":"active",
 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
 "patient":{"reference":"Patient/%s"},"organization":[{"reference":"Organization/hospital"}],"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
 "provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/clinic"}}],
  "action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}]}}`

func newSecured(t testing.TB, k storeKind, with ...func(*server.Config)) *secured {
	is := authtest.NewIssuer(t)
	cfg := config.Auth{
		Issuers: []config.Issuer{is.Config("fhirgate")},
		Clients: []config.Client{
			{ClientID: "clinic", Role: "provider", Organization: "Organization/clinic"},
			{ClientID: "clinic2", Role: "provider", Organization: "Organization/clinic2"},
			// the hospital records Consents on its patients' behalf
			{ClientID: "hospital", Role: "system", Organization: "Organization/hospital", Custodian: &config.Custodian{Patients: []string{"*"}}},
			{ClientID: "lab", Role: "system"}, // a system client that is nobody's custodian
		},
	}
	v, err := auth.New(cfg, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := k.open(t)
	t.Cleanup(func() { st.Close() })
	aud := openTrail(t, st)
	t.Cleanup(aud.Close)
	pulls, err := jobs.New(context.Background(), jobs.Config{Store: st, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := pulls.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pulls.Stop(context.Background()) })
	scfg := server.Config{Store: st, Search: testRegistry, Validator: validate.Default(), Auth: v, Auditor: aud, Pull: pulls, BaseURL: "http://fhir.test"}
	for _, w := range with {
		w(&scfg)
	}
	srv := server.New(scfg)
	s := &secured{harness: &harness{t: t, store: st, srv: srv}, is: is, auditor: aud}
	s.tokens = map[string]string{
		"none":         "",
		"bad-sig":      is.ForeignToken(t, authtest.Claims{"client_id": "hospital", "scp": []string{"system/*.cruds"}}),
		"expired":      is.ExpiredToken(t, authtest.Claims{"client_id": "hospital", "scp": []string{"system/*.cruds"}}),
		"wrong-aud":    is.WrongAudienceToken(t, authtest.Claims{"client_id": "hospital", "scp": []string{"system/*.cruds"}}),
		"system":       is.ClientToken(t, "hospital", "system/*.cruds"),
		"provider":     is.ClientToken(t, "clinic", "system/*.rs"),
		"provider-nc":  is.ClientToken(t, "clinic2", "system/*.rs"),
		"provider-rev": is.ClientToken(t, "clinic", "system/*.rs"),
		// the audit trail is given only to a scope that names it
		"auditor": is.ClientToken(t, "hospital", "system/AuditEvent.rs"),
		"lab":     is.ClientToken(t, "lab", "system/*.cruds"),
	}
	sys := "Authorization: Bearer " + s.tokens["system"]
	mk := func(body string) string {
		w := s.do(http.MethodPost, "/"+strings.SplitN(strings.SplitN(body, `"resourceType":"`, 2)[1], `"`, 2)[0], []byte(body), sys)
		mustStatus(t, w, http.StatusCreated)
		return jsonMap(t, w.Body.Bytes())["id"].(string)
	}
	s.pa = mk(`{"resourceType":"Patient","name":[{"family":"Alpha"}]}`)
	s.pb = mk(`{"resourceType":"Patient","name":[{"family":"Beta"}]}`)
	s.oa = mk(obsFor(s.pa))
	mk(obsFor(s.pb))
	s.consent = mk(fmt.Sprintf(consentBody, s.pa))
	s.tokens["patientA"] = is.PatientToken(t, "Patient/"+s.pa, "openid", "fhirUser", "patient/*.cruds")
	s.tokens["patientB"] = is.PatientToken(t, "Patient/"+s.pb, "openid", "fhirUser", "patient/*.cruds")
	return s
}

func obsFor(pid string) string {
	return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` + pid + `"},"valueQuantity":{"value":72,"unit":"/min"}}`
}

func (s *secured) as(who, method, path string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	if tok := s.tokens[who]; tok != "" {
		hdr = append(hdr, "Authorization: Bearer "+tok)
	}
	return s.do(method, path, body, hdr...)
}

// outcome of one request for one principal: status, and whether A's
// Observation is in the answer
type want struct {
	status int
	seesA  bool
}

var principals = []string{"none", "bad-sig", "expired", "wrong-aud", "patientA", "patientB", "provider", "provider-nc", "system"}

// authCase builds the request for a route and says what each principal gets.
type authCase struct {
	req    func(s *secured) (method, path string, body []byte, hdr []string)
	expect map[string]want
}

func unauth(m map[string]want) map[string]want {
	for _, p := range []string{"none", "bad-sig", "expired", "wrong-aud"} {
		if _, ok := m[p]; !ok {
			m[p] = want{status: 401}
		}
	}
	return m
}

func public() map[string]want {
	m := map[string]want{}
	for _, p := range principals {
		m[p] = want{status: 200}
	}
	return m
}

// readLike is the expectation for fetching A's data.
func readLike(okStatus int) map[string]want {
	return unauth(map[string]want{
		"patientA": {okStatus, true}, "patientB": {403, false}, "provider": {okStatus, true},
		"provider-nc": {403, false}, "system": {okStatus, true},
	})
}

// searchLike is the expectation for a search that could match A's data:
// everyone authenticated gets 200, but only some see A's data.
func searchLike() map[string]want {
	return unauth(map[string]want{
		"patientA": {200, true}, "patientB": {200, false}, "provider": {200, true},
		"provider-nc": {200, false}, "system": {200, true},
	})
}

func authCases(t *testing.T) map[string]authCase {
	get := func(path func(s *secured) string) func(s *secured) (string, string, []byte, []string) {
		return func(s *secured) (string, string, []byte, []string) { return http.MethodGet, path(s), nil, nil }
	}
	fresh := func(s *secured) string { // a new Observation of A, to change or delete
		w := s.as("system", http.MethodPost, "/Observation", []byte(obsFor(s.pa)))
		return jsonMap(t, w.Body.Bytes())["id"].(string)
	}
	return map[string]authCase{
		"GET /healthz":                         {get(func(*secured) string { return "/healthz" }), public()},
		"GET /readyz":                          {get(func(*secured) string { return "/readyz" }), public()},
		"GET /metadata":                        {get(func(*secured) string { return "/metadata" }), public()},
		"GET /.well-known/smart-configuration": {get(func(*secured) string { return "/.well-known/smart-configuration" }), public()},
		"GET /.well-known/jwks.json":           {get(func(*secured) string { return "/.well-known/jwks.json" }), public()},
		"GET /_history": {get(func(*secured) string { return "/_history?_count=500" }), unauth(map[string]want{
			"patientA": {403, false}, "patientB": {403, false}, "provider": {200, true}, "provider-nc": {200, false}, "system": {200, true}})},
		"POST /": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodPost, "/", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Observation/` + s.oa + `"}}]}`), nil
		}, readLike(200)},
		"POST /:type": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodPost, "/Observation", []byte(obsFor(s.pa)), nil
		}, unauth(map[string]want{"patientA": {201, true}, "patientB": {403, false}, "provider": {403, false}, "provider-nc": {403, false}, "system": {201, true}})},
		"GET /:type": {get(func(s *secured) string { return "/Observation?code=8867-4&_count=100" }), searchLike()},
		"PUT /:type": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodPut, "/Observation?_id=" + fresh(s), []byte(obsFor(s.pa)), nil
		}, unauth(map[string]want{"patientA": {403, false}, "patientB": {403, false}, "provider": {403, false}, "provider-nc": {403, false}, "system": {200, true}})},
		"DELETE /:type": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodDelete, "/Observation?_id=" + fresh(s), nil, nil
		}, unauth(map[string]want{"patientA": {403, false}, "patientB": {403, false}, "provider": {403, false}, "provider-nc": {403, false}, "system": {204, false}})},
		"GET /:type/_history": {get(func(s *secured) string { return "/Observation/_history?_count=500" }), searchLike()},
		"GET /:type/:id":      {get(func(s *secured) string { return "/Observation/" + s.oa }), readLike(200)},
		"HEAD /:type/:id": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodHead, "/Observation/" + s.oa, nil, nil
		}, headLike()},
		"PUT /:type/:id": {func(s *secured) (string, string, []byte, []string) {
			id := fresh(s)
			return http.MethodPut, "/Observation/" + id, []byte(strings.Replace(obsFor(s.pa), `"Observation",`, `"Observation","id":"`+id+`",`, 1)), nil
		}, writeLike(200)},
		"PATCH /:type/:id": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodPatch, "/Observation/" + fresh(s), []byte(`[{"op":"replace","path":"/status","value":"amended"}]`), []string{"Content-Type: application/json-patch+json"}
		}, writeLike(200)},
		"DELETE /:type/:id": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodDelete, "/Observation/" + fresh(s), nil, nil
		}, unauth(map[string]want{"patientA": {204, false}, "patientB": {403, false}, "provider": {403, false}, "provider-nc": {403, false}, "system": {204, false}})},
		"GET /:type/:id/_history":      {get(func(s *secured) string { return "/Observation/" + s.oa + "/_history" }), readLike(200)},
		"GET /:type/:id/_history/:vid": {get(func(s *secured) string { return "/Observation/" + s.oa + "/_history/1" }), readLike(200)},
		// the dispatch routes: type-level operations, _search, instance operations, compartments
		"POST /:type/:id": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodPost, "/Observation/_search", []byte("code=8867-4"), []string{"Content-Type: application/x-www-form-urlencoded"}
		}, searchLike()},
		"GET /:type/:id/:op": {get(func(s *secured) string { return "/Patient/" + s.pa + "/$everything" }), readLike(200)},
		"GET /_pull/:pull": {get(func(*secured) string { return "/_pull/12345" }), unauth(map[string]want{
			"patientA": {404, false}, "patientB": {404, false}, "provider": {403, false}, "provider-nc": {403, false}, "system": {404, false}})},
		"POST /:type/:id/:op": {func(s *secured) (string, string, []byte, []string) {
			return http.MethodPost, "/Patient/" + s.pa + "/$everything", nil, nil
		}, readLike(200)},
	}
}

func headLike() map[string]want {
	m := readLike(200)
	for k, w := range m {
		w.seesA = false // HEAD has no body
		m[k] = w
	}
	return m
}

func writeLike(ok int) map[string]want {
	return unauth(map[string]want{"patientA": {ok, true}, "patientB": {403, false}, "provider": {403, false}, "provider-nc": {403, false}, "system": {ok, true}})
}

// TestAuthorizationMatrix: every route the engine answers × every kind of
// caller. A route without a case fails the test, so no new route escapes.
func TestAuthorizationMatrix(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newSecured(t, k)
			cases := authCases(t)
			for _, rt := range s.srv.EngineRoutes() {
				key := rt[0] + " " + rt[1]
				c, ok := cases[key]
				if !ok {
					t.Errorf("route %s has no authorization case", key)
					continue
				}
				for _, who := range principals {
					w := c.expect[who]
					method, path, body, hdr := c.req(s)
					if method != http.MethodGet && method != http.MethodHead && body == nil && method != http.MethodDelete {
						body = []byte{}
					}
					r := s.as(who, method, path, body, hdr...)
					if r.Code != w.status {
						t.Errorf("%s as %s: status %d, want %d: %.300s", key, who, r.Code, w.status, r.Body.String())
						continue
					}
					if r.Code == 401 && r.Header().Get("WWW-Authenticate") == "" {
						t.Errorf("%s as %s: 401 without WWW-Authenticate", key, who)
					}
					if r.Code >= 400 && method != http.MethodHead {
						outcome(t, r)
					}
					if sees := strings.Contains(r.Body.String(), s.oa); sees != w.seesA && r.Code < 300 && method == http.MethodGet {
						t.Errorf("%s as %s: sees A's Observation = %v, want %v", key, who, sees, w.seesA)
					}
				}
			}
			// $pull: a patient only for itself, providers not at all
			for who, refused := range map[string]bool{"patientA": false, "patientB": true, "provider": true, "system": false} {
				w := s.as(who, http.MethodPost, "/Patient/"+s.pa+"/$pull", nil)
				if (w.Code == http.StatusForbidden) != refused || w.Code == 401 || w.Code >= 500 {
					t.Errorf("$pull as %s: %d %.200s", who, w.Code, w.Body.String())
				}
			}
			// revocation: the very next request of the provider is refused
			revoked := strings.Replace(fmt.Sprintf(consentBody, s.pa), `"status":"active"`, `"status":"inactive","id":"`+s.consent+`"`, 1)
			mustStatus(t, s.as("patientA", http.MethodPut, "/Consent/"+s.consent, []byte(revoked)), http.StatusOK)
			for _, path := range []string{"/Observation/" + s.oa, "/Patient/" + s.pa} {
				if w := s.as("provider-rev", http.MethodGet, path, nil); w.Code != http.StatusForbidden {
					t.Errorf("after revocation %s: %d", path, w.Code)
				}
			}
			ev := s.as("provider-rev", http.MethodGet, "/Patient/"+s.pa+"/$everything", nil)
			if strings.Contains(ev.Body.String(), s.oa) {
				t.Error("after revocation $everything still shows A's data")
			}
			s.checkAudit(t)
		})
	}
}

// checkAudit: accesses and refusals were recorded, each principal sees
// the events it may see, and the chain verifies.
func (s *secured) checkAudit(t *testing.T) {
	if w := s.as("system", http.MethodGet, "/AuditEvent?_count=1000", nil); strings.Contains(w.Body.String(), `"resourceType":"AuditEvent"`) {
		t.Errorf("a system/*.rs token reads the audit trail: %.300s", w.Body.String())
	}
	w := s.as("auditor", http.MethodGet, "/AuditEvent?_count=1000&_sort=_id", nil)
	mustStatus(t, w, http.StatusOK)
	body := w.Body.String()
	for _, want := range []string{"Organization/clinic", "Consent/" + s.consent, `"outcome":"4"`, "Patient/" + s.pa} {
		if !strings.Contains(body, want) {
			t.Errorf("audit trail has no %s", want)
		}
	}
	// a wildcard scope does not give the trail
	if w := s.as("system", http.MethodGet, "/AuditEvent", nil); w.Code != http.StatusForbidden {
		t.Errorf("system/*.cruds reads the trail: %d", w.Code)
	}
	mine := s.as("patientA", http.MethodGet, "/AuditEvent?_count=1000", nil)
	mustStatus(t, mine, http.StatusOK)
	if !strings.Contains(mine.Body.String(), "Organization/clinic") {
		t.Errorf("patient A does not see the provider's accesses: %.500s", mine.Body.String())
	}
	for _, e := range jsonMap(t, mine.Body.Bytes())["entry"].([]any) {
		if ev := fmt.Sprint(e); !strings.Contains(ev, "Patient/"+s.pa) {
			t.Errorf("patient A sees an audit event not about A: %.300s", ev)
		}
	}
	theirs := s.as("provider-nc", http.MethodGet, "/AuditEvent?_count=1000", nil)
	mustStatus(t, theirs, http.StatusOK)
	for _, e := range jsonMap(t, theirs.Body.Bytes())["entry"].([]any) {
		if ev := fmt.Sprint(e); !strings.Contains(ev, "clinic2") {
			t.Errorf("provider clinic2 sees an event of another agent: %.300s", ev)
		}
	}
	// every recorded event is a valid AuditEvent (including those of
	// creates, where the new resource has no id yet)
	for _, e := range jsonMap(t, w.Body.Bytes())["entry"].([]any) {
		b, _ := json.Marshal(e.(map[string]any)["resource"])
		if issues := validate.Default().ValidateJSON(b); validate.HasErrors(issues) {
			t.Fatalf("invalid AuditEvent %.300s: %v", b, issues)
		}
	}
	// the chain verifies
	rep, err := audit.VerifyLog(context.Background(), s.auditor.Log(), audit.VerifyOptions{Keys: trailKeys})
	if err != nil || !rep.OK() || rep.Events < 50 {
		t.Fatalf("audit chain: %v, %d events, problems %v", err, rep.Events, rep.Problems)
	}
}

// TestPatientLogin: a patient signs in through the issuer's authorization
// code flow (PKCE) and reads its own record with the access token.
func TestPatientLogin(t *testing.T) {
	s := newSecured(t, storeKinds[0])
	s.is.RegisterClient("patient-app", "") // a public client
	tr := s.is.Login(t, "patient-app", "Patient/"+s.pa, "openid", "fhirUser", "launch/patient", "patient/*.rs")
	if tr.AccessToken == "" {
		t.Fatal("no access token from the login")
	}
	auth := "Authorization: Bearer " + tr.AccessToken
	mustStatus(t, s.do(http.MethodGet, "/Patient/"+s.pa+"/$everything", nil, auth), http.StatusOK)
	mustStatus(t, s.do(http.MethodGet, "/Observation/"+s.oa, nil, auth), http.StatusOK)
	mustStatus(t, s.do(http.MethodGet, "/Patient/"+s.pb, nil, auth), http.StatusForbidden)
	// read-only scopes: no writes
	mustStatus(t, s.do(http.MethodPost, "/Observation", []byte(obsFor(s.pa)), auth), http.StatusForbidden)
}
