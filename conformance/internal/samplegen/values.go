package samplegen

import (
	"encoding/json"
	"slices"
	"strings"
)

// Placeholders in the generated templates and queries, replaced by the
// suite at run time: Unique by the run's unique token, and
// "%R:Type:n%" by the id of the suite's n-th target resource of Type.
const (
	Unique    = "%U%"
	refPrefix = "%R:"
)

// RefPlaceholder is the placeholder of the suite's n-th resource of typ.
func RefPlaceholder(typ string, n int) string {
	return refPrefix + typ + ":" + string(rune('0'+n)) + "%"
}

// valuePair is what a sample writes: the value of resource A and of
// resource B and the query value that finds each.
type valuePair struct {
	a, b   any
	qa, qb string
}

const (
	confSystem = "urn:fhirgate:conformance"
	alpha      = "alpha-" + Unique
	beta       = "beta-" + Unique
)

// preferredTargets are tried first as reference targets: types whose
// minimal instance is small.
var preferredTargets = []string{"Patient", "Practitioner", "Organization", "Location", "Device", "Group", "Encounter", "Substance", "Medication"}

// leafValues returns the values a parameter of kind writes into an element
// of type leaf (e and targets describe the element), or false when the
// generator has no value for that combination.
func (g *gen) leafValues(kind string, leaf typeRef, e *element, target string, paramTargets []string) (valuePair, bool) {
	name := typeName(leaf)
	switch kind {
	case "token":
		return g.tokenValues(name, e)
	case "string":
		switch name {
		case "string", "markdown":
			return valuePair{"Alpha-" + Unique + " text", "Beta-" + Unique + " text", "alpha-" + Unique, "beta-" + Unique}, true
		case "HumanName":
			return valuePair{map[string]any{"family": "Alpha-" + Unique}, map[string]any{"family": "Beta-" + Unique}, "alpha-" + Unique, "beta-" + Unique}, true
		case "Address":
			return valuePair{map[string]any{"city": "Alpha-" + Unique}, map[string]any{"city": "Beta-" + Unique}, "alpha-" + Unique, "beta-" + Unique}, true
		}
	case "date":
		switch name {
		case "date", "dateTime":
			return valuePair{"2021-03-04", "2022-05-06", "2021-03-04", "2022-05-06"}, true
		case "instant":
			return valuePair{"2021-03-04T10:00:00Z", "2022-05-06T10:00:00Z", "2021-03-04", "2022-05-06"}, true
		case "Period":
			return valuePair{
				map[string]any{"start": "2021-03-04T08:00:00Z", "end": "2021-03-04T09:00:00Z"},
				map[string]any{"start": "2022-05-06T08:00:00Z", "end": "2022-05-06T09:00:00Z"},
				"2021-03-04", "2022-05-06"}, true
		case "Timing":
			return valuePair{map[string]any{"event": []any{"2021-03-04"}}, map[string]any{"event": []any{"2022-05-06"}}, "2021-03-04", "2022-05-06"}, true
		}
	case "number":
		switch name {
		case "integer", "positiveInt", "unsignedInt", "decimal":
			return valuePair{json.Number("42"), json.Number("7"), "42", "7"}, true
		}
	case "quantity":
		unit, system := "", "http://unitsofmeasure.org"
		va, vb := "5.4", "7.1"
		switch name {
		case "Quantity", "SimpleQuantity":
			unit = "mg"
		case "Age":
			unit = "a"
		case "Duration":
			unit = "min"
		case "Distance":
			unit = "m"
		case "Count":
			unit, va, vb = "1", "5", "7"
		case "MoneyQuantity":
			unit, system = "USD", "urn:iso:std:iso:4217"
		case "Money":
			return valuePair{
				map[string]any{"value": json.Number(va), "currency": "USD"},
				map[string]any{"value": json.Number(vb), "currency": "USD"},
				va, vb}, true
		default:
			return valuePair{}, false
		}
		q := func(v string) map[string]any {
			return map[string]any{"value": json.Number(v), "unit": unit, "system": system, "code": unit}
		}
		return valuePair{q(va), q(vb), va + "|" + system + "|" + unit, vb + "|" + system + "|" + unit}, true
	case "uri":
		switch name {
		case "uri", "url", "canonical":
			return valuePair{"http://example.org/fhirgate/" + alpha, "http://example.org/fhirgate/" + beta,
				"http://example.org/fhirgate/" + alpha, "http://example.org/fhirgate/" + beta}, true
		}
	case "reference":
		switch name {
		case "canonical", "uri", "url":
			return valuePair{"http://example.org/fhirgate/" + alpha, "http://example.org/fhirgate/" + beta,
				"http://example.org/fhirgate/" + alpha, "http://example.org/fhirgate/" + beta}, true
		case "Resource":
			// an embedded resource (Bundle.entry[0].resource) is found by
			// its type and id
			t := g.pickTarget(nil, target, paramTargets)
			if t == "" {
				return valuePair{}, false
			}
			ma, err := g.minimal(t)
			if err != nil {
				return valuePair{}, false
			}
			mb := clone(ma)
			ma["id"], mb["id"] = alpha, beta
			return valuePair{ma, mb, t + "/" + alpha, t + "/" + beta}, true
		case "Reference":
			t := g.pickTarget(leaf.Targets, target, paramTargets)
			if t == "" {
				return valuePair{}, false
			}
			ra, rb := t+"/"+RefPlaceholder(t, 0), t+"/"+RefPlaceholder(t, 1)
			return valuePair{map[string]any{"reference": ra}, map[string]any{"reference": rb}, ra, rb}, true
		}
	}
	return valuePair{}, false
}

func (g *gen) tokenValues(name string, e *element) (valuePair, bool) {
	cs := g.m.codes(e)
	// a required binding fixes the codes: two distinct ones tell A from B
	var ca, cb code
	bound := len(cs) > 0
	if name == "code" && isMimeBinding(e) {
		ca, cb = code{Code: "application/x-" + alpha}, code{Code: "application/x-" + beta}
		return valuePair{ca.Code, cb.Code, ca.Code, cb.Code}, true
	}
	if bound {
		// the variant shifts the codes, for invariants that forbid one
		if len(cs) < g.variant+2 {
			return valuePair{}, false
		}
		ca, cb = cs[g.variant], cs[g.variant+1]
	} else {
		ca, cb = code{confSystem, alpha}, code{confSystem, beta}
	}
	tq := func(c code) string {
		if c.System == "" {
			return c.Code
		}
		return c.System + "|" + c.Code
	}
	switch name {
	case "code":
		return valuePair{ca.Code, cb.Code, ca.Code, cb.Code}, true
	case "Coding":
		return valuePair{coding(ca), coding(cb), tq(ca), tq(cb)}, true
	case "CodeableConcept":
		return valuePair{map[string]any{"coding": []any{coding(ca)}}, map[string]any{"coding": []any{coding(cb)}}, tq(ca), tq(cb)}, true
	case "Identifier":
		if bound {
			return valuePair{}, false
		}
		return valuePair{map[string]any{"system": confSystem, "value": alpha}, map[string]any{"system": confSystem, "value": beta},
			confSystem + "|" + alpha, confSystem + "|" + beta}, true
	case "boolean":
		return valuePair{true, false, "true", "false"}, true
	case "ContactPoint":
		return valuePair{map[string]any{"system": "phone", "value": alpha}, map[string]any{"system": "phone", "value": beta}, alpha, beta}, true
	case "string", "id":
		if bound {
			return valuePair{}, false
		}
		return valuePair{alpha, beta, alpha, beta}, true
	case "uri", "canonical", "url":
		if bound {
			return valuePair{}, false
		}
		return valuePair{"urn:fhirgate:" + alpha, "urn:fhirgate:" + beta, "urn:fhirgate:" + alpha, "urn:fhirgate:" + beta}, true
	}
	return valuePair{}, false
}

func isMimeBinding(e *element) bool { return strings.Contains(e.BindingURL, "mimetypes") }

// pickTarget chooses the resource type a reference sample points to.
func (g *gen) pickTarget(elemTargets []string, where string, paramTargets []string) string {
	ok := func(t string) bool {
		mt := g.m.byName[t]
		if mt == nil || mt.Kind != "resource" || mt.Abstract {
			return false
		}
		anyElem := len(elemTargets) == 0 || slices.Contains(elemTargets, "Resource")
		if !anyElem && !slices.Contains(elemTargets, t) {
			return false
		}
		return len(paramTargets) == 0 || slices.Contains(paramTargets, t)
	}
	if where != "" {
		if ok(where) {
			return where
		}
		return ""
	}
	for _, t := range preferredTargets {
		if ok(t) {
			return t
		}
	}
	cands := slices.Clone(paramTargets)
	if len(cands) == 0 {
		cands = slices.Clone(elemTargets)
	}
	slices.Sort(cands)
	for _, t := range cands {
		if ok(t) {
			return t
		}
	}
	return ""
}
