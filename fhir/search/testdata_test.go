package search

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
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

func readTestdata(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := New(Options{BaseURL: "https://fhirgate.example.org/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func exampleResource(t testing.TB, rel string) *fhir.Resource {
	t.Helper()
	res, err := fhir.Parse(readTestdata(t, "fhir-r4-examples/"+rel))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var urnRef = regexp.MustCompile(`"urn:uuid:([0-9a-fA-F-]{36})"`)

// syntheaBundle loads a Synthea transaction bundle with its urn:uuid
// references rewritten to [type]/[id], as a transaction does before the
// resources are indexed, and returns the bundle's resources.
func syntheaBundle(t testing.TB, name string) []*fhir.Resource {
	t.Helper()
	data := readTestdata(t, "synthea-r4/"+name)
	b, err := fjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, e := range b.Get("entry").Items {
		id := strings.TrimPrefix(e.Get("fullUrl").String(), "urn:uuid:")
		types[id] = e.Get("resource").Get("resourceType").String()
	}
	data = urnRef.ReplaceAllFunc(data, func(m []byte) []byte {
		id := string(m[len(`"urn:uuid:`) : len(m)-1])
		if typ, ok := types[id]; ok {
			return []byte(`"` + typ + `/` + id + `"`)
		}
		return m
	})
	b, err = fjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []*fhir.Resource
	for _, e := range b.Get("entry").Items {
		res, err := fhir.FromValue(e.Get("resource"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res)
	}
	return out
}

func syntheaFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(testdataDir(t), "synthea-r4"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, e.Name())
		}
	}
	return out
}
