package samplegen

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// model is the part of the validator's compact StructureDefinition model
// (fhir/validate/model.json.gz, written by fhir/validate/internal/gen) that
// the generator reads. Only the fields used here are declared; the file is
// the validator's, so a change of its shape shows up as a generator error or
// as invalid generated resources, which TestSamplesValid catches.
type model struct {
	Types     []*mtype   `json:"types"`
	ValueSets []valueSet `json:"valueSets"`

	byName   map[string]*mtype
	children map[string][]*element // "Type|path" -> direct child elements
	byPath   map[string]*element   // "Type|path" -> element
}

type mtype struct {
	Name     string     `json:"name"`
	Kind     string     `json:"kind"`
	Abstract bool       `json:"abstract"`
	Elements []*element `json:"elements"`
}

type element struct {
	Path       string    `json:"path"`
	Min        int       `json:"min"`
	Max        int       `json:"max"`
	Array      bool      `json:"array"`
	Types      []typeRef `json:"types"`
	ContentRef string    `json:"contentRef"`
	// Binding is 1 + the index of a required binding's value set.
	Binding int `json:"binding"`
	// BindingURL names the value set of a required binding, also when its
	// codes are not enumerable (mime types, languages).
	BindingURL string `json:"bindingURL"`
}

type typeRef struct {
	Code    string   `json:"code"`
	Profile string   `json:"profile"`
	Targets []string `json:"targets"`
}

type valueSet struct {
	URL   string `json:"url"`
	Codes []code `json:"codes"`
}

type code struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

func loadModel(gz []byte) (*model, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var m model
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	m.byName = map[string]*mtype{}
	m.children = map[string][]*element{}
	m.byPath = map[string]*element{}
	for _, t := range m.Types {
		m.byName[t.Name] = t
		for i, e := range t.Elements {
			m.byPath[t.Name+"|"+e.Path] = e
			if i == 0 {
				continue
			}
			parent := e.Path[:strings.LastIndexByte(e.Path, '.')]
			m.children[t.Name+"|"+parent] = append(m.children[t.Name+"|"+parent], e)
		}
	}
	if len(m.byName) == 0 {
		return nil, fmt.Errorf("model: no types")
	}
	return &m, nil
}

// codes returns the codes of an element's required binding.
func (m *model) codes(e *element) []code {
	if e.Binding <= 0 || e.Binding > len(m.ValueSets) {
		return nil
	}
	return m.ValueSets[e.Binding-1].Codes
}

// node is a place in the model whose children can be listed: a type's root
// or a backbone element inside a type.
type node struct {
	typ, path string
}

func (m *model) kids(n node) []*element { return m.children[n.typ+"|"+n.path] }

// child finds the child element called name, or the choice element
// name[x]; choice reports which.
func (m *model) child(n node, name string) (e *element, choice bool) {
	if e := m.byPath[n.typ+"|"+n.path+"."+name]; e != nil {
		return e, false
	}
	if e := m.byPath[n.typ+"|"+n.path+"."+name+"[x]"]; e != nil {
		return e, true
	}
	return nil, false
}

// into returns the node of an element's value when it has the type tr.
func (m *model) into(n node, e *element, tr typeRef) (node, bool) {
	if e.ContentRef != "" {
		return node{n.typ, e.ContentRef}, true
	}
	switch tr.Code {
	case "BackboneElement", "Element":
		return node{n.typ, e.Path}, true
	}
	name := typeName(tr)
	t := m.byName[name]
	if t == nil || t.Kind == "primitive-type" {
		return node{}, false
	}
	return node{name, name}, true
}

// typeName is the model type that values of tr have: the constraint type
// (SimpleQuantity) when the reference names one.
func typeName(tr typeRef) string {
	if tr.Profile != "" && !strings.Contains(tr.Profile, "/") {
		return tr.Profile
	}
	return tr.Code
}

func (m *model) isPrimitive(name string) bool {
	t := m.byName[name]
	return t != nil && t.Kind == "primitive-type"
}

// lastSeg is the element's own name ("value[x]" for Observation.value[x]).
func lastSeg(path string) string { return path[strings.LastIndexByte(path, '.')+1:] }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
