package server_test

// The oracle of the property-based authorization test: which versions a
// principal may receive (trust-spec.md, "Release rule"), decided on the
// world model alone. Consent decisions follow the semantics documented on
// consent.Policy.Decide and DecideRelationship (opt-in, the deepest
// applicable provision decides, deny wins, fail closed), re-implemented
// here on the structured provisions the generator made.

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// readings are the choices this oracle makes where trust-spec.md can be
// read two ways: each is the stricter reading (less is released), and
// each was reported to the lead. Change one only with the spec's wording.
var readings = struct {
	// deletedIsWithheld: a read or vread of a deleted resource whose
	// deleted version is withheld answers 403 (rules 7 and 8), not 410
	// (which tells that it existed and was deleted).
	deletedIsWithheld bool
	// patientAuditByRole: a patient's events are those whose patient
	// (entity with role patient) is itself, not every event that names it
	// (as the domain resource, or as the agent of an access about another
	// patient).
	patientAuditByRole bool
	// providerRefusalsHidden: a provider does not read its own refused
	// accesses that name a patient: "Condition/x refused, patient y" tells
	// whose x is, which the refusal withheld.
	providerRefusalsHidden bool
	// custodianOwnConsents: a custodian changes or withdraws only the
	// Consents that name its organization ("the current version must be
	// the writer's to change"), not those the patient recorded.
	custodianOwnConsents bool
}{true, true, true, true}

// Principal kinds.
const (
	kAnon     = "anonymous"
	kSystem   = "system"
	kPatient  = "patient"
	kProvider = "provider"
	kRefused  = "refused" // unknown client, unmapped practitioner login: 403 at authentication
)

// principal is one caller of the property test.
type principal struct {
	name     string
	kind     string
	patient  string   // a patient's "Patient/x"
	actors   []string // a provider's organization and practitioner user
	purposes []coding // a provider's purpose of use (TREAT when the token states none)
	clientID string
	fhirUser string
	// auditScope: a system client with an explicit AuditEvent scope
	auditScope bool
	// scopes, when set, are a system client's only scopes: the types it
	// may read and the constraint (?param=value) on each
	scopes map[string]func(*fact) bool
	token  string
}

func (p *principal) String() string { return p.name }

// scopeRefuses: the principal's scopes grant nothing on the type (a
// request on it is refused with 403).
func (p *principal) scopeRefuses(typ string) bool {
	return p.kind == kSystem && p.scopes != nil && p.scopes[typ] == nil
}

// ---- Consent decisions ----

type effect int

const (
	noConsent effect = iota
	permit
	deny
)

type tri int

const (
	yes tri = iota
	no
	unknown
)

func and3(a, b tri) tri {
	switch {
	case a == no || b == no:
		return no
	case a == unknown || b == unknown:
		return unknown
	}
	return yes
}

type creq struct {
	actors   []string
	purposes []coding
	action   string
	now      time.Time
}

func (n *prov) matchRequest(r creq) bool {
	if n.period != nil && !n.period.contains(r.now) {
		return false
	}
	if len(n.actors) > 0 && !slices.ContainsFunc(n.actors, func(a string) bool { return slices.Contains(r.actors, a) }) {
		return false
	}
	if len(n.actions) > 0 && !slices.Contains(n.actions, r.action) {
		return false
	}
	if len(n.purposes) > 0 && !slices.ContainsFunc(n.purposes, func(c coding) bool { return slices.ContainsFunc(r.purposes, c.matches) }) {
		return false
	}
	return true
}

func (n *prov) limitsData() bool {
	return len(n.classes) > 0 || len(n.codes) > 0 || n.dataPeriod != nil || len(n.labels) > 0
}

var confRank = map[string]int{"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5}

// confidentiality is the highest confidentiality label; unlabelled data is N.
func confidentiality(f *fact) int {
	level, found := 0, false
	for _, l := range f.labels {
		if r, ok := confRank[l.code]; ok && l.sys == sysConf && (!found || r > level) {
			level, found = r, true
		}
	}
	if !found {
		return confRank["N"]
	}
	return level
}

func (n *prov) matchData(f *fact) tri {
	r := yes
	if len(n.classes) > 0 {
		c := no
		for _, cl := range n.classes {
			if cl.sys != sysResType {
				c = unknown // not evaluated: fail closed
				continue
			}
			if cl.code == f.typ {
				c = yes
				break
			}
		}
		r = and3(r, c)
	}
	if len(n.codes) > 0 {
		switch {
		case len(f.codes) == 0:
			r = and3(r, unknown)
		case !slices.ContainsFunc(n.codes, func(c coding) bool { return slices.ContainsFunc(f.codes, c.matches) }):
			return no
		}
	}
	if n.dataPeriod != nil {
		switch {
		case !f.dated && n.deny:
			return no // a data period concerns clinical data only
		case !f.dated:
		case f.period == nil:
			r = and3(r, unknown)
		case !n.deny && !f.period.within(*n.dataPeriod):
			return no // a permit covers data wholly inside its window
		case n.deny && !f.period.overlaps(*n.dataPeriod):
			return no // a deny any data touching it
		}
	}
	if len(n.labels) > 0 {
		l := no
		for _, lb := range n.labels {
			if lb.sys == sysConf {
				want, have := confRank[lb.code], confidentiality(f)
				if (!n.deny && have <= want) || (n.deny && have >= want) {
					l = yes
					break
				}
				continue
			}
			if slices.ContainsFunc(f.labels, lb.matches) {
				l = yes
				break
			}
		}
		r = and3(r, l)
	}
	return r
}

// eval is the effect of the deepest applicable provision under n and
// whether n applies; f nil evaluates the relationship (request
// conditions only; a deny that carves out data does not apply).
func (n *prov) eval(r creq, f *fact, bound bool) (effect, bool) {
	var m tri
	switch {
	case f != nil:
		m = yes
		if !n.matchRequest(r) {
			m = no
		}
		m = and3(m, n.matchData(f))
	case n.deny && n.limitsData():
		m = no
	case n.matchRequest(r):
		m = yes
	default:
		m = no
	}
	if m == unknown {
		if n.deny {
			m = yes
		} else {
			m = no
		}
	}
	if m == no {
		return noConsent, false
	}
	b := bound || len(n.actors) > 0
	eff := permit
	if n.deny {
		eff = deny
	} else if !b {
		eff = noConsent // a Consent never grants to everyone
	}
	childEff, childApplies := noConsent, false
	for _, c := range n.children {
		e, ok := c.eval(r, f, b)
		if !ok {
			continue
		}
		if !childApplies || e == deny {
			childEff = e
		}
		childApplies = true
		if e == deny {
			break
		}
	}
	if childApplies {
		eff = childEff
	}
	return eff, true
}

// consentsOf are the Consents in force for a patient: current versions,
// active, about that patient.
func (w *world) consentsOf(patient string) []*consentFact {
	var out []*consentFact
	for _, r := range w.ofType("Consent") {
		f := r.current()
		if f != nil && f.consent != nil && f.consent.status == "active" && f.consent.patient == patient {
			out = append(out, f.consent)
		}
	}
	return out
}

// decide is the policy decision for data f of patient (nil f: the
// relationship).
func (w *world) decide(patient string, r creq, f *fact) effect {
	var permits, denies int
	for _, c := range w.consentsOf(patient) {
		switch e, ok := c.root.eval(r, f, false); {
		case !ok:
		case e == permit:
			permits++
		case e == deny:
			denies++
		}
	}
	switch {
	case denies > 0:
		return deny
	case permits > 0:
		return permit
	}
	return noConsent
}

func (p *principal) request(now time.Time) creq {
	pu := p.purposes
	if len(pu) == 0 {
		pu = []coding{{sysActReason, "TREAT"}}
	}
	return creq{actors: p.actors, purposes: pu, action: "access", now: now}
}

// ---- the release rule ----

// patientDataTypes are the types of the R4 Patient compartment the world
// holds: a Provenance target of these types that no longer resolves
// counts as withheld patient data.
var patientDataTypes = []string{"Patient", "Observation", "Condition", "Encounter", "MedicationRequest", "DocumentReference", "Provenance", "Group", "Consent", "Composition"}

// released decides whether p may receive the version f.
func (w *world) released(p *principal, f *fact) bool {
	return w.releasedDepth(p, f, 0)
}

func (w *world) releasedDepth(p *principal, f *fact, depth int) bool {
	switch p.kind {
	case kSystem:
		if p.scopes != nil {
			match, ok := p.scopes[f.typ]
			return ok && match(f)
		}
		return true
	case kAnon:
		return true
	case kRefused:
		return false
	}
	if depth > 4 {
		return false
	}
	switch f.typ {
	case "Binary":
		switch {
		case f.secCtx == "":
			return false // system clients only
		case isPatientRef(f.secCtx):
			return w.owned(p, f, []string{f.secCtx})
		}
		t := w.cur(f.secCtx)
		return t != nil && w.releasedDepth(p, t, depth+1)
	case "Bundle":
		for _, e := range f.entries {
			if e == nil || !w.releasedDepth(p, e, depth+1) {
				return false
			}
		}
		if p.kind == kProvider && f.bundleType == "document" && f.docPatient != "" {
			// a document of a patient: the relationship, and no Consent
			// denies the document itself (the package rule)
			req := p.request(w.now)
			return w.decide(f.docPatient, req, nil) == permit && w.decide(f.docPatient, req, f) != deny
		}
		return true
	case "Provenance":
		for _, t := range f.targets {
			tf := w.cur(t)
			if tf == nil {
				if slices.Contains(patientDataTypes, refType(t)) {
					return false // a target that no longer resolves counts as withheld
				}
				continue
			}
			if w.isPatientData(tf) && !w.releasedDepth(p, tf, depth+1) {
				return false
			}
		}
		return w.owned(p, f, f.comp)
	}
	return w.owned(p, f, f.comp)
}

// isPatientData: a resource in some patient's compartment, or one the
// type rules tie to patients.
func (w *world) isPatientData(f *fact) bool {
	switch f.typ {
	case "Binary":
		return f.secCtx != ""
	case "Bundle", "Provenance":
		return true
	}
	return len(f.comp) > 0
}

// owned is rule 3: a patient sees data of no patient or of itself, a
// provider what every owner's Consents permit.
func (w *world) owned(p *principal, f *fact, pats []string) bool {
	switch p.kind {
	case kPatient:
		return len(pats) == 0 || slices.Contains(pats, p.patient)
	case kProvider:
		req := p.request(w.now)
		for _, pt := range pats {
			if w.decide(pt, req, f) != permit {
				return false
			}
		}
		return true
	}
	return false
}

// ---- AuditEvents (issue 18 moves them to their own log) ----

// auditEv is what the audit rule looks at in an AuditEvent. Keep the
// parsing here: when the log's format or ids change, this is the place.
type auditEv struct {
	id       string
	version  string
	patients []string // entity.what with role patient
	refs     []string // every Patient reference (entity.what, agent.who)
	agents   []string // agent.who references
	clients  []string // agent.who identifier values (client ids)
	outcome  string   // "0" success, else a failure or refusal
	raw      json.RawMessage
}

func parseAuditEvent(raw json.RawMessage) (*auditEv, error) {
	var ev struct {
		ID      string `json:"id"`
		Outcome string `json:"outcome"`
		Meta    struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
		Agent []struct {
			Who *struct {
				Reference  string `json:"reference"`
				Identifier *struct {
					Value string `json:"value"`
				} `json:"identifier"`
			} `json:"who"`
		} `json:"agent"`
		Entity []struct {
			What *struct {
				Reference string `json:"reference"`
			} `json:"what"`
			Role *struct {
				Code string `json:"code"`
			} `json:"role"`
			Query string `json:"query"`
		} `json:"entity"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, err
	}
	out := &auditEv{id: ev.ID, version: ev.Meta.VersionID, outcome: ev.Outcome, raw: raw}
	// a versioned reference (a write's entity "Patient/x/_history/2")
	// names the same resource
	unversioned := func(r string) string {
		if i := strings.Index(r, "/_history/"); i >= 0 {
			return r[:i]
		}
		return r
	}
	for i := range ev.Entity {
		if ev.Entity[i].What != nil {
			ev.Entity[i].What.Reference = unversioned(ev.Entity[i].What.Reference)
		}
	}
	for _, a := range ev.Agent {
		if a.Who == nil {
			continue
		}
		if a.Who.Reference != "" {
			out.agents = append(out.agents, a.Who.Reference)
			if isPatientRef(a.Who.Reference) {
				out.refs = append(out.refs, a.Who.Reference)
			}
		}
		if a.Who.Identifier != nil && a.Who.Identifier.Value != "" {
			out.clients = append(out.clients, a.Who.Identifier.Value)
		}
	}
	for _, e := range ev.Entity {
		if e.What == nil || !isPatientRef(e.What.Reference) {
			continue
		}
		out.refs = append(out.refs, e.What.Reference)
		if e.Role != nil && e.Role.Code == "1" {
			out.patients = append(out.patients, e.What.Reference)
		}
	}
	return out, nil
}

// auditQuery decodes an event's query entity (for reports).
func auditQuery(raw string) string {
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return raw
	}
	return string(b)
}

// auditRequired: p must receive ev (when a query matches it);
// auditAllowed: p may receive it. Events are decided on their own
// content (trust-spec: AuditEvent), with the stricter reading where the
// rule would tell more than the caller knows:
//   - a patient: the events whose patient (entity with role patient) is
//     itself; it may also receive its own accesses that name no patient,
//     or none but itself;
//   - a provider: the events of its own accesses (an agent is its client
//     id, its organization or its practitioner user) that succeeded; its
//     refusals only when they name no patient (a refused read of
//     Condition/x naming Patient/y tells whose x is);
//   - a system client with an explicit AuditEvent scope, anonymous: all.
func auditRequired(p *principal, ev *auditEv) bool {
	switch p.kind {
	case kAnon:
		return true
	case kSystem:
		return p.auditScope
	case kPatient:
		if len(ev.patients) == 0 {
			return false
		}
		for _, pt := range ev.patients {
			if pt != p.patient {
				return false
			}
		}
		return true
	case kProvider:
		return ev.outcome == "0" && auditActor(p, ev)
	}
	return false
}

func auditAllowed(p *principal, ev *auditEv) bool {
	switch p.kind {
	case kAnon:
		return true
	case kSystem:
		return p.auditScope
	case kPatient:
		if auditRequired(p, ev) {
			return true
		}
		if !readings.patientAuditByRole {
			return slices.Contains(ev.refs, p.patient)
		}
		if len(ev.patients) > 0 || !slices.Contains(ev.agents, p.patient) {
			return false
		}
		for _, r := range ev.refs {
			if r != p.patient {
				return false
			}
		}
		return true
	case kProvider:
		return auditAgent(p, ev) && (ev.outcome == "0" || len(ev.patients) == 0 || !readings.providerRefusalsHidden)
	}
	return false
}

// auditActor: an agent of the event is the provider's organization or
// practitioner user; auditAgent: or its client (a practitioner's access
// through the organization's client is the client's too, which the
// client may, but need not, be shown).
func auditActor(p *principal, ev *auditEv) bool {
	for _, a := range ev.agents {
		if slices.Contains(p.actors, a) || (p.fhirUser != "" && a == p.fhirUser) {
			return true
		}
	}
	return false
}

func auditAgent(p *principal, ev *auditEv) bool {
	return auditActor(p, ev) || slices.Contains(ev.clients, p.clientID)
}

// auditMatchesPatient is AuditEvent?patient=x (R4: agent.who or
// entity.what that is the Patient).
func auditMatchesPatient(ev *auditEv, patient string) bool {
	return slices.Contains(ev.refs, patient)
}

func trimPatient(r string) string { return strings.TrimPrefix(r, "Patient/") }
