package consent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Code systems the decision understands.
const (
	ScopeSystem           = "http://terminology.hl7.org/CodeSystem/consentscope"
	ActionSystem          = "http://terminology.hl7.org/CodeSystem/consentaction"
	ResourceTypesSystem   = "http://hl7.org/fhir/resource-types"
	ConfidentialitySystem = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	PurposeOfUseSystem    = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
)

// Actions a request may perform on data (consentaction codes).
const (
	ActionAccess   = "access"   // read and search
	ActionUse      = "use"      // use within the recipient's own care
	ActionDisclose = "disclose" // send onward (a package)
	ActionCollect  = "collect"  // write new data
	ActionCorrect  = "correct"  // change existing data
)

// Treatment is the purpose of use a provider request has when its token
// states none (v3 ActReason TREAT); the server applies it, not this package.
var Treatment = Coding{System: PurposeOfUseSystem, Code: "TREAT"}

// Request is the requester side of a decision.
type Request struct {
	// Actors are the references the requester acts as: its Organization,
	// PractitionerRole and/or Practitioner (auth.Principal.Actors).
	Actors []string
	// Action is a consentaction code; "" means access.
	Action string
	// Purpose is the request's purpose of use; a provision that lists
	// purposes applies when one of them is among these.
	Purpose []Coding
	// Time is when the request happens (the decision's "now").
	Time time.Time
}

// Effect is the outcome of a decision.
type Effect uint8

// The effects. NoConsent denies too: nothing is visible without a Consent.
const (
	NoConsent Effect = iota
	Permit
	Deny
)

func (e Effect) String() string {
	switch e {
	case Permit:
		return "permit"
	case Deny:
		return "deny"
	}
	return "no-consent"
}

// Ref names a Consent version that took part in a decision.
type Ref struct {
	Reference string // "Consent/id"
	Version   string // meta.versionId, "" when unknown
}

// Decision is the outcome of Policy.Decide.
type Decision struct {
	Effect Effect
	// Consents are those that decided: for Permit the Consents that
	// permit, for Deny the ones that deny; empty for NoConsent.
	Consents []Ref
}

// Permitted reports whether the data may be released.
func (d Decision) Permitted() bool { return d.Effect == Permit }

// Skip records a Consent Compile left out, and why. It names the Consent
// and the reason only, so it may be logged.
type Skip struct {
	Ref    Ref
	Reason string
}

// Options tune Compile.
type Options struct {
	// Resolve loads the resource a provision.data reference with meaning
	// "related" names, so that the resources it refers to are covered too.
	// Without it (or when it fails) only the named resource itself
	// matches for a permit, and anything could for a deny. A caller that
	// caches Policies must recompile when those resources change.
	Resolve func(ref string) (*fhir.Resource, error)
}

// Policy is the compiled form of one patient's Consents: parsed once,
// decided many times. It is immutable and safe for concurrent use.
type Policy struct {
	patient  string
	consents []*compiled
	skipped  []Skip
	// needs say which parts of Data some provision looks at, so that
	// DecideResource extracts no more than that.
	needRefs, needAuthors, needCodes bool
}

type compiled struct {
	ref  Ref
	root *node
}

// node is one compiled provision.
type node struct {
	effect     Effect // Permit or Deny
	period     *Interval
	actors     []string
	actions    []string
	purposes   []Coding
	classes    []Coding
	codes      []Coding
	dataPeriod *Interval
	labels     []Coding
	data       []dataRef
	children   []*node
}

type dataRef struct {
	meaning string
	ref     string
	// related are the references the named resource makes (meaning
	// "related"); resolved reports whether they could be loaded.
	related  []string
	resolved bool
}

// Limits against hostile Consents.
const (
	maxDepth      = 8
	maxProvisions = 200
)

// Compile builds the Policy of patient ("Patient/id") from the Consents
// that may concern them. Consents that are not active, not of scope
// patient-privacy, about another patient or without a permit or deny
// provision are left out (see Skipped): they can never permit anything.
func Compile(patient string, consents []*fhir.Resource, opts Options) *Policy {
	p := &Policy{patient: patient}
	for _, res := range consents {
		ref := Ref{Reference: "Consent/" + res.ID, Version: res.VersionID}
		c, reason := p.compile(res, opts)
		if c == nil {
			p.skipped = append(p.skipped, Skip{Ref: ref, Reason: reason})
			continue
		}
		c.ref = ref
		p.consents = append(p.consents, c)
	}
	return p
}

func (p *Policy) compile(res *fhir.Resource, opts Options) (*compiled, string) {
	if res.Type != "Consent" {
		return nil, "not a Consent"
	}
	root := res.Root()
	if st := root.Get("status").String(); st != "active" {
		return nil, "status is " + orNone(st)
	}
	if !hasCoding(root.Get("scope"), ScopeSystem, "patient-privacy") {
		return nil, "scope is not patient-privacy"
	}
	if pat, _ := localRef(root.Get("patient").Get("reference").String()); pat == "" || pat != p.patient {
		return nil, "about another patient"
	}
	prov := root.Get("provision")
	if prov == nil {
		return nil, "no provision"
	}
	count := 0
	n, err := p.compileNode(prov, 0, &count, opts)
	if err != nil {
		return nil, err.Error()
	}
	return &compiled{root: n}, ""
}

func orNone(s string) string {
	if s == "" {
		return "missing"
	}
	return s
}

func (p *Policy) compileNode(v *fjson.Value, depth int, count *int, opts Options) (*node, error) {
	if v.Kind != fjson.Object {
		return nil, fmt.Errorf("provision is not an object")
	}
	*count++
	if depth >= maxDepth || *count > maxProvisions {
		return nil, fmt.Errorf("provisions nested deeper than %d or more than %d", maxDepth, maxProvisions)
	}
	n := &node{}
	switch t := v.Get("type").String(); {
	case t == "permit":
		n.effect = Permit
	case t == "deny":
		n.effect = Deny
	case depth == 0:
		return nil, fmt.Errorf("root provision type is %s", orNone(t))
	default:
		// A nested provision without a type is read as the stricter one.
		n.effect = Deny
	}
	if per := v.Get("period"); per != nil {
		iv, err := parsePeriod(per.Get("start").String(), per.Get("end").String())
		if err != nil {
			return nil, fmt.Errorf("provision.period: %w", err)
		}
		n.period = &iv
	}
	for _, a := range items(v.Get("actor")) {
		raw := a.Get("reference").Get("reference").String()
		ref, ok := localRef(raw)
		if !ok {
			// An actor the gateway cannot match (absolute, contained or
			// malformed reference) can never be the requester.
			ref = "\x00unmatchable"
		}
		n.actors = append(n.actors, ref)
	}
	for _, a := range items(v.Get("action")) {
		for _, c := range codingsOf(a) {
			if c.System == "" || c.System == ActionSystem {
				n.actions = append(n.actions, c.Code)
			} else {
				n.actions = append(n.actions, "\x00"+c.System+"|"+c.Code)
			}
		}
		if len(codingsOf(a)) == 0 {
			n.actions = append(n.actions, "\x00text-only")
		}
	}
	n.purposes = codings(v.Get("purpose"))
	n.classes = codings(v.Get("class"))
	for _, c := range items(v.Get("code")) {
		n.codes = append(n.codes, codingsOf(c)...)
		p.needCodes = true
	}
	if dp := v.Get("dataPeriod"); dp != nil {
		iv, err := parsePeriod(dp.Get("start").String(), dp.Get("end").String())
		if err != nil {
			return nil, fmt.Errorf("provision.dataPeriod: %w", err)
		}
		n.dataPeriod = &iv
	}
	n.labels = codings(v.Get("securityLabel"))
	for _, d := range items(v.Get("data")) {
		dr := dataRef{meaning: d.Get("meaning").String()}
		dr.ref, _ = localRef(d.Get("reference").Get("reference").String())
		switch dr.meaning {
		case "related":
			if opts.Resolve != nil && dr.ref != "" {
				if res, err := opts.Resolve(dr.ref); err == nil && res != nil {
					dr.related, dr.resolved = collectRefs(nil, res.Root(), 0), true
				}
			}
		case "dependents":
			p.needRefs = true
		case "authoredby":
			p.needAuthors = true
		}
		n.data = append(n.data, dr)
	}
	for _, c := range items(v.Get("provision")) {
		child, err := p.compileNode(c, depth+1, count, opts)
		if err != nil {
			return nil, err
		}
		n.children = append(n.children, child)
	}
	return n, nil
}

func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}

// codings reads an array of Coding.
func codings(v *fjson.Value) []Coding {
	var out []Coding
	for _, c := range items(v) {
		if code := c.Get("code").String(); code != "" {
			out = append(out, Coding{System: c.Get("system").String(), Code: code})
		} else {
			out = append(out, Coding{System: "\x00", Code: "\x00"}) // matches nothing known
		}
	}
	return out
}

func hasCoding(cc *fjson.Value, system, code string) bool {
	return slices.ContainsFunc(codingsOf(cc), func(c Coding) bool { return c.System == system && c.Code == code })
}

// Patient returns the patient the policy is about.
func (p *Policy) Patient() string { return p.patient }

// Skipped returns the Consents Compile left out and why.
func (p *Policy) Skipped() []Skip { return slices.Clone(p.skipped) }

// Len returns the number of Consents in force in the policy (active,
// patient-privacy, this patient); their periods are checked per decision.
func (p *Policy) Len() int { return len(p.consents) }

// DecideResource is Decide for a resource, extracting only the Data the
// policy's provisions look at.
func (p *Policy) DecideResource(req Request, res *fhir.Resource) Decision {
	d := dataHeader(res)
	root := res.Root()
	if p.needCodes {
		d.Codes = codingsOf(root.Get("code"))
		if res.Type == "DocumentReference" {
			d.Codes = append(d.Codes, codingsOf(root.Get("type"))...)
		}
	}
	if p.needRefs {
		d.References = collectRefs(nil, root, 0)
	}
	if p.needAuthors {
		for _, name := range authorElements {
			d.Authors = collectRefs(d.Authors, root.Get(name), 0)
		}
	}
	return p.Decide(req, d)
}

// Decide decides whether data of the policy's patient may be released for
// the request. Each Consent is evaluated on its own:
//
//   - its root provision applies when all its conditions hold: the request
//     time within period, the requester among the actors, the action and
//     purpose among those listed, the data of a listed class, code,
//     security label and data reference and within dataPeriod (a list
//     that is absent does not restrict; dataPeriod concerns only types
//     with a clinical date, see ClinicalDate: a permit covers data wholly
//     inside its window, a deny data that overlaps it);
//   - nested provisions are exceptions: the deepest applicable provision
//     decides (a deny carve-out inside a permit, a permit inside that
//     deny); when siblings disagree, deny wins;
//   - a permit only counts when its provision or an ancestor named the
//     requester as actor: a Consent never grants to everyone;
//   - a condition that cannot be evaluated (a class system or code the
//     gateway does not know, a resource without its clinical date, an
//     unresolved "related" reference) makes a permit not apply and a deny
//     apply.
//
// Across Consents, deny wins over permit; with neither, the result is
// NoConsent, which denies.
func (p *Policy) Decide(req Request, data Data) Decision {
	return p.decide(&req, &data)
}

// decide combines the Consents' effects for Decide (data) and
// DecideRelationship (nil data).
func (p *Policy) decide(req *Request, data *Data) Decision {
	var permits, denies []Ref
	for _, c := range p.consents {
		switch evalConsent(c.root, req, data) {
		case Permit:
			permits = append(permits, c.ref)
		case Deny:
			denies = append(denies, c.ref)
		}
	}
	switch {
	case len(denies) > 0:
		return Decision{Effect: Deny, Consents: denies}
	case len(permits) > 0:
		return Decision{Effect: Permit, Consents: permits}
	}
	return Decision{Effect: NoConsent}
}

// DecideRelationship decides whether the requester is, at the time of the
// request, a party the patient shares their record with: whether what the
// patient addressed to it — the second-opinion Task it owns or requested,
// the ServiceRequest naming it, the package made for it — may be released
// to it. Those resources are the patient's request to the party, not
// clinical data, so the conditions a Consent puts on data do not apply to
// them. Each Consent is evaluated as in Decide, on the conditions of the
// request alone:
//
//   - a permit provision applies when its period, actor, action and
//     purpose hold; its class, code, dataPeriod, securityLabel and data
//     conditions are not looked at (they say which data is shared, not
//     with whom);
//   - a deny provision with any of those data conditions is a carve-out
//     of data: it does not apply to the relationship, and neither do the
//     exceptions nested in it;
//   - a deny provision with request conditions only (this actor, during
//     this period, for this purpose or action, or none at all) applies:
//     the patient withholds everything from the requester, and so the
//     relationship too;
//   - the deepest applicable provision decides, deny wins among siblings
//     and across Consents, and a permit only counts when its provision or
//     an ancestor names the requester as actor, as in Decide.
//
// Consents Compile left out (inactive, revoked, another scope) take no
// part: without one in force the result is NoConsent, which denies. A
// permitted relationship releases no data: each clinical resource still
// goes through DecideResource.
func (p *Policy) DecideRelationship(req Request) Decision {
	return p.decide(&req, nil)
}

// Candidates returns the Consents that might permit something to the
// requester now: their root provision is in its period and some permit
// provision names one of the requester's actors. It over-approximates
// (data, action and purpose conditions are not looked at); an empty result
// means every Decide for this request is a refusal, so a search can skip
// the patient. The order is the Compile order.
func (p *Policy) Candidates(req Request) []Ref {
	var out []Ref
	for _, c := range p.consents {
		if (c.root.period == nil || c.root.period.Contains(req.Time)) && c.root.namesActor(req.Actors) {
			out = append(out, c.ref)
		}
	}
	return out
}

func (n *node) namesActor(actors []string) bool {
	if n.effect == Permit && slices.ContainsFunc(n.actors, func(a string) bool { return slices.Contains(actors, a) }) {
		return true
	}
	return slices.ContainsFunc(n.children, func(c *node) bool { return c.namesActor(actors) })
}

// tri is a condition outcome.
type tri uint8

const (
	yes tri = iota
	no
	unknown
)

func and(a, b tri) tri {
	if a == no || b == no {
		return no
	}
	if a == unknown || b == unknown {
		return unknown
	}
	return yes
}

// evalConsent returns the effect of one Consent: Permit, Deny or NoConsent
// (it does not apply). A nil data evaluates the relationship (see
// DecideRelationship) instead of a release of data.
func evalConsent(root *node, req *Request, data *Data) Effect {
	eff, ok := root.eval(req, data, false)
	if !ok {
		return NoConsent
	}
	return eff
}

// eval returns the effect of the deepest applicable provision under n,
// and whether n applies at all. actorBound says an ancestor named the
// requester. With data nil it evaluates the relationship: the request
// conditions only, and no deny that carves out data.
func (n *node) eval(req *Request, data *Data, actorBound bool) (Effect, bool) {
	var m tri
	switch {
	case data != nil:
		m = and(n.matchRequest(req), n.matchData(data))
	case n.effect == Deny && n.limitsData():
		m = no
	default:
		m = n.matchRequest(req)
	}
	if m == unknown {
		// Fail closed: an uncertain permit does not grant, an uncertain
		// deny applies.
		if n.effect == Permit {
			m = no
		} else {
			m = yes
		}
	}
	if m == no {
		return NoConsent, false
	}
	bound := actorBound || len(n.actors) > 0
	eff := n.effect
	if eff == Permit && !bound {
		eff = NoConsent
	}
	childEff, childApplies := NoConsent, false
	for _, c := range n.children {
		e, ok := c.eval(req, data, bound)
		if !ok {
			continue
		}
		if !childApplies || e == Deny {
			childEff = e
		}
		childApplies = true
		if e == Deny {
			break
		}
	}
	if childApplies {
		eff = childEff
	}
	return eff, true
}

// matchRequest checks the conditions on the request: period, actor,
// action, purpose.
func (n *node) matchRequest(req *Request) tri {
	if n.period != nil && !n.period.Contains(req.Time) {
		return no
	}
	if len(n.actors) > 0 && !slices.ContainsFunc(n.actors, func(a string) bool { return slices.Contains(req.Actors, a) }) {
		return no
	}
	if len(n.actions) > 0 {
		action := req.Action
		if action == "" {
			action = ActionAccess
		}
		if !slices.Contains(n.actions, action) {
			return no
		}
	}
	if len(n.purposes) > 0 && !slices.ContainsFunc(n.purposes, func(c Coding) bool { return slices.ContainsFunc(req.Purpose, c.matches) }) {
		return no
	}
	return yes
}

// limitsData reports whether the provision has a condition on the data
// (class, code, dataPeriod, securityLabel or data).
func (n *node) limitsData() bool {
	return len(n.classes) > 0 || len(n.codes) > 0 || n.dataPeriod != nil || len(n.labels) > 0 || len(n.data) > 0
}

// matches compares codings; a coding without a system matches on the code.
func (c Coding) matches(o Coding) bool {
	return c.Code == o.Code && (c.System == o.System || c.System == "" || o.System == "")
}

// matchData checks the conditions on the data.
func (n *node) matchData(d *Data) tri {
	r := yes
	if len(n.classes) > 0 {
		r = and(r, n.matchClass(d))
	}
	if len(n.codes) > 0 {
		switch {
		case len(d.Codes) == 0:
			r = and(r, unknown)
		case !slices.ContainsFunc(n.codes, func(c Coding) bool { return slices.ContainsFunc(d.Codes, c.matches) }):
			return no
		}
	}
	if n.dataPeriod != nil {
		// A data period concerns clinical data only: a type without a
		// clinical date (Patient, Organization, ...) is neither limited by
		// a permit's window nor caught by a deny's.
		switch {
		case !d.Dated && n.effect == Deny:
			return no
		case !d.Dated:
		case !d.HasPeriod:
			r = and(r, unknown)
		case n.effect == Permit && !d.Period.Within(*n.dataPeriod):
			// A permit covers data entirely inside its window...
			return no
		case n.effect == Deny && !d.Period.Overlaps(*n.dataPeriod):
			// ...a deny any data touching its window.
			return no
		}
	}
	if len(n.labels) > 0 {
		r = and(r, n.matchLabels(d))
	}
	if len(n.data) > 0 {
		r = and(r, n.matchDataRefs(d))
	}
	return r
}

func (n *node) matchClass(d *Data) tri {
	r := no
	for _, c := range n.classes {
		switch c.System {
		case ResourceTypesSystem:
			if c.Code == d.Type {
				return yes
			}
		default:
			// Profiles, MIME types, document classes: not evaluated.
			r = unknown
		}
	}
	return r
}

// confidentiality ranks the v3 Confidentiality codes.
var confidentiality = map[string]int{"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5}

// dataConfidentiality is the highest confidentiality label of the data;
// unlabelled data is normal (N).
func dataConfidentiality(d *Data) int {
	level, found := 0, false
	for _, s := range d.Security {
		if s.System == ConfidentialitySystem {
			if l, ok := confidentiality[s.Code]; ok && (!found || l > level) {
				level, found = l, true
			}
		}
	}
	if !found {
		return confidentiality["N"]
	}
	return level
}

// matchLabels: a confidentiality label is a high-water mark (a permit of
// R covers data up to R, a deny of R data at R and above); any other label
// matches data that carries it.
func (n *node) matchLabels(d *Data) tri {
	r := no
	for _, l := range n.labels {
		if l.System == ConfidentialitySystem {
			want, ok := confidentiality[l.Code]
			if !ok {
				r = unknown
				continue
			}
			have := dataConfidentiality(d)
			if (n.effect == Permit && have <= want) || (n.effect == Deny && have >= want) {
				return yes
			}
			continue
		}
		if slices.ContainsFunc(d.Security, l.matches) {
			return yes
		}
	}
	return r
}

func (n *node) matchDataRefs(d *Data) tri {
	self := d.Ref()
	r := no
	for _, dr := range n.data {
		if dr.ref == "" {
			r = unknown
			continue
		}
		switch dr.meaning {
		case "instance":
			if dr.ref == self {
				return yes
			}
		case "related":
			if dr.ref == self {
				return yes
			}
			if !dr.resolved {
				r = unknown
			} else if slices.Contains(dr.related, self) {
				return yes
			}
		case "dependents":
			if dr.ref == self || slices.Contains(d.References, dr.ref) {
				return yes
			}
		case "authoredby":
			if slices.Contains(d.Authors, dr.ref) {
				return yes
			}
		default:
			r = unknown
		}
	}
	return r
}

// String describes a decision for logs: effect and Consent ids only.
func (d Decision) String() string {
	refs := make([]string, len(d.Consents))
	for i, r := range d.Consents {
		refs[i] = r.Reference
	}
	return d.Effect.String() + " " + strings.Join(refs, ",")
}
