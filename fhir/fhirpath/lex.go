package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF     tokKind = iota
	tIdent           // identifier or keyword; delimited identifiers too (quoted = true)
	tString          // 'string' literal, decoded
	tNumber          // 12 or 1.5
	tDate            // @2019-01-01, @2019-01-01T10:00Z, @T10:00 (text without the @)
	tEnv             // %name (text without the %)
	tSpecial         // $this, $index, $total (text with the $)
	tOp              // punctuation and operators
)

type token struct {
	kind   tokKind
	text   string
	quoted bool // a `delimited` identifier, which is never a keyword
	pos    int
}

// SyntaxError is a FHIRPath parse error at a byte offset of the expression.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("fhirpath: syntax error at offset %d: %s", e.Pos, e.Msg)
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, &SyntaxError{i, "unterminated comment"}
			}
			i += end + 4
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tIdent, text: src[i:j], pos: i})
			i = j
		case c == '`':
			s, n, err := unquote(src, i, '`')
			if err != nil {
				return nil, err
			}
			if s == "" {
				return nil, &SyntaxError{i, "empty delimited identifier"}
			}
			toks = append(toks, token{kind: tIdent, text: s, quoted: true, pos: i})
			i += n
		case c == '\'':
			s, n, err := unquote(src, i, '\'')
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tString, text: s, pos: i})
			i += n
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{kind: tNumber, text: src[i:j], pos: i})
			i = j
		case c == '@':
			j := i + 1
			hasT := false
			for j < len(src) && isDateChar(src[j]) {
				// A dot belongs to the literal only as the fraction of
				// seconds: @2019-01-01.toString() calls a function.
				if src[j] == '.' && (!hasT || j+1 >= len(src) || src[j+1] < '0' || src[j+1] > '9') {
					break
				}
				hasT = hasT || src[j] == 'T'
				j++
			}
			if j == i+1 {
				return nil, &SyntaxError{i, "empty date/time literal"}
			}
			toks = append(toks, token{kind: tDate, text: src[i+1 : j], pos: i})
			i = j
		case c == '%':
			switch {
			case i+1 < len(src) && (src[i+1] == '`' || src[i+1] == '\''):
				s, n, err := unquote(src, i+1, src[i+1])
				if err != nil {
					return nil, err
				}
				toks = append(toks, token{kind: tEnv, text: s, pos: i})
				i += 1 + n
			case i+1 < len(src) && isIdentStart(src[i+1]):
				j := i + 2
				for j < len(src) && (isIdentPart(src[j]) || src[j] == '-') {
					j++
				}
				toks = append(toks, token{kind: tEnv, text: src[i+1 : j], pos: i})
				i = j
			default:
				return nil, &SyntaxError{i, "bad environment variable"}
			}
		case c == '$':
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tSpecial, text: src[i:j], pos: i})
			i = j
		default:
			op := ""
			if i+1 < len(src) {
				switch src[i : i+2] {
				case "<=", ">=", "!=", "!~":
					op = src[i : i+2]
				}
			}
			if op == "" {
				switch c {
				case '.', '[', ']', '(', ')', '{', '}', ',', '|', '+', '-', '*', '/', '&', '=', '~', '<', '>':
					op = src[i : i+1]
				default:
					r, _ := utf8.DecodeRuneInString(src[i:])
					return nil, &SyntaxError{i, fmt.Sprintf("unexpected character %q", r)}
				}
			}
			toks = append(toks, token{kind: tOp, text: op, pos: i})
			i += len(op)
		}
	}
	toks = append(toks, token{kind: tEOF, pos: len(src)})
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDateChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == ':' || c == 'T' || c == 'Z' || c == '.' || c == '+'
}

// unquote decodes a quoted literal starting at src[start] (the quote) and
// returns its text and the number of bytes consumed.
func unquote(src string, start int, q byte) (string, int, error) {
	var b strings.Builder
	i := start + 1
	for i < len(src) {
		c := src[i]
		switch {
		case c == q:
			return b.String(), i + 1 - start, nil
		case c == '\\':
			if i+1 >= len(src) {
				return "", 0, &SyntaxError{i, "unterminated escape"}
			}
			e := src[i+1]
			i += 2
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+4 > len(src) {
					return "", 0, &SyntaxError{i, "bad \\u escape"}
				}
				n, err := strconv.ParseUint(src[i:i+4], 16, 16)
				if err != nil {
					return "", 0, &SyntaxError{i, "bad \\u escape"}
				}
				b.WriteRune(rune(n))
				i += 4
			default:
				// Regular expressions in constraints write \. and \s inside
				// string literals; keep the backslash so they reach the regexp.
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, &SyntaxError{start, "unterminated literal"}
}
