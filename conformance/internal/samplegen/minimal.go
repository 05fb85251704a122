package samplegen

import (
	"encoding/json"
	"fmt"
	"slices"
)

// maxDepth bounds the required-element recursion (the R4 model has no
// required cycles, but a contentReference could make one).
const maxDepth = 10

// primitiveSamples are the values the generator writes for required
// primitives without a required binding.
var primitiveSamples = map[string]any{
	"boolean":      true,
	"integer":      json.Number("1"),
	"unsignedInt":  json.Number("1"),
	"positiveInt":  json.Number("1"),
	"decimal":      json.Number("1"),
	"string":       "conformance",
	"markdown":     "conformance",
	"code":         "conformance",
	"id":           "conformance",
	"uri":          "http://example.org/fhirgate/conformance",
	"url":          "http://example.org/fhirgate/conformance",
	"canonical":    "http://example.org/fhirgate/conformance",
	"oid":          "urn:oid:1.2.3.4",
	"uuid":         "urn:uuid:6f1a2c9e-3b57-4d8e-9a41-0c2b7e5d8f13",
	"date":         "2021-01-01",
	"dateTime":     "2021-01-01",
	"instant":      "2021-01-01T00:00:00Z",
	"time":         "10:00:00",
	"base64Binary": "AAAA",
	"xhtml":        `<div xmlns="http://www.w3.org/1999/xhtml">conformance</div>`,
}

// complexDefaults are the values of required complex elements whose own
// children are all optional (an empty object is invalid, ele-1), chosen to
// satisfy the type's invariants (att-1, cpt-2, qty-3, age-1, ...).
var complexDefaults = map[string]string{
	"CodeableConcept": `{"text":"conformance"}`,
	"Coding":          `{"system":"urn:fhirgate:conformance","code":"conformance"}`,
	"Reference":       `{"display":"conformance"}`,
	"Identifier":      `{"system":"urn:fhirgate:conformance","value":"conformance"}`,
	"Period":          `{"start":"2021-01-01"}`,
	"Quantity":        `{"value":1,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}`,
	"SimpleQuantity":  `{"value":1,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}`,
	"MoneyQuantity":   `{"value":1,"unit":"USD","system":"urn:iso:std:iso:4217","code":"USD"}`,
	"Age":             `{"value":1,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}`,
	"Duration":        `{"value":1,"unit":"min","system":"http://unitsofmeasure.org","code":"min"}`,
	"Distance":        `{"value":1,"unit":"m","system":"http://unitsofmeasure.org","code":"m"}`,
	"Count":           `{"value":1,"system":"http://unitsofmeasure.org","code":"1"}`,
	"Money":           `{"value":1,"currency":"USD"}`,
	"Range":           `{"low":{"value":1,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}`,
	"Ratio":           `{"numerator":{"value":1},"denominator":{"value":1}}`,
	"HumanName":       `{"family":"Conformance"}`,
	"Address":         `{"city":"Conformance"}`,
	"ContactPoint":    `{"system":"phone","value":"1"}`,
	"ContactDetail":   `{"name":"conformance"}`,
	"Attachment":      `{"contentType":"text/plain","data":"AAAA"}`,
	"Timing":          `{"event":["2021-01-01"]}`,
	"Dosage":          `{"text":"conformance"}`,
	"Extension":       `{"url":"http://example.org/fhirgate/extension","valueString":"conformance"}`,
	"Expression":      `{"language":"text/fhirpath","expression":"true"}`,
}

// choicePreference orders the types tried for a required choice element.
var choicePreference = []string{"string", "CodeableConcept", "Reference", "boolean", "dateTime", "Period", "Quantity", "integer", "uri", "canonical", "Coding", "date"}

// chooseType picks the type written for a required choice element.
func chooseType(e *element) typeRef {
	for _, p := range choicePreference {
		for _, tr := range e.Types {
			if tr.Code == p && tr.Profile == "" {
				return tr
			}
		}
	}
	return e.Types[0]
}

// fill adds every missing required child of n to obj.
func (g *gen) fill(obj map[string]any, n node, depth int) {
	if depth > maxDepth {
		return
	}
	for _, e := range g.m.kids(n) {
		if e.Min == 0 || len(e.Types) == 0 && e.ContentRef == "" {
			continue
		}
		name := lastSeg(e.Path)
		tr := typeRef{}
		if len(e.Types) > 0 {
			tr = e.Types[0]
		}
		key := name
		if base, ok := cutChoice(name); ok {
			if hasChoice(obj, base) {
				continue
			}
			tr = chooseType(e)
			key = base + upperFirst(tr.Code)
		} else if _, ok := obj[key]; ok {
			continue
		}
		v := g.value(n, e, tr, depth+1)
		if v == nil {
			continue
		}
		if e.Array {
			v = []any{v}
		}
		obj[key] = v
	}
}

// value is a valid value of element e with type tr.
func (g *gen) value(n node, e *element, tr typeRef, depth int) any {
	if d, ok := elementDefaults[e.Path]; ok {
		v := mustJSON(d)
		if obj, ok := v.(map[string]any); ok {
			if into, ok := g.m.into(n, e, tr); ok {
				g.fill(obj, into, depth)
			}
		}
		return v
	}
	name := typeName(tr)
	if g.m.isPrimitive(name) {
		if name == "code" && isMimeBinding(e) {
			return "text/plain"
		}
		if cs := g.m.codes(e); len(cs) > 0 && name == "code" {
			return cs[0].Code
		}
		return primitiveSamples[name]
	}
	if cs := g.m.codes(e); len(cs) > 0 {
		switch name {
		case "Coding":
			return coding(cs[0])
		case "CodeableConcept":
			return map[string]any{"coding": []any{coding(cs[0])}}
		}
	}
	if d, ok := complexDefaults[name]; ok && e.ContentRef == "" {
		return mustJSON(d)
	}
	into, ok := g.m.into(n, e, tr)
	if !ok {
		return nil
	}
	obj := map[string]any{}
	g.fill(obj, into, depth)
	if len(obj) == 0 {
		// every child is optional: write the first ordinary one
		for _, k := range g.m.kids(into) {
			kn := lastSeg(k.Path)
			if slices.Contains([]string{"id", "extension", "modifierExtension"}, kn) || len(k.Types) == 0 && k.ContentRef == "" {
				continue
			}
			ktr := typeRef{}
			if len(k.Types) > 0 {
				ktr = k.Types[0]
			}
			key := kn
			if base, ok := cutChoice(kn); ok {
				ktr = chooseType(k)
				key = base + upperFirst(ktr.Code)
			}
			v := g.value(into, k, ktr, depth+1)
			if v == nil {
				continue
			}
			if k.Array {
				v = []any{v}
			}
			obj[key] = v
			break
		}
	}
	return obj
}

func coding(c code) map[string]any {
	m := map[string]any{"code": c.Code}
	if c.System != "" {
		m["system"] = c.System
	}
	return m
}

// cutChoice returns the base of a choice element name ("value" for "value[x]").
func cutChoice(name string) (string, bool) {
	if len(name) > 3 && name[len(name)-3:] == "[x]" {
		return name[:len(name)-3], true
	}
	return name, false
}

// hasChoice reports whether obj holds some type of the choice element base.
func hasChoice(obj map[string]any, base string) bool {
	for k := range obj {
		if len(k) > len(base) && k[:len(base)] == base && k[len(base)] >= 'A' && k[len(base)] <= 'Z' {
			return true
		}
	}
	return false
}

// minimal builds the minimal instance of a resource type: its required
// elements, then the hand-written override for the type's invariants.
func (g *gen) minimal(typ string) (map[string]any, error) {
	obj := map[string]any{}
	g.fill(obj, node{typ, typ}, 0)
	if o, ok := overrides[typ]; ok {
		merge(obj, mustJSON(o).(map[string]any))
	}
	obj["resourceType"] = typ
	return obj, nil
}

// merge copies src's members into dst, replacing what is there; a null
// member in src removes the key.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		dst[k] = v
	}
}

func mustJSON(s string) any {
	v, err := decodeJSON([]byte(s))
	if err != nil {
		panic(fmt.Sprintf("samplegen: bad JSON literal %s: %v", s, err))
	}
	return v
}

func decodeJSON(b []byte) (any, error) {
	var v any
	d := json.NewDecoder(bytesReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
