package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/conformance"
)

// cmdConformance runs the conformance suite against a running FHIR server
// and prints a table of its checks; it fails when a check fails.
//
//	fhirgate conformance --url http://127.0.0.1:8080 [--token T] [--types Patient,Observation]
func cmdConformance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: fhirgate conformance --url <FHIR base> [flags]

Reads the server's CapabilityStatement, checks every claim in it and the
FHIR R4 REST rules, prints one row per check and exits non-zero when a
check fails. It creates resources tagged urn:fhirgate:conformance|run-<id>
and deletes them at the end (unless --keep).

`)
		fs.PrintDefaults()
	}
	url := fs.String("url", envDefault("FHIRGATE_CONFORMANCE_URL", ""), "FHIR base URL of the server under test (env FHIRGATE_CONFORMANCE_URL)")
	token := fs.String("token", "", "bearer token sent with every request (or env FHIRGATE_CONFORMANCE_TOKEN, which keeps it out of the process list)")
	types := fs.String("types", "", "comma-separated resource types to check (default: every type the server claims)")
	allParams := fs.Bool("all-params", false, "check every claimed search parameter that has a sample, not one per parameter type")
	parallel := fs.Int("parallel", 4, "resource types checked at once")
	keep := fs.Bool("keep", false, "leave the created resources on the server")
	problems := fs.Bool("problems", false, "print only failed checks and known gateway bugs")
	timeout := fs.Duration("timeout", time.Minute, "timeout of each request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("conformance: unexpected argument %q", fs.Arg(0))
	}
	if *url == "" {
		fs.Usage()
		return errors.New("conformance: --url is required")
	}
	if *token == "" {
		*token = envDefault("FHIRGATE_CONFORMANCE_TOKEN", "")
	}
	if *parallel < 1 {
		return fmt.Errorf("conformance: --parallel must be at least 1")
	}
	opts := conformance.Options{
		BaseURL:         *url,
		Token:           *token,
		HTTPClient:      &http.Client{Timeout: *timeout},
		AllSearchParams: *allParams,
		Parallel:        *parallel,
		Keep:            *keep,
	}
	if *types != "" {
		for _, t := range strings.Split(*types, ",") {
			if t = strings.TrimSpace(t); t != "" {
				opts.Types = append(opts.Types, t)
			}
		}
	}
	rep, err := conformance.Run(ctx, opts)
	if err != nil {
		return err
	}
	mode := conformance.TableAll
	if *problems {
		mode = conformance.TableProblems
	}
	if err := rep.WriteTable(stdout, mode); err != nil {
		return err
	}
	if n := len(rep.Failures()); n > 0 {
		return fmt.Errorf("conformance: %d of %d checks failed", n, len(rep.Results))
	}
	return nil
}
