package server_test

// The world of the property-based authorization test (authzprop_test.go):
// an in-test model of every resource version the test writes through the
// API, built from FHIR R4 semantics (the Patient CompartmentDefinition,
// the search parameters of the elements it fills) and the Consent
// semantics of trust-spec.md, independently of the gateway's code. Each
// builder below writes a resource's JSON and, alongside, the facts the
// oracle needs: its compartments, the values of its search parameters,
// and what a Consent decision looks at.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Code systems of the generated data.
const (
	sysLOINC         = "http://loinc.org"
	sysSCT           = "http://snomed.info/sct"
	sysRx            = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysConf          = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	sysActCode       = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysActReason     = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sysConsentAction = "http://terminology.hl7.org/CodeSystem/consentaction"
	sysConsentScope  = "http://terminology.hl7.org/CodeSystem/consentscope"
	sysResType       = "http://hl7.org/fhir/resource-types"
	sysProfileClass  = "http://hl7.org/fhir/StructureDefinition" // a class system the decision cannot evaluate
	mrnCity          = "http://city-hospital.example/mrn"
	mrnOther         = "http://other-hospital.example/mrn"
)

type coding struct{ sys, code string }

func (c coding) String() string { return c.sys + "|" + c.code }

func (c coding) json() map[string]any { return map[string]any{"system": c.sys, "code": c.code} }

// matches compares codings as FHIR tokens and Consent codings do: a
// coding without a system matches on the code.
func (c coding) matches(o coding) bool {
	return c.code == o.code && (c.sys == o.sys || c.sys == "" || o.sys == "")
}

func cc(c coding) map[string]any { return map[string]any{"coding": []any{c.json()}} }

func jref(r string) map[string]any { return map[string]any{"reference": r} }

// ival is a span of time [lo, hi); a zero bound is open.
type ival struct{ lo, hi time.Time }

func parseDay(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// dayIval is a FHIR date at day precision: all of that day (UTC).
func dayIval(s string) ival { d := parseDay(s); return ival{d, d.AddDate(0, 0, 1)} }

// instantIval is a FHIR instant: one instant.
func instantIval(s string) ival {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return ival{t, t.Add(time.Nanosecond)}
}

// periodIval is a FHIR Period of two optional days.
func periodIval(start, end string) ival {
	var iv ival
	if start != "" {
		iv.lo = parseDay(start)
	}
	if end != "" {
		iv.hi = parseDay(end).AddDate(0, 0, 1)
	}
	return iv
}

func (iv ival) contains(t time.Time) bool {
	return (iv.lo.IsZero() || !t.Before(iv.lo)) && (iv.hi.IsZero() || t.Before(iv.hi))
}

func (iv ival) within(o ival) bool {
	if !o.lo.IsZero() && (iv.lo.IsZero() || iv.lo.Before(o.lo)) {
		return false
	}
	if !o.hi.IsZero() && (iv.hi.IsZero() || iv.hi.After(o.hi)) {
		return false
	}
	return true
}

func (iv ival) overlaps(o ival) bool {
	if !iv.hi.IsZero() && !o.lo.IsZero() && !iv.hi.After(o.lo) {
		return false
	}
	if !o.hi.IsZero() && !iv.lo.IsZero() && !o.hi.After(iv.lo) {
		return false
	}
	return true
}

// fact is one version of one resource as the oracle knows it: its JSON
// and everything a release decision or a search looks at.
type fact struct {
	typ, id string
	vid     string // the version this fact is, once written
	body    map[string]any
	// comp lists the Patients ("Patient/x") whose R4 Patient compartment
	// holds the resource (CompartmentDefinition patient).
	comp []string
	// search parameter values of the elements the builder filled
	refs   map[string][]string // reference parameters: "Type/id"
	tokens map[string][]coding
	strs   map[string][]string
	dates  map[string][]ival
	// what a Consent decision looks at
	labels []coding // meta.security
	codes  []coding // the code element (and DocumentReference.type)
	dated  bool     // the type has a clinical date
	period *ival    // that date, nil when the resource has none
	// type rules of trust-spec
	secCtx     string   // Binary.securityContext
	targets    []string // Provenance.target
	entries    []*fact  // stored Bundle entries
	bundleType string
	docPatient string // a document's Composition.subject
	consent    *consentFact
}

func newFact(typ, id string) *fact {
	f := &fact{typ: typ, id: id, body: map[string]any{"resourceType": typ},
		refs: map[string][]string{}, tokens: map[string][]coding{}, strs: map[string][]string{}, dates: map[string][]ival{}}
	if id != "" {
		f.body["id"] = id
	}
	return f
}

func (f *fact) ref() string { return f.typ + "/" + f.id }

func (f *fact) addRef(target string, params ...string) {
	for _, p := range params {
		f.refs[p] = append(f.refs[p], target)
	}
}

func isPatientRef(r string) bool { return strings.HasPrefix(r, "Patient/") }

func refType(r string) string { t, _, _ := strings.Cut(r, "/"); return t }

// subject fills a subject-like element: the parameter names, and
// "patient" as well when it is a Patient.
func (f *fact) subject(elem, target string, params ...string) {
	f.body[elem] = jref(target)
	f.addRef(target, params...)
	if isPatientRef(target) {
		f.addRef(target, "patient")
	}
}

func (f *fact) setLabels(ls []coding) {
	f.labels = ls
	if len(ls) == 0 {
		return
	}
	var sec []any
	for _, l := range ls {
		sec = append(sec, l.json())
	}
	f.body["meta"] = map[string]any{"security": sec}
}

// inComp adds the Patients among refs to the compartment list.
func (f *fact) inComp(refs ...string) {
	for _, r := range refs {
		if isPatientRef(r) && !slices.Contains(f.comp, r) {
			f.comp = append(f.comp, r)
		}
	}
}

// clone copies a fact for a new version; maps and slices are copied where
// builders append.
func (f *fact) clone() *fact {
	g := *f
	g.body = deepCopy(f.body).(map[string]any)
	g.refs, g.tokens, g.strs, g.dates = map[string][]string{}, map[string][]coding{}, map[string][]string{}, map[string][]ival{}
	for k, v := range f.refs {
		g.refs[k] = slices.Clone(v)
	}
	for k, v := range f.tokens {
		g.tokens[k] = slices.Clone(v)
	}
	for k, v := range f.strs {
		g.strs[k] = slices.Clone(v)
	}
	for k, v := range f.dates {
		g.dates[k] = slices.Clone(v)
	}
	g.comp, g.labels, g.codes = slices.Clone(f.comp), slices.Clone(f.labels), slices.Clone(f.codes)
	return &g
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// ---- builders, one per kind of resource the world holds ----

func mkOrganization(id, name string) *fact {
	f := newFact("Organization", id)
	f.body["name"] = name
	f.strs["name"] = []string{name}
	return f
}

func mkPractitioner(id, family, given string) *fact {
	f := newFact("Practitioner", id)
	f.body["name"] = []any{map[string]any{"family": family, "given": []any{given}}}
	f.strs["name"] = []string{family, given}
	return f
}

func mkLocation(id, name, org string) *fact {
	f := newFact("Location", id)
	f.body["name"] = name
	f.strs["name"] = []string{name}
	f.body["managingOrganization"] = jref(org)
	f.addRef(org, "organization")
	return f
}

func mkMedication(id string, code coding) *fact {
	f := newFact("Medication", id)
	f.body["code"] = cc(code)
	f.tokens["code"] = []coding{code}
	return f
}

type patientSpec struct {
	id, family, given string
	mrns              []coding // identifier system|value
	gp, org           string
	labels            []coding
}

func mkPatient(s patientSpec) *fact {
	f := newFact("Patient", s.id)
	f.body["name"] = []any{map[string]any{"family": s.family, "given": []any{s.given}}}
	f.strs["name"] = []string{s.family, s.given}
	f.strs["family"] = []string{s.family}
	f.body["gender"] = "unknown"
	f.body["birthDate"] = "1970-01-01"
	var ids []any
	for _, m := range s.mrns {
		ids = append(ids, map[string]any{"system": m.sys, "value": m.code})
		f.tokens["identifier"] = append(f.tokens["identifier"], m)
	}
	if len(ids) > 0 {
		f.body["identifier"] = ids
	}
	if s.gp != "" {
		f.body["generalPractitioner"] = []any{jref(s.gp)}
		f.addRef(s.gp, "general-practitioner")
	}
	if s.org != "" {
		f.body["managingOrganization"] = jref(s.org)
		f.addRef(s.org, "organization")
	}
	f.setLabels(s.labels)
	f.comp = []string{f.ref()} // a Patient is in its own compartment
	return f
}

type obsSpec struct {
	id, subject, performer string
	code                   *coding
	status                 string
	eff, issued            string // a day, an instant
	labels                 []coding
}

func mkObservation(s obsSpec) *fact {
	f := newFact("Observation", s.id)
	f.body["status"] = s.status
	f.tokens["status"] = []coding{{"", s.status}}
	if s.code != nil {
		f.body["code"] = cc(*s.code)
		f.tokens["code"] = []coding{*s.code}
		f.codes = []coding{*s.code}
	} else {
		f.body["code"] = map[string]any{"text": "unspecified"}
	}
	f.subject("subject", s.subject, "subject")
	if s.performer != "" {
		f.body["performer"] = []any{jref(s.performer)}
		f.addRef(s.performer, "performer")
	}
	f.dated = true
	switch {
	case s.eff != "":
		f.body["effectiveDateTime"] = s.eff
		iv := dayIval(s.eff)
		f.dates["date"] = []ival{iv}
		f.period = &iv
	case s.issued != "":
		f.body["issued"] = s.issued
		iv := instantIval(s.issued)
		f.period = &iv
	}
	f.body["valueQuantity"] = map[string]any{"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
	f.setLabels(s.labels)
	f.inComp(s.subject, s.performer) // Observation: subject, performer
	return f
}

type condSpec struct {
	id, subject, asserter string
	code                  coding
	onset, recorded       string // days
	labels                []coding
}

func mkCondition(s condSpec) *fact {
	f := newFact("Condition", s.id)
	f.body["code"] = cc(s.code)
	f.tokens["code"] = []coding{s.code}
	f.codes = []coding{s.code}
	f.subject("subject", s.subject, "subject")
	if s.asserter != "" {
		f.body["asserter"] = jref(s.asserter)
		f.addRef(s.asserter, "asserter")
	}
	f.dated = true
	if s.onset != "" {
		f.body["onsetDateTime"] = s.onset
		iv := dayIval(s.onset)
		f.dates["onset-date"] = []ival{iv}
		f.period = &iv
	}
	if s.recorded != "" {
		f.body["recordedDate"] = s.recorded
		if f.period == nil {
			iv := dayIval(s.recorded)
			f.period = &iv
		}
	}
	f.setLabels(s.labels)
	f.inComp(s.subject, s.asserter) // Condition: patient, asserter
	return f
}

type encSpec struct {
	id, subject, start, end, location, provider string
	labels                                      []coding
}

func mkEncounter(s encSpec) *fact {
	f := newFact("Encounter", s.id)
	f.body["status"] = "finished"
	f.tokens["status"] = []coding{{"", "finished"}}
	f.body["class"] = coding{sysActCode, "AMB"}.json()
	f.subject("subject", s.subject, "subject")
	f.body["period"] = map[string]any{"start": s.start, "end": s.end}
	iv := periodIval(s.start, s.end)
	f.dates["date"] = []ival{iv}
	f.dated, f.period = true, &iv
	if s.location != "" {
		f.body["location"] = []any{map[string]any{"location": jref(s.location)}}
		f.addRef(s.location, "location")
	}
	if s.provider != "" {
		f.body["serviceProvider"] = jref(s.provider)
		f.addRef(s.provider, "service-provider")
	}
	f.setLabels(s.labels)
	f.inComp(s.subject) // Encounter: patient
	return f
}

type mrSpec struct {
	id, subject, medication, requester, status, authored string
	labels                                               []coding
}

func mkMedicationRequest(s mrSpec) *fact {
	f := newFact("MedicationRequest", s.id)
	f.body["status"] = s.status
	f.tokens["status"] = []coding{{"", s.status}}
	f.body["intent"] = "order"
	f.tokens["intent"] = []coding{{"", "order"}}
	f.body["medicationReference"] = jref(s.medication)
	f.addRef(s.medication, "medication")
	f.subject("subject", s.subject, "subject")
	if s.requester != "" {
		f.body["requester"] = jref(s.requester)
		f.addRef(s.requester, "requester")
	}
	f.body["authoredOn"] = s.authored
	iv := dayIval(s.authored)
	f.dates["authoredon"] = []ival{iv}
	f.dated, f.period = true, &iv
	f.setLabels(s.labels)
	f.inComp(s.subject) // MedicationRequest: subject (the requester is not a compartment link)
	return f
}

type docSpec struct {
	id, subject, author string
	typ                 coding
	start, end          string // context.period, days
	date                string // an instant, used when there is no period
	labels              []coding
}

func mkDocumentReference(s docSpec) *fact {
	f := newFact("DocumentReference", s.id)
	f.body["status"] = "current"
	f.tokens["status"] = []coding{{"", "current"}}
	f.body["type"] = cc(s.typ)
	f.tokens["type"] = []coding{s.typ}
	f.codes = []coding{s.typ}
	f.subject("subject", s.subject, "subject")
	if s.author != "" {
		f.body["author"] = []any{jref(s.author)}
		f.addRef(s.author, "author")
	}
	f.dated = true
	if s.start != "" {
		f.body["context"] = map[string]any{"period": map[string]any{"start": s.start, "end": s.end}}
		iv := periodIval(s.start, s.end)
		f.period = &iv
	}
	if s.date != "" {
		f.body["date"] = s.date
		if f.period == nil {
			iv := instantIval(s.date)
			f.period = &iv
		}
	}
	f.body["content"] = []any{map[string]any{"attachment": map[string]any{"contentType": "application/pdf", "title": "scan.pdf"}}}
	f.setLabels(s.labels)
	f.inComp(s.subject, s.author) // DocumentReference: subject, author
	return f
}

func mkProvenance(id string, targets []string, agent, recorded string) *fact {
	f := newFact("Provenance", id)
	var ts []any
	for _, t := range targets {
		ts = append(ts, jref(t))
		f.addRef(t, "target")
		if isPatientRef(t) {
			f.addRef(t, "patient")
		}
	}
	f.body["target"] = ts
	f.targets = slices.Clone(targets)
	f.body["recorded"] = recorded
	f.body["agent"] = []any{map[string]any{"who": jref(agent)}}
	f.addRef(agent, "agent")
	iv := instantIval(recorded)
	f.dated, f.period = true, &iv
	f.inComp(targets...) // Provenance: patient (= the targets that are Patients)
	return f
}

func mkGroup(id string, members []string) *fact {
	f := newFact("Group", id)
	f.body["type"] = "person"
	f.body["actual"] = true
	var ms []any
	for _, m := range members {
		ms = append(ms, map[string]any{"entity": jref(m)})
		f.addRef(m, "member")
	}
	f.body["member"] = ms
	f.inComp(members...) // Group: member
	return f
}

func mkComposition(id, subject, author, date string) *fact {
	f := newFact("Composition", id)
	f.body["status"] = "final"
	f.body["type"] = cc(coding{sysLOINC, "60591-5"})
	f.codes = nil // a Composition's code-like element is type, not code
	f.subject("subject", subject, "subject")
	f.body["date"] = date
	f.body["author"] = []any{jref(author)}
	f.body["title"] = "Patient summary"
	iv := dayIval(date)
	f.dated, f.period = true, &iv
	f.inComp(subject, author) // Composition: subject, author
	return f
}

// mkBundle stores a Bundle of entries (copies of resources, each with its
// own facts); a document's first entry is its Composition.
func mkBundle(id, btype string, entries []*fact) *fact {
	f := newFact("Bundle", id)
	f.body["type"] = btype
	f.tokens["type"] = []coding{{"", btype}}
	var es []any
	for i, e := range entries {
		es = append(es, map[string]any{"fullUrl": fmt.Sprintf("urn:uuid:%08d-0000-4000-8000-%012d", i, len(id)*1000+i), "resource": deepCopy(e.body)})
	}
	f.body["entry"] = es
	f.entries = entries
	f.bundleType = btype
	if btype == "document" {
		f.body["identifier"] = map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3b5ad4-2f7e-4c3b-9a4e-" + fmt.Sprintf("%012d", len(entries))}
		f.body["timestamp"] = "2024-01-02T03:04:05Z"
		if len(entries) > 0 && entries[0].typ == "Composition" {
			if s := entries[0].refs["subject"]; len(s) > 0 && isPatientRef(s[0]) {
				f.docPatient = s[0]
			}
		}
	}
	return f
}

// mkBinary is the model of an uploaded file: the gateway writes its JSON.
func mkBinary(id, ctx string) *fact {
	f := newFact("Binary", id)
	f.secCtx = ctx
	return f
}

// ---- Consents ----

// prov is one provision of a Consent, structured as the generator made it.
type prov struct {
	deny                 bool
	period, dataPeriod   *ival
	periodJ, dataPeriodJ map[string]any
	actors, actions      []string
	purposes, classes    []coding
	codes, labels        []coding
	children             []*prov
}

type consentFact struct {
	patient, status string
	root            *prov
}

func (p *prov) json() map[string]any {
	m := map[string]any{"type": "permit"}
	if p.deny {
		m["type"] = "deny"
	}
	if p.periodJ != nil {
		m["period"] = p.periodJ
	}
	if p.dataPeriodJ != nil {
		m["dataPeriod"] = p.dataPeriodJ
	}
	var as []any
	for _, a := range p.actors {
		as = append(as, map[string]any{"role": cc(coding{"http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"}), "reference": jref(a)})
	}
	if len(as) > 0 {
		m["actor"] = as
	}
	var acts []any
	for _, a := range p.actions {
		acts = append(acts, cc(coding{sysConsentAction, a}))
	}
	if len(acts) > 0 {
		m["action"] = acts
	}
	list := func(key string, cs []coding, wrap bool) {
		var out []any
		for _, c := range cs {
			if wrap {
				out = append(out, cc(c))
			} else {
				out = append(out, c.json())
			}
		}
		if len(out) > 0 {
			m[key] = out
		}
	}
	list("purpose", p.purposes, false)
	list("class", p.classes, false)
	list("code", p.codes, true)
	list("securityLabel", p.labels, false)
	var ch []any
	for _, c := range p.children {
		ch = append(ch, c.json())
	}
	if len(ch) > 0 {
		m["provision"] = ch
	}
	return m
}

// mkConsent builds a patient-privacy Consent; org names the custodian
// acting for the patient ("" when the patient writes it).
func mkConsent(id, patient, status string, root *prov, org, dateTime string) *fact {
	f := newFact("Consent", id)
	f.body["status"] = status
	f.tokens["status"] = []coding{{"", status}}
	f.body["scope"] = cc(coding{sysConsentScope, "patient-privacy"})
	f.body["category"] = []any{cc(coding{sysLOINC, "59284-0"})}
	f.body["policyRule"] = cc(coding{sysActCode, "OPTIN"})
	f.subject("patient", patient)
	f.refs["patient"] = []string{patient}
	for _, a := range root.actors {
		f.addRef(a, "actor")
	}
	if org != "" {
		f.body["organization"] = []any{jref(org)}
		f.addRef(org, "organization")
	}
	f.dated = true
	if dateTime != "" {
		f.body["dateTime"] = dateTime
		iv := dayIval(dateTime)
		f.period = &iv
	}
	f.body["provision"] = root.json()
	f.consent = &consentFact{patient: patient, status: status, root: root}
	f.inComp(patient) // Consent: patient
	return f
}

// ---- the generated world ----

// version is one version of a resource; f is nil for a deletion.
type version struct {
	vid string
	f   *fact
}

type resource struct {
	typ, id string
	vers    []*version
}

func (r *resource) ref() string { return r.typ + "/" + r.id }

// current is the current version's facts, nil when deleted.
func (r *resource) current() *fact { return r.vers[len(r.vers)-1].f }

// lastContent is the version a deletion deleted (or the current one).
func (r *resource) lastContent() *fact {
	for i := len(r.vers) - 1; i >= 0; i-- {
		if r.vers[i].f != nil {
			return r.vers[i].f
		}
	}
	return nil
}

// contentOf is the version a version stands for: itself, or for a
// deletion the version it deleted.
func (r *resource) contentOf(i int) *fact {
	for ; i >= 0; i-- {
		if r.vers[i].f != nil {
			return r.vers[i].f
		}
	}
	return nil
}

type world struct {
	rng       *rand.Rand
	now       time.Time
	frozen    time.Time // when loading ended: the audit trail the oracle knows ends there
	patients  []string  // Patient refs
	res       map[string]*resource
	order     []*resource // creation order
	actorPool []string
}

func (w *world) get(ref string) *resource { return w.res[ref] }

// cur is the current content of a reference, nil when absent or deleted.
func (w *world) cur(ref string) *fact {
	if r := w.res[ref]; r != nil {
		return r.current()
	}
	return nil
}

func (w *world) ofType(typ string) []*resource {
	var out []*resource
	for _, r := range w.order {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}

func (w *world) types() []string {
	var out []string
	for _, r := range w.order {
		if !slices.Contains(out, r.typ) {
			out = append(out, r.typ)
		}
	}
	return out
}

// record adds a written version.
func (w *world) record(f *fact, vid string) {
	ref := f.typ + "/" + f.id
	r := w.res[ref]
	if r == nil {
		r = &resource{typ: f.typ, id: f.id}
		w.res[ref] = r
		w.order = append(w.order, r)
	}
	f.vid = vid
	r.vers = append(r.vers, &version{vid: vid, f: f})
}

func (w *world) recordDelete(ref, vid string) {
	r := w.res[ref]
	r.vers = append(r.vers, &version{vid: vid})
}

// pick returns a random element.
func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func chance(rng *rand.Rand, p float64) bool { return rng.Float64() < p }

// someOf returns 1..max distinct random elements, in the order of xs.
func someOf[T comparable](rng *rand.Rand, xs []T, max int) []T {
	n := 1 + rng.IntN(min(max, len(xs)))
	idx := rng.Perm(len(xs))[:n]
	slices.Sort(idx)
	out := make([]T, n)
	for i, j := range idx {
		out[i] = xs[j]
	}
	return out
}

var (
	obsCodes  = []coding{{sysLOINC, "8867-4"}, {sysLOINC, "8310-5"}, {sysLOINC, "2345-7"}, {sysLOINC, "55284-4"}, {sysLOINC, "29463-7"}}
	condCodes = []coding{{sysSCT, "44054006"}, {sysSCT, "35489007"}, {sysSCT, "38341003"}}
	docTypes  = []coding{{sysLOINC, "11506-3"}, {sysLOINC, "34133-9"}}
	medCodes  = []coding{{sysRx, "197361"}, {sysRx, "311036"}, {sysRx, "860975"}, {sysRx, "617314"}}
	labelPool = []coding{{sysConf, "R"}, {sysConf, "V"}, {sysConf, "N"}, {sysActCode, "PSY"}, {sysActCode, "HIV"}}
	families  = []string{"Alvarez", "Bjork", "Chen", "Dubois", "Eze", "Fischer", "Gupta", "Haddad"}
	givens    = []string{"Amy", "Boris", "Cleo", "Dev", "Elif", "Femi", "Gia", "Hugo"}
	// the resource types a Consent's class may name
	classTypes = []string{"Observation", "Condition", "Encounter", "MedicationRequest", "DocumentReference", "Patient", "Binary", "Provenance", "Group", "Consent", "Composition"}
	purposes   = []coding{{sysActReason, "TREAT"}, {sysActReason, "HRESCH"}, {sysActReason, "ETREAT"}}
	actions    = []string{"access", "use", "disclose", "correct"}
	practs     = []string{"Practitioner/dr-a", "Practitioner/dr-b", "Practitioner/dr-x", "Practitioner/pr-d"}
	orgs       = []string{"Organization/orgA", "Organization/orgB", "Organization/orgC", "Organization/city-hospital"}
)

// day returns a random clinical day between 2015 and 2024.
func (w *world) day() string {
	return time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, w.rng.IntN(3650)).Format(time.DateOnly)
}

func (w *world) instant() string {
	return time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(w.rng.Int64N(int64(3650*24*time.Hour))) / time.Second * time.Second).Format(time.RFC3339)
}

func (w *world) labels() []coding {
	switch x := w.rng.Float64(); {
	case x < 0.65:
		return nil
	case x < 0.8:
		return []coding{{sysConf, "R"}}
	case x < 0.9:
		return []coding{{sysActCode, "PSY"}}
	case x < 0.95:
		return []coding{{sysConf, "V"}}
	default:
		return []coding{{sysConf, "N"}, {sysActCode, "HIV"}}
	}
}

// reqPeriod is a Consent period relative to now: mostly current, else
// past, future or open on one side; its bounds are at least 30 days from
// now.
func (w *world) reqPeriod() (*ival, map[string]any) {
	d := func(days int) string { return w.now.AddDate(0, 0, days).Format(time.DateOnly) }
	var start, end string
	switch x := w.rng.IntN(10); {
	case x < 4: // current
		start, end = d(-30-w.rng.IntN(300)), d(30+w.rng.IntN(300))
	case x < 6: // open end, current
		start = d(-30 - w.rng.IntN(300))
	case x < 8: // past
		start, end = d(-400-w.rng.IntN(300)), d(-30-w.rng.IntN(300))
	case x < 9: // future
		start, end = d(30+w.rng.IntN(300)), d(400+w.rng.IntN(300))
	default: // open start, ended
		end = d(-30 - w.rng.IntN(300))
	}
	iv := periodIval(start, end)
	j := map[string]any{}
	if start != "" {
		j["start"] = start
	}
	if end != "" {
		j["end"] = end
	}
	return &iv, j
}

// dataPeriod is a window over the clinical days.
func (w *world) dataPeriod() (*ival, map[string]any) {
	a, b := w.day(), w.day()
	if b < a {
		a, b = b, a
	}
	j := map[string]any{}
	switch w.rng.IntN(4) {
	case 0:
		a = ""
	case 1:
		b = ""
	}
	if a != "" {
		j["start"] = a
	}
	if b != "" {
		j["end"] = b
	}
	iv := periodIval(a, b)
	return &iv, j
}

// genProvision makes a random provision: the root a permit naming
// recipients, whose request conditions mostly hold and whose data
// conditions narrow it now and then; nested ones mostly deny exceptions
// of one condition each, with a permit inside a deny now and then.
func (w *world) genProvision(depth int) *prov {
	rng := w.rng
	p := &prov{}
	if depth == 0 {
		p.actors = someOf(rng, w.actorPool, 2)
		if chance(rng, 0.25) {
			p.period, p.periodJ = w.reqPeriod()
		}
		if chance(rng, 0.25) {
			p.actions = w.withMostly(actions, "access")
		}
		if chance(rng, 0.25) {
			p.purposes = w.codingsMostly(purposes, purposes[0])
		}
		if chance(rng, 0.35) {
			p.classes = w.classes(4)
		}
		if chance(rng, 0.08) {
			p.codes = someOf(rng, append(slices.Clone(obsCodes), condCodes...), 4)
		}
		if chance(rng, 0.2) {
			p.dataPeriod, p.dataPeriodJ = w.dataPeriod()
		}
		if chance(rng, 0.25) {
			p.labels = someOf(rng, []coding{{sysConf, "N"}, {sysConf, "R"}, {sysConf, "V"}, {sysActCode, "PSY"}}, 1)
		}
		for range rng.IntN(4) {
			p.children = append(p.children, w.genProvision(1))
		}
		return p
	}
	p.deny = depth%2 == 1 || chance(rng, 0.15)
	conds := 1
	switch x := rng.Float64(); {
	case x < 0.04:
		conds = 0 // withdraws everything
	case x < 0.25:
		conds = 2
	}
	for range conds {
		switch rng.IntN(9) {
		case 0, 1:
			p.labels = someOf(rng, labelPool[:4], 2)
		case 2, 3:
			p.classes = w.classes(2)
		case 4:
			p.dataPeriod, p.dataPeriodJ = w.dataPeriod()
		case 5:
			p.codes = someOf(rng, append(slices.Clone(obsCodes), condCodes...), 2)
		case 6:
			p.actors = someOf(rng, w.actorPool, 2)
		case 7:
			p.period, p.periodJ = w.reqPeriod()
		default:
			p.purposes = someOf(rng, purposes, 1)
		}
	}
	if depth < 2 && p.deny && chance(rng, 0.25) {
		p.children = append(p.children, w.genProvision(depth+1))
	}
	return p
}

// withMostly is a random subset of xs that mostly holds want.
func (w *world) withMostly(xs []string, want string) []string {
	out := someOf(w.rng, xs, 2)
	if chance(w.rng, 0.75) && !slices.Contains(out, want) {
		out = append(out, want)
	}
	return out
}

func (w *world) codingsMostly(xs []coding, want coding) []coding {
	out := someOf(w.rng, xs, 2)
	if chance(w.rng, 0.7) && !slices.Contains(out, want) {
		out = append(out, want)
	}
	return out
}

func (w *world) classes(n int) []coding {
	var out []coding
	for _, t := range someOf(w.rng, classTypes, n) {
		out = append(out, coding{sysResType, t})
	}
	if chance(w.rng, 0.05) {
		out = append(out, coding{sysProfileClass, "vitalsigns"})
	}
	return out
}
