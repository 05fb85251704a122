package fhirpath

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

func render(col Collection) []string {
	out := []string{}
	for _, it := range col {
		switch {
		case it.Value != nil:
			s, _ := toStringValue(it.Value)
			out = append(out, s)
		case it.Node != nil && it.Node.Kind == fjson.Object:
			out = append(out, string(fjson.AppendCompact(nil, it.Node)))
		case it.Node != nil:
			out = append(out, it.Node.Str)
		case it.ext != nil:
			out = append(out, "<ext>")
		default:
			out = append(out, "<"+it.Type+">")
		}
	}
	return out
}

func TestEvalExamples(t *testing.T) {
	tests := []struct {
		file string
		expr string
		want []string
	}{
		{"Patient/Patient-example.json", "Patient.name.given", []string{"Peter", "James", "Jim", "Peter", "James"}},
		{"Patient/Patient-example.json", "name.where(use = 'official').family", []string{"Chalmers"}},
		{"Patient/Patient-example.json", "Patient.name[2].period.end", []string{"2002"}},
		{"Patient/Patient-example.json", "name.given.distinct()", []string{"Peter", "James", "Jim"}},
		{"Patient/Patient-example.json", "name.given.isDistinct()", []string{"false"}},
		{"Patient/Patient-example.json", "name.select(given.first())", []string{"Peter", "Jim", "Peter"}},
		{"Patient/Patient-example.json", "telecom.where(system = 'phone').count()", []string{"3"}},
		{"Patient/Patient-example.json", "Patient.telecom.where(system='phone') | Patient.telecom.where(system='email')",
			[]string{
				`{"system":"phone","value":"(03) 5555 6473","use":"work","rank":1}`,
				`{"system":"phone","value":"(03) 3410 5613","use":"mobile","rank":2}`,
				`{"system":"phone","value":"(03) 5555 8834","use":"old","period":{"end":"2014"}}`,
			}},
		{"Patient/Patient-example.json", "identifier.type.coding.code", []string{"MR"}},
		{"Patient/Patient-example.json", "Patient.birthDate", []string{"1974-12-25"}},
		{"Patient/Patient-example.json", "birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", []string{"1974-12-25T14:35:45-05:00"}},
		{"Patient/Patient-example.json", "birthDate.hasValue()", []string{"true"}},
		{"Patient/Patient-example.json", "birthDate < @2000-01-01", []string{"true"}},
		{"Patient/Patient-example.json", "birthDate >= @1974-12-25T10:00:00Z", []string{}}, // precision differs
		{"Patient/Patient-example.json", "birthDate > @1974-11", []string{"true"}},
		{"Patient/Patient-example.json", "birthDate = @1974-12", []string{}},
		{"Patient/Patient-example.json", "Patient.deceased", []string{"false"}},
		{"Patient/Patient-example.json", "Patient.deceased is boolean", []string{"true"}},
		{"Patient/Patient-example.json", "(Patient.deceased as dateTime)", []string{}},
		{"Patient/Patient-example.json", "Patient.deceased.exists() and Patient.deceased != false", []string{"false"}},
		{"Patient/Patient-example.json", "Patient.managingOrganization.where(resolve() is Organization).reference", []string{"Organization/1"}},
		{"Patient/Patient-example.json", "Patient.managingOrganization.where(resolve() is Patient)", []string{}},
		{"Patient/Patient-example.json", "Resource.id", []string{"example"}},
		{"Patient/Patient-example.json", "DomainResource.text.`div`.exists()", []string{"true"}},
		{"Patient/Patient-example.json", "Observation.id", []string{}},
		{"Patient/Patient-example.json", "contact.name.family.children().count()", []string{"1"}},
		{"Patient/Patient-example.json", "address.line.first() & ', ' & address.city", []string{"534 Erewhon St, PleasantVille"}},
		{"Patient/Patient-example.json", "name.family.first().upper().substring(0, 3)", []string{"CHA"}},
		{"Patient/Patient-example.json", "name.family.first().matches('^Ch[a-z]+s$')", []string{"true"}},
		{"Patient/Patient-example.json", "%resource.id", []string{"example"}},
		{"Observation/Observation-example.json", "Observation.value.as(Quantity).value", []string{"185"}},
		{"Observation/Observation-example.json", "(Observation.value as Quantity).code", []string{"[lb_av]"}},
		{"Observation/Observation-example.json", "Observation.value is Quantity", []string{"true"}},
		{"Observation/Observation-example.json", "Observation.value.ofType(CodeableConcept)", []string{}},
		{"Observation/Observation-example.json", "Observation.value > 100 'lbs'", []string{}}, // units differ: unknown
		{"Observation/Observation-example.json", "Observation.value > 100 '[lb_av]'", []string{"true"}},
		{"Observation/Observation-example.json", "Observation.subject.where(resolve() is Patient).reference", []string{"Patient/example"}},
		{"Observation/Observation-example.json", "code.coding.where(system = %loinc).code", []string{"29463-7", "3141-9"}},
		{"Observation/Observation-example.json", "Observation.effective", []string{"2016-03-28"}},
		{"Observation/Observation-example.json", "Observation.effective.ofType(dateTime) > @2016-01-01", []string{"true"}},
		{"Observation/Observation-blood-pressure.json", "Observation.component.value.ofType(Quantity).value", []string{"107", "60"}},
		{"Observation/Observation-blood-pressure.json", "(Observation.component.value as Quantity).unit", []string{"mmHg", "mmHg"}},
		{"Observation/Observation-blood-pressure.json", "component.where(code.coding.code contains '8480-6').value.value", []string{"107"}},
		{"Observation/Observation-blood-pressure.json", "component.all(value.exists())", []string{"true"}},
		{"Observation/Observation-blood-pressure.json", "component.value.value.aggregate($this + $total, 0)", []string{"167"}},
		{"Observation/Observation-blood-pressure.json", "component.code.coding.code.where($index = 1)", []string{"271649006"}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			node := loadJSON(t, "fhir-r4-examples/"+tc.file)
			e, err := Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Eval(node, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if g := render(got); !slices.Equal(g, tc.want) {
				t.Errorf("%s on %s = %q, want %q", tc.expr, tc.file, g, tc.want)
			}
		})
	}
}

func TestItemTypes(t *testing.T) {
	node := loadJSON(t, "fhir-r4-examples/Observation/Observation-blood-pressure.json")
	tests := []struct {
		expr, name, typ string
	}{
		{"Observation.component.value", "valueQuantity", "Quantity"},
		{"Observation.component", "component", "Observation.component"},
		{"Observation.effective", "effectiveDateTime", "dateTime"},
		{"Observation.subject", "subject", "Reference"},
		{"Observation.status", "status", "code"},
		{"Observation.component.code.coding.system", "system", "uri"},
	}
	for _, tc := range tests {
		got, err := MustCompile(tc.expr).Eval(node, "Observation", nil)
		if err != nil || len(got) == 0 {
			t.Fatalf("%s: %v, %d items", tc.expr, err, len(got))
		}
		if got[0].Name != tc.name || got[0].Type != tc.typ {
			t.Errorf("%s: name %q type %q, want %q %q", tc.expr, got[0].Name, got[0].Type, tc.name, tc.typ)
		}
	}
}

func TestEvalInline(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p1",
	  "contained":[{"resourceType":"Organization","id":"org1","name":"Acme"}],
	  "managingOrganization":{"reference":"#org1"},
	  "generalPractitioner":[{"reference":"urn:uuid:1234","type":"Practitioner"},{"reference":"http://x.org/fhir/Practitioner/7/_history/2"}],
	  "name":[{"given":["A",null,"C"],"_given":[null,{"extension":[{"url":"u","valueString":"x"}]},null]}],
	  "_gender":{"extension":[{"url":"http://example.org/g","valueCode":"unknown"}]},
	  "multipleBirthInteger":2}`
	node, err := fjson.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		want []string
	}{
		{"name.given", []string{"A", "<ext>", "C"}},
		{"name.given.count()", []string{"3"}},
		{"name.given[1].extension.url", []string{"u"}},
		{"name.given[1].hasValue()", []string{"false"}},
		{"gender.exists()", []string{"true"}},
		{"gender.hasValue()", []string{"false"}},
		{"gender.extension('http://example.org/g').value", []string{"unknown"}},
		{"gender.children().count() > gender.id.count()", []string{"true"}},
		{"managingOrganization.resolve().name", []string{"Acme"}},
		{"managingOrganization.resolve() is Organization", []string{"true"}},
		{"generalPractitioner.resolve()", []string{"<Practitioner>", "<Practitioner>"}},
		{"generalPractitioner.where(resolve() is Practitioner).count()", []string{"2"}},
		{"multipleBirth + 1", []string{"3"}},
		{"multipleBirth is integer", []string{"true"}},
		// a FHIR integer is a FHIR.integer, not a System.Integer (the
		// official suite's testType12 reading)
		{"multipleBirth is Integer", []string{"false"}},
		{"multipleBirth is integer", []string{"true"}},
		{"contained.contained.empty()", []string{"true"}},
		{"contained.where(('#'+id in %resource.descendants().reference).not()).empty()", []string{"true"}},
		{"descendants().ofType(Reference).count()", []string{"3"}},
		{"repeat(contained).id", []string{"org1"}},
		{"%context.id", []string{"p1"}},
		{"iif(name.exists(), 'named', 'anonymous')", []string{"named"}},
		{"generalPractitioner.reference.first().iif(startsWith('urn:'), 'urn', 'other')", []string{"urn"}},
		{"$this.id", []string{"p1"}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := MustCompile(tc.expr).Eval(node, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if g := render(got); !slices.Equal(g, tc.want) {
				t.Errorf("%s = %q, want %q", tc.expr, g, tc.want)
			}
		})
	}
}

func TestEvalLiterals(t *testing.T) {
	empty, _ := fjson.Parse([]byte(`{}`))
	tests := []struct {
		expr string
		want []string
	}{
		{"1 + 2 * 3", []string{"7"}},
		{"(1 + 2) * 3", []string{"9"}},
		{"7 div 2", []string{"3"}},
		{"7 mod 2", []string{"1"}},
		{"7 / 2", []string{"3.5"}},
		{"1.5 + 1", []string{"2.5"}},
		{"1.50 * 2", []string{"3.00"}},
		{"-1 + 3", []string{"2"}},
		{"1 / 0", []string{}},
		{"1.0 = 1", []string{"true"}},
		{"1.0 ~ 1.04", []string{"true"}},
		{"'abc' + 'def'", []string{"abcdef"}},
		{"'abc' & {}", []string{"abc"}},
		{"'a\\'b'", []string{"a'b"}},
		{"'abc'.substring(1)", []string{"bc"}},
		{"'abc'.substring(1, 1)", []string{"b"}},
		{"'abc'.substring(5)", []string{}},
		{"'héllo'.length()", []string{"5"}},
		{"'a,b,c'.split(',').count()", []string{"3"}},
		{"('a' | 'b').join('-')", []string{"a-b"}},
		{"'ABC' ~ 'abc'", []string{"true"}},
		{"'ABC' = 'abc'", []string{"false"}},
		{"'abc'.indexOf('c')", []string{"2"}},
		{"'abc'.replace('b', 'x')", []string{"axc"}},
		{"'a1b22'.replaceMatches('[0-9]+', '#')", []string{"a#b#"}},
		{"'1.2.3'.replaceMatches('\\\\..*', '')", []string{"1"}},
		{"(1 | 2 | 2).count()", []string{"2"}},
		{"(1 | 2).combine(2).count()", []string{"3"}},
		{"(1 | 2 | 3).intersect(2 | 3 | 4)", []string{"2", "3"}},
		{"(1 | 2 | 3).exclude(2)", []string{"1", "3"}},
		{"(1 | 2).subsetOf(1 | 2 | 3)", []string{"true"}},
		{"(1 | 2 | 3).tail().first()", []string{"2"}},
		{"(1 | 2 | 3).skip(1).take(1)", []string{"2"}},
		{"(1 | 2 | 3).last()", []string{"3"}},
		{"(1 | 2).all($this > 0)", []string{"true"}},
		{"(true | false).anyTrue()", []string{"true"}},
		{"(true | false).allTrue()", []string{"false"}},
		{"2 in (1 | 2)", []string{"true"}},
		{"(1 | 2) contains 3", []string{"false"}},
		{"{} in (1 | 2)", []string{}},
		{"{}.empty()", []string{"true"}},
		{"{}.exists()", []string{"false"}},
		{"{}.count()", []string{"0"}},
		{"{}.not()", []string{}},
		{"true and {}", []string{}},
		{"false and {}", []string{"false"}},
		{"{} and false", []string{"false"}},
		{"true or {}", []string{"true"}},
		{"{} or true", []string{"true"}},
		{"{} or false", []string{}},
		{"true xor false", []string{"true"}},
		{"true xor {}", []string{}},
		{"true implies {}", []string{}},
		{"false implies {}", []string{"true"}},
		{"{} implies true", []string{"true"}},
		{"{} implies false", []string{}},
		{"true implies false", []string{"false"}},
		{"{} = 1", []string{}},
		{"{} != 1", []string{}},
		{"1 != 2", []string{"true"}},
		{"@2019-01-01 < @2019-01-02", []string{"true"}},
		{"@2019-01-01T10:00:00Z = @2019-01-01T11:00:00+01:00", []string{"true"}},
		{"@2019-01-01T10:00:00.000Z = @2019-01-01T10:00:00Z", []string{"true"}},
		{"@2019-01 < @2019-02-15", []string{"true"}},
		{"@2019-01 < @2019-01-15", []string{}},
		{"@2019 ~ @2019-01", []string{"false"}},
		{"@T10:00 < @T11:00", []string{"true"}},
		{"@2019-01-01.toString()", []string{"2019-01-01"}},
		{"'2019-02-03'.toDate() > @2019-02-01", []string{"true"}},
		{"5 days > 3 days", []string{"true"}},
		{"1 'mg' = 1 'mg'", []string{"true"}},
		{"1 'mg' = 1 'g'", []string{"false"}},
		{"'12'.toInteger() + 1", []string{"13"}},
		{"'1.5'.toDecimal()", []string{"1.5"}},
		{"'x'.toInteger()", []string{}},
		{"'x'.convertsToInteger()", []string{"false"}},
		{"'true'.toBoolean()", []string{"true"}},
		{"12.toString() + 'a'", []string{"12a"}},
		{"'5 \\'mg\\''.toQuantity() = 5 'mg'", []string{"true"}},
		{"iif(1 > 2, 'y', 'n')", []string{"n"}},
		{"iif({}, 'y')", []string{}},
		{"(1 | 2 | 3).where($this > 1).select($this * 10)", []string{"20", "30"}},
		{"(3).power(2)", []string{"9"}},
		{"(-5).abs()", []string{"5"}},
		{"2.567.round(2)", []string{"2.57"}},
		{"(1.1).floor()", []string{"1"}},
		{"%ucum", []string{"http://unitsofmeasure.org"}},
		{"%`vs-administrative-gender`", []string{"http://hl7.org/fhir/ValueSet/administrative-gender"}},
		{"'<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>hi</p></div>'.htmlChecks()", []string{"true"}},
		{"'<div><script>x</script></div>'.htmlChecks()", []string{"false"}},
		{"'<div onclick=\"x\">a</div>'.htmlChecks()", []string{"false"}},
		{"'<div><p>unclosed</div>'.htmlChecks()", []string{"false"}},
		{"'plain'.htmlChecks()", []string{"false"}},
		{"(1 | 2).aggregate($total + $this, 0)", []string{"3"}},
		{"1 // comment\n + 1", []string{"2"}},
		{"1 /* block */ + 1", []string{"2"}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Eval(empty, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if g := render(got); !slices.Equal(g, tc.want) {
				t.Errorf("%s = %q, want %q", tc.expr, g, tc.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	empty, _ := fjson.Parse([]byte(`{}`))
	for _, expr := range []string{
		"(1 | 2) and true",
		"(1 | 2) > 1",
		"'a' > 1",
		"(1 | 2).single()",
		"('a' | 'b').substring(1)",
		"(1 | 2) is Integer",
		"(1|2).not()",
		"'x'.matches('(' + '')",
	} {
		if _, err := MustCompile(expr).Eval(empty, "", nil); err == nil {
			t.Errorf("%s: no error", expr)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		expr        string
		unsupported bool
	}{
		{"", false},
		{"name.", false},
		{"name.where(", false},
		{"(1 + 2", false},
		{"'unterminated", false},
		{"1 +", false},
		{"name..given", false},
		{"name.given[", false},
		{"a = = b", false},
		{"%unknownVar", false},
		{"@2019-13-01", false},
		{"@T25:00", false},
		{"name.where()", false},
		{"substring()", false},
		{"'a'.matches('(')", false},
		{"#", false},
		{"code.memberOf('http://x')", true},
		{"subsumes('http://x')", true},
		{"name.frobnicate()", true},
		{strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000), false},
		{strings.Repeat("-", 5000) + "1", false},
		{strings.Repeat("a.", 20000) + "b", false},
	}
	for _, tc := range tests {
		name := tc.expr
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			_, err := Compile(tc.expr)
			if err == nil {
				t.Fatalf("Compile(%q) succeeded", name)
			}
			if got := errors.Is(err, ErrUnsupported); got != tc.unsupported {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v (%v)", got, tc.unsupported, err)
			}
		})
	}
}

func TestEvalBool(t *testing.T) {
	node, _ := fjson.Parse([]byte(`{"resourceType":"Patient","active":true,"name":[{"family":"x"},{"family":"y"}]}`))
	tests := []struct {
		expr           string
		value, nonEmpt bool
		err            bool
	}{
		{"active", true, true, false},
		{"active.not()", false, true, false},
		{"deceased", false, false, false},
		{"name.family", false, false, true},
		{"name.family.first()", false, false, true},
		{"name.count() = 2", true, true, false},
	}
	for _, tc := range tests {
		v, ne, err := MustCompile(tc.expr).EvalBool(node, "", nil)
		if (err != nil) != tc.err || v != tc.value || ne != tc.nonEmpt {
			t.Errorf("%s = %v, %v, %v; want %v, %v, err %v", tc.expr, v, ne, err, tc.value, tc.nonEmpt, tc.err)
		}
	}
}

func TestResolveEnv(t *testing.T) {
	obs, _ := fjson.Parse([]byte(`{"resourceType":"Observation","subject":{"reference":"urn:uuid:abc"}}`))
	pat, _ := fjson.Parse([]byte(`{"resourceType":"Patient","id":"p","gender":"female"}`))
	env := &Env{Resolve: func(ref string) (*fjson.Value, string, bool) {
		if ref == "urn:uuid:abc" {
			return pat, "Patient", true
		}
		return nil, "", false
	}}
	got, err := MustCompile("Observation.subject.resolve().gender").Eval(obs, "", env)
	if err != nil || !slices.Equal(render(got), []string{"female"}) {
		t.Fatalf("got %q, %v", render(got), err)
	}
	got, _ = MustCompile("Observation.subject.where(resolve() is Patient)").Eval(obs, "", nil)
	if len(got) != 0 {
		t.Errorf("urn:uuid reference without resolver resolved to %q", render(got))
	}
}

func TestReferenceType(t *testing.T) {
	tests := map[string]string{
		"Patient/1":                          "Patient",
		"Patient/1/_history/3":               "Patient",
		"http://example.org/fhir/Patient/1":  "Patient",
		"Patient?identifier=http://x|1":      "Patient",
		"urn:uuid:4e1e6b4e-2c6c-4ba5-9f3a-1": "",
		"#contained":                         "",
		"Foo/1":                              "",
		"Patient/":                           "",
		"/1":                                 "",
		"Observation.component/1":            "",
		"DomainResource/1":                   "",
		"":                                   "",
	}
	for ref, want := range tests {
		if got := ReferenceType(ref); got != want {
			t.Errorf("ReferenceType(%q) = %q, want %q", ref, got, want)
		}
	}
}

func FuzzCompileEval(f *testing.F) {
	for _, s := range []string{
		"Patient.name.given", "name.where(use = 'official').family", "1 + 2", "@2019-01-01 < @2019-02",
		"descendants().count()", "iif(true, 1, 2)", "'a' & 'b'", "%resource.id", "x.repeat(children())",
	} {
		f.Add(s)
	}
	node, _ := fjson.Parse([]byte(`{"resourceType":"Patient","id":"p","name":[{"given":["a","b"]}],"birthDate":"2000-01-01"}`))
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Compile(s)
		if err != nil {
			return
		}
		_, _ = e.Eval(node, "", nil)
	})
}

// TestConstantPathsPerEvaluation checks that memoised constant paths
// (%resource.descendants()) are recomputed for each evaluation and shared
// inside one, including inside iterating functions.
func TestConstantPathsPerEvaluation(t *testing.T) {
	e := MustCompile("name.where(%resource.descendants().ofType(HumanName).count() > 1).family")
	a, _ := fjson.Parse([]byte(`{"resourceType":"Patient","name":[{"family":"a"},{"family":"b"}]}`))
	b, _ := fjson.Parse([]byte(`{"resourceType":"Patient","name":[{"family":"c"}]}`))
	for i, tc := range []struct {
		node *fjson.Value
		want []string
	}{{a, []string{"a", "b"}}, {b, []string{}}, {a, []string{"a", "b"}}} {
		got, err := e.Eval(tc.node, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if g := render(got); !slices.Equal(g, tc.want) {
			t.Errorf("evaluation %d = %q, want %q", i, g, tc.want)
		}
	}
}

// FuzzEvalResource evaluates a set of search and invariant expressions on
// arbitrary JSON documents: nothing may panic.
func FuzzEvalResource(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"x"}]}],"birthDate":"2000"}`,
		`{"resourceType":"Observation","valueQuantity":{"value":1e400},"component":[{"valueString":"x"}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","contained":[{"resourceType":"Patient"}]}}]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}],"managingOrganization":{"reference":"#o"}}`,
		`{"resourceType":"Observation","effectivePeriod":{"start":"2020-13","end":"x"},"valueRange":{"low":{"value":"1"}}}`,
	} {
		f.Add([]byte(s))
	}
	exprs := []*Expr{
		MustCompile("hasValue() or (children().count() > id.count())"),
		MustCompile("contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists()).not()).trace('unmatched', id).empty()"),
		MustCompile("(Observation.value as Quantity) | (Observation.component.value as Quantity)"),
		MustCompile("Observation.effective.start <= Observation.effective.end"),
		MustCompile("Observation.value.low < Observation.value.high"),
		MustCompile("Patient.name.given.where($this.length() > 0).count()"),
		MustCompile("Bundle.entry.resource.descendants().count()"),
		MustCompile("descendants().ofType(Reference).where(resolve() is Patient)"),
		MustCompile("Patient.birthDate < today()"),
		MustCompile("children().select($this.toString()).distinct()"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		node, err := fjson.Parse(data)
		if err != nil {
			return
		}
		for _, e := range exprs {
			_, _ = e.Eval(node, "", &Env{Resource: node, RootResource: node})
		}
	})
}

// TestStaticChecks: strict mode refuses an element the type named by "as"
// or ofType() does not have, and CheckOrderedFunctions refuses
// order-dependent functions on children() and descendants(), even when the
// collections are empty.
func TestStaticChecks(t *testing.T) {
	obs, err := fjson.Parse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr                string
		strict, ordered, ok bool
	}{
		{"(Observation.value as Period).unit", true, false, false},
		{"(Observation.value as Period).unit", false, false, true},
		{"Observation.value.ofType(Quantity).foo", true, false, false},
		{"Observation.value.as(Quantity).unit", true, false, true},
		{"(Observation.value as Quantity).unit", true, false, true},
		{"Observation.children().skip(1)", false, true, false},
		{"Observation.children().skip(1)", false, false, true},
		{"Observation.descendants().where(true).first()", false, true, false},
		{"Observation.children().code[0]", false, true, false},
		{"Observation.code.coding.first()", false, true, true},
		{"Observation.children().exists()", false, true, true},
	} {
		_, err := MustCompile(tc.expr).Eval(obs, "", &Env{Strict: tc.strict, CheckOrderedFunctions: tc.ordered})
		if (err == nil) != tc.ok {
			t.Errorf("%s (strict %v, ordered %v): error %v, want ok=%v", tc.expr, tc.strict, tc.ordered, err, tc.ok)
		}
	}
}
