package search

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fhirpath"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// At names the parameter an index value belongs to. Values of a composite
// parameter carry the composite's code, a Group number shared by the
// components extracted from the same element (unique within the resource,
// starting at 1) and the Component index (0-based, in the order of
// Param.Components), so that a store can join the components of one
// element. Group is 0 for every other value.
type At struct {
	Param     string
	Group     int
	Component int
}

// StringValue is a value of a string parameter. Norm is Normalize(Exact);
// the default search is a prefix match on Norm, :contains a substring
// match on Norm, :exact an equality on Exact. HumanName and Address give
// one value per part (family, each given, text, line, city, ...).
type StringValue struct {
	At
	Norm, Exact string
}

// TokenValue is a value of a token parameter: a Coding (System, Code), a
// CodeableConcept (one value per coding, plus a value with only Text when
// the concept has text), an Identifier (System, Code = value, and the
// first coding of its type in TypeSystem/TypeCode for :of-type), a
// ContactPoint (System = phone/email/..., Code = value), a boolean
// (Code "true"/"false"), or a code, id, string or uri (Code). Text is the
// normalised display or text, searched by :text.
type TokenValue struct {
	At
	System, Code, Text   string
	TypeSystem, TypeCode string
}

// RefValue is a value of a reference parameter. A relative reference
// ("Patient/1", or an absolute one to Options.BaseURL) sets TargetType and
// TargetID; other absolute references and canonicals set URL (a canonical's
// "|version" goes to Version), and TargetType/TargetID too when the URL
// ends in [type]/[id]. A Reference.identifier sets IdentifierSystem and
// IdentifierValue (for :identifier). A urn:uuid reference with a
// Reference.type keeps that type in TargetType.
type RefValue struct {
	At
	TargetType, TargetID string
	URL, Version         string
	IdentifierSystem     string
	IdentifierValue      string
}

// DateValue is a value of a date parameter: the inclusive range of
// instants the value covers at its precision (2020-05 covers the whole
// month), a Period's start to end (MinTime/MaxTime for an open end), or a
// Timing event. Values without a zone are taken as UTC.
type DateValue struct {
	At
	Lo, Hi time.Time
}

// NumberValue is a value of a number parameter: Value is the decimal as
// written, Lo..Hi the range of its implicit precision (an integer element
// is exact; a Range gives low..high).
type NumberValue struct {
	At
	Value  string
	Lo, Hi float64
}

// QuantityValue is a value of a quantity parameter: the Quantity's system
// and code (Money: urn:iso:std:iso:4217 and the currency), its unit text,
// its value as written and the range its precision (or comparator, or a
// Range's low and high) covers. Units are not converted.
type QuantityValue struct {
	At
	System, Code, Unit string
	Value              string
	Lo, Hi             float64
}

// URIValue is a value of a uri parameter, as written.
type URIValue struct {
	At
	Value string
}

// Index holds every search value of one resource, by parameter type.
type Index struct {
	Strings    []StringValue
	Tokens     []TokenValue
	Refs       []RefValue
	Dates      []DateValue
	Numbers    []NumberValue
	Quantities []QuantityValue
	URIs       []URIValue
	// Patients are the ids of the Patients whose compartment holds the
	// resource: the Patient's own id, and the Patient references (relative,
	// or to Options.BaseURL) of the type's compartment parameters.
	Patients []string
}

// derive adds the values of a derived parameter: its sources' values
// (only those referencing d.Target when set), renamed to code (derive.go).
func (ix *Index) derive(code string, d *Derivation) {
	ix.Strings = deriveValues(ix.Strings, func(v *StringValue) *At { return &v.At }, code, d.From)
	ix.Tokens = deriveValues(ix.Tokens, func(v *TokenValue) *At { return &v.At }, code, d.From)
	if d.Target == "" {
		ix.Refs = deriveValues(ix.Refs, func(v *RefValue) *At { return &v.At }, code, d.From)
	} else {
		ix.Refs = deriveValues(ix.Refs, func(v *RefValue) *At {
			if v.TargetType != d.Target {
				return nil
			}
			return &v.At
		}, code, d.From)
	}
	ix.Dates = deriveValues(ix.Dates, func(v *DateValue) *At { return &v.At }, code, d.From)
	ix.Numbers = deriveValues(ix.Numbers, func(v *NumberValue) *At { return &v.At }, code, d.From)
	ix.Quantities = deriveValues(ix.Quantities, func(v *QuantityValue) *At { return &v.At }, code, d.From)
	ix.URIs = deriveValues(ix.URIs, func(v *URIValue) *At { return &v.At }, code, d.From)
}

// deriveValues appends a copy, renamed to code, of each value whose
// parameter is one of from (at answers nil for a value to leave out).
func deriveValues[T any](vs []T, at func(*T) *At, code string, from []string) []T {
	n := len(vs)
	for i := 0; i < n; i++ {
		if a := at(&vs[i]); a != nil && slices.Contains(from, a.Param) {
			v := vs[i]
			at(&v).Param = code
			vs = append(vs, v)
		}
	}
	return vs
}

func (ix *Index) append(o *Index) {
	ix.Strings = append(ix.Strings, o.Strings...)
	ix.Tokens = append(ix.Tokens, o.Tokens...)
	ix.Refs = append(ix.Refs, o.Refs...)
	ix.Dates = append(ix.Dates, o.Dates...)
	ix.Numbers = append(ix.Numbers, o.Numbers...)
	ix.Quantities = append(ix.Quantities, o.Quantities...)
	ix.URIs = append(ix.URIs, o.URIs...)
}

// Len returns the number of values in the index.
func (ix *Index) Len() int {
	return len(ix.Strings) + len(ix.Tokens) + len(ix.Refs) + len(ix.Dates) + len(ix.Numbers) + len(ix.Quantities) + len(ix.URIs)
}

// Extract computes the index values of every search parameter of the
// resource's type. References are indexed as written: the caller rewrites
// urn:uuid references (transactions) before indexing. An error means an
// expression failed on this resource, which validation should have
// prevented; it names the parameter.
func (r *Registry) Extract(res *fhir.Resource) (*Index, error) {
	root := res.Root()
	env := &fhirpath.Env{Resource: root, RootResource: root}
	x := &extractor{ix: &Index{}, base: r.opts.BaseURL}
	var derived []*Param
	for _, p := range r.Params(res.Type) {
		if p.derived != nil {
			derived = append(derived, p)
			continue
		}
		if err := x.param(p, root, res.Type, env); err != nil {
			return nil, err
		}
	}
	ix := x.ix
	for _, p := range derived {
		ix.derive(p.Code, p.derived)
	}
	ix.Strings = dedupe(ix.Strings)
	ix.Tokens = dedupe(ix.Tokens)
	ix.Refs = dedupe(ix.Refs)
	ix.Dates = dedupe(ix.Dates)
	ix.Numbers = dedupe(ix.Numbers)
	ix.Quantities = dedupe(ix.Quantities)
	ix.URIs = dedupe(ix.URIs)
	ix.Patients = r.patients(res, ix)
	return ix, nil
}

// param adds the values of one parameter, evaluating its expression.
func (x *extractor) param(p *Param, root *fjson.Value, typ string, env *fhirpath.Env) error {
	if p.expr == nil || !p.mayHaveValues(root) {
		return nil
	}
	items, err := p.expr.Eval(root, typ, env)
	if err != nil {
		return fmt.Errorf("search: index %s.%s: %w", typ, p.Code, err)
	}
	if p.Type != TypeComposite {
		x.add(p.Type, At{Param: p.Code}, items)
		return nil
	}
	for _, it := range items {
		if it.Node == nil {
			continue
		}
		// A group is indexed only when every component has a value:
		// a composite cannot match an element that lacks one.
		part := &extractor{ix: &Index{}, base: x.base}
		complete := true
		for ci, c := range p.Components {
			vals, err := c.expr.Eval(it.Node, it.Type, env)
			if err != nil {
				return fmt.Errorf("search: index %s.%s component %s: %w", typ, p.Code, c.Code, err)
			}
			before := part.ix.Len()
			part.add(c.Type, At{Param: p.Code, Group: x.group + 1, Component: ci}, vals)
			if part.ix.Len() == before {
				complete = false
				break
			}
		}
		if complete {
			x.group++
			x.ix.append(part.ix)
		}
	}
	return nil
}

func (r *Registry) patients(res *fhir.Resource, ix *Index) []string {
	var out []string
	if res.Type == "Patient" && res.ID != "" {
		out = append(out, res.ID)
	}
	params := r.PatientCompartment(res.Type)
	if len(params) == 0 {
		return out
	}
	for _, v := range ix.Refs {
		if v.Group == 0 && v.TargetType == "Patient" && v.TargetID != "" && v.URL == "" && slices.Contains(params, v.Param) {
			out = append(out, v.TargetID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func dedupe[T comparable](vs []T) []T {
	if len(vs) < 2 {
		return vs
	}
	seen := make(map[T]struct{}, len(vs))
	out := vs[:0]
	for _, v := range vs {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

type extractor struct {
	ix    *Index
	base  string
	group int
}

func (x *extractor) add(t ParamType, at At, items fhirpath.Collection) {
	for _, it := range items {
		switch t {
		case TypeString:
			x.addString(at, it)
		case TypeToken:
			x.addToken(at, it)
		case TypeReference:
			x.addRef(at, it)
		case TypeDate:
			x.addDate(at, it)
		case TypeNumber:
			x.addNumber(at, it)
		case TypeQuantity:
			x.addQuantity(at, it)
		case TypeURI:
			x.addURI(at, it)
		}
	}
}

// primitive returns the text of a primitive item (its JSON literal for
// numbers and booleans, the value of a computed item).
func primitive(it fhirpath.Item) (string, bool) {
	if it.Node == nil {
		switch v := it.Value.(type) {
		case bool:
			if v {
				return "true", true
			}
			return "false", true
		case string:
			return v, true
		case int64:
			return fmt.Sprint(v), true
		case fhirpath.Decimal:
			return string(v), true
		case fhirpath.Date:
			return string(v), true
		case fhirpath.DateTime:
			return string(v), true
		}
		return "", false
	}
	switch it.Node.Kind {
	case fjson.String, fjson.Number, fjson.Bool:
		return it.Node.Str, true
	}
	return "", false
}

func str(n *fjson.Value, key string) string { return n.Get(key).String() }

func each(n *fjson.Value, key string, fn func(*fjson.Value)) {
	v := n.Get(key)
	switch {
	case v == nil:
	case v.Kind == fjson.Array:
		for _, e := range v.Items {
			fn(e)
		}
	default:
		fn(v)
	}
}

func (x *extractor) addString(at At, it fhirpath.Item) {
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			x.ix.Strings = append(x.ix.Strings, StringValue{At: at, Norm: Normalize(s), Exact: s})
		}
	}
	if s, ok := primitive(it); ok {
		add(s)
		return
	}
	n := it.Node
	if n == nil || n.Kind != fjson.Object {
		return
	}
	var parts []string
	switch it.Type {
	case "HumanName":
		parts = []string{"family", "given", "prefix", "suffix", "text"}
	case "Address":
		parts = []string{"line", "city", "district", "state", "postalCode", "country", "text"}
	default:
		// Other complex values: every string member.
		for _, m := range n.Members {
			if m.Value.Kind == fjson.String {
				add(m.Value.Str)
			}
		}
		return
	}
	for _, p := range parts {
		each(n, p, func(v *fjson.Value) {
			if v.Kind == fjson.String {
				add(v.Str)
			}
		})
	}
}

func (x *extractor) token(at At, system, code, text string) {
	if code == "" && text == "" && system == "" {
		return
	}
	x.ix.Tokens = append(x.ix.Tokens, TokenValue{At: at, System: system, Code: code, Text: text})
}

func (x *extractor) coding(at At, c *fjson.Value) {
	if c == nil || c.Kind != fjson.Object {
		return
	}
	x.token(at, str(c, "system"), str(c, "code"), Normalize(str(c, "display")))
}

func (x *extractor) addToken(at At, it fhirpath.Item) {
	if s, ok := primitive(it); ok {
		x.token(at, "", s, "")
		return
	}
	n := it.Node
	if n == nil || n.Kind != fjson.Object {
		return
	}
	typ := it.Type
	if typ == "" {
		switch {
		case n.Get("coding") != nil:
			typ = "CodeableConcept"
		case n.Get("code") != nil:
			typ = "Coding"
		case n.Get("value") != nil:
			typ = "Identifier"
		}
	}
	switch typ {
	case "Coding":
		x.coding(at, n)
	case "CodeableConcept":
		first := len(x.ix.Tokens)
		each(n, "coding", func(c *fjson.Value) { x.coding(at, c) })
		if t := str(n, "text"); t != "" {
			// the text gets a value of its own unless a coding's display
			// says the same (usually: Synthea's concepts, most EHRs'):
			// :text matches a value's text, so the display's value matches
			// everything the text's would, and a load writes a quarter
			// fewer token rows
			nt := Normalize(t)
			for _, v := range x.ix.Tokens[first:] {
				if v.Text == nt { // (each value since first is this concept's)
					return
				}
			}
			x.token(at, "", "", nt)
		}
	case "Identifier":
		v := TokenValue{At: at, System: str(n, "system"), Code: str(n, "value")}
		if t := n.Get("type"); t != nil {
			v.Text = Normalize(str(t, "text"))
			if cs := t.Get("coding"); cs != nil && cs.Kind == fjson.Array && len(cs.Items) > 0 {
				v.TypeSystem, v.TypeCode = str(cs.Items[0], "system"), str(cs.Items[0], "code")
			}
		}
		if v.System != "" || v.Code != "" {
			x.ix.Tokens = append(x.ix.Tokens, v)
		}
	case "ContactPoint":
		x.token(at, str(n, "system"), str(n, "value"), "")
	}
}

func (x *extractor) addRef(at At, it fhirpath.Item) {
	if it.Node == nil {
		return
	}
	n := it.Node
	switch {
	case n.Kind == fjson.String:
		// canonical, uri or url
		v := RefValue{At: at}
		url, version := splitCanonical(n.Str)
		v.TargetType, v.TargetID, v.URL = splitReference(url, x.base)
		if v.URL != "" {
			v.Version = version
		}
		if v.TargetID != "" || v.URL != "" {
			x.ix.Refs = append(x.ix.Refs, v)
		}
	case n.Kind == fjson.Object && n.Get("resourceType") != nil:
		// An embedded resource (Bundle.entry[0].resource).
		if id := str(n, "id"); fhir.ValidID(id) {
			x.ix.Refs = append(x.ix.Refs, RefValue{At: at, TargetType: str(n, "resourceType"), TargetID: id})
		}
	case n.Kind == fjson.Object:
		v := RefValue{At: at}
		if ref := str(n, "reference"); ref != "" {
			v.TargetType, v.TargetID, v.URL = splitReference(ref, x.base)
			if v.TargetType == "" {
				if t := str(n, "type"); fhir.IsResourceType(t) {
					v.TargetType = t
				}
			}
		}
		if id := n.Get("identifier"); id != nil && id.Kind == fjson.Object {
			v.IdentifierSystem, v.IdentifierValue = str(id, "system"), str(id, "value")
		}
		if v.TargetID != "" || v.URL != "" || v.IdentifierValue != "" {
			x.ix.Refs = append(x.ix.Refs, v)
		}
	}
}

func (x *extractor) addDate(at At, it fhirpath.Item) {
	if s, ok := primitive(it); ok {
		if lo, hi, ok := dateRange(s); ok {
			x.ix.Dates = append(x.ix.Dates, DateValue{At: at, Lo: lo, Hi: hi})
		}
		return
	}
	n := it.Node
	if n == nil || n.Kind != fjson.Object {
		return
	}
	switch it.Type {
	case "Period":
		x.period(at, n)
	case "Timing":
		each(n, "event", func(e *fjson.Value) {
			if lo, hi, ok := dateRange(e.String()); ok {
				x.ix.Dates = append(x.ix.Dates, DateValue{At: at, Lo: lo, Hi: hi})
			}
		})
		if rep := n.Get("repeat"); n.Get("event") == nil && rep != nil {
			if bp := rep.Get("boundsPeriod"); bp != nil {
				x.period(at, bp)
			}
		}
	}
}

func (x *extractor) period(at At, n *fjson.Value) {
	lo, hi := MinTime, MaxTime
	okStart, okEnd := false, false
	if s := str(n, "start"); s != "" {
		lo, _, okStart = dateRange(s)
		if !okStart {
			return
		}
	}
	if e := str(n, "end"); e != "" {
		_, hi, okEnd = dateRange(e)
		if !okEnd {
			return
		}
	}
	if okStart || okEnd {
		x.ix.Dates = append(x.ix.Dates, DateValue{At: at, Lo: lo, Hi: hi})
	}
}

// decimalRange is numberRange for a value of an element: integers are exact.
func decimalRange(it fhirpath.Item, s string) (lo, hi float64, ok bool) {
	v, lo, hi, ok := numberRange(s)
	switch it.Type {
	case "integer", "positiveInt", "unsignedInt":
		return v, v, ok
	}
	return lo, hi, ok
}

func (x *extractor) addNumber(at At, it fhirpath.Item) {
	if s, ok := primitive(it); ok {
		if lo, hi, ok := decimalRange(it, s); ok {
			x.ix.Numbers = append(x.ix.Numbers, NumberValue{At: at, Value: s, Lo: lo, Hi: hi})
		}
		return
	}
	n := it.Node
	if n == nil || n.Kind != fjson.Object {
		return
	}
	switch it.Type {
	case "Range":
		lo, hi := -MaxNumber, MaxNumber
		if l := n.Get("low").Get("value"); l != nil {
			_, lo, _, _ = numberRange(l.Str)
		}
		if h := n.Get("high").Get("value"); h != nil {
			_, _, hi, _ = numberRange(h.Str)
		}
		if n.Get("low") != nil || n.Get("high") != nil {
			x.ix.Numbers = append(x.ix.Numbers, NumberValue{At: at, Lo: lo, Hi: hi})
		}
	default:
		if v := n.Get("value"); v != nil && v.Kind == fjson.Number {
			if _, lo, hi, ok := numberRange(v.Str); ok {
				x.ix.Numbers = append(x.ix.Numbers, NumberValue{At: at, Value: v.Str, Lo: lo, Hi: hi})
			}
		}
	}
}

// quantity converts a Quantity-like object; ok is false without a value.
func quantity(at At, n *fjson.Value) (QuantityValue, bool) {
	v := n.Get("value")
	if v == nil || v.Kind != fjson.Number {
		return QuantityValue{}, false
	}
	_, lo, hi, ok := numberRange(v.Str)
	if !ok {
		return QuantityValue{}, false
	}
	q := QuantityValue{At: at, System: str(n, "system"), Code: str(n, "code"), Unit: str(n, "unit"), Value: v.Str, Lo: lo, Hi: hi}
	switch str(n, "comparator") {
	case "<", "<=":
		q.Lo = -MaxNumber
	case ">", ">=":
		q.Hi = MaxNumber
	}
	return q, true
}

func (x *extractor) addQuantity(at At, it fhirpath.Item) {
	n := it.Node
	if n == nil {
		return
	}
	if n.Kind == fjson.Number {
		if _, lo, hi, ok := numberRange(n.Str); ok {
			x.ix.Quantities = append(x.ix.Quantities, QuantityValue{At: at, Value: n.Str, Lo: lo, Hi: hi})
		}
		return
	}
	if n.Kind != fjson.Object {
		return
	}
	switch it.Type {
	case "Money":
		if q, ok := quantity(at, n); ok {
			q.System, q.Code, q.Unit = "urn:iso:std:iso:4217", str(n, "currency"), str(n, "currency")
			x.ix.Quantities = append(x.ix.Quantities, q)
		}
	case "Range":
		low, lok := quantity(at, n.Get("low"))
		high, hok := quantity(at, n.Get("high"))
		if !lok && !hok {
			return
		}
		q := low
		if !lok {
			q = high
			q.Lo = -MaxNumber
		}
		if hok {
			q.Hi = high.Hi
		} else {
			q.Hi = MaxNumber
		}
		q.Value = ""
		x.ix.Quantities = append(x.ix.Quantities, q)
	case "SampledData":
		// No single value to index.
	default:
		if q, ok := quantity(at, n); ok {
			x.ix.Quantities = append(x.ix.Quantities, q)
		}
	}
}

func (x *extractor) addURI(at At, it fhirpath.Item) {
	if s, ok := primitive(it); ok && s != "" {
		x.ix.URIs = append(x.ix.URIs, URIValue{At: at, Value: s})
	}
}

// Patients returns the ids of the Patients whose compartment holds res, as
// Extract computes Index.Patients (the Patient's own id, and the local
// Patient references of the type's compartment parameters), evaluating
// only those parameters.
func (r *Registry) Patients(res *fhir.Resource) []string {
	var out []string
	if res.Type == "Patient" && res.ID != "" {
		out = append(out, res.ID)
	}
	out = append(out, r.PatientRefs(res, r.PatientCompartment(res.Type))...)
	slices.Sort(out)
	return slices.Compact(out)
}

// PatientRefs returns the ids of the Patients that the reference
// parameters params of res point to (relative references, or absolute ones
// to Options.BaseURL), sorted, each once.
func (r *Registry) PatientRefs(res *fhir.Resource, params []string) []string {
	if len(params) == 0 {
		return nil
	}
	root := res.Root()
	env := &fhirpath.Env{Resource: root, RootResource: root}
	x := &extractor{ix: &Index{}, base: r.opts.BaseURL}
	for _, code := range params {
		p, ok := r.Param(res.Type, code)
		if !ok || p.Type != TypeReference || p.expr == nil || !p.mayHaveValues(root) {
			continue
		}
		items, err := p.expr.Eval(root, res.Type, env)
		if err != nil {
			continue
		}
		x.add(p.Type, At{Param: p.Code}, items)
	}
	var out []string
	for _, v := range x.ix.Refs {
		if v.TargetType == "Patient" && v.TargetID != "" && v.URL == "" {
			out = append(out, v.TargetID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
