package fhirpath

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

type funcSpec struct {
	minArgs, maxArgs int
	typeArg          bool // the argument is a type specifier: is(T), as(T), ofType(T)
	regexArg         bool // the first argument is a regular expression
	unsupported      bool
	fn               func(c *ctx, in Collection, f *funcNode) (Collection, error)
}

type funcNode struct {
	name string
	spec *funcSpec
	args []node
	ts   typeSpec
	re   *regexp.Regexp // pre-compiled literal regular expression
}

func (f *funcNode) eval(c *ctx, in Collection) (Collection, error) { return f.spec.fn(c, in, f) }

// arg evaluates a plain (non-iterating) argument. Such arguments are
// evaluated against $this, the context the invocation appears in, not the
// function's input.
func (f *funcNode) arg(c *ctx, i int) (Collection, error) {
	if i >= len(f.args) {
		return nil, nil
	}
	return f.args[i].eval(c, c.this)
}

// lambda evaluates argument i with $this set to item (the criteria of
// where, select, all, exists, repeat).
func (f *funcNode) lambda(c *ctx, i int, item Item, index int) (Collection, error) {
	sub := *c
	sub.this = Collection{item}
	sub.index = index
	return f.args[i].eval(&sub, sub.this)
}

func (f *funcNode) stringArg(c *ctx, i int) (string, bool, error) {
	col, err := f.arg(c, i)
	if err != nil || len(col) == 0 {
		return "", false, err
	}
	if len(col) > 1 {
		return "", false, fmt.Errorf("fhirpath: %s(): argument has %d items", f.name, len(col))
	}
	v, _ := col[0].value()
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("fhirpath: %s(): argument is not a string", f.name)
	}
	return s, true, nil
}

func (f *funcNode) intArg(c *ctx, i int) (int64, bool, error) {
	col, err := f.arg(c, i)
	if err != nil || len(col) == 0 {
		return 0, false, err
	}
	v, _ := col[0].value()
	n, ok := v.(int64)
	if len(col) > 1 || !ok {
		return 0, false, fmt.Errorf("fhirpath: %s(): argument is not an integer", f.name)
	}
	return n, true, nil
}

func (f *funcNode) regexp(c *ctx) (*regexp.Regexp, bool, error) {
	if f.re != nil {
		return f.re, true, nil
	}
	s, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, false, err
	}
	re, err := cachedRegexp(s)
	if err != nil {
		return nil, false, fmt.Errorf("fhirpath: %s(): %w", f.name, err)
	}
	return re, true, nil
}

var regexCache sync.Map // string -> *regexp.Regexp

func cachedRegexp(s string) (*regexp.Regexp, error) {
	if re, ok := regexCache.Load(s); ok {
		return re.(*regexp.Regexp), nil
	}
	// FHIRPath regular expressions run in single-line mode: '.' matches
	// a newline too
	re, err := regexp.Compile("(?s)" + s)
	if err != nil {
		return nil, err
	}
	regexCache.Store(s, re)
	return re, nil
}

// singleValue returns the System value of a singleton input.
func singleValue(f *funcNode, in Collection) (any, bool, error) {
	switch len(in) {
	case 0:
		return nil, false, nil
	case 1:
		v, ok := in[0].value()
		return v, ok, nil
	}
	return nil, false, fmt.Errorf("fhirpath: %s() on a collection of %d items", f.name, len(in))
}

func singleString(f *funcNode, in Collection) (string, bool, error) {
	v, ok, err := singleValue(f, in)
	if err != nil {
		return "", false, err
	}
	if !ok {
		if len(in) == 1 && in[0].Node != nil && in[0].Node.Kind == fjson.Object {
			return "", false, fmt.Errorf("fhirpath: %s() on %s, want String", f.name, firstNonEmpty(in[0].Type, "an object"))
		}
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("fhirpath: %s() on %s, want String", f.name, typeNameOf(v))
	}
	return s, true, nil
}

func one(v any) Collection { return Collection{{Value: v}} }

var functions map[string]*funcSpec

func init() {
	unsupported := &funcSpec{unsupported: true}
	functions = map[string]*funcSpec{
		// Existence.
		"empty": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			return boolResult(len(in) == 0), nil
		}},
		"exists": {maxArgs: 1, fn: fnExists},
		"all":    {minArgs: 1, maxArgs: 1, fn: fnAll},
		"allTrue": {fn: func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
			return boolQuantifier(f, in, func(b bool) bool { return !b }, false)
		}},
		"anyTrue": {fn: func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
			return boolQuantifier(f, in, func(b bool) bool { return b }, true)
		}},
		"allFalse": {fn: func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
			return boolQuantifier(f, in, func(b bool) bool { return b }, false)
		}},
		"anyFalse": {fn: func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
			return boolQuantifier(f, in, func(b bool) bool { return !b }, true)
		}},
		"subsetOf":   {minArgs: 1, maxArgs: 1, fn: fnSubsetOf},
		"supersetOf": {minArgs: 1, maxArgs: 1, fn: fnSupersetOf},
		"count": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			return one(int64(len(in))), nil
		}},
		"distinct": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			return distinct(in), nil
		}},
		"isDistinct": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			return boolResult(len(distinct(in)) == len(in)), nil
		}},
		// Filtering and projection.
		"where":  {minArgs: 1, maxArgs: 1, fn: fnWhere},
		"select": {minArgs: 1, maxArgs: 1, fn: fnSelect},
		"repeat": {minArgs: 1, maxArgs: 1, fn: fnRepeat},
		"ofType": {typeArg: true, fn: fnAs},
		// Subsetting.
		"single": {fn: func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
			if len(in) > 1 {
				return nil, fmt.Errorf("fhirpath: single() on a collection of %d items", len(in))
			}
			return in, nil
		}},
		"first": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			return in[:1:1], nil
		}},
		"last": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			return in[len(in)-1:], nil
		}},
		"tail": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			if len(in) <= 1 {
				return nil, nil
			}
			return in[1:], nil
		}},
		"skip": {minArgs: 1, maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			n, ok, err := f.intArg(c, 0)
			if err != nil || !ok {
				return nil, err
			}
			if n <= 0 {
				return in, nil
			}
			if n >= int64(len(in)) {
				return nil, nil
			}
			return in[n:], nil
		}},
		"take": {minArgs: 1, maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			n, ok, err := f.intArg(c, 0)
			if err != nil || !ok || n <= 0 {
				return nil, err
			}
			if n >= int64(len(in)) {
				return in, nil
			}
			return in[:n:n], nil
		}},
		"intersect": {minArgs: 1, maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			other, err := f.arg(c, 0)
			if err != nil {
				return nil, err
			}
			var out Collection
			for _, it := range distinct(in) {
				if contains(other, it) {
					out = append(out, it)
				}
			}
			return out, nil
		}},
		"exclude": {minArgs: 1, maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			other, err := f.arg(c, 0)
			if err != nil {
				return nil, err
			}
			var out Collection
			for _, it := range in {
				if !contains(other, it) {
					out = append(out, it)
				}
			}
			return out, nil
		}},
		// Combining.
		"union": {minArgs: 1, maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			other, err := f.arg(c, 0)
			if err != nil {
				return nil, err
			}
			return union(in, other), nil
		}},
		"combine": {minArgs: 1, maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			other, err := f.arg(c, 0)
			if err != nil {
				return nil, err
			}
			out := make(Collection, 0, len(in)+len(other))
			return append(append(out, in...), other...), nil
		}},
		// Conversion.
		"iif":                {minArgs: 2, maxArgs: 3, fn: fnIif},
		"toBoolean":          {fn: convert(toBoolean)},
		"convertsToBoolean":  {fn: convertsTo(toBoolean)},
		"toInteger":          {fn: convert(toInteger)},
		"convertsToInteger":  {fn: convertsTo(toInteger)},
		"toDecimal":          {fn: convert(toDecimalValue)},
		"convertsToDecimal":  {fn: convertsTo(toDecimalValue)},
		"toString":           {fn: convert(toStringConv)},
		"convertsToString":   {fn: convertsTo(toStringConv)},
		"toDate":             {fn: convert(toDate)},
		"convertsToDate":     {fn: convertsTo(toDate)},
		"toDateTime":         {fn: convert(toDateTime)},
		"convertsToDateTime": {fn: convertsTo(toDateTime)},
		"toTime":             {fn: convert(toTime)},
		"convertsToTime":     {fn: convertsTo(toTime)},
		"toQuantity":         {maxArgs: 1, fn: convert(toQuantity)},
		"convertsToQuantity": {maxArgs: 1, fn: convertsTo(toQuantity)},
		// Strings.
		"indexOf": {minArgs: 1, maxArgs: 1, fn: stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
			sub, ok, err := f.stringArg(c, 0)
			if err != nil || !ok {
				return nil, err
			}
			i := strings.Index(s, sub)
			if i < 0 {
				return one(int64(-1)), nil
			}
			return one(int64(utf8.RuneCountInString(s[:i]))), nil
		})},
		"substring": {minArgs: 1, maxArgs: 2, fn: stringFn(fnSubstring)},
		"startsWith": {minArgs: 1, maxArgs: 1, fn: stringPredicate(func(s, arg string) bool {
			return strings.HasPrefix(s, arg)
		})},
		"endsWith": {minArgs: 1, maxArgs: 1, fn: stringPredicate(func(s, arg string) bool {
			return strings.HasSuffix(s, arg)
		})},
		"contains": {minArgs: 1, maxArgs: 1, fn: stringPredicate(func(s, arg string) bool {
			return strings.Contains(s, arg)
		})},
		"upper": {fn: stringFn(func(_ *ctx, s string, _ *funcNode) (Collection, error) {
			return one(strings.ToUpper(s)), nil
		})},
		"lower": {fn: stringFn(func(_ *ctx, s string, _ *funcNode) (Collection, error) {
			return one(strings.ToLower(s)), nil
		})},
		"trim": {fn: stringFn(func(_ *ctx, s string, _ *funcNode) (Collection, error) {
			return one(strings.TrimSpace(s)), nil
		})},
		"length": {fn: stringFn(func(_ *ctx, s string, _ *funcNode) (Collection, error) {
			return one(int64(utf8.RuneCountInString(s))), nil
		})},
		"toChars": {fn: stringFn(func(_ *ctx, s string, _ *funcNode) (Collection, error) {
			var out Collection
			for _, r := range s {
				out = append(out, Item{Value: string(r)})
			}
			return out, nil
		})},
		"replace": {minArgs: 2, maxArgs: 2, fn: stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
			pat, ok1, err := f.stringArg(c, 0)
			if err != nil {
				return nil, err
			}
			rep, ok2, err := f.stringArg(c, 1)
			if err != nil || !ok1 || !ok2 {
				return nil, err
			}
			return one(strings.ReplaceAll(s, pat, rep)), nil
		})},
		"matches": {minArgs: 1, maxArgs: 1, regexArg: true, fn: stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
			re, ok, err := f.regexp(c)
			if err != nil || !ok {
				return nil, err
			}
			return boolResult(re.MatchString(s)), nil
		})},
		"replaceMatches": {minArgs: 2, maxArgs: 2, regexArg: true, fn: stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
			re, ok, err := f.regexp(c)
			if err != nil || !ok {
				return nil, err
			}
			rep, ok, err := f.stringArg(c, 1)
			if err != nil || !ok {
				return nil, err
			}
			if re.String() == "(?s)" {
				return one(s), nil // an empty pattern replaces nothing
			}
			return one(re.ReplaceAllString(s, rep)), nil
		})},
		"split": {minArgs: 1, maxArgs: 1, fn: stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
			sep, ok, err := f.stringArg(c, 0)
			if err != nil || !ok {
				return nil, err
			}
			var out Collection
			for _, p := range strings.Split(s, sep) {
				out = append(out, Item{Value: p})
			}
			return out, nil
		})},
		"join": {maxArgs: 1, fn: func(c *ctx, in Collection, f *funcNode) (Collection, error) {
			sep, _, err := f.stringArg(c, 0)
			if err != nil {
				return nil, err
			}
			parts := make([]string, 0, len(in))
			for _, it := range in {
				v, _ := it.value()
				s, ok := v.(string)
				if !ok {
					return nil, fmt.Errorf("fhirpath: join() on a non-string item")
				}
				parts = append(parts, s)
			}
			return one(strings.Join(parts, sep)), nil
		}},
		// Math.
		"abs":      {fn: mathFn(math.Abs, func(i int64) int64 { return max(i, -i) })},
		"ceiling":  {fn: mathFn(math.Ceil, func(i int64) int64 { return i })},
		"floor":    {fn: mathFn(math.Floor, func(i int64) int64 { return i })},
		"truncate": {fn: mathFn(math.Trunc, func(i int64) int64 { return i })},
		"sqrt":     {fn: mathFn(math.Sqrt, nil)},
		"exp":      {fn: mathFn(math.Exp, nil)},
		"ln":       {fn: mathFn(math.Log, nil)},
		"round":    {maxArgs: 1, fn: fnRound},
		"log":      {minArgs: 1, maxArgs: 1, fn: fnPow(func(x, y float64) float64 { return math.Log(x) / math.Log(y) })},
		"power":    {minArgs: 1, maxArgs: 1, fn: fnPow(math.Pow)},
		// Tree navigation.
		"children": {fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			var out Collection
			for _, it := range in {
				out = children(out, it)
			}
			return out, nil
		}},
		"descendants": {fn: fnDescendants},
		// Utility.
		"trace": {minArgs: 1, maxArgs: 2, fn: func(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
			return in, nil
		}},
		"now": {fn: func(*ctx, Collection, *funcNode) (Collection, error) {
			return one(DateTime(time.Now().Format("2006-01-02T15:04:05.000Z07:00"))), nil
		}},
		"today": {fn: func(*ctx, Collection, *funcNode) (Collection, error) {
			return one(Date(time.Now().Format("2006-01-02"))), nil
		}},
		"timeOfDay": {fn: func(*ctx, Collection, *funcNode) (Collection, error) {
			return one(Time(time.Now().Format("15:04:05.000"))), nil
		}},
		"aggregate": {minArgs: 1, maxArgs: 2, fn: fnAggregate},
		// Types.
		"is": {typeArg: true, fn: func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
			switch len(in) {
			case 0:
				return nil, nil
			case 1:
				return boolResult(isType(in[0], f.ts)), nil
			}
			return nil, fmt.Errorf("fhirpath: is() on a collection of %d items", len(in))
		}},
		"as":  {typeArg: true, fn: fnAs},
		"not": {fn: fnNot},
		// FHIR additions.
		"extension":         {minArgs: 1, maxArgs: 1, fn: fnExtension},
		"hasValue":          {fn: fnHasValue},
		"getValue":          {fn: fnGetValue},
		"resolve":           {fn: fnResolve},
		"htmlChecks":        {fn: fnHTMLChecks},
		"memberOf":          unsupported,
		"conformsTo":        unsupported,
		"subsumes":          unsupported,
		"subsumedBy":        unsupported,
		"elementDefinition": unsupported,
		"slice":             unsupported,
		"checkModifiers":    unsupported,
		"encode":            unsupported,
		"decode":            unsupported,
		"escape":            unsupported,
		"unescape":          unsupported,
		"lowBoundary":       unsupported,
		"highBoundary":      unsupported,
		"precision":         unsupported,
		"defineVariable":    unsupported,
		"sort":              unsupported,
	}
}

func fnExists(c *ctx, in Collection, f *funcNode) (Collection, error) {
	if len(f.args) == 0 {
		return boolResult(len(in) > 0), nil
	}
	for i, it := range in {
		r, err := f.lambda(c, 0, it, i)
		if err != nil {
			return nil, err
		}
		if b, ok, err := toBool(r); err != nil {
			return nil, err
		} else if ok && b {
			return trueCol, nil
		}
	}
	return falseCol, nil
}

func fnAll(c *ctx, in Collection, f *funcNode) (Collection, error) {
	for i, it := range in {
		r, err := f.lambda(c, 0, it, i)
		if err != nil {
			return nil, err
		}
		if b, ok, err := toBool(r); err != nil {
			return nil, err
		} else if !ok || !b {
			return falseCol, nil
		}
	}
	return trueCol, nil
}

// boolQuantifier implements allTrue/anyTrue/allFalse/anyFalse: it answers
// found as soon as stop(item) holds, and !found when no item stops it.
func boolQuantifier(f *funcNode, in Collection, stop func(bool) bool, found bool) (Collection, error) {
	for _, it := range in {
		v, _ := it.value()
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("fhirpath: %s() on a non-boolean item", f.name)
		}
		if stop(b) {
			return boolResult(found), nil
		}
	}
	return boolResult(!found), nil
}

func fnSubsetOf(c *ctx, in Collection, f *funcNode) (Collection, error) {
	other, err := f.arg(c, 0)
	if err != nil {
		return nil, err
	}
	for _, it := range in {
		if !contains(other, it) {
			return falseCol, nil
		}
	}
	return trueCol, nil
}

func fnSupersetOf(c *ctx, in Collection, f *funcNode) (Collection, error) {
	other, err := f.arg(c, 0)
	if err != nil {
		return nil, err
	}
	for _, it := range other {
		if !contains(in, it) {
			return falseCol, nil
		}
	}
	return trueCol, nil
}

func fnWhere(c *ctx, in Collection, f *funcNode) (Collection, error) {
	var out Collection
	for i, it := range in {
		r, err := f.lambda(c, 0, it, i)
		if err != nil {
			return nil, err
		}
		b, ok, err := toBool(r)
		if err != nil {
			return nil, err
		}
		if ok && b {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnSelect(c *ctx, in Collection, f *funcNode) (Collection, error) {
	var out Collection
	for i, it := range in {
		r, err := f.lambda(c, 0, it, i)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// maxRepeat bounds repeat() and descendants() so that hostile input cannot
// make an evaluation run away.
const maxRepeat = 1 << 20

func fnRepeat(c *ctx, in Collection, f *funcNode) (Collection, error) {
	var out Collection
	seen := map[string]bool{}
	queue := in
	for len(queue) > 0 {
		var next Collection
		for i, it := range queue {
			r, err := f.lambda(c, 0, it, i)
			if err != nil {
				return nil, err
			}
			for _, x := range r {
				k := identityKey(x)
				if seen[k] {
					continue
				}
				seen[k] = true
				out = append(out, x)
				next = append(next, x)
			}
			if len(out) > maxRepeat {
				return nil, fmt.Errorf("fhirpath: repeat() produced more than %d items", maxRepeat)
			}
		}
		queue = next
	}
	return out, nil
}

// identityKey identifies an item for repeat(): JSON nodes by identity,
// computed values by value.
func identityKey(it Item) string {
	if it.Node != nil {
		return fmt.Sprintf("n%p", it.Node)
	}
	if it.ext != nil {
		return fmt.Sprintf("x%p", it.ext)
	}
	return itemKey(it)
}

func fnDescendants(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
	var out Collection
	level := in
	for len(level) > 0 {
		var next Collection
		for _, it := range level {
			next = children(next, it)
		}
		out = append(out, next...)
		if len(out) > maxRepeat {
			return nil, fmt.Errorf("fhirpath: descendants() produced more than %d items", maxRepeat)
		}
		level = next
	}
	return out, nil
}

func fnAs(_ *ctx, in Collection, f *funcNode) (Collection, error) {
	var out Collection
	for _, it := range in {
		if isTypeExact(it, f.ts) {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnNot(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
	b, ok, err := toBool(in)
	if err != nil || !ok {
		return nil, err
	}
	return boolResult(!b), nil
}

func fnIif(c *ctx, in Collection, f *funcNode) (Collection, error) {
	if len(in) > 1 {
		return nil, fmt.Errorf("fhirpath: iif() on a collection of %d items", len(in))
	}
	// The criterion and both results are evaluated with the input as $this
	// (member.resolve().iif(empty(), true, ofType(Practitioner).exists())).
	sub := *c
	sub.this = in
	cond, err := f.args[0].eval(&sub, in)
	if err != nil {
		return nil, err
	}
	b, ok, err := toBool(cond)
	if err != nil {
		return nil, err
	}
	if ok {
		if v, _ := cond[0].value(); v == nil || fmt.Sprintf("%T", v) != "bool" {
			return nil, fmt.Errorf("fhirpath: iif() criterion is not a boolean")
		}
	}
	if ok && b {
		return f.args[1].eval(&sub, in)
	}
	if len(f.args) == 3 {
		return f.args[2].eval(&sub, in)
	}
	return nil, nil
}

func fnAggregate(c *ctx, in Collection, f *funcNode) (Collection, error) {
	total, err := f.arg(c, 1)
	if err != nil {
		return nil, err
	}
	for i, it := range in {
		sub := *c
		sub.this = Collection{it}
		sub.index = i
		sub.total = total
		total, err = f.args[0].eval(&sub, sub.this)
		if err != nil {
			return nil, err
		}
	}
	return total, nil
}

// Conversions.

type converter func(v any) (any, bool)

func convert(conv converter) func(*ctx, Collection, *funcNode) (Collection, error) {
	return func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
		v, ok, err := singleValue(f, in)
		if err != nil || !ok {
			return nil, err
		}
		r, ok := conv(v)
		if !ok {
			return nil, nil
		}
		return one(r), nil
	}
}

func convertsTo(conv converter) func(*ctx, Collection, *funcNode) (Collection, error) {
	return func(_ *ctx, in Collection, f *funcNode) (Collection, error) {
		v, ok, err := singleValue(f, in)
		if err != nil || len(in) == 0 {
			return nil, err
		}
		if !ok {
			return falseCol, nil
		}
		_, ok = conv(v)
		return boolResult(ok), nil
	}
}

func toBoolean(v any) (any, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		switch x {
		case 1:
			return true, true
		case 0:
			return false, true
		}
	case Decimal:
		if r, ok := toRat(x); ok {
			switch {
			case r.Cmp(big.NewRat(1, 1)) == 0:
				return true, true
			case r.Sign() == 0:
				return false, true
			}
		}
	case string:
		switch strings.ToLower(x) {
		case "true", "t", "yes", "y", "1", "1.0":
			return true, true
		case "false", "f", "no", "n", "0", "0.0":
			return false, true
		}
	}
	return nil, false
}

var integerRE = regexp.MustCompile(`^[+-]?[0-9]+$`)

func toInteger(v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return int64(1), true
		}
		return int64(0), true
	case string:
		if integerRE.MatchString(x) {
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n, true
			}
		}
	}
	return nil, false
}

var decimalRE = regexp.MustCompile(`^[+-]?[0-9]+(\.[0-9]+)?$`)

func toDecimalValue(v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		return Decimal(strconv.FormatInt(x, 10)), true
	case Decimal:
		return x, true
	case bool:
		if x {
			return Decimal("1.0"), true
		}
		return Decimal("0.0"), true
	case string:
		if decimalRE.MatchString(x) {
			return Decimal(strings.TrimPrefix(x, "+")), true
		}
	}
	return nil, false
}

func toStringConv(v any) (any, bool) {
	s, ok := toStringValue(v)
	return s, ok
}

func toDate(v any) (any, bool) {
	switch x := v.(type) {
	case Date:
		return x, true
	case DateTime:
		if i := strings.IndexByte(string(x), 'T'); i >= 0 {
			return Date(x[:i]), true
		}
		return Date(x), true
	case string:
		if _, ok := parseDT(x, kDate); ok {
			return Date(x), true
		}
	}
	return nil, false
}

func toDateTime(v any) (any, bool) {
	switch x := v.(type) {
	case Date:
		return DateTime(x), true
	case DateTime:
		return x, true
	case string:
		if _, ok := parseDT(x, kDateTime); ok {
			return DateTime(x), true
		}
	}
	return nil, false
}

func toTime(v any) (any, bool) {
	switch x := v.(type) {
	case Time:
		return x, true
	case string:
		if _, ok := parseTime(x); ok {
			return Time(x), true
		}
	}
	return nil, false
}

var quantityRE = regexp.MustCompile(`^([+-]?[0-9]+(?:\.[0-9]+)?)\s*(?:'([^']+)'|([a-z]+))?$`)

func toQuantity(v any) (any, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return Quantity{Value: "1.0", Unit: "1"}, true
		}
		return Quantity{Value: "0.0", Unit: "1"}, true
	case int64, Decimal:
		d, _ := toDecimalValue(x)
		return Quantity{Value: d.(Decimal), Unit: "1"}, true
	case Quantity:
		return x, true
	case string:
		m := quantityRE.FindStringSubmatch(strings.TrimSpace(x))
		if m == nil {
			return nil, false
		}
		unit := m[2]
		if m[3] != "" {
			u, ok := calendarUnits[m[3]]
			if !ok {
				return nil, false
			}
			unit = u
		}
		if unit == "" {
			unit = "1"
		}
		return Quantity{Value: Decimal(strings.TrimPrefix(m[1], "+")), Unit: unit}, true
	}
	return nil, false
}

// Strings.

func stringFn(fn func(c *ctx, s string, f *funcNode) (Collection, error)) func(*ctx, Collection, *funcNode) (Collection, error) {
	return func(c *ctx, in Collection, f *funcNode) (Collection, error) {
		s, ok, err := singleString(f, in)
		if err != nil || !ok {
			return nil, err
		}
		return fn(c, s, f)
	}
}

func stringPredicate(pred func(s, arg string) bool) func(*ctx, Collection, *funcNode) (Collection, error) {
	return stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
		arg, ok, err := f.stringArg(c, 0)
		if err != nil || !ok {
			return nil, err
		}
		return boolResult(pred(s, arg)), nil
	})
}

func fnSubstring(c *ctx, s string, f *funcNode) (Collection, error) {
	start, ok, err := f.intArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	runes := []rune(s)
	if start < 0 || start >= int64(len(runes)) {
		return nil, nil
	}
	end := int64(len(runes))
	if len(f.args) > 1 {
		n, ok, err := f.intArg(c, 1)
		if err != nil {
			return nil, err
		}
		if ok {
			end = min(end, start+max(n, 0))
		}
	}
	return one(string(runes[start:end])), nil
}

// Math.

func mathFn(fl func(float64) float64, in func(int64) int64) func(*ctx, Collection, *funcNode) (Collection, error) {
	return func(_ *ctx, col Collection, f *funcNode) (Collection, error) {
		v, ok, err := singleValue(f, col)
		if err != nil || !ok {
			return nil, err
		}
		switch x := v.(type) {
		case int64:
			if in != nil {
				return one(in(x)), nil
			}
			return floatResult(fl(float64(x)))
		case Decimal:
			d, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return nil, fmt.Errorf("fhirpath: bad decimal %q", string(x))
			}
			r := fl(d)
			if in != nil && f.name != "abs" {
				return one(int64(r)), nil
			}
			return floatResult(r)
		case Quantity:
			if f.name == "abs" {
				return one(Quantity{Value: Decimal(strings.TrimPrefix(string(x.Value), "-")), Unit: x.Unit}), nil
			}
		}
		return nil, fmt.Errorf("fhirpath: %s() on %s", f.name, typeNameOf(v))
	}
}

func floatResult(r float64) (Collection, error) {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return nil, nil
	}
	return one(Decimal(strconv.FormatFloat(r, 'f', -1, 64))), nil
}

func fnRound(c *ctx, col Collection, f *funcNode) (Collection, error) {
	v, ok, err := singleValue(f, col)
	if err != nil || !ok {
		return nil, err
	}
	prec, _, err := f.intArg(c, 0)
	if err != nil {
		return nil, err
	}
	r, ok := toRat(v)
	if !ok {
		return nil, fmt.Errorf("fhirpath: round() on %s", typeNameOf(v))
	}
	return one(Decimal(r.FloatString(int(max(prec, 0))))), nil
}

func fnPow(op func(x, y float64) float64) func(*ctx, Collection, *funcNode) (Collection, error) {
	return func(c *ctx, col Collection, f *funcNode) (Collection, error) {
		v, ok, err := singleValue(f, col)
		if err != nil || !ok {
			return nil, err
		}
		a, err := f.arg(c, 0)
		if err != nil || len(a) != 1 {
			return nil, err
		}
		w, _ := a[0].value()
		x, ok1 := toRat(v)
		y, ok2 := toRat(w)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("fhirpath: %s() needs numbers", f.name)
		}
		xf, _ := x.Float64()
		yf, _ := y.Float64()
		r := op(xf, yf)
		_, xi := v.(int64)
		_, yi := w.(int64)
		if f.name == "power" && xi && yi && r == math.Trunc(r) && math.Abs(r) < 1<<53 {
			return one(int64(r)), nil
		}
		return floatResult(r)
	}
}

// FHIR functions.

func fnExtension(c *ctx, in Collection, f *funcNode) (Collection, error) {
	url, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	var exts, out Collection
	for _, it := range in {
		exts = navigate(exts[:0], it, "extension")
		for _, e := range exts {
			if e.Node != nil && e.Node.Get("url").String() == url {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func fnHasValue(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
	if len(in) != 1 || in[0].Node == nil {
		return falseCol, nil
	}
	switch in[0].Node.Kind {
	case fjson.String, fjson.Number, fjson.Bool:
		return trueCol, nil
	}
	return falseCol, nil
}

func fnGetValue(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
	if len(in) != 1 || in[0].Node == nil || in[0].Node.Kind == fjson.Object || in[0].Node.Kind == fjson.Array {
		return nil, nil
	}
	v, ok := in[0].value()
	if !ok {
		return nil, nil
	}
	return one(v), nil
}

func fnResolve(c *ctx, in Collection, _ *funcNode) (Collection, error) {
	var out Collection
	for _, it := range in {
		var ref, typeHint string
		switch {
		case it.Node != nil && it.Node.Kind == fjson.Object:
			ref = it.Node.Get("reference").String()
			typeHint = it.Node.Get("type").String()
		case it.Node != nil && it.Node.Kind == fjson.String:
			ref = it.Node.Str
		default:
			if s, ok := it.Value.(string); ok {
				ref = s
			}
		}
		if ref == "" {
			continue
		}
		if c.env != nil && c.env.Resolve != nil {
			if n, rt, ok := c.env.Resolve(ref); ok {
				out = append(out, Item{Node: n, Type: rt})
				continue
			}
		}
		if id, ok := strings.CutPrefix(ref, "#"); ok {
			if n := findContained(c.root, id); n != nil {
				out = append(out, Item{Node: n, Type: n.Get("resourceType").String()})
			}
			continue
		}
		if t := ReferenceType(ref); t != "" {
			out = append(out, Item{Type: t})
		} else if typeHint != "" {
			out = append(out, Item{Type: typeHint})
		}
	}
	return out, nil
}

func findContained(root Collection, id string) *fjson.Value {
	if len(root) == 0 || root[0].Node == nil {
		return nil
	}
	cont := root[0].Node.Get("contained")
	if cont == nil || cont.Kind != fjson.Array {
		return nil
	}
	for _, r := range cont.Items {
		if r.Get("id").String() == id {
			return r
		}
	}
	return nil
}

// ReferenceType returns the resource type named by a reference string:
// "Patient/1", "Patient/1/_history/2", "http://host/fhir/Patient/1" and
// the conditional "Patient?identifier=x" all give "Patient"; references
// without a recognisable type ("urn:uuid:...", "#contained") give "".
func ReferenceType(ref string) string {
	if i := strings.IndexByte(ref, '?'); i >= 0 {
		if t := ref[:i]; isResourceType(t) {
			return t
		}
		return ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 || j == len(ref)-1 {
		return ""
	}
	head := ref[:j]
	t := head[strings.LastIndexByte(head, '/')+1:]
	if isResourceType(t) {
		return t
	}
	return ""
}

func isResourceType(t string) bool {
	return t != "" && t[0] >= 'A' && t[0] <= 'Z' && !strings.Contains(t, ".") &&
		t != "Resource" && t != "DomainResource" && isSubtype(t, "Resource")
}

// htmlChecks is a cheap version of the narrative rule txt-1: the XHTML must
// be well-formed, rooted in a div, and free of active content (scripts,
// forms, event handlers, javascript: links).
func fnHTMLChecks(_ *ctx, in Collection, f *funcNode) (Collection, error) {
	s, ok, err := singleString(f, in)
	if err != nil || !ok {
		return nil, err
	}
	return boolResult(htmlOK(s)), nil
}

var forbiddenTags = map[string]bool{
	"script": true, "object": true, "applet": true, "embed": true, "iframe": true, "frame": true,
	"frameset": true, "form": true, "input": true, "button": true, "select": true, "textarea": true,
	"base": true, "link": true, "meta": true, "style": true, "head": true, "body": true, "html": true,
}

func htmlOK(s string) bool {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return depth == 0 && roots == 1
		}
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if t.Name.Local != "div" || roots > 1 {
					return false
				}
			}
			if forbiddenTags[strings.ToLower(t.Name.Local)] {
				return false
			}
			for _, a := range t.Attr {
				name := strings.ToLower(a.Name.Local)
				if strings.HasPrefix(name, "on") {
					return false
				}
				if (name == "href" || name == "src") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Value)), "javascript:") {
					return false
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return false
			}
		}
	}
}

func firstNonEmpty(ss ...string) string {
	for _, x := range ss {
		if x != "" {
			return x
		}
	}
	return ""
}
