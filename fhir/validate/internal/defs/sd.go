package defs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CoreURL is the prefix of the canonical URLs of the core definitions.
const CoreURL = "http://hl7.org/fhir/StructureDefinition/"

// StructureDefinition holds the parts of a StructureDefinition resource that
// the conversion reads.
type StructureDefinition struct {
	ResourceType   string `json:"resourceType"`
	URL            string `json:"url"`
	Name           string `json:"name"`
	Type           string `json:"type"`
	Kind           string `json:"kind"`
	Abstract       bool   `json:"abstract"`
	BaseDefinition string `json:"baseDefinition"`
	Derivation     string `json:"derivation"`
	Snapshot       *struct {
		Element []SDElement `json:"element"`
	} `json:"snapshot"`
}

// SDElement is an ElementDefinition as it appears in a snapshot.
type SDElement struct {
	ID        string `json:"id"`
	Path      string `json:"path"`
	SliceName string `json:"sliceName"`
	Slicing   *struct {
		Discriminator []Discriminator `json:"discriminator"`
		Rules         string          `json:"rules"`
	} `json:"slicing"`
	Short string `json:"short"`
	Min   int    `json:"min"`
	Max   string `json:"max"`
	Base  *struct {
		Path string `json:"path"`
		Min  int    `json:"min"`
		Max  string `json:"max"`
	} `json:"base"`
	Type []struct {
		Code          string      `json:"code"`
		Profile       []string    `json:"profile"`
		TargetProfile []string    `json:"targetProfile"`
		Extension     []extension `json:"extension"`
	} `json:"type"`
	ContentReference string `json:"contentReference"`
	Binding          *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	Constraint []struct {
		Key        string      `json:"key"`
		Severity   string      `json:"severity"`
		Human      string      `json:"human"`
		Expression string      `json:"expression"`
		Extension  []extension `json:"extension"`
	} `json:"constraint"`
	MaxLength int `json:"maxLength"`

	// Fixed and Pattern are the fixed[x] and pattern[x] values, if any.
	Fixed, Pattern json.RawMessage `json:"-"`
}

type extension struct {
	URL          string `json:"url"`
	ValueURL     string `json:"valueUrl"`
	ValueURI     string `json:"valueUri"`
	ValueString  string `json:"valueString"`
	ValueBoolean bool   `json:"valueBoolean"`
}

// UnmarshalJSON decodes an element and picks up its fixed[x] and pattern[x].
func (e *SDElement) UnmarshalJSON(b []byte) error {
	type plain SDElement
	if err := json.Unmarshal(b, (*plain)(e)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		switch {
		case strings.HasPrefix(k, "fixed") && len(k) > len("fixed"):
			e.Fixed = v
		case strings.HasPrefix(k, "pattern") && len(k) > len("pattern"):
			e.Pattern = v
		}
	}
	return nil
}

// ConstraintTable collects distinct constraints.
type ConstraintTable struct {
	List  []Constraint
	index map[Constraint]int
}

// Add returns the index of c, adding it if new.
func (t *ConstraintTable) Add(c Constraint) int {
	if t.index == nil {
		t.index = make(map[Constraint]int)
	}
	if i, ok := t.index[c]; ok {
		return i
	}
	t.List = append(t.List, c)
	t.index[c] = len(t.List) - 1
	return len(t.List) - 1
}

// BindingFunc maps a required binding's value set URL (without version) and
// its element to 1 + a value set index, or 0 when its codes are unknown.
type BindingFunc func(url string, el *SDElement) int

// ErrNoSnapshot is returned for a StructureDefinition without a snapshot.
var ErrNoSnapshot = errors.New("StructureDefinition has no snapshot")

// Convert turns a StructureDefinition into a Type.
func Convert(sd *StructureDefinition, cons *ConstraintTable, bind BindingFunc) (Type, error) {
	if sd.ResourceType != "StructureDefinition" {
		return Type{}, fmt.Errorf("not a StructureDefinition but %q", sd.ResourceType)
	}
	if sd.Snapshot == nil || len(sd.Snapshot.Element) == 0 {
		return Type{}, fmt.Errorf("%s: %w", sd.URL, ErrNoSnapshot)
	}
	t := Type{Name: sd.Name, URL: sd.URL, Kind: sd.Kind, Abstract: sd.Abstract}
	if sd.Derivation == "constraint" {
		t.BaseType = sd.Type
	} else {
		t.Name = sd.Type
	}
	for i := range sd.Snapshot.Element {
		se := &sd.Snapshot.Element[i]
		el, err := convertElement(sd, se, cons, bind)
		if err != nil {
			return Type{}, fmt.Errorf("%s: element %s: %w", sd.URL, se.ID, err)
		}
		t.Elements = append(t.Elements, el)
	}
	return t, nil
}

func parseMax(s string) (int, error) {
	if s == "*" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad max %q", s)
	}
	return n, nil
}

func convertElement(sd *StructureDefinition, se *SDElement, cons *ConstraintTable, bind BindingFunc) (Element, error) {
	el := Element{Path: se.Path, SliceName: se.SliceName, Min: se.Min, MaxLength: se.MaxLength, Fixed: se.Fixed, Pattern: se.Pattern}
	if se.ID != se.Path {
		el.ID = se.ID
	}
	if se.Slicing != nil && sd.Derivation == "constraint" {
		el.Slicing = &Slicing{Discriminators: se.Slicing.Discriminator, Rules: se.Slicing.Rules}
	}
	var err error
	if el.Max, err = parseMax(se.Max); err != nil {
		return el, err
	}
	baseMax := se.Max
	if se.Base != nil && se.Base.Max != "" {
		baseMax = se.Base.Max
	}
	el.Array = baseMax != "1" && baseMax != "0"
	if baseMax == "0" && se.Max != "0" && se.Max != "1" {
		el.Array = true
	}
	el.ContentRef = strings.TrimPrefix(se.ContentReference, "#")
	if i := strings.Index(el.ContentRef, "#"); i >= 0 { // a full URL#path form
		el.ContentRef = el.ContentRef[i+1:]
	}
	for _, ty := range se.Type {
		tr := TypeRef{Code: ty.Code}
		if strings.HasPrefix(ty.Code, "http://hl7.org/fhirpath/System.") {
			tr.Code = systemTypeCode(sd, se, ty.Code, ty.Extension)
		}
		for _, p := range ty.Profile {
			switch p {
			case CoreURL + "SimpleQuantity", CoreURL + "MoneyQuantity":
				tr.Profile = strings.TrimPrefix(p, CoreURL)
			default:
				if !strings.HasPrefix(p, CoreURL) || sd.Derivation == "constraint" {
					tr.Profile = p
				}
			}
		}
		for _, tp := range ty.TargetProfile {
			tr.Targets = append(tr.Targets, strings.TrimPrefix(tp, CoreURL))
		}
		el.Types = append(el.Types, tr)
	}
	if b := se.Binding; b != nil && b.Strength == "required" && b.ValueSet != "" {
		url, _, _ := strings.Cut(b.ValueSet, "|")
		el.BindingURL = url
		if bind != nil {
			el.Binding = bind(url, se)
		}
	}
	for _, c := range se.Constraint {
		k := Constraint{Key: c.Key, Severity: c.Severity, Human: c.Human, Expression: c.Expression}
		for _, x := range c.Extension {
			if x.URL == "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice" && x.ValueBoolean {
				k.BestPractice = true
			}
		}
		el.Constraints = append(el.Constraints, cons.Add(k))
	}
	return el, nil
}

// systemTypeCode maps the FHIRPath system type that the snapshot gives for
// primitive values, ids and urls to the FHIR type that the JSON must follow.
func systemTypeCode(sd *StructureDefinition, se *SDElement, code string, exts []extension) string {
	// The logical id of a resource is an id, although the definitions type it
	// as string.
	if sd.Kind == "resource" && strings.Count(se.Path, ".") == 1 && strings.HasSuffix(se.Path, ".id") {
		return "id"
	}
	for _, x := range exts {
		if x.URL == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type" {
			return cmpOr(x.ValueURL, x.ValueURI, x.ValueString)
		}
	}
	switch strings.TrimPrefix(code, "http://hl7.org/fhirpath/System.") {
	case "Boolean":
		return "boolean"
	case "Integer":
		return "integer"
	case "Decimal":
		return "decimal"
	case "Date":
		return "date"
	case "DateTime":
		return "dateTime"
	case "Time":
		return "time"
	}
	return "string"
}

func cmpOr(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
