package samplegen

import (
	"errors"
	"strings"
)

// step is one element of a simple FHIRPath path: a member name with the
// type it is cast to and the filters applied to it.
type step struct {
	name string
	// as is the type of .as(X), .ofType(X) or "as X" (choice elements).
	as string
	// target is X of .where(resolve() is X).
	target string
	// eq holds the member = 'literal' tests of .where(member = 'literal').
	eq map[string]string
}

var errUnsupported = errors.New("expression form not supported")

// splitTop splits s at sep outside parentheses and quotes.
func splitTop(s string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// stripParens removes parentheses that enclose the whole expression.
func stripParens(s string) string {
	for {
		s = strings.TrimSpace(s)
		if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
			return s
		}
		depth := 0
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 && i != len(s)-1 {
					return s
				}
			}
		}
		s = s[1 : len(s)-1]
	}
}

// branches returns the union branches of an expression.
func branches(expr string) []string {
	var out []string
	for _, b := range splitTop(stripParens(expr), '|') {
		if b = stripParens(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// parsePath parses a path like "Observation.value.as(Quantity)",
// "(Condition.onset as Age)" or
// "Observation.subject.where(resolve() is Patient)" into its steps. The
// first step is the root name as written (a type name, or the first member
// of a relative path).
func parsePath(expr string) ([]step, error) {
	expr = stripParens(expr)
	// "X as T" at the top level is X.as(T)
	if i := strings.LastIndex(expr, " as "); i > 0 && !strings.ContainsAny(expr[i:], "()") {
		expr = strings.TrimSpace(expr[:i]) + ".as(" + strings.TrimSpace(expr[i+4:]) + ")"
	}
	var steps []step
	for _, seg := range splitTop(expr, '.') {
		seg = strings.TrimSpace(seg)
		switch {
		case seg == "":
			return nil, errUnsupported
		case strings.HasPrefix(seg, "as(") || strings.HasPrefix(seg, "ofType("):
			if len(steps) == 0 {
				return nil, errUnsupported
			}
			arg, ok := callArg(seg)
			if !ok || !isName(arg) {
				return nil, errUnsupported
			}
			steps[len(steps)-1].as = arg
		case strings.HasPrefix(seg, "where("):
			if len(steps) == 0 {
				return nil, errUnsupported
			}
			arg, ok := callArg(seg)
			if !ok {
				return nil, errUnsupported
			}
			if err := parseWhere(&steps[len(steps)-1], arg); err != nil {
				return nil, err
			}
		case isName(seg):
			steps = append(steps, step{name: seg})
		case strings.HasSuffix(seg, "[0]") && isName(strings.TrimSuffix(seg, "[0]")):
			// the suite writes one item per array, so [0] is that item
			steps = append(steps, step{name: strings.TrimSuffix(seg, "[0]")})
		default:
			return nil, errUnsupported
		}
	}
	if len(steps) == 0 {
		return nil, errUnsupported
	}
	return steps, nil
}

func parseWhere(s *step, arg string) error {
	arg = strings.TrimSpace(arg)
	if t, ok := strings.CutPrefix(arg, "resolve() is "); ok && isName(strings.TrimSpace(t)) {
		s.target = strings.TrimSpace(t)
		return nil
	}
	k, v, ok := strings.Cut(arg, "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || !isName(k) || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' || strings.ContainsAny(k, "!<>") {
		return errUnsupported
	}
	if s.eq == nil {
		s.eq = map[string]string{}
	}
	s.eq[k] = v[1 : len(v)-1]
	return nil
}

// callArg returns the argument of "name(arg)".
func callArg(seg string) (string, bool) {
	i := strings.IndexByte(seg, '(')
	if i < 0 || seg[len(seg)-1] != ')' {
		return "", false
	}
	return seg[i+1 : len(seg)-1], true
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0 || c == '_') {
			return false
		}
	}
	return true
}
