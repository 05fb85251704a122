package search

//go:generate cp ../../../shared/testdata/fhir-r4-definitions/search-parameters.json ../../../shared/testdata/fhir-r4-definitions/CompartmentDefinition-patient.json .

import (
	_ "embed"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fhirpath"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// The official R4 (4.0.1) search parameters and Patient compartment, CC0.
var (
	//go:embed search-parameters.json
	searchParametersJSON []byte
	//go:embed CompartmentDefinition-patient.json
	compartmentPatientJSON []byte
)

// ParamType is the type of a search parameter.
type ParamType uint8

// The search parameter types of R4.
const (
	TypeNumber ParamType = iota + 1
	TypeDate
	TypeString
	TypeToken
	TypeReference
	TypeComposite
	TypeQuantity
	TypeURI
	TypeSpecial
)

var paramTypeNames = [...]string{"", "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}

func (t ParamType) String() string {
	if int(t) < len(paramTypeNames) {
		return paramTypeNames[t]
	}
	return "unknown"
}

func parseParamType(s string) ParamType {
	for i, n := range paramTypeNames {
		if i > 0 && n == s {
			return ParamType(i)
		}
	}
	return 0
}

// Param is a search parameter as it applies to one resource type.
type Param struct {
	// Code is the name used in queries ("patient", "_id").
	Code string
	Type ParamType
	// URL is the canonical URL of the SearchParameter definition.
	URL string
	// ResourceType is the type this Param belongs to.
	ResourceType string
	// Expression is the FHIRPath that extracts the values, reduced to the
	// branches of its unions that concern ResourceType. It is empty for
	// parameters the index does not extract (_text, _content, _has, ...).
	Expression string
	// Targets are the resource types a reference parameter may point to.
	Targets []string
	// Components are the parts of a composite parameter, in order.
	Components []Component

	expr *fhirpath.Expr
	// derived, when set, says whose values this parameter's are (derive.go)
	derived *Derivation
	// touch lists the top-level members the expression starts from; when
	// the resource has none of them, the parameter has no values and
	// extraction skips the evaluation. nil means "always evaluate".
	touch []string
}

// Component is one part of a composite parameter. Its Expression is
// relative to each item the composite's Expression selects.
type Component struct {
	Code       string // code of the component's own parameter ("code", "value-quantity")
	Type       ParamType
	Expression string
	expr       *fhirpath.Expr
}

// Expr returns the compiled Expression (nil when it is empty), for stores
// that evaluate parameters in memory.
func (p *Param) Expr() *fhirpath.Expr { return p.expr }

// HasTarget reports whether a reference parameter may point to type t.
func (p *Param) HasTarget(t string) bool { return slices.Contains(p.Targets, t) }

// Options configure a Registry.
type Options struct {
	// DefaultCount is the page size when a query has no _count (default 20).
	DefaultCount int
	// MaxCount caps _count (default 1000).
	MaxCount int
	// BaseURL is the gateway's own FHIR base (for example
	// "https://fhirgate.example.org/fhir"). References that start with it
	// are indexed and parsed as relative references.
	BaseURL string
	// Reserved lists query parameters the server handles itself (paging
	// cursors and the like): ParseQuery passes them through in Query.Reserved
	// instead of reporting them as unknown.
	Reserved []string
}

// Registry knows every R4 search parameter of every resource type. It is
// immutable and safe for concurrent use.
type Registry struct {
	defs *definitions
	opts Options
}

// definitions is the parsed and compiled content of the embedded files,
// shared by every Registry.
type definitions struct {
	params      map[string]map[string]*Param // resource type -> code -> param
	sorted      map[string][]*Param          // resource type -> params sorted by code
	compartment map[string][]string          // resource type -> params linking it to a Patient
}

var (
	defsOnce sync.Once
	defsVal  *definitions
	defsErr  error
)

// New returns a registry with the given options. The embedded definitions
// are parsed and compiled once per process.
func New(opts Options) (*Registry, error) {
	defsOnce.Do(func() { defsVal, defsErr = loadDefinitions() })
	if defsErr != nil {
		return nil, defsErr
	}
	if opts.DefaultCount <= 0 {
		opts.DefaultCount = 20
	}
	if opts.MaxCount <= 0 {
		opts.MaxCount = 1000
	}
	opts.DefaultCount = min(opts.DefaultCount, opts.MaxCount)
	opts.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
	return &Registry{defs: defsVal, opts: opts}, nil
}

// Param returns the parameter code of resourceType.
func (r *Registry) Param(resourceType, code string) (*Param, bool) {
	p, ok := r.defs.params[resourceType][code]
	return p, ok
}

// Params returns the parameters of resourceType sorted by code.
func (r *Registry) Params(resourceType string) []*Param { return r.defs.sorted[resourceType] }

// PatientCompartment returns the codes of the reference parameters through
// which a resource of type resourceType belongs to a Patient's compartment
// (from the R4 CompartmentDefinition); nil when the type is not in it. For
// Patient itself this is "link"; a Patient is also in its own compartment.
func (r *Registry) PatientCompartment(resourceType string) []string {
	return r.defs.compartment[resourceType]
}

// InPatientCompartment reports whether resources of the type can belong to
// a Patient compartment.
func (r *Registry) InPatientCompartment(resourceType string) bool {
	_, ok := r.defs.compartment[resourceType]
	return ok
}

// nonDomainResources are the R4 resources that do not derive from
// DomainResource, and so lack the DomainResource search parameters.
var nonDomainResources = map[string]bool{"Bundle": true, "Binary": true, "Parameters": true}

type spDef struct {
	url, code, expr string
	typ             ParamType
	base, target    []string
	components      []struct{ definition, expr string }
}

func strs(v *fjson.Value) []string {
	if v == nil {
		return nil
	}
	out := make([]string, 0, len(v.Items))
	for _, it := range v.Items {
		out = append(out, it.String())
	}
	return out
}

func loadDefinitions() (*definitions, error) {
	b, err := fjson.Parse(searchParametersJSON)
	if err != nil {
		return nil, fmt.Errorf("search: embedded search parameters: %w", err)
	}
	var all []*spDef
	byURL := map[string]*spDef{}
	for _, e := range b.Get("entry").Elems() {
		res := e.Get("resource")
		d := &spDef{
			url: res.Get("url").String(), code: res.Get("code").String(),
			expr: res.Get("expression").String(), typ: parseParamType(res.Get("type").String()),
			base: strs(res.Get("base")), target: strs(res.Get("target")),
		}
		if d.typ == 0 {
			return nil, fmt.Errorf("search: parameter %s has unknown type", d.url)
		}
		if comps := res.Get("component"); comps != nil {
			for _, c := range comps.Items {
				d.components = append(d.components, struct{ definition, expr string }{
					c.Get("definition").String(), c.Get("expression").String()})
			}
		}
		all = append(all, d)
		byURL[d.url] = d
	}
	defs := &definitions{params: map[string]map[string]*Param{}, sorted: map[string][]*Param{}}
	compiled := map[string]*fhirpath.Expr{}
	compile := func(x string) (*fhirpath.Expr, error) {
		if x == "" {
			return nil, nil
		}
		if e, ok := compiled[x]; ok {
			return e, nil
		}
		e, err := fhirpath.Compile(x)
		if err != nil {
			return nil, err
		}
		compiled[x] = e
		return e, nil
	}
	add := func(p *Param) error {
		m := defs.params[p.ResourceType]
		if m == nil {
			m = map[string]*Param{}
			defs.params[p.ResourceType] = m
		}
		if _, dup := m[p.Code]; dup {
			return fmt.Errorf("search: parameter %s defined twice for %s", p.Code, p.ResourceType)
		}
		m[p.Code] = p
		return nil
	}
	for _, d := range all {
		for _, base := range d.base {
			for _, rt := range expandBase(base) {
				p := &Param{Code: d.code, Type: d.typ, URL: d.url, ResourceType: rt,
					Expression: exprForType(d.expr, rt), Targets: d.target}
				if p.Type != TypeSpecial {
					p.touch = topMembers(p.Expression, rt)
					if p.expr, err = compile(p.Expression); err != nil {
						return nil, fmt.Errorf("search: %s on %s: %w", d.url, rt, err)
					}
				}
				for _, c := range d.components {
					cd := byURL[c.definition]
					if cd == nil {
						return nil, fmt.Errorf("search: %s: unknown component %s", d.url, c.definition)
					}
					cd = componentDefinition(d, c, cd, byURL)
					comp := Component{Code: cd.code, Type: cd.typ, Expression: c.expr}
					if comp.expr, err = compile(c.expr); err != nil {
						return nil, fmt.Errorf("search: %s component %s: %w", d.url, cd.code, err)
					}
					p.Components = append(p.Components, comp)
				}
				if err := add(p); err != nil {
					return nil, err
				}
			}
		}
	}
	// Parameters the specification defines outside search-parameters.json.
	for _, rt := range fhir.ResourceTypes {
		for _, code := range []string{"_has", "_list"} {
			if err := add(&Param{Code: code, Type: TypeSpecial, ResourceType: rt,
				URL: "http://hl7.org/fhir/SearchParameter/Resource-" + strings.TrimPrefix(code, "_")}); err != nil {
				return nil, err
			}
		}
	}
	if err := add(&Param{Code: "_type", Type: TypeToken, ResourceType: "",
		URL: "http://hl7.org/fhir/SearchParameter/Resource-type"}); err != nil {
		return nil, err
	}
	for _, base := range []string{"Resource-id", "Resource-lastUpdated", "Resource-tag", "Resource-profile", "Resource-security", "Resource-source"} {
		d := byURL["http://hl7.org/fhir/SearchParameter/"+base]
		if d == nil {
			return nil, fmt.Errorf("search: %s missing from the definitions", base)
		}
		p := *defs.params["Patient"][d.code]
		p.ResourceType = ""
		if err := add(&p); err != nil {
			return nil, err
		}
	}
	for rt, m := range defs.params {
		ps := make([]*Param, 0, len(m))
		for _, p := range m {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].Code < ps[j].Code })
		defs.sorted[rt] = ps
		if rt != "" {
			derive(ps)
		}
	}
	if defs.compartment, err = loadCompartment(defs); err != nil {
		return nil, err
	}
	return defs, nil
}

func expandBase(base string) []string {
	switch base {
	case "Resource":
		return fhir.ResourceTypes
	case "DomainResource":
		var out []string
		for _, rt := range fhir.ResourceTypes {
			if !nonDomainResources[rt] {
				out = append(out, rt)
			}
		}
		return out
	}
	return []string{base}
}

func loadCompartment(defs *definitions) (map[string][]string, error) {
	cd, err := fjson.Parse(compartmentPatientJSON)
	if err != nil {
		return nil, fmt.Errorf("search: embedded compartment definition: %w", err)
	}
	out := map[string][]string{}
	for _, r := range cd.Get("resource").Elems() {
		rt := r.Get("code").String()
		params := strs(r.Get("param"))
		if len(params) == 0 {
			continue // not in the compartment
		}
		for _, code := range params {
			p := defs.params[rt][code]
			if p == nil || p.Type != TypeReference {
				return nil, fmt.Errorf("search: compartment parameter %s.%s is not a reference parameter", rt, code)
			}
		}
		out[rt] = params
	}
	return out, nil
}

// splitUnion splits a FHIRPath expression at its top-level | operators.
func splitUnion(expr string) []string {
	var parts []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == '|' && depth == 0:
			parts = append(parts, strings.TrimSpace(expr[start:i]))
			start = i + 1
		}
	}
	return append(parts, strings.TrimSpace(expr[start:]))
}

// rootType returns the type name an expression branch starts with
// ("Observation" for "(Observation.value as Quantity)"), or "".
func rootType(branch string) string {
	s := strings.TrimLeft(branch, "( ")
	end := 0
	for end < len(s) && (s[end] >= 'a' && s[end] <= 'z' || s[end] >= 'A' && s[end] <= 'Z' || s[end] >= '0' && s[end] <= '9') {
		end++
	}
	name := s[:end]
	if name == "" || name[0] < 'A' || name[0] > 'Z' {
		return ""
	}
	return name
}

// exprForType keeps the union branches of expr that apply to resourceType:
// those rooted at it, at Resource or DomainResource, or at no type.
func exprForType(expr, resourceType string) string {
	if expr == "" {
		return ""
	}
	parts := splitUnion(expr)
	var keep []string
	for _, p := range parts {
		switch rootType(p) {
		case resourceType, "", "Resource", "DomainResource":
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return ""
	}
	if len(keep) == len(parts) {
		return expr
	}
	return strings.Join(keep, " | ")
}

// topMembers returns the first member name after the type in every union
// branch of expr ("code" for "Observation.code"), or nil when a branch does
// not start with [type].[member].
func topMembers(expr, resourceType string) []string {
	// Expressions that can produce a value from an absent element
	// (Patient.deceased.exists() and ...) must always run.
	for _, f := range []string{"exists(", "empty(", "count(", "not(", "iif(", " and ", " or ", " xor ", " implies ", "%"} {
		if strings.Contains(expr, f) {
			return nil
		}
	}
	var out []string
	for _, b := range splitUnion(expr) {
		rt := rootType(b)
		if rt != resourceType && rt != "Resource" && rt != "DomainResource" {
			return nil
		}
		rest := strings.TrimLeft(b, "( ")[len(rt):]
		if !strings.HasPrefix(rest, ".") {
			return nil
		}
		rest = rest[1:]
		end := 0
		for end < len(rest) && (rest[end] >= 'a' && rest[end] <= 'z' || rest[end] >= 'A' && rest[end] <= 'Z' || rest[end] >= '0' && rest[end] <= '9') {
			end++
		}
		if end == 0 || end < len(rest) && rest[end] == '(' {
			return nil // a function call, not a member
		}
		out = append(out, rest[:end])
	}
	return out
}

// mayHaveValues reports whether root has one of the members (or choice
// variants of them, valueQuantity for value) the parameter starts from.
func (p *Param) mayHaveValues(root *fjson.Value) bool {
	if p.touch == nil {
		return true
	}
	for _, m := range root.Members {
		k := m.Key
		for _, t := range p.touch {
			if strings.HasPrefix(k, t) && (len(k) == len(t) || k[len(t)] >= 'A' && k[len(t)] <= 'Z') {
				return true
			}
		}
	}
	return false
}

// componentDefinition returns the definition that types a composite's
// component. R4 has one composite whose components name each other's
// definitions (DocumentReference-relationship pairs the expression "code"
// with the reference parameter relatesto and "target" with the token
// parameter relation): when the named definition's expression does not
// end in the component's element but another component's definition does,
// that one types the component, so that the composite indexes and parses
// each part by the type of what it selects.
func componentDefinition(d *spDef, c struct{ definition, expr string }, named *spDef, byURL map[string]*spDef) *spDef {
	suffix := "." + strings.TrimSpace(c.expr)
	if strings.HasSuffix(strings.TrimSpace(named.expr), suffix) {
		return named
	}
	for _, other := range d.components {
		od := byURL[other.definition]
		if od != nil && od != named && strings.HasSuffix(strings.TrimSpace(od.expr), suffix) {
			return od
		}
	}
	return named
}
