package search

import (
	"slices"
	"sort"
	"strings"
)

// Derived parameters. By their definitions, many parameters' values are
// exactly the values of other parameters of the same resource type:
//   - unions: Observation's combo-code (Observation.code |
//     Observation.component.code) holds the values of code and of
//     component-code; combo-value-quantity those of value-quantity and
//     component-value-quantity;
//   - unions of composites: combo-code-value-quantity (elements Observation
//     | Observation.component, components code and value.as(Quantity)) holds
//     the groups of code-value-quantity (element Observation) and of
//     component-code-value-quantity (Observation.component), whose
//     components are the same expressions;
//   - a reference restricted to one target type: patient
//     (Observation.subject.where(resolve() is Patient)) holds the values of
//     subject that reference a Patient.
//
// derive finds these from the expressions alone (each union branch of the
// parameter must be, as written, a branch of one of its sources). Extract
// computes a derived parameter's values from its sources' instead of
// evaluating its own expression, so a store that keeps each value once
// (under the source's code) and searches the sources' rows for it answers
// exactly what Match answers on the extracted Index. In a Synthea load
// these parameters were a quarter of the search index's rows.
// TestDerivedValues checks on every test resource that the sources give
// what the parameter's own expression gives.

// Derivation says where a derived parameter's values come from: the values
// of the From parameters (stored parameters of the same resource type and
// type, none derived itself), renamed, and, when Target is set, only the
// reference values whose target type is Target.
type Derivation struct {
	From   []string
	Target string
}

// Derived returns how the parameter's values derive from others', or nil
// when it has values of its own.
func (p *Param) Derived() *Derivation { return p.derived }

// Stored reports whether an index keeps values under the parameter's own
// code (it is not derived); unknown parameters are reported stored.
func (r *Registry) Stored(resourceType, code string) bool {
	p, ok := r.Param(resourceType, code)
	return !ok || p.derived == nil
}

// derive sets the derivations of one resource type's parameters.
func derive(ps []*Param) {
	branches := map[*Param][]string{}
	for _, p := range ps {
		if p.expr == nil || p.Code == "_id" || p.Code == "_lastUpdated" {
			continue
		}
		branches[p] = splitUnion(p.Expression)
	}
	// sources: parameters that stay stored; a parameter whose branches are
	// all some other parameters' is derived from them
	candidates := func(q *Param) []*Param {
		var out []*Param
		for _, p := range ps {
			if p == q || branches[p] == nil || p.Type != q.Type || !sameComponents(p, q) {
				continue
			}
			if subset(branches[p], branches[q]) {
				// identical expressions: the smaller code is the source
				if len(branches[p]) == len(branches[q]) && subset(branches[q], branches[p]) && p.Code > q.Code {
					continue
				}
				out = append(out, p)
			}
		}
		return out
	}
	union := map[*Param][]*Param{}
	for _, q := range ps {
		if branches[q] == nil {
			continue
		}
		cs := candidates(q)
		// the candidates must cover every branch; the largest first
		sort.SliceStable(cs, func(i, j int) bool { return len(branches[cs[i]]) > len(branches[cs[j]]) })
		var chosen []*Param
		covered := map[string]bool{}
		for _, c := range cs {
			added := false
			for _, b := range branches[c] {
				if !covered[b] {
					covered[b], added = true, true
				}
			}
			if added {
				chosen = append(chosen, c)
			}
		}
		if len(chosen) > 0 && all(branches[q], func(b string) bool { return covered[b] }) {
			union[q] = chosen
		}
	}
	// a source derived itself is replaced by its sources (branch sets only
	// shrink along the way, so this ends)
	var flatten func(p *Param, seen map[*Param]bool) []*Param
	flatten = func(p *Param, seen map[*Param]bool) []*Param {
		if seen[p] {
			return nil
		}
		seen[p] = true
		if union[p] == nil {
			return []*Param{p}
		}
		var out []*Param
		for _, s := range union[p] {
			out = append(out, flatten(s, seen)...)
		}
		return out
	}
	for q, srcs := range union {
		var from []string
		seen := map[*Param]bool{q: true}
		for _, s := range srcs {
			for _, f := range flatten(s, seen) {
				if !slices.Contains(from, f.Code) {
					from = append(from, f.Code)
				}
			}
		}
		if len(from) > 0 {
			sort.Strings(from)
			q.derived = &Derivation{From: from}
		}
	}
	// references restricted to a target type: every branch is a stored
	// reference parameter's branch followed by .where(resolve() is T)
	// (not for a parameter another one's values come from)
	source := map[string]bool{}
	for _, q := range ps {
		if q.derived != nil {
			for _, f := range q.derived.From {
				source[f] = true
			}
		}
	}
	for _, q := range ps {
		if q.Type != TypeReference || q.derived != nil || branches[q] == nil || source[q.Code] {
			continue
		}
		target := ""
		var inner []string
		for _, b := range branches[q] {
			base, t, ok := resolveIs(b)
			if !ok || (target != "" && t != target) {
				inner = nil
				break
			}
			target = t
			inner = append(inner, base)
		}
		if inner == nil {
			continue
		}
		for _, p := range ps {
			if p == q || p.Type != TypeReference || p.derived != nil || branches[p] == nil {
				continue
			}
			if subset(branches[p], inner) && subset(inner, branches[p]) {
				q.derived = &Derivation{From: []string{p.Code}, Target: target}
				break
			}
		}
	}
}

// resolveIs splits "X.where(resolve() is T)" into X and T.
func resolveIs(branch string) (base, target string, ok bool) {
	const open, close = ".where(resolve() is ", ")"
	i := strings.LastIndex(branch, open)
	if i <= 0 || !strings.HasSuffix(branch, close) {
		return "", "", false
	}
	t := branch[i+len(open) : len(branch)-len(close)]
	if t == "" || strings.ContainsAny(t, "() .|") {
		return "", "", false
	}
	return branch[:i], t, true
}

// sameComponents reports whether two parameters have components of the
// same types and expressions, in the same order (none for non-composites).
func sameComponents(a, b *Param) bool {
	if len(a.Components) != len(b.Components) {
		return false
	}
	for i := range a.Components {
		if a.Components[i].Type != b.Components[i].Type || a.Components[i].Expression != b.Components[i].Expression {
			return false
		}
	}
	return true
}

func subset(a, b []string) bool {
	return all(a, func(x string) bool { return slices.Contains(b, x) })
}

func all(xs []string, ok func(string) bool) bool {
	for _, x := range xs {
		if !ok(x) {
			return false
		}
	}
	return true
}
