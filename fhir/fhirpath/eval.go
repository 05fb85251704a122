package fhirpath

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// ctx is the evaluation context shared by the nodes of one evaluation.
// Iterating functions copy it to set $this, $index and $total.
type ctx struct {
	env      *Env
	resource Collection // %resource
	root     Collection // %rootResource
	context  Collection // %context
	this     Collection // $this
	index    int        // $index
	total    Collection // $total
	// memo caches the results of constant paths (%resource.descendants())
	// for the duration of one evaluation; shared by copies of the context.
	memo *map[*pathNode]Collection
}

// node is a compiled expression. eval must not modify in, and callers must
// not modify the returned collection, which may be shared (literals).
type node interface {
	eval(c *ctx, in Collection) (Collection, error)
}

type literalNode struct{ val Collection }

func (n *literalNode) eval(*ctx, Collection) (Collection, error) { return n.val, nil }

type thisNode struct{}

func (thisNode) eval(c *ctx, _ Collection) (Collection, error) { return c.this, nil }

type indexVarNode struct{}

func (indexVarNode) eval(c *ctx, _ Collection) (Collection, error) {
	return Collection{{Value: int64(c.index)}}, nil
}

type totalNode struct{}

func (totalNode) eval(c *ctx, _ Collection) (Collection, error) { return c.total, nil }

type envNode struct{ name string }

// Well-known FHIR terminology constants.
var envConstants = map[string]string{
	"ucum":  "http://unitsofmeasure.org",
	"sct":   "http://snomed.info/sct",
	"loinc": "http://loinc.org",
}

func (n *envNode) eval(c *ctx, _ Collection) (Collection, error) {
	switch n.name {
	case "resource":
		return c.resource, nil
	case "rootResource":
		return c.root, nil
	case "context":
		return c.context, nil
	}
	if v, ok := envValue(n.name); ok {
		return Collection{{Value: v}}, nil
	}
	return nil, fmt.Errorf("fhirpath: unknown environment variable %%%s", n.name)
}

func envValue(name string) (string, bool) {
	if v, ok := envConstants[name]; ok {
		return v, true
	}
	if rest, ok := strings.CutPrefix(name, "vs-"); ok {
		return "http://hl7.org/fhir/ValueSet/" + rest, true
	}
	if rest, ok := strings.CutPrefix(name, "ext-"); ok {
		return "http://hl7.org/fhir/StructureDefinition/" + rest, true
	}
	return "", false
}

func knownEnv(name string) bool {
	switch name {
	case "resource", "rootResource", "context":
		return true
	}
	_, ok := envValue(name)
	return ok
}

type pathNode struct {
	left, right node
	// constant is set for paths that start at an environment variable and
	// only navigate (%resource.descendants().reference): their value does
	// not depend on the focus, so one evaluation computes them once.
	constant bool
}

// isConstantPath reports whether n evaluates to the same collection
// wherever it appears in one evaluation.
func isConstantPath(n node) bool {
	switch x := n.(type) {
	case *envNode:
		return true
	case *pathNode:
		if !isConstantPath(x.left) {
			return false
		}
		switch r := x.right.(type) {
		case *memberNode:
			return true
		case *funcNode:
			return len(r.args) == 0
		}
	}
	return false
}

func (n *pathNode) eval(c *ctx, in Collection) (Collection, error) {
	if n.constant && c.memo != nil {
		if *c.memo == nil {
			*c.memo = map[*pathNode]Collection{}
		}
		if v, ok := (*c.memo)[n]; ok {
			return v, nil
		}
		v, err := n.evalPath(c, in)
		if err == nil {
			(*c.memo)[n] = v
		}
		return v, err
	}
	return n.evalPath(c, in)
}

func (n *pathNode) evalPath(c *ctx, in Collection) (Collection, error) {
	l, err := n.left.eval(c, in)
	if err != nil {
		return nil, err
	}
	if len(l) == 0 {
		// Functions still run on an empty input: x.empty() is true.
		if _, ok := n.right.(*memberNode); ok {
			return nil, nil
		}
	}
	return n.right.eval(c, l)
}

type indexNode struct{ x, index node }

func (n *indexNode) eval(c *ctx, in Collection) (Collection, error) {
	col, err := n.x.eval(c, in)
	if err != nil || len(col) == 0 {
		return nil, err
	}
	idx, err := n.index.eval(c, c.this)
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return nil, nil
	}
	v, ok := idx[0].value()
	i, isInt := v.(int64)
	if len(idx) != 1 || !ok || !isInt {
		return nil, fmt.Errorf("fhirpath: an index must be one integer")
	}
	if i < 0 || i >= int64(len(col)) {
		return nil, nil
	}
	return Collection{col[i]}, nil
}

type memberNode struct{ name string }

func (n *memberNode) eval(c *ctx, in Collection) (Collection, error) {
	var out Collection
	typeFilter := n.name[0] >= 'A' && n.name[0] <= 'Z'
	strict := c != nil && c.env != nil && c.env.Strict
	for _, it := range in {
		if typeFilter && (lookupType(n.name) != nil || !strict) {
			// A type name in a path selects the items of that type
			// (Observation.code, Resource.id).
			if it.Type != "" && isSubtype(it.Type, n.name) {
				out = append(out, it)
			} else if strict && it.Type != "" && lookupType(it.Type) != nil {
				return nil, fmt.Errorf("fhirpath: %s is not the type of the context (%s)", n.name, it.Type)
			}
			continue
		}
		if strict && it.Node != nil {
			if ti := lookupType(it.Type); ti != nil && ti.elems != nil && ti.elems[n.name] == nil {
				return nil, fmt.Errorf("fhirpath: %s has no element %s", it.Type, n.name)
			}
		}
		out = navigate(out, it, n.name)
	}
	return out, nil
}

// getExt returns the "_key" member of n without allocating the key.
func getExt(n *fjson.Value, key string) *fjson.Value {
	for i := range n.Members {
		k := n.Members[i].Key
		if len(k) == len(key)+1 && k[0] == '_' && k[1:] == key {
			return n.Members[i].Value
		}
	}
	return nil
}

// navigate appends the children of it named name to out.
func navigate(out Collection, it Item, name string) Collection {
	n := it.Node
	if n == nil || n.Kind != fjson.Object {
		// A primitive's id and extensions live in its "_name" companion.
		if it.ext != nil && (name == "id" || name == "extension") {
			return navigateObject(out, it.ext, lookupType("Element"), name)
		}
		return out
	}
	return navigateObject(out, n, lookupType(it.Type), name)
}

func navigateObject(out Collection, n *fjson.Value, ti *typeInfo, name string) Collection {
	if ti != nil && ti.elems != nil {
		el := ti.elems[name]
		if el == nil {
			return out
		}
		if !el.choice {
			return addValue(out, name, el.types[0], n.Get(name), getExt(n, name))
		}
		for i := range n.Members {
			key := n.Members[i].Key
			if !strings.HasPrefix(key, name) {
				if base, ok := strings.CutPrefix(key, "_"); ok && strings.HasPrefix(base, name) {
					if ki, ok := ti.keys[base]; ok && ki.elem == el && n.Get(base) == nil {
						out = addValue(out, base, ki.typ, nil, n.Members[i].Value)
					}
				}
				continue
			}
			if ki, ok := ti.keys[key]; ok && ki.elem == el {
				out = addValue(out, key, ki.typ, n.Members[i].Value, getExt(n, key))
			}
		}
		return out
	}
	// No model for this node: the member itself, or a choice variant
	// recognised by its type suffix.
	v, x := n.Get(name), getExt(n, name)
	if v != nil || x != nil {
		return addValue(out, name, "", v, x)
	}
	for i := range n.Members {
		key := n.Members[i].Key
		if len(key) > len(name) && strings.HasPrefix(key, name) && key[len(name)] >= 'A' && key[len(name)] <= 'Z' {
			if t := typeFromSuffix(key[len(name):]); t != "" {
				out = addValue(out, key, t, n.Members[i].Value, getExt(n, key))
			}
		}
	}
	return out
}

// addValue appends the item(s) of member key (value v, companion x) of
// FHIR type typ; arrays are flattened, primitive arrays aligned with their
// companion arrays.
func addValue(out Collection, key, typ string, v, x *fjson.Value) Collection {
	if v != nil && v.Kind == fjson.Array {
		for i, e := range v.Items {
			var xe *fjson.Value
			if x != nil && x.Kind == fjson.Array && i < len(x.Items) && x.Items[i].Kind == fjson.Object {
				xe = x.Items[i]
			}
			if e.Kind == fjson.Null {
				if xe != nil {
					out = append(out, Item{Name: key, Type: typ, ext: xe})
				}
				continue
			}
			out = append(out, makeItem(key, typ, e, xe))
		}
		return out
	}
	if v == nil || v.Kind == fjson.Null {
		switch {
		case x == nil:
		case x.Kind == fjson.Object:
			out = append(out, Item{Name: key, Type: typ, ext: x})
		case x.Kind == fjson.Array:
			for _, xe := range x.Items {
				if xe.Kind == fjson.Object {
					out = append(out, Item{Name: key, Type: typ, ext: xe})
				}
			}
		}
		return out
	}
	if x != nil && x.Kind != fjson.Object {
		x = nil
	}
	return append(out, makeItem(key, typ, v, x))
}

func makeItem(key, typ string, v, x *fjson.Value) Item {
	if v.Kind == fjson.Object && (typ == "" || typ == "Resource" || typ == "DomainResource") {
		if rt := v.Get("resourceType"); rt != nil && rt.Kind == fjson.String {
			typ = rt.Str
		}
	}
	return Item{Node: v, Name: key, Type: typ, ext: x}
}

// children appends every child of it (the items its members hold).
func children(out Collection, it Item) Collection {
	n := it.Node
	ti := lookupType(it.Type)
	if n == nil || n.Kind != fjson.Object {
		if it.ext == nil {
			return out
		}
		n, ti = it.ext, lookupType("Element")
	}
	for i := range n.Members {
		key := n.Members[i].Key
		if key == "resourceType" {
			continue
		}
		if base, ok := strings.CutPrefix(key, "_"); ok {
			if n.Get(base) == nil {
				out = addValue(out, base, keyType(ti, base), nil, n.Members[i].Value)
			}
			continue
		}
		out = addValue(out, key, keyType(ti, key), n.Members[i].Value, getExt(n, key))
	}
	return out
}

func keyType(ti *typeInfo, key string) string {
	if ti == nil || ti.keys == nil {
		return ""
	}
	return ti.keys[key].typ
}

type negNode struct{ x node }

func (n *negNode) eval(c *ctx, in Collection) (Collection, error) {
	col, err := n.x.eval(c, in)
	if err != nil || len(col) == 0 {
		return nil, err
	}
	if len(col) > 1 {
		return nil, fmt.Errorf("fhirpath: unary minus on a collection of %d items", len(col))
	}
	v, _ := col[0].value()
	switch x := v.(type) {
	case int64:
		return Collection{{Value: -x}}, nil
	case Decimal:
		return Collection{{Value: Decimal(negateDecimal(string(x)))}}, nil
	case Quantity:
		return Collection{{Value: Quantity{Value: Decimal(negateDecimal(string(x.Value))), Unit: x.Unit}}}, nil
	}
	return nil, fmt.Errorf("fhirpath: unary minus on %s", typeNameOf(v))
}

type typeSpec struct{ ns, name string }

func (t typeSpec) String() string {
	if t.ns != "" {
		return t.ns + "." + t.name
	}
	return t.name
}

// systemTypes maps System type names to the Go type of their values.
func systemTypeMatches(v any, name string) bool {
	switch v.(type) {
	case bool:
		return name == "Boolean"
	case string:
		return name == "String"
	case int64:
		return name == "Integer"
	case Decimal:
		return name == "Decimal"
	case Date:
		return name == "Date"
	case DateTime:
		return name == "DateTime"
	case Time:
		return name == "Time"
	case Quantity:
		return name == "Quantity"
	}
	return false
}

// isType reports whether it is of type ts (or a subtype).
func isType(it Item, ts typeSpec) bool {
	if ts.ns != "System" && it.Type != "" && isSubtype(it.Type, ts.name) {
		return true
	}
	if ts.ns == "FHIR" {
		return false
	}
	// System types: computed values only. A FHIR boolean element is a
	// FHIR.boolean, not a System.Boolean.
	if it.Type != "" {
		return false
	}
	v, ok := it.value()
	return ok && systemTypeMatches(v, ts.name)
}

// isTypeExact is isType for as() and ofType(): a FHIR primitive converts
// only to its own type (a code is a string for is(), but as(string) of a
// code is empty, as the official suite reads the specification).
func isTypeExact(it Item, ts typeSpec) bool {
	if ts.ns != "System" && it.Type != "" && isPrimitiveName(it.Type) && isPrimitiveName(ts.name) {
		return it.Type == ts.name
	}
	return isType(it, ts)
}

func isPrimitiveName(t string) bool { return t != "" && t[0] >= 'a' && t[0] <= 'z' }

type typeOpNode struct {
	op binOp // opIs or opAs
	x  node
	ts typeSpec
}

func (n *typeOpNode) eval(c *ctx, in Collection) (Collection, error) {
	col, err := n.x.eval(c, in)
	if err != nil || len(col) == 0 {
		return nil, err
	}
	if n.op == opIs {
		if len(col) > 1 {
			return nil, fmt.Errorf("fhirpath: 'is' on a collection of %d items", len(col))
		}
		return boolResult(isType(col[0], n.ts)), nil
	}
	// 'as' filters rather than failing on collections, as the R4 search
	// parameters (Observation.component.value as Quantity) require.
	var out Collection
	for _, it := range col {
		if isType(it, n.ts) {
			out = append(out, it)
		}
	}
	return out, nil
}

var (
	trueCol  = Collection{{Value: true}}
	falseCol = Collection{{Value: false}}
)

func boolResult(b bool) Collection {
	if b {
		return trueCol
	}
	return falseCol
}

type binOp uint8

const (
	opImplies binOp = iota
	opOr
	opXor
	opAnd
	opIn
	opContains
	opEq
	opEquiv
	opNe
	opNotEquiv
	opLt
	opGt
	opLe
	opGe
	opUnion
	opIs
	opAs
	opAdd
	opSub
	opConcat
	opMul
	opDiv
	opIntDiv
	opMod
)

type binaryNode struct {
	op          binOp
	left, right node
}

func newBinary(op binOp, l, r node) node { return &binaryNode{op: op, left: l, right: r} }

// toBool applies the singleton evaluation of collections for boolean
// operands: empty is unknown, one boolean is itself, any other single item
// is true, several items are an error.
func toBool(col Collection) (b, known bool, err error) {
	switch len(col) {
	case 0:
		return false, false, nil
	case 1:
		if v, ok := col[0].value(); ok {
			if b, ok := v.(bool); ok {
				return b, true, nil
			}
		}
		return true, true, nil
	}
	return false, false, fmt.Errorf("fhirpath: expected a single boolean, got %d items", len(col))
}

func (n *binaryNode) eval(c *ctx, in Collection) (Collection, error) {
	switch n.op {
	case opAnd, opOr, opXor, opImplies:
		return n.logic(c, in)
	}
	l, err := n.left.eval(c, in)
	if err != nil {
		return nil, err
	}
	r, err := n.right.eval(c, in)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case opUnion:
		return union(l, r), nil
	case opEq, opNe:
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		eq, ok := collectionsEqual(l, r)
		if !ok {
			return nil, nil
		}
		return boolResult(eq == (n.op == opEq)), nil
	case opEquiv, opNotEquiv:
		return boolResult(collectionsEquivalent(l, r) == (n.op == opEquiv)), nil
	case opLt, opGt, opLe, opGe:
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		if len(l) > 1 || len(r) > 1 {
			return nil, fmt.Errorf("fhirpath: comparison of collections with several items")
		}
		a, ok1 := l[0].value()
		b, ok2 := r[0].value()
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("fhirpath: comparison of complex values")
		}
		cmp, ok, err := compareValues(a, b)
		if err != nil || !ok {
			return nil, err
		}
		switch n.op {
		case opLt:
			return boolResult(cmp < 0), nil
		case opGt:
			return boolResult(cmp > 0), nil
		case opLe:
			return boolResult(cmp <= 0), nil
		}
		return boolResult(cmp >= 0), nil
	case opIn, opContains:
		elem, coll := l, r
		if n.op == opContains {
			elem, coll = r, l
		}
		if len(elem) == 0 {
			return nil, nil
		}
		if len(elem) > 1 {
			return nil, fmt.Errorf("fhirpath: membership test of a collection of %d items", len(elem))
		}
		return boolResult(contains(coll, elem[0])), nil
	case opConcat:
		a, err := concatOperand(l)
		if err != nil {
			return nil, err
		}
		b, err := concatOperand(r)
		if err != nil {
			return nil, err
		}
		return Collection{{Value: a + b}}, nil
	}
	return arithmetic(n.op, l, r)
}

func concatOperand(col Collection) (string, error) {
	switch len(col) {
	case 0:
		return "", nil
	case 1:
		if v, ok := col[0].value(); ok {
			if s, ok := toStringValue(v); ok {
				return s, nil
			}
		}
	}
	return "", fmt.Errorf("fhirpath: & needs single string operands")
}

func (n *binaryNode) logic(c *ctx, in Collection) (Collection, error) {
	l, err := n.left.eval(c, in)
	if err != nil {
		return nil, err
	}
	lb, lk, err := toBool(l)
	if err != nil {
		return nil, err
	}
	// Short-circuit where the left operand decides.
	switch {
	case n.op == opAnd && lk && !lb:
		return falseCol, nil
	case n.op == opOr && lk && lb:
		return trueCol, nil
	case n.op == opImplies && lk && !lb:
		return trueCol, nil
	}
	r, err := n.right.eval(c, in)
	if err != nil {
		return nil, err
	}
	rb, rk, err := toBool(r)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case opAnd:
		switch {
		case rk && !rb:
			return falseCol, nil
		case lk && rk:
			return trueCol, nil
		}
	case opOr:
		switch {
		case rk && rb:
			return trueCol, nil
		case lk && rk:
			return falseCol, nil
		}
	case opXor:
		if lk && rk {
			return boolResult(lb != rb), nil
		}
	case opImplies:
		switch {
		case rk && rb:
			return trueCol, nil
		case lk && rk: // left true, right false
			return falseCol, nil
		}
	}
	return nil, nil
}

// itemsEqual implements = on two items; ok is false for an empty result.
func itemsEqual(a, b Item) (eq, ok bool) {
	av, aok := a.value()
	bv, bok := b.value()
	if aok && bok {
		return equalValues(av, bv)
	}
	if aok != bok || a.Node == nil || b.Node == nil {
		return false, true
	}
	return fjson.Equal(a.Node, b.Node), true
}

func collectionsEqual(l, r Collection) (eq, ok bool) {
	if len(l) != len(r) {
		return false, true
	}
	for i := range l {
		eq, ok := itemsEqual(l[i], r[i])
		if !ok || !eq {
			return eq, ok
		}
	}
	return true, true
}

func itemsEquivalent(a, b Item) bool {
	av, aok := a.value()
	bv, bok := b.value()
	if aok && bok {
		return equivalentValues(av, bv)
	}
	if aok != bok || a.Node == nil || b.Node == nil {
		return false
	}
	return fjson.Equal(a.Node, b.Node)
}

func collectionsEquivalent(l, r Collection) bool {
	if len(l) != len(r) {
		return false
	}
	used := make([]bool, len(r))
outer:
	for _, a := range l {
		for j, b := range r {
			if !used[j] && itemsEquivalent(a, b) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

func contains(coll Collection, it Item) bool {
	for _, x := range coll {
		if eq, ok := itemsEqual(x, it); ok && eq {
			return true
		}
	}
	return false
}

// itemKey returns a string that is equal for items that are equal, for
// de-duplication of large collections.
func itemKey(it Item) string {
	if v, ok := it.value(); ok {
		switch x := v.(type) {
		case int64:
			return "n" + new(big.Rat).SetInt64(x).RatString()
		case Decimal:
			if r, ok := toRat(x); ok {
				return "n" + r.RatString()
			}
		case Quantity:
			if r, ok := toRat(x.Value); ok {
				u := x.Unit
				if c, ok := calendarUCUM[u]; ok {
					u = c
				}
				return "q" + r.RatString() + " " + u
			}
		case bool:
			return "b" + strconv.FormatBool(x)
		case string:
			return "s" + x
		}
		if s, ok := toStringValue(v); ok {
			return "d" + s
		}
	}
	if it.Node != nil {
		return "o" + string(fjson.AppendCompact(nil, it.Node))
	}
	return fmt.Sprintf("p%p", it.ext)
}

// distinct returns col without repeated items, keeping first occurrences.
func distinct(col Collection) Collection {
	if len(col) <= 1 {
		return col
	}
	out := make(Collection, 0, len(col))
	if len(col) <= 16 {
		for _, it := range col {
			if !contains(out, it) {
				out = append(out, it)
			}
		}
		return out
	}
	seen := make(map[string]bool, len(col))
	for _, it := range col {
		k := itemKey(it)
		if !seen[k] {
			seen[k] = true
			out = append(out, it)
		}
	}
	return out
}

func union(l, r Collection) Collection {
	all := make(Collection, 0, len(l)+len(r))
	all = append(all, l...)
	all = append(all, r...)
	return distinct(all)
}

func arithmetic(op binOp, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, fmt.Errorf("fhirpath: arithmetic on collections with several items")
	}
	a, ok1 := l[0].value()
	b, ok2 := r[0].value()
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("fhirpath: arithmetic on complex values")
	}
	if op == opAdd {
		if x, ok := a.(string); ok {
			if y, ok := b.(string); ok {
				return Collection{{Value: x + y}}, nil
			}
		}
	}
	if q, ok := b.(Quantity); ok && isDateLike(a) && (op == opAdd || op == opSub) {
		sign := 1
		if op == opSub {
			sign = -1
		}
		v, err := dateArithmetic(a, q, sign)
		if err != nil || v == nil {
			return nil, err
		}
		return Collection{{Value: v}}, nil
	}
	_, qa := a.(Quantity)
	_, qb := b.(Quantity)
	if (qa || qb) && (qa || isNumber(a)) && (qb || isNumber(b)) {
		v, err := quantityArithmetic(op, a, b)
		if err != nil || v == nil {
			return nil, err
		}
		return Collection{{Value: v}}, nil
	}
	if !isNumber(a) || !isNumber(b) {
		return nil, fmt.Errorf("fhirpath: arithmetic on %s and %s is not supported", typeNameOf(a), typeNameOf(b))
	}
	x, xInt := a.(int64)
	y, yInt := b.(int64)
	if xInt && yInt {
		switch op {
		case opAdd:
			return Collection{{Value: x + y}}, nil
		case opSub:
			return Collection{{Value: x - y}}, nil
		case opMul:
			return Collection{{Value: x * y}}, nil
		case opIntDiv:
			if y == 0 {
				return nil, nil
			}
			return Collection{{Value: x / y}}, nil
		case opMod:
			if y == 0 {
				return nil, nil
			}
			return Collection{{Value: x % y}}, nil
		}
	}
	ra, _ := toRat(a)
	rb, _ := toRat(b)
	if ra == nil || rb == nil {
		return nil, fmt.Errorf("fhirpath: bad decimal")
	}
	prec := max(decimals(a), decimals(b))
	res := new(big.Rat)
	switch op {
	case opAdd:
		res.Add(ra, rb)
	case opSub:
		res.Sub(ra, rb)
	case opMul:
		res.Mul(ra, rb)
		prec = decimals(a) + decimals(b)
	case opDiv, opIntDiv, opMod:
		if rb.Sign() == 0 {
			return nil, nil
		}
		q := new(big.Rat).Quo(ra, rb)
		switch op {
		case opDiv:
			return Collection{{Value: Decimal(trimDecimal(q.FloatString(8)))}}, nil
		case opIntDiv:
			i := new(big.Int).Quo(q.Num(), q.Denom())
			return Collection{{Value: i.Int64()}}, nil
		}
		i := new(big.Int).Quo(q.Num(), q.Denom())
		res.Sub(ra, new(big.Rat).Mul(rb, new(big.Rat).SetInt(i)))
	}
	return Collection{{Value: Decimal(res.FloatString(prec))}}, nil
}

func trimDecimal(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	return s
}
