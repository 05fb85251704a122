package server_test

// The query grammar of the property-based authorization test: every read
// form of the FHIR API, drawn at random from the world's own values, each
// with its semantics over the world model (the oracle side of a search).

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

type qkind int

const (
	qSearch qkind = iota
	qRead
	qVRead
	qHistory
	qEverything
	qBatch
	qAuditSearch
	qAuditRead
)

// query is one request of the grammar and what the oracle needs to know
// about it.
type query struct {
	kind   qkind
	method string
	path   string
	body   []byte
	header []string
	// searches
	typ          string
	compartment  string // "Patient/x" for Patient/x/[type]
	clauses      []clause
	includes     []include
	summaryCount bool
	// reads and histories
	ref, vid  string
	histLevel int // 0 instance, 1 type, 2 system
	// $everything
	patient string
	types   []string
	// batches
	entries []*query
	// audit
	auditPatient, auditID string
}

func (q *query) String() string {
	if q.kind == qBatch {
		var es []string
		for _, e := range q.entries {
			es = append(es, e.path)
		}
		return "batch[" + strings.Join(es, " ; ") + "]"
	}
	if q.method == "POST" {
		return "POST " + q.path + " " + string(q.body)
	}
	return q.path
}

// clause is one search parameter: its URL form and its semantics.
type clause struct {
	param, value string
	match        func(w *world, p *principal, f *fact) bool
}

type include struct {
	rev, iterate          bool
	source, param, target string
}

func (in include) String() string {
	k := "_include"
	if in.rev {
		k = "_revinclude"
	}
	if in.iterate {
		k += ":iterate"
	}
	v := in.source + ":" + in.param
	if in.target != "" {
		v += ":" + in.target
	}
	return k + "=" + url.QueryEscape(v)
}

// ---- clause semantics ----

func refMatches(refs []string, value string) bool {
	for _, r := range refs {
		if r == value || (!strings.Contains(value, "/") && strings.HasSuffix(r, "/"+value)) {
			return true
		}
	}
	return false
}

func cRef(param, value string) clause {
	return clause{param, value, func(_ *world, _ *principal, f *fact) bool { return refMatches(f.refs[param], value) }}
}

func cID(ids ...string) clause {
	return clause{"_id", strings.Join(ids, ","), func(_ *world, _ *principal, f *fact) bool { return slices.Contains(ids, f.id) }}
}

func cToken(param string, c coding, withSystem bool) clause {
	v := c.code
	want := coding{"", c.code}
	if withSystem {
		v, want = c.sys+"|"+c.code, c
	}
	return clause{param, v, func(_ *world, _ *principal, f *fact) bool {
		return slices.ContainsFunc(f.tokens[param], func(h coding) bool {
			return h.code == want.code && (want.sys == "" || h.sys == want.sys)
		})
	}}
}

func cString(param, prefix string) clause {
	return clause{param, prefix, func(_ *world, _ *principal, f *fact) bool {
		return slices.ContainsFunc(f.strs[param], func(s string) bool { return strings.HasPrefix(strings.ToLower(s), strings.ToLower(prefix)) })
	}}
}

// cDate is a date parameter with a prefix; the value is a day or a year.
func cDate(param, prefix, value string) clause {
	var p ival
	if len(value) == 4 {
		y := parseDay(value + "-01-01")
		p = ival{y, y.AddDate(1, 0, 0)}
	} else {
		p = dayIval(value)
	}
	cmp := func(iv ival) bool {
		eq := !iv.lo.Before(p.lo) && !iv.hi.After(p.hi)
		switch prefix {
		case "ne":
			return !eq
		case "gt":
			return iv.hi.After(p.hi)
		case "lt":
			return iv.lo.Before(p.lo)
		case "ge":
			return iv.hi.After(p.hi) || eq
		case "le":
			return iv.lo.Before(p.lo) || eq
		}
		return eq
	}
	return clause{param, prefix + value, func(_ *world, _ *principal, f *fact) bool { return slices.ContainsFunc(f.dates[param], cmp) }}
}

// cChain is param:Type.inner: the referenced resource matches inner and
// is itself released to the caller.
func cChain(param, typ string, inner clause) clause {
	name := param + ":" + typ + "." + inner.param
	return clause{name, inner.value, func(w *world, p *principal, f *fact) bool {
		for _, r := range f.refs[param] {
			if refType(r) != typ {
				continue
			}
			if t := w.cur(r); t != nil && inner.match(w, p, t) && w.released(p, t) {
				return true
			}
		}
		return false
	}}
}

// cHas is _has:Src:refParam:inner: some resource of type Src the caller
// may see refers to the candidate through refParam and matches inner.
func cHas(src, refParam string, inner clause) clause {
	name := "_has:" + src + ":" + refParam + ":" + inner.param
	return clause{name, inner.value, func(w *world, p *principal, f *fact) bool {
		for _, r := range w.ofType(src) {
			s := r.current()
			if s != nil && slices.Contains(s.refs[refParam], f.ref()) && inner.match(w, p, s) && w.released(p, s) {
				return true
			}
		}
		return false
	}}
}

// ---- oracle side of searches ----

// searchMatches are the current versions of q's type in the compartment
// that match every clause and that p may receive.
func (w *world) searchMatches(p *principal, q *query) []*fact {
	var out []*fact
	for _, r := range w.ofType(q.typ) {
		f := r.current()
		if f == nil || (q.compartment != "" && !slices.Contains(f.comp, q.compartment)) {
			continue
		}
		ok := true
		for _, c := range q.clauses {
			if !c.match(w, p, f) {
				ok = false
				break
			}
		}
		if ok && w.released(p, f) {
			out = append(out, f)
		}
	}
	return out
}

// reach applies includes to resources: the current versions they refer to
// (or that refer to them) through the include's parameter.
func (w *world) reach(from []*fact, ins []include) []*fact {
	var out []*fact
	seen := map[string]bool{}
	add := func(f *fact) {
		if f != nil && !seen[f.ref()] {
			seen[f.ref()] = true
			out = append(out, f)
		}
	}
	for _, in := range ins {
		for _, f := range from {
			if !in.rev {
				if f.typ != in.source {
					continue
				}
				for _, r := range f.refs[in.param] {
					if in.target == "" || refType(r) == in.target {
						add(w.cur(r))
					}
				}
				continue
			}
			if in.target != "" && f.typ != in.target {
				continue
			}
			for _, r := range w.ofType(in.source) {
				if s := r.current(); s != nil && slices.Contains(s.refs[in.param], f.ref()) {
					add(s)
				}
			}
		}
	}
	return out
}

// included: _include/_revinclude start from the released matches, one
// :iterate level from what they found and p may receive; every included
// resource is decided on its own.
func (w *world) included(p *principal, q *query, matches []*fact) []*fact {
	if len(q.includes) == 0 || len(matches) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, m := range matches {
		seen[m.ref()] = true
	}
	var out, level0 []*fact
	for _, f := range w.reach(matches, q.includes) {
		if seen[f.ref()] {
			continue
		}
		seen[f.ref()] = true
		if w.released(p, f) {
			out = append(out, f)
			level0 = append(level0, f)
		}
	}
	var iter []include
	for _, in := range q.includes {
		if in.iterate {
			iter = append(iter, in)
		}
	}
	if len(iter) == 0 || len(level0) == 0 {
		return out
	}
	for _, f := range w.reach(level0, iter) {
		if !seen[f.ref()] {
			seen[f.ref()] = true
			if w.released(p, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// everything is Patient/x/$everything for p: the released compartment
// (without the audit trail) and the resources outside it that released
// compartment resources refer to, themselves decided.
func (w *world) everything(p *principal, patient string, types []string) []*fact {
	var comp, out []*fact
	inComp := map[string]bool{}
	for _, r := range w.order {
		f := r.current()
		if f == nil || !slices.Contains(f.comp, patient) {
			continue
		}
		inComp[f.ref()] = true
		if w.released(p, f) {
			comp = append(comp, f)
		}
	}
	keep := func(f *fact) bool { return len(types) == 0 || slices.Contains(types, f.typ) }
	for _, f := range comp {
		if keep(f) {
			out = append(out, f)
		}
	}
	seen := map[string]bool{}
	for _, f := range comp {
		for _, refs := range f.refs {
			for _, r := range refs {
				t := w.cur(r)
				if t == nil || inComp[r] || seen[r] {
					continue
				}
				seen[r] = true
				if keep(t) && w.released(p, t) {
					out = append(out, t)
				}
			}
		}
	}
	return out
}

// ---- the grammar ----

type gen struct {
	rng   *rand.Rand
	w     *world
	p     *principal
	audit []*auditEv
}

func (g *gen) pt() string {
	if g.p.kind == kPatient && chance(g.rng, 0.4) {
		return g.p.patient
	}
	return pick(g.rng, g.w.patients)
}

// someRef is a random resource of a type, current or not.
func (g *gen) someRef(typ string) string {
	rs := g.w.ofType(typ)
	if len(rs) == 0 || chance(g.rng, 0.03) {
		return typ + "/nonexistent"
	}
	return pick(g.rng, rs).ref()
}

func (g *gen) idOf(typ string) string { _, id, _ := strings.Cut(g.someRef(typ), "/"); return id }

func (g *gen) patientRefClause(param string) clause {
	pt := g.pt()
	if chance(g.rng, 0.5) {
		return cRef(param, trimPatient(pt))
	}
	return cRef(param, pt)
}

func (g *gen) day() string {
	if chance(g.rng, 0.15) {
		return fmt.Sprint(2015 + g.rng.IntN(10))
	}
	// a day some resource has, or any day
	if chance(g.rng, 0.6) {
		var days []string
		for _, r := range g.w.ofType("Observation") {
			if f := r.current(); f != nil {
				if d, ok := f.body["effectiveDateTime"].(string); ok {
					days = append(days, d)
				}
			}
		}
		if len(days) > 0 {
			return pick(g.rng, days)
		}
	}
	return g.w.day()
}

func (g *gen) namePrefix(typ string) string {
	var names []string
	for _, r := range g.w.ofType(typ) {
		if f := r.current(); f != nil {
			names = append(names, f.strs["name"]...)
		}
	}
	if len(names) == 0 {
		return "zz"
	}
	n := pick(g.rng, names)
	return n[:min(len(n), 3+g.rng.IntN(4))]
}

func (g *gen) anyPerson() string {
	if chance(g.rng, 0.3) {
		return g.pt()
	}
	return pick(g.rng, practs)
}

// clausesFor draws the parameters of a search of typ.
func (g *gen) clausesFor(typ string) []clause {
	rng := g.rng
	one := func() []clause {
		switch typ {
		case "Observation":
			switch rng.IntN(11) {
			case 0:
				return nil
			case 1:
				return []clause{g.patientRefClause("patient")}
			case 2:
				return []clause{cRef("subject", g.pt())}
			case 3:
				return []clause{cRef("performer", g.anyPerson())}
			case 4:
				return []clause{cToken("code", pick(rng, obsCodes), chance(rng, 0.5))}
			case 5:
				return []clause{cDate("date", pick(rng, []string{"", "eq", "ge", "le", "gt", "lt", "ne"}), g.day())}
			case 6:
				return []clause{cToken("status", coding{"", pick(rng, []string{"final", "amended", "preliminary"})}, false)}
			case 7:
				return []clause{cChain("subject", "Patient", cString("name", g.namePrefix("Patient")))}
			case 8:
				mrn := pick(rng, []coding{{mrnCity, "C0000"}, {mrnCity, "C0002"}, {mrnOther, "O0001"}, {mrnOther, "O0003"}})
				c := cToken("identifier", mrn, true)
				return []clause{{"patient.identifier", c.value, cChain("patient", "Patient", c).match}}
			case 9:
				return []clause{cChain("performer", "Practitioner", cString("name", g.namePrefix("Practitioner")))}
			default:
				return []clause{cID(g.idOf(typ), g.idOf(typ))}
			}
		case "Condition":
			switch rng.IntN(5) {
			case 0:
				return nil
			case 1:
				return []clause{g.patientRefClause("patient")}
			case 2:
				return []clause{cToken("code", pick(rng, condCodes), chance(rng, 0.5))}
			case 3:
				return []clause{cRef("asserter", g.anyPerson())}
			default:
				return []clause{cChain("patient", "Patient", cString("name", g.namePrefix("Patient")))}
			}
		case "Encounter":
			switch rng.IntN(5) {
			case 0:
				return []clause{g.patientRefClause("patient")}
			case 1:
				return []clause{cRef("location", g.someRef("Location"))}
			case 2:
				return []clause{cRef("service-provider", pick(rng, orgs))}
			case 3:
				return []clause{cChain("location", "Location", cString("name", g.namePrefix("Location")))}
			default:
				return []clause{cToken("status", coding{"", "finished"}, false)}
			}
		case "MedicationRequest":
			switch rng.IntN(6) {
			case 0:
				return []clause{g.patientRefClause("patient")}
			case 1:
				return []clause{cRef("medication", g.someRef("Medication"))}
			case 2:
				return []clause{cToken("status", coding{"", pick(rng, []string{"active", "stopped"})}, false)}
			case 3:
				return []clause{cRef("requester", g.anyPerson())}
			case 4:
				return []clause{cDate("authoredon", pick(rng, []string{"ge", "lt"}), g.day())}
			default:
				return []clause{cChain("medication", "Medication", cToken("code", pick(rng, medCodes), chance(rng, 0.5)))}
			}
		case "DocumentReference":
			switch rng.IntN(3) {
			case 0:
				return []clause{g.patientRefClause("patient")}
			case 1:
				return []clause{cRef("author", g.anyPerson())}
			default:
				return []clause{cToken("type", pick(rng, docTypes), false)}
			}
		case "Provenance":
			switch rng.IntN(4) {
			case 0:
				return nil
			case 1:
				return []clause{cRef("target", pick(rng, g.w.order).ref())}
			case 2:
				return []clause{cRef("patient", g.pt())}
			default:
				return []clause{cRef("agent", pick(rng, append(slices.Clone(orgs), practs...)))}
			}
		case "Group":
			if chance(rng, 0.5) {
				return nil
			}
			return []clause{cRef("member", g.pt())}
		case "Bundle":
			switch rng.IntN(3) {
			case 0:
				return nil
			case 1:
				return []clause{cToken("type", coding{"", pick(rng, []string{"collection", "document"})}, false)}
			default:
				return []clause{cID(g.idOf("Bundle"))}
			}
		case "Binary":
			if chance(rng, 0.5) {
				return nil
			}
			return []clause{cID(g.idOf("Binary"))}
		case "Patient":
			switch rng.IntN(10) {
			case 0:
				return nil
			case 1:
				return []clause{cString("name", g.namePrefix("Patient"))}
			case 2:
				id := pick(rng, []coding{{mrnCity, "C0000"}, {mrnCity, "C0002"}, {mrnOther, "O0001"}, {"", "O0003"}})
				return []clause{cToken("identifier", id, id.sys != "")}
			case 3:
				return []clause{cRef("general-practitioner", pick(rng, practs))}
			case 4:
				return []clause{cRef("organization", pick(rng, orgs))}
			case 5:
				return []clause{cHas("Observation", "patient", cToken("code", pick(rng, obsCodes), false))}
			case 6:
				return []clause{cHas("Condition", "patient", cToken("code", pick(rng, condCodes), false))}
			case 7:
				return []clause{cHas("MedicationRequest", "subject", cRef("medication", g.someRef("Medication")))}
			case 8:
				return []clause{cHas("Group", "member", cID("grp-0", "grp-1"))}
			default:
				return []clause{cID(g.idOf("Patient"))}
			}
		case "Practitioner":
			switch rng.IntN(6) {
			case 0:
				return nil
			case 1:
				return []clause{cString("name", g.namePrefix("Practitioner"))}
			case 2:
				return []clause{cHas("Observation", "performer", cToken("code", pick(rng, obsCodes), false))}
			case 3:
				return []clause{cHas("Observation", "performer", cRef("patient", g.pt()))}
			case 4:
				return []clause{cHas("Condition", "asserter", cRef("patient", g.pt()))}
			default:
				return []clause{cHas("MedicationRequest", "requester", cRef("patient", g.pt()))}
			}
		case "Organization":
			switch rng.IntN(5) {
			case 0:
				return nil
			case 1:
				return []clause{cString("name", g.namePrefix("Organization"))}
			case 2:
				return []clause{cHas("Encounter", "service-provider", cRef("patient", g.pt()))}
			case 3:
				return []clause{cHas("Patient", "organization", cString("name", g.namePrefix("Patient")))}
			default:
				return []clause{cHas("Observation", "performer", cRef("patient", g.pt()))}
			}
		case "Location":
			switch rng.IntN(3) {
			case 0:
				return nil
			case 1:
				return []clause{cString("name", g.namePrefix("Location"))}
			default:
				return []clause{cHas("Encounter", "location", cRef("patient", g.pt()))}
			}
		case "Medication":
			switch rng.IntN(5) {
			case 0:
				return nil
			case 1:
				return []clause{cToken("code", pick(rng, medCodes), chance(rng, 0.5))}
			case 2:
				return []clause{cHas("MedicationRequest", "medication", cRef("patient", g.pt()))}
			case 3:
				return []clause{cHas("MedicationRequest", "medication", cToken("status", coding{"", "active"}, false))}
			default:
				return []clause{cHas("MedicationRequest", "medication", cRef("subject", g.pt()))}
			}
		case "Consent":
			switch rng.IntN(3) {
			case 0:
				return nil
			case 1:
				return []clause{g.patientRefClause("patient")}
			default:
				return []clause{cToken("status", coding{"", "active"}, false)}
			}
		}
		return nil
	}
	cs := one()
	if chance(rng, 0.2) {
		cs = append(cs, one()...)
	}
	return cs
}

// includesFor are the _include/_revinclude choices per type.
var includesFor = map[string][]include{
	"Observation": {{source: "Observation", param: "subject"}, {source: "Observation", param: "patient"}, {source: "Observation", param: "performer"},
		{source: "Observation", param: "performer", target: "Practitioner"}, {rev: true, source: "Provenance", param: "target"},
		{iterate: true, source: "Patient", param: "general-practitioner"}, {rev: true, iterate: true, source: "Provenance", param: "target"},
		{iterate: true, source: "Patient", param: "organization"}},
	"Condition": {{source: "Condition", param: "subject"}, {source: "Condition", param: "asserter"}, {rev: true, source: "Provenance", param: "target"}},
	"Encounter": {{source: "Encounter", param: "location"}, {source: "Encounter", param: "service-provider"}, {source: "Encounter", param: "patient"},
		{iterate: true, source: "Location", param: "organization"}},
	"MedicationRequest": {{source: "MedicationRequest", param: "medication"}, {source: "MedicationRequest", param: "requester"},
		{source: "MedicationRequest", param: "patient"}, {rev: true, iterate: true, source: "MedicationRequest", param: "medication"},
		{rev: true, iterate: true, source: "Provenance", param: "target"}},
	"DocumentReference": {{source: "DocumentReference", param: "subject"}, {source: "DocumentReference", param: "author"}},
	"Provenance": {{source: "Provenance", param: "target"}, {source: "Provenance", param: "agent"}, {iterate: true, source: "Observation", param: "patient"},
		{iterate: true, source: "Condition", param: "subject"}},
	"Group": {{source: "Group", param: "member"}, {rev: true, iterate: true, source: "Observation", param: "subject"}},
	"Patient": {{rev: true, source: "Observation", param: "subject"}, {rev: true, source: "Observation", param: "patient"}, {rev: true, source: "Condition", param: "patient"},
		{rev: true, source: "Provenance", param: "target"}, {rev: true, source: "Group", param: "member"}, {rev: true, source: "MedicationRequest", param: "subject"},
		{rev: true, source: "Encounter", param: "patient"}, {rev: true, source: "Consent", param: "patient"}, {source: "Patient", param: "general-practitioner"},
		{source: "Patient", param: "organization"}, {iterate: true, source: "Observation", param: "performer"}, {iterate: true, source: "MedicationRequest", param: "medication"},
		{rev: true, iterate: true, source: "Provenance", param: "target"}},
	"Medication": {{rev: true, source: "MedicationRequest", param: "medication"}, {rev: true, source: "Provenance", param: "target"},
		{iterate: true, source: "MedicationRequest", param: "subject"}, {iterate: true, source: "MedicationRequest", param: "patient"}},
	"Practitioner": {{rev: true, source: "Observation", param: "performer"}, {rev: true, source: "Condition", param: "asserter"}, {rev: true, source: "MedicationRequest", param: "requester"},
		{rev: true, source: "DocumentReference", param: "author"}, {rev: true, source: "Patient", param: "general-practitioner"}, {iterate: true, source: "Observation", param: "subject"}},
	"Location":     {{rev: true, source: "Encounter", param: "location"}, {iterate: true, source: "Encounter", param: "patient"}},
	"Organization": {{rev: true, source: "Encounter", param: "service-provider"}, {rev: true, source: "Patient", param: "organization"}, {rev: true, source: "Location", param: "organization"}, {rev: true, source: "Provenance", param: "agent"}, {iterate: true, source: "Encounter", param: "patient"}},
	"Consent":      {{source: "Consent", param: "patient"}, {source: "Consent", param: "actor"}},
}

var searchTypes = []string{"Observation", "Observation", "Observation", "Condition", "Encounter", "MedicationRequest", "DocumentReference", "Provenance", "Provenance",
	"Group", "Bundle", "Bundle", "Binary", "Patient", "Patient", "Practitioner", "Organization", "Location", "Medication", "Medication", "Consent"}

var compartmentTypes = []string{"Observation", "Condition", "Encounter", "MedicationRequest", "DocumentReference", "Provenance", "Group", "Consent"}

// search draws a search of typ (in a compartment when comp is set).
func (g *gen) search(typ, comp string) *query {
	rng := g.rng
	q := &query{kind: qSearch, method: "GET", typ: typ, compartment: comp, clauses: g.clausesFor(typ)}
	var ps []string
	for _, c := range q.clauses {
		ps = append(ps, url.QueryEscape(c.param)+"="+url.QueryEscape(c.value))
	}
	switch ins := includesFor[typ]; {
	case len(ins) > 0 && chance(rng, 0.25):
		for _, in := range someOf(rng, ins, 3) {
			q.includes = append(q.includes, in)
			ps = append(ps, in.String())
		}
		ps = append(ps, "_count=500")
	case chance(rng, 0.15):
		q.summaryCount = true
		ps = append(ps, "_summary=count")
	default:
		switch x := rng.Float64(); {
		case x < 0.08:
			ps = append(ps, "_summary=true")
		case x < 0.16:
			ps = append(ps, "_elements=id")
		case x < 0.26:
			ps = append(ps, "_total=accurate")
		}
		switch x := rng.Float64(); {
		case x < 0.1:
			ps = append(ps, "_sort=-_lastUpdated")
		case x < 0.15:
			ps = append(ps, "_sort=_id")
		}
		if chance(rng, 0.35) {
			ps = append(ps, fmt.Sprintf("_count=%d", 1+rng.IntN(3)))
		}
	}
	rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	base := "/" + typ
	if comp != "" {
		base = "/" + comp + "/" + typ
	}
	q.path = base
	if len(ps) > 0 {
		q.path += "?" + strings.Join(ps, "&")
	}
	if comp == "" && len(ps) > 0 && chance(rng, 0.05) {
		// the same search as a form POST
		q.method, q.path, q.body = "POST", "/"+typ+"/_search", []byte(strings.Join(ps, "&"))
		q.header = []string{"Content-Type: application/x-www-form-urlencoded"}
	}
	return q
}

// next draws one query for the principal.
func (g *gen) next() *query {
	rng := g.rng
	w := g.w
	switch x := rng.IntN(100); {
	case x < 12: // read
		ref := pick(rng, w.order).ref()
		if chance(rng, 0.03) {
			ref = pick(rng, w.types()) + "/nonexistent"
		}
		return &query{kind: qRead, method: "GET", path: "/" + ref, ref: ref}
	case x < 18: // vread
		r := pick(rng, w.order)
		vid := r.vers[rng.IntN(len(r.vers))].vid
		if chance(rng, 0.05) {
			vid = "99"
		}
		return &query{kind: qVRead, method: "GET", path: "/" + r.ref() + "/_history/" + vid, ref: r.ref(), vid: vid}
	case x < 23: // instance history
		r := pick(rng, w.order)
		return &query{kind: qHistory, method: "GET", path: "/" + r.ref() + "/_history" + g.pageParam("?"), ref: r.ref()}
	case x < 27: // type history
		typ := pick(rng, w.types())
		return &query{kind: qHistory, method: "GET", path: "/" + typ + "/_history" + g.pageParam("?"), typ: typ, histLevel: 1}
	case x < 29: // system history
		return &query{kind: qHistory, method: "GET", path: "/_history" + g.pageParam("?"), histLevel: 2}
	case x < 35: // compartment search
		pt := g.pt()
		return g.search(pick(rng, compartmentTypes), pt)
	case x < 41: // $everything
		pt := g.pt()
		if chance(rng, 0.04) {
			pt = "Patient/nonexistent"
		}
		q := &query{kind: qEverything, method: "GET", patient: pt}
		var ps []string
		if chance(rng, 0.25) {
			q.types = someOf(rng, []string{"Observation", "Condition", "Medication", "Practitioner", "Patient", "Location", "Organization", "Consent", "Group", "Provenance"}, 3)
			ps = append(ps, "_type="+strings.Join(q.types, ","))
		}
		if chance(rng, 0.4) {
			ps = append(ps, fmt.Sprintf("_count=%d", 1+rng.IntN(4)))
		}
		q.path = "/" + pt + "/$everything"
		if len(ps) > 0 {
			q.path += "?" + strings.Join(ps, "&")
		}
		return q
	case x < 46: // batch of GETs
		q := &query{kind: qBatch, method: "POST", path: "/"}
		for range 1 + rng.IntN(4) {
			var e *query
			switch rng.IntN(4) {
			case 0, 1:
				ref := pick(rng, w.order).ref()
				e = &query{kind: qRead, method: "GET", path: ref, ref: ref}
			case 2:
				r := pick(rng, w.order)
				vid := r.vers[rng.IntN(len(r.vers))].vid
				e = &query{kind: qVRead, method: "GET", path: r.ref() + "/_history/" + vid, ref: r.ref(), vid: vid}
			default:
				typ := pick(rng, []string{"Observation", "Patient", "Medication", "Provenance", "Bundle"})
				s := &query{kind: qSearch, method: "GET", typ: typ, clauses: g.clausesFor(typ)}
				var ps []string
				for _, c := range s.clauses {
					ps = append(ps, url.QueryEscape(c.param)+"="+url.QueryEscape(c.value))
				}
				s.path = typ + "?" + strings.Join(append(ps, "_count=500"), "&")
				e = s
			}
			q.entries = append(q.entries, e)
		}
		return q
	case x < 50: // the audit trail
		if len(g.audit) == 0 || chance(rng, 0.5) {
			pt := g.pt()
			return &query{kind: qAuditSearch, method: "GET", path: "/AuditEvent?patient=" + url.QueryEscape(pt) + "&date=le" + url.QueryEscape(fhir.FormatInstant(g.w.frozen)) + g.pageParam("&"), auditPatient: pt}
		}
		id := pick(rng, g.audit).id
		if chance(rng, 0.05) {
			id = "audit-9999999999999999"
		}
		return &query{kind: qAuditRead, method: "GET", path: "/AuditEvent/" + id, auditID: id}
	}
	return g.search(pick(rng, searchTypes), "")
}

// pageParam asks for small pages now and then.
func (g *gen) pageParam(sep string) string {
	if chance(g.rng, 0.5) {
		return fmt.Sprintf("%s_count=%d", sep, 1+g.rng.IntN(4))
	}
	return ""
}

var _ = time.Now
