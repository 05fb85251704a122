package fjson

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Ordered is an object whose members Build encodes in their own order.
type Ordered interface {
	Len() int
	Member(i int) (key string, value any)
}

// Build encodes a document made of Go values — map[string]any, Ordered,
// []any and other slices, []string, string, json.Number, int, int64,
// bool, nil — into compact
// JSON and returns its parsed tree (Raw spans into the encoding), without
// reflection and without parsing the text again: what converters that
// author resources need. Object keys are sorted, except that
// "resourceType" and then "id" come first. Invalid UTF-8 in strings is
// replaced by U+FFFD, as encoding/json does.
func Build(v any) (*Value, error) {
	// one walk to size everything, so that the tree is three allocations
	var n sizes
	n.count(v, 0)
	b := &builder{buf: make([]byte, 0, n.bytes), spans: make([]span, 0, n.values),
		vals: make([]Value, 0, n.values), members: make([]Member, 0, n.members), items: make([]*Value, 0, n.items)}
	root, err := b.value(v, 0)
	if err != nil {
		return nil, err
	}
	for _, s := range b.spans {
		s.v.Raw = b.buf[s.start:s.end:s.end]
	}
	return root, nil
}

// sizes estimates what a document needs.
type sizes struct{ values, members, items, bytes int }

func (n *sizes) count(x any, depth int) {
	if depth > MaxDepth {
		return
	}
	n.values++
	switch t := x.(type) {
	case string:
		n.bytes += len(t) + 2
	case json.Number:
		n.bytes += len(t)
	case []string:
		n.items += len(t)
		n.values += len(t)
		n.bytes += 2 + len(t)
		for _, s := range t {
			n.bytes += len(s) + 2
		}
	case []any:
		n.items += len(t)
		n.bytes += 2 + len(t)
		for _, e := range t {
			n.count(e, depth+1)
		}
	case map[string]any:
		n.members += len(t)
		n.bytes += 2
		for k, e := range t {
			n.bytes += len(k) + 4
			n.count(e, depth+1)
		}
	case Ordered:
		l := t.Len()
		n.members += l
		n.bytes += 2
		for i := 0; i < l; i++ {
			k, e := t.Member(i)
			n.bytes += len(k) + 4
			n.count(e, depth+1)
		}
	default:
		if rv := reflect.ValueOf(x); rv.Kind() == reflect.Slice {
			n.items += rv.Len()
			n.bytes += 2 + rv.Len()
			for i := 0; i < rv.Len(); i++ {
				n.count(rv.Index(i).Interface(), depth+1)
			}
			return
		}
		n.bytes += 6
	}
}

type builder struct {
	buf   []byte
	spans []span
	keys  []string // a stack of the keys of the objects being built
	// values, members and items are allocated in chunks
	vals    []Value
	members []Member
	items   []*Value
}

func (b *builder) newMembers(n int) []Member {
	if cap(b.members)-len(b.members) < n {
		b.members = make([]Member, 0, max(min(2*cap(b.members), 256), 16, n))
	}
	m := b.members[len(b.members) : len(b.members) : len(b.members)+n]
	b.members = b.members[:len(b.members)+n]
	return m
}

func (b *builder) newItems(n int) []*Value {
	if cap(b.items)-len(b.items) < n {
		b.items = make([]*Value, 0, max(min(2*cap(b.items), 128), 8, n))
	}
	m := b.items[len(b.items) : len(b.items) : len(b.items)+n]
	b.items = b.items[:len(b.items)+n]
	return m
}

func (b *builder) newValue() *Value {
	if len(b.vals) == cap(b.vals) {
		b.vals = make([]Value, 0, max(min(2*cap(b.vals), 256), 16))
	}
	b.vals = b.vals[:len(b.vals)+1]
	return &b.vals[len(b.vals)-1]
}

type span struct {
	v          *Value
	start, end int
}

func (b *builder) value(x any, depth int) (*Value, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("fjson: build: nesting deeper than %d", MaxDepth)
	}
	start := len(b.buf)
	v := b.newValue()
	switch t := x.(type) {
	case nil:
		v.Kind = Null
		b.buf = append(b.buf, "null"...)
	case bool:
		v.Kind, v.Str = Bool, strconv.FormatBool(t)
		b.buf = append(b.buf, v.Str...)
	case string:
		if !isASCIIString(t) && !utf8.ValidString(t) {
			t = string([]rune(t)) // invalid bytes become U+FFFD
		}
		v.Kind, v.Str = String, t
		b.buf = AppendString(b.buf, t)
	case json.Number:
		if _, err := strconv.ParseFloat(string(t), 64); err != nil || t == "" {
			return nil, fmt.Errorf("fjson: build: %q is not a number", string(t))
		}
		v.Kind, v.Str = Number, string(t)
		b.buf = append(b.buf, t...)
	case int:
		v.Kind, v.Str = Number, strconv.Itoa(t)
		b.buf = append(b.buf, v.Str...)
	case int64:
		v.Kind, v.Str = Number, strconv.FormatInt(t, 10)
		b.buf = append(b.buf, v.Str...)
	case []string:
		v.Kind = Array
		v.Items = b.newItems(len(t))
		b.buf = append(b.buf, '[')
		for i, s := range t {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			it, err := b.value(s, depth+1)
			if err != nil {
				return nil, err
			}
			v.Items = append(v.Items, it)
		}
		b.buf = append(b.buf, ']')
	case []any:
		v.Kind = Array
		v.Items = b.newItems(len(t))
		b.buf = append(b.buf, '[')
		for i, e := range t {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			it, err := b.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			v.Items = append(v.Items, it)
		}
		b.buf = append(b.buf, ']')
	case map[string]any:
		v.Kind = Object
		mark := len(b.keys)
		for k := range t {
			b.keys = append(b.keys, k)
		}
		keys := b.keys[mark:len(b.keys):len(b.keys)]
		slices.SortFunc(keys, keyRank)
		defer func() { b.keys = b.keys[:mark] }()
		v.Members = b.newMembers(len(keys))
		b.buf = append(b.buf, '{')
		for i, k := range keys {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			b.buf = AppendString(b.buf, k)
			b.buf = append(b.buf, ':')
			mv, err := b.value(t[k], depth+1)
			if err != nil {
				return nil, err
			}
			v.Members = append(v.Members, Member{Key: k, Value: mv})
		}
		b.buf = append(b.buf, '}')
	case Ordered:
		v.Kind = Object
		l := t.Len()
		v.Members = b.newMembers(l)
		b.buf = append(b.buf, '{')
		for i := 0; i < l; i++ {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			k, e := t.Member(i)
			b.buf = AppendString(b.buf, k)
			b.buf = append(b.buf, ':')
			mv, err := b.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			v.Members = append(v.Members, Member{Key: k, Value: mv})
		}
		b.buf = append(b.buf, '}')
	default:
		rv := reflect.ValueOf(x)
		if rv.Kind() != reflect.Slice {
			return nil, fmt.Errorf("fjson: build: unsupported %T", x)
		}
		v.Kind = Array
		v.Items = b.newItems(rv.Len())
		b.buf = append(b.buf, '[')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			it, err := b.value(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			v.Items = append(v.Items, it)
		}
		b.buf = append(b.buf, ']')
	}
	b.spans = append(b.spans, span{v, start, len(b.buf)})
	return v, nil
}

// keyRank orders object keys: resourceType, id, then the rest sorted.
func keyRank(a, b string) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func rank(k string) int {
	switch k {
	case "resourceType":
		return 0
	case "id":
		return 1
	}
	return 2
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
