package validate

import (
	"os"
	"path/filepath"
	"testing"
)

// testdataDir finds ../shared/testdata next to the module root, or skips.
func testdataDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			td := filepath.Join(dir, "..", "shared", "testdata")
			if _, err := os.Stat(td); err != nil {
				tb.Skipf("shared test data not found at %s", td)
			}
			return td
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Skip("module root not found")
		}
		dir = parent
	}
}

// readFiles reads the files matching pattern under the test data directory.
func readFiles(tb testing.TB, pattern string) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(testdataDir(tb), pattern))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Skipf("no files match %s", pattern)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[f] = data
	}
	return out
}
