package fhirpath

//go:generate go run ./internal/modelgen -o model.txt ../../../shared/testdata/fhir-r4-definitions/profiles-resources.assembled.json ../../../shared/testdata/fhir-r4-definitions/profiles-types.json

import (
	_ "embed"
	"strings"
	"sync"
)

// model.txt is the FHIR R4 type model: every resource, data type and
// backbone element with its elements and their types. It lets navigation
// resolve choice elements (value -> valueQuantity) and give every node its
// FHIR type, which is, as, ofType and comparisons need.
//
//go:embed model.txt
var modelText string

type typeInfo struct {
	name  string
	base  *typeInfo
	elems map[string]*elemInfo // by element name; choice elements by their base name
	keys  map[string]keyInfo   // by JSON member name, choice variants expanded
}

type elemInfo struct {
	name   string
	types  []string
	choice bool
}

type keyInfo struct {
	elem *elemInfo
	typ  string
}

var (
	modelOnce  sync.Once
	modelTypes map[string]*typeInfo
)

func loadModel() {
	types := make(map[string]*typeInfo, 700)
	bases := map[*typeInfo]string{}
	var cur *typeInfo
	for line := range strings.SplitSeq(modelText, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "T":
			cur = &typeInfo{name: f[1]}
			types[f[1]] = cur
			if f[2] != "-" {
				bases[cur] = f[2]
			}
		case "E", "C":
			el := &elemInfo{name: f[1], types: f[2:], choice: f[0] == "C"}
			if cur.elems == nil {
				cur.elems = map[string]*elemInfo{}
				cur.keys = map[string]keyInfo{}
			}
			cur.elems[el.name] = el
			if el.choice {
				for _, t := range el.types {
					cur.keys[el.name+upperFirst(t)] = keyInfo{el, t}
				}
			} else {
				cur.keys[el.name] = keyInfo{el, el.types[0]}
			}
		}
	}
	for ti, b := range bases {
		ti.base = types[b]
	}
	modelTypes = types
}

func lookupType(name string) *typeInfo {
	modelOnce.Do(loadModel)
	return modelTypes[name]
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// typeFromSuffix maps the type suffix of a choice member name ("DateTime"
// in valueDateTime) to the FHIR type name ("dateTime").
func typeFromSuffix(suffix string) string {
	if suffix == "" {
		return ""
	}
	if lookupType(suffix) != nil {
		return suffix
	}
	lower := string(suffix[0]-'A'+'a') + suffix[1:]
	if suffix[0] >= 'A' && suffix[0] <= 'Z' && lookupType(lower) != nil {
		return lower
	}
	return ""
}

// isSubtype reports whether type t is ancestor or derives from it.
func isSubtype(t, ancestor string) bool {
	if t == ancestor {
		return true
	}
	ti := lookupType(t)
	for ti != nil {
		if ti.name == ancestor {
			return true
		}
		ti = ti.base
	}
	return false
}

// IsType reports whether the FHIR type name is known to the model (a
// resource, a data type, a primitive or a backbone element path such as
// "Observation.component").
func IsType(name string) bool { return lookupType(name) != nil }

// ElementType returns the FHIR type of the element name of type typeName
// and whether it exists; choice elements are named without [x] and return
// "" with choice set, and their JSON member names (valueQuantity) return
// the variant's type.
func ElementType(typeName, name string) (typ string, choice, ok bool) {
	ti := lookupType(typeName)
	if ti == nil {
		return "", false, false
	}
	if el, found := ti.elems[name]; found {
		if el.choice {
			return "", true, true
		}
		return el.types[0], false, true
	}
	if k, found := ti.keys[name]; found {
		return k.typ, false, true
	}
	return "", false, false
}
