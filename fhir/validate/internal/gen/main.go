// Command gen writes the validator's compact model of the R4 definitions.
//
// It reads the official StructureDefinitions (profiles-resources and
// profiles-types), the required-binding ValueSets and CodeSystems in
// fhir-r4-definitions/valuesets, and, for required bindings whose value set
// is not there, the code enums that samply/golang-fhir-models generated from
// the same R4 release. Everything is resolved here, so that the validator
// only decodes one small gzipped JSON file at start-up.
//
// Run it through go generate in fhir/validate.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/validate/internal/defs"
)

// samplyPackage is samply's generated R4 model, whose code enums fill in
// the value sets the shared test data lacks. go.mod pins it with a tool
// directive (it is read as source, never linked).
const samplyPackage = "github.com/samply/golang-fhir-models/fhir-models/fhir"

func main() {
	testdata := flag.String("testdata", "../../../shared/testdata", "the shared test data directory")
	out := flag.String("out", "model.json.gz", "output file")
	samplyDir := flag.String("samply", "", "directory of samply's fhir package (default: from go list)")
	flag.Parse()
	if *samplyDir == "" {
		// go.mod pins the package with a tool directive; go list
		// downloads it when the module cache lacks it
		dir, err := exec.Command("go", "list", "-f", "{{.Dir}}", samplyPackage).Output()
		if err != nil {
			log.Fatalf("locate %s: %v", samplyPackage, err)
		}
		*samplyDir = strings.TrimSpace(string(dir))
	}
	m, stats, err := build(filepath.Join(*testdata, "fhir-r4-definitions"), *samplyDir)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s: %d types, %d value sets, %d code systems, %d constraints, %d bytes JSON, %d bytes gzipped\n%s",
		*out, len(m.Types), len(m.ValueSets), len(m.CodeSystems), len(m.Constraints), len(raw), buf.Len(), stats)
}

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

func readBundle(path string) ([]*defs.StructureDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []*defs.StructureDefinition
	for _, e := range b.Entry {
		var sd defs.StructureDefinition
		if err := json.Unmarshal(e.Resource, &sd); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if sd.ResourceType == "StructureDefinition" {
			out = append(out, &sd)
		}
	}
	return out, nil
}

func build(defsDir, samplyDir string) (*defs.Model, string, error) {
	var sds []*defs.StructureDefinition
	for _, f := range []string{"profiles-types.json", "profiles-resources.assembled.json"} {
		s, err := readBundle(filepath.Join(defsDir, f))
		if err != nil {
			return nil, "", err
		}
		sds = append(sds, s...)
	}
	terms, err := loadTerminology(filepath.Join(defsDir, "valuesets"))
	if err != nil {
		return nil, "", err
	}
	enums, err := loadSamplyEnums(samplyDir)
	if err != nil {
		return nil, "", err
	}
	var typeNames []string
	for _, sd := range sds {
		if sd.Derivation != "constraint" {
			typeNames = append(typeNames, sd.Type)
		}
	}
	typeNames = append(typeNames, "Resource", "Type", "Any")
	slices.Sort(typeNames)
	typeNames = slices.Compact(typeNames)

	m := &defs.Model{FHIRVersion: "4.0.1", Regexes: map[string]string{}}
	vsIndex := map[string]int{}
	unchecked := map[string][]string{}
	sources := map[string]int{}
	bind := func(url string, el *defs.SDElement) int {
		if i, ok := vsIndex[url]; ok {
			return i
		}
		vs, ok := resolveValueSet(url, el, terms, enums, typeNames)
		if !ok {
			unchecked[url] = append(unchecked[url], el.Path)
			return 0
		}
		m.ValueSets = append(m.ValueSets, vs)
		sources[vs.Source]++
		vsIndex[url] = len(m.ValueSets)
		return len(m.ValueSets)
	}
	var cons defs.ConstraintTable
	for _, sd := range sds {
		t, err := defs.Convert(sd, &cons, bind)
		if err != nil {
			return nil, "", err
		}
		if sd.Kind == "primitive-type" {
			for _, se := range sd.Snapshot.Element {
				if se.Path != sd.Type+".value" || len(se.Type) == 0 {
					continue
				}
				for _, x := range se.Type[0].Extension {
					if x.URL == "http://hl7.org/fhir/StructureDefinition/regex" {
						m.Regexes[sd.Type] = x.ValueString
					}
				}
			}
			// The value elements of primitives are implemented by hand.
			t.Elements = t.Elements[:1]
		}
		m.Types = append(m.Types, t)
	}
	m.Constraints = cons.List
	m.CodeSystems = terms.complete
	slices.SortFunc(m.CodeSystems, func(a, b defs.CodeSystem) int { return strings.Compare(a.URL, b.URL) })

	var st strings.Builder
	fmt.Fprintf(&st, "value sets by source: %v\n", sources)
	urls := make([]string, 0, len(unchecked))
	for u := range unchecked {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	fmt.Fprintf(&st, "%d required value sets without a code list:\n", len(urls))
	for _, u := range urls {
		fmt.Fprintf(&st, "  %s (%s)\n", u, strings.Join(unchecked[u], ", "))
	}
	return m, st.String(), nil
}

// resolveValueSet finds the codes of a required value set, preferring the
// official ValueSet, then samply's enum of its code system, then the
// enumeration in the element's short description, then the type names for
// the value sets of FHIR types.
func resolveValueSet(url string, el *defs.SDElement, terms *terminology, enums map[string][]string, typeNames []string) (defs.ValueSet, bool) {
	if codes, ok := terms.expand(url); ok {
		return defs.ValueSet{URL: url, Source: "valueset", Codes: codes}, true
	}
	if codes, ok := enums[url]; ok {
		vs := defs.ValueSet{URL: url, Source: "samply"}
		for _, c := range codes {
			vs.Codes = append(vs.Codes, defs.Code{Code: c})
		}
		return vs, true
	}
	switch url {
	case "http://hl7.org/fhir/ValueSet/all-types", "http://hl7.org/fhir/ValueSet/defined-types":
		vs := defs.ValueSet{URL: url, Source: "types"}
		for _, n := range typeNames {
			vs.Codes = append(vs.Codes, defs.Code{Code: n})
		}
		return vs, true
	}
	// A code-typed element whose short text is the complete list of codes
	// ("a | b | c"); a trailing "+" or "..." marks an incomplete list.
	if len(el.Type) == 1 && el.Type[0].Code == "code" && strings.Contains(el.Short, " | ") {
		parts := strings.Split(el.Short, " | ")
		var codes []defs.Code
		for i, p := range parts {
			p = strings.TrimSpace(p)
			if i == len(parts)-1 {
				var rest string
				p, rest, _ = strings.Cut(p, " ")
				if strings.HasPrefix(strings.TrimSpace(rest), "+") {
					return defs.ValueSet{}, false
				}
			}
			if p == "" || p == "+" || strings.Contains(p, "...") || strings.ContainsAny(p, " \t") {
				return defs.ValueSet{}, false
			}
			codes = append(codes, defs.Code{Code: p})
		}
		return defs.ValueSet{URL: url, Source: "short", Codes: codes}, true
	}
	return defs.ValueSet{}, false
}
