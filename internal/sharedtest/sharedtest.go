// Package sharedtest locates the shared public test data (../shared/testdata
// beside the module root) for tests, skipping them when it is absent.
package sharedtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// EnvVar overrides where the data is.
const EnvVar = "FHIRGATE_TESTDATA"

// Dir returns the test data directory, or skips the test with a clear
// message when it cannot be found.
func Dir(t testing.TB) string {
	t.Helper()
	d, ok := Find()
	if !ok {
		t.Skipf("shared test data not found: put it at ../shared/testdata beside the module root or set %s", EnvVar)
	}
	return d
}

// Find returns the directory and whether it exists.
func Find() (string, bool) {
	if d := os.Getenv(EnvVar); d != "" {
		return d, isDir(d)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..") // module root
	d := filepath.Join(root, "..", "shared", "testdata")
	return d, isDir(d)
}

// Path joins elements under the test data directory, skipping when absent.
func Path(t testing.TB, elem ...string) string {
	return filepath.Join(append([]string{Dir(t)}, elem...)...)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
