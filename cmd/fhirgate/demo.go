package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fhirgate/fhirgate/demo"
)

// cmdDemo runs `fhirgate demo`: the gateway with a development OpenID
// issuer and two demo EHR sources, all on loopback, until interrupted. It
// prints the tokens of each role and the next commands to try.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", demo.DefaultAddr, "the gateway's listen address (loopback only)")
	dir := fs.String("dir", "", "directory for the demo's stores, kept at exit (default: a temporary directory, removed at exit)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "fhirgate-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	} else if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	d, err := demo.Start(ctx, demo.Config{Dir: *dir, Addr: *addr, Logger: log, Version: version})
	if err != nil {
		return err
	}
	defer d.Close()
	envFile, err := d.WriteEnv()
	if err != nil {
		return err
	}
	d.PrintGuide(stdout, envFile)
	<-ctx.Done()
	fmt.Fprintln(stderr, "fhirgate demo: stopping")
	return nil
}
