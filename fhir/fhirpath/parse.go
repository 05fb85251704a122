package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
)

// maxNesting bounds expression nesting so that hostile input cannot exhaust
// the stack of the recursive-descent parser.
const maxNesting = 200

type parser struct {
	toks     []token
	pos      int
	depth    int
	hasConst bool // a constant path was built: evaluations need a memo
}

func parse(src string) (node, bool, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, false, err
	}
	p := &parser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, false, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, false, p.errf(t, "unexpected %q", t.text)
	}
	return n, p.hasConst, nil
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *parser) errf(t token, format string, args ...any) error {
	return &SyntaxError{t.pos, fmt.Sprintf(format, args...)}
}

func (p *parser) expect(op string) error {
	t := p.next()
	if t.kind != tOp || t.text != op {
		if t.kind == tEOF {
			return p.errf(t, "expected %q, found end of expression", op)
		}
		return p.errf(t, "expected %q, found %q", op, t.text)
	}
	return nil
}

// Binary operator precedence, loosest first, as in the FHIRPath grammar.
var precedence = []map[string]binOp{
	{"implies": opImplies},
	{"or": opOr, "xor": opXor},
	{"and": opAnd},
	{"in": opIn, "contains": opContains},
	{"=": opEq, "~": opEquiv, "!=": opNe, "!~": opNotEquiv},
	{"<": opLt, ">": opGt, "<=": opLe, ">=": opGe},
	{"|": opUnion},
	{"is": opIs, "as": opAs}, // type operators: handled specially
	{"+": opAdd, "-": opSub, "&": opConcat},
	{"*": opMul, "/": opDiv, "div": opIntDiv, "mod": opMod},
}

func (p *parser) binOpAt(level int) (binOp, bool) {
	t := p.peek()
	if t.kind != tOp && !(t.kind == tIdent && !t.quoted) {
		return 0, false
	}
	op, ok := precedence[level][t.text]
	return op, ok
}

func (p *parser) expr(level int) (node, error) {
	if level == len(precedence) {
		return p.unary()
	}
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxNesting {
		return nil, p.errf(p.peek(), "expression nested too deeply")
	}
	left, err := p.expr(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.binOpAt(level)
		if !ok {
			return left, nil
		}
		p.next()
		if op == opIs || op == opAs {
			ts, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			left = &typeOpNode{op: op, x: left, ts: ts}
			continue
		}
		right, err := p.expr(level + 1)
		if err != nil {
			return nil, err
		}
		left = newBinary(op, left, right)
	}
}

func (p *parser) unary() (node, error) {
	t := p.peek()
	if t.kind == tOp && (t.text == "-" || t.text == "+") {
		p.next()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxNesting {
			return nil, p.errf(t, "expression nested too deeply")
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return x, nil
		}
		// Fold negative number literals so that -1 is a literal.
		if lit, ok := x.(*literalNode); ok && len(lit.val) == 1 {
			switch v := lit.val[0].Value.(type) {
			case int64:
				return &literalNode{val: Collection{{Value: -v}}}, nil
			case Decimal:
				return &literalNode{val: Collection{{Value: Decimal(negateDecimal(string(v)))}}}, nil
			}
		}
		return &negNode{x: x}, nil
	}
	return p.invocationChain()
}

func negateDecimal(s string) string {
	if strings.HasPrefix(s, "-") {
		return s[1:]
	}
	if strings.Trim(s, "0.") == "" {
		return s // zero has no sign
	}
	return "-" + s
}

// invocationChain parses a term followed by .member, .function(...) and [index].
func (p *parser) invocationChain() (node, error) {
	n, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp {
			return n, nil
		}
		switch t.text {
		case ".":
			p.next()
			step, err := p.invocation()
			if err != nil {
				return nil, err
			}
			pn := &pathNode{left: n, right: step}
			pn.constant = isConstantPath(pn) && !isVolatile(step)
			p.hasConst = p.hasConst || pn.constant
			n = pn
		case "[":
			p.next()
			idx, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			n = &indexNode{x: n, index: idx}
		default:
			return n, nil
		}
	}
}

// invocation parses what may follow a dot: a member name or a function call.
func (p *parser) invocation() (node, error) {
	t := p.next()
	if t.kind != tIdent {
		return nil, p.errf(t, "expected a name after '.'")
	}
	if nt := p.peek(); nt.kind == tOp && nt.text == "(" && !t.quoted {
		return p.call(t)
	}
	return &memberNode{name: t.text}, nil
}

func (p *parser) term() (node, error) {
	t := p.next()
	switch t.kind {
	case tEOF:
		return nil, p.errf(t, "unexpected end of expression")
	case tString:
		return &literalNode{val: Collection{{Value: t.text}}}, nil
	case tNumber:
		return p.number(t)
	case tDate:
		v, err := parseDateLiteral(t.text)
		if err != nil {
			return nil, p.errf(t, "%v", err)
		}
		return &literalNode{val: Collection{{Value: v}}}, nil
	case tEnv:
		if !knownEnv(t.text) {
			return nil, p.errf(t, "unknown environment variable %%%s", t.text)
		}
		return &envNode{name: t.text}, nil
	case tSpecial:
		switch t.text {
		case "$this":
			return &thisNode{}, nil
		case "$index":
			return &indexVarNode{}, nil
		case "$total":
			return &totalNode{}, nil
		}
		return nil, p.errf(t, "unknown special variable %s", t.text)
	case tIdent:
		if !t.quoted {
			switch t.text {
			case "true":
				return &literalNode{val: Collection{{Value: true}}}, nil
			case "false":
				return &literalNode{val: Collection{{Value: false}}}, nil
			}
			if nt := p.peek(); nt.kind == tOp && nt.text == "(" {
				return p.call(t)
			}
		}
		return &memberNode{name: t.text}, nil
	case tOp:
		switch t.text {
		case "(":
			n, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return n, nil
		case "{":
			if err := p.expect("}"); err != nil {
				return nil, err
			}
			return &literalNode{}, nil
		}
	}
	return nil, p.errf(t, "unexpected %q", t.text)
}

var calendarUnits = map[string]string{
	"year": "year", "years": "year", "month": "month", "months": "month",
	"week": "week", "weeks": "week", "day": "day", "days": "day",
	"hour": "hour", "hours": "hour", "minute": "minute", "minutes": "minute",
	"second": "second", "seconds": "second", "millisecond": "millisecond", "milliseconds": "millisecond",
}

func (p *parser) number(t token) (node, error) {
	var v any
	if strings.Contains(t.text, ".") {
		v = Decimal(t.text)
	} else {
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			// Too large for an Integer: keep it as a Decimal.
			v = Decimal(t.text)
		} else {
			v = n
		}
	}
	// A number followed by a unit is a Quantity literal.
	nt := p.peek()
	if nt.kind == tString {
		p.next()
		return &literalNode{val: Collection{{Value: Quantity{Value: toDecimal(v), Unit: nt.text}}}}, nil
	}
	if nt.kind == tIdent && !nt.quoted {
		if u, ok := calendarUnits[nt.text]; ok {
			p.next()
			return &literalNode{val: Collection{{Value: Quantity{Value: toDecimal(v), Unit: u}}}}, nil
		}
	}
	return &literalNode{val: Collection{{Value: v}}}, nil
}

func toDecimal(v any) Decimal {
	switch x := v.(type) {
	case int64:
		return Decimal(strconv.FormatInt(x, 10))
	case Decimal:
		return x
	}
	return ""
}

// typeSpec parses a (possibly qualified) type name.
func (p *parser) typeSpec() (typeSpec, error) {
	t := p.next()
	if t.kind != tIdent {
		return typeSpec{}, p.errf(t, "expected a type name")
	}
	ts := typeSpec{name: t.text}
	if nt := p.peek(); (ts.name == "FHIR" || ts.name == "System") && nt.kind == tOp && nt.text == "." && p.toks[p.pos+1].kind == tIdent {
		p.next()
		ts.ns = ts.name
		ts.name = p.next().text
	}
	if !knownType(ts) {
		return ts, p.errf(t, "unknown type %s", ts)
	}
	return ts, nil
}

var systemTypeNames = map[string]bool{"Boolean": true, "String": true, "Integer": true, "Decimal": true, "Date": true, "DateTime": true, "Time": true, "Quantity": true, "Any": true}

// knownType reports whether a type specifier names a System or FHIR type.
func knownType(ts typeSpec) bool {
	switch ts.ns {
	case "System":
		return true // System.Patient is a type nothing is
	case "FHIR":
		return IsType(ts.name)
	}
	return systemTypeNames[ts.name] || IsType(ts.name)
}

func (p *parser) call(name token) (node, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	spec, ok := functions[name.text]
	if !ok {
		return nil, fmt.Errorf("%w: function %s()", ErrUnsupported, name.text)
	}
	if spec.unsupported {
		return nil, fmt.Errorf("%w: function %s()", ErrUnsupported, name.text)
	}
	fn := &funcNode{name: name.text, spec: spec}
	if spec.typeArg {
		ts, err := p.typeSpec()
		if err != nil {
			return nil, err
		}
		fn.ts = ts
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return fn, nil
	}
	if t := p.peek(); t.kind == tOp && t.text == ")" {
		p.next()
	} else {
		for {
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			fn.args = append(fn.args, a)
			t := p.next()
			if t.kind == tOp && t.text == ")" {
				break
			}
			if t.kind != tOp || t.text != "," {
				return nil, p.errf(t, "expected ',' or ')' in arguments of %s()", name.text)
			}
		}
	}
	if len(fn.args) < spec.minArgs || len(fn.args) > spec.maxArgs {
		return nil, p.errf(name, "%s() takes %d to %d arguments, got %d", name.text, spec.minArgs, spec.maxArgs, len(fn.args))
	}
	// Regular expressions given as literals are compiled once, here.
	if spec.regexArg && len(fn.args) > 0 {
		if lit, ok := fn.args[0].(*literalNode); ok && len(lit.val) == 1 {
			if s, ok := lit.val[0].Value.(string); ok {
				re, err := cachedRegexp(s)
				if err != nil {
					return nil, p.errf(name, "bad regular expression: %v", err)
				}
				fn.re = re
			}
		}
	}
	return fn, nil
}

// isVolatile reports functions whose value changes between calls.
func isVolatile(n node) bool {
	f, ok := n.(*funcNode)
	return ok && (f.name == "now" || f.name == "today" || f.name == "timeOfDay")
}
