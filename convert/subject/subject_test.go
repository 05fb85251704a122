package subject

import (
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

func patient(t *testing.T, body string) Demographics {
	t.Helper()
	r, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return FromPatient(r)
}

func TestCompare(t *testing.T) {
	target := patient(t, `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"MRN-1"},{"system":"urn:oid:1.2.3","value":"MRN-OLD"},{"system":"http://hospital.example/ssn","value":"999"}],
		"name":[{"use":"official","family":"García López","given":["María","José"]},{"use":"maiden","family":"Pérez"}],"birthDate":"1970-05-12","gender":"female"}`)
	name := func(family string, given ...string) []Name {
		return []Name{{Family: family, Given: given, Path: "doc/name"}}
	}
	cases := []struct {
		name string
		doc  Demographics
		want []string // elements of the mismatches
	}{
		{"nothing said", Demographics{}, nil},
		{"same", Demographics{Names: name("García López", "María", "José"), BirthDate: Value{"1970-05-12", "b"}, Gender: Value{"female", "g"},
			Identifiers: []Identifier{{System: "urn:oid:1.2.3", Value: "MRN-1"}}}, nil},
		{"case, diacritics, order of given names", Demographics{Names: name("GARCIA LOPEZ", "jose", "maria")}, nil},
		{"one family name of two, an initial", Demographics{Names: name("Garcia", "M.")}, nil},
		{"family and given swapped", Demographics{Names: name("Maria", "Garcia")}, nil},
		{"a former name", Demographics{Names: name("Perez", "Maria")}, nil},
		{"text only", Demographics{Names: []Name{{Text: "Maria Garcia"}}}, nil},
		{"other name", Demographics{Names: name("Smith", "Maria")}, []string{"name"}},
		{"other given name", Demographics{Names: name("Garcia", "Ana")}, []string{"name"}},
		{"one compatible name of several", Demographics{Names: append(name("Smith", "Ann"), name("Garcia", "Maria")...)}, nil},
		{"birth date at a coarser precision", Demographics{BirthDate: Value{"1970-05", "b"}}, nil},
		{"other birth date", Demographics{BirthDate: Value{"1971-05-12", "b"}}, []string{"birthDate"}},
		{"unknown sex", Demographics{Gender: Value{"unknown", "g"}}, nil},
		{"other sex", Demographics{Gender: Value{"male", "g"}}, []string{"gender"}},
		{"an older identifier of the system", Demographics{Identifiers: []Identifier{{System: "urn:oid:1.2.3", Value: "MRN-OLD"}}}, nil},
		{"an identifier of another system", Demographics{Identifiers: []Identifier{{System: "urn:oid:9.9", Value: "X"}}}, nil},
		{"an identifier without a system", Demographics{Identifiers: []Identifier{{Value: "MRN-2"}}}, nil},
		{"a URI identifier", Demographics{Identifiers: []Identifier{{System: "urn:ietf:rfc:3986", Value: "urn:oid:1.2"}}}, nil},
		{"another value of the system", Demographics{Identifiers: []Identifier{{System: "urn:oid:1.2.3", Value: "MRN-2"}}}, []string{"identifier"}},
		{"everything wrong", Demographics{Identifiers: []Identifier{{System: "http://hospital.example/ssn", Value: "1"}}, Names: name("Doe", "John"), BirthDate: Value{"1980", "b"}, Gender: Value{"male", "g"}},
			[]string{"identifier", "name", "birthDate", "gender"}},
	}
	for _, tc := range cases {
		got := Compare(tc.doc, target)
		var els []string
		for _, m := range got {
			els = append(els, m.Element)
			if m.SourceValue == "" || m.TargetValue == "" || m.TargetPath == "" {
				t.Errorf("%s: incomplete mismatch %+v", tc.name, m)
			}
		}
		if len(els) != len(tc.want) {
			t.Errorf("%s: mismatches %v, want %v", tc.name, els, tc.want)
			continue
		}
		for i := range els {
			if els[i] != tc.want[i] {
				t.Errorf("%s: mismatches %v, want %v", tc.name, els, tc.want)
			}
		}
	}
	// a Patient that says nothing is contradicted by nothing
	if got := Compare(Demographics{Names: name("Doe"), BirthDate: Value{"1980", "b"}, Gender: Value{"male", "g"}}, patient(t, `{"resourceType":"Patient"}`)); len(got) != 0 {
		t.Errorf("empty Patient: %v", got)
	}
}

func TestSafeHasNoValues(t *testing.T) {
	m := Mismatch{Element: "name", SourcePath: "PID-5[1]", TargetPath: "Patient.name[0]", SourceValue: "John Doe", TargetValue: "Jane Roe"}
	if s := m.Safe(); strings.Contains(s, "John") || strings.Contains(s, "Jane") {
		t.Errorf("Safe() carries values: %s", s)
	}
}
