package validate

import (
	"errors"
	"sort"
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
)

// constraint is an invariant of an element or type.
type constraint struct {
	key, severity, human, expr string
	bestPractice               bool
	native                     nativeCheck

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
	}
	return k
}

// expr returns the compiled expression, or nil if it cannot be evaluated.
func (c *constraint) compiledExpr() invariantExpr {
	c.once.Do(func() {
		switch {
		case engine == nil:
			c.err = errNoEngine
		case c.expr == "":
			c.err = errors.New("no expression")
		default:
			c.compiled, c.err = engine.compile(c.expr)
		}
	})
	return c.compiled
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
