package conformance

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/conformance/internal/samplegen"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
)

// moduleRoot walks up from the package directory to go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func TestSamplesUpToDate(t *testing.T) {
	b, err := samplegen.GenerateFromModule(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, samplesJSON) {
		t.Fatal("samples.json is stale: run go generate ./conformance/")
	}
}

// TestSamplesValid checks every resource the suite creates: the minimal
// instance of each of the 146 types and every sample pair.
func TestSamplesValid(t *testing.T) {
	d, err := loadSamples()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Types) != len(fhir.ResourceTypes) {
		t.Fatalf("%d types, want %d", len(d.Types), len(fhir.ResourceTypes))
	}
	ref := func(typ string, n int) string { return "ref" + string(rune('a'+n)) }
	check := func(what string, tmpl []byte) {
		body := samplegen.Substitute(string(tmpl), "u0123456789", ref)
		if strings.Contains(body, "%") && strings.Contains(body, "%R:") {
			t.Errorf("%s: placeholder left: %.200s", what, body)
		}
		for _, is := range validate.Default().ValidateJSON([]byte(body)) {
			if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
				t.Errorf("%s: %v %s", what, is.Expression, is.Details.Text)
			}
		}
	}
	samples := 0
	for i, td := range d.Types {
		if td.Type != fhir.ResourceTypes[i] {
			t.Fatalf("type %d is %s, want %s", i, td.Type, fhir.ResourceTypes[i])
		}
		check(td.Type+" minimal", td.Minimal)
		for j, p := range td.Pairs {
			check(td.Type+" pair A", p.A)
			check(td.Type+" pair B", p.B)
			if bytes.Equal(p.A, p.B) {
				t.Errorf("%s pair %d: A and B are the same", td.Type, j)
			}
		}
		for _, s := range td.Samples {
			samples++
			if s.Pair < 0 || s.Pair >= len(td.Pairs) || s.A == s.B {
				t.Errorf("%s sample %s: pair %d of %d, queries %q %q", td.Type, s.Param, s.Pair, len(td.Pairs), s.A, s.B)
			}
		}
	}
	if samples < 2200 {
		t.Errorf("only %d search samples; the generator regressed", samples)
	}
}

// TestSamplesCoverParamTypes: the suite's search claims are per resource
// type and parameter type, so each pair of them needs a sample.
func TestSamplesCoverParamTypes(t *testing.T) {
	d, err := loadSamples()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := search.New(search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range fhir.ResourceTypes {
		have := map[string]bool{}
		for _, s := range d.Type(typ).Samples {
			have[s.Kind] = true
		}
		for _, p := range reg.Params(typ) {
			k := p.Type.String()
			if strings.HasPrefix(p.Code, "_") || k == "special" || have[k] {
				continue
			}
			t.Errorf("%s: no sample of a %s parameter (e.g. %s)", typ, k, p.Code)
			have[k] = true
		}
	}
}
