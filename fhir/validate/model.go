package validate

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/validate/internal/defs"
)

// modelGz is the compact model of the R4 definitions written by
// internal/gen (see gen.go).
//
//go:embed model.json.gz
var modelGz []byte

type typeKind uint8

const (
	kindPrimitive typeKind = iota + 1
	kindComplex
	kindResource
)

// prim identifies a primitive type, so that the hot path switches on a small
// integer instead of a type name.
type prim uint8

const (
	primNone prim = iota
	primBase64Binary
	primBoolean
	primCanonical
	primCode
	primDate
	primDateTime
	primDecimal
	primID
	primInstant
	primInteger
	primMarkdown
	primOID
	primPositiveInt
	primString
	primTime
	primUnsignedInt
	primURI
	primURL
	primUUID
	primXHTML
)

var primByName = map[string]prim{
	"base64Binary": primBase64Binary, "boolean": primBoolean, "canonical": primCanonical,
	"code": primCode, "date": primDate, "dateTime": primDateTime, "decimal": primDecimal,
	"id": primID, "instant": primInstant, "integer": primInteger, "markdown": primMarkdown,
	"oid": primOID, "positiveInt": primPositiveInt, "string": primString, "time": primTime,
	"unsignedInt": primUnsignedInt, "uri": primURI, "url": primURL, "uuid": primUUID,
	"xhtml": primXHTML,
}

// typeDef is a resource, complex or primitive type (or a core constraint
// type such as SimpleQuantity).
type typeDef struct {
	name     string
	kind     typeKind
	abstract bool
	prim     prim
	root     *elemDef
	// byPath finds the elements of this definition by snapshot path (for
	// contentReference and profiles).
	byPath map[string]*elemDef
}

// elemDef is one element definition, linked into a tree.
type elemDef struct {
	path       string // snapshot path, e.g. "Observation.component.value[x]"
	name       string // JSON name, without "[x]"
	min, max   int    // max -1 = unbounded
	array      bool
	choice     bool
	types      []typeRef
	children   *childSet // inline children (backbone elements, contentReference)
	contentRef string
	binding    *valueSet
	bindingURL string
	// constraints are the element's own invariants; for typed elements the
	// type's invariants are merged into typeRef.constraints.
	constraints []*constraint
	// ctxType is the FHIRPath type of instances of an inline element, for
	// invariants: the element path (or the referenced path).
	ctxType   string
	maxLength int
	idx       int // index in the parent's childSet.elems
	fixed     *fjson.Value
	pattern   *fjson.Value
	// slices are the slices of a sliced element (profiles only).
	slices []*sliceDef
}

// typeRef is one allowed type of an element.
type typeRef struct {
	code    string
	td      *typeDef // nil for BackboneElement/Element (inline) and Resource
	targets []string // allowed reference targets; nil = any
	// constraints are the element's and the type's invariants (by key,
	// without duplicates), evaluated on each value of this type.
	constraints []*constraint
	profile     string
}

// childSet is the children of an object element, indexed by JSON key.
type childSet struct {
	elems    []*elemDef
	keys     map[string]slot
	required []*elemDef
	limited  []*elemDef // elements with a finite max that JSON does not already enforce
	sliced   []*elemDef // elements with slices (profiles only)
}

// slot maps a JSON member name to its element and type.
type slot struct {
	el *elemDef
	t  int // index in el.types
	// ext is set for the "_name" member of a primitive.
	ext bool
	// other is the name of the sibling member: "_name" for a primitive value
	// member, "name" for a "_name" member.
	other string
}

// valueSet is the code list of a required binding.
type valueSet struct {
	url    string
	source string
	codes  map[string]struct{} // code alone
	full   map[defs.Code]struct{}
	// systems are the code systems of the codes, when known.
	systems map[string]struct{}
}

func (vs *valueSet) hasCode(code string) bool {
	_, ok := vs.codes[code]
	return ok
}

// model is the loaded definitions.
type model struct {
	types       map[string]*typeDef
	constraints []*constraint
	valueSets   []*valueSet
	// codeSystems are the shipped complete code systems: code -> displays.
	codeSystems map[string]map[string][]string
	regexes     map[string]string
	unchecked   []string // required value sets without codes
	element     *typeDef // the Element type, for "_name" members
	rawSize     int      // bytes of the decompressed model
}

var (
	loadOnce  sync.Once
	coreModel *model
	coreErr   error
)

// core returns the lazily loaded R4 model. The embedded data is generated
// and tested, so a failure to load it is a build defect.
func core() *model {
	loadOnce.Do(func() {
		coreModel, coreErr = loadModel(modelGz)
	})
	if coreErr != nil {
		panic("validate: embedded R4 model: " + coreErr.Error())
	}
	return coreModel
}

func loadModel(gz []byte) (*model, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var dm defs.Model
	if err := json.Unmarshal(raw, &dm); err != nil {
		return nil, err
	}
	m := &model{types: make(map[string]*typeDef, len(dm.Types)), regexes: dm.Regexes, rawSize: len(raw)}
	for _, c := range dm.Constraints {
		m.constraints = append(m.constraints, newConstraint(c))
	}
	for _, vs := range dm.ValueSets {
		m.valueSets = append(m.valueSets, newValueSet(vs))
	}
	m.codeSystems = make(map[string]map[string][]string, len(dm.CodeSystems))
	for _, cs := range dm.CodeSystems {
		codes := make(map[string][]string, len(cs.Concepts))
		for _, c := range cs.Concepts {
			codes[c.Code] = c.Displays
		}
		m.codeSystems[cs.URL] = codes
	}
	for i := range dm.Types {
		t := &dm.Types[i]
		td, err := m.newType(t, m.constraints, func(el *defs.Element) *valueSet {
			if el.Binding > 0 && el.Binding <= len(m.valueSets) {
				return m.valueSets[el.Binding-1]
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		name := t.Name
		m.types[name] = td
	}
	for _, td := range m.types {
		if err := m.resolve(td); err != nil {
			return nil, err
		}
	}
	m.element = m.types["Element"]
	if m.element == nil || m.types["Extension"] == nil || m.types["Patient"] == nil {
		return nil, fmt.Errorf("model lacks core types")
	}
	seen := map[string]bool{}
	for _, td := range m.types {
		for _, el := range td.byPath {
			if el.bindingURL != "" && el.binding == nil && !seen[el.bindingURL] {
				seen[el.bindingURL] = true
				m.unchecked = append(m.unchecked, el.bindingURL)
			}
		}
	}
	slices.Sort(m.unchecked)
	return m, nil
}

func newValueSet(vs defs.ValueSet) *valueSet {
	out := &valueSet{url: vs.URL, source: vs.Source, codes: map[string]struct{}{}, full: map[defs.Code]struct{}{}, systems: map[string]struct{}{}}
	for _, c := range vs.Codes {
		out.codes[c.Code] = struct{}{}
		out.full[c] = struct{}{}
		if c.System != "" {
			out.systems[c.System] = struct{}{}
		}
	}
	return out
}

// newType builds the element tree of a definition; type references are
// resolved later, once every type exists.
func (m *model) newType(t *defs.Type, cons []*constraint, binding func(*defs.Element) *valueSet) (*typeDef, error) {
	td := &typeDef{name: t.Name, abstract: t.Abstract, byPath: make(map[string]*elemDef, len(t.Elements))}
	switch t.Kind {
	case "primitive-type":
		td.kind = kindPrimitive
		td.prim = primByName[t.Name]
	case "resource":
		td.kind = kindResource
	default:
		td.kind = kindComplex
	}
	if len(t.Elements) == 0 {
		return nil, fmt.Errorf("type %s has no elements", t.Name)
	}
	for i := range t.Elements {
		de := &t.Elements[i]
		if de.SliceName != "" || strings.Contains(de.ID, ":") {
			continue // slices are handled by profiles
		}
		if _, dup := td.byPath[de.Path]; dup {
			continue
		}
		el := &elemDef{
			path: de.Path, min: de.Min, max: de.Max, array: de.Array,
			contentRef: de.ContentRef, bindingURL: de.BindingURL, maxLength: de.MaxLength,
		}
		el.name = de.Path[strings.LastIndexByte(de.Path, '.')+1:]
		if strings.HasSuffix(el.name, "[x]") {
			el.name = strings.TrimSuffix(el.name, "[x]")
			el.choice = true
		}
		el.binding = binding(de)
		for _, ci := range de.Constraints {
			if ci < 0 || ci >= len(cons) {
				return nil, fmt.Errorf("%s: constraint index %d out of range", de.Path, ci)
			}
			el.constraints = append(el.constraints, cons[ci])
		}
		for _, tr := range de.Types {
			el.types = append(el.types, typeRef{code: tr.Code, targets: tr.Targets, profile: tr.Profile})
		}
		if len(de.Fixed) > 0 {
			v, err := fjson.Parse(de.Fixed)
			if err != nil {
				return nil, fmt.Errorf("%s: fixed value: %w", de.Path, err)
			}
			el.fixed = v
		}
		if len(de.Pattern) > 0 {
			v, err := fjson.Parse(de.Pattern)
			if err != nil {
				return nil, fmt.Errorf("%s: pattern value: %w", de.Path, err)
			}
			el.pattern = v
		}
		if i == 0 {
			td.root = el
			el.ctxType = t.Name
			if t.BaseType != "" {
				el.ctxType = t.BaseType
			}
		} else {
			parentPath := de.Path[:strings.LastIndexByte(de.Path, '.')]
			parent := td.byPath[parentPath]
			if parent == nil {
				return nil, fmt.Errorf("%s: parent %s not defined before it", de.Path, parentPath)
			}
			if parent.children == nil {
				parent.children = &childSet{}
			}
			el.idx = len(parent.children.elems)
			parent.children.elems = append(parent.children.elems, el)
			el.ctxType = de.Path
		}
		td.byPath[de.Path] = el
	}
	if td.root == nil {
		return nil, fmt.Errorf("type %s has no root element", t.Name)
	}
	return td, nil
}

// resolve links the type references and content references of td and
// indexes its children by JSON key.
func (m *model) resolve(td *typeDef) error {
	for _, el := range td.byPath {
		if el.contentRef == "" {
			continue
		}
		target := td.byPath[el.contentRef]
		if target == nil {
			return fmt.Errorf("%s: contentReference %s not found", el.path, el.contentRef)
		}
		el.ctxType = target.ctxType
		if len(el.types) == 0 {
			el.types = append(el.types, target.types...)
		}
		for _, c := range target.constraints {
			if !slices.ContainsFunc(el.constraints, func(o *constraint) bool { return o.key == c.key }) {
				el.constraints = append(el.constraints, c)
			}
		}
	}
	for _, el := range td.byPath {
		for i := range el.types {
			tr := &el.types[i]
			switch tr.code {
			case "BackboneElement", "Element":
				if el != td.root {
					continue // inline children
				}
			case "Resource":
				continue
			}
			name := tr.code
			if tr.profile != "" && m.types[tr.profile] != nil {
				name = tr.profile
			}
			tr.td = m.types[name]
			if tr.td == nil && el != td.root {
				return fmt.Errorf("%s: unknown type %s", el.path, tr.code)
			}
			tr.constraints = mergeConstraints(el.constraints, tr.td)
			if len(tr.targets) > 0 {
				for _, t := range tr.targets {
					if t == "Resource" || m.types[t] == nil {
						tr.targets = nil // any, or a profile we cannot map
						break
					}
				}
			}
		}
	}
	for _, el := range td.byPath {
		if el.contentRef != "" {
			el.children = td.byPath[el.contentRef].children
		}
	}
	for _, el := range td.byPath {
		if el.children != nil && el.children.keys == nil {
			indexChildren(el.children, m)
		}
	}
	return nil
}

func mergeConstraints(own []*constraint, td *typeDef) []*constraint {
	if td == nil || td.root == nil || len(td.root.constraints) == 0 {
		return own
	}
	out := append([]*constraint(nil), own...)
	for _, c := range td.root.constraints {
		dup := false
		for _, o := range out {
			if o.key == c.key {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

func indexChildren(cs *childSet, m *model) {
	cs.keys = make(map[string]slot, len(cs.elems)+4)
	for _, el := range cs.elems {
		if el.min > 0 {
			cs.required = append(cs.required, el)
		}
		if el.max >= 0 && (el.array || el.max == 0) {
			cs.limited = append(cs.limited, el)
		}
		for i, tr := range el.types {
			key := el.name
			if el.choice {
				key += strings.ToUpper(tr.code[:1]) + tr.code[1:]
			}
			isPrim := tr.td != nil && tr.td.kind == kindPrimitive
			if isPrim {
				cs.keys[key] = slot{el: el, t: i, other: "_" + key}
				cs.keys["_"+key] = slot{el: el, t: i, ext: true, other: key}
			} else {
				cs.keys[key] = slot{el: el, t: i}
			}
		}
	}
}
