// Package subject compares what a document or message says about its
// patient (identifiers, names, birth date, administrative sex) with the
// Patient it is about to be filed under, so that a wrong-patient filing is
// caught before it happens.
//
// The comparison looks for contradictions, not for agreement: a document
// that leaves something out does not contradict the Patient, and neither
// does one that says the same thing differently. So:
//   - missing data on either side is never a mismatch ("unknown" sex, a
//     Patient without a birth date, a message without names);
//   - an identifier contradicts only when the Patient holds identifiers of
//     the same system and none has the document's value (a second MRN of
//     another system says nothing, and neither does an identifier without
//     a system);
//   - names are compared without case, diacritics or punctuation, given
//     names in any order, an initial standing for any given name with that
//     letter, one family name being part of the other ("García López" and
//     "Garcia"), and family and given names swapped; the document
//     contradicts the Patient only when none of its names is compatible
//     with any of the Patient's (former names included: a document may be
//     older than a change of name);
//   - a birth date contradicts only at the precision both have ("1970-05"
//     and "1970-05-12" agree);
//   - sex contradicts only when both are male, female or other and differ.
package subject

import (
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Identifier is one identifier and where it was read.
type Identifier struct {
	System, Value string
	// Path locates it in its source ("PID-3[2]", "Patient.identifier[0]").
	Path string
}

// Name is one human name and where it was read.
type Name struct {
	Family string
	Given  []string
	// Text is the name as one string, used when it has no parts.
	Text string
	Path string
}

// Value is one plain value and where it was read.
type Value struct {
	Value, Path string
}

// Demographics is what a document says about its patient.
type Demographics struct {
	Identifiers []Identifier
	Names       []Name
	// BirthDate is a FHIR date: YYYY, YYYY-MM or YYYY-MM-DD.
	BirthDate Value
	// Gender is a FHIR administrative gender code.
	Gender Value
}

// Mismatch is one contradiction between a document and a Patient.
type Mismatch struct {
	// Element is "identifier", "name", "birthDate" or "gender".
	Element string
	// SourcePath locates the document's value, TargetPath the Patient's.
	SourcePath, TargetPath string
	// SourceValue and TargetValue are the values: patient data, for the
	// caller's response only, never for a log.
	SourceValue, TargetValue string
}

// String describes the mismatch with its values (patient data).
func (m Mismatch) String() string {
	what := map[string]string{"identifier": "identifier", "name": "name", "birthDate": "birth date", "gender": "administrative sex"}[m.Element]
	return fmt.Sprintf("the %s %q (%s) contradicts the Patient's %q (%s)", what, m.SourceValue, m.SourcePath, m.TargetValue, m.TargetPath)
}

// Safe describes the mismatch without values: what may be logged or told
// to someone who may not see the Patient.
func (m Mismatch) Safe() string {
	what := map[string]string{"identifier": "identifier", "name": "name", "birthDate": "birth date", "gender": "administrative sex"}[m.Element]
	return fmt.Sprintf("the %s at %s contradicts the target Patient's", what, m.SourcePath)
}

// FromPatient reads a Patient's demographics, with FHIRPath locations.
func FromPatient(p *fhir.Resource) Demographics {
	var d Demographics
	if p == nil {
		return d
	}
	root := p.Root()
	for i, id := range items(root.Get("identifier")) {
		d.Identifiers = append(d.Identifiers, Identifier{System: id.Get("system").String(), Value: id.Get("value").String(), Path: fmt.Sprintf("Patient.identifier[%d]", i)})
	}
	for i, n := range items(root.Get("name")) {
		nm := Name{Family: n.Get("family").String(), Text: n.Get("text").String(), Path: fmt.Sprintf("Patient.name[%d]", i)}
		for _, g := range items(n.Get("given")) {
			nm.Given = append(nm.Given, g.String())
		}
		d.Names = append(d.Names, nm)
	}
	d.BirthDate = Value{root.Get("birthDate").String(), "Patient.birthDate"}
	d.Gender = Value{root.Get("gender").String(), "Patient.gender"}
	return d
}

func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}

// Compare lists the contradictions between a document's demographics and
// the target Patient's, in the order identifier, name, birth date, sex.
func Compare(doc, target Demographics) []Mismatch {
	var out []Mismatch
	for _, id := range doc.Identifiers {
		sys, val := strings.TrimSpace(id.System), strings.TrimSpace(id.Value)
		if !comparableSystem(sys) || val == "" {
			continue
		}
		var same []Identifier
		match := false
		for _, t := range target.Identifiers {
			if strings.TrimSpace(t.System) != sys || strings.TrimSpace(t.Value) == "" {
				continue
			}
			same = append(same, t)
			if strings.TrimSpace(t.Value) == val {
				match = true
			}
		}
		if len(same) > 0 && !match {
			out = append(out, Mismatch{Element: "identifier", SourcePath: id.Path, TargetPath: same[0].Path, SourceValue: sys + "|" + val, TargetValue: sys + "|" + same[0].Value})
		}
	}
	if m, ok := compareNames(doc.Names, target.Names); !ok {
		out = append(out, m)
	}
	if a, b := strings.TrimSpace(doc.BirthDate.Value), strings.TrimSpace(target.BirthDate.Value); a != "" && b != "" {
		n := min(len(a), len(b))
		if a[:n] != b[:n] {
			out = append(out, Mismatch{Element: "birthDate", SourcePath: doc.BirthDate.Path, TargetPath: target.BirthDate.Path, SourceValue: a, TargetValue: b})
		}
	}
	if a, b := doc.Gender.Value, target.Gender.Value; knownSex(a) && knownSex(b) && a != b {
		out = append(out, Mismatch{Element: "gender", SourcePath: doc.Gender.Path, TargetPath: target.Gender.Path, SourceValue: a, TargetValue: b})
	}
	return out
}

// comparableSystem: a system that names a namespace of values. Without one
// an identifier means something only to its sender; urn:ietf:rfc:3986 says
// only that the value is a URI.
func comparableSystem(s string) bool {
	return s != "" && s != "urn:ietf:rfc:3986"
}

func knownSex(g string) bool { return g == "male" || g == "female" || g == "other" }

// compareNames reports whether some document name is compatible with some
// Patient name; when none is, the mismatch names the first of each.
func compareNames(doc, target []Name) (Mismatch, bool) {
	var ds, ts []normName
	for _, n := range doc {
		if nn := normalizeName(n); !nn.empty() {
			ds = append(ds, nn)
		}
	}
	for _, n := range target {
		if nn := normalizeName(n); !nn.empty() {
			ts = append(ts, nn)
		}
	}
	if len(ds) == 0 || len(ts) == 0 {
		return Mismatch{}, true
	}
	for _, d := range ds {
		for _, t := range ts {
			if compatible(d, t) {
				return Mismatch{}, true
			}
		}
	}
	return Mismatch{Element: "name", SourcePath: ds[0].path, TargetPath: ts[0].path, SourceValue: ds[0].display, TargetValue: ts[0].display}, false
}

type normName struct {
	family, given, all []string // tokens
	path, display      string
}

func (n normName) empty() bool { return len(n.all) == 0 }

func normalizeName(n Name) normName {
	out := normName{path: n.Path}
	out.family = tokens(n.Family)
	for _, g := range n.Given {
		out.given = append(out.given, tokens(g)...)
	}
	if len(out.family) == 0 && len(out.given) == 0 {
		out.all = tokens(n.Text)
		out.display = strings.TrimSpace(n.Text)
	} else {
		out.all = append(append([]string(nil), out.given...), out.family...)
		out.display = strings.TrimSpace(strings.Join(append(append([]string(nil), n.Given...), n.Family), " "))
	}
	return out
}

// tokens folds case and diacritics and splits on anything that is not a
// letter or digit ("O'Brien-Smith" → "o", "brien", "smith").
func tokens(s string) []string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			// a combining mark: the diacritic of the letter before
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteByte(' ')
		}
	}
	return strings.Fields(undecomposed.Replace(b.String()))
}

// undecomposed spells out letters that NFD does not split into a base
// letter and a mark.
var undecomposed = strings.NewReplacer("ß", "ss", "ø", "o", "æ", "ae", "œ", "oe", "ł", "l", "đ", "d", "ı", "i")

func compatible(a, b normName) bool {
	if len(a.family) > 0 && len(b.family) > 0 {
		if subsetEither(a.family, b.family) && (len(a.given) == 0 || len(b.given) == 0 || subsetEither(a.given, b.given)) {
			return true
		}
	} else if len(a.family) == 0 && len(b.family) == 0 && len(a.given) > 0 && len(b.given) > 0 {
		if subsetEither(a.given, b.given) {
			return true
		}
	}
	// family and given swapped, or a name kept only as text
	return subsetEither(a.all, b.all) && (len(a.family) == 0 || len(b.family) == 0 || overlaps(a.family, b.all) && overlaps(b.family, a.all))
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if tokenMatch(x, y) {
				return true
			}
		}
	}
	return false
}

// subsetEither: every token of the shorter list matches a distinct token
// of the other (in any order).
func subsetEither(a, b []string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	done, used := make([]bool, len(a)), make([]bool, len(b))
	// exact matches first, so an initial does not take a full name's partner
	for pass := 0; pass < 2; pass++ {
		for i := range a {
			for j := range b {
				if done[i] || used[j] {
					continue
				}
				if a[i] == b[j] || pass == 1 && tokenMatch(a[i], b[j]) {
					done[i], used[j] = true, true
				}
			}
		}
	}
	for _, d := range done {
		if !d {
			return false
		}
	}
	return true
}

// tokenMatch: equal, or one is an initial of the other.
func tokenMatch(x, y string) bool {
	if x == y {
		return true
	}
	rx, ry := []rune(x), []rune(y)
	return len(rx) == 1 && len(ry) > 0 && ry[0] == rx[0] || len(ry) == 1 && len(rx) > 0 && rx[0] == ry[0]
}
