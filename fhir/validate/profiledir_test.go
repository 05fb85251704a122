package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddProfileDir(t *testing.T) {
	dir := t.TempDir()
	sd := testProfile(t)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("StructureDefinition-test.json", string(sd))
	write("ValueSet-x.json", `{"resourceType":"ValueSet","url":"http://x"}`)
	write("package.json", `{"name":"x.y.z","version":"1.0.0"}`)
	write("notes.txt", `not json`)
	write("broken.json", `{`)
	if err := os.Mkdir(filepath.Join(dir, "other"), 0o700); err != nil {
		t.Fatal(err)
	}
	v := New(Options{})
	n, err := v.AddProfileDir(dir)
	if err != nil || n != 1 || !v.HasProfile(testProfileURL) {
		t.Fatalf("AddProfileDir = %d, %v", n, err)
	}
	// a StructureDefinition that cannot be loaded names its file
	write("StructureDefinition-bad.json", strings.Replace(string(sd), `"type":"Patient"`, `"type":"Nonsense"`, 1))
	if _, err := New(Options{}).AddProfileDir(dir); err == nil || !strings.Contains(err.Error(), "StructureDefinition-bad.json") {
		t.Errorf("bad profile: %v", err)
	}
	if _, err := New(Options{}).AddProfileDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing directory loaded")
	}
}
