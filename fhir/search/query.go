package search

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Prefix is the comparison prefix of a number, date or quantity value.
//
// Each value denotes a range [Lo, Hi] (its implicit precision: 2020-05 is
// the month, 100 is [99.5, 100.5]); each indexed value too. With s the
// search range and t the target (indexed) range, a value matches when:
//
//	eq: s.Lo <= t.Lo && t.Hi <= s.Hi          (s contains t)
//	ne: !eq
//	gt: t.Hi > s.Hi                           (t reaches above s)
//	lt: t.Lo < s.Lo                           (t reaches below s)
//	ge: gt || eq
//	le: lt || eq
//	sa: t.Lo > s.Hi                           (t starts after s)
//	eb: t.Hi < s.Lo                           (t ends before s)
//	ap: t.Lo <= s.Hi && s.Lo <= t.Hi          (overlap; ParseQuery has
//	    already widened s: by 10% of the value for numbers and
//	    quantities, by the width of its own range on each side for dates,
//	    so ap2020-03 covers 2020-01-30..2020-05-01)
//
// MatchNumber and MatchTime implement exactly this; SQL stores should
// compile the same comparisons.
type Prefix uint8

// The prefixes.
const (
	PrefixEq Prefix = iota
	PrefixNe
	PrefixGt
	PrefixLt
	PrefixGe
	PrefixLe
	PrefixSa
	PrefixEb
	PrefixAp
)

var prefixNames = [...]string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func (p Prefix) String() string { return prefixNames[p] }

func matchRange[T any](p Prefix, sLo, sHi, tLo, tHi T, cmp func(a, b T) int) bool {
	eq := cmp(sLo, tLo) <= 0 && cmp(tHi, sHi) <= 0
	switch p {
	case PrefixEq:
		return eq
	case PrefixNe:
		return !eq
	case PrefixGt:
		return cmp(tHi, sHi) > 0
	case PrefixLt:
		return cmp(tLo, sLo) < 0
	case PrefixGe:
		return eq || cmp(tHi, sHi) > 0
	case PrefixLe:
		return eq || cmp(tLo, sLo) < 0
	case PrefixSa:
		return cmp(tLo, sHi) > 0
	case PrefixEb:
		return cmp(tHi, sLo) < 0
	case PrefixAp:
		return cmp(tLo, sHi) <= 0 && cmp(sLo, tHi) <= 0
	}
	return false
}

// MatchNumber reports whether an indexed range [tLo, tHi] matches the
// search range [sLo, sHi] under prefix p (see Prefix).
func MatchNumber(p Prefix, sLo, sHi, tLo, tHi float64) bool {
	return matchRange(p, sLo, sHi, tLo, tHi, func(a, b float64) int {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
}

// MatchTime is MatchNumber for date ranges.
func MatchTime(p Prefix, sLo, sHi, tLo, tHi time.Time) bool {
	return matchRange(p, sLo, sHi, tLo, tHi, func(a, b time.Time) int { return a.Compare(b) })
}

// Modifier is a search parameter modifier.
type Modifier uint8

// The modifiers the parser accepts, and the parameter types they apply to.
const (
	ModNone       Modifier = iota
	ModMissing             // any type: Clause.Missing says whether the value must be absent
	ModExact               // string: equality on the text as written
	ModContains            // string: substring of the normalised text; uri: the value contains
	ModText                // token: Value.Text matches the normalised display/text (prefix)
	ModNot                 // token: no value of the resource matches any of the values
	ModAbove               // uri: the indexed uri is a prefix of the value
	ModBelow               // uri: the value is a prefix of the indexed uri
	ModIdentifier          // reference: Value.System/Code match Reference.identifier
	ModType                // reference: [type]; Clause.TargetType names it, Value.RefType is set
	ModOfType              // token (identifier): Value.TypeSystem/TypeCode/Code
)

var modifierNames = [...]string{"", "missing", "exact", "contains", "text", "not", "above", "below", "identifier", "", "of-type"}

func (m Modifier) String() string { return modifierNames[m] }

// allowedModifiers lists the modifiers of each parameter type (ModType is
// handled separately for references).
var allowedModifiers = map[ParamType][]Modifier{
	TypeString:    {ModMissing, ModExact, ModContains},
	TypeToken:     {ModMissing, ModText, ModNot, ModOfType},
	TypeReference: {ModMissing, ModIdentifier},
	TypeDate:      {ModMissing},
	TypeNumber:    {ModMissing},
	TypeQuantity:  {ModMissing},
	TypeURI:       {ModMissing, ModAbove, ModBelow, ModContains},
	TypeComposite: {ModMissing},
}

// Value is one value of a clause (values of a clause are ORed). Which
// fields are set depends on the parameter type:
//
//	string:    Text (Normalize of the value) and Raw (for :exact)
//	token:     System and Code; AnySystem when the value had no "|" (any
//	           system matches); "system|" leaves Code empty (any code);
//	           :text sets Text; :of-type sets TypeSystem, TypeCode and Code
//	           (the identifier value)
//	reference: RefType and RefID for [type]/[id] (RefType may be empty for
//	           a bare id on a parameter with several targets); URL (and
//	           Version after "|") for absolute and canonical references,
//	           with RefType/RefID too when the URL ends in [type]/[id];
//	           :identifier sets System and Code
//	date:      Prefix, Start..End (inclusive)
//	number:    Prefix, Number (as written), Low..High
//	quantity:  as number, plus System and Code (the unit code; AnySystem
//	           when the value gave no system: Code then matches the
//	           indexed code or unit); no unit leaves Code empty
//	uri:       Raw
//	composite: Parts, one Value per component, each typed as above
type Value struct {
	// Raw is the value as given, with the escapes (\, \| \$ \\) removed.
	Raw    string
	Prefix Prefix

	Text string

	System, Code         string
	AnySystem            bool
	TypeSystem, TypeCode string

	Start, End time.Time

	Number    string
	Low, High float64

	RefType, RefID string
	URL, Version   string

	Parts []Value

	escaped string // the value as written in the query, for Encode
}

// Clause is one condition of a query; the clauses of a Query are ANDed.
// A clause is either a plain test of a parameter (Values, ORed), a chained
// test (Chain), or a reverse chain (Has).
type Clause struct {
	// Param is the parameter code ("code", "_id", "subject"); "_has" for a
	// reverse chain.
	Param string
	Type  ParamType
	// Def is the parameter definition (nil for _has).
	Def      *Param
	Modifier Modifier
	// TargetType is the resource type given as a modifier on a reference
	// (subject:Patient=1) or as the qualifier of a chain
	// (subject:Patient.name=x).
	TargetType string
	// Missing applies to ModMissing: true finds resources without a value.
	Missing bool
	Values  []Value
	Chain   *Chain
	Has     *Has

	key string // the query key, for Encode
}

// Chain is a chained search: the parameter (a reference) must point to a
// resource of one of Types that satisfies Clause.
type Chain struct {
	Types  []string
	Clause *Clause
}

// Has is a reverse chain (_has:Type:param:...): some resource of Type whose
// reference parameter Param points to the searched resource satisfies
// Clause.
type Has struct {
	Type   string
	Param  string
	Clause *Clause
}

// Include is an _include or _revinclude directive. Source is the type of
// the resources holding the reference, Param its reference parameter and
// Target the optional type of the referenced resources. Wildcard (*)
// means every reference parameter of Source (or of every type when Source
// is empty).
type Include struct {
	Source   string
	Param    string
	Target   string
	Iterate  bool
	Wildcard bool
}

func (in Include) String() string {
	if in.Wildcard && in.Source == "" {
		return "*"
	}
	s := in.Source + ":" + in.Param
	if in.Wildcard {
		s = in.Source + ":*"
	}
	if in.Target != "" {
		s += ":" + in.Target
	}
	return s
}

// SortKey is one key of _sort.
type SortKey struct {
	Param string
	Type  ParamType
	Desc  bool
}

// TotalMode is the _total hint.
type TotalMode uint8

// The _total values; TotalDefault when the query has none.
const (
	TotalDefault TotalMode = iota
	TotalNone
	TotalEstimate
	TotalAccurate
)

var totalNames = [...]string{"", "none", "estimate", "accurate"}

func (t TotalMode) String() string { return totalNames[t] }

// SummaryMode is the _summary value.
type SummaryMode uint8

// The _summary values; SummaryDefault when the query has none.
const (
	SummaryDefault SummaryMode = iota
	SummaryTrue
	SummaryFalse
	SummaryText
	SummaryData
	SummaryCount
)

var summaryNames = [...]string{"", "true", "false", "text", "data", "count"}

func (s SummaryMode) String() string { return summaryNames[s] }

// Query is a parsed search.
type Query struct {
	// ResourceType is the type searched; "" for a whole-system search, whose
	// types are then Types (from _type; empty means every type).
	ResourceType string
	Types        []string
	Clauses      []Clause
	Sort         []SortKey
	// Count is the page size: _count, Options.DefaultCount when absent,
	// capped at Options.MaxCount.
	Count       int
	Total       TotalMode
	Summary     SummaryMode
	Elements    []string
	Includes    []Include
	RevIncludes []Include
	// Reserved holds the parameters named in Options.Reserved, untouched.
	Reserved url.Values
	// Issues are warnings about parameters that were ignored (lenient
	// mode); a server reports them in an OperationOutcome entry.
	Issues []fhir.Issue

	countGiven bool
}

// Limits that keep hostile queries cheap to parse and to run.
const (
	maxParams      = 100
	maxValueLen    = 4096
	maxOrValues    = 100
	maxChainDepth  = 3
	maxIncludes    = 20
	maxSortKeys    = 8
	maxElements    = 100
	maxQueryValues = 200
)

// ParseQuery parses the search parameters of a search on resourceType (""
// for a whole-system search). In lenient mode (strict false) unknown,
// unsupported and malformed parameters are ignored and reported as warning
// issues in Query.Issues; in strict mode (Prefer: handling=strict) they
// make ParseQuery fail with a *fhir.Error of status 400 whose issues name
// each parameter. Parameters of type special (near) and queries beyond the
// size limits always fail.
func (r *Registry) ParseQuery(resourceType string, params url.Values, strict bool) (*Query, error) {
	if resourceType != "" && !fhir.IsResourceType(resourceType) {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "unknown resource type %q", resourceType)
	}
	p := &queryParser{r: r, strict: strict, q: &Query{ResourceType: resourceType, Count: r.opts.DefaultCount}}
	keys := make([]string, 0, len(params))
	n := 0
	for k, vs := range params {
		keys = append(keys, k)
		n += len(vs)
	}
	if len(keys) > maxParams || n > maxQueryValues {
		return nil, fhir.Errorf(http.StatusBadRequest, "too-costly", nil, "too many search parameters (at most %d names and %d values)", maxParams, maxQueryValues)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.param(k, params[k])
		if p.fatal != nil {
			return nil, p.fatal
		}
	}
	if strict && len(p.issues) > 0 {
		return nil, &fhir.Error{Status: http.StatusBadRequest, Issues: p.issues}
	}
	p.q.Issues = p.issues
	return p.q, nil
}

type queryParser struct {
	r      *Registry
	q      *Query
	strict bool
	issues []fhir.Issue
	fatal  *fhir.Error
}

// problem is a parse failure of one parameter value.
type problem struct {
	code string // IssueType
	msg  string
}

func (e *problem) Error() string { return e.msg }

func problemf(code, format string, args ...any) *problem {
	return &problem{code: code, msg: fmt.Sprintf(format, args...)}
}

func (p *queryParser) report(key, value string, pr *problem) {
	sev := fhir.SeverityWarning
	text := pr.msg + "; the parameter was ignored"
	if p.strict {
		sev, text = fhir.SeverityError, pr.msg
	}
	diag := key
	if value != "" {
		diag += "=" + value
	}
	if len(diag) > 200 {
		diag = diag[:200] + "..."
	}
	p.issues = append(p.issues, fhir.Issue{Severity: sev, Code: pr.code, Details: &fhir.IssueDetails{Text: text}, Diagnostics: diag})
}

func (p *queryParser) param(key string, vals []string) {
	if !utf8.ValidString(key) {
		p.report("(invalid UTF-8)", "", problemf("invalid", "a parameter name is not valid UTF-8"))
		return
	}
	for _, v := range vals {
		if len(v) > maxValueLen {
			p.report(key, "", problemf("too-long", "the value of parameter %q is longer than %d bytes", key, maxValueLen))
			return
		}
		if !utf8.ValidString(v) {
			p.report(key, "", problemf("invalid", "the value of parameter %q is not valid UTF-8", key))
			return
		}
	}
	if slices.Contains(p.r.opts.Reserved, key) {
		if p.q.Reserved == nil {
			p.q.Reserved = url.Values{}
		}
		p.q.Reserved[key] = vals
		return
	}
	base, mod, _ := strings.Cut(key, ":")
	switch base {
	case "_format", "_pretty":
		return
	case "_sort", "_count", "_total", "_summary", "_elements", "_type":
		if mod != "" {
			p.report(key, "", problemf("not-supported", "parameter %q takes no modifier", base))
			return
		}
		if len(vals) > 1 {
			p.report(key, strings.Join(vals, "&"), problemf("invalid", "parameter %q is repeated", base))
			return
		}
		if pr := p.result(base, vals[0]); pr != nil {
			p.report(key, vals[0], pr)
		}
		return
	case "_include", "_revinclude":
		for _, v := range vals {
			if pr := p.include(base, mod, v); pr != nil {
				p.report(key, v, pr)
			}
		}
		return
	case "_contained", "_containedType", "_list", "_text", "_content", "_query", "_filter":
		p.report(key, "", problemf("not-supported", "parameter %q is not supported", base))
		return
	}
	for _, v := range vals {
		if len(p.q.Clauses) >= maxParams {
			p.fatal = fhir.Errorf(http.StatusBadRequest, "too-costly", nil, "too many search conditions")
			return
		}
		c, pr := p.clause(p.q.ResourceType, key, v, 0)
		if pr != nil {
			if pr.code == "special" {
				p.fatal = fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "%s", pr.msg)
				p.fatal.Issues[0].Diagnostics = key
				return
			}
			p.report(key, v, pr)
			continue
		}
		p.q.Clauses = append(p.q.Clauses, *c)
	}
}

// result parses the parameters that shape the result rather than select.
func (p *queryParser) result(name, v string) *problem {
	q := p.q
	switch name {
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return problemf("invalid", "_count must be a non-negative integer, not %q", v)
		}
		q.Count, q.countGiven = min(n, p.r.opts.MaxCount), true
	case "_total":
		i := slices.Index(totalNames[:], v)
		if i <= 0 {
			return problemf("invalid", "_total must be none, estimate or accurate, not %q", v)
		}
		q.Total = TotalMode(i)
	case "_summary":
		i := slices.Index(summaryNames[:], v)
		if i <= 0 {
			return problemf("invalid", "_summary must be true, false, text, data or count, not %q", v)
		}
		q.Summary = SummaryMode(i)
	case "_elements":
		var els []string
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if !validElementName(q.ResourceType, e) {
				return problemf("invalid", "_elements: %q is not an element of %s", e, typeOrResource(q.ResourceType))
			}
			if !slices.Contains(els, e) {
				els = append(els, e)
			}
		}
		if len(els) == 0 || len(els) > maxElements {
			return problemf("invalid", "_elements needs 1 to %d element names", maxElements)
		}
		q.Elements = els
	case "_sort":
		var keys []SortKey
		for _, k := range strings.Split(v, ",") {
			desc := strings.HasPrefix(k, "-")
			code := strings.TrimPrefix(k, "-")
			def, ok := p.r.Param(q.ResourceType, code)
			if !ok || def.Expression == "" || def.Type == TypeComposite || def.Type == TypeSpecial {
				return problemf("not-supported", "_sort: %q is not a sortable parameter of %s", code, typeOrResource(q.ResourceType))
			}
			if slices.ContainsFunc(keys, func(s SortKey) bool { return s.Param == code }) {
				return problemf("invalid", "_sort: %q is repeated", code)
			}
			keys = append(keys, SortKey{Param: code, Type: def.Type, Desc: desc})
		}
		if len(keys) > maxSortKeys {
			return problemf("too-costly", "_sort takes at most %d keys", maxSortKeys)
		}
		q.Sort = keys
	case "_type":
		if q.ResourceType != "" {
			return problemf("not-supported", "_type applies to a whole-system search only")
		}
		var types []string
		for _, t := range strings.Split(v, ",") {
			if !fhir.IsResourceType(t) {
				return problemf("invalid", "_type: %q is not a resource type", t)
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		q.Types = types
	}
	return nil
}

func typeOrResource(t string) string {
	if t == "" {
		return "Resource"
	}
	return t
}

func validElementName(rt, e string) bool {
	if !isName(e) {
		return false
	}
	if rt == "" {
		return true
	}
	_, _, ok := fhirpath.ElementType(rt, e)
	return ok
}

func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (p *queryParser) include(name, mod, v string) *problem {
	q := p.q
	in := Include{}
	switch mod {
	case "":
	case "iterate", "recurse":
		in.Iterate = true
	default:
		return problemf("not-supported", "%s takes no modifier %q (only :iterate)", name, mod)
	}
	if len(q.Includes)+len(q.RevIncludes) >= maxIncludes {
		return problemf("too-costly", "at most %d _include and _revinclude", maxIncludes)
	}
	parts := strings.Split(v, ":")
	switch {
	case v == "*":
		in.Wildcard = true
	case len(parts) == 2 || len(parts) == 3:
		in.Source, in.Param = parts[0], parts[1]
		if !fhir.IsResourceType(in.Source) {
			return problemf("invalid", "%s: %q is not a resource type", name, in.Source)
		}
		if len(parts) == 3 {
			in.Target = parts[2]
			if !fhir.IsResourceType(in.Target) {
				return problemf("invalid", "%s: %q is not a resource type", name, in.Target)
			}
		}
		if in.Param == "*" {
			in.Wildcard, in.Param = true, ""
			break
		}
		def, ok := p.r.Param(in.Source, in.Param)
		if !ok || def.Type != TypeReference {
			return problemf("invalid", "%s: %q is not a reference parameter of %s", name, in.Param, in.Source)
		}
		if in.Target != "" && len(def.Targets) > 0 && !def.HasTarget(in.Target) {
			return problemf("invalid", "%s: %s:%s cannot refer to %s", name, in.Source, in.Param, in.Target)
		}
		if !in.Iterate && q.ResourceType != "" {
			if name == "_include" && in.Source != q.ResourceType {
				return problemf("invalid", "_include: %s is not the searched type %s (use _include:iterate)", in.Source, q.ResourceType)
			}
			if name == "_revinclude" && len(def.Targets) > 0 && !def.HasTarget(q.ResourceType) {
				return problemf("invalid", "_revinclude: %s:%s cannot refer to %s", in.Source, in.Param, q.ResourceType)
			}
		}
	default:
		return problemf("invalid", "%s must be [type]:[parameter](:[target type]) or *, not %q", name, v)
	}
	list := &q.Includes
	if name == "_revinclude" {
		list = &q.RevIncludes
	}
	if !slices.Contains(*list, in) {
		*list = append(*list, in)
	}
	return nil
}

// clause parses one key=value pair of a search parameter on type rt.
func (p *queryParser) clause(rt, key, raw string, depth int) (*Clause, *problem) {
	if depth > maxChainDepth {
		return nil, problemf("too-costly", "chains and _has nest at most %d levels", maxChainDepth)
	}
	if strings.HasPrefix(key, "_has:") {
		return p.has(rt, key, raw, depth)
	}
	name, rest, chained := strings.Cut(key, ".")
	code, modName, _ := strings.Cut(name, ":")
	def, ok := p.r.Param(rt, code)
	if !ok {
		return nil, problemf("not-supported", "unknown search parameter %q for %s", code, typeOrResource(rt))
	}
	switch {
	case def.Type == TypeSpecial && code == "_has":
		return nil, problemf("invalid", "_has must be written _has:[type]:[reference parameter]:[parameter]")
	case def.Type == TypeSpecial && def.Expression != "":
		return nil, problemf("special", "search parameter %q (type special) is not supported", code)
	case def.Expression == "":
		return nil, problemf("not-supported", "search parameter %q is not supported", code)
	}
	c := &Clause{Param: code, Type: def.Type, Def: def, key: key}
	if modName == "" && strings.Contains(name, ":") {
		return nil, problemf("invalid", "parameter %q has an empty modifier", code)
	}
	if modName != "" {
		if m := slices.Index(modifierNames[:], modName); m > 0 && Modifier(m) != ModType {
			c.Modifier = Modifier(m)
			if !slices.Contains(allowedModifiers[def.Type], c.Modifier) {
				return nil, problemf("not-supported", "modifier :%s is not supported on %s parameter %q", modName, def.Type, code)
			}
		} else if def.Type == TypeReference && fhir.IsResourceType(modName) {
			if len(def.Targets) > 0 && !def.HasTarget(modName) {
				return nil, problemf("invalid", "parameter %q cannot refer to %s", code, modName)
			}
			c.Modifier, c.TargetType = ModType, modName
		} else {
			return nil, problemf("not-supported", "unknown modifier :%s on parameter %q", modName, code)
		}
	}
	if chained {
		return p.chain(c, rest, raw, depth)
	}
	if c.Modifier == ModMissing {
		switch raw {
		case "true", "false":
			c.Missing = raw == "true"
			c.Values = []Value{{Raw: raw, escaped: raw}}
			return c, nil
		}
		return nil, problemf("invalid", "%s:missing must be true or false, not %q", code, raw)
	}
	parts := splitEscaped(raw, ',')
	if len(parts) > maxOrValues {
		return nil, problemf("too-costly", "parameter %q has more than %d values", code, maxOrValues)
	}
	for _, part := range parts {
		v, pr := p.value(def, c, part)
		if pr != nil {
			return nil, pr
		}
		c.Values = append(c.Values, v)
	}
	return c, nil
}

func (p *queryParser) chain(c *Clause, rest, raw string, depth int) (*Clause, *problem) {
	if c.Type != TypeReference {
		return nil, problemf("invalid", "parameter %q is a %s parameter and cannot be chained", c.Param, c.Type)
	}
	if c.Modifier != ModNone && c.Modifier != ModType {
		return nil, problemf("invalid", "modifier :%s cannot be used in a chain", c.Modifier)
	}
	next, _, _ := strings.Cut(rest, ".")
	next, _, _ = strings.Cut(next, ":")
	var types []string
	if c.TargetType != "" {
		types = []string{c.TargetType}
	} else {
		for _, t := range c.Def.Targets {
			if _, ok := p.r.Param(t, next); ok {
				types = append(types, t)
			}
		}
	}
	if len(types) == 0 {
		return nil, problemf("invalid", "no resource that %q refers to has a parameter %q", c.Param, next)
	}
	var sub *Clause
	for _, t := range types {
		s, pr := p.clause(t, rest, raw, depth+1)
		if pr != nil {
			return nil, pr
		}
		if sub != nil && s.Type != sub.Type {
			return nil, problemf("invalid", "chained parameter %q differs between the types %q refers to; qualify it (%s:[type].%s)", next, c.Param, c.Param, rest)
		}
		sub = s
	}
	c.Chain = &Chain{Types: types, Clause: sub}
	return c, nil
}

func (p *queryParser) has(rt, key, raw string, depth int) (*Clause, *problem) {
	if depth > 0 {
		return nil, problemf("not-supported", "nested _has is not supported")
	}
	if rt == "" {
		return nil, problemf("not-supported", "_has needs a resource type")
	}
	parts := strings.SplitN(strings.TrimPrefix(key, "_has:"), ":", 3)
	if len(parts) != 3 || parts[2] == "" {
		return nil, problemf("invalid", "_has must be written _has:[type]:[reference parameter]:[parameter]")
	}
	typ, refCode, rest := parts[0], parts[1], parts[2]
	if !fhir.IsResourceType(typ) {
		return nil, problemf("invalid", "_has: %q is not a resource type", typ)
	}
	ref, ok := p.r.Param(typ, refCode)
	if !ok || ref.Type != TypeReference {
		return nil, problemf("invalid", "_has: %q is not a reference parameter of %s", refCode, typ)
	}
	if len(ref.Targets) > 0 && !ref.HasTarget(rt) {
		return nil, problemf("invalid", "_has: %s:%s cannot refer to %s", typ, refCode, rt)
	}
	sub, pr := p.clause(typ, rest, raw, depth+1)
	if pr != nil {
		return nil, pr
	}
	return &Clause{Param: "_has", Type: TypeSpecial, key: key, Has: &Has{Type: typ, Param: refCode, Clause: sub}}, nil
}

// value parses one OR-ed value (still escaped) of a clause.
func (p *queryParser) value(def *Param, c *Clause, esc string) (Value, *problem) {
	if esc == "" {
		return Value{}, problemf("invalid", "parameter %q has an empty value", c.key)
	}
	var v Value
	var pr *problem
	if def.Type == TypeComposite {
		v, pr = p.composite(def, esc)
	} else {
		v, pr = p.typed(def.Type, def, c, esc)
	}
	v.escaped = esc
	return v, pr
}

func (p *queryParser) composite(def *Param, esc string) (Value, *problem) {
	parts := splitEscaped(esc, '$')
	if len(parts) != len(def.Components) {
		return Value{}, problemf("invalid", "composite parameter %q needs %d values separated by $", def.Code, len(def.Components))
	}
	v := Value{Raw: unescape(esc)}
	for i, part := range parts {
		comp := def.Components[i]
		if part == "" {
			return Value{}, problemf("invalid", "composite parameter %q has an empty component", def.Code)
		}
		sub, pr := p.typed(comp.Type, nil, &Clause{Param: comp.Code, key: def.Code}, part)
		if pr != nil {
			return Value{}, pr
		}
		sub.escaped = part
		v.Parts = append(v.Parts, sub)
	}
	return v, nil
}

// typed parses a value of parameter type t. def is nil for composite
// components.
func (p *queryParser) typed(t ParamType, def *Param, c *Clause, esc string) (Value, *problem) {
	v := Value{Raw: unescape(esc)}
	switch t {
	case TypeString:
		v.Text = Normalize(v.Raw)
		if v.Text == "" && c.Modifier != ModExact {
			return v, problemf("invalid", "parameter %q has a blank value", c.key)
		}
	case TypeURI:
		if strings.ContainsAny(v.Raw, " \t\n") {
			return v, problemf("invalid", "parameter %q: %q is not a uri", c.key, v.Raw)
		}
	case TypeToken:
		return tokenValue(c, esc, v)
	case TypeReference:
		return p.referenceValue(def, c, esc, v)
	case TypeDate:
		var s string
		v.Prefix, s = splitPrefix(v.Raw)
		lo, hi, ok := dateRange(s)
		if !ok {
			return v, problemf("invalid", "parameter %q: %q is not a date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm])", c.key, v.Raw)
		}
		if v.Prefix == PrefixAp {
			width := hi.Sub(lo) + 1
			lo, hi = lo.Add(-width), hi.Add(width)
		}
		v.Start, v.End = lo, hi
	case TypeNumber, TypeQuantity:
		var s string
		v.Prefix, s = splitPrefix(v.Raw)
		num := s
		if t == TypeQuantity {
			parts := splitEscaped(s, '|')
			switch len(parts) {
			case 1:
				v.AnySystem = true
			case 3:
				num, v.System, v.Code = unescape(parts[0]), unescape(parts[1]), unescape(parts[2])
				v.AnySystem = v.System == ""
			default:
				return v, problemf("invalid", "parameter %q: a quantity is [number] or [number]|[system]|[code], not %q", c.key, v.Raw)
			}
		}
		val, lo, hi, ok := numberRange(num)
		if !ok {
			return v, problemf("invalid", "parameter %q: %q is not a number", c.key, num)
		}
		if v.Prefix == PrefixAp {
			d := 0.1 * max(val, -val)
			lo, hi = lo-d, hi+d
		}
		v.Number, v.Low, v.High = num, lo, hi
	}
	return v, nil
}

func tokenValue(c *Clause, esc string, v Value) (Value, *problem) {
	switch c.Modifier {
	case ModText:
		v.Text = Normalize(v.Raw)
		if v.Text == "" {
			return v, problemf("invalid", "parameter %q has a blank value", c.key)
		}
		return v, nil
	case ModOfType:
		parts := splitEscaped(esc, '|')
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return v, problemf("invalid", "parameter %q: :of-type takes [type system]|[type code]|[identifier value], not %q", c.key, v.Raw)
		}
		v.TypeSystem, v.TypeCode, v.Code = unescape(parts[0]), unescape(parts[1]), unescape(parts[2])
		return v, nil
	}
	parts := splitEscaped(esc, '|')
	switch len(parts) {
	case 1:
		v.AnySystem, v.Code = true, v.Raw
	case 2:
		v.System, v.Code = unescape(parts[0]), unescape(parts[1])
		if v.System == "" && v.Code == "" {
			return v, problemf("invalid", "parameter %q has an empty token", c.key)
		}
	default:
		return v, problemf("invalid", "parameter %q: a token is [code], [system]|[code], |[code] or [system]|, not %q", c.key, v.Raw)
	}
	return v, nil
}

func (p *queryParser) referenceValue(def *Param, c *Clause, esc string, v Value) (Value, *problem) {
	if c.Modifier == ModIdentifier {
		parts := splitEscaped(esc, '|')
		switch len(parts) {
		case 1:
			v.AnySystem, v.Code = true, v.Raw
		case 2:
			v.System, v.Code = unescape(parts[0]), unescape(parts[1])
		default:
			return v, problemf("invalid", "parameter %q: an identifier is [system]|[value], not %q", c.key, v.Raw)
		}
		if v.Code == "" {
			return v, problemf("invalid", "parameter %q: the identifier has no value", c.key)
		}
		return v, nil
	}
	s := v.Raw
	if strings.Contains(s, ":") {
		// An absolute reference or a canonical (url|version).
		url, version := splitCanonical(s)
		v.RefType, v.RefID, v.URL = splitReference(url, p.r.opts.BaseURL)
		if v.URL != "" {
			v.Version = version
		}
		if v.URL == "" && v.RefID == "" {
			return v, problemf("invalid", "parameter %q: %q is not a reference", c.key, s)
		}
	} else if typ, id, found := strings.Cut(s, "/"); found {
		if !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
			return v, problemf("invalid", "parameter %q: %q is not [type]/[id]", c.key, s)
		}
		v.RefType, v.RefID = typ, id
	} else {
		if !fhir.ValidID(s) {
			return v, problemf("invalid", "parameter %q: %q is not a resource id", c.key, s)
		}
		v.RefID = s
		if def != nil && len(def.Targets) == 1 {
			v.RefType = def.Targets[0]
		}
	}
	if c.TargetType != "" {
		if v.RefType != "" && v.RefType != c.TargetType {
			return v, problemf("invalid", "parameter %q: %q is not a %s", c.key, s, c.TargetType)
		}
		v.RefType = c.TargetType
	}
	if v.RefType != "" && def != nil && len(def.Targets) > 0 && !def.HasTarget(v.RefType) {
		return v, problemf("invalid", "parameter %q cannot refer to %s", c.key, v.RefType)
	}
	return v, nil
}

// splitPrefix separates a comparison prefix (eq, ne, gt, lt, ge, le, sa,
// eb, ap) from a number, date or quantity value.
func splitPrefix(s string) (Prefix, string) {
	if len(s) > 2 && s[0] >= 'a' && s[0] <= 'z' {
		if i := slices.Index(prefixNames[:], s[:2]); i >= 0 {
			return Prefix(i), s[2:]
		}
	}
	return PrefixEq, s
}

// SplitEscaped splits a search value at the separators (',' between
// alternatives, '|' and '$' inside a value) not escaped by a backslash;
// the parts keep their escapes.
func SplitEscaped(s string, sep byte) []string { return splitEscaped(s, sep) }

// splitEscaped splits s at the separators not escaped by a backslash; the
// parts keep their escapes.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape removes the search escapes \, \| \$ and \\.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`,|$\`, s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Encode renders the applied query in a canonical form (sorted
// parameters, only what was applied, the effective _count), for the self
// link of a search Bundle. Parsing the result gives the same query.
func (q *Query) Encode() string {
	var b strings.Builder
	add := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(queryEscape(k))
		b.WriteByte('=')
		b.WriteString(queryEscape(v))
	}
	for _, c := range q.Clauses {
		vals := make([]string, len(c.Values))
		if c.Chain != nil || c.Has != nil {
			inner := &c
			for inner.Chain != nil || inner.Has != nil {
				if inner.Chain != nil {
					inner = inner.Chain.Clause
				} else {
					inner = inner.Has.Clause
				}
			}
			vals = make([]string, len(inner.Values))
			for i, v := range inner.Values {
				vals[i] = v.escaped
			}
		} else {
			for i, v := range c.Values {
				vals[i] = v.escaped
			}
		}
		add(c.key, strings.Join(vals, ","))
	}
	if len(q.Types) > 0 {
		add("_type", strings.Join(q.Types, ","))
	}
	if len(q.Elements) > 0 {
		add("_elements", strings.Join(q.Elements, ","))
	}
	for _, in := range q.Includes {
		add(includeKey("_include", in), in.String())
	}
	for _, in := range q.RevIncludes {
		add(includeKey("_revinclude", in), in.String())
	}
	if len(q.Sort) > 0 {
		keys := make([]string, len(q.Sort))
		for i, k := range q.Sort {
			keys[i] = k.Param
			if k.Desc {
				keys[i] = "-" + k.Param
			}
		}
		add("_sort", strings.Join(keys, ","))
	}
	if q.Summary != SummaryDefault {
		add("_summary", q.Summary.String())
	}
	if q.Total != TotalDefault {
		add("_total", q.Total.String())
	}
	add("_count", strconv.Itoa(q.Count))
	return b.String()
}

func includeKey(name string, in Include) string {
	if in.Iterate {
		return name + ":iterate"
	}
	return name
}

// queryEscape percent-encodes a query component, keeping the characters
// FHIR queries use unescaped where RFC 3986 allows them.
func queryEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("-._~:/,$*@!'()", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
