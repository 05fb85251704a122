// Package fhirpath evaluates FHIRPath expressions (the R4 normative subset
// plus the FHIR-specific functions) over resources parsed with fjson.
//
// Expressions are compiled once into a tree and evaluated without
// reflection. An embedded copy of the R4 type model (generated from the
// official StructureDefinitions) gives every node its FHIR type, so choice
// elements (Observation.value -> valueQuantity), is/as/ofType, and
// comparisons of dates, quantities and numbers follow the specification.
// Primitive elements merge their JSON value with the "_name" companion that
// holds their id and extensions.
//
// Every operator of FHIRPath N1 is supported, and the functions of the
// existence, filtering, subsetting, combining, conversion, string, math,
// tree-navigation and utility groups, the 2.x additions (sort, type,
// precision, lowBoundary, highBoundary, encode, decode, escape, unescape,
// matchesFull, comparable), quantity arithmetic and comparison with a UCUM
// subset (metric prefixes, time, common customary units), date arithmetic
// with calendar and UCUM durations, plus the FHIR ones: extension(),
// hasValue(), getValue(), resolve(), conformsTo() for the core profiles
// and htmlChecks() (a well-formedness and active-content check of the
// narrative). Terminology functions (memberOf, subsumes, ...) make Compile
// fail with ErrUnsupported. Every search parameter expression and every
// invariant of the R4 core definitions compiles. The official FHIRPath
// test suite passes but for the exceptions TestFHIRPathSuite lists.
package fhirpath

import (
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// ErrUnsupported is wrapped by Compile errors for functions or operators
// the engine does not implement (memberOf, conformsTo, ...).
var ErrUnsupported = errors.New("fhirpath: unsupported")

// maxExprLen bounds the size of an expression Compile accepts.
const maxExprLen = 16 << 10

// Expr is a compiled FHIRPath expression. It is safe for concurrent use.
type Expr struct {
	src      string
	root     node
	hasConst bool // evaluations memoise constant paths
}

// Compile parses a FHIRPath expression. Syntax errors are *SyntaxError;
// functions the engine does not implement make it fail with an error
// wrapping ErrUnsupported.
func Compile(expr string) (*Expr, error) {
	if len(expr) > maxExprLen {
		return nil, &SyntaxError{0, fmt.Sprintf("expression longer than %d bytes", maxExprLen)}
	}
	root, hasConst, err := parse(expr)
	if err != nil {
		return nil, err
	}
	return &Expr{src: expr, root: root, hasConst: hasConst}, nil
}

// MustCompile is Compile for expressions known to be valid; it panics on error.
func MustCompile(expr string) *Expr {
	e, err := Compile(expr)
	if err != nil {
		panic(err)
	}
	return e
}

// String returns the source text of the expression.
func (e *Expr) String() string { return e.src }

// Item is one element of a collection: either a node of the resource JSON
// (Node != nil) with the JSON member name it was reached by (Name, for
// example "valueQuantity") and its FHIR type when known (Type, for example
// "Quantity", "string", "Patient" or "Observation.component"), or a
// computed System value (Node == nil, Value one of bool, string, int64,
// Decimal, Date, DateTime, Time or Quantity).
//
// Two cases have neither Node nor Value: a primitive element that carries
// only an extension ("_birthDate" without "birthDate"; Type is set and
// Extension returns the companion object), and the result of resolve()
// when the target is not available (only Type is set, from the reference).
type Item struct {
	Node  *fjson.Value
	Name  string
	Type  string
	Value any
	ext   *fjson.Value // the "_name" companion of a primitive: id and extension
}

// Extension returns the "_name" companion object of a primitive element
// (which holds its id and extensions), or nil.
func (it Item) Extension() *fjson.Value { return it.ext }

// Collection is an ordered FHIRPath collection.
type Collection []Item

// Env carries the context variables. Resource is %resource (the resource
// containing the focus), RootResource is %rootResource; both default to the
// focus when it is a resource. Resolve, if set, resolves a reference string
// to a resource node (used by resolve()); when nil, or when it reports
// false, resolve() yields an item typed by the reference's type part only
// ("Patient/123" -> an item of Type "Patient"), which is what
// `where(resolve() is Patient)` in search parameters needs. References to
// contained resources ("#id") are always resolved inside %rootResource.
type Env struct {
	Resource, RootResource *fjson.Value
	Resolve                func(reference string) (node *fjson.Value, resourceType string, ok bool)
	// Strict makes a path that names an element its type does not have
	// (name.given1, valueQuantity, a type other than the context's) an
	// error, as FHIRPath's strict mode does; otherwise it is empty.
	Strict bool
	// CheckOrderedFunctions makes first(), last(), tail(), skip(), take()
	// and an indexer an error on a collection whose order is undefined
	// (children(), descendants()), as the FHIRPath test suite's
	// checkOrderedFunctions mode does.
	CheckOrderedFunctions bool
}

// Eval evaluates e with the focus node of FHIR type typeName (a resource
// type, a data type, or a backbone path such as "Observation.component"
// when evaluating an element invariant). An empty typeName takes the type
// from the node's resourceType member. env may be nil.
func (e *Expr) Eval(node *fjson.Value, typeName string, env *Env) (Collection, error) {
	if node == nil {
		return nil, nil
	}
	if typeName == "" {
		typeName = node.Get("resourceType").String()
	}
	if env != nil && (env.Strict || env.CheckOrderedFunctions) {
		if err := staticCheck(e.root, env.Strict, env.CheckOrderedFunctions); err != nil {
			return nil, err
		}
	}
	focus := Collection{{Node: node, Type: typeName}}
	c := &ctx{env: env, context: focus, this: focus}
	if e.hasConst {
		c.memo = new(map[*pathNode]Collection)
	}
	if env != nil && env.Resource != nil {
		c.resource = Collection{{Node: env.Resource, Type: env.Resource.Get("resourceType").String()}}
	} else if node.Get("resourceType") != nil {
		c.resource = focus
	}
	if env != nil && env.RootResource != nil {
		c.root = Collection{{Node: env.RootResource, Type: env.RootResource.Get("resourceType").String()}}
	} else {
		c.root = c.resource
	}
	return e.root.eval(c, focus)
}

// EvalBool evaluates e and applies the FHIRPath singleton boolean rules:
// empty gives (false, false), a single boolean b gives (b, true), anything
// else is an error.
func (e *Expr) EvalBool(node *fjson.Value, typeName string, env *Env) (value bool, nonEmpty bool, err error) {
	res, err := e.Eval(node, typeName, env)
	if err != nil {
		return false, false, err
	}
	switch len(res) {
	case 0:
		return false, false, nil
	case 1:
		if v, ok := res[0].value(); ok {
			if b, ok := v.(bool); ok {
				return b, true, nil
			}
		}
		return false, false, fmt.Errorf("fhirpath: %s: result is not a boolean", e.src)
	}
	return false, false, fmt.Errorf("fhirpath: %s: result has %d items, want one boolean", e.src, len(res))
}
