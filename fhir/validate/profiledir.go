package validate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// AddProfileDir loads every StructureDefinition among the JSON files of a
// directory, as found in the package/ directory of a FHIR NPM package (the
// IPS is hl7.fhir.uv.ips): other resources (ValueSets, examples,
// package.json) are skipped. It returns how many StructureDefinitions were
// read; the first one that cannot be loaded is an error naming its file.
func (v *Validator) AddProfileDir(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("load profiles: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	n := 0
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return n, fmt.Errorf("load profiles: %w", err)
		}
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(b, &head) != nil || head.ResourceType != "StructureDefinition" {
			continue
		}
		if err := v.AddProfile(b); err != nil {
			return n, fmt.Errorf("%s: %w", name, err)
		}
		n++
	}
	return n, nil
}
