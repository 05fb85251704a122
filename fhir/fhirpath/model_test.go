package fhirpath

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestModelUpToDate regenerates model.txt from the StructureDefinitions
// and compares it with the embedded copy.
func TestModelUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the generator")
	}
	defs := filepath.Join(testdataDir(t), "fhir-r4-definitions")
	out := filepath.Join(t.TempDir(), "model.txt")
	cmd := exec.Command("go", "run", "./internal/modelgen", "-o", out,
		filepath.Join(defs, "profiles-resources.assembled.json"), filepath.Join(defs, "profiles-types.json"))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("modelgen: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != modelText {
		t.Error("model.txt is stale: run go generate ./fhir/fhirpath")
	}
}

func TestModelLookups(t *testing.T) {
	tests := []struct {
		typ, name, want string
		choice, ok      bool
	}{
		{"Observation", "status", "code", false, true},
		{"Observation", "value", "", true, true},
		{"Observation", "valueQuantity", "Quantity", false, true},
		{"Observation", "component", "Observation.component", false, true},
		{"Questionnaire.item", "item", "Questionnaire.item", false, true},
		{"Patient", "id", "string", false, true},
		{"Bundle.entry", "resource", "Resource", false, true},
		{"Observation", "nope", "", false, false},
		{"Nope", "id", "", false, false},
	}
	for _, tc := range tests {
		typ, choice, ok := ElementType(tc.typ, tc.name)
		if typ != tc.want || choice != tc.choice || ok != tc.ok {
			t.Errorf("ElementType(%s, %s) = %q %v %v", tc.typ, tc.name, typ, choice, ok)
		}
	}
	for typ, anc := range map[string]string{"Age": "Quantity", "code": "string", "Patient": "Resource", "Observation.component": "Element"} {
		if !isSubtype(typ, anc) {
			t.Errorf("%s is not a %s", typ, anc)
		}
	}
	if isSubtype("Quantity", "Age") || !IsType("Observation.component") || IsType("Observation.value") {
		t.Error("bad subtype or IsType answer")
	}
}
