package server_test

// The gateway of the property-based authorization test and the loading of
// a generated world through its API.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
)

// authzClients is the auth.clients section of trust-spec.md's model: three
// provider organizations (one with a practitioner mapping), a plain system
// client, one with an explicit audit scope in its tokens, and a custodian.
const authzClients = `
auth:
  clients:
    - clientID: clinicA
      role: provider
      organization: Organization/orgA
    - clientID: clinicB
      role: provider
      organization: Organization/orgB
      practitioners: ["Practitioner/dr-b"]
    - clientID: clinicC
      role: provider
      organization: Organization/orgC
    - clientID: hospital-ehr
      role: system
    - clientID: auditor
      role: system
    - clientID: lab-feed
      role: system
    - clientID: city-hospital-ehr
      role: system
      organization: Organization/city-hospital
      custodian:
        patients: ["Patient/pt-0"]
        identifierSystems: ["` + mrnCity + `"]
`

// gateway is a secured in-process fhirgate (OIDC, consent, audit) and an
// unauthenticated one (--auth=none) on the same store.
type gateway struct {
	t       testing.TB
	store   storage.Store
	is      *authtest.Issuer
	verify  *auth.Verifier
	auditor *audit.Trail
	sec     *server.Server
	anon    *server.Server
	ids     atomic.Int64
}

func newGateway(t testing.TB, k storeKind) *gateway {
	t.Helper()
	is := authtest.NewIssuer(t)
	cfg, err := config.Parse("authzprop", []byte(authzClients))
	if err != nil {
		t.Fatalf("the auth.clients of trust-spec.md (custodian, practitioners) are refused: %v", err)
	}
	ac := cfg.Auth
	ac.Issuers = []config.Issuer{is.Config("fhirgate")}
	v, err := auth.New(ac, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := k.open(t)
	t.Cleanup(func() { st.Close() })
	g := &gateway{t: t, store: st, is: is, verify: v, auditor: openTrail(t, st)}
	g.start()
	return g
}

// start makes the servers, on the audit trail.
func (g *gateway) start() {
	aud := g.auditor
	newID := func() string { return fmt.Sprintf("g%06d", g.ids.Add(1)) }
	g.sec = server.New(server.Config{Store: g.store, Search: testRegistry, Validator: validate.Default(), Auth: g.verify, Auditor: aud, BaseURL: "http://fhir.test", NewID: newID})
	g.anon = server.New(server.Config{Store: g.store, Search: testRegistry, Validator: validate.Default(), Auditor: aud, BaseURL: "http://fhir.test", NewID: newID})
}

// freeze marks the end of loading the world and returns when: every
// event is durable before its answer, so the trail up to then is what the
// oracle knows. The queries' own accesses add events after it; the audit
// searches look at the trail up to it (date=le).
func (g *gateway) freeze() time.Time {
	at := time.Now().UTC().Truncate(time.Millisecond)
	time.Sleep(2 * time.Millisecond) // every later event is recorded after it
	return at
}

// do sends a request as p; headers are "Name: value" strings.
func (g *gateway) do(p *principal, method, path string, body []byte, headers ...string) *httptest.ResponseRecorder {
	var rd *strings.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	var req *http.Request
	if rd != nil {
		req = httptest.NewRequest(method, path, rd)
		req.Header.Set("Content-Type", "application/fhir+json")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	req.Header.Set("Accept", "application/fhir+json")
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	srv := g.sec
	if p.kind == kAnon {
		srv = g.anon
	} else if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	return w
}

// ---- principals ----

// cast is everyone who acts in the world: readers (the property test's
// principals) and the writers that load the world.
type cast struct {
	readers []*principal
	system  *principal // hospital-ehr, system/*.cruds
	custod  *principal // city-hospital-ehr, the custodian of pt-0 and of patients with a city MRN
	writers map[string]*principal
}

func (g *gateway) cast(patients []string) *cast {
	t, is := g.t, g.is
	c := &cast{writers: map[string]*principal{}}
	add := func(p *principal) *principal { c.readers = append(c.readers, p); return p }
	add(&principal{name: "anonymous", kind: kAnon})
	c.system = add(&principal{name: "hospital-ehr", kind: kSystem, clientID: "hospital-ehr", token: is.ClientToken(t, "hospital-ehr", "system/*.cruds")})
	add(&principal{name: "auditor", kind: kSystem, clientID: "auditor", auditScope: true, token: is.ClientToken(t, "auditor", "system/*.rs", "system/AuditEvent.rs")})
	add(&principal{name: "lab-feed (scoped system)", kind: kSystem, clientID: "lab-feed", token: is.ClientToken(t, "lab-feed", "system/Observation.rs?status=final", "system/Patient.rs", "system/Medication.rs"),
		scopes: map[string]func(*fact) bool{
			"Observation": func(f *fact) bool {
				return slices.ContainsFunc(f.tokens["status"], func(c coding) bool { return c.code == "final" })
			},
			"Patient":    func(*fact) bool { return true },
			"Medication": func(*fact) bool { return true },
		}})
	c.custod = add(&principal{name: "city-hospital-ehr", kind: kSystem, clientID: "city-hospital-ehr", token: is.ClientToken(t, "city-hospital-ehr", "system/*.cruds")})
	for _, pt := range patients {
		add(&principal{name: pt, kind: kPatient, patient: pt, clientID: "patient-app", fhirUser: pt, token: is.PatientToken(t, pt)})
		c.writers[pt] = &principal{name: pt + " (writer)", kind: kPatient, patient: pt, clientID: "patient-app", fhirUser: pt,
			token: is.PatientToken(t, pt, "openid", "fhirUser", "patient/*.cruds")}
	}
	prov := func(name, client, org, fhirUser string, scopes string, purpose string) {
		claims := authtest.Claims{"sub": name, "client_id": client, "scope": scopes}
		actors := []string{org}
		if fhirUser != "" {
			claims["fhirUser"] = fhirUser
			actors = append(actors, fhirUser)
		}
		var pu []coding
		if purpose != "" {
			claims["purpose_of_use"] = purpose
			pu = []coding{{sysActReason, purpose}}
		}
		add(&principal{name: name, kind: kProvider, actors: actors, purposes: pu, clientID: client, fhirUser: fhirUser, token: is.Token(t, claims)})
	}
	prov("clinicA", "clinicA", "Organization/orgA", "", "system/*.rs", "")
	prov("clinicA-research", "clinicA", "Organization/orgA", "", "system/*.rs", "HRESCH")
	prov("dr-a", "clinicA", "Organization/orgA", "Practitioner/dr-a", "openid fhirUser user/*.rs", "")
	prov("dr-b", "practice-portal", "Organization/orgB", "Practitioner/dr-b", "openid fhirUser user/*.rs", "")
	prov("clinicB", "clinicB", "Organization/orgB", "", "system/*.rs", "")
	prov("clinicC", "clinicC", "Organization/orgC", "", "system/*.rs", "")
	add(&principal{name: "dr-x (unmapped practitioner)", kind: kRefused, token: is.Token(t, authtest.Claims{"sub": "dr-x", "client_id": "practice-portal", "fhirUser": "Practitioner/dr-x", "scope": "openid fhirUser user/*.rs"})})
	add(&principal{name: "stranger (unknown client)", kind: kRefused, token: is.ClientToken(t, "stranger", "system/*.rs")})
	return c
}

// ---- loading ----

// loader writes the world through the API and records every version.
type loader struct {
	g *gateway
	w *world
	c *cast
}

func etagVersion(w *httptest.ResponseRecorder) string {
	e := w.Header().Get("ETag")
	return strings.TrimSuffix(strings.TrimPrefix(e, `W/"`), `"`)
}

// put writes f with PUT as p.
func (l *loader) put(p *principal, f *fact) {
	l.g.t.Helper()
	b, _ := json.Marshal(f.body)
	w := l.g.do(p, http.MethodPut, "/"+f.typ+"/"+f.id, b)
	if w.Code != http.StatusOK && w.Code != http.StatusCreated {
		l.g.t.Fatalf("load: PUT %s/%s as %s: %d %.400s", f.typ, f.id, p, w.Code, w.Body.String())
	}
	l.w.record(f, etagVersion(w))
}

// post creates f with POST as p; the server names it.
func (l *loader) post(p *principal, f *fact) {
	l.g.t.Helper()
	b, _ := json.Marshal(f.body)
	w := l.g.do(p, http.MethodPost, "/"+f.typ, b)
	if w.Code != http.StatusCreated {
		l.g.t.Fatalf("load: POST %s as %s: %d %.400s", f.typ, p, w.Code, w.Body.String())
	}
	id := jsonMap(l.g.t, w.Body.Bytes())["id"].(string)
	f.id, f.body["id"] = id, id
	l.w.record(f, etagVersion(w))
}

// patch applies a JSON Patch as p; f is the model of the result.
func (l *loader) patch(p *principal, f *fact, ops string) {
	l.g.t.Helper()
	w := l.g.do(p, http.MethodPatch, "/"+f.typ+"/"+f.id, []byte(ops), "Content-Type: application/json-patch+json")
	if w.Code != http.StatusOK {
		l.g.t.Fatalf("load: PATCH %s/%s as %s: %d %.400s", f.typ, f.id, p, w.Code, w.Body.String())
	}
	l.w.record(f, etagVersion(w))
}

// del deletes a resource as p and records the deletion's version.
func (l *loader) del(p *principal, ref string) {
	l.g.t.Helper()
	w := l.g.do(p, http.MethodDelete, "/"+ref, nil)
	if w.Code != http.StatusNoContent && w.Code != http.StatusOK {
		l.g.t.Fatalf("load: DELETE %s as %s: %d %.400s", ref, p, w.Code, w.Body.String())
	}
	typ, id, _ := strings.Cut(ref, "/")
	page, err := l.g.store.History(context.Background(), storage.HistoryQuery{Type: typ, ID: id, Count: 1})
	if err != nil || len(page.Entries) == 0 || page.Entries[0].Resource != nil {
		l.g.t.Fatalf("load: the deletion of %s is not the newest version: %v", ref, err)
	}
	l.w.recordDelete(ref, page.Entries[0].VersionID)
}

// upload posts a file with POST /Binary (X-Security-Context) as p.
func (l *loader) upload(p *principal, ctx string) *fact {
	l.g.t.Helper()
	hdr := []string{"Content-Type: application/pdf"}
	if ctx != "" {
		hdr = append(hdr, "X-Security-Context: "+ctx)
	}
	w := l.g.do(p, http.MethodPost, "/Binary", []byte("%PDF-1.4\n% a scan\n%%EOF\n"), hdr...)
	if w.Code != http.StatusCreated {
		l.g.t.Fatalf("load: upload with context %q as %s: %d %.400s", ctx, p, w.Code, w.Body.String())
	}
	loc := w.Header().Get("Location")
	_, rest, _ := strings.Cut(loc, "/Binary/")
	id, _, _ := strings.Cut(rest, "/")
	f := mkBinary(id, ctx)
	l.w.record(f, etagVersion(w))
	return f
}

// transaction writes facts with PUT entries in one transaction Bundle.
func (l *loader) transaction(p *principal, fs []*fact) {
	l.g.t.Helper()
	var entries []any
	for _, f := range fs {
		entries = append(entries, map[string]any{"resource": f.body, "request": map[string]any{"method": "PUT", "url": f.typ + "/" + f.id}})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	w := l.g.do(p, http.MethodPost, "/", b)
	if w.Code != http.StatusOK {
		l.g.t.Fatalf("load: transaction as %s: %d %.400s", p, w.Code, w.Body.String())
	}
	var resp struct {
		Entry []struct {
			Response struct {
				Etag string `json:"etag"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Entry) != len(fs) {
		l.g.t.Fatalf("load: transaction response: %v", err)
	}
	for i, f := range fs {
		l.w.record(f, strings.TrimSuffix(strings.TrimPrefix(resp.Entry[i].Response.Etag, `W/"`), `"`))
	}
}

// worldSize scales the generated world.
type worldSize struct{ patients, perPatient int }

// genWorld generates a world from the seed and loads it through the API.
func genWorld(t testing.TB, g *gateway, seed uint64, size worldSize) (*world, *cast) {
	w := &world{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.Now().UTC(), res: map[string]*resource{}}
	for i := range size.patients {
		w.patients = append(w.patients, fmt.Sprintf("Patient/pt-%d", i))
	}
	w.actorPool = []string{"Organization/orgA", "Organization/orgB", "Organization/orgC", "Practitioner/dr-a", "Practitioner/dr-b", "Practitioner/dr-x", "Organization/orgA", "Organization/orgB"}
	c := g.cast(w.patients)
	l := &loader{g: g, w: w, c: c}
	rng := w.rng
	sys := c.system

	// what no patient's compartment holds: shared by every record
	shared := []*fact{
		mkOrganization("orgA", "Alpha Clinic"), mkOrganization("orgB", "Beta Clinic"),
		mkOrganization("orgC", "Gamma Clinic"), mkOrganization("city-hospital", "City Hospital"),
		mkPractitioner("dr-a", "Adler", "Anna"), mkPractitioner("dr-b", "Brandt", "Ben"),
		mkPractitioner("dr-x", "Xu", "Xia"), mkPractitioner("pr-d", "Dorn", "Dana"),
		mkLocation("loc-1", "Ward North", "Organization/city-hospital"), mkLocation("loc-2", "Ward South", "Organization/orgA"),
		mkLocation("loc-3", "Lab East", "Organization/orgB"),
	}
	for i, code := range medCodes {
		shared = append(shared, mkMedication(fmt.Sprintf("med-%d", i+1), code))
	}
	l.transaction(sys, shared)
	locs, meds := []string{"Location/loc-1", "Location/loc-2", "Location/loc-3"}, []string{"Medication/med-1", "Medication/med-2", "Medication/med-3", "Medication/med-4"}

	// the patients
	for i, pt := range w.patients {
		s := patientSpec{id: trimPatient(pt), family: families[i%len(families)], given: givens[(i*3)%len(givens)]}
		if i%2 == 0 {
			s.mrns = append(s.mrns, coding{mrnCity, fmt.Sprintf("C%04d", i)})
		}
		if i != 2 {
			s.mrns = append(s.mrns, coding{mrnOther, fmt.Sprintf("O%04d", i)})
		}
		if chance(rng, 0.6) {
			s.gp = pick(rng, practs)
		}
		if chance(rng, 0.5) {
			s.org = pick(rng, orgs)
		}
		if chance(rng, 0.2) {
			s.labels = []coding{{sysConf, "R"}}
		}
		l.put(sys, mkPatient(s))
	}
	other := func(pt string) string {
		for {
			if o := pick(rng, w.patients); o != pt {
				return o
			}
		}
	}

	// each patient's record
	var obs, conds, encs, mrs, docs, ctxDocs []*fact
	for i, pt := range w.patients {
		n := size.perPatient
		for k := range n + rng.IntN(3) {
			s := obsSpec{id: fmt.Sprintf("obs-%d-%d", i, k), subject: pt, status: pick(rng, []string{"final", "final", "amended", "preliminary"}), labels: w.labels()}
			switch x := rng.Float64(); {
			case x < 0.5:
				s.performer = pick(rng, practs)
			case x < 0.62:
				s.performer = pt // self-reported
			case x < 0.72:
				s.performer = other(pt) // in two patients' compartments
			case x < 0.8:
				s.performer = pick(rng, orgs)
			}
			if !chance(rng, 0.06) {
				code := pick(rng, obsCodes)
				s.code = &code
			}
			switch x := rng.Float64(); {
			case x < 0.78:
				s.eff = w.day()
			case x < 0.9:
				s.issued = w.instant()
			}
			f := mkObservation(s)
			l.put(sys, f)
			obs = append(obs, f)
		}
		for k := range 1 + rng.IntN(3) {
			s := condSpec{id: fmt.Sprintf("cond-%d-%d", i, k), subject: pt, code: pick(rng, condCodes), labels: w.labels()}
			switch x := rng.Float64(); {
			case x < 0.55:
				s.asserter = pick(rng, practs)
			case x < 0.75:
				s.asserter = pt
			case x < 0.82:
				s.asserter = other(pt)
			}
			if chance(rng, 0.7) {
				s.onset = w.day()
			}
			if chance(rng, 0.5) {
				s.recorded = w.day()
			}
			f := mkCondition(s)
			l.put(sys, f)
			conds = append(conds, f)
		}
		var batch []*fact
		for k := range 1 + rng.IntN(2) {
			a, b := w.day(), w.day()
			if b < a {
				a, b = b, a
			}
			s := encSpec{id: fmt.Sprintf("enc-%d-%d", i, k), subject: pt, start: a, end: b, labels: w.labels()}
			if chance(rng, 0.8) {
				s.location = pick(rng, locs)
			}
			if chance(rng, 0.6) {
				s.provider = pick(rng, orgs)
			}
			f := mkEncounter(s)
			batch = append(batch, f)
			encs = append(encs, f)
		}
		l.transaction(sys, batch)
		for k := range 1 + rng.IntN(2) {
			s := mrSpec{id: fmt.Sprintf("mr-%d-%d", i, k), subject: pt, medication: pick(rng, meds), status: pick(rng, []string{"active", "stopped"}), authored: w.day(), labels: w.labels()}
			switch x := rng.Float64(); {
			case x < 0.7:
				s.requester = pick(rng, practs)
			case x < 0.8:
				s.requester = other(pt) // not a compartment link
			}
			f := mkMedicationRequest(s)
			l.put(sys, f)
			mrs = append(mrs, f)
		}
		if chance(rng, 0.8) {
			s := docSpec{id: fmt.Sprintf("doc-%d", i), subject: pt, typ: pick(rng, docTypes), labels: w.labels()}
			if chance(rng, 0.7) {
				s.start = w.day()
				s.end = s.start
			} else {
				s.date = w.instant()
			}
			if chance(rng, 0.3) {
				s.author = pt
			} else if chance(rng, 0.7) {
				s.author = pick(rng, practs)
			}
			f := mkDocumentReference(s)
			l.put(sys, f)
			docs = append(docs, f)
			// its file: uploaded by the patient (naming itself) or by the
			// hospital (naming the DocumentReference)
			if chance(rng, 0.5) {
				l.upload(c.writers[pt], pt)
			} else {
				l.upload(sys, "DocumentReference/"+f.id)
				ctxDocs = append(ctxDocs, f)
			}
		}
		if chance(rng, 0.5) {
			l.upload(c.writers[pt], pt)
		}
	}
	l.upload(sys, "") // a file of no one: system clients only

	clinical := func() *fact {
		all := [][]*fact{obs, conds, encs, mrs, docs}
		for {
			if xs := pick(rng, all); len(xs) > 0 {
				return pick(rng, xs)
			}
		}
	}
	of := func(pt string) *fact {
		for {
			if f := clinical(); slices.Contains(f.comp, pt) {
				return f
			}
		}
	}

	// Provenance: targets in one record, in several, the Patient itself, a
	// Medication, something deleted later, something that never was
	doomed := pick(rng, obs)
	var provs []*fact
	mkProv := func(targets ...string) {
		f := mkProvenance(fmt.Sprintf("prov-%d", len(provs)), targets, pick(rng, append(slices.Clone(orgs), practs...)), w.instant())
		l.put(sys, f)
		provs = append(provs, f)
	}
	for range 2 + size.patients/2 {
		mkProv(clinical().ref())
	}
	for range 2 {
		a := pick(rng, w.patients)
		mkProv(of(a).ref(), of(other(a)).ref())
	}
	mkProv(pick(rng, w.patients))
	mkProv(pick(rng, meds))
	mkProv(pick(rng, meds), clinical().ref())
	mkProv(doomed.ref())
	mkProv("Observation/ghost")

	// Groups
	l.put(sys, mkGroup("grp-0", someOf(rng, w.patients, 3)))
	l.put(sys, mkGroup("grp-1", []string{pick(rng, w.patients)}))

	// stored Bundles: collections mixing records or of one, documents of
	// one patient (sometimes with an entry of another)
	copyOf := func(f *fact, id string) *fact {
		e := f.clone()
		e.id, e.body["id"] = id, id
		delete(e.body, "meta")
		e.setLabels(f.labels)
		if e.typ == "Patient" {
			e.comp = []string{e.ref()} // a copy is a Patient of its own
		}
		return e
	}
	a := pick(rng, w.patients)
	b := other(a)
	l.put(sys, mkBundle("bdl-mixed", "collection", []*fact{copyOf(of(a), "e1"), copyOf(of(b), "e2"), copyOf(w.cur(pick(rng, meds)), "e3")}))
	l.put(sys, mkBundle("bdl-one", "collection", []*fact{copyOf(of(a), "e1"), copyOf(of(a), "e2")}))
	l.put(sys, mkBundle("bdl-pat", "collection", []*fact{copyOf(w.cur(b), "e1")}))
	for k := range 2 {
		pt := pick(rng, w.patients)
		entries := []*fact{mkComposition("comp", pt, pick(rng, practs), w.day()), copyOf(of(pt), "d1"), copyOf(of(pt), "d2")}
		if k == 1 {
			entries = append(entries, copyOf(of(other(pt)), "d3"))
		}
		l.put(sys, mkBundle(fmt.Sprintf("bdl-doc-%d", k), "document", entries))
	}

	// Consents: the patients write theirs, the custodian some for the
	// patients it acts for
	var consents []*fact
	for _, pt := range w.patients {
		for range 1 + rng.IntN(3) {
			status := "active"
			if chance(rng, 0.1) {
				status = pick(rng, []string{"inactive", "draft"})
			}
			dt := ""
			if chance(rng, 0.7) {
				dt = w.now.AddDate(0, 0, -rng.IntN(600)).Format(time.DateOnly)
			}
			f := mkConsent("", pt, status, w.genProvision(0), "", dt)
			l.post(c.writers[pt], f)
			consents = append(consents, f)
		}
	}
	for _, pt := range []string{"Patient/pt-0", "Patient/pt-2"} {
		if slices.Contains(w.patients, pt) && chance(rng, 0.7) {
			f := mkConsent("", pt, "active", w.genProvision(0), "Organization/city-hospital", w.now.Format(time.DateOnly))
			l.post(c.custod, f)
			consents = append(consents, f)
		}
	}

	// new versions: Observations amended (labels, dates), Conditions
	// patched, a MedicationRequest moved to another record, a Patient renamed
	for _, f := range someOf(rng, obs, 5) {
		v := f.clone()
		v.body["status"] = "amended"
		v.tokens["status"] = []coding{{"", "amended"}}
		if chance(rng, 0.5) {
			v.setLabels(w.labels())
			if len(v.labels) == 0 {
				delete(v.body, "meta")
			}
		}
		if chance(rng, 0.4) && v.period != nil && v.body["effectiveDateTime"] != nil {
			d := w.day()
			v.body["effectiveDateTime"] = d
			iv := dayIval(d)
			v.dates["date"] = []ival{iv}
			v.period = &iv
		}
		l.put(sys, v)
	}
	for _, f := range someOf(rng, conds, 2) {
		v := f.clone()
		code := pick(rng, condCodes)
		v.body["code"] = cc(code)
		v.tokens["code"] = []coding{code}
		v.codes = []coding{code}
		ops, _ := json.Marshal([]any{map[string]any{"op": "replace", "path": "/code", "value": cc(code)}})
		l.patch(sys, v, string(ops))
	}
	if len(mrs) > 0 {
		f := pick(rng, mrs)
		v := f.clone()
		to := other(f.refs["subject"][0])
		v.body["subject"] = jref(to)
		v.refs["subject"], v.refs["patient"] = []string{to}, []string{to}
		v.comp = []string{to}
		l.put(sys, v)
	}
	{
		pt := w.get(pick(rng, w.patients)).current()
		v := pt.clone()
		v.body["name"] = []any{map[string]any{"family": "Renamed", "given": []any{"Rita"}}}
		v.strs["name"], v.strs["family"] = []string{"Renamed", "Rita"}, []string{"Renamed"}
		l.put(sys, v)
	}

	// deletions: the doomed Observation (a Provenance target) and an Encounter
	l.del(sys, doomed.ref())
	if e := pick(rng, encs); e.ref() != doomed.ref() {
		l.del(sys, e.ref())
	}
	if len(ctxDocs) > 0 && chance(rng, 0.5) {
		l.del(sys, pick(rng, ctxDocs).ref()) // its file's security context is gone
	}

	// revocations, an amended Consent and a withdrawn one
	for _, f := range consents {
		cur := w.cur(f.ref())
		if cur == nil || cur.consent.status != "active" || !chance(rng, 0.2) {
			continue
		}
		v := cur.clone()
		v.body["status"] = "inactive"
		v.tokens["status"] = []coding{{"", "inactive"}}
		cf := *cur.consent
		cf.status = "inactive"
		v.consent = &cf
		writer := c.writers[cf.patient]
		if cur.refs["organization"] != nil {
			writer = c.custod
		}
		l.put(writer, v)
	}
	if f := pick(rng, consents); w.cur(f.ref()) != nil && f.refs["organization"] == nil {
		v := w.cur(f.ref()).clone()
		cf := *v.consent
		root := *cf.root
		root.children = append(slices.Clone(root.children), w.genProvision(1))
		cf.root = &root
		v.consent = &cf
		v.body["provision"] = root.json()
		l.put(c.writers[cf.patient], v)
	}
	if f := pick(rng, consents); w.cur(f.ref()) != nil && f.refs["organization"] == nil {
		l.del(c.writers[f.consent.patient], f.ref())
	}

	// accesses, so that the audit trail holds events of everyone
	all := w.order
	for _, p := range c.readers {
		if p.kind == kAnon {
			continue
		}
		for range 3 {
			r := pick(rng, all)
			l.g.do(p, http.MethodGet, "/"+r.ref(), nil)
		}
		l.g.do(p, http.MethodGet, "/Observation?patient="+url.QueryEscape(pick(rng, w.patients)), nil)
		l.g.do(p, http.MethodGet, "/"+pick(rng, w.patients)+"/$everything", nil)
	}
	l.g.do(&principal{kind: kSystem, token: "not-a-token"}, http.MethodGet, "/Patient", nil)
	w.frozen = g.freeze()
	return w, c
}
