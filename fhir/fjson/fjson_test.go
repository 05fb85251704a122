package fjson

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `0`, `-0.5e+10`, `"a\u00e9\ud83d\ude00\n"`, `{"a":[1,2,{"b":null}],"c":true,"d":false}`,
		" \n{ \"x\" : 1.50 } \t",
	}
	for _, c := range cases {
		v, err := Parse([]byte(c))
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		// compact output must be equal JSON to the input per encoding/json
		var a, b any
		if err := json.Unmarshal([]byte(c), &a); err != nil {
			t.Fatal(err)
		}
		out := AppendCompact(nil, v)
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("%s: compact output %s invalid: %v", c, out, err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("%s: %s != %s", c, ja, jb)
		}
	}
}

func TestDecimalPreserved(t *testing.T) {
	v, err := Parse([]byte(`{"value": 1.50, "s": "a\u0041"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(AppendCompact(nil, v)); got != `{"value":1.50,"s":"a\u0041"}` {
		t.Fatalf("got %s", got)
	}
	if v.Get("s").String() != "aA" {
		t.Fatalf("decoded %q", v.Get("s").String())
	}
}

func TestParseInvalid(t *testing.T) {
	cases := map[string]string{
		`{"a":1,"a":2}`:          "duplicate key",
		`{"a":{"b":1,"b":1}}`:    "a.b",
		`{"a":[{"x":1,"x":2}]}`:  "a[0].x",
		`{`:                      "member name",
		`{"a":1,}`:               "member name",
		`[1,]`:                   "unexpected",
		`01`:                     "after the top-level",
		`1.`:                     "decimal point",
		`"\x"`:                   "escape",
		"\"a\x01\"":              "control",
		"\"\xff\"":               "UTF-8",
		`tru`:                    "literal",
		`{} {}`:                  "after the top-level",
		`{"a" 1}`:                "':'",
		`"abc`:                   "unterminated",
		strings.Repeat("[", 300): "nesting",
		``:                       "end of input",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q does not mention %q", in, err, want)
		}
	}
}

func TestDuplicateKeysLargeObject(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 40; i++ {
		b.WriteString(`"k` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1,`)
	}
	b.WriteString(`"kaa":2}`)
	if _, err := Parse([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("want duplicate error, got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,"x",null]}`, `"\ud800"`, `[[[]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err != nil {
			return
		}
		out := AppendCompact(nil, v)
		v2, err := Parse(out)
		if err != nil {
			t.Fatalf("compact output does not parse: %v", err)
		}
		if !Equal(v, v2) {
			t.Fatalf("round trip changed the value")
		}
		if !json.Valid(out) {
			t.Fatalf("compact output invalid for encoding/json")
		}
	})
}

// TestStringSpecialAtEveryOffset puts each byte a string must look at on
// its own (quote, escape, control character, multi-byte and invalid
// UTF-8) at every offset of a string long enough for str's eight-byte
// steps, and checks acceptance and the decoded text against
// encoding/json (which accepts invalid UTF-8; Parse refuses it).
func TestStringSpecialAtEveryOffset(t *testing.T) {
	specials := []struct {
		text  string
		valid bool
	}{
		{`\"`, true}, {`\\`, true}, {`\n`, true}, {`\u00e9`, true}, {`\ud83d\ude00`, true},
		{"é", true}, {"€", true}, {"😀", true}, {"~", true}, {" ", true},
		{"\x01", false}, {"\x1f", false}, {"\t", false}, {"\xff", false}, {"\xc3", false}, {`\x`, false},
	}
	for _, sp := range specials {
		for off := 0; off <= 24; off++ {
			for _, tail := range []int{0, 1, 7, 8, 9, 23} {
				doc := `"` + strings.Repeat("a", off) + sp.text + strings.Repeat("b", tail) + `"`
				v, err := Parse([]byte(doc))
				if (err == nil) != sp.valid {
					t.Fatalf("%q: Parse error %v, want valid %v", doc, err, sp.valid)
				}
				if err != nil {
					continue
				}
				var want string
				if err := json.Unmarshal([]byte(doc), &want); err != nil {
					t.Fatalf("%q: encoding/json: %v", doc, err)
				}
				if v.Str != want {
					t.Fatalf("%q: %q, want %q", doc, v.Str, want)
				}
			}
		}
		// unterminated after the special
		if _, err := Parse([]byte(`"` + strings.Repeat("a", 17) + sp.text + strings.Repeat("b", 9))); err == nil {
			t.Fatalf("unterminated string with %q accepted", sp.text)
		}
	}
	// an object whose keys and values sit after runs of indentation
	doc := "{\n" + strings.Repeat(" ", 17) + `"k"` + strings.Repeat(" ", 8) + ":" + strings.Repeat(" ", 9) + `"v"` + strings.Repeat(" ", 16) + "}"
	v, err := Parse([]byte(doc))
	if err != nil || v.Get("k").String() != "v" {
		t.Fatalf("indented object: %v", err)
	}
}

// TestParseSlabsFitTheValues checks that the slabs a parse allocates hold
// not many more values than the document has, whether it is indented,
// compact, or nothing but tiny values (a slab too large is memory zeroed
// for nothing: the old guess of a value per 12 bytes zeroed two and a
// half times what an indented Bundle needs).
func TestParseSlabsFitTheValues(t *testing.T) {
	var b strings.Builder
	b.WriteString("{\n    \"resourceType\": \"Bundle\",\n    \"entry\": [\n")
	for i := 0; i < 3000; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(`        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {
                    "coding": [
                        {
                            "system": "http://loinc.org",
                            "code": "8302-2",
                            "display": "Body Height"
                        }
                    ]
                },
                "valueQuantity": {
                    "value": 170.2,
                    "unit": "cm"
                }
            }
        }`)
	}
	b.WriteString("\n    ]\n}\n")
	indented := []byte(b.String())
	v, err := Parse(indented)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{
		"indented": indented,
		"compact":  AppendCompact(nil, v),
		"tiny":     []byte("[" + strings.Repeat("1,", 200000) + "1]"),
		"small":    []byte(`{"resourceType":"Patient","id":"a","active":true,"name":[{"family":"Ng","given":["A","B"]}]}`),
	}
	for name, d := range docs {
		_, p, err := parse(d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		used, allocated := p.used+len(p.slab), p.used+cap(p.slab)
		if n, _ := CheckLimits(d, 0, 0); used != n {
			t.Fatalf("%s: %d values in the slabs, CheckLimits counts %d", name, used, n)
		}
		if allocated > used+used/4+64 {
			t.Errorf("%s: %d values allocated for %d", name, allocated, used)
		}
	}
}
