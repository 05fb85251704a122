package fhirpath

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// testdataDir returns <moduleRoot>/../shared/testdata, skipping the test
// when it is absent.
func testdataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
	td := filepath.Join(dir, "..", "shared", "testdata")
	if _, err := os.Stat(td); err != nil {
		t.Skipf("shared test data not found at %s", td)
	}
	return td
}

func loadJSON(t testing.TB, rel string) *fjson.Value {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	v, err := fjson.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return v
}
