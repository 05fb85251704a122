package search

import (
	"slices"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

func TestRegistryParams(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		typ, code string
		ptype     ParamType
		expr      string
	}{
		{"Observation", "code", TypeToken, "Observation.code"},
		{"Observation", "_id", TypeToken, "Resource.id"},
		{"Bundle", "_id", TypeToken, "Resource.id"},
		{"Observation", "_lastUpdated", TypeDate, "Resource.meta.lastUpdated"},
		{"Patient", "_profile", TypeURI, "Resource.meta.profile"},
		{"Patient", "_tag", TypeToken, "Resource.meta.tag"},
		{"Patient", "_text", TypeString, ""},
		{"CarePlan", "patient", TypeReference, "CarePlan.subject.where(resolve() is Patient)"},
		{"AllergyIntolerance", "patient", TypeReference, "AllergyIntolerance.patient"},
		{"Patient", "phone", TypeToken, "Patient.telecom.where(system='phone')"},
		{"Observation", "value-quantity", TypeQuantity, "(Observation.value as Quantity) | (Observation.value as SampledData)"},
		{"Observation", "combo-code-value-quantity", TypeComposite, "Observation | Observation.component"},
		{"Patient", "deceased", TypeToken, "Patient.deceased.exists() and Patient.deceased != false"},
		{"Location", "near", TypeSpecial, "Location.position"},
		{"Patient", "_has", TypeSpecial, ""},
		{"ValueSet", "context-quantity", TypeQuantity, "(ValueSet.useContext.value as Quantity) | (ValueSet.useContext.value as Range)"},
		{"", "_id", TypeToken, "Resource.id"},
		{"", "_type", TypeToken, ""},
	}
	for _, tc := range tests {
		p, ok := r.Param(tc.typ, tc.code)
		if !ok {
			t.Errorf("%s.%s missing", tc.typ, tc.code)
			continue
		}
		if p.Type != tc.ptype || p.Expression != tc.expr || p.ResourceType != tc.typ {
			t.Errorf("%s.%s = %v %q (%s), want %v %q", tc.typ, tc.code, p.Type, p.Expression, p.ResourceType, tc.ptype, tc.expr)
		}
	}
	for _, missing := range [][2]string{{"Bundle", "_text"}, {"Parameters", "_text"}, {"Patient", "nope"}, {"Nope", "_id"}, {"", "code"}} {
		if _, ok := r.Param(missing[0], missing[1]); ok {
			t.Errorf("%s.%s exists", missing[0], missing[1])
		}
	}

	cv, _ := r.Param("Observation", "code-value-quantity")
	if len(cv.Components) != 2 || cv.Components[0].Code != "code" || cv.Components[0].Type != TypeToken ||
		cv.Components[1].Code != "value-quantity" || cv.Components[1].Type != TypeQuantity {
		t.Errorf("code-value-quantity components = %+v", cv.Components)
	}
	subj, _ := r.Param("Observation", "subject")
	if !subj.HasTarget("Patient") || subj.HasTarget("Observation") {
		t.Errorf("Observation.subject targets = %v", subj.Targets)
	}
}

// TestRegistryCoversEveryType checks that every resource type has the
// Resource parameters and that every parameter other than the ones with
// no FHIRPath in the specification has an expression for its type.
func TestRegistryCoversEveryType(t *testing.T) {
	r := testRegistry(t)
	noExpr := map[string]bool{"_text": true, "_content": true, "_query": true, "_has": true, "_list": true}
	total := 0
	for _, rt := range fhir.ResourceTypes {
		ps := r.Params(rt)
		total += len(ps)
		if !slices.IsSortedFunc(ps, func(a, b *Param) int {
			if a.Code < b.Code {
				return -1
			}
			return 1
		}) {
			t.Errorf("%s params not sorted", rt)
		}
		for _, code := range []string{"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_has", "_list"} {
			if _, ok := r.Param(rt, code); !ok {
				t.Errorf("%s lacks %s", rt, code)
			}
		}
		for _, p := range ps {
			if p.Expression == "" && !noExpr[p.Code] {
				t.Errorf("%s.%s (%v) has no expression", rt, p.Code, p.Type)
			}
			if p.Expression != "" && p.Type != TypeSpecial && p.expr == nil {
				t.Errorf("%s.%s not compiled", rt, p.Code)
			}
			if p.Type == TypeComposite && len(p.Components) < 2 {
				t.Errorf("%s.%s: %d components", rt, p.Code, len(p.Components))
			}
		}
	}
	t.Logf("%d parameters over %d resource types", total, len(fhir.ResourceTypes))
	if total < 2500 {
		t.Errorf("only %d parameters", total)
	}
}

func TestPatientCompartment(t *testing.T) {
	r := testRegistry(t)
	tests := map[string][]string{
		"Observation":        {"subject", "performer"},
		"Patient":            {"link"},
		"Encounter":          {"patient"},
		"AllergyIntolerance": {"patient", "recorder", "asserter"},
		"Organization":       nil,
		"Practitioner":       nil,
	}
	for typ, want := range tests {
		if got := r.PatientCompartment(typ); !slices.Equal(got, want) {
			t.Errorf("PatientCompartment(%s) = %v, want %v", typ, got, want)
		}
		if got := r.InPatientCompartment(typ); got != (want != nil) {
			t.Errorf("InPatientCompartment(%s) = %v", typ, got)
		}
	}
}

func TestExprForType(t *testing.T) {
	tests := []struct{ expr, typ, want string }{
		{"A.x | B.y.where(resolve() is Patient) | (C.z as Quantity)", "B", "B.y.where(resolve() is Patient)"},
		{"A.x | B.y | (C.z as Quantity)", "C", "(C.z as Quantity)"},
		{"Observation | Observation.component", "Observation", "Observation | Observation.component"},
		{"A.x.where(a = 'p|q') | B.y", "A", "A.x.where(a = 'p|q')"},
		{"A.x", "B", ""},
		{"Resource.id", "Patient", "Resource.id"},
		{"value.as(Quantity) | value.as(Range)", "X", "value.as(Quantity) | value.as(Range)"},
	}
	for _, tc := range tests {
		if got := exprForType(tc.expr, tc.typ); got != tc.want {
			t.Errorf("exprForType(%q, %s) = %q, want %q", tc.expr, tc.typ, got, tc.want)
		}
	}
}

func TestTopMembers(t *testing.T) {
	tests := []struct {
		expr, typ string
		want      []string
	}{
		{"Observation.code", "Observation", []string{"code"}},
		{"(Observation.value as Quantity) | (Observation.value as SampledData)", "Observation", []string{"value", "value"}},
		{"Resource.meta.lastUpdated", "Patient", []string{"meta"}},
		{"Observation | Observation.component", "Observation", nil},
		{"Patient.deceased.exists() and Patient.deceased != false", "Patient", nil},
		{"%resource.x", "Patient", nil},
	}
	for _, tc := range tests {
		if got := topMembers(tc.expr, tc.typ); !slices.Equal(got, tc.want) {
			t.Errorf("topMembers(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := map[string]string{
		"Adán":             "adan",
		"  Peter   James ": "peter james",
		"MÜLLER":           "muller",
		"Straße":           "strasse",
		"Łódź":             "lodz",
		"Ærø":              "aero",
		"Ἀθῆναι":           "αθηναι",
		"Й":                "и",
		"e\u0301":          "e",
		"":                 "",
		"abc":              "abc",
		"a\tb":             "a b",
		"\xff":             "",
	}
	for in, want := range tests {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
