// Command gen writes the conformance suite's samples.json from the
// validator's model and the official search parameters:
//
//	go run ./internal/samplegen/gen -o samples.json   (from conformance/)
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fhirgate/fhirgate/conformance/internal/samplegen"
)

func main() {
	out := flag.String("o", "samples.json", "output file")
	root := flag.String("root", "..", "module root")
	flag.Parse()
	if err := run(*root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "samplegen:", err)
		os.Exit(1)
	}
}

func run(root, out string) error {
	b, err := samplegen.GenerateFromModule(root)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Clean(out), b, 0o644)
}
