package fjson

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// syntheaBundles reads the Synthea transaction Bundles of the shared test
// data (what a bulk load parses), or skips.
func syntheaBundles(b *testing.B) ([][]byte, int64) {
	files, _ := filepath.Glob(sharedtest.Path(b, "synthea-r4", "*.json"))
	if len(files) == 0 {
		b.Skip("no Synthea bundles in the shared test data")
	}
	var (
		docs [][]byte
		n    int64
	)
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, d)
		n += int64(len(d))
	}
	return docs, n
}

// BenchmarkSynthea checks and parses every Synthea Bundle, as a
// transaction's body is (CheckLimits, then Parse).
func BenchmarkSynthea(b *testing.B) {
	docs, n := syntheaBundles(b)
	b.Run("CheckLimits", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			for _, d := range docs {
				if _, err := CheckLimits(d, 0, 0); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	parse := func(docs [][]byte, n int64) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetBytes(n)
			b.ReportAllocs()
			for b.Loop() {
				for _, d := range docs {
					if _, err := Parse(d); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	b.Run("Parse", parse(docs, n))
	// the same Bundles as a client that does not indent sends them
	var (
		compact [][]byte
		cn      int64
	)
	for _, d := range docs {
		v, err := Parse(d)
		if err != nil {
			b.Fatal(err)
		}
		c := AppendCompact(nil, v)
		compact = append(compact, c)
		cn += int64(len(c))
	}
	b.Run("ParseCompact", parse(compact, cn))
}
