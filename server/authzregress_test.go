package server_test

// Regression tests for the attack classes of issue 14 ("What was found"),
// one explicit test each, on a small world built for the attack. The
// property test (TestAuthzProperty) covers the same classes with generated
// cases; these name them so that a regression says which one it is:
//
//  1. self-granted Consent (provider, unmapped practitioner login) →
//     TestAttackSelfGrantedConsent
//  2. planting data in another patient's record → TestAttackPlanting
//  3. search oracles and side doors:
//     _has on types outside the compartment → TestAttackHasProbing
//     unconsented $everything → TestAttackUnconsentedEverything
//     non-document Bundles, Provenance of others' records (the gateway's
//     own de-duplication Provenances) → TestAttackProvenanceAndBundles
//     _include/_revinclude/:iterate through withheld resources →
//     TestAttackIncludeThroughWithheld
//     history totals, paging next links over withheld matches →
//     TestAttackCountsAndPaging
//     AuditEvents of others (guessable ids) → TestAttackAuditEventsOfOthers
//     a stored document whose Composition is withheld → TestAttackDocumentComposition
//  4. imports: $import unaudited, wrong-patient C-CDA / HL7 v2 filing
//     ($import and MLLP) → TestAttackImportAudited, TestAttackWrongPatientImport,
//     TestAttackWrongPatientMLLP; the demographics check answering callers
//     who may not write the record → TestAttackImportDemographicsOracle
//
// The write side (every route × principal × record) is TestAuthzWriteMatrix
// and TestAuthzConsentWrites.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// attackWorld: A (Patient/pt-0) shares everything with orgA (clinicA); B
// (Patient/pt-1) shares with nobody. B's record alone points at a
// Medication, a Location, a Practitioner and an Organization; a Provenance
// targets B's Observation, another A's and B's; a stored collection Bundle
// holds B's Observation; a Group holds both.
type attackWorld struct {
	g   *gateway
	c   *cast
	by  map[string]*principal
	obs map[string]string // "A", "B" -> Observation id
}

func newAttackWorld(t *testing.T, k storeKind) *attackWorld {
	g := newGateway(t, k)
	w := &world{now: time.Now().UTC(), res: map[string]*resource{}}
	c := g.cast([]string{ptA, ptB})
	a := &attackWorld{g: g, c: c, by: map[string]*principal{}, obs: map[string]string{}}
	for _, p := range c.readers {
		a.by[p.name] = p
	}
	l := &loader{g: g, w: w, c: c}
	sys := c.system
	l.transaction(sys, []*fact{
		mkOrganization("orgA", "Alpha Clinic"), mkOrganization("org-b-only", "Hidden Hospice"),
		mkPractitioner("dr-a", "Adler", "Anna"), mkPractitioner("dr-z", "Zed", "Zoe"),
		mkLocation("loc-b", "Secret Ward", "Organization/org-b-only"), mkMedication("med-a", medCodes[0]), mkMedication("med-b", medCodes[1]),
	})
	l.put(sys, mkPatient(patientSpec{id: "pt-0", family: "Alvarez", given: "Amy", mrns: []coding{{mrnOther, "O1"}}}))
	l.put(sys, mkPatient(patientSpec{id: "pt-1", family: "Bjork", given: "Boris", mrns: []coding{{mrnOther, "O2"}}}))
	code := obsCodes[0]
	l.put(sys, mkObservation(obsSpec{id: "obs-a", subject: ptA, performer: "Practitioner/dr-a", code: &code, status: "final", eff: "2020-01-02"}))
	l.put(sys, mkObservation(obsSpec{id: "obs-b", subject: ptB, performer: "Practitioner/dr-z", code: &code, status: "final", eff: "2020-01-03"}))
	a.obs["A"], a.obs["B"] = "obs-a", "obs-b"
	for i := range 3 { // more of B's, for paging
		l.put(sys, mkObservation(obsSpec{id: "obs-b" + string(rune('1'+i)), subject: ptB, code: &code, status: "final", eff: "2020-02-0" + string(rune('1'+i))}))
	}
	l.put(sys, mkMedicationRequest(mrSpec{id: "mr-a", subject: ptA, medication: "Medication/med-a", status: "active", authored: "2020-01-01"}))
	l.put(sys, mkMedicationRequest(mrSpec{id: "mr-b", subject: ptB, medication: "Medication/med-b", status: "active", authored: "2020-01-01"}))
	l.put(sys, mkEncounter(encSpec{id: "enc-b", subject: ptB, start: "2020-01-01", end: "2020-01-02", location: "Location/loc-b", provider: "Organization/org-b-only"}))
	l.put(sys, mkProvenance("prov-b", []string{"Observation/obs-b"}, "Organization/org-b-only", "2020-01-04T00:00:00Z"))
	l.put(sys, mkProvenance("prov-ab", []string{"Observation/obs-a", "Observation/obs-b"}, "Organization/orgA", "2020-01-04T00:00:00Z"))
	l.put(sys, mkBundle("bdl-b", "collection", []*fact{w.cur("Observation/obs-b").clone()}))
	l.put(sys, mkGroup("grp-ab", []string{ptA, ptB}))
	f := mkConsent("", ptA, "active", &prov{actors: []string{"Organization/orgA"}}, "", "")
	l.post(c.writers[ptA], f)
	// accesses and refusals, for the audit trail
	g.do(&principal{kind: kSystem, token: "not-a-token"}, http.MethodGet, "/Patient", nil)
	g.do(a.by["clinicC"], http.MethodGet, "/Observation/obs-b", nil)
	g.do(a.by["clinicA"], http.MethodGet, "/Observation/obs-a", nil)
	g.do(a.by[ptB], http.MethodGet, "/Observation/obs-b", nil)
	g.freeze()
	return a
}

func (a *attackWorld) get(t *testing.T, who, path string) *httptest.ResponseRecorder {
	t.Helper()
	return a.g.do(a.by[who], http.MethodGet, path, nil)
}

// ids lists Type/id of a searchset's entries (all pages).
func (a *attackWorld) ids(t *testing.T, who, path string) []string {
	t.Helper()
	var out []string
	for range 100 {
		w := a.get(t, who, path)
		if w.Code != http.StatusOK {
			t.Fatalf("%s as %s: %d %.300s", path, who, w.Code, w.Body.String())
		}
		pg, err := parsePage(w.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range append(append(pg.matches, pg.includes...), pg.history...) {
			out = append(out, k.typ+"/"+k.id)
		}
		for _, ev := range append(pg.audit, pg.historyAud...) {
			out = append(out, "AuditEvent/"+ev.id)
		}
		if pg.next == "" {
			return out
		}
		path = strings.TrimPrefix(pg.next, "http://fhir.test")
	}
	t.Fatalf("%s: too many pages", path)
	return nil
}

func mustNotContain(t *testing.T, what string, got []string, forbidden ...string) {
	t.Helper()
	for _, f := range forbidden {
		if slices.Contains(got, f) {
			t.Errorf("%s: %s was released (got %v)", what, f, got)
		}
	}
}

// TestAttackSelfGrantedConsent (class 1): a provider cannot grant itself
// access to a record, directly, in a transaction or as a practitioner
// login of an unregistered client; the record stays closed to it.
func TestAttackSelfGrantedConsent(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		grant := mkConsent("", ptB, "active", &prov{actors: []string{"Organization/orgC", "Practitioner/dr-x"}}, "", "")
		body, _ := json.Marshal(grant.body)
		tx, _ := json.Marshal(bundleOf("transaction", map[string]any{"resource": grant.body, "request": map[string]any{"method": "POST", "url": "Consent"}}))
		is := a.g.is
		writers := map[string]*principal{
			"clinicC": {name: "clinicC", kind: kProvider, token: is.ClientToken(t, "clinicC", "system/*.cruds")},
			"dr-x (unmapped practitioner)": {name: "dr-x", kind: kRefused, token: is.Token(t, authtest.Claims{"sub": "dr-x", "client_id": "practice-portal",
				"fhirUser": "Practitioner/dr-x", "scope": "openid fhirUser user/*.cruds"})},
		}
		for _, who := range []string{"clinicC", "dr-x (unmapped practitioner)"} {
			p := writers[who]
			if w := a.g.do(p, http.MethodPost, "/Consent", body); w.Code != http.StatusForbidden {
				t.Errorf("%s POST Consent naming itself: %d, want 403", who, w.Code)
			}
			if w := a.g.do(p, http.MethodPost, "/", tx); w.Code != http.StatusForbidden {
				t.Errorf("%s transaction POST Consent naming itself: %d, want 403", who, w.Code)
			}
			for _, path := range []string{"/Observation/obs-b", "/Patient/pt-1", "/Patient/pt-1/$everything"} {
				if w := a.g.do(p, http.MethodGet, path, nil); w.Code != http.StatusForbidden {
					t.Errorf("%s GET %s after its self-grant: %d, want 403", who, path, w.Code)
				}
			}
		}
		// nothing was granted: B has no Consent
		if ids := a.ids(t, "anonymous", "/Consent?patient=Patient/pt-1"); len(ids) != 0 {
			t.Errorf("B's Consents after the attempts: %v", ids)
		}
	})
}

// TestAttackPlanting (class 2): a patient cannot write a resource about
// another patient, even naming itself as performer.
func TestAttackPlanting(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		code := obsCodes[2]
		f := mkObservation(obsSpec{subject: ptB, performer: ptA, code: &code, status: "final", eff: "2021-01-01"})
		body, _ := json.Marshal(f.body)
		writer := a.c.writers[ptA]
		before := a.ids(t, "anonymous", "/Observation?subject=Patient/pt-1")
		if w := a.g.do(writer, http.MethodPost, "/Observation", body); w.Code != http.StatusForbidden {
			t.Errorf("patient A planting an Observation in B's record: %d, want 403", w.Code)
		}
		tx, _ := json.Marshal(bundleOf("transaction", map[string]any{"resource": f.body, "request": map[string]any{"method": "POST", "url": "Observation"}}))
		if w := a.g.do(writer, http.MethodPost, "/", tx); w.Code != http.StatusForbidden {
			t.Errorf("patient A planting through a transaction: %d, want 403", w.Code)
		}
		if after := a.ids(t, "anonymous", "/Observation?subject=Patient/pt-1"); len(after) != len(before) {
			t.Errorf("B's record changed: %v -> %v", before, after)
		}
	})
}

// TestAttackHasProbing (class 3): _has on Medication, Location,
// Practitioner and Organization evaluates its inner criteria over what
// the caller may see: B's record cannot be probed through them.
func TestAttackHasProbing(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		probes := map[string]string{
			"/Medication?_has:MedicationRequest:medication:subject=Patient/pt-1": "Medication/med-b",
			"/Medication?_has:MedicationRequest:medication:status=active":        "Medication/med-b",
			"/Location?_has:Encounter:location:patient=Patient/pt-1":             "Location/loc-b",
			"/Practitioner?_has:Observation:performer:patient=Patient/pt-1":      "Practitioner/dr-z",
			"/Practitioner?_has:Observation:performer:code=" + obsCodes[0].code:  "Practitioner/dr-z",
			"/Organization?_has:Encounter:service-provider:patient=Patient/pt-1": "Organization/org-b-only",
			"/Patient?_has:Observation:patient:code=" + obsCodes[0].code:         "Patient/pt-1",
			"/Observation?subject:Patient.name=Bjork":                            "Observation/obs-b",
			"/Observation?patient.identifier=" + url.QueryEscape(mrnOther+"|O2"): "Observation/obs-b",
		}
		for _, who := range []string{ptA, "clinicA", "clinicC"} {
			for path, hidden := range probes {
				mustNotContain(t, who+" "+path, a.ids(t, who, path), hidden)
				w := a.get(t, who, path+"&_summary=count")
				if pg, err := parsePage(w.Body.Bytes()); err == nil && pg.total != nil && *pg.total > 0 && strings.Contains(path, "pt-1") {
					t.Errorf("%s %s&_summary=count: total %d", who, path, *pg.total)
				}
			}
		}
		// the probe answers what the caller may see: A's own medication
		if got := a.ids(t, ptA, "/Medication?_has:MedicationRequest:medication:subject=Patient/pt-0"); !slices.Contains(got, "Medication/med-a") {
			t.Errorf("patient A's own medication is not found through _has: %v", got)
		}
	})
}

// TestAttackUnconsentedEverything (class 3): $everything of a record that
// does not share with the caller is refused, and a consented one carries
// only what its released resources point at.
func TestAttackUnconsentedEverything(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		for _, who := range []string{"clinicA", "clinicC", ptA} {
			w := a.get(t, who, "/Patient/pt-1/$everything")
			if w.Code != http.StatusForbidden {
				t.Errorf("%s: B's $everything answered %d, want 403: %.300s", who, w.Code, w.Body.String())
			}
		}
		got := a.ids(t, "clinicA", "/Patient/pt-0/$everything")
		mustNotContain(t, "clinicA A's $everything", got, "Medication/med-b", "Location/loc-b", "Practitioner/dr-z", "Organization/org-b-only", "Observation/obs-b", "Patient/pt-1")
		if !slices.Contains(got, "Medication/med-a") || !slices.Contains(got, "Observation/obs-a") {
			t.Errorf("clinicA's $everything of A misses A's data: %v", got)
		}
	})
}

// TestAttackProvenanceAndBundles (class 3): Provenance of another's
// record, stored non-document Bundles of it, and the gateway's own
// de-duplication Provenances are released only with that record.
func TestAttackProvenanceAndBundles(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		// the same Condition imported into B's record from two sources: the
		// consolidator writes its own Provenance
		sys := a.c.system
		cond := mkCondition(condSpec{subject: "Patient/src", code: condCodes[1], onset: "2019-01-01"})
		for i, src := range []string{"5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0a01", "5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0a02"} {
			b, _ := json.Marshal(bundleOf("collection",
				map[string]any{"fullUrl": "urn:uuid:" + src, "resource": map[string]any{"resourceType": "Patient", "id": "src", "identifier": []any{map[string]any{"system": "urn:src" + string(rune('0'+i)), "value": "1"}}, "name": []any{map[string]any{"family": "Bjork", "given": []any{"Boris"}}}}},
				map[string]any{"fullUrl": "urn:uuid:" + src[:len(src)-1] + "f", "resource": cond.body}))
			if w := a.g.do(sys, http.MethodPost, "/Patient/pt-1/$import", b, "Content-Type: application/fhir+json"); w.Code != http.StatusOK {
				t.Fatalf("import into B: %d %.300s", w.Code, w.Body.String())
			}
		}
		// which Provenances touch B's record (as the system sees them)
		var ofB []string
		bRecord := a.ids(t, "anonymous", "/Patient/pt-1/$everything")
		for _, ref := range a.ids(t, "anonymous", "/Provenance?_count=500") {
			w := a.get(t, "anonymous", "/"+ref)
			var pv struct {
				Target []struct{ Reference string } `json:"target"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &pv)
			for _, tg := range pv.Target {
				if slices.Contains(bRecord, tg.Reference) {
					ofB = append(ofB, ref)
					break
				}
			}
		}
		if len(ofB) < 3 {
			t.Fatalf("the world has too few Provenances of B's record: %v", ofB)
		}
		for _, who := range []string{ptA, "clinicA", "clinicC"} {
			mustNotContain(t, who+" Provenance search", a.ids(t, who, "/Provenance?_count=500"), ofB...)
			for _, ref := range append(slices.Clone(ofB), "Bundle/bdl-b") {
				if w := a.get(t, who, "/"+ref); w.Code != http.StatusForbidden {
					t.Errorf("%s GET %s: %d, want 403", who, ref, w.Code)
				}
			}
			mustNotContain(t, who+" Bundle search", a.ids(t, who, "/Bundle"), "Bundle/bdl-b")
		}
	})
}

// TestAttackIncludeThroughWithheld (class 3): includes start from released
// matches only, and every included resource is decided.
func TestAttackIncludeThroughWithheld(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		cases := map[string][]string{
			"/Practitioner?_id=dr-z&_revinclude=Observation:performer":                                                  {"Observation/obs-b"},
			"/Medication?_id=med-b&_revinclude=MedicationRequest:medication&_include:iterate=MedicationRequest:subject": {"MedicationRequest/mr-b", "Patient/pt-1"},
			"/Observation?_id=obs-a&_revinclude=Provenance:target&_include:iterate=Provenance:target":                   {"Provenance/prov-ab", "Observation/obs-b"},
			"/MedicationRequest?patient=Patient/pt-1&_include=MedicationRequest:medication":                             {"Medication/med-b", "MedicationRequest/mr-b"},
			"/Encounter?patient=Patient/pt-1&_include=Encounter:location&_include:iterate=Location:organization":        {"Location/loc-b", "Organization/org-b-only", "Encounter/enc-b"},
			"/Group?_id=grp-ab&_include=Group:member&_revinclude:iterate=Observation:subject":                           {"Patient/pt-1", "Observation/obs-b"},
			"/Patient?_id=pt-0&_revinclude=Group:member&_include:iterate=Group:member":                                  {"Patient/pt-1"},
			"/Organization?_id=org-b-only&_revinclude=Encounter:service-provider&_include:iterate=Encounter:patient":    {"Encounter/enc-b", "Patient/pt-1"},
			"/Location?_id=loc-b&_revinclude=Encounter:location":                                                        {"Encounter/enc-b"},
			"/Observation?patient=Patient/pt-0&_include=Observation:performer&_revinclude=Provenance:target&_count=1":   {"Provenance/prov-ab"},
		}
		for _, who := range []string{ptA, "clinicA", "clinicC"} {
			for path, hidden := range cases {
				mustNotContain(t, who+" "+path, a.ids(t, who, path), hidden...)
			}
		}
	})
}

// TestAttackCountsAndPaging (class 3): totals of searches and histories
// never count what is withheld, and paging over withheld matches yields
// no empty page with a next link.
func TestAttackCountsAndPaging(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		for _, who := range []string{"clinicC", ptA} {
			for _, path := range []string{"/Observation?_count=1", "/Observation?subject=Patient/pt-1&_count=1", "/Observation/_history?_count=1", "/_history?_count=1", "/Observation?_summary=count", "/Observation?_total=accurate&_count=1"} {
				w := a.get(t, who, path)
				if w.Code == http.StatusForbidden && path == "/_history?_count=1" && who == ptA {
					continue // whole-system interactions are not for patients
				}
				if w.Code != http.StatusOK {
					t.Errorf("%s %s: %d", who, path, w.Code)
					continue
				}
				pg, err := parsePage(w.Body.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				// what the caller receives in full is what the total may count
				released := len(a.ids(t, who, strings.Replace(strings.Replace(path, "_count=1", "_count=1000", 1), "_summary=count", "_count=1000", 1)))
				if pg.total != nil && *pg.total != released {
					t.Errorf("%s %s: total %d, but %d entries are released", who, path, *pg.total, released)
				}
				if pg.next != "" && len(pg.matches)+len(pg.history)+len(pg.audit)+len(pg.historyAud) == 0 {
					t.Errorf("%s %s: an empty page with a next link", who, path)
				}
			}
		}
		// B's four Observations are all withheld from clinicC: one page, no next
		w := a.get(t, "clinicC", "/Observation?subject=Patient/pt-1&_count=1")
		if pg, _ := parsePage(w.Body.Bytes()); pg == nil || pg.next != "" || len(pg.matches) != 0 {
			t.Errorf("clinicC paging B's Observations: %.300s", w.Body.String())
		}
	})
}

// TestAttackAuditEventsOfOthers (class 3): events that name no patient
// (failed logins, refusals) and other parties' events are not read by
// guessing their ids.
func TestAttackAuditEventsOfOthers(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		a := newAttackWorld(t, k)
		events := auditSnapshot(t, a.g)
		if len(events) < 4 {
			t.Fatalf("only %d audit events", len(events))
		}
		for id, ev := range events {
			for _, p := range a.c.readers {
				w := a.get(t, p.name, "/AuditEvent/"+id)
				allowed := auditAllowed(p, ev)
				if (w.Code == http.StatusOK) && !allowed {
					t.Errorf("%s read AuditEvent/%s (patients %v, agents %v, clients %v)", p, id, ev.patients, ev.agents, ev.clients)
				}
				if auditRequired(p, ev) && w.Code != http.StatusOK {
					t.Errorf("%s cannot read its AuditEvent/%s: %d", p, id, w.Code)
				}
			}
		}
	})
}

// TestAttackImportAudited (class 4): an $import is an access: it writes an
// AuditEvent about the patient.
func TestAttackImportAudited(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		g := newGateway(t, k)
		c := g.cast([]string{ptA})
		l := &loader{g: g, w: &world{res: map[string]*resource{}}, c: c}
		l.put(c.system, mkPatient(patientSpec{id: "pt-0", family: "Alvarez", given: "Amy"}))
		before := len(auditSnapshot(t, g))
		code := obsCodes[0]
		obs := mkObservation(obsSpec{subject: "Patient/src", code: &code, status: "final", eff: "2020-01-01"})
		b, _ := json.Marshal(bundleOf("collection",
			map[string]any{"fullUrl": "urn:uuid:5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0b01", "resource": map[string]any{"resourceType": "Patient", "id": "src", "name": []any{map[string]any{"family": "Alvarez", "given": []any{"Amy"}}}}},
			map[string]any{"fullUrl": "urn:uuid:5d1c7c7e-1f7e-4f3b-9c49-1a0c9b0e0b02", "resource": obs.body}))
		for _, p := range []*principal{c.system, c.writers[ptA]} {
			if w := g.do(p, http.MethodPost, "/Patient/pt-0/$import", b, "Content-Type: application/fhir+json"); w.Code != http.StatusOK {
				t.Fatalf("import as %s: %d %.300s", p, w.Code, w.Body.String())
			}
			if w := g.do(p, http.MethodPost, "/Patient/pt-0/$import", []byte("%PDF-1.4\n%%EOF\n"), "Content-Type: application/pdf"); w.Code != http.StatusOK {
				t.Fatalf("PDF import as %s: %d %.300s", p, w.Code, w.Body.String())
			}
		}
		g.freeze()
		var imports int
		for _, ev := range auditSnapshot(t, g) {
			if slices.Contains(ev.patients, ptA) && ev.raw != nil && strings.Contains(string(ev.raw), "import") {
				imports++
			}
		}
		if imports < 4 {
			t.Errorf("%d audit events about A's imports after 4 imports (%d events before, %d after)", imports, before, len(auditSnapshot(t, g)))
		}
	})
}

// TestAttackWrongPatientImport (class 4): a C-CDA or HL7 v2 document about
// someone else (name, birth date, sex) is refused with 422 naming each
// mismatch; a system client may override with demographicsMismatch=accept,
// a patient may not.
func TestAttackWrongPatientImport(t *testing.T) {
	ccda := readSample(t, "ccda", "hl7-ccda-examples_CCD-1.xml") // Eve Everywoman, F, 1975-05-01
	hl7 := readSample(t, "hl7v2", "LAB-ORU-1.hl7")               // DONALD DUCK, M, 1924-10-10
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		g := newGateway(t, k)
		c := g.cast([]string{ptA})
		l := &loader{g: g, w: &world{res: map[string]*resource{}}, c: c}
		pt := mkPatient(patientSpec{id: "pt-0", family: "Alvarez", given: "Amy"})
		pt.body["gender"], pt.body["birthDate"] = "other", "1990-03-04"
		l.put(c.system, pt)
		g.freeze()
		for _, doc := range []struct {
			name, ct string
			body     []byte
		}{{"C-CDA", "application/cda+xml", ccda}, {"HL7 v2", "x-application/hl7-v2+er7", hl7}} {
			for _, p := range []*principal{c.system, c.writers[ptA]} {
				wa := &wenv{t: t, g: g}
				before := wa.versions()
				w := g.do(p, http.MethodPost, "/Patient/pt-0/$import", doc.body, "Content-Type: "+doc.ct)
				if w.Code != http.StatusUnprocessableEntity {
					t.Errorf("%s about someone else as %s: %d, want 422: %.300s", doc.name, p, w.Code, w.Body.String())
				} else {
					low := strings.ToLower(w.Body.String())
					for _, what := range []string{"name", "birth"} {
						if !strings.Contains(low, what) {
							t.Errorf("%s as %s: the 422 does not name the %s mismatch: %.400s", doc.name, p, what, w.Body.String())
						}
					}
					if !strings.Contains(low, "gender") && !strings.Contains(low, "sex") {
						t.Errorf("%s as %s: the 422 does not name the sex mismatch: %.400s", doc.name, p, w.Body.String())
					}
				}
				if wa.versions() != before {
					t.Errorf("%s about someone else as %s: filed anyway", doc.name, p)
				}
			}
			// the override: a patient may not, a system client may
			wa := &wenv{t: t, g: g}
			before := wa.versions()
			if w := g.do(c.writers[ptA], http.MethodPost, "/Patient/pt-0/$import?demographicsMismatch=accept", doc.body, "Content-Type: "+doc.ct); w.Code < 400 {
				t.Errorf("%s: patient A overrode the demographics check: %d", doc.name, w.Code)
			}
			if wa.versions() != before {
				t.Errorf("%s: the patient's override filed the document", doc.name)
			}
			if w := g.do(c.system, http.MethodPost, "/Patient/pt-0/$import?demographicsMismatch=accept", doc.body, "Content-Type: "+doc.ct); w.Code != http.StatusOK {
				t.Errorf("%s: the system's override answered %d: %.300s", doc.name, w.Code, w.Body.String())
			}
		}
	})
}

// TestAttackImportDemographicsOracle (class 4, found by the write
// matrix): the demographics check of an import runs after the write is
// authorised, so that one who may not write the record cannot learn the
// patient's name, birth date or sex from its 422.
func TestAttackImportDemographicsOracle(t *testing.T) {
	ccda := readSample(t, "ccda", "hl7-ccda-examples_CCD-1.xml")
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		g := newGateway(t, k)
		c := g.cast([]string{ptA, ptB})
		l := &loader{g: g, w: &world{res: map[string]*resource{}}, c: c}
		pt := mkPatient(patientSpec{id: "pt-0", family: "Alvarez", given: "Amy"})
		pt.body["gender"], pt.body["birthDate"] = "other", "1990-03-04"
		l.put(c.system, pt)
		l.put(c.system, mkPatient(patientSpec{id: "pt-1", family: "Bjork", given: "Boris"}))
		g.freeze()
		is := g.is
		for _, p := range []*principal{
			{name: "clinicC (shares with nobody)", kind: kProvider, token: is.ClientToken(t, "clinicC", "system/*.cruds")},
			{name: "patient B", kind: kPatient, token: is.PatientToken(t, ptB, "openid", "fhirUser", "patient/*.cruds")},
			{name: "dr-x (unmapped practitioner)", kind: kRefused, token: is.Token(t, authtest.Claims{"sub": "dr-x", "client_id": "practice-portal", "fhirUser": "Practitioner/dr-x", "scope": "openid fhirUser user/*.cruds"})},
		} {
			w := g.do(p, http.MethodPost, "/Patient/pt-0/$import", ccda, "Content-Type: application/cda+xml")
			if w.Code != http.StatusForbidden {
				t.Errorf("%s importing into A's record: %d, want 403", p, w.Code)
			}
			for _, secret := range []string{"Alvarez", "1990", "other"} {
				if strings.Contains(w.Body.String(), secret) {
					t.Errorf("%s learns A's %q from the answer: %.300s", p, secret, w.Body.String())
				}
			}
		}
	})
}

// TestAttackWrongPatientMLLP (class 4): an HL7 v2 message over MLLP whose
// PID-3 identifier matches a local Patient with other demographics is
// answered with an error ACK and nothing of it is filed.
func TestAttackWrongPatientMLLP(t *testing.T) {
	msg := readSample(t, "hl7v2", "LAB-ORU-1.hl7")
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		// learn the identifier the message's patient is matched by
		probe := k.open(t)
		t.Cleanup(func() { probe.Close() })
		pid, ack := (&ingest.HL7Handler{Store: probe, Search: testRegistry}).Handle(context.Background(), msg)
		if pid == "" || ackCode(ack) != "AA" {
			t.Fatalf("the sample is not filed on an empty store: %q", ack)
		}
		local, err := probe.Read(context.Background(), "Patient", pid)
		if err != nil {
			t.Fatal(err)
		}
		var lp struct {
			Identifier []map[string]any `json:"identifier"`
		}
		_ = json.Unmarshal(local.Raw, &lp)
		// the Patient the message is matched to (same id, same identifiers) is
		// someone else
		g := newGateway(t, k)
		g.freeze()
		other := mkPatient(patientSpec{id: pid, family: "Alvarez", given: "Amy"})
		other.body["gender"], other.body["birthDate"] = "female", "1990-03-04"
		ids := make([]any, len(lp.Identifier))
		for i, x := range lp.Identifier {
			ids[i] = x
		}
		other.body["identifier"] = ids
		b, _ := json.Marshal(other.body)
		if w := g.do(&principal{kind: kAnon}, http.MethodPut, "/Patient/"+pid, b); w.Code >= 300 {
			t.Fatalf("setup: %d %.300s", w.Code, w.Body.String())
		}
		wa := &wenv{t: t, g: g}
		before := wa.versions()
		_, ack = (&ingest.HL7Handler{Store: g.store, Search: testRegistry}).Handle(context.Background(), msg)
		if code := ackCode(ack); code == "AA" || code == "CA" {
			t.Errorf("a message about someone else was acknowledged %s: %q", code, ack)
		}
		if wa.versions() != before {
			t.Errorf("a message about someone else was filed")
		}
	})
}

// ackCode is MSA-1 of an acknowledgement.
func ackCode(ack []byte) string {
	for _, seg := range strings.FieldsFunc(string(ack), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if strings.HasPrefix(seg, "MSA|") {
			f := strings.Split(seg, "|")
			if len(f) > 1 {
				return f[1]
			}
		}
	}
	return ""
}

func readSample(t *testing.T, sub, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedtest.Path(t, sub), name))
	if err != nil {
		t.Skipf("sample %s/%s: %v", sub, name, err)
	}
	return b
}

// eachStoreKind runs fn per store (PostgreSQL when configured).
func eachStoreKind(t *testing.T, fn func(t *testing.T, k storeKind)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k) })
	}
}

// TestAttackDocumentComposition (class 3, found by a fresh seed of
// TestAuthzProperty): a stored document's Composition is data — the
// narrative someone wrote about the patient — and a provider whose
// Consent withholds Compositions (here: it permits Observations only) gets
// no document that carries one, however its other entries are decided,
// even one shaped like the gateway's packages. Only a document the gateway
// assembled itself (tagged so; no client may write the tag: 422, also
// inside another Bundle) has scaffolding that is not decided on its own:
// the second-opinion tests show its packages released under narrow
// Consents.
func TestAttackDocumentComposition(t *testing.T) {
	eachStoreKind(t, func(t *testing.T, k storeKind) {
		g := newGateway(t, k)
		w := &world{now: time.Now().UTC(), res: map[string]*resource{}}
		c := g.cast([]string{ptA, ptB})
		by := map[string]*principal{}
		for _, p := range c.readers {
			by[p.name] = p
		}
		l := &loader{g: g, w: w, c: c}
		sys := c.system
		l.transaction(sys, []*fact{mkOrganization("orgA", "Alpha Clinic"), mkPractitioner("dr-a", "Adler", "Anna")})
		l.put(sys, mkPatient(patientSpec{id: "pt-0", family: "Alvarez", given: "Amy", mrns: []coding{{mrnOther, "O1"}}}))
		code := obsCodes[0]
		obs := mkObservation(obsSpec{id: "obs-a", subject: ptA, code: &code, status: "final", eff: "2020-01-02"})
		l.put(sys, obs)
		comp := mkComposition("comp", ptA, "Practitioner/dr-a", "2020-01-05")
		comp.body["text"] = map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">Discharge summary: what the clinician wrote</div>`}
		l.put(sys, mkBundle("doc-person", "document", []*fact{comp, w.cur("Observation/obs-a").clone()}))
		// the same entries assembled by a machine
		machine := mkBundle("doc-machine", "document", []*fact{mkComposition("comp", ptA, "Practitioner/dr-a", "2020-01-05"), w.cur("Observation/obs-a").clone()})
		entries := machine.body["entry"].([]any)
		compURL := entries[0].(map[string]any)["fullUrl"].(string)
		devURL, provURL := "urn:uuid:7d0c0a4e-0000-4000-8000-000000000001", "urn:uuid:7d0c0a4e-0000-4000-8000-000000000002"
		entries[0].(map[string]any)["resource"].(map[string]any)["author"] = []any{map[string]any{"reference": devURL}}
		entries = append(entries,
			map[string]any{"fullUrl": devURL, "resource": map[string]any{"resourceType": "Device", "deviceName": []any{map[string]any{"name": "fhirgate", "type": "user-friendly-name"}}}},
			map[string]any{"fullUrl": provURL, "resource": map[string]any{"resourceType": "Provenance", "target": []any{map[string]any{"reference": compURL}},
				"recorded": "2020-01-05T00:00:00Z", "agent": []any{map[string]any{
					"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}}},
					"who":  map[string]any{"reference": devURL}}}}})
		machine.body["entry"] = entries
		l.put(sys, machine)
		// the gateway's own tag is the gateway's: no client writes it
		tagged := deepCopy(machine.body).(map[string]any)
		tagged["id"] = "doc-tagged"
		tagged["meta"] = map[string]any{"tag": []any{map[string]any{"system": "https://fhirgate.org/fhir/CodeSystem/document-origin", "code": "assembled"}}}
		body, _ := json.Marshal(tagged)
		if r := g.do(sys, http.MethodPut, "/Bundle/doc-tagged", body, "Content-Type: application/fhir+json"); r.Code != http.StatusUnprocessableEntity {
			t.Errorf("a client wrote the gateway's assembled tag: %d, want 422 (%.300s)", r.Code, r.Body.String())
		}
		inner, _ := json.Marshal(bundleOf("collection", map[string]any{"fullUrl": "urn:uuid:7d0c0a4e-0000-4000-8000-000000000003", "resource": tagged}))
		if r := g.do(sys, http.MethodPost, "/Bundle", inner, "Content-Type: application/fhir+json"); r.Code != http.StatusUnprocessableEntity {
			t.Errorf("a client wrote the gateway's assembled tag inside a collection: %d, want 422 (%.300s)", r.Code, r.Body.String())
		}
		l.post(c.writers[ptA], mkConsent("", ptA, "active", &prov{actors: []string{"Organization/orgA"}, classes: []coding{{sysResType, "Observation"}}}, "", ""))
		clinic := by["clinicA"]
		if r := g.do(clinic, http.MethodGet, "/Observation/obs-a", nil); r.Code != http.StatusOK {
			t.Fatalf("the Consent should release the Observation: %d %.300s", r.Code, r.Body.String())
		}
		for _, id := range []string{"doc-person", "doc-machine"} {
			// without the gateway's tag, a machine's Composition is data too
			if r := g.do(clinic, http.MethodGet, "/Bundle/"+id, nil); r.Code != http.StatusForbidden {
				t.Errorf("%s, a document with a withheld Composition: %d, want 403", id, r.Code)
			}
		}
		r := g.do(clinic, http.MethodGet, "/Bundle?type=document", nil)
		if r.Code != http.StatusOK {
			t.Fatalf("search: %d", r.Code)
		}
		if strings.Contains(r.Body.String(), "doc-person") || strings.Contains(r.Body.String(), "what the clinician wrote") {
			t.Errorf("the search released the document with a withheld Composition: %.500s", r.Body.String())
		}
	})
}
