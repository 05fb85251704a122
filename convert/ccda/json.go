package ccda

import (
	"bytes"
	"encoding/json"
	"sort"
)

// obj is a JSON object that keeps its members in insertion order, so that
// authored resources read like the examples in the specification
// (resourceType first). Decimals are json.Number and so keep their digits.
type obj []member

type member struct {
	key string
	val any
}

// add appends a member unless the value is empty (nil, "", an empty slice or
// object): FHIR forbids empty elements, so callers can add unconditionally.
func (o obj) add(key string, val any) obj {
	if isEmpty(val) {
		return o
	}
	return append(o, member{key, val})
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case json.Number:
		return x == ""
	case obj:
		return len(x) == 0
	case []obj:
		return len(x) == 0
	case []any:
		return len(x) == 0
	case []string:
		return len(x) == 0
	}
	return false
}

// get returns a member's value.
func (o obj) get(key string) any {
	for _, m := range o {
		if m.key == key {
			return m.val
		}
	}
	return nil
}

// MarshalJSON writes the members in order.
func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// set replaces a member's value, or appends it (unless empty).
func (o obj) set(key string, val any) obj {
	for i, m := range o {
		if m.key == key {
			if isEmpty(val) {
				return append(o[:i:i], o[i+1:]...)
			}
			out := append(obj(nil), o...)
			out[i].val = val
			return out
		}
	}
	return o.add(key, val)
}

// text is a CodeableConcept's text, or its first coding's display or code.
func (o obj) text() string {
	if o == nil {
		return ""
	}
	if t, ok := o.get("text").(string); ok && t != "" {
		return t
	}
	for _, cd := range codings(o) {
		if d, ok := cd.get("display").(string); ok && d != "" {
			return d
		}
		if c, ok := cd.get("code").(string); ok && c != "" {
			return c
		}
	}
	return ""
}

// fromMap turns a JSON-like map (keys sorted) into an obj.
func fromMap(m map[string]any) obj {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(obj, 0, len(keys))
	for _, k := range keys {
		out = append(out, member{k, fromAny(m[k])})
	}
	return out
}

func fromAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return fromMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromAny(e)
		}
		return out
	}
	return v
}

// Len and Member make an obj a fjson.Ordered: Build encodes it in order.
func (o obj) Len() int { return len(o) }

// Member returns the i-th member.
func (o obj) Member(i int) (string, any) { return o[i].key, o[i].val }
