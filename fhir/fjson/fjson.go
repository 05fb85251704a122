// Package fjson is a strict, allocation-lean JSON parser for FHIR resources.
//
// It builds an ordered tree that remembers the exact source bytes of every
// value, so that the gateway can inspect a resource (validation, search index
// extraction, FHIRPath) and rewrite a few top-level members without ever
// re-marshalling the rest: decimals such as 1.50 and string escapes survive
// byte for byte. Parse rejects everything RFC 8259 rejects, plus duplicate
// object keys (which FHIR forbids and encoding/json silently accepts), invalid
// UTF-8 and nesting deeper than MaxDepth.
package fjson

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Kind is the JSON type of a Value.
type Kind uint8

// The JSON kinds.
const (
	Null Kind = iota
	Bool
	Number
	String
	Object
	Array
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Number:
		return "number"
	case String:
		return "string"
	case Object:
		return "object"
	case Array:
		return "array"
	}
	return "unknown"
}

// MaxDepth bounds nesting so that hostile input cannot exhaust the stack.
const MaxDepth = 256

// Value is one node of a parsed document. Values alias the input buffer, which
// the caller must not modify while the tree is in use.
type Value struct {
	Kind Kind
	// Raw is the exact span of this value in the input.
	Raw []byte
	// Str is the decoded text of a String, the literal text of a Number, and
	// "true" or "false" for a Bool.
	Str string
	// Members are the members of an Object, in source order.
	Members []Member
	// Items are the elements of an Array.
	Items []*Value
}

// Member is one key/value pair of an Object.
type Member struct {
	Key   string
	Value *Value
}

// Get returns the value of the member named key, or nil.
func (v *Value) Get(key string) *Value {
	if v == nil || v.Kind != Object {
		return nil
	}
	for i := range v.Members {
		if v.Members[i].Key == key {
			return v.Members[i].Value
		}
	}
	return nil
}

// Elems returns the items of an Array, and nil for anything else (a
// missing member included), so that absent arrays need no check.
func (v *Value) Elems() []*Value {
	if v == nil || v.Kind != Array {
		return nil
	}
	return v.Items
}

// String returns the decoded text of a String value, or "".
func (v *Value) String() string {
	if v == nil || v.Kind != String {
		return ""
	}
	return v.Str
}

// Bool reports whether v is the literal true.
func (v *Value) Bool() bool { return v != nil && v.Kind == Bool && v.Str == "true" }

// Error is a syntax error with the byte offset and the JSON path (for
// example "name[0].given") where it was found. The message never contains
// the document's values, only its structure, so it is safe to log.
type Error struct {
	Offset int
	Path   string
	Msg    string
}

func (e *Error) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("invalid JSON at %s (byte %d): %s", e.Path, e.Offset, e.Msg)
	}
	return fmt.Sprintf("invalid JSON (byte %d): %s", e.Offset, e.Msg)
}

type parser struct {
	data []byte
	pos  int
	slab []Value
	used int      // values in the slabs before this one
	path []string // path segments of the value being parsed, for errors
}

// Parse parses one JSON document. The returned tree aliases data.
func Parse(data []byte) (*Value, error) {
	v, _, err := parse(data)
	return v, err
}

// parse is Parse, also returning its parser (for the tests of its slabs).
func parse(data []byte) (*Value, *parser, error) {
	p := &parser{data: data}
	// Values come from slabs: the first sized for a value per 64 bytes
	// (indented JSON, as the Synthea bundles, has one per 60; compact FHIR
	// JSON one per 24), each next one for the rest of the input at the
	// density seen so far. A slab too large costs zeroing values never
	// used, one too small another slab (nothing is copied).
	p.slab = make([]Value, 0, min(len(data)/64+8, maxSlab))
	p.skipWS()
	v, err := p.value(0)
	if err != nil {
		return nil, p, err
	}
	p.skipWS()
	if p.pos != len(p.data) {
		return nil, p, p.errf("unexpected data after the top-level value")
	}
	return v, p, nil
}

// maxSlab bounds a slab (a value is 96 bytes).
const maxSlab = 1 << 16

func (p *parser) newValue() *Value {
	if len(p.slab) == cap(p.slab) {
		p.used += len(p.slab)
		// the rest of the input at the density so far, and an eighth
		rest := (len(p.data) - p.pos) * p.used / max(p.pos, 1)
		p.slab = make([]Value, 0, min(rest+rest/8+16, maxSlab))
	}
	p.slab = p.slab[:len(p.slab)+1]
	return &p.slab[len(p.slab)-1]
}

func (p *parser) errf(format string, args ...any) *Error {
	return &Error{Offset: p.pos, Path: joinPath(p.path), Msg: fmt.Sprintf(format, args...)}
}

func joinPath(segs []string) string {
	var b strings.Builder
	for _, s := range segs {
		if strings.HasPrefix(s, "[") {
			b.WriteString(s)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func (p *parser) skipWS() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
			// indentation comes in runs: eight spaces at a time
			for p.pos+8 <= len(p.data) && binary.LittleEndian.Uint64(p.data[p.pos:]) == eightSpaces {
				p.pos += 8
			}
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (*Value, error) {
	if depth > MaxDepth {
		return nil, p.errf("nesting deeper than %d", MaxDepth)
	}
	if p.pos >= len(p.data) {
		return nil, p.errf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		start := p.pos
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		v := p.newValue()
		v.Kind, v.Str, v.Raw = String, s, p.data[start:p.pos]
		return v, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", Bool)
	case c == 'f':
		return p.literal("false", Bool)
	case c == 'n':
		return p.literal("null", Null)
	default:
		return nil, p.errf("unexpected character %q", c)
	}
}

func (p *parser) literal(word string, k Kind) (*Value, error) {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return nil, p.errf("invalid literal")
	}
	v := p.newValue()
	v.Kind, v.Raw = k, p.data[p.pos:p.pos+len(word)]
	if k == Bool {
		v.Str = word
	}
	p.pos += len(word)
	return v, nil
}

func (p *parser) number() (*Value, error) {
	start := p.pos
	d := p.data
	i := p.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		p.pos = i
		return nil, p.errf("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return nil, p.errf("invalid number: no digits after the decimal point")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return nil, p.errf("invalid number: no digits in the exponent")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	p.pos = i
	v := p.newValue()
	v.Kind, v.Raw = Number, d[start:i]
	v.Str = unsafe.String(&d[start], i-start)
	return v, nil
}

// str parses a string starting at the opening quote and returns its decoded
// text; when the string has no escapes the result aliases the input.
func (p *parser) str() (string, error) {
	d := p.data
	p.pos++ // opening quote
	start := p.pos
	i := start
	// eight bytes at a time while none of them needs a look of its own
	for i+8 <= len(d) && !mayBeSpecial(binary.LittleEndian.Uint64(d[i:])) {
		i += 8
	}
	for i < len(d) {
		c := d[i]
		if c == '"' {
			s := d[start:i]
			p.pos = i + 1
			if !isASCII(s) && !utf8.Valid(s) {
				p.pos = start
				return "", p.errf("invalid UTF-8 in string")
			}
			if len(s) == 0 {
				return "", nil
			}
			return unsafe.String(&s[0], len(s)), nil
		}
		if c == '\\' {
			return p.strEscaped(start, i)
		}
		if c < 0x20 {
			p.pos = i
			return "", p.errf("control character in string")
		}
		i++
	}
	p.pos = i
	return "", p.errf("unterminated string")
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// mayBeSpecial reports whether any of the eight bytes in w may be a
// quote, a backslash or a control character, which str must look at one
// at a time. It never misses one; it can also report a byte of 0x80 or
// above, or a byte after a special one (a borrow), never otherwise. (UTF-8
// is checked for the whole string at its end; strings are most of a FHIR
// body's bytes.)
func mayBeSpecial(w uint64) bool {
	return ((w-0x20*ones)|((w^'"'*ones)-ones)|((w^'\\'*ones)-ones))&highs != 0
}

func isASCII(s []byte) bool {
	for len(s) >= 8 {
		if binary.LittleEndian.Uint64(s)&highs != 0 {
			return false
		}
		s = s[8:]
	}
	for _, c := range s {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func (p *parser) strEscaped(start, i int) (string, error) {
	d := p.data
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, d[start:i]...)
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			if !utf8.Valid(buf) {
				p.pos = start
				return "", p.errf("invalid UTF-8 in string")
			}
			return string(buf), nil
		case c < 0x20:
			p.pos = i
			return "", p.errf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		// escape
		i++
		if i >= len(d) {
			break
		}
		switch d[i] {
		case '"', '\\', '/':
			buf = append(buf, d[i])
			i++
		case 'b':
			buf = append(buf, '\b')
			i++
		case 'f':
			buf = append(buf, '\f')
			i++
		case 'n':
			buf = append(buf, '\n')
			i++
		case 'r':
			buf = append(buf, '\r')
			i++
		case 't':
			buf = append(buf, '\t')
			i++
		case 'u':
			r, n, ok := hex4(d, i+1)
			if !ok {
				p.pos = i
				return "", p.errf("invalid \\u escape")
			}
			i = n
			if utf16.IsSurrogate(r) {
				r2, n2, ok2 := rune(0), 0, false
				if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
					r2, n2, ok2 = hex4(d, i+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r, i = dec, n2
				} else {
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			p.pos = i
			return "", p.errf("invalid escape character %q", d[i])
		}
	}
	p.pos = i
	return "", p.errf("unterminated string")
}

func hex4(d []byte, i int) (rune, int, bool) {
	if i+4 > len(d) {
		return 0, i, false
	}
	n, err := strconv.ParseUint(string(d[i:i+4]), 16, 32)
	if err != nil {
		return 0, i, false
	}
	return rune(n), i + 4, true
}

func (p *parser) object(depth int) (*Value, error) {
	start := p.pos
	p.pos++ // {
	v := p.newValue()
	v.Kind = Object
	p.skipWS()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		v.Raw = p.data[start:p.pos]
		return v, nil
	}
	members := make([]Member, 0, 8)
	var seen map[string]struct{}
	for {
		p.skipWS()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errf("expected a member name")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		// duplicate keys: linear for small objects, a set for large ones
		if len(members) < 16 {
			for i := range members {
				if members[i].Key == key {
					p.path = append(p.path, key)
					e := p.errf("duplicate key")
					p.path = p.path[:len(p.path)-1]
					return nil, e
				}
			}
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 32)
				for i := range members {
					seen[members[i].Key] = struct{}{}
				}
			}
			if _, dup := seen[key]; dup {
				p.path = append(p.path, key)
				e := p.errf("duplicate key")
				p.path = p.path[:len(p.path)-1]
				return nil, e
			}
			seen[key] = struct{}{}
		}
		p.skipWS()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errf("expected ':' after a member name")
		}
		p.pos++
		p.skipWS()
		p.path = append(p.path, key)
		mv, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		members = append(members, Member{Key: key, Value: mv})
		p.skipWS()
		if p.pos >= len(p.data) {
			return nil, p.errf("unexpected end of input in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			continue
		case '}':
			p.pos++
			v.Members = members
			v.Raw = p.data[start:p.pos]
			return v, nil
		default:
			return nil, p.errf("expected ',' or '}' in an object")
		}
	}
}

func (p *parser) array(depth int) (*Value, error) {
	start := p.pos
	p.pos++ // [
	v := p.newValue()
	v.Kind = Array
	p.skipWS()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		v.Raw = p.data[start:p.pos]
		return v, nil
	}
	items := make([]*Value, 0, 4)
	for {
		p.skipWS()
		p.path = append(p.path, "["+strconv.Itoa(len(items))+"]")
		item, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		items = append(items, item)
		p.skipWS()
		if p.pos >= len(p.data) {
			return nil, p.errf("unexpected end of input in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			v.Items = items
			v.Raw = p.data[start:p.pos]
			return v, nil
		default:
			return nil, p.errf("expected ',' or ']' in an array")
		}
	}
}

// AppendCompact appends v to dst without insignificant whitespace. Strings
// and numbers are copied from their source bytes, so escapes and decimal
// precision are preserved exactly.
func AppendCompact(dst []byte, v *Value) []byte {
	switch v.Kind {
	case Object:
		dst = append(dst, '{')
		for i, m := range v.Members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, m.Key)
			dst = append(dst, ':')
			dst = AppendCompact(dst, m.Value)
		}
		return append(dst, '}')
	case Array:
		dst = append(dst, '[')
		for i, it := range v.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendCompact(dst, it)
		}
		return append(dst, ']')
	default:
		return append(dst, v.Raw...)
	}
}

// AppendString appends s as a JSON string literal.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Equal reports whether a and b are the same JSON value: objects compare as
// unordered sets of members, numbers by their literal text.
func Equal(a, b *Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case Object:
		if len(a.Members) != len(b.Members) {
			return false
		}
		for _, m := range a.Members {
			o := b.Get(m.Key)
			if o == nil || !Equal(m.Value, o) {
				return false
			}
		}
		return true
	case Array:
		if len(a.Items) != len(b.Items) {
			return false
		}
		for i := range a.Items {
			if !Equal(a.Items[i], b.Items[i]) {
				return false
			}
		}
		return true
	case Null:
		return true
	default:
		return a.Str == b.Str
	}
}
