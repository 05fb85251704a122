package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/adapters/bulk"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/payer"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/connect"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/riverqueue/river/rivertype"
)

// openSources validates the config's sources (every problem, each with its
// line) and opens them.
func openSources(cfg *config.Config, store storage.Store, cons *consolidate.Consolidator, log *slog.Logger) ([]adapters.Source, error) {
	reg := adapters.NewRegistry()
	reg.Register(fhirrest.Type, fhirrest.Factory)
	reg.Register(bulk.Type, bulk.Factory)
	deps := abdm.Deps{Records: cons}
	if ss, ok := store.(*sqlstore.Store); ok {
		deps.State = ss.AdapterState()
	}
	reg.Register(abdm.Type, abdm.NewFactory(deps))
	reg.Register(payer.Type, payer.Factory)
	specs := make([]adapters.Spec, len(cfg.Sources))
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		specs[i] = adapters.Spec{ID: s.ID, Type: s.Type, Config: &s.Config,
			Path: fmt.Sprintf("sources[%d]", i), Line: cfg.SourceLine(i)}
	}
	opts := adapters.Options{Logger: log}
	problems := &config.Problems{File: cfg.File()}
	for _, p := range reg.Validate(specs, opts) {
		problems.Add(p.Line, "%s: %s", p.Path, p.Msg)
	}
	if err := problems.Err(); err != nil {
		return nil, err
	}
	return reg.OpenAll(specs, opts)
}

// closeSources releases the sources' connections.
func closeSources(sources []adapters.Source) {
	for _, s := range sources {
		if c, ok := s.(adapters.Closer); ok {
			_ = c.Close()
		}
	}
}

// startPulls opens the configured sources, prepares the connections of
// those patients connect themselves (nil when none), and starts the pull
// workers (River's migrations run first). The caller stops the service
// and closes the sources.
func startPulls(ctx context.Context, store storage.Store, cons *consolidate.Consolidator, cfg *config.Config, log *slog.Logger, m *observe.Metrics) (*jobs.Service, []adapters.Source, *connect.Service, error) {
	sources, err := openSources(cfg, store, cons, log)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := newConnect(cfg, store, sources, log)
	if err != nil {
		closeSources(sources)
		return nil, nil, nil, err
	}
	jc := jobs.Config{Store: store, Sources: sources, Logger: log, Consolidator: cons,
		Middleware: []rivertype.Middleware{m.RiverMiddleware()}}
	if conn != nil {
		jc.Connections = conn
	}
	svc, err := jobs.New(ctx, jc)
	if err != nil {
		closeSources(sources)
		return nil, nil, nil, err
	}
	if err := svc.Start(ctx); err != nil {
		closeSources(sources)
		return nil, nil, nil, err
	}
	return svc, sources, conn, nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// cmdPull pulls a patient's record from sources in-process, with a
// progress bar on stderr and a summary table on stdout.
func cmdPull(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	patient := fs.String("patient", "", "the local Patient's id (required)")
	var sources multiFlag
	fs.Var(&sources, "source", "a source id from the config (repeatable; default: every source)")
	db := fs.String("db", envDefault("FHIRGATE_DB", defaultDB), "store: sqlite:<path> or postgres://... (env FHIRGATE_DB)")
	cfgPath := fs.String("config", envDefault("FHIRGATE_CONFIG", ""), "YAML config file with the sources (env FHIRGATE_CONFIG)")
	logLevel := fs.String("log-level", envDefault("FHIRGATE_LOG_LEVEL", "error"), "debug, info, warn or error (env FHIRGATE_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *patient == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("pull: --patient is required and takes no arguments")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if len(cfg.Sources) == 0 {
		return errors.New("pull: the --config file declares no sources")
	}
	registry, err := search.New(search.Options{BaseURL: cfg.Server.BaseURL, Reserved: []string{"_cursor"}})
	if err != nil {
		return err
	}
	store, err := openStore(ctx, *db, sqlstore.Options{Registry: registry})
	if err != nil {
		return err
	}
	defer store.Close()
	svc, srcs, _, err := startPulls(ctx, store, &consolidate.Consolidator{Store: store}, cfg, log, nil)
	if err != nil {
		return err
	}
	defer closeSources(srcs)
	defer svc.Stop(context.Background())
	id, err := svc.Enqueue(ctx, *patient, sources)
	if err != nil {
		return err
	}
	st, err := svc.Wait(ctx, id, 100*time.Millisecond, func(s *jobs.Status) { progressBar(stderr, s) })
	fmt.Fprintln(stderr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pull %s interrupted; it resumes when the gateway (or this command) runs again: %w", id, err)
		}
		return err
	}
	return pullSummary(stdout, st)
}

// progressBar redraws one line: sources done and resources fetched.
func progressBar(w io.Writer, s *jobs.Status) {
	const width = 30
	done, fetched := 0, 0
	for _, r := range s.Sources {
		if r.State == "completed" || r.State == "failed" {
			done++
		}
		fetched += r.Fetched
	}
	n := done * width / max(len(s.Sources), 1)
	fmt.Fprintf(w, "\r[%s%s] %d/%d sources, %d resources", strings.Repeat("=", n), strings.Repeat(" ", width-n), done, len(s.Sources), fetched)
}

// pullSummary prints one row per source, and fails when a source failed.
func pullSummary(w io.Writer, st *jobs.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSTATE\tATTEMPTS\tFETCHED\tCREATED\tUPDATED\tUNCHANGED\tDUPLICATES\tISSUES\tERROR")
	failed := 0
	for _, r := range st.Sources {
		var c, u, un, d, is int
		if r.Written != nil {
			c, u, un, d, is = r.Written.Created, r.Written.Updated, r.Written.Unchanged, r.Written.Duplicates, r.Written.IssueCount
		}
		if r.State != "completed" {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Source, r.State, r.Attempts, r.Fetched, c, u, un, d, is+len(r.SourceIssues), r.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("pull %s: %d of %d sources failed", st.ID, failed, len(st.Sources))
	}
	return nil
}
