package auth

import (
	"reflect"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

func TestParsePerm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Perm
		ok   bool
	}{
		{"r", PermRead, true},
		{"rs", PermRead | PermSearch, true},
		{"cruds", permAll, true},
		{"cud", PermCreate | PermUpdate | PermDelete, true},
		{"s", PermSearch, true},
		{"", 0, false},
		{"sr", 0, false},     // out of order
		{"rr", 0, false},     // repeated
		{"dus", 0, false},    // out of order
		{"x", 0, false},      // unknown letter
		{"crudsx", 0, false}, // too long
		{"R", 0, false},      // case matters
		{"read", 0, false},   // v1 word is not letters
	} {
		got, ok := ParsePerm(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParsePerm(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && got.String() != tc.in {
			t.Errorf("Perm(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []Scope // Raw is filled from the input
		invalid []string
	}{
		{in: "patient/Observation.rs", want: []Scope{{Context: ContextPatient, Type: "Observation", Perms: PermRead | PermSearch}}},
		{in: "user/*.cruds", want: []Scope{{Context: ContextUser, Type: "*", Perms: permAll}}},
		{in: "system/*.rs", want: []Scope{{Context: ContextSystem, Type: "*", Perms: PermRead | PermSearch}}},
		{in: "patient/*.read", want: []Scope{{Context: ContextPatient, Type: "*", Perms: PermRead | PermSearch, V1: true}}},
		{in: "patient/Patient.write", want: []Scope{{Context: ContextPatient, Type: "Patient", Perms: PermCreate | PermUpdate | PermDelete, V1: true}}},
		{in: "system/*.*", want: []Scope{{Context: ContextSystem, Type: "*", Perms: permAll, V1: true}}},
		{
			in: "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			want: []Scope{{Context: ContextPatient, Type: "Observation", Perms: PermRead | PermSearch,
				Filter: Filter{{"category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}}},
		},
		{
			in: "user/Observation.rs?category=vital-signs&status=final",
			want: []Scope{{Context: ContextUser, Type: "Observation", Perms: PermRead | PermSearch,
				Filter: Filter{{"category", "vital-signs"}, {"status", "final"}}}},
		},
		{ // percent-encoded constraint values are decoded
			in: "patient/Observation.rs?code=http%3A%2F%2Floinc.org%7C1234-5",
			want: []Scope{{Context: ContextPatient, Type: "Observation", Perms: PermRead | PermSearch,
				Filter: Filter{{"code", "http://loinc.org|1234-5"}}}},
		},
		// Non-resource scopes are kept (Has) but grant nothing.
		{in: "openid fhirUser launch/patient offline_access"},
		// Malformed resource scopes are ignored and listed.
		{in: "patient/Observation.sr", invalid: []string{"patient/Observation.sr"}},
		{in: "patient/Observation.", invalid: []string{"patient/Observation."}},
		{in: "patient/Observation", invalid: []string{"patient/Observation"}},
		{in: "patient/NotAType.rs", invalid: []string{"patient/NotAType.rs"}},
		{in: "patient/observation.rs", invalid: []string{"patient/observation.rs"}},
		{in: "patient/.rs", invalid: []string{"patient/.rs"}},
		{in: "patient/*.rs?", invalid: []string{"patient/*.rs?"}},
		{in: "patient/*.rs?category", invalid: []string{"patient/*.rs?category"}},
		{in: "patient/*.rs?=x", invalid: []string{"patient/*.rs?=x"}},
		{in: "patient/*.rs?a=%zz", invalid: []string{"patient/*.rs?a=%zz"}},
		{in: "patient/*.read?category=x", invalid: []string{"patient/*.read?category=x"}}, // v1 has no constraints
		{in: "patient/*.rs.rs", invalid: []string{"patient/*.rs.rs"}},
		{in: "patient//Observation.rs", invalid: []string{"patient//Observation.rs"}},
		// Unknown contexts are not resource scopes at all.
		{in: "Patient/*.rs admin/*.cruds"},
		// Whitespace of any kind separates; duplicates are harmless.
		{in: "  system/*.rs\tsystem/*.rs \n", want: []Scope{
			{Context: ContextSystem, Type: "*", Perms: PermRead | PermSearch, Raw: "system/*.rs"},
			{Context: ContextSystem, Type: "*", Perms: PermRead | PermSearch, Raw: "system/*.rs"}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s := ParseScopes(tc.in)
			got := s.Scopes()
			want := tc.want
			for i := range want {
				if want[i].Raw == "" {
					want[i].Raw = strings.TrimSpace(tc.in)
				}
			}
			if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
				t.Errorf("scopes = %+v\nwant %+v", got, want)
			}
			if !reflect.DeepEqual(s.Invalid(), tc.invalid) {
				t.Errorf("invalid = %q, want %q", s.Invalid(), tc.invalid)
			}
		})
	}
}

func TestScopeSetHostile(t *testing.T) {
	many := strings.Repeat("system/*.rs ", 1000)
	if n := len(ParseScopes(many).Scopes()); n != maxScopes {
		t.Errorf("parsed %d scopes, want the limit %d", n, maxScopes)
	}
	long := "patient/Observation.rs?code=" + strings.Repeat("a", 5000)
	s := ParseScopes(long)
	if !s.Empty() || len(s.Invalid()) != 1 || len(s.Invalid()[0]) > 64 {
		t.Errorf("an oversized scope must be refused and reported short: %v", s.Invalid())
	}
	s = ParseScopes("patient/*.rs\x00 system/*.rs")
	if s.Allows(ContextPatient, "Observation", PermRead) {
		t.Errorf("a scope with a NUL byte was accepted")
	}
	var zero ScopeSet
	if zero.Allows(ContextSystem, "Patient", PermRead) || !zero.Empty() {
		t.Errorf("the zero ScopeSet grants something")
	}
	if !zero.Check(ContextSystem, "Patient", PermNone).Allowed {
		t.Errorf("PermNone must always be allowed")
	}
}

func TestScopeCheck(t *testing.T) {
	lab := Filter{{"category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}
	vital := Filter{{"category", "vital-signs"}}
	for _, tc := range []struct {
		name   string
		scopes string
		ctx    Context
		typ    string
		perms  Perm
		want   Decision
	}{
		{"exact type", "patient/Observation.rs", ContextPatient, "Observation", PermRead, Decision{Allowed: true}},
		{"other type", "patient/Observation.rs", ContextPatient, "Condition", PermRead, Decision{}},
		{"wildcard", "patient/*.r", ContextPatient, "Condition", PermRead, Decision{Allowed: true}},
		{"missing letter", "patient/*.r", ContextPatient, "Condition", PermSearch, Decision{}},
		{"write does not imply read", "patient/*.cud", ContextPatient, "Condition", PermRead, Decision{}},
		{"read does not imply write", "patient/*.rs", ContextPatient, "Condition", PermUpdate, Decision{}},
		{"v1 read", "user/*.read", ContextUser, "Encounter", PermSearch, Decision{Allowed: true}},
		{"v1 write", "user/*.write", ContextUser, "Encounter", PermDelete, Decision{Allowed: true}},
		{"v1 write no read", "user/*.write", ContextUser, "Encounter", PermRead, Decision{}},
		{"v1 star", "system/*.*", ContextSystem, "Encounter", permAll, Decision{Allowed: true}},
		{"context matters", "patient/*.rs", ContextSystem, "Observation", PermRead, Decision{}},
		{"context matters 2", "system/*.rs", ContextUser, "Observation", PermRead, Decision{}},
		{"two bits from two scopes", "patient/Observation.r patient/Observation.s", ContextPatient, "Observation", PermRead | PermSearch, Decision{Allowed: true}},
		{"two bits, one missing", "patient/Observation.r", ContextPatient, "Observation", PermRead | PermSearch, Decision{}},
		{"constrained", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			ContextPatient, "Observation", PermRead, Decision{Allowed: true, Filters: []Filter{lab}}},
		{"constrained wrong type", "patient/Observation.rs?category=vital-signs", ContextPatient, "Condition", PermRead, Decision{}},
		{"constraints OR", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Observation.rs?category=vital-signs",
			ContextPatient, "Observation", PermSearch, Decision{Allowed: true, Filters: []Filter{lab, vital}}},
		{"unconstrained wins", "patient/Observation.rs?category=vital-signs patient/Observation.rs",
			ContextPatient, "Observation", PermRead, Decision{Allowed: true}},
		{"wildcard unconstrained wins", "patient/Observation.rs?category=vital-signs patient/*.r",
			ContextPatient, "Observation", PermRead, Decision{Allowed: true}},
		{"constraints per bit AND", "patient/Observation.r?category=vital-signs patient/Observation.s?status=final",
			ContextPatient, "Observation", PermRead | PermSearch,
			Decision{Allowed: true, Filters: []Filter{{{"category", "vital-signs"}, {"status", "final"}}}}},
		{"constrained bit and free bit", "patient/Observation.r patient/Observation.s?status=final",
			ContextPatient, "Observation", PermRead | PermSearch,
			Decision{Allowed: true, Filters: []Filter{{{"status", "final"}}}}},
		{"malformed ignored", "patient/Observation.sr", ContextPatient, "Observation", PermRead, Decision{}},
		{"none", "", ContextPatient, "Observation", PermNone, Decision{Allowed: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseScopes(tc.scopes).Check(tc.ctx, tc.typ, tc.perms)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Check = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestScopeFilterCombinationLimit(t *testing.T) {
	var b strings.Builder
	for i := range 10 {
		b.WriteString(" patient/Observation.r?code=r" + string(rune('a'+i)))
		b.WriteString(" patient/Observation.s?code=s" + string(rune('a'+i)))
	}
	s := ParseScopes(b.String())
	if d := s.Check(ContextPatient, "Observation", PermRead); len(d.Filters) != 10 {
		t.Fatalf("one bit: %d filters, want 10", len(d.Filters))
	}
	// 10 x 10 = 100 combinations exceed the limit: refused, not computed.
	if d := s.Check(ContextPatient, "Observation", PermRead|PermSearch); d.Allowed {
		t.Errorf("a combination beyond the limit was allowed with %d filters", len(d.Filters))
	}
}

func TestPrincipalCheckContexts(t *testing.T) {
	scopes := ParseScopes("patient/Observation.rs user/Condition.rs system/Encounter.rs")
	for _, tc := range []struct {
		kind Kind
		typ  string
		want bool
	}{
		{KindPatient, "Observation", true},
		{KindPatient, "Condition", true},
		{KindPatient, "Encounter", false},
		{KindProvider, "Observation", false},
		{KindProvider, "Condition", true},
		{KindProvider, "Encounter", true},
		{KindSystem, "Observation", false},
		{KindSystem, "Condition", false},
		{KindSystem, "Encounter", true},
		{KindAnonymous, "Encounter", false},
	} {
		p := &Principal{Kind: tc.kind, Scopes: scopes}
		if got := p.Check(tc.typ, PermRead).Allowed; got != tc.want {
			t.Errorf("%s on %s: allowed = %v, want %v", tc.kind, tc.typ, got, tc.want)
		}
	}
}

func TestInteractionPerm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Perm
		ok   bool
	}{
		{InteractionRead, PermRead, true},
		{InteractionVRead, PermRead, true},
		{InteractionHistoryInstance, PermRead, true},
		{InteractionHistoryType, PermSearch, true},
		{InteractionHistorySystem, PermSearch, true},
		{InteractionSearchType, PermSearch, true},
		{InteractionSearchSystem, PermSearch, true},
		{InteractionCreate, PermCreate, true},
		{InteractionUpdate, PermUpdate, true},
		{InteractionPatch, PermUpdate, true},
		{InteractionDelete, PermDelete, true},
		{InteractionCapabilities, PermNone, true},
		{InteractionOperation, PermNone, false},
		{InteractionTransaction, PermNone, false},
		{"frobnicate", PermNone, false},
	} {
		got, ok := InteractionPerm(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("InteractionPerm(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want Perm
		ok   bool
	}{
		{"$everything", PermRead | PermSearch, true},
		{"everything", PermRead | PermSearch, true},
		{"$summary", PermRead | PermSearch, true},
		{"$export", PermRead | PermSearch, true},
		{"$meta-add", PermUpdate, true},
		{"$validate", PermRead, true},
		{"$drop-database", PermNone, false},
	} {
		got, ok := OperationPerm(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("OperationPerm(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDecisionMatches(t *testing.T) {
	reg, err := search.New(search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lab, err := fhir.Parse([]byte(`{"resourceType":"Observation","id":"o1","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	vital, err := fhir.Parse([]byte(`{"resourceType":"Observation","id":"o2","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scopes           string
		wantLab, wantVit bool
	}{
		{"patient/Observation.rs", true, true},
		{"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", true, false},
		{"patient/Observation.rs?category=laboratory", true, false},
		{"patient/Observation.rs?category=laboratory&status=final", true, false},
		{"patient/Observation.rs?category=laboratory&status=preliminary", false, false},
		{"patient/Observation.rs?category=laboratory patient/Observation.rs?code=http://loinc.org|8867-4", true, true},
		{"patient/Observation.rs?not-a-param=x", false, false}, // unknown parameters match nothing
		{"patient/Observation.rs?_count=5", false, false},      // a result parameter constrains nothing: refused
		{"patient/Condition.rs", false, false},
	} {
		d := ParseScopes(tc.scopes).Check(ContextPatient, "Observation", PermRead)
		for _, c := range []struct {
			res  *fhir.Resource
			want bool
		}{{lab, tc.wantLab}, {vital, tc.wantVit}} {
			got, err := d.Matches(reg, c.res)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("%q on %s: match = %v, want %v", tc.scopes, c.res.ID, got, c.want)
			}
		}
	}
}

func TestNormalizeFHIRUser(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Patient/123", "Patient/123", true},
		{"https://fhir.example.org/r4/Patient/123", "Patient/123", true},
		{"https://fhir.example.org/Practitioner/x/_history/2", "Practitioner/x", true},
		{"Practitioner/abc/", "Practitioner/abc", true},
		{"Patient", "", false},
		{"Patient/", "", false},
		{"Patient/a b", "", false},
		{"Foo/123", "", false},
		{"x/Patient/123", "", false}, // relative with a prefix is not a reference
		{"", "", false},
	} {
		got, ok := normalizeFHIRUser(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("normalizeFHIRUser(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
