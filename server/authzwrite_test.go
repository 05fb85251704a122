package server_test

// TestAuthzWriteMatrix: every write route × every kind of principal ×
// (a patient's record, another's, records of two patients, no patient)
// answers what trust-spec.md's write rule says, and a refused write leaves
// the store as it was. TestAuthzConsentWrites: who may grant, change and
// withdraw Consents (the critical attack: a provider granting itself
// access). TestAuthzAuditEventWrites: the audit trail is written by the
// gateway alone (405 for everybody).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// wenv is a secured gateway with two patients: A (Patient/pt-0) shares
// with Organization/orgA (clinicA), B (Patient/pt-1) with Organization/orgB
// (the practitioner dr-b acts for it). city-hospital-ehr is A's custodian
// (listed) and pt-2's (by its MRN system), not B's.
type wenv struct {
	t   *testing.T
	g   *gateway
	ps  []*principal
	by  map[string]*principal
	seq int
	// consents of A and B, written by themselves
	consentA, consentB string
}

const (
	ptA = "Patient/pt-0"
	ptB = "Patient/pt-1"
	ptC = "Patient/pt-2" // a patient of the custodian by its MRN system
)

func newWriteEnv(t *testing.T, k storeKind) *wenv {
	g := newGateway(t, k)
	g.freeze() // no audit events: the store changes only by the writes tried
	is := g.is
	e := &wenv{t: t, g: g, by: map[string]*principal{}}
	add := func(p *principal) { e.ps = append(e.ps, p); e.by[p.name] = p }
	add(&principal{name: "anonymous", kind: kAnon})
	add(&principal{name: "patient A", kind: kPatient, patient: ptA, token: is.PatientToken(t, ptA, "openid", "fhirUser", "patient/*.cruds")})
	add(&principal{name: "patient B", kind: kPatient, patient: ptB, token: is.PatientToken(t, ptB, "openid", "fhirUser", "patient/*.cruds")})
	add(&principal{name: "clinicA (shares with A)", kind: kProvider, actors: []string{"Organization/orgA"}, token: is.ClientToken(t, "clinicA", "system/*.cruds")})
	add(&principal{name: "dr-b (practitioner of orgB, shares with B)", kind: kProvider, actors: []string{"Organization/orgB", "Practitioner/dr-b"},
		token: is.Token(t, authtest.Claims{"sub": "dr-b", "client_id": "practice-portal", "fhirUser": "Practitioner/dr-b", "scope": "openid fhirUser user/*.cruds"})})
	add(&principal{name: "clinicC (shares with nobody)", kind: kProvider, actors: []string{"Organization/orgC"}, token: is.ClientToken(t, "clinicC", "system/*.cruds")})
	add(&principal{name: "hospital-ehr (system)", kind: kSystem, token: is.ClientToken(t, "hospital-ehr", "system/*.cruds")})
	add(&principal{name: "city-hospital-ehr (custodian of A)", kind: kSystem, clientID: "city-hospital-ehr", token: is.ClientToken(t, "city-hospital-ehr", "system/*.cruds")})
	add(&principal{name: "dr-x (unmapped practitioner)", kind: kRefused, token: is.Token(t, authtest.Claims{"sub": "dr-x", "client_id": "practice-portal", "fhirUser": "Practitioner/dr-x", "scope": "openid fhirUser user/*.cruds"})})
	add(&principal{name: "stranger (unknown client)", kind: kRefused, token: is.ClientToken(t, "stranger", "system/*.cruds")})

	anon := e.by["anonymous"]
	for _, f := range []*fact{
		mkPatient(patientSpec{id: "pt-0", family: "Alvarez", given: "Amy", mrns: []coding{{mrnOther, "O1"}}}),
		mkPatient(patientSpec{id: "pt-1", family: "Bjork", given: "Boris", mrns: []coding{{mrnOther, "O2"}}}),
		mkPatient(patientSpec{id: "pt-2", family: "Chen", given: "Cleo", mrns: []coding{{mrnCity, "C3"}}}),
		mkOrganization("orgA", "Alpha Clinic"), mkOrganization("orgB", "Beta Clinic"), mkOrganization("orgC", "Gamma Clinic"),
		mkOrganization("city-hospital", "City Hospital"), mkPractitioner("dr-b", "Brandt", "Ben"),
	} {
		e.mustWrite(anon, http.MethodPut, "/"+f.ref(), f.body)
	}
	e.consentA = e.mustCreate(e.by["patient A"], "Consent", consentJSON(ptA, "Organization/orgA", "", ""))
	e.consentB = e.mustCreate(e.by["patient B"], "Consent", consentJSON(ptB, "Organization/orgB", "", ""))
	return e
}

// consentJSON is an active opt-in Consent of patient naming recipient; org
// names who recorded it on the patient's behalf, ident an identifier.
func consentJSON(patient, recipient, org, ident string) map[string]any {
	f := mkConsent("", patient, "active", &prov{actors: []string{recipient}, actions: []string{"access"}}, org, "")
	if ident != "" {
		f.body["identifier"] = []any{map[string]any{"system": "urn:authzwrite", "value": ident}}
	}
	return f.body
}

func (e *wenv) do(p *principal, method, path string, body any, hdr ...string) *httptest.ResponseRecorder {
	var b []byte
	switch x := body.(type) {
	case nil:
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(x)
	}
	return e.g.do(p, method, path, b, hdr...)
}

func (e *wenv) mustWrite(p *principal, method, path string, body any, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	w := e.do(p, method, path, body, hdr...)
	if w.Code >= 300 {
		e.t.Fatalf("setup %s %s as %s: %d %.400s", method, path, p, w.Code, w.Body.String())
	}
	return w
}

func (e *wenv) mustCreate(p *principal, typ string, body map[string]any) string {
	e.t.Helper()
	w := e.mustWrite(p, http.MethodPost, "/"+typ, body)
	return jsonMap(e.t, w.Body.Bytes())["id"].(string)
}

// versions counts the versions in the store, the audit trail left out.
func (e *wenv) versions() int {
	e.t.Helper()
	ctx := context.Background()
	all, err := e.g.store.History(ctx, storage.HistoryQuery{Count: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	aud, err := e.g.store.History(ctx, storage.HistoryQuery{Type: "AuditEvent", Count: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return all.Total - aud.Total
}

func (e *wenv) uid(prefix string) string {
	e.seq++
	return fmt.Sprintf("%s-%d", prefix, e.seq)
}

// targets of the write matrix: the patients whose compartment the written
// resource is in.
var writeTargets = map[string][]string{
	"A's record":                       {ptA},
	"B's record":                       {ptB},
	"B's record, A as performer":       {ptA, ptB},
	"no patient's record (Medication)": nil,
}

var writeTargetOrder = []string{"A's record", "B's record", "B's record, A as performer", "no patient's record (Medication)"}

// resourceFor is a new resource in the target's records (no id).
func (e *wenv) resourceFor(target, ident string) map[string]any {
	pats := writeTargets[target]
	if len(pats) == 0 {
		f := mkMedication("", medCodes[0])
		f.body["identifier"] = []any{map[string]any{"system": "urn:authzwrite", "value": ident}}
		return f.body
	}
	s := obsSpec{subject: pats[len(pats)-1], status: "final", eff: "2024-01-02"}
	if len(pats) > 1 {
		s.performer = pats[0]
	}
	code := obsCodes[0]
	s.code = &code
	f := mkObservation(s)
	f.body["identifier"] = []any{map[string]any{"system": "urn:authzwrite", "value": ident}}
	return f.body
}

func typeFor(target string) string {
	if len(writeTargets[target]) == 0 {
		return "Medication"
	}
	return "Observation"
}

// existing stores a resource of the target (as the system) and returns
// its id and identifier.
func (e *wenv) existing(target string) (string, string) {
	ident := e.uid("x")
	id := e.mustCreate(e.by["anonymous"], typeFor(target), e.resourceFor(target, ident))
	return id, ident
}

// relationship: the patients of the world and who they share with.
func shares(p *principal, patient string) bool {
	switch patient {
	case ptA:
		return slices.Contains(p.actors, "Organization/orgA")
	case ptB:
		return slices.Contains(p.actors, "Organization/orgB")
	}
	return false
}

// mayWrite is trust-spec's write rule for a resource in pats' records.
func mayWrite(p *principal, pats []string) bool {
	switch p.kind {
	case kAnon, kSystem:
		return true
	case kPatient:
		if len(pats) == 0 {
			return false // resources in no compartment are refused to patients
		}
		for _, pt := range pats {
			if pt != p.patient {
				return false
			}
		}
		return true
	case kProvider:
		for _, pt := range pats {
			if !shares(p, pt) {
				return false
			}
		}
		return true
	}
	return false
}

// writeRoute is one way to write; run performs it for a target and says
// the status of success and whether the route is conditional (refused to
// patients and providers where the gateway allows it only to system
// clients: accepted either way).
type writeRoute struct {
	name    string
	targets []string
	run     func(e *wenv, p *principal, target string) (req func() *httptest.ResponseRecorder, ok int, conditional bool, entry bool)
}

func entryStatus(t *testing.T, w *httptest.ResponseRecorder) int {
	var bj bundleJSON
	if err := json.Unmarshal(w.Body.Bytes(), &bj); err != nil || len(bj.Entry) == 0 || bj.Entry[0].Response == nil {
		t.Fatalf("a batch-response without an entry response: %.300s", w.Body.String())
	}
	n, _ := strconv.Atoi(strings.Fields(bj.Entry[0].Response.Status)[0])
	return n
}

func bundleOf(btype string, entries ...map[string]any) map[string]any {
	es := make([]any, len(entries))
	for i, x := range entries {
		es[i] = x
	}
	return map[string]any{"resourceType": "Bundle", "type": btype, "entry": es}
}

var writeRoutes = []writeRoute{
	{"POST [type]", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/"+typeFor(t), e.resourceFor(t, e.uid("n")))
		}, http.StatusCreated, false, false
	}},
	{"PUT [type]/[new id] (update as create)", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id := e.uid("new")
		body := e.resourceFor(t, id)
		body["id"] = id
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPut, "/"+typeFor(t)+"/"+id, body) }, http.StatusCreated, false, false
	}},
	{"PUT [type]/[id]", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id, ident := e.existing(t)
		body := e.resourceFor(t, ident)
		body["id"] = id
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPut, "/"+typeFor(t)+"/"+id, body) }, http.StatusOK, false, false
	}},
	{"PATCH [type]/[id]", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id, _ := e.existing(t)
		ops := `[{"op":"add","path":"/status","value":"amended"}]`
		if typeFor(t) == "Medication" {
			ops = `[{"op":"add","path":"/status","value":"inactive"}]`
		}
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPatch, "/"+typeFor(t)+"/"+id, ops, "Content-Type: application/json-patch+json")
		}, http.StatusOK, false, false
	}},
	{"DELETE [type]/[id]", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id, _ := e.existing(t)
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodDelete, "/"+typeFor(t)+"/"+id, nil) }, http.StatusNoContent, false, false
	}},
	{"POST [type] If-None-Exist (conditional create)", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		ident := e.uid("c")
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/"+typeFor(t), e.resourceFor(t, ident), "If-None-Exist: identifier=urn:authzwrite|"+ident)
		}, http.StatusCreated, true, false
	}},
	{"PUT [type]?identifier (conditional update)", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		_, ident := e.existing(t)
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPut, "/"+typeFor(t)+"?identifier=urn:authzwrite|"+ident, e.resourceFor(t, ident))
		}, http.StatusOK, true, false
	}},
	{"DELETE [type]?identifier (conditional delete)", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		_, ident := e.existing(t)
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodDelete, "/"+typeFor(t)+"?identifier=urn:authzwrite|"+ident, nil)
		}, http.StatusNoContent, true, false
	}},
	{"transaction: POST entry", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		b := bundleOf("transaction", map[string]any{"resource": e.resourceFor(t, e.uid("t")), "request": map[string]any{"method": "POST", "url": typeFor(t)}})
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPost, "/", b) }, http.StatusOK, false, false
	}},
	{"transaction: PUT entry", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id, ident := e.existing(t)
		body := e.resourceFor(t, ident)
		body["id"] = id
		b := bundleOf("transaction", map[string]any{"resource": body, "request": map[string]any{"method": "PUT", "url": typeFor(t) + "/" + id}})
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPost, "/", b) }, http.StatusOK, false, false
	}},
	{"transaction: DELETE entry", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id, _ := e.existing(t)
		b := bundleOf("transaction", map[string]any{"request": map[string]any{"method": "DELETE", "url": typeFor(t) + "/" + id}})
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPost, "/", b) }, http.StatusOK, false, false
	}},
	{"batch: POST entry", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		b := bundleOf("batch", map[string]any{"resource": e.resourceFor(t, e.uid("b")), "request": map[string]any{"method": "POST", "url": typeFor(t)}})
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPost, "/", b) }, http.StatusCreated, false, true
	}},
	{"batch: DELETE entry", writeTargetOrder, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		id, _ := e.existing(t)
		b := bundleOf("batch", map[string]any{"request": map[string]any{"method": "DELETE", "url": typeFor(t) + "/" + id}})
		return func() *httptest.ResponseRecorder { return e.do(p, http.MethodPost, "/", b) }, http.StatusNoContent, false, true
	}},
	{"Patient/[id]/$import of a FHIR Bundle", []string{"A's record", "B's record"}, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		pt := writeTargets[t][0]
		obs := e.resourceFor(t, e.uid("i"))
		obs["subject"] = jref("Patient/src")
		// the source's demographics are the target's (the check of
		// wrong-patient imports is TestAttackWrongPatientImport's)
		name := map[string]any{"family": "Alvarez", "given": []any{"Amy"}}
		if pt == ptB {
			name = map[string]any{"family": "Bjork", "given": []any{"Boris"}}
		}
		b := bundleOf("collection",
			map[string]any{"fullUrl": "urn:uuid:5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0001", "resource": map[string]any{"resourceType": "Patient", "id": "src", "name": []any{name}}},
			map[string]any{"fullUrl": "urn:uuid:5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0002", "resource": obs})
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/"+pt+"/$import", b, "Content-Type: application/fhir+json")
		}, http.StatusOK, false, false
	}},
	{"POST /Binary with X-Security-Context", []string{"A's record", "B's record", "no patient's record (Medication)"}, func(e *wenv, p *principal, t string) (func() *httptest.ResponseRecorder, int, bool, bool) {
		hdr := []string{"Content-Type: application/pdf"}
		if pats := writeTargets[t]; len(pats) > 0 {
			hdr = append(hdr, "X-Security-Context: "+pats[0])
		}
		return func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/Binary", "%PDF-1.4\n%%EOF\n", hdr...)
		}, http.StatusCreated, false, false
	}},
}

func TestAuthzWriteMatrix(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			e := newWriteEnv(t, k)
			for _, rt := range writeRoutes {
				for _, target := range rt.targets {
					for _, p := range e.ps {
						req, ok, conditional, entry := rt.run(e, p, target) // writes the route's setup
						before := e.versions()
						w := req()
						e.checkWrite(rt.name, target, p, w, ok, conditional, entry, mayWrite(p, writeTargets[target]), before)
					}
				}
			}
			e.checkSecondOpinion()
			e.checkPlantingImport()
		})
	}
}

// checkWrite compares one write's answer with the rule, and checks that a
// refused write changed nothing (the versions counted just before the
// request, after the route's setup).
func (e *wenv) checkWrite(route, target string, p *principal, w *httptest.ResponseRecorder, ok int, conditional, entry, allowed bool, before int) {
	t := e.t
	t.Helper()
	code := w.Code
	if entry && code == http.StatusOK {
		code = entryStatus(t, w)
	}
	var want []int
	switch {
	case p.kind == kRefused:
		want = []int{http.StatusForbidden}
	case !allowed:
		want = []int{http.StatusForbidden}
	case conditional && (p.kind == kPatient || p.kind == kProvider):
		want = []int{ok, http.StatusForbidden}
	case strings.HasPrefix(route, "Patient/[id]/$import") && (p.kind == kPatient || p.kind == kProvider):
		// the Bundle names its own Patient entry, which the import maps to
		// the target: the stricter reading refuses it (its references are
		// not the writer's patient as sent)
		want = []int{ok, http.StatusForbidden}
	default:
		want = []int{ok}
	}
	if !slices.Contains(want, code) {
		t.Errorf("%s, %s, as %s: status %d, want %v: %.300s", route, target, p, code, want, w.Body.String())
	}
	switch after := e.versions(); {
	case code >= 400 && after != before:
		t.Errorf("%s, %s, as %s: refused (%d) but %d versions were written", route, target, p, code, after-before)
	case code < 300 && after == before:
		t.Errorf("%s, %s, as %s: answered %d but nothing was written", route, target, p, code)
	}
}

// refusedLeavesNothing runs a refused request and checks the store.
func (e *wenv) refusedLeavesNothing(what string, p *principal, run func() *httptest.ResponseRecorder, want ...int) {
	e.t.Helper()
	before := e.versions()
	w := run()
	if !slices.Contains(want, w.Code) {
		e.t.Errorf("%s as %s: status %d, want %v: %.300s", what, p, w.Code, want, w.Body.String())
	}
	if w.Code >= 400 {
		if after := e.versions(); after != before {
			e.t.Errorf("%s as %s was refused (%d) but the store changed: %d versions written", what, p, w.Code, after-before)
		}
	}
}

// checkSecondOpinion: a patient opens second opinions on its own record,
// a system client on a patient's behalf; other patients and providers
// (whatever they share) cannot pass a record on.
func (e *wenv) checkSecondOpinion() {
	for _, p := range e.ps {
		for _, pt := range []string{ptA, ptB} {
			recipient, cons := "Organization/orgA", e.consentA
			if pt == ptB {
				recipient, cons = "Organization/orgB", e.consentB
			}
			body := soParams(trimPatient(pt), []string{recipient}, []string{cons})
			want := []int{http.StatusOK}
			switch {
			case p.kind == kRefused, p.kind == kProvider, p.kind == kPatient && p.patient != pt:
				want = []int{http.StatusForbidden}
			}
			e.refusedLeavesNothing("$second-opinion on "+pt, p, func() *httptest.ResponseRecorder {
				return e.do(p, http.MethodPost, "/"+pt+"/$second-opinion", body)
			}, want...)
		}
	}
}

// checkPlantingImport: a patient importing into its own record a Bundle
// whose resource names another patient is refused (trust-spec: the same
// rule for $import), and nothing is written.
func (e *wenv) checkPlantingImport() {
	p := e.by["patient A"]
	obs := e.resourceFor("B's record", e.uid("plant"))
	b := bundleOf("collection", map[string]any{"fullUrl": "urn:uuid:5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0009", "resource": obs})
	e.refusedLeavesNothing("$import into A's record of an Observation about B", p, func() *httptest.ResponseRecorder {
		return e.do(p, http.MethodPost, "/"+ptA+"/$import", b, "Content-Type: application/fhir+json")
	}, http.StatusForbidden, http.StatusUnprocessableEntity)
}

// ---- Consents ----

func TestAuthzConsentWrites(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			e := newWriteEnv(t, k)
			for _, p := range e.ps {
				e.consentCases(p)
			}
		})
	}
}

// consentCases tries every Consent write as p. The rule: the patient the
// Consent names, or a custodian of that patient naming its organization
// (else 422); anonymous (auth off) anything; everyone else 403. An update,
// patch or delete also needs the current version to be the writer's: the
// patient's own, or for a custodian one that names its organization (the
// stricter reading of "the writer's to change").
func (e *wenv) consentCases(p *principal) {
	custodianOf := func(pt string) bool {
		return p.name == "city-hospital-ehr (custodian of A)" && (pt == ptA || pt == ptC)
	}
	own := func(pt string) bool { return p.kind == kPatient && p.patient == pt }
	const custOrg = "Organization/city-hospital"
	// the status a write of a Consent of pt (naming org) gets from p, the
	// current version (if any) being written by curOrg's writer
	status := func(pt, org string, current bool, curOrg string, ok int) []int {
		switch {
		case p.kind == kAnon:
			return []int{ok}
		case p.kind == kRefused:
			return []int{http.StatusForbidden}
		case own(pt):
			return []int{ok}
		case custodianOf(pt) && current && curOrg != custOrg && readings.custodianOwnConsents:
			return []int{http.StatusForbidden}
		case custodianOf(pt) && org != custOrg:
			return []int{http.StatusUnprocessableEntity}
		case custodianOf(pt):
			return []int{ok}
		}
		return []int{http.StatusForbidden}
	}
	selfActor := "Organization/orgC"
	if len(p.actors) > 0 {
		selfActor = p.actors[0] // a provider granting itself access
	}
	for _, pt := range []string{ptA, ptB, ptC} {
		for _, org := range []string{"", custOrg} {
			body := consentJSON(pt, selfActor, org, "")
			e.refusedLeavesNothing(fmt.Sprintf("POST Consent of %s naming %s (organization %q)", pt, selfActor, org), p, func() *httptest.ResponseRecorder {
				return e.do(p, http.MethodPost, "/Consent", body)
			}, status(pt, org, false, "", http.StatusCreated)...)
		}
	}
	// in transactions and batches
	for _, pt := range []string{ptA, ptB} {
		body := consentJSON(pt, selfActor, "", "")
		want := status(pt, "", false, "", http.StatusOK)
		e.refusedLeavesNothing("transaction POST Consent of "+pt+" naming "+selfActor, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/", bundleOf("transaction", map[string]any{"resource": body, "request": map[string]any{"method": "POST", "url": "Consent"}}))
		}, want...)
		before := e.versions()
		w := e.do(p, http.MethodPost, "/", bundleOf("batch", map[string]any{"resource": body, "request": map[string]any{"method": "POST", "url": "Consent"}}))
		code := w.Code
		if code == http.StatusOK {
			code = entryStatus(e.t, w)
		}
		if want := status(pt, "", false, "", http.StatusCreated); !slices.Contains(want, code) {
			e.t.Errorf("batch POST Consent of %s naming %s as %s: entry status %d, want %v", pt, selfActor, p, code, want)
		} else if code >= 400 && e.versions() != before {
			e.t.Errorf("batch POST Consent of %s as %s was refused but the store changed", pt, p)
		}
	}
	// conditional create: refused to everyone but the writers (a patient or
	// custodian may be refused conditional forms too)
	for _, pt := range []string{ptA, ptB} {
		body := consentJSON(pt, selfActor, "", "")
		ident := e.uid("cc")
		body["identifier"] = []any{map[string]any{"system": "urn:authzwrite", "value": ident}}
		want := status(pt, "", false, "", http.StatusCreated)
		if p.kind == kPatient && slices.Contains(want, http.StatusCreated) {
			want = append(want, http.StatusForbidden)
		}
		e.refusedLeavesNothing("conditional POST Consent of "+pt, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/Consent", body, "If-None-Exist: identifier=urn:authzwrite|"+ident)
		}, want...)
	}
	// changes of existing Consents: the patient's own (written by the
	// patient) and one the custodian recorded for A
	anon := e.by["anonymous"]
	for _, cur := range []struct {
		pt, org string
	}{{ptA, ""}, {ptB, ""}, {ptA, custOrg}} {
		mk := func() (string, map[string]any) {
			ident := e.uid("cur")
			body := consentJSON(cur.pt, "Organization/orgA", cur.org, ident)
			id := e.mustCreate(anon, "Consent", body)
			body["id"] = id
			if custodianOf(cur.pt) {
				// the custodian's new version names it: what is asked is
				// whether the current version is its to change
				body["organization"] = []any{jref(custOrg)}
			}
			return id, body
		}
		what := fmt.Sprintf("Consent of %s recorded by %s", cur.pt, map[string]string{"": "the patient", custOrg: "the custodian"}[cur.org])
		newOrg := cur.org // what the new version names
		if custodianOf(cur.pt) {
			newOrg = custOrg
		}
		id, body := mk()
		body["status"] = "inactive"
		e.refusedLeavesNothing("PUT (revoke) "+what, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPut, "/Consent/"+id, body)
		}, status(cur.pt, newOrg, true, cur.org, http.StatusOK)...)
		id, body = mk()
		body["provision"].(map[string]any)["actor"] = []any{map[string]any{"role": cc(coding{"http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"}), "reference": jref(selfActor)}}
		e.refusedLeavesNothing("PUT (re-grant to "+selfActor+") "+what, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPut, "/Consent/"+id, body)
		}, status(cur.pt, newOrg, true, cur.org, http.StatusOK)...)
		id, _ = mk()
		ops := `[{"op":"replace","path":"/provision/actor/0/reference/reference","value":"` + selfActor + `"}`
		if custodianOf(cur.pt) {
			ops += `,{"op":"add","path":"/organization","value":[{"reference":"` + custOrg + `"}]}`
		}
		ops += "]"
		e.refusedLeavesNothing("PATCH "+what, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPatch, "/Consent/"+id, ops, "Content-Type: application/json-patch+json")
		}, status(cur.pt, newOrg, true, cur.org, http.StatusOK)...)
		id, _ = mk()
		e.refusedLeavesNothing("DELETE "+what, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodDelete, "/Consent/"+id, nil)
		}, status(cur.pt, newOrg, true, cur.org, http.StatusNoContent)...)
		id, body = mk()
		e.refusedLeavesNothing("transaction PUT "+what, p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPost, "/", bundleOf("transaction", map[string]any{"resource": body, "request": map[string]any{"method": "PUT", "url": "Consent/" + id}}))
		}, status(cur.pt, newOrg, true, cur.org, http.StatusOK)...)
	}
	// moving B's Consent to A (the current version is not A's) and a
	// conditional update of a Consent
	{
		ident := e.uid("mv")
		body := consentJSON(ptB, "Organization/orgB", "", ident)
		id := e.mustCreate(anon, "Consent", body)
		moved := consentJSON(ptA, selfActor, "", ident)
		moved["id"] = id
		want := []int{http.StatusForbidden}
		if p.kind == kAnon {
			want = []int{http.StatusOK}
		}
		e.refusedLeavesNothing("PUT B's Consent rewritten as A's", p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPut, "/Consent/"+id, moved)
		}, want...)
		cond := consentJSON(ptB, selfActor, "", ident)
		want = status(ptB, "", true, "", http.StatusOK)
		if p.kind == kPatient && slices.Contains(want, http.StatusOK) {
			want = append(want, http.StatusForbidden)
		}
		e.refusedLeavesNothing("conditional PUT of B's Consent", p, func() *httptest.ResponseRecorder {
			return e.do(p, http.MethodPut, "/Consent?identifier=urn:authzwrite|"+ident, cond)
		}, want...)
	}
}

// ---- AuditEvents ----

func TestAuthzAuditEventWrites(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			e := newWriteEnv(t, k)
			for i, p := range e.ps {
				// an event in the trail, stored as the gateway stores them
				id := fmt.Sprintf("audit-test-%d", i)
				ev, err := fhir.Parse([]byte(`{"resourceType":"AuditEvent","id":"` + id + `","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"recorded":"2024-01-02T03:04:05Z","agent":[{"who":{"reference":"Practitioner/dr-b"},"requestor":true}],"source":{"observer":{"display":"fhirgate"}},"entity":[{"what":{"reference":"Patient/pt-0"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"}}]}`))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.g.store.Create(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
				body := string(ev.Raw)
				newEv := strings.Replace(body, `"id":"`+id+`",`, "", 1)
				want := []int{http.StatusMethodNotAllowed}
				if p.kind == kRefused {
					want = []int{http.StatusForbidden, http.StatusMethodNotAllowed}
				}
				for _, c := range []struct {
					what, method, path, body string
					hdr                      []string
				}{
					{"POST /AuditEvent", http.MethodPost, "/AuditEvent", newEv, nil},
					{"PUT /AuditEvent/[id]", http.MethodPut, "/AuditEvent/" + id, body, nil},
					{"PUT /AuditEvent/[new id]", http.MethodPut, "/AuditEvent/" + id + "-new", strings.Replace(body, id, id+"-new", 1), nil},
					{"PATCH /AuditEvent/[id]", http.MethodPatch, "/AuditEvent/" + id, `[{"op":"replace","path":"/recorded","value":"2020-01-01T00:00:00Z"}]`, []string{"Content-Type: application/json-patch+json"}},
					{"DELETE /AuditEvent/[id]", http.MethodDelete, "/AuditEvent/" + id, "", nil},
					{"POST /AuditEvent If-None-Exist", http.MethodPost, "/AuditEvent", newEv, []string{"If-None-Exist: _id=" + id + "-none"}},
					{"PUT /AuditEvent?_id (conditional update)", http.MethodPut, "/AuditEvent?_id=" + id, newEv, nil},
					{"DELETE /AuditEvent?_id (conditional delete)", http.MethodDelete, "/AuditEvent?_id=" + id, "", nil},
					{"transaction POST AuditEvent", http.MethodPost, "/", mustMarshal(bundleOf("transaction", map[string]any{"resource": json.RawMessage(newEv), "request": map[string]any{"method": "POST", "url": "AuditEvent"}})), nil},
					{"transaction DELETE AuditEvent", http.MethodPost, "/", mustMarshal(bundleOf("transaction", map[string]any{"request": map[string]any{"method": "DELETE", "url": "AuditEvent/" + id}})), nil},
				} {
					var b any
					if c.body != "" {
						b = c.body
					}
					e.refusedLeavesNothing(c.what, p, func() *httptest.ResponseRecorder { return e.do(p, c.method, c.path, b, c.hdr...) }, want...)
				}
				// in a batch: the entry answers 405
				before := e.versions()
				w := e.do(p, http.MethodPost, "/", bundleOf("batch", map[string]any{"resource": json.RawMessage(newEv), "request": map[string]any{"method": "POST", "url": "AuditEvent"}}))
				code := w.Code
				if code == http.StatusOK {
					code = entryStatus(t, w)
				}
				if !slices.Contains(want, code) {
					t.Errorf("batch POST AuditEvent as %s: %d, want %v", p, code, want)
				}
				if e.versions() != before {
					t.Errorf("batch POST AuditEvent as %s changed the store", p)
				}
				if cur, err := e.g.store.Read(context.Background(), "AuditEvent", id); err != nil || cur.VersionID != "1" {
					t.Errorf("as %s the audit event was changed or removed: %v", p, err)
				}
			}
		})
	}
}

func mustMarshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
