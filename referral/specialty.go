package referral

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// Coding is a code in a code system.
type Coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// Specialty is a clinical specialty and the investigations a specialist of
// it expects to find in a referral package. The lists live in
// referral/specialties/*.json: one file per specialty, extended by adding a
// file or a code.
type Specialty struct {
	// Code is the gateway's short name ("cardiology"), which callers may
	// also give as a code of SpecialtySystem.
	Code    string `json:"code"`
	Display string `json:"display"`
	// Codes name the specialty in standard systems (SNOMED CT).
	Codes          []Coding        `json:"codes"`
	Investigations []Investigation `json:"investigations"`
}

// Investigation is one expected investigation: present when any resource
// of the record carries one of its codes.
type Investigation struct {
	Name  string   `json:"name"`
	Codes []Coding `json:"codes"`
	// Source (an id of the knowledge bibliography, knowledge/data/
	// sources.json) and Where (the recommendation or table) cite the
	// guideline that expects the investigation; both are required.
	Source string `json:"source"`
	Where  string `json:"where"`
}

// Cite is the investigation's citation in kb; ok is false when its source
// is not in the bibliography.
func (inv Investigation) Cite(kb *knowledge.Base) (knowledge.Citation, bool) {
	s := kb.Source(inv.Source)
	if s == nil {
		return knowledge.Citation{}, false
	}
	return knowledge.Citation{Source: s, Where: inv.Where}, true
}

// SpecialtySystem is the code system of the gateway's specialty short names.
const SpecialtySystem = "https://fhirgate.org/fhir/CodeSystem/specialty"

//go:embed specialties/*.json
var specialtyFiles embed.FS

var builtin = sync.OnceValues(func() ([]*Specialty, error) {
	return LoadSpecialties(specialtyFiles, "specialties")
})

// Specialties returns the built-in specialties, sorted by code. It panics
// if an embedded file is malformed (a build defect the tests catch).
func Specialties() []*Specialty {
	s, err := builtin()
	if err != nil {
		panic(err)
	}
	return s
}

// LoadSpecialties reads every *.json file of dir in fsys as a Specialty.
func LoadSpecialties(fsys fs.FS, dir string) ([]*Specialty, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Specialty
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		sp, err := ParseSpecialty(b)
		if err != nil {
			return nil, fmt.Errorf("specialty file %s: %w", n, err)
		}
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out, nil
}

// ErrBadSpecialty reports a malformed specialty file.
var ErrBadSpecialty = errors.New("malformed specialty")

// ParseSpecialty reads one specialty file; unknown keys are an error so a
// typo does not silently drop an investigation.
func ParseSpecialty(b []byte) (*Specialty, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var sp Specialty
	if err := dec.Decode(&sp); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSpecialty, err)
	}
	if sp.Code == "" || sp.Display == "" || len(sp.Investigations) == 0 {
		return nil, fmt.Errorf("%w: code, display and investigations are required", ErrBadSpecialty)
	}
	for i, inv := range sp.Investigations {
		if inv.Name == "" || len(inv.Codes) == 0 {
			return nil, fmt.Errorf("%w: investigation %d needs a name and codes", ErrBadSpecialty, i)
		}
		if inv.Source == "" || strings.TrimSpace(inv.Where) == "" {
			return nil, fmt.Errorf("%w: investigation %q needs a source and where (the guideline that expects it)", ErrBadSpecialty, inv.Name)
		}
		if knowledge.Builtin().Source(inv.Source) == nil {
			return nil, fmt.Errorf("%w: investigation %q cites %q, which is not in the knowledge bibliography", ErrBadSpecialty, inv.Name, inv.Source)
		}
		for _, c := range inv.Codes {
			if c.System == "" || c.Code == "" {
				return nil, fmt.Errorf("%w: investigation %q has a code without system or code", ErrBadSpecialty, inv.Name)
			}
		}
	}
	return &sp, nil
}

// LookupSpecialty finds a built-in specialty by one of its codes: a SNOMED
// CT code of its Codes, or its short name (system SpecialtySystem or "").
func LookupSpecialty(system, code string) (*Specialty, bool) {
	for _, sp := range Specialties() {
		if (system == "" || system == SpecialtySystem) && strings.EqualFold(code, sp.Code) {
			return sp, true
		}
		for _, c := range sp.Codes {
			if c.Code == code && (system == "" || c.System == system) {
				return sp, true
			}
		}
	}
	return nil, false
}
