package validate

import (
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

func countEntries(tb testing.TB, data []byte) int {
	root, err := fjson.Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	return len(root.Get("entry").Items)
}

// BenchmarkSynthea measures parsing plus validation of the Synthea patient
// bundles (every entry validated), in MB/s and resources/s.
func BenchmarkSynthea(b *testing.B) {
	files := readFiles(b, "synthea-r4/*.json")
	benchFiles(b, files, New(Options{}))
}

// BenchmarkSyntheaNoInvariants is BenchmarkSynthea without FHIRPath
// invariants: the structural checks alone.
func BenchmarkSyntheaNoInvariants(b *testing.B) {
	files := readFiles(b, "synthea-r4/*.json")
	benchFiles(b, files, New(Options{SkipInvariants: true}))
}

// BenchmarkSyntheaParseOnly is the fjson parse alone, for comparison.
func BenchmarkSyntheaParseOnly(b *testing.B) {
	files := readFiles(b, "synthea-r4/*.json")
	var total int64
	for _, d := range files {
		total += int64(len(d))
	}
	b.SetBytes(total)
	for b.Loop() {
		for _, d := range files {
			if _, err := fjson.Parse(d); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func benchFiles(b *testing.B, files map[string][]byte, v *Validator) {
	var total int64
	resources := 0
	for _, d := range files {
		total += int64(len(d))
		resources += countEntries(b, d) + 1
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		for name, d := range files {
			issues := v.ValidateJSON(d)
			if HasErrors(issues) {
				b.Fatalf("%s: %v", name, issues[0])
			}
		}
	}
	b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkValidateObservation is the cost of validating one small resource
// (already parsed), as on a REST write.
func BenchmarkValidateObservation(b *testing.B) {
	root, err := fjson.Parse([]byte(baseObservation))
	if err != nil {
		b.Fatal(err)
	}
	v := New(Options{})
	b.SetBytes(int64(len(baseObservation)))
	for b.Loop() {
		if issues := v.ValidateValue(root); len(issues) > 0 {
			b.Fatal(issues)
		}
	}
}
