package jsonpatch

import (
	"errors"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

func TestApply(t *testing.T) {
	doc := `{"a":1.50,"b":[1,2,3],"c":{"d":"x"}}`
	cases := []struct {
		name, patch, want string
		err               error
	}{
		{"add member", `[{"op":"add","path":"/e","value":2.10}]`, `{"a":1.50,"b":[1,2,3],"c":{"d":"x"},"e":2.10}`, nil},
		{"add array middle", `[{"op":"add","path":"/b/1","value":9}]`, `{"a":1.50,"b":[1,9,2,3],"c":{"d":"x"}}`, nil},
		{"add array end", `[{"op":"add","path":"/b/-","value":9}]`, `{"a":1.50,"b":[1,2,3,9],"c":{"d":"x"}}`, nil},
		{"remove", `[{"op":"remove","path":"/c/d"}]`, `{"a":1.50,"b":[1,2,3],"c":{}}`, nil},
		{"replace", `[{"op":"replace","path":"/b/0","value":{"z":true}}]`, `{"a":1.50,"b":[{"z":true},2,3],"c":{"d":"x"}}`, nil},
		{"move", `[{"op":"move","from":"/c/d","path":"/f"}]`, `{"a":1.50,"b":[1,2,3],"c":{},"f":"x"}`, nil},
		{"copy", `[{"op":"copy","from":"/b","path":"/c/b"}]`, `{"a":1.50,"b":[1,2,3],"c":{"d":"x","b":[1,2,3]}}`, nil},
		{"test ok", `[{"op":"test","path":"/a","value":1.50}]`, doc, nil},
		{"test fails", `[{"op":"test","path":"/a","value":1.5}]`, "", ErrConflict},
		{"escaped pointer", `[{"op":"add","path":"/x~1y~0","value":1}]`, `{"a":1.50,"b":[1,2,3],"c":{"d":"x"},"x/y~":1}`, nil},
		{"missing parent", `[{"op":"add","path":"/q/r","value":1}]`, "", ErrConflict},
		{"remove missing", `[{"op":"remove","path":"/zz"}]`, "", ErrConflict},
		{"index out of range", `[{"op":"replace","path":"/b/7","value":1}]`, "", ErrConflict},
		{"leading zero index", `[{"op":"remove","path":"/b/01"}]`, "", ErrConflict},
		{"move into itself", `[{"op":"move","from":"/c","path":"/c/x"}]`, "", ErrConflict},
		{"atomic: second op fails", `[{"op":"add","path":"/e","value":1},{"op":"remove","path":"/nope"}]`, "", ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, err := fjson.Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			ops, err := Parse([]byte(tc.patch))
			if err != nil {
				t.Fatal(err)
			}
			out, err := Apply(root, ops)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("want %v, got %v", tc.err, err)
				}
				if got := string(fjson.AppendCompact(nil, root)); got != doc {
					t.Fatalf("input modified: %s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(fjson.AppendCompact(nil, out)); got != tc.want {
				t.Fatalf("got %s want %s", got, tc.want)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	for _, p := range []string{`{}`, `[1]`, `[{"op":"add","path":"/a"}]`, `[{"op":"frob","path":"/a"}]`, `[{"op":"move","path":"/a"}]`, `[{"op":"remove"}]`, `[`, `[{"op":"add","path":"a","value":1}]`} {
		ops, err := Parse([]byte(p))
		if err == nil {
			root, _ := fjson.Parse([]byte(`{"a":1}`))
			_, err = Apply(root, ops)
		}
		if err == nil {
			t.Errorf("%s: no error", p)
		}
	}
}
