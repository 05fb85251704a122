package ccda

import (
	"bytes"
	"encoding/json"
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
