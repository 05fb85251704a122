package fjson

import (
	"errors"
	"strings"
	"testing"
)

// countValues counts a parsed tree's values, the reference CheckLimits
// must agree with.
func countValues(v *Value) (n, depth int) {
	n = 1
	for _, m := range v.Members {
		c, d := countValues(m.Value)
		n, depth = n+c, max(depth, d)
	}
	for _, it := range v.Items {
		c, d := countValues(it)
		n, depth = n+c, max(depth, d)
	}
	if v.Kind == Object || v.Kind == Array {
		depth++
	}
	return n, depth
}

func TestCheckLimitsAgreesWithParse(t *testing.T) {
	docs := []string{
		`{}`, `[]`, `1`, `"a"`, `true`,
		`{"resourceType":"Patient","active":true,"name":[{"family":"O\"Brien","given":["a","b"]}],"x":-1.5e+3,"y":null}`,
		`{"a":{"b":{"c":[[[1,2],[3]],{"d":"\\"}]}}, "e" : "f" , "g":false}`,
		`[ "k" : ]`, // malformed: counted, not rejected
		// indentation in runs (skipped eight bytes at a time), keys
		// before runs of whitespace, escaped quotes after runs of
		// backslashes
		"{\n        \"a\"         \t\r\n   :  \"x\\\\\\\"y\\\\\",\n                \"b\":[ 1 ,           2, \"\\\\\\\\\"]    }",
		`["\"",                         "\\","\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"]`,
	}
	for _, d := range docs {
		v, err := Parse([]byte(d))
		if err != nil {
			continue
		}
		n, depth := countValues(v)
		if got, err := CheckLimits([]byte(d), n, depth); err != nil || got != n {
			t.Errorf("%s: %v, %d values at its own size (%d values, depth %d)", d, err, got, n, depth)
		}
		var le *LimitError
		if _, err := CheckLimits([]byte(d), n-1, 0); n > 1 && (!errors.As(err, &le) || le.What != "values") {
			t.Errorf("%s: %d values not refused at %d: %v", d, n, n-1, err)
		}
		if depth > 1 {
			if _, err := CheckLimits([]byte(d), 0, depth-1); !errors.As(err, &le) || le.What != "depth" {
				t.Errorf("%s: depth %d not refused at %d: %v", d, depth, depth-1, err)
			}
		}
	}
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	if _, err := CheckLimits([]byte(deep), 0, 100); err == nil {
		t.Fatal("depth 1000 passed a bound of 100")
	}
}

func FuzzCheckLimits(f *testing.F) {
	f.Add([]byte(`{"a":[1,"b",{"c":null}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err != nil {
			_, _ = CheckLimits(data, 10, 10)
			return
		}
		n, depth := countValues(v)
		if got, err := CheckLimits(data, n, depth); err != nil || got != n {
			t.Fatalf("%q: %v, %d values (values %d, depth %d)", data, err, got, n, depth)
		}
	})
}
