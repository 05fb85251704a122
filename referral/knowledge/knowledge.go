// Package knowledge holds the clinical reference knowledge the case
// summary judges a record by: reference intervals and decision thresholds
// keyed by LOINC (age-, sex- and unit-aware), the missing-test rules per
// condition and medication, and the bibliography every entry cites. The
// tables are JSON files embedded in the binary (data/*.json); Load refuses
// a table in which any entry lacks a citation, names a source the
// bibliography does not hold, or states a unit it cannot read.
//
// Extending it: add an analyte (LOINC codes, the unit its limits are
// stated in, limits each with "source" and "where") to ranges.json, a rule
// to care.json, and the publication to sources.json. Thresholds are copied
// from the cited publication, never estimated.
package knowledge

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sort"
	"strings"
	"sync"
)

// Source is one publication the knowledge cites.
type Source struct {
	ID string `json:"id"`
	// Short names it in running text ("KDIGO 2024 CKD guideline").
	Short string `json:"short"`
	// Citation is the full bibliographic reference.
	Citation string `json:"citation"`
	// URL is its DOI link or the publisher's page.
	URL string `json:"url"`
}

// Citation is a source and the place in it an entry comes from.
type Citation struct {
	Source *Source
	// Where is the table, recommendation or section.
	Where string
}

// String is "Short, where".
func (c Citation) String() string {
	if c.Source == nil {
		return ""
	}
	return c.Source.Short + ", " + c.Where
}

// Analyte is one measured quantity and the limits it is judged by.
type Analyte struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Category string   `json:"category"`
	LOINC    []string `json:"loinc"`
	// Unit (UCUM) the limits are stated in unless a limit says otherwise.
	Unit string `json:"unit"`
	// MolarMass (g/mol) allows mass ↔ substance conversions.
	MolarMass       float64 `json:"molarMass,omitempty"`
	MolarMassSource string  `json:"molarMassSource,omitempty"`
	// Valence 1 marks a monovalent ion, for which meq equals mmol.
	Valence int `json:"valence,omitempty"`
	// IncompatibleUnits are units of another scale of the same analyte
	// that no factor converts (HbA1c % NGSP versus mmol/mol IFCC).
	IncompatibleUnits []string `json:"incompatibleUnits,omitempty"`
	Note              string   `json:"note,omitempty"`
	Limits            []*Limit `json:"limits"`

	molarCite Citation
}

// Limit is one published limit. Exactly one of Low/High (an interval:
// outside it is low or high), Above, AtOrAbove, Below, AtOrBelow is set.
type Limit struct {
	Low       *float64 `json:"low,omitempty"`
	High      *float64 `json:"high,omitempty"`
	Above     *float64 `json:"above,omitempty"`
	AtOrAbove *float64 `json:"atOrAbove,omitempty"`
	Below     *float64 `json:"below,omitempty"`
	AtOrBelow *float64 `json:"atOrBelow,omitempty"`
	// Unit overrides the analyte's unit for this limit.
	Unit     string `json:"unit,omitempty"`
	Critical bool   `json:"critical,omitempty"`
	// Sex is "male", "female" or "" (both).
	Sex string `json:"sex,omitempty"`
	// AgeMin (inclusive) and AgeMax (exclusive) bound the age in years
	// the limit applies to; AgeMax 0 means no upper bound.
	AgeMin float64 `json:"ageMin,omitempty"`
	AgeMax float64 `json:"ageMax,omitempty"`
	// Label says what crossing the limit means ("stage 2 hypertension
	// range"); intervals get "below/above the reference interval".
	Label  string `json:"label,omitempty"`
	Source string `json:"source"`
	Where  string `json:"where"`

	cite Citation
}

// Cite is the limit's citation.
func (l *Limit) Cite() Citation { return l.cite }

// UnitOf is the unit the limit's numbers are in.
func (l *Limit) UnitOf(a *Analyte) string {
	if l.Unit != "" {
		return l.Unit
	}
	return a.Unit
}

// Describe says the limit in words with its numbers: "reference interval
// 3.5–5.3 mmol/L", "≥ 6.5 %".
func (l *Limit) Describe(a *Analyte) string {
	u := " " + DisplayUnit(l.UnitOf(a))
	switch {
	case l.Low != nil && l.High != nil:
		return "reference interval " + FormatNumber(*l.Low) + "–" + FormatNumber(*l.High) + u
	case l.Above != nil:
		return "> " + FormatNumber(*l.Above) + u
	case l.AtOrAbove != nil:
		return "≥ " + FormatNumber(*l.AtOrAbove) + u
	case l.Below != nil:
		return "< " + FormatNumber(*l.Below) + u
	case l.AtOrBelow != nil:
		return "≤ " + FormatNumber(*l.AtOrBelow) + u
	}
	return ""
}

// Interpretation codes (HL7 v3 ObservationInterpretation).
const (
	High         = "H"
	Low          = "L"
	CriticalHigh = "HH"
	CriticalLow  = "LL"
)

// Match is one limit a value crosses.
type Match struct {
	Limit *Limit
	// Code is H, L, HH or LL.
	Code string
	// Label says what it means ("above the reference interval").
	Label string
	// Beyond is how far past the limit the value is, as a fraction of the
	// limit (for ranking the worst value of a series).
	Beyond float64
}

// Subject is who a value is judged for.
type Subject struct {
	// Sex is "male", "female" or "" (unknown: sex-specific limits do not apply).
	Sex string
	// Age in years at the time of the value; negative when unknown
	// (age-bounded limits do not apply).
	Age float64
}

// Judge checks value (in unit) against every applicable limit of the
// analyte and returns the most severe match: critical before abnormal,
// then the limit furthest from normal. ok is false when no limit applies
// (wrong sex or age, or a unit that does not convert): the value is then
// unjudged, not normal.
func (a *Analyte) Judge(value float64, unit string, s Subject) (m *Match, judged bool) {
	for _, l := range a.Limits {
		if l.Sex != "" && l.Sex != s.Sex {
			continue
		}
		if l.AgeMin > 0 || l.AgeMax > 0 {
			if s.Age < 0 || s.Age < l.AgeMin || l.AgeMax > 0 && s.Age >= l.AgeMax {
				continue
			}
		}
		v, err := a.ConvertTo(value, unit, l.UnitOf(a))
		if err != nil {
			continue
		}
		judged = true
		got := l.test(v)
		if got == nil {
			continue
		}
		if m == nil || got.worse(m) {
			m = got
		}
	}
	return m, judged
}

// ConvertTo converts a value of this analyte between units, with its
// molar mass and valence.
func (a *Analyte) ConvertTo(v float64, from, to string) (float64, error) {
	from, to = strings.TrimSpace(from), strings.TrimSpace(to)
	for _, u := range a.IncompatibleUnits {
		if strings.EqualFold(u, from) || strings.EqualFold(u, to) {
			if !strings.EqualFold(from, to) {
				return 0, fmt.Errorf("%w: %s in %s is another scale than %s", ErrUnit, a.Name, from, to)
			}
		}
	}
	if a.Valence == 1 {
		from = meqAsMmol(from)
		to = meqAsMmol(to)
	}
	return Convert(v, from, to, a.MolarMass)
}

func meqAsMmol(u string) string {
	if strings.HasPrefix(strings.ToLower(u), "meq") {
		return "mmol" + u[3:]
	}
	return u
}

func (l *Limit) test(v float64) *Match {
	code := func(high bool) string {
		switch {
		case high && l.Critical:
			return CriticalHigh
		case high:
			return High
		case l.Critical:
			return CriticalLow
		}
		return Low
	}
	beyond := func(limit float64) float64 {
		if limit == 0 {
			return math.Abs(v)
		}
		return math.Abs(v-limit) / math.Abs(limit)
	}
	label := l.Label
	switch {
	case l.Low != nil && v < *l.Low:
		if label == "" {
			label = "below the reference interval"
		}
		return &Match{Limit: l, Code: code(false), Label: label, Beyond: beyond(*l.Low)}
	case l.High != nil && v > *l.High:
		if label == "" {
			label = "above the reference interval"
		}
		return &Match{Limit: l, Code: code(true), Label: label, Beyond: beyond(*l.High)}
	case l.Above != nil && v > *l.Above:
		return &Match{Limit: l, Code: code(true), Label: label, Beyond: beyond(*l.Above)}
	case l.AtOrAbove != nil && v >= *l.AtOrAbove:
		return &Match{Limit: l, Code: code(true), Label: label, Beyond: beyond(*l.AtOrAbove)}
	case l.Below != nil && v < *l.Below:
		return &Match{Limit: l, Code: code(false), Label: label, Beyond: beyond(*l.Below)}
	case l.AtOrBelow != nil && v <= *l.AtOrBelow:
		return &Match{Limit: l, Code: code(false), Label: label, Beyond: beyond(*l.AtOrBelow)}
	}
	return nil
}

// threshold is the number the limit's match was decided on.
func (l *Limit) threshold(high bool) float64 {
	for _, p := range []*float64{l.Above, l.AtOrAbove, l.Below, l.AtOrBelow} {
		if p != nil {
			return *p
		}
	}
	if high && l.High != nil {
		return *l.High
	}
	if l.Low != nil {
		return *l.Low
	}
	return 0
}

// worse ranks two matches: critical first, then the limit further from
// normal (a higher high threshold, a lower low one), then how far beyond.
func (m *Match) worse(o *Match) bool {
	mc, oc := len(m.Code) == 2, len(o.Code) == 2
	if mc != oc {
		return mc
	}
	mh, oh := m.Code[0] == 'H', o.Code[0] == 'H'
	if mh == oh && m.Limit.Unit == o.Limit.Unit {
		mt, ot := m.Limit.threshold(mh), o.Limit.threshold(oh)
		if mt != ot {
			if mh {
				return mt > ot
			}
			return mt < ot
		}
	}
	return m.Beyond > o.Beyond
}

// Severity orders interpretation codes: 0 none, 1 abnormal, 2 critical.
func Severity(code string) int {
	switch code {
	case CriticalHigh, CriticalLow, "AA":
		return 2
	case High, Low, "A", "HU", "LU":
		return 1
	}
	return 0
}

// ConditionSet is a group of condition codes (SNOMED CT codes, ICD-10
// code prefixes) that trigger rules.
type ConditionSet struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	SNOMED []string `json:"snomed"`
	ICD10  []string `json:"icd10"`
}

// MedicationSet is a group of medicines by ingredient name (matched as a
// word of the medication's text or display) and ATC code prefix.
type MedicationSet struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Ingredients []string `json:"ingredients"`
	ATC         []string `json:"atc"`
}

// Code is a system and code.
type Code struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// TestSet is a test: the codes (or, for examinations sources rarely code,
// the words at the start of a word of the label) that show it was done.
type TestSet struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Codes    []Code   `json:"codes"`
	Keywords []string `json:"keywords"`
}

// Trigger says what makes a rule apply.
type Trigger struct {
	Condition  string `json:"condition,omitempty"`
	Medication string `json:"medication,omitempty"`
}

// Rule is a test expected for a condition or medication.
type Rule struct {
	ID   string  `json:"id"`
	When Trigger `json:"when"`
	Test string  `json:"test"`
	// WithinMonths is how recent the test must be; 0: at least once.
	WithinMonths int    `json:"withinMonths,omitempty"`
	Text         string `json:"text"`
	Source       string `json:"source"`
	Where        string `json:"where"`

	cite Citation
}

// Cite is the rule's citation.
func (r *Rule) Cite() Citation { return r.cite }

// Review is a value that, with a trigger, calls for a review (a
// medication dose at a low eGFR).
type Review struct {
	ID      string  `json:"id"`
	When    Trigger `json:"when"`
	Analyte string  `json:"analyte"`
	Below   float64 `json:"below"`
	Text    string  `json:"text"`
	Source  string  `json:"source"`
	Where   string  `json:"where"`

	cite Citation
}

// Cite is the review's citation.
func (r *Review) Cite() Citation { return r.cite }

// Base is the loaded knowledge.
type Base struct {
	Sources     []*Source
	Analytes    []*Analyte
	Conditions  []*ConditionSet
	Medications []*MedicationSet
	Tests       []*TestSet
	Rules       []*Rule
	Reviews     []*Review

	byLOINC   map[string]*Analyte
	byID      map[string]*Analyte
	sources   map[string]*Source
	condByID  map[string]*ConditionSet
	medByID   map[string]*MedicationSet
	testByID  map[string]*TestSet
	snomedSet map[string][]string // SNOMED code → condition set ids
}

// ErrInvalid reports a knowledge table that breaks a rule (a missing
// citation, an unknown source, an unreadable unit).
var ErrInvalid = errors.New("invalid knowledge table")

//go:embed data/*.json
var dataFS embed.FS

var builtin = sync.OnceValues(func() (*Base, error) { return Load(dataFS, "data") })

// Builtin is the knowledge shipped in the binary. It panics when an
// embedded table is invalid (a build defect the tests catch).
func Builtin() *Base {
	b, err := builtin()
	if err != nil {
		panic(err)
	}
	return b
}

// Load reads sources.json, ranges.json and care.json of dir and checks
// every entry (see ErrInvalid).
func Load(fsys fs.FS, dir string) (*Base, error) {
	var b Base
	read := func(name string, v any) error {
		data, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return fmt.Errorf("knowledge %s: %w", name, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
		}
		return nil
	}
	var ranges struct {
		Analytes []*Analyte `json:"analytes"`
	}
	var care struct {
		ConditionSets  []*ConditionSet  `json:"conditionSets"`
		MedicationSets []*MedicationSet `json:"medicationSets"`
		TestSets       []*TestSet       `json:"testSets"`
		Rules          []*Rule          `json:"rules"`
		Reviews        []*Review        `json:"reviews"`
	}
	if err := read("sources.json", &b.Sources); err != nil {
		return nil, err
	}
	if err := read("ranges.json", &ranges); err != nil {
		return nil, err
	}
	if err := read("care.json", &care); err != nil {
		return nil, err
	}
	b.Analytes, b.Conditions, b.Medications, b.Tests, b.Rules, b.Reviews =
		ranges.Analytes, care.ConditionSets, care.MedicationSets, care.TestSets, care.Rules, care.Reviews
	if errs := b.index(); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return &b, nil
}

// index builds the lookups and collects every problem.
func (b *Base) index() []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	b.sources = map[string]*Source{}
	for _, s := range b.Sources {
		if s.ID == "" || s.Short == "" || s.Citation == "" || !strings.HasPrefix(s.URL, "https://") {
			bad("source %q needs id, short, citation and an https url", s.ID)
		}
		if b.sources[s.ID] != nil {
			bad("source %q twice", s.ID)
		}
		b.sources[s.ID] = s
	}
	cite := func(what, src, where string) Citation {
		s := b.sources[src]
		if s == nil {
			bad("%s cites unknown source %q", what, src)
		}
		if strings.TrimSpace(where) == "" {
			bad("%s: no place in the source (where)", what)
		}
		return Citation{Source: s, Where: where}
	}
	b.byLOINC, b.byID = map[string]*Analyte{}, map[string]*Analyte{}
	for _, a := range b.Analytes {
		what := "analyte " + a.ID
		if a.ID == "" || a.Name == "" || len(a.LOINC) == 0 || len(a.Limits) == 0 {
			bad("%s needs id, name, loinc codes and limits", what)
		}
		if b.byID[a.ID] != nil {
			bad("%s twice", what)
		}
		b.byID[a.ID] = a
		for _, c := range a.LOINC {
			if o := b.byLOINC[c]; o != nil {
				bad("LOINC %s in both %s and %s", c, o.ID, a.ID)
			}
			b.byLOINC[c] = a
		}
		if !KnownUnit(a.Unit) {
			bad("%s: unit %q is not readable", what, a.Unit)
		}
		if a.MolarMass > 0 {
			a.molarCite = cite(what+" molar mass", a.MolarMassSource, "conversion factor table")
		}
		for i, l := range a.Limits {
			lw := fmt.Sprintf("%s limit %d", what, i)
			l.cite = cite(lw, l.Source, l.Where)
			n := 0
			for _, p := range []*float64{l.Above, l.AtOrAbove, l.Below, l.AtOrBelow} {
				if p != nil {
					n++
				}
			}
			interval := l.Low != nil && l.High != nil
			if interval && n > 0 || !interval && n != 1 || (l.Low == nil) != (l.High == nil) {
				bad("%s: exactly one of low+high, above, atOrAbove, below, atOrBelow", lw)
			}
			if !interval && l.Label == "" {
				bad("%s: a threshold needs a label", lw)
			}
			if l.Sex != "" && l.Sex != "male" && l.Sex != "female" {
				bad("%s: sex %q", lw, l.Sex)
			}
			if l.Unit != "" && !KnownUnit(l.Unit) {
				bad("%s: unit %q is not readable", lw, l.Unit)
			}
		}
	}
	b.condByID, b.snomedSet = map[string]*ConditionSet{}, map[string][]string{}
	for _, c := range b.Conditions {
		b.condByID[c.ID] = c
		if len(c.SNOMED)+len(c.ICD10) == 0 {
			bad("condition set %s has no codes", c.ID)
		}
		for _, s := range c.SNOMED {
			b.snomedSet[s] = append(b.snomedSet[s], c.ID)
		}
	}
	b.medByID = map[string]*MedicationSet{}
	for _, m := range b.Medications {
		b.medByID[m.ID] = m
		for i := range m.Ingredients {
			m.Ingredients[i] = strings.ToLower(m.Ingredients[i])
		}
		if len(m.Ingredients)+len(m.ATC) == 0 {
			bad("medication set %s is empty", m.ID)
		}
	}
	b.testByID = map[string]*TestSet{}
	for _, t := range b.Tests {
		b.testByID[t.ID] = t
		for i := range t.Keywords {
			t.Keywords[i] = strings.ToLower(t.Keywords[i])
		}
		if len(t.Codes)+len(t.Keywords) == 0 {
			bad("test set %s is empty", t.ID)
		}
	}
	trigger := func(what string, t Trigger) {
		switch {
		case t.Condition != "" && t.Medication == "":
			if b.condByID[t.Condition] == nil {
				bad("%s: unknown condition set %q", what, t.Condition)
			}
		case t.Medication != "" && t.Condition == "":
			if b.medByID[t.Medication] == nil {
				bad("%s: unknown medication set %q", what, t.Medication)
			}
		default:
			bad("%s: when needs exactly one of condition, medication", what)
		}
	}
	for _, r := range b.Rules {
		what := "rule " + r.ID
		trigger(what, r.When)
		if b.testByID[r.Test] == nil {
			bad("%s: unknown test %q", what, r.Test)
		}
		if r.Text == "" || r.WithinMonths < 0 {
			bad("%s: text and a non-negative withinMonths", what)
		}
		r.cite = cite(what, r.Source, r.Where)
	}
	for _, r := range b.Reviews {
		what := "review " + r.ID
		trigger(what, r.When)
		if b.byID[r.Analyte] == nil || r.Text == "" {
			bad("%s: unknown analyte %q or no text", what, r.Analyte)
		}
		r.cite = cite(what, r.Source, r.Where)
	}
	return errs
}

// AnalyteFor finds the analyte of a LOINC code.
func (b *Base) AnalyteFor(loinc string) *Analyte { return b.byLOINC[loinc] }

// Analyte finds an analyte by id.
func (b *Base) Analyte(id string) *Analyte { return b.byID[id] }

// Source finds a source by id.
func (b *Base) Source(id string) *Source { return b.sources[id] }

// Cite is the citation of a source at a place (for the gateway's own
// formulas: CKD-EPI, pooled cohort equations…); it panics on an unknown
// source id, which the tests catch.
func (b *Base) Cite(id, where string) Citation {
	s := b.sources[id]
	if s == nil {
		panic("knowledge: unknown source " + id)
	}
	return Citation{Source: s, Where: where}
}

// MolarMassCite is the citation of the analyte's molar mass.
func (a *Analyte) MolarMassCite() Citation { return a.molarCite }

// ConditionSet finds a condition set by id.
func (b *Base) ConditionSet(id string) *ConditionSet { return b.condByID[id] }

// MedicationSet finds a medication set by id.
func (b *Base) MedicationSet(id string) *MedicationSet { return b.medByID[id] }

// TestSet finds a test set by id.
func (b *Base) TestSet(id string) *TestSet { return b.testByID[id] }

// Code systems a condition can be coded in.
const (
	SNOMED    = "http://snomed.info/sct"
	ICD10     = "http://hl7.org/fhir/sid/icd-10"
	ICD10CM   = "http://hl7.org/fhir/sid/icd-10-cm"
	ATCSystem = "http://www.whocc.no/atc"
	LOINC     = "http://loinc.org"
)

// MatchesCondition reports whether a coding belongs to the set.
func (c *ConditionSet) MatchesCondition(system, code string) bool {
	switch system {
	case SNOMED:
		for _, s := range c.SNOMED {
			if s == code {
				return true
			}
		}
	case ICD10, ICD10CM:
		for _, p := range c.ICD10 {
			if strings.HasPrefix(code, p) {
				return true
			}
		}
	}
	return false
}

// MatchesMedication reports whether a medication (its codings and text)
// belongs to the set.
func (m *MedicationSet) MatchesMedication(codes []Code, texts []string) bool {
	for _, c := range codes {
		if c.System != ATCSystem {
			continue
		}
		for _, p := range m.ATC {
			if strings.HasPrefix(c.Code, p) {
				return true
			}
		}
	}
	for _, t := range texts {
		lt := strings.ToLower(t)
		for _, in := range m.Ingredients {
			if hasWordPrefix(lt, in) {
				return true
			}
		}
	}
	return false
}

// MatchesTest reports whether a resource's codes or labels show the test.
func (t *TestSet) MatchesTest(codes []Code, labels []string) bool {
	for _, c := range codes {
		for _, tc := range t.Codes {
			if c == tc {
				return true
			}
		}
	}
	for _, l := range labels {
		ll := strings.ToLower(l)
		for _, k := range t.Keywords {
			if hasWordPrefix(ll, k) {
				return true
			}
		}
	}
	return false
}

// HasWordPrefix reports whether, case-insensitively, word occurs in text
// at the start of a word ("retina" in "Examination of retina",
// "metformin" in "24 HR Metformin hydrochloride").
func HasWordPrefix(text, word string) bool {
	return hasWordPrefix(strings.ToLower(text), strings.ToLower(word))
}

// hasWordPrefix is HasWordPrefix of lower-case text and word.
func hasWordPrefix(t, w string) bool {
	for i := 0; ; {
		j := strings.Index(t[i:], w)
		if j < 0 {
			return false
		}
		j += i
		if j == 0 || !isLetter(t[j-1]) {
			return true
		}
		i = j + 1
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 0x80 }

// SortedLOINC lists every LOINC code the ranges cover (for documentation).
func (b *Base) SortedLOINC() []string {
	out := make([]string, 0, len(b.byLOINC))
	for c := range b.byLOINC {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
