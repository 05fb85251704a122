package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fhirgate/fhirgate/convert/ccda"
	"github.com/fhirgate/fhirgate/convert/hl7v2"
	"github.com/fhirgate/fhirgate/fhir"
)

// cmdConvert implements "fhirgate convert ccda|hl7v2 FILE": it prints the
// converted transaction Bundle on stdout and the OperationOutcome of what was
// not converted on stderr, for people checking a feed by hand. FILE "-" reads
// standard input.
func cmdConvert(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || (args[0] != "ccda" && args[0] != "hl7v2") {
		fmt.Fprintln(stderr, "usage: fhirgate convert ccda|hl7v2 FILE")
		return errors.New("convert: want a format (ccda or hl7v2) and a file")
	}
	var data []byte
	var err error
	if args[1] == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 256<<20))
	} else {
		data, err = os.ReadFile(args[1])
	}
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	var bundle []byte
	var issues []fhir.Issue
	switch args[0] {
	case "ccda":
		res, err := ccda.Convert(data, ccda.Options{})
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		bundle, err = res.Bundle()
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		issues = res.Issues
	case "hl7v2":
		_, res, err := hl7v2.ParseAndConvert(data, hl7v2.Options{})
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		bundle, err = res.Bundle()
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		issues = res.Issues
	}
	if _, err := stdout.Write(append(bundle, '\n')); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	if len(issues) > 0 {
		fmt.Fprintf(stderr, "%s\n", fhir.NewOutcome(issues...).JSON())
	}
	return nil
}
