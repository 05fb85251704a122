package search

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// describe renders a clause compactly for table tests.
func describe(c *Clause) string {
	var b strings.Builder
	b.WriteString(c.Param)
	if c.Modifier != ModNone && c.Modifier != ModType {
		b.WriteString(":" + c.Modifier.String())
	}
	if c.TargetType != "" {
		b.WriteString(":" + c.TargetType)
	}
	switch {
	case c.Chain != nil:
		fmt.Fprintf(&b, "->%v.%s", c.Chain.Types, describe(c.Chain.Clause))
		return b.String()
	case c.Has != nil:
		fmt.Fprintf(&b, "<-%s.%s.%s", c.Has.Type, c.Has.Param, describe(c.Has.Clause))
		return b.String()
	case c.Modifier == ModMissing:
		fmt.Fprintf(&b, "=%v", c.Missing)
		return b.String()
	}
	vals := make([]string, len(c.Values))
	for i, v := range c.Values {
		vals[i] = describeValue(c.Type, v)
	}
	b.WriteString("=" + strings.Join(vals, ","))
	return b.String()
}

func describeValue(t ParamType, v Value) string {
	switch t {
	case TypeString:
		return fmt.Sprintf("%q/%q", v.Text, v.Raw)
	case TypeURI:
		return v.Raw
	case TypeToken:
		switch {
		case v.TypeCode != "":
			return v.TypeSystem + "|" + v.TypeCode + "|" + v.Code
		case v.Text != "":
			return "~" + v.Text
		case v.AnySystem:
			return "*|" + v.Code
		}
		return v.System + "|" + v.Code
	case TypeReference:
		switch {
		case v.URL != "":
			return fmt.Sprintf("%s|%s(%s/%s)", v.URL, v.Version, v.RefType, v.RefID)
		case v.Code != "" && v.AnySystem:
			return "id:*|" + v.Code
		case v.Code != "":
			return "id:" + v.System + "|" + v.Code
		}
		return v.RefType + "/" + v.RefID
	case TypeDate:
		return fmt.Sprintf("%s[%s,%s]", v.Prefix, v.Start.Format(time.RFC3339Nano), v.End.Format(time.RFC3339Nano))
	case TypeNumber:
		return fmt.Sprintf("%s%s[%g,%g]", v.Prefix, v.Number, v.Low, v.High)
	case TypeQuantity:
		sys := v.System
		if v.AnySystem {
			sys = "*"
		}
		return fmt.Sprintf("%s%s[%g,%g]%s|%s", v.Prefix, v.Number, v.Low, v.High, sys, v.Code)
	case TypeComposite:
		return "composite" // components are checked separately
	}
	return "?"
}

func parse(t *testing.T, r *Registry, typ, query string, strict bool) (*Query, error) {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("bad test query %q: %v", query, err)
	}
	return r.ParseQuery(typ, vals, strict)
}

func TestParseQueryClauses(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		typ, query string
		want       []string
	}{
		{"Observation", "code=http://loinc.org|8302-2", []string{"code=http://loinc.org|8302-2"}},
		{"Observation", "code=8302-2,1234-5", []string{"code=*|8302-2,*|1234-5"}},
		{"Observation", "code=|x&code=http://s|", []string{"code=|x", "code=http://s|"}},
		{"Observation", `code=a\,b\|c`, []string{"code=*|a,b|c"}},
		{"Observation", "date=ge2020-01-01&date=lt2021", []string{
			"date=ge[2020-01-01T00:00:00Z,2020-01-01T23:59:59.999999999Z]",
			"date=lt[2021-01-01T00:00:00Z,2021-12-31T23:59:59.999999999Z]"}},
		{"Observation", "date=2020-03-04T10:00:00%2B02:00", []string{"date=eq[2020-03-04T08:00:00Z,2020-03-04T08:00:00.999999999Z]"}},
		{"Observation", "date=2020-03-04T10:00Z", []string{"date=eq[2020-03-04T10:00:00Z,2020-03-04T10:00:59.999999999Z]"}},
		{"Observation", "date=ap2020-03", []string{"date=ap[2020-01-30T00:00:00Z,2020-05-01T23:59:59.999999999Z]"}},
		{"Observation", "value-quantity=gt5.4|http://unitsofmeasure.org|mg", []string{"value-quantity=gt5.4[5.35,5.45]http://unitsofmeasure.org|mg"}},
		{"Observation", "value-quantity=5.4||mg", []string{"value-quantity=eq5.4[5.35,5.45]*|mg"}},
		{"Observation", "value-quantity=ap100", []string{"value-quantity=ap100[89.5,110.5]*|"}},
		{"RiskAssessment", "probability=le0.5", []string{"probability=le0.5[0.45,0.55]"}},
		{"Observation", "subject=Patient/123", []string{"subject=Patient/123"}},
		{"Observation", "subject:Patient=123", []string{"subject:Patient=Patient/123"}},
		{"Account", "patient=123", []string{"patient=Patient/123"}},
		{"Observation", "patient=123", []string{"patient=/123"}},
		{"Observation", "subject=123", []string{"subject=/123"}},
		{"Observation", "subject=http://other.org/fhir/Patient/1", []string{"subject=http://other.org/fhir/Patient/1|(Patient/1)"}},
		{"Observation", "subject=https://fhirgate.example.org/fhir/Patient/9", []string{"subject=Patient/9"}},
		{"Observation", "subject:identifier=http://x|123", []string{"subject:identifier=id:http://x|123"}},
		{"QuestionnaireResponse", "questionnaire=http://x.org/Questionnaire/q|2", []string{"questionnaire=http://x.org/Questionnaire/q|2(Questionnaire/q)"}},
		{"Observation", "subject:Patient.name=peter", []string{`subject:Patient->[Patient].name="peter"/"peter"`}},
		{"Observation", "subject.name=peter", []string{`subject->[Patient Location].name="peter"/"peter"`}},
		{"Observation", "patient.organization.name=Acme", []string{`patient->[Patient].organization->[Organization].name="acme"/"Acme"`}},
		{"Observation", "subject:Patient.name:exact=Peter", []string{`subject:Patient->[Patient].name:exact="peter"/"Peter"`}},
		{"Patient", "_has:Observation:patient:code=1234", []string{"_has<-Observation.patient.code=*|1234"}},
		{"Patient", "_has:Observation:subject:date=gt2020", []string{"_has<-Observation.subject.date=gt[2020-01-01T00:00:00Z,2020-12-31T23:59:59.999999999Z]"}},
		{"Patient", "name:exact=Peter", []string{`name:exact="peter"/"Peter"`}},
		{"Patient", "name:contains=ETER", []string{`name:contains="eter"/"ETER"`}},
		{"Patient", "family=Adán", []string{`family="adan"/"Adán"`}},
		{"Patient", "family=Zo%C3%AB", []string{`family="zoe"/"Zoë"`}},
		{"Patient", "gender:not=male", []string{"gender:not=*|male"}},
		{"Observation", "code:text=Blood  Pressure", []string{"code:text=~blood pressure"}},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345", []string{"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345"}},
		{"Patient", "birthdate:missing=true", []string{"birthdate:missing=true"}},
		{"Patient", "_id=a,b", []string{"_id=*|a,*|b"}},
		{"Patient", "_lastUpdated=gt2020-01-01T10:00:00Z", []string{"_lastUpdated=gt[2020-01-01T10:00:00Z,2020-01-01T10:00:00.999999999Z]"}},
		{"Patient", "_tag=http://x|y", []string{"_tag=http://x|y"}},
		{"Patient", "_profile=http://x/p", []string{"_profile=http://x/p"}},
		{"Patient", "_security=R", []string{"_security=*|R"}},
		{"Patient", "_source=http://src", []string{"_source=http://src"}},
		{"ValueSet", "url:below=http://x.org/", []string{"url:below=http://x.org/"}},
		{"Observation", "code-value-quantity=http://loinc.org|8480-6$gt100", []string{"code-value-quantity=composite"}},
		{"", "_id=x&_lastUpdated=2020", []string{"_id=*|x", "_lastUpdated=eq[2020-01-01T00:00:00Z,2020-12-31T23:59:59.999999999Z]"}},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				q, err := parse(t, r, tc.typ, tc.query, strict)
				if err != nil {
					t.Fatalf("strict=%v: %v", strict, err)
				}
				if len(q.Issues) > 0 {
					t.Errorf("issues: %+v", q.Issues)
				}
				var got []string
				for i := range q.Clauses {
					got = append(got, describe(&q.Clauses[i]))
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("got  %q\nwant %q", got, tc.want)
				}
			}
		})
	}
}

func TestParseQueryComposite(t *testing.T) {
	r := testRegistry(t)
	q, err := parse(t, r, "Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt100||mm[Hg],8462-4$lt60", true)
	if err != nil {
		t.Fatal(err)
	}
	c := q.Clauses[0]
	if c.Type != TypeComposite || len(c.Values) != 2 {
		t.Fatalf("clause = %+v", c)
	}
	var got []string
	for _, v := range c.Values {
		got = append(got, describeValue(TypeToken, v.Parts[0])+" "+describeValue(TypeQuantity, v.Parts[1]))
	}
	want := []string{"http://loinc.org|8480-6 gt100[99.5,100.5]*|mm[Hg]", "*|8462-4 lt60[59.5,60.5]*|"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseQueryResultParams(t *testing.T) {
	r, err := New(Options{DefaultCount: 10, MaxCount: 100, Reserved: []string{"_cursor"}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := parse(t, r, "Observation", "_sort=-date,code,_lastUpdated&_count=500&_total=accurate&_summary=count"+
		"&_elements=id,status,value&_include=Observation:patient&_include:iterate=Patient:organization"+
		"&_revinclude=Provenance:target&_include=Observation:subject:Patient&_format=json&_pretty=true&_cursor=abc", true)
	if err != nil {
		t.Fatal(err)
	}
	if q.Count != 100 || q.Total != TotalAccurate || q.Summary != SummaryCount {
		t.Errorf("count %d total %v summary %v", q.Count, q.Total, q.Summary)
	}
	if want := []SortKey{{"date", TypeDate, true}, {"code", TypeToken, false}, {"_lastUpdated", TypeDate, false}}; !slices.Equal(q.Sort, want) {
		t.Errorf("sort = %v", q.Sort)
	}
	if !slices.Equal(q.Elements, []string{"id", "status", "value"}) {
		t.Errorf("elements = %v", q.Elements)
	}
	wantInc := []Include{{Source: "Observation", Param: "patient"}, {Source: "Observation", Param: "subject", Target: "Patient"}, {Source: "Patient", Param: "organization", Iterate: true}}
	if !slices.Equal(q.Includes, wantInc) {
		t.Errorf("includes = %+v", q.Includes)
	}
	if !slices.Equal(q.RevIncludes, []Include{{Source: "Provenance", Param: "target"}}) {
		t.Errorf("revincludes = %+v", q.RevIncludes)
	}
	if q.Reserved.Get("_cursor") != "abc" {
		t.Errorf("reserved = %v", q.Reserved)
	}
	q, err = parse(t, r, "Observation", "_include=*&_revinclude=Provenance:*", true)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Includes[0].Wildcard || !q.RevIncludes[0].Wildcard || q.Count != 10 {
		t.Errorf("wildcards = %+v %+v, count %d", q.Includes, q.RevIncludes, q.Count)
	}
	q, err = parse(t, r, "", "_type=Patient,Observation,Patient&_count=0", true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.Types, []string{"Patient", "Observation"}) || q.Count != 0 {
		t.Errorf("types = %v count %d", q.Types, q.Count)
	}
}

// TestParseQueryBad feeds malformed, unknown and hostile parameters: each
// is ignored with a warning in lenient mode and is a 400 naming the
// parameter in strict mode.
func TestParseQueryBad(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		typ, query string
		param      string // what the diagnostics must name
	}{
		{"Observation", "foo=bar", "foo"},
		{"Observation", "code=", "code"},
		{"Observation", "code=,", "code"},
		{"Observation", "code=a|b|c", "code"},
		{"Observation", "code=|", "code"},
		{"Observation", "code:=x", "code"},
		{"Observation", "code:exact=x", "code"},
		{"Observation", "code:in=http://vs", "code"},
		{"Observation", "code:above=x", "code"},
		{"Observation", "code:frob=x", "code"},
		{"Patient", "name:text=x", "name"},
		{"Patient", "name=%20%20", "name"},
		{"Observation", "date=2020-13-01", "date"},
		{"Observation", "date=gtx", "date"},
		{"Observation", "date=2020-02-30", "date"},
		{"Observation", "date=2020-01-01T25:00", "date"},
		{"Observation", "date=zz2020", "date"},
		{"Observation", "value-quantity=abc", "value-quantity"},
		{"Observation", "value-quantity=5|a|b|c", "value-quantity"},
		{"Observation", "value-quantity=1e999", "value-quantity"},
		{"Observation", "value-quantity=NaN", "value-quantity"},
		{"Observation", "subject=Patient/", "subject"},
		{"Observation", "subject=Foo/1", "subject"},
		{"Observation", "subject:Foo=1", "subject"},
		{"Observation", "subject:Practitioner=1", "subject"},
		{"Observation", "subject=bad%20id!", "subject"},
		{"Observation", "patient=Practitioner/1", "patient"},
		{"Observation", "subject:identifier=http://x|", "subject"},
		{"Observation", "subject.nope=1", "subject.nope"},
		{"Observation", "code.display=1", "code.display"},
		{"Observation", "subject:Patient.organization.partof.partof.name=x", "subject:Patient.organization.partof.partof.name"},
		{"Observation", "subject:missing=maybe", "subject"},
		{"Observation", "code-value-quantity=http://loinc.org|1", "code-value-quantity"},
		{"Observation", "code-value-quantity=a$$b", "code-value-quantity"},
		{"Patient", "_text=x", "_text"},
		{"Patient", "_content=x", "_content"},
		{"Patient", "_list=42", "_list"},
		{"Patient", "_has:Observation:code:code=1", "_has:Observation:code:code"},
		{"Patient", "_has:Foo:x:y=1", "_has:Foo:x:y"},
		{"Patient", "_has:Observation:patient=1", "_has:Observation:patient"},
		{"Patient", "_has:Observation:patient:_has:Encounter:patient:status=x", "_has:Observation:patient:_has:Encounter:patient:status"},
		{"Patient", "_has:Observation:encounter:code=1", "_has:Observation:encounter:code"},
		{"Patient", "_has=x", "_has"},
		{"Observation", "_count=abc", "_count"},
		{"Observation", "_count=-1", "_count"},
		{"Observation", "_count=1&_count=2", "_count"},
		{"Observation", "_total=maybe", "_total"},
		{"Observation", "_summary=yes", "_summary"},
		{"Observation", "_sort=nope", "_sort"},
		{"Observation", "_sort=code,-code", "_sort"},
		{"Observation", "_sort=code-value-quantity", "_sort"},
		{"Observation", "_sort:x=code", "_sort"},
		{"Observation", "_elements=bad%20name", "_elements"},
		{"Observation", "_elements=nosuchelement", "_elements"},
		{"Observation", "_elements=,", "_elements"},
		{"Observation", "_include=Nope:x", "_include"},
		{"Observation", "_include=Observation:code", "_include"},
		{"Observation", "_include=Patient:organization", "_include"},
		{"Observation", "_include=Observation:subject:Medication", "_include"},
		{"Observation", "_include:deep=Observation:subject", "_include:deep"},
		{"Observation", "_include=Observation", "_include"},
		{"Observation", "_revinclude=Observation:patient", "_revinclude"},
		{"Observation", "_type=Patient", "_type"},
		{"", "_type=Nope", "_type"},
		{"", "code=x", "code"},
		{"Observation", "=x", ""},
		{"Observation", "%3D%3D=%3D%3D%3D", "=="},
		{"Observation", "code=" + strings.Repeat("x", maxValueLen+1), "code"},
		{"Observation", "code=%FF", "code"},
		{"Observation", "%FF=1", ""},
		{"Observation", "code=" + strings.Repeat("a,", maxOrValues) + "a", "code"},
		{"Observation", "_contained=true", "_contained"},
	}
	for _, tc := range tests {
		name := tc.query
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(tc.typ+"?"+name, func(t *testing.T) {
			q, err := parse(t, r, tc.typ, tc.query, false)
			if err != nil {
				t.Fatalf("lenient: %v", err)
			}
			if len(q.Issues) == 0 {
				t.Fatalf("lenient: no issue; clauses %d", len(q.Clauses))
			}
			if len(q.Clauses) != 0 || len(q.Sort) != 0 || len(q.Includes) != 0 || len(q.Elements) != 0 || q.Total != TotalDefault {
				t.Errorf("lenient: the bad parameter was applied: %q", q.Encode())
			}
			for _, is := range q.Issues {
				if is.Severity != fhir.SeverityWarning || is.Details == nil || is.Details.Text == "" {
					t.Errorf("lenient issue = %+v", is)
				}
			}
			_, err = parse(t, r, tc.typ, tc.query, true)
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || len(fe.Issues) == 0 {
				t.Fatalf("strict: err = %v", err)
			}
			is := fe.Issues[0]
			if is.Severity != fhir.SeverityError {
				t.Errorf("strict severity = %s", is.Severity)
			}
			if tc.param != "" && !strings.HasPrefix(is.Diagnostics, tc.param) {
				t.Errorf("strict diagnostics %q do not name %q (%s)", is.Diagnostics, tc.param, is.Details.Text)
			}
		})
	}
}

func TestParseQueryAlwaysFails(t *testing.T) {
	r := testRegistry(t)
	many := url.Values{}
	for i := 0; i <= maxParams; i++ {
		many.Set(fmt.Sprintf("p%d", i), "x")
	}
	tests := []struct {
		typ    string
		params url.Values
	}{
		{"Location", url.Values{"near": {"42.2|-83.6|10|km"}}},
		{"Observation", many},
		{"Observation", url.Values{"code": slices.Repeat([]string{"x"}, maxQueryValues+1)}},
		{"Nope", url.Values{}},
	}
	for _, tc := range tests {
		for _, strict := range []bool{false, true} {
			_, err := r.ParseQuery(tc.typ, tc.params, strict)
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest {
				t.Errorf("%s %d params strict=%v: err = %v", tc.typ, len(tc.params), strict, err)
			}
		}
	}
}

func TestParseQueryLenientKeepsGoodParams(t *testing.T) {
	r := testRegistry(t)
	q, err := parse(t, r, "Observation", "code=1234&foo=bar&date=bad&status=final&_sort=nope&_count=5", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Issues) != 3 {
		t.Errorf("issues = %+v", q.Issues)
	}
	if got := q.Encode(); got != "code=1234&status=final&_count=5" {
		t.Errorf("Encode = %q", got)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	r := testRegistry(t)
	for _, query := range []string{
		"code=http://loinc.org|8302-2,x&date=ge2020&date=lt2021-06&_sort=-date&_count=7",
		`name=a\,b&name:exact=Zoë Q&_include=Observation:patient`,
		"subject:Patient.name=peter&_revinclude:iterate=Provenance:target&_summary=data&_total=none",
		"_has:Observation:patient:code=1&_elements=id,name",
		"value-quantity=gt5.4|http://unitsofmeasure.org|mg&combo-code-value-quantity=http://loinc.org|8480-6$gt100",
		"a&b=&=&&code=x%26y%3Dz",
	} {
		vals, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []string{"Observation", "Patient"} {
			q, err := r.ParseQuery(typ, vals, false)
			if err != nil {
				t.Fatal(err)
			}
			enc := q.Encode()
			vals2, err := url.ParseQuery(enc)
			if err != nil {
				t.Fatalf("Encode gave an unparsable query %q: %v", enc, err)
			}
			q2, err := r.ParseQuery(typ, vals2, true)
			if err != nil {
				t.Fatalf("re-parsing %q: %v", enc, err)
			}
			if enc2 := q2.Encode(); enc2 != enc {
				t.Errorf("%s?%s: Encode not stable:\n%s\n%s", typ, query, enc, enc2)
			}
		}
	}
}

func TestMatchRanges(t *testing.T) {
	day := func(s string) (time.Time, time.Time) {
		lo, hi, ok := dateRange(s)
		if !ok {
			t.Fatalf("bad date %s", s)
		}
		return lo, hi
	}
	tests := []struct {
		prefix         Prefix
		search, target string
		want           bool
	}{
		{PrefixEq, "2020-01", "2020-01-15", true},
		{PrefixEq, "2020-01-15", "2020-01", false},
		{PrefixEq, "2020", "2020-12-31T23:59:59Z", true},
		{PrefixNe, "2020-01", "2020-02-01", true},
		{PrefixGt, "2020-01-15", "2020-01-16", true},
		{PrefixGt, "2020-01-15", "2020-01-15T10:00:00Z", false},
		{PrefixGt, "2020-01-15", "2020-01", true},
		{PrefixLt, "2020-01-15", "2020-01-14", true},
		{PrefixLt, "2020-01-15", "2020-01-15", false},
		{PrefixGe, "2020-01-15", "2020-01-15T10:00:00Z", true},
		{PrefixGe, "2020-01-15", "2020-01-14", false},
		{PrefixLe, "2020-01-15", "2020-01-15T10:00:00Z", true},
		{PrefixLe, "2020-01-15", "2020-01-16", false},
		{PrefixSa, "2020-01-15", "2020-01-16", true},
		{PrefixSa, "2020-01-15", "2020-01", false},
		{PrefixEb, "2020-01-15", "2020-01-14T23:59:59Z", true},
		{PrefixEb, "2020-01-15", "2020-01", false},
		{PrefixAp, "2020-01-15", "2020-01", true},
	}
	for _, tc := range tests {
		sLo, sHi := day(tc.search)
		tLo, tHi := day(tc.target)
		if got := MatchTime(tc.prefix, sLo, sHi, tLo, tHi); got != tc.want {
			t.Errorf("%s%s vs %s = %v, want %v", tc.prefix, tc.search, tc.target, got, tc.want)
		}
	}
	num := []struct {
		prefix         Prefix
		search, target string
		want           bool
	}{
		{PrefixEq, "100", "100.2", true},
		{PrefixEq, "100", "100.5", false},
		{PrefixEq, "100.0", "100.2", false},
		{PrefixGt, "100", "101", true},
		{PrefixGt, "100", "100.1", false},
		{PrefixLt, "100", "99", true},
		{PrefixGe, "100", "100", true},
		{PrefixLe, "1e2", "90", true},
		{PrefixNe, "100", "100", false},
	}
	for _, tc := range num {
		_, sLo, sHi, _ := numberRange(tc.search)
		_, tLo, tHi, _ := numberRange(tc.target)
		if got := MatchNumber(tc.prefix, sLo, sHi, tLo, tHi); got != tc.want {
			t.Errorf("%s%s vs %s = %v, want %v", tc.prefix, tc.search, tc.target, got, tc.want)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"code=http://loinc.org|8302-2", "date=ge2020-01-01&_sort=-date", "subject:Patient.name=x",
		"_has:Observation:patient:code=1", `name=a\,b`, "value-quantity=5.4||mg", "_include:iterate=*",
		"code-value-quantity=a|b$gt1", "==&&=", "_count=99999999999999999999",
	} {
		f.Add("Observation", s)
		f.Add("Patient", s)
	}
	r, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, query string) {
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, err := r.ParseQuery(typ, vals, false)
		if err != nil {
			return
		}
		enc := q.Encode()
		vals2, err := url.ParseQuery(enc)
		if err != nil {
			t.Fatalf("Encode gave an unparsable query %q: %v", enc, err)
		}
		q2, err := r.ParseQuery(typ, vals2, true)
		if err != nil {
			t.Fatalf("re-parsing %q strictly: %v", enc, err)
		}
		if enc2 := q2.Encode(); enc2 != enc {
			t.Fatalf("Encode not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func BenchmarkParseQuery(b *testing.B) {
	r := testRegistry(b)
	vals, err := url.ParseQuery("patient=Patient/123&code=http://loinc.org|8302-2,http://loinc.org|29463-7&date=ge2020-01-01&date=lt2021&_sort=-date&_count=50&_include=Observation:patient")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ParseQuery("Observation", vals, true); err != nil {
			b.Fatal(err)
		}
	}
}
