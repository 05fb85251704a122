package validate

import (
	"regexp"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

func str(s string) *fjson.Value {
	return &fjson.Value{Kind: fjson.String, Str: s, Raw: fjson.AppendString(nil, s)}
}

func num(s string) *fjson.Value { return &fjson.Value{Kind: fjson.Number, Str: s, Raw: []byte(s)} }

func TestPrimitives(t *testing.T) {
	cases := []struct {
		typ   string
		good  []string
		bad   []string
		isNum bool
	}{
		{typ: "date", good: []string{"2024", "2024-02", "2024-02-29", "2000-02-29", "0001-01-01"},
			bad: []string{"24", "2024-2", "2024-13", "2023-02-29", "1900-02-29", "2024-04-31", "0000", "2024-01-01T00:00:00Z", "2024-01-01 ", "２０２４"}},
		{typ: "dateTime", good: []string{"2024", "2024-01", "2024-01-02", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123456+14:00", "2024-01-02T23:59:60-13:59"},
			bad: []string{"2024-01-02T03:04Z", "2024-01-02T03:04:05", "2024-01-02T24:00:00Z", "2024-01-02T03:04:05+14:30", "2024-01-02T03:04:05.Z", "2024-01-02T", "2024-01-02t03:04:05Z"}},
		{typ: "instant", good: []string{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000+01:00"},
			bad: []string{"2024-01-02", "2024-01-02T03:04:05", "2024-01-02T03:04Z"}},
		{typ: "time", good: []string{"00:00:00", "23:59:60", "12:30:00.5"}, bad: []string{"24:00:00", "12:30", "12:30:00Z", "1:30:00"}},
		{typ: "id", good: []string{"a", "A-1.b", strings.Repeat("x", 64)}, bad: []string{strings.Repeat("x", 65), "a_b", "a b", "a/b"}},
		{typ: "code", good: []string{"a", "a b", "x-y.z"}, bad: []string{" a", "a ", "a  b", "a\tb\tc "}},
		{typ: "oid", good: []string{"urn:oid:1.2.3", "urn:oid:2.16.840.1.113883"}, bad: []string{"urn:oid:3.1", "urn:oid:1", "urn:oid:1.02", "1.2.3", "urn:oid:1..2"}},
		{typ: "uuid", good: []string{"urn:uuid:7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d"}, bad: []string{"urn:uuid:7B1F3F5E-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "urn:uuid:7b1f3f5e2c3a4a6b9d6c0e8f1a2b3c4d"}},
		{typ: "uri", good: []string{"http://x/y?z#w", "urn:x", "relative/path"}, bad: []string{"http://x/ y", "a\nb"}},
		{typ: "base64Binary", good: []string{"QQ==", "QUI=", "QUJD", "QUJD REVG", "\nQUJD\n"}, bad: []string{"QQ", "Q===", "QQ=A", "QUJD=", "%%%2@()()", "QU JD"}},
		{typ: "string", good: []string{"x", " leading", "multi\nline\ttab"}, bad: []string{"", "form\ffeed", "v\vtab"}},
		{typ: "integer", isNum: true, good: []string{"0", "-1", "2147483647", "-2147483648"}, bad: []string{"01", "1.0", "1e3", "2147483648", "-2147483649", "-"}},
		{typ: "positiveInt", isNum: true, good: []string{"1", "2147483647"}, bad: []string{"0", "-1", "2147483648"}},
		{typ: "unsignedInt", isNum: true, good: []string{"0", "7"}, bad: []string{"-1", "-0"}},
		{typ: "decimal", isNum: true, good: []string{"0", "-0.5", "1.50", "1e-3", "12345678901234567890.123"}},
	}
	for _, c := range cases {
		p := primByName[c.typ]
		if p == primNone {
			t.Fatalf("unknown type %s", c.typ)
		}
		mk := str
		if c.isNum {
			mk = num
		}
		for _, g := range c.good {
			if problem, _ := checkPrimitive(p, mk(g)); problem != "" {
				t.Errorf("%s %q rejected: %s", c.typ, g, problem)
			}
		}
		for _, b := range c.bad {
			if problem, _ := checkPrimitive(p, mk(b)); problem == "" {
				t.Errorf("%s %q accepted", c.typ, b)
			}
		}
		// JSON types: numbers are not strings and strings are not numbers.
		if len(c.good) > 0 {
			other := str
			if !c.isNum {
				other = num
			}
			if problem, _ := checkPrimitive(p, other(c.good[0])); problem == "" {
				t.Errorf("%s accepted the wrong JSON type", c.typ)
			}
		}
	}
	if problem, _ := checkPrimitive(primBoolean, &fjson.Value{Kind: fjson.Bool, Str: "true"}); problem != "" {
		t.Error("true rejected")
	}
	if problem, _ := checkPrimitive(primBoolean, str("true")); problem == "" {
		t.Error(`"true" accepted as a boolean`)
	}
	if _, warn := checkPrimitive(primString, str(" \t ")); warn == "" {
		t.Error("whitespace-only string without warning")
	}
	if _, warn := checkPrimitive(primString, str("a\x01b")); warn == "" {
		t.Error("control character without warning")
	}
}

// regexFor compiles the R4 expression of a primitive type, anchored.
func regexFor(t testing.TB, typ string) *regexp.Regexp {
	t.Helper()
	re, ok := core().regexes[typ]
	if !ok {
		t.Fatalf("no regex for %s", typ)
	}
	return regexp.MustCompile(`^(?:` + re + `)$`)
}

// stricterThanRegex lists, per type, the ways the hand-written checks are
// deliberately stricter than the R4 regular expression.
var stricterThanRegex = map[string]func(s string) bool{
	"date":         func(s string) bool { return len(s) == 10 }, // calendar days
	"dateTime":     func(s string) bool { return len(s) >= 10 },
	"instant":      func(s string) bool { return true },
	"base64Binary": func(s string) bool { return strings.Contains(s, "=") }, // padding only at the end
	"integer":      func(s string) bool { return len(s) >= 10 },             // 32-bit range
	"positiveInt":  func(s string) bool { return len(s) >= 10 },
	"unsignedInt":  func(s string) bool { return len(s) >= 10 },
	"string":       func(s string) bool { return s == "" },
	"markdown":     func(s string) bool { return s == "" },
	"uri":          func(s string) bool { return s == "" },
	"url":          func(s string) bool { return s == "" },
	"canonical":    func(s string) bool { return s == "" },
}

var regexTypes = []string{"date", "dateTime", "instant", "time", "id", "code", "oid", "uuid", "uri", "url", "canonical", "base64Binary", "integer", "positiveInt", "unsignedInt", "decimal", "string", "markdown"}

// agreesWithRegex checks one value of one type against the R4 expression:
// whatever the checks accept, the expression accepts; and whatever the
// expression accepts, the checks accept unless the type is deliberately
// stricter for that value.
func agreesWithRegex(t *testing.T, typ string, re *regexp.Regexp, s string) {
	p := primByName[typ]
	v := str(s)
	switch typ {
	case "integer", "positiveInt", "unsignedInt", "decimal":
		if jv, err := fjson.Parse([]byte(s)); err != nil || jv.Kind != fjson.Number || strings.ContainsAny(s, " \t\r\n") {
			return // not a JSON number: the JSON type decides
		}
		v = num(s)
	}
	problem, _ := checkPrimitive(p, v)
	// Go's \s lacks \v, which Java's has; ignore values with it.
	if strings.Contains(s, "\v") {
		return
	}
	ours, theirs := problem == "", re.MatchString(s)
	if ours && !theirs {
		t.Errorf("%s %q accepted, but the R4 expression rejects it", typ, s)
	}
	if theirs && !ours {
		if f := stricterThanRegex[typ]; f == nil || !f(s) {
			t.Errorf("%s %q rejected (%s), but the R4 expression accepts it", typ, s, problem)
		}
	}
}

func TestPrimitivesMatchRegexes(t *testing.T) {
	samples := []string{"", " ", "0", "00", "-0", "1", "-1", "1.5", "1e5", "2147483647", "2147483648", "abc", "a b", "a  b", " a",
		"2024", "2024-01", "2024-01-31", "2024-02-30", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.1+05:30", "2024-01-02T03:04:05",
		"12:00:00", "24:00:00", "urn:oid:1.2", "urn:uuid:7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "QUJD", "QQ==", "Q=Q=", "QU JD",
		"http://x", "x\ty", "x\fy", "0000", "9999-12-31T23:59:60-14:00", "A-.z", strings.Repeat("z", 65)}
	for _, typ := range regexTypes {
		re := regexFor(t, typ)
		for _, s := range samples {
			agreesWithRegex(t, typ, re, s)
		}
	}
}

// FuzzPrimitives compares the hand-written checks with the R4 expressions
// on arbitrary strings, and checks that no input panics.
func FuzzPrimitives(f *testing.F) {
	for _, s := range []string{"2024-01-02T03:04:05.123Z", "urn:oid:1.2.3", "QUJD", "a b", "-12", "1.5e3", "12:00:00"} {
		f.Add(s)
	}
	res := map[string]*regexp.Regexp{}
	for _, typ := range regexTypes {
		res[typ] = regexFor(f, typ)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range regexTypes {
			agreesWithRegex(t, typ, res[typ], s)
		}
		checkXHTML(s)
		isMediaType(s)
	})
}
