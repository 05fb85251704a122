package auth

import (
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// Perm is a set of SMART v2 permission letters: c r u d s.
type Perm uint8

// The SMART v2 permissions, in the order their letters must appear in a scope.
const (
	PermCreate Perm = 1 << iota // c: create
	PermRead                    // r: read, vread, instance history
	PermUpdate                  // u: update (and update-as-create), patch
	PermDelete                  // d: delete
	PermSearch                  // s: type and system search and history

	// PermNone is required by interactions that touch no resource data.
	PermNone Perm = 0
	permAll       = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
)

const permLetters = "cruds"

// String returns the letters of p in canonical order ("rs", "cruds").
func (p Perm) String() string {
	var b []byte
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b = append(b, permLetters[i])
		}
	}
	return string(b)
}

// ParsePerm parses SMART v2 letters. They must be a non-empty subsequence of
// "cruds" (in that order, no repeats), as the specification requires.
func ParsePerm(letters string) (Perm, bool) {
	if letters == "" || len(letters) > len(permLetters) {
		return 0, false
	}
	var p Perm
	last := -1
	for i := 0; i < len(letters); i++ {
		k := strings.IndexByte(permLetters, letters[i])
		if k <= last {
			return 0, false
		}
		last = k
		p |= 1 << k
	}
	return p, true
}

// Context is the first part of a SMART scope: whose data it grants.
type Context uint8

// The SMART scope contexts.
const (
	ContextPatient Context = iota + 1 // patient/: the data of the token's patient
	ContextUser                       // user/: what the signed-in user may see
	ContextSystem                     // system/: a backend client's own authority
)

func (c Context) String() string {
	switch c {
	case ContextPatient:
		return "patient"
	case ContextUser:
		return "user"
	case ContextSystem:
		return "system"
	}
	return "unknown"
}

// Param is one name=value pair of a query-constrained v2 scope.
type Param struct {
	Name, Value string
}

// Filter is the query constraint of one scope: a resource is covered when it
// matches every Param, as it would match a search with these parameters.
type Filter []Param

// Values returns the filter as search parameters, to add to a search.
func (f Filter) Values() url.Values {
	v := url.Values{}
	for _, p := range f {
		v.Add(p.Name, p.Value)
	}
	return v
}

// Scope is one parsed SMART resource scope.
type Scope struct {
	Context Context
	// Type is a resource type or "*" for every type.
	Type  string
	Perms Perm
	// Filter is the query constraint of a v2 scope ("?category=..."), nil
	// when the scope is unconstrained.
	Filter Filter
	// V1 reports the v1 syntax (.read, .write, .*).
	V1 bool
	// Raw is the scope as granted.
	Raw string
}

// ScopeSet is the set of scopes a token grants. The zero value grants
// nothing. A ScopeSet is immutable and safe for concurrent use.
type ScopeSet struct {
	resource []Scope
	raw      []string
	invalid  []string
}

// Limits on what a token may carry, so that a hostile token stays cheap.
const (
	maxScopes   = 256
	maxScopeLen = 1024
)

// ParseScopes parses a space-separated scope string (the OAuth "scope"
// claim or token-response member).
func ParseScopes(s string) ScopeSet { return NewScopeSet(strings.Fields(s)) }

// NewScopeSet parses a list of scopes (the "scp" claim). Scopes that are not
// SMART resource scopes (openid, fhirUser, launch/patient, offline_access,
// extension scopes) are kept for Has. Malformed resource scopes are ignored,
// which can only take permissions away, and listed by Invalid.
func NewScopeSet(scopes []string) ScopeSet {
	var s ScopeSet
	for i, raw := range scopes {
		if i == maxScopes {
			s.invalid = append(s.invalid, "(too many scopes)")
			break
		}
		if raw == "" {
			continue
		}
		if len(raw) > maxScopeLen {
			s.invalid = append(s.invalid, raw[:32]+"…")
			continue
		}
		s.raw = append(s.raw, raw)
		sc, isResource, ok := parseScope(raw)
		switch {
		case !isResource:
		case ok:
			s.resource = append(s.resource, sc)
		default:
			s.invalid = append(s.invalid, raw)
		}
	}
	return s
}

// parseScope parses one scope. isResource reports whether it has the shape
// of a SMART resource scope (context/...), ok whether it is well formed.
func parseScope(raw string) (sc Scope, isResource, ok bool) {
	ctx, rest, found := strings.Cut(raw, "/")
	if !found {
		return sc, false, false
	}
	switch ctx {
	case "patient":
		sc.Context = ContextPatient
	case "user":
		sc.Context = ContextUser
	case "system":
		sc.Context = ContextSystem
	default:
		// launch/patient and the like are not resource scopes.
		return sc, false, false
	}
	sc.Raw = raw
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perm, found := strings.Cut(rest, ".")
	if !found || (typ != "*" && !fhir.IsResourceType(typ)) {
		return sc, true, false
	}
	sc.Type = typ
	switch perm {
	case "read":
		sc.Perms, sc.V1 = PermRead|PermSearch, true
	case "write":
		sc.Perms, sc.V1 = PermCreate|PermUpdate|PermDelete, true
	case "*":
		sc.Perms, sc.V1 = permAll, true
	default:
		p, ok := ParsePerm(perm)
		if !ok {
			return sc, true, false
		}
		sc.Perms = p
	}
	if hasQuery {
		// Constraints are a v2 feature; an empty or unparsable one is
		// rejected rather than read as "no constraint".
		if sc.V1 || query == "" {
			return sc, true, false
		}
		f, ok := parseFilter(query)
		if !ok {
			return sc, true, false
		}
		sc.Filter = f
	}
	return sc, true, true
}

func parseFilter(query string) (Filter, bool) {
	var f Filter
	for part := range strings.SplitSeq(query, "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" || v == "" {
			return nil, false
		}
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || name == "" || value == "" {
			return nil, false
		}
		f = append(f, Param{Name: name, Value: value})
	}
	return f, len(f) > 0
}

// Scopes returns the resource scopes.
func (s ScopeSet) Scopes() []Scope { return slices.Clone(s.resource) }

// Invalid returns the resource scopes that were ignored as malformed.
func (s ScopeSet) Invalid() []string { return slices.Clone(s.invalid) }

// Has reports whether the exact scope was granted ("openid", "launch/patient").
func (s ScopeSet) Has(scope string) bool { return slices.Contains(s.raw, scope) }

// String returns the granted scopes, space-separated.
func (s ScopeSet) String() string { return strings.Join(s.raw, " ") }

// Empty reports whether no resource scope was granted.
func (s ScopeSet) Empty() bool { return len(s.resource) == 0 }

// Decision is the outcome of a scope check.
type Decision struct {
	// Allowed reports whether some scope grants the interaction.
	Allowed bool
	// Filters, when not empty, restrict an allowed interaction: only
	// resources that match at least one filter are covered (filters are
	// ORed, the params within one filter ANDed). A search adds them as
	// parameters (one search per filter, or reject when it cannot); a read
	// checks the resource with Matches.
	Filters []Filter
}

// Unconditional reports whether the interaction is allowed on every
// resource of the type.
func (d Decision) Unconditional() bool { return d.Allowed && len(d.Filters) == 0 }

// maxFilterCombinations bounds the filters of a multi-permission check;
// beyond it the check is refused rather than computed.
const maxFilterCombinations = 64

// Check decides whether the scopes of context ctx grant perms (every bit of
// it) on resources of type typ. PermNone is always allowed.
func (s ScopeSet) Check(ctx Context, typ string, perms Perm) Decision {
	return s.check([]Context{ctx}, typ, perms)
}

// Allows reports whether the scopes of ctx grant perms on typ, possibly
// only under filters (see Check).
func (s ScopeSet) Allows(ctx Context, typ string, perms Perm) bool {
	return s.Check(ctx, typ, perms).Allowed
}

func (s ScopeSet) check(ctxs []Context, typ string, perms Perm) Decision {
	if perms == PermNone {
		return Decision{Allowed: true}
	}
	// Each permission bit is granted by its own set of scopes; the result
	// is the AND over the bits of (unconditional, or the OR of filters).
	var combined []Filter
	for bit := PermCreate; bit <= PermSearch; bit <<= 1 {
		if perms&bit == 0 {
			continue
		}
		var ors []Filter
		unconditional, allowed := false, false
		for i := range s.resource {
			sc := &s.resource[i]
			if sc.Perms&bit == 0 || !slices.Contains(ctxs, sc.Context) || (sc.Type != "*" && sc.Type != typ) {
				continue
			}
			allowed = true
			if sc.Filter == nil {
				unconditional = true
				break
			}
			ors = append(ors, sc.Filter)
		}
		switch {
		case !allowed:
			return Decision{}
		case unconditional:
			continue
		case combined == nil:
			combined = ors
		default:
			var next []Filter
			for _, a := range combined {
				for _, b := range ors {
					next = append(next, append(slices.Clone(a), b...))
				}
			}
			if len(next) > maxFilterCombinations {
				return Decision{}
			}
			combined = next
		}
	}
	return Decision{Allowed: true, Filters: combined}
}

// Matches reports whether the resource satisfies the decision's filters,
// evaluated with the search registry's matching rules (reg.Extract plus
// Clause.Match). A decision that is not allowed matches nothing; an
// unconditional one matches everything. A filter whose parameters the
// registry does not know for the resource's type matches nothing.
func (d Decision) Matches(reg *search.Registry, res *fhir.Resource) (bool, error) {
	if !d.Allowed {
		return false, nil
	}
	if len(d.Filters) == 0 {
		return true, nil
	}
	ix, err := reg.Extract(res)
	if err != nil {
		return false, err
	}
	for _, f := range d.Filters {
		q, err := reg.ParseQuery(res.Type, f.Values(), true)
		if err != nil {
			continue
		}
		ok := len(q.Clauses) > 0
		for i := range q.Clauses {
			if !q.Clauses[i].Match(ix) {
				ok = false
				break
			}
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// Interaction names as the FHIR RESTful API calls them.
const (
	InteractionRead            = "read"
	InteractionVRead           = "vread"
	InteractionHistoryInstance = "history-instance"
	InteractionHistoryType     = "history-type"
	InteractionHistorySystem   = "history-system"
	InteractionSearchType      = "search-type"
	InteractionSearchSystem    = "search-system"
	InteractionCreate          = "create"
	InteractionUpdate          = "update"
	InteractionPatch           = "patch"
	InteractionDelete          = "delete"
	InteractionCapabilities    = "capabilities"
	InteractionBatch           = "batch"
	InteractionTransaction     = "transaction"
	InteractionOperation       = "operation"
)

// InteractionPerm returns the permission a FHIR interaction needs on the
// resource type it targets. ok is false for an unknown interaction, and for
// "operation" (use OperationPerm), "batch" and "transaction" (authorise
// every entry by its own interaction). capabilities needs no permission.
func InteractionPerm(interaction string) (p Perm, ok bool) {
	switch interaction {
	case InteractionRead, InteractionVRead, InteractionHistoryInstance:
		return PermRead, true
	case InteractionSearchType, InteractionSearchSystem, InteractionHistoryType, InteractionHistorySystem:
		return PermSearch, true
	case InteractionCreate:
		return PermCreate, true
	case InteractionUpdate, InteractionPatch:
		return PermUpdate, true
	case InteractionDelete:
		return PermDelete, true
	case InteractionCapabilities:
		return PermNone, true
	}
	return PermNone, false
}

// OperationPerm returns the permission an operation ("$everything", with or
// without the $) needs on each resource type it touches, by its semantics:
// operations that return data need r and s on every type returned,
// operations that change a resource need u, and so on. ok is false for an
// operation it does not know, for which the caller should refuse.
func OperationPerm(name string) (p Perm, ok bool) {
	switch strings.TrimPrefix(name, "$") {
	case "everything", "summary", "export", "document":
		return PermRead | PermSearch, true
	case "lastn", "match", "docref", "stats", "expand", "lookup", "validate-code", "translate", "subsumes":
		return PermSearch, true
	case "meta", "graph":
		return PermRead, true
	case "meta-add", "meta-delete":
		return PermUpdate, true
	case "validate":
		// $validate reads nothing stored when given a resource; on an
		// instance it reads that instance.
		return PermRead, true
	case "process-message":
		return PermCreate, true
	case "second-opinion":
		return PermRead | PermSearch | PermCreate, true
	case "pull", "import", "connect":
		// bring records into the patient's record: they create and update
		// (connecting a source is what lets pulls bring its records)
		return PermCreate | PermUpdate, true
	}
	return PermNone, false
}
