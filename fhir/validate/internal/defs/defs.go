// Package defs is the compact form of the R4 StructureDefinitions that the
// validator needs, shared by the generator (which writes it from the official
// definitions) and by the validator (which reads it at start-up and when a
// profile is loaded).
package defs

import "encoding/json"

// Model is everything the validator knows about FHIR R4 core.
type Model struct {
	FHIRVersion string `json:"fhirVersion"`
	// Types are the resource, complex and primitive types, and the core
	// constraint types (SimpleQuantity, MoneyQuantity).
	Types []Type `json:"types"`
	// ValueSets are the code lists of required bindings; Element.Binding
	// indexes into it.
	ValueSets []ValueSet `json:"valueSets"`
	// Constraints are the distinct invariants; Element.Constraints index it.
	Constraints []Constraint `json:"constraints"`
	// Regexes are the R4 regular expressions of the primitive types, by type
	// name. The validator checks primitives with hand-written code; tests
	// compare that code with these expressions.
	Regexes map[string]string `json:"regexes"`
	// CodeSystems are the complete code systems shipped with the
	// definitions: a Coding of one of them must use one of its codes, and
	// its display must be one of the code's displays.
	CodeSystems []CodeSystem `json:"codeSystems,omitempty"`
}

// CodeSystem is a complete code system: its codes and their displays.
type CodeSystem struct {
	URL      string    `json:"url"`
	Concepts []Concept `json:"concepts"`
}

// Concept is one code with its display and the values of its designations.
type Concept struct {
	Code     string   `json:"code"`
	Displays []string `json:"displays,omitempty"`
}

// Type is one StructureDefinition.
type Type struct {
	Name string `json:"name"`
	// URL is the canonical URL of the definition.
	URL string `json:"url,omitempty"`
	// Kind is primitive-type, complex-type or resource.
	Kind     string `json:"kind"`
	Abstract bool   `json:"abstract,omitempty"`
	// BaseType is the type this one constrains (for SimpleQuantity,
	// Quantity; for a profile, the resource type), else "".
	BaseType string `json:"baseType,omitempty"`
	// Elements are the snapshot elements in order; Elements[0] is the root.
	Elements []Element `json:"elements"`
}

// Element is one ElementDefinition of a snapshot.
type Element struct {
	Path string `json:"path"`
	// ID is the element id when it differs from Path (in slices, the id
	// names the slice: "Patient.extension:race").
	ID string `json:"id,omitempty"`
	// SliceName is set on a slice (profiles only).
	SliceName string `json:"sliceName,omitempty"`
	// Slicing is set on a sliced element (profiles only).
	Slicing *Slicing `json:"slicing,omitempty"`
	Min     int      `json:"min,omitempty"`
	// Max is the maximum count, -1 for unbounded.
	Max int `json:"max"`
	// Array tells whether the element is a JSON array (its base max is not 1).
	Array bool      `json:"array,omitempty"`
	Types []TypeRef `json:"types,omitempty"`
	// ContentRef is the path of the element whose definition this one
	// reuses (contentReference without the leading '#').
	ContentRef string `json:"contentRef,omitempty"`
	// Binding is 1 + the index in Model.ValueSets of a required binding,
	// 0 when there is none.
	Binding int `json:"binding,omitempty"`
	// BindingURL is the value set URL of a required binding (also set when
	// the binding cannot be checked).
	BindingURL string `json:"bindingURL,omitempty"`
	// Constraints index Model.Constraints (or, for a profile, its own list).
	Constraints []int `json:"constraints,omitempty"`
	// Fixed and Pattern are fixed[x] / pattern[x] values (profiles).
	Fixed   json.RawMessage `json:"fixed,omitempty"`
	Pattern json.RawMessage `json:"pattern,omitempty"`
	// MaxLength is the maximum string length, 0 for none.
	MaxLength int `json:"maxLength,omitempty"`
}

// Slicing says how the items of a sliced element are told apart.
type Slicing struct {
	Discriminators []Discriminator `json:"discriminators,omitempty"`
	// Rules is closed, open or openAtEnd.
	Rules string `json:"rules,omitempty"`
}

// Discriminator is one slicing discriminator.
type Discriminator struct {
	// Type is value, pattern, exists, type or profile.
	Type string `json:"type"`
	Path string `json:"path"`
}

// TypeRef is one allowed type of an element.
type TypeRef struct {
	// Code is the FHIR type name (primitive, complex, BackboneElement,
	// Element, Resource, or a resource type).
	Code string `json:"code"`
	// Profile names a core constraint type to use instead of Code (for
	// example SimpleQuantity), or a profile URL in a loaded profile.
	Profile string `json:"profile,omitempty"`
	// Targets are the allowed target resource types of a Reference or
	// canonical; empty means any.
	Targets []string `json:"targets,omitempty"`
}

// ValueSet is the code list of a required binding.
type ValueSet struct {
	URL string `json:"url"`
	// Source tells where the codes came from: "valueset" (the official
	// ValueSet and CodeSystems), "samply" (the code system enum generated
	// by samply/golang-fhir-models, which may hold more codes than the
	// value set), "short" (the enumeration in the element's short text),
	// "types" (the FHIR type names).
	Source string `json:"source"`
	// Codes are the allowed codes. System is empty when the source does not
	// say it (then only the code is compared).
	Codes []Code `json:"codes"`
}

// Code is one allowed code.
type Code struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code"`
}

// Constraint is one invariant.
type Constraint struct {
	Key        string `json:"key"`
	Severity   string `json:"severity"`
	Human      string `json:"human"`
	Expression string `json:"expression,omitempty"`
	// BestPractice marks guidance (elementdefinition-bestpractice), which
	// the validator only checks when asked.
	BestPractice bool `json:"bestPractice,omitempty"`
}
