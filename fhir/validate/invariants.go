package validate

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/validate/internal/defs"
)

// invariantEngine compiles the FHIRPath expressions of invariants. It is an
// interface so that the validator does not depend on how FHIRPath is
// evaluated (and works, without invariants, where no engine is set).
type invariantEngine interface {
	compile(expr string) (invariantExpr, error)
}

// invariantExpr is a compiled invariant.
type invariantExpr interface {
	// evalBool evaluates the expression with node (of FHIRPath type
	// typeName) as the focus and reports the boolean result; nonEmpty is
	// false when the result is empty.
	evalBool(node *fjson.Value, typeName string, resource, rootResource *fjson.Value) (value, nonEmpty bool, err error)
}

// engine is the FHIRPath engine used for invariants, nil if there is none.
var engine invariantEngine

// errNoEngine marks invariants that could not be evaluated for want of an
// engine.
var errNoEngine = errors.New("no FHIRPath engine")

type nativeCheck uint8

const (
	notNative nativeCheck = iota
	// nativeEle1 is ele-1, "hasValue() or (children().count() > id.count())",
	// which the structural checks already enforce (no empty objects, no
	// primitive extension without extensions).
	nativeEle1
	// nativeExt1 is ext-1, "extension.exists() != value.exists()", checked
	// directly on each Extension.
	nativeExt1
	// nativeDom3 is dom-3: every contained resource is referenced from the
	// resource ("#id") or refers to its container ("#"). The FHIRPath form
	// walks the whole resource four times per contained resource.
	nativeDom3
	// nativeDom2 is dom-2, "contained.contained.empty()", checked when a
	// contained resource is walked.
	nativeDom2
	// nativeBdl7 is bdl-7: fullUrl (with meta.versionId) is unique in a
	// Bundle other than a history; isDistinct() is quadratic in the engine.
	nativeBdl7
)

// constraint is an invariant of an element or type.
type constraint struct {
	key, severity, human, expr string
	bestPractice               bool
	native                     nativeCheck

	// needed, when set, tells whether the invariant can fail on node at
	// all; when it cannot, evaluation is skipped (see guards).
	needed func(node *fjson.Value) bool

	once     sync.Once
	compiled invariantExpr
	err      error
	// evalErrors counts evaluations that failed at run time.
	evalErrors atomic.Int64
}

func newConstraint(c defs.Constraint) *constraint {
	k := &constraint{key: c.Key, severity: c.Severity, human: c.Human, expr: c.Expression, bestPractice: c.BestPractice}
	switch c.Key {
	case "ele-1":
		k.native = nativeEle1
	case "ext-1":
		k.native = nativeExt1
	case "dom-2":
		k.native = nativeDom2
	case "dom-3":
		k.native = nativeDom3
	case "bdl-7":
		k.native = nativeBdl7
	}
	k.needed = guards[c.Key]
	if k.needed == nil {
		k.needed = leadingGuard(c.Expression)
	}
	return k
}

// leadingGuard derives a guard from the common form "a.empty() or
// b.hasValue().not() or REST": the invariant holds whenever one of a, b is
// absent, so it only needs evaluating when all of them are present.
func leadingGuard(expr string) func(*fjson.Value) bool {
	var names []string
	rest := expr
	for {
		i := 0
		for i < len(rest) && (rest[i] >= 'a' && rest[i] <= 'z' || rest[i] >= 'A' && rest[i] <= 'Z' || rest[i] >= '0' && rest[i] <= '9') {
			i++
		}
		if i == 0 || !(rest[0] >= 'a' && rest[0] <= 'z') {
			break
		}
		name, after := rest[:i], rest[i:]
		matched := false
		for _, form := range []string{".empty() or ", ".hasValue().not() or ", ".exists().not() or "} {
			if strings.HasPrefix(after, form) {
				names = append(names, name)
				rest = after[len(form):]
				matched = true
				break
			}
		}
		if !matched {
			break
		}
	}
	// "implies" and "xor" bind looser than (or as loose as) "or": with one
	// of them at the top level the leading terms do not decide the result.
	if len(names) == 0 || topLevelWord(rest, "implies") || topLevelWord(rest, "xor") {
		return nil
	}
	return func(n *fjson.Value) bool {
		for _, name := range names {
			if !hasElement(n, name) {
				return false
			}
		}
		return true
	}
}

// topLevelWord reports whether the operator word occurs in expr outside
// parentheses, brackets and string literals.
func topLevelWord(expr, word string) bool {
	depth := 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case '\'', '`':
			for i++; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
		default:
			if depth == 0 && strings.HasPrefix(expr[i:], word) &&
				(i == 0 || expr[i-1] == ' ') && (i+len(word) == len(expr) || expr[i+len(word)] == ' ') {
				return true
			}
		}
	}
	return false
}

// hasElement reports whether the object n has a member for the FHIRPath
// name: name itself, its "_name" extension, or a choice form nameType.
func hasElement(n *fjson.Value, name string) bool {
	if n == nil || n.Kind != fjson.Object {
		return true // not an object: let the engine decide
	}
	for _, m := range n.Members {
		k := m.Key
		if strings.HasPrefix(k, "_") {
			k = k[1:]
		}
		if strings.HasPrefix(k, name) && (len(k) == len(name) || k[len(name)] >= 'A' && k[len(name)] <= 'Z') {
			return true
		}
	}
	return false
}

// guards skip invariants that are true by construction on most nodes, so
// that the FHIRPath engine only runs where the answer is in doubt. Each
// guard is tied to the shape of the core expression, which a test checks.
var guards = map[string]func(*fjson.Value) bool{
	// dom-2 to dom-5 start with "contained." and hold when there is no
	// contained resource.
	"dom-4": hasContained,
	"dom-5": hasContained,
	// ref-1 starts with "reference.startsWith('#').not() or": it holds
	// unless the reference is local.
	"ref-1": func(n *fjson.Value) bool { return strings.HasPrefix(n.Get("reference").String(), "#") },
}

func hasContained(n *fjson.Value) bool { return n.Get("contained") != nil }

// expr returns the compiled expression, or nil if it cannot be evaluated.
func (c *constraint) compiledExpr() invariantExpr {
	c.once.Do(func() {
		switch {
		case engine == nil:
			c.err = errNoEngine
		case c.expr == "":
			c.err = errors.New("no expression")
		default:
			expr := c.expr
			if fixed, ok := errata[c.key][expr]; ok {
				expr = fixed
			}
			c.compiled, c.err = engine.compile(expr)
		}
	})
	return c.compiled
}

// errata correct R4 invariants whose expression says what the invariant
// does not mean, as later FHIR versions did: que-7 tests the value against
// System.Boolean, which no FHIR boolean is (R5 writes "answer is boolean").
var errata = map[string]map[string]string{
	"que-7": {"operator = 'exists' implies (answer is Boolean)": "operator = 'exists' implies (answer is boolean)"},
}

// InvariantInfo describes an invariant that the validator cannot evaluate.
type InvariantInfo struct {
	Key        string
	Expression string
	// Reason is why: the compile error, or the number of evaluations that
	// failed at run time.
	Reason string
	// EvalErrors counts evaluations that failed (each counted as "cannot
	// evaluate", never as a validation failure).
	EvalErrors int64
}

// UnsupportedInvariants lists the invariants of the R4 core definitions that
// the FHIRPath engine cannot compile, and those whose evaluation has failed
// at least once so far in this process. ele-1 and ext-1 are checked natively
// and never listed.
func UnsupportedInvariants() []InvariantInfo {
	m := core()
	var out []InvariantInfo
	for _, c := range m.constraints {
		if c.native != notNative {
			continue
		}
		c.compiledExpr()
		switch {
		case c.err != nil:
			out = append(out, InvariantInfo{Key: c.key, Expression: c.expr, Reason: c.err.Error(), EvalErrors: c.evalErrors.Load()})
		case c.evalErrors.Load() > 0:
			out = append(out, InvariantInfo{Key: c.key, Expression: c.expr, Reason: "evaluation failed", EvalErrors: c.evalErrors.Load()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// InvariantCounts reports how many distinct invariants the core definitions
// hold, how many are checked natively, and how many the FHIRPath engine
// compiles.
func InvariantCounts() (total, native, compiled int) {
	for _, c := range core().constraints {
		total++
		if c.native != notNative {
			native++
			continue
		}
		if c.compiledExpr() != nil {
			compiled++
		}
	}
	return total, native, compiled
}

// checkDom3 implements dom-3 for a resource with contained resources. Any
// string value "#id" anywhere in the resource counts as a reference (the
// expression looks at reference, canonical, uri and url values; accepting
// other string elements too can only make it more lenient).
func (w *walker) checkDom3(node *fjson.Value, cons []*constraint) {
	var dom3 *constraint
	for _, c := range cons {
		if c.native == nativeDom3 {
			dom3 = c
		}
	}
	contained := node.Get("contained")
	if dom3 == nil || contained == nil || contained.Kind != fjson.Array {
		return
	}
	refs := map[string]bool{}
	collectLocalRefs(node, refs)
	for i, c := range contained.Items {
		id := c.Get("id")
		if id != nil && id.Kind == fjson.String && refs[id.Str] {
			continue
		}
		// A contained resource may instead refer to its container ("#").
		inner := map[string]bool{}
		collectLocalRefs(c, inner)
		if inner[""] {
			continue
		}
		w.push("contained", i, "")
		w.errorf(codeInvariant, "dom-3: "+dom3.human)
		w.pop()
	}
}

// collectLocalRefs adds the text after '#' of every string value in v that
// starts with '#'.
func collectLocalRefs(v *fjson.Value, refs map[string]bool) {
	switch v.Kind {
	case fjson.String:
		if strings.HasPrefix(v.Str, "#") {
			refs[v.Str[1:]] = true
		}
	case fjson.Object:
		for _, m := range v.Members {
			collectLocalRefs(m.Value, refs)
		}
	case fjson.Array:
		for _, it := range v.Items {
			collectLocalRefs(it, refs)
		}
	}
}
