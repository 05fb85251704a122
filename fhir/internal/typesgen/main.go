// Command typesgen writes types_gen.go: the concrete R4 resource types (kind
// resource, a specialization, not abstract) of the official
// StructureDefinitions, sorted.
//
//	go run ./internal/typesgen ../../shared/testdata/fhir-r4-definitions/profiles-resources.assembled.json
package main

import (
	"encoding/json"
	"fmt"
	"go/format"
	"log"
	"os"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: typesgen profiles-resources.json")
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				Kind, Derivation, Type string
				Abstract               bool
			}
		}
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		log.Fatal(err)
	}
	var types []string
	for _, e := range bundle.Entry {
		r := e.Resource
		if r.Kind == "resource" && r.Derivation == "specialization" && !r.Abstract {
			types = append(types, r.Type)
		}
	}
	sort.Strings(types)
	var out strings.Builder
	out.WriteString("// Code generated from the R4 (4.0.1) StructureDefinitions; DO NOT EDIT.\n\npackage fhir\n\n")
	fmt.Fprintf(&out, "// ResourceTypes lists the %d concrete R4 resource types, sorted.\nvar ResourceTypes = []string{\n", len(types))
	for _, t := range types {
		fmt.Fprintf(&out, "\t%q,\n", t)
	}
	out.WriteString("}\n")
	src, err := format.Source([]byte(out.String()))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("types_gen.go", src, 0o644); err != nil {
		log.Fatal(err)
	}
}
