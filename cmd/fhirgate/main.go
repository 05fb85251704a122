// Command fhirgate is the FHIR R4 records gateway: one binary that serves
// the FHIR API, migrates its store and runs its tools.
//
//	fhirgate serve   [--addr] [--db] [--auth] [--config]
//	fhirgate migrate [--db]
//	fhirgate version
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/connect"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/referral/drafting"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/shlink"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/fhirgate/fhirgate/web"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `fhirgate — FHIR R4 records gateway

Usage:
  fhirgate serve    run the FHIR server
  fhirgate demo     run the gateway with demo sources and a development identity provider
  fhirgate migrate  apply the store's schema migrations and exit
  fhirgate reindex  rebuild the search index from the stored resources
  fhirgate pull     pull a patient's record from the configured sources
  fhirgate bench    load Synthea data many times and print search latencies
  fhirgate audit verify  check the audit trail's hash chain
  fhirgate conformance   run the black-box conformance suite against a URL
  fhirgate convert ccda|hl7v2 FILE  print a C-CDA document or HL7 v2 message as a FHIR Bundle
  fhirgate healthcheck   exit 0 when the local gateway is ready (container HEALTHCHECK)
  fhirgate version  print the version

Run "fhirgate <command> -h" for a command's flags.
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], stdout, stderr)
	case "reindex":
		err = cmdReindex(ctx, args[1:], stdout, stderr)
	case "pull":
		err = cmdPull(ctx, args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, args[1:], stdout, stderr)
	case "conformance":
		err = cmdConformance(ctx, args[1:], stdout, stderr)
	case "convert":
		err = cmdConvert(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		err = cmdHealthcheck(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionLine())
	case "-h", "--help", "help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "fhirgate: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "fhirgate:", err)
		return 1
	}
	return 0
}

// envDefault returns the environment variable's value or def.
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// Defaults of the stable outside contract.
const (
	defaultAddr = "127.0.0.1:8080"
	defaultDB   = "sqlite:./fhirgate-data/fhirgate.db"
	defaultAuth = "oidc"
)

type serveFlags struct {
	addr, db, auth, config, logLevel string
	mllpAddr                         string
	metricsAddr                      string
	tlsCert, tlsKey                  string
	readCacheMB                      int
	audit                            auditFlags
}

func parseServeFlags(args []string, stderr io.Writer) (*serveFlags, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &serveFlags{}
	fs.StringVar(&f.addr, "addr", envDefault("FHIRGATE_ADDR", defaultAddr), "listen address (env FHIRGATE_ADDR)")
	fs.StringVar(&f.db, "db", envDefault("FHIRGATE_DB", defaultDB), "store: sqlite:<path> or postgres://... (env FHIRGATE_DB)")
	fs.StringVar(&f.auth, "auth", envDefault("FHIRGATE_AUTH", defaultAuth), "oidc (verify access tokens) or none (loopback only) (env FHIRGATE_AUTH)")
	fs.StringVar(&f.config, "config", envDefault("FHIRGATE_CONFIG", ""), "YAML config file (env FHIRGATE_CONFIG)")
	fs.StringVar(&f.logLevel, "log-level", envDefault("FHIRGATE_LOG_LEVEL", "info"), "debug, info, warn or error (env FHIRGATE_LOG_LEVEL)")
	fs.StringVar(&f.mllpAddr, "mllp-addr", envDefault("FHIRGATE_MLLP_ADDR", ""), "listen address for HL7 v2 over MLLP, off when empty (env FHIRGATE_MLLP_ADDR)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", envDefault("FHIRGATE_METRICS_ADDR", ""), "listen address for Prometheus /metrics (no authentication: loopback or a private network), off when empty (env FHIRGATE_METRICS_ADDR)")
	fs.StringVar(&f.tlsCert, "tls-cert", envDefault("FHIRGATE_TLS_CERT", ""), "PEM certificate (chain) to serve HTTPS with; needs --tls-key (env FHIRGATE_TLS_CERT)")
	fs.StringVar(&f.tlsKey, "tls-key", envDefault("FHIRGATE_TLS_KEY", ""), "PEM private key of --tls-cert (env FHIRGATE_TLS_KEY)")
	cacheMB, err := strconv.Atoi(envDefault("FHIRGATE_READ_CACHE_MB", "64"))
	if err != nil {
		return nil, fmt.Errorf("FHIRGATE_READ_CACHE_MB: %w", err)
	}
	fs.IntVar(&f.readCacheMB, "read-cache-mb", cacheMB, "MiB of current resource versions kept in memory for reads, 0 for none; on PostgreSQL kept correct across replicas by notifications through the database (env FHIRGATE_READ_CACHE_MB)")
	f.audit.register(fs, true)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if f.readCacheMB < 0 {
		return nil, errors.New("serve: --read-cache-mb must be 0 or more")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("serve: --tls-cert and --tls-key go together")
	}
	return f, nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad log level %q", level)
	}
	// every line logged with a request's context carries its request id
	return slog.New(observe.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))), nil
}

// openStore opens the store named by a --db value.
func openStore(ctx context.Context, db string, opts sqlstore.Options) (storage.Store, error) {
	switch {
	case strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://"):
		return postgres.Open(ctx, postgres.Config{URL: db}, opts)
	case strings.HasPrefix(db, "sqlite:"):
		return sqlite.Open(ctx, sqlitePath(db), opts)
	}
	return nil, fmt.Errorf("--db must be sqlite:<path> or postgres://..., not %q", redactURL(db))
}

func sqlitePath(db string) string {
	p := strings.TrimPrefix(db, "sqlite:")
	p = strings.TrimPrefix(p, "//")
	return filepath.Clean(p)
}

// redactURL hides a password in a database URL before it is printed.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				return s[:i+3] + rest[:colon] + ":***" + rest[at:]
			}
		}
	}
	return s
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse("", nil)
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(f.config)
	if err != nil {
		return err
	}
	switch f.auth {
	case "none":
		if !config.LoopbackAddr(f.addr) {
			return fmt.Errorf("--auth=none serves patient data without authentication and is only allowed on a loopback address (127.0.0.1:port, [::1]:port, localhost:port), not %q", f.addr)
		}
		log.Warn("authentication is OFF (--auth=none): every request is served without a token; for local use only", "addr", f.addr)
	case "oidc":
		if len(cfg.Auth.Issuers) == 0 {
			return errors.New("--auth=oidc needs at least one issuer under auth.issuers in the --config file; for local use on loopback run with --auth=none")
		}
	default:
		return fmt.Errorf("--auth must be oidc or none, not %q", f.auth)
	}
	ver, rev := buildInfo()
	metrics := observe.NewMetrics(ver, rev)
	stopTracing, err := observe.StartTracing(ctx, ver)
	if err != nil {
		return err
	}
	defer func() { _ = stopTracing(context.Background()) }()
	if observe.TracingConfigured(os.Getenv) {
		log.Info("exporting traces over OTLP")
	}
	registry, err := search.New(search.Options{BaseURL: cfg.Server.BaseURL, Reserved: []string{"_cursor"}})
	if err != nil {
		return err
	}
	cacheBytes := f.readCacheMB << 20
	if cacheBytes == 0 {
		cacheBytes = -1 // off
	}
	store, err := openStore(ctx, f.db, sqlstore.Options{Registry: registry, Observe: storeObserver(metrics), ReadCacheBytes: cacheBytes})
	if err != nil {
		return err
	}
	defer store.Close()
	if f.metricsAddr != "" {
		if !config.LoopbackAddr(f.metricsAddr) {
			log.Warn("/metrics has no authentication: keep --metrics-addr on a network only the scraper reaches", "addr", f.metricsAddr)
		}
		stop, err := serveMetrics(ctx, f.metricsAddr, metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	validator, err := newValidator(cfg)
	if err != nil {
		return err
	}
	var authn server.Authenticator
	if f.auth == "oidc" {
		v, err := auth.New(cfg.Auth, auth.Options{Logger: log})
		if err != nil {
			return err
		}
		if err := v.Discover(ctx); err != nil {
			// the gateway still starts: tokens are refused (503) until the
			// identity provider answers
			log.Warn("identity provider not reachable at start", "err", err)
		}
		authn = v
	}
	auditor, err := openTrail(ctx, store, f.db, &f.audit, cfg.Server.BaseURL, log, metrics.AuditFlush, metrics.AuditPending, metrics.AuditRole)
	if err != nil {
		return err
	}
	defer auditor.Close() // after the listener: the last requests' events, then a checkpoint
	notifier, err := startNotify(ctx, store, cfg.Server.BaseURL, f.addr, f.auth == "none", log, metrics)
	if err != nil {
		return err
	}
	defer notifier.Stop(context.Background()) // before the store closes: undelivered notifications go out after the next start
	// one consolidator for everything that files records, so that a
	// patient's batches from pulls, imports, HL7 v2 and ABDM are
	// serialised and share what they know of the record
	cons := &consolidate.Consolidator{Store: release.Checked(store)} // writes in a request's context are checked by its guard
	var (
		pulls server.PullService
		jwks  []byte
		srcs  []adapters.Source
		conn  *connect.Service
	)
	if len(cfg.Sources) > 0 {
		svc, opened, cs, err := startPulls(ctx, store, cons, cfg, log, metrics)
		if err != nil {
			return err
		}
		srcs, conn = opened, cs
		jwks = adapters.JWKS(srcs...)
		defer closeSources(srcs)
		defer svc.Stop(context.Background()) // before the store closes: running pulls resume at the next start
		pulls = svc
	}
	narrator, err := newNarrator(cfg.Summary.Narrative, log)
	if err != nil {
		return err
	}
	srv := server.New(server.Config{
		Narrator: narrator,
		Payers:   payers(srcs),
		// $everything answers the consolidated view: duplicate copies
		// from other sources stay stored but are left out
		Store:           consolidate.View(store),
		Pull:            pulls,
		JWKS:            jwks,
		Search:          registry,
		Auth:            authn,
		Auditor:         auditor,
		Validator:       validator,
		Logger:          log,
		BaseURL:         cfg.Server.BaseURL,
		MaxBodyBytes:    cfg.Server.MaxBodyBytes,
		MaxUploadBytes:  cfg.Server.MaxUploadBytes,
		CanonicalBase:   cfg.Server.CanonicalBase,
		MaxElements:     cfg.Server.MaxElements,
		MaxDepth:        cfg.Server.MaxDepth,
		BodyMemoryBytes: cfg.Server.BodyMemoryBytes,
		IdleIOTimeout:   cfg.Server.IdleTimeout,
		MinBodyRate:     cfg.Server.MinBodyRate,
		Consolidator:    cons,
		Version:         ver,
		Metrics:         metrics,
		CORSOrigins:     cfg.Server.CORSOrigins,
	})
	srv.RegisterSubscriptions(notifier)
	links, err := shlink.New(ctx, shlink.Config{Store: store})
	if err != nil {
		return fmt.Errorf("SMART Health Links: %w", err)
	}
	srv.RegisterShareLinks(links)
	if conn != nil {
		srv.RegisterConnect(conn)
	}
	for _, src := range srcs {
		// ABDM's gateway calls back under /abdm/ (authenticated by its own
		// signed tokens, not by our OIDC issuers)
		if h, ok := src.(*abdm.HIU); ok {
			srv.RegisterABDM(h)
		}
	}
	if f.mllpAddr != "" {
		stop, err := startMLLP(f.mllpAddr, store, cons, registry, log, metrics)
		if err != nil {
			return fmt.Errorf("--mllp-addr: %w", err)
		}
		defer stop() // before the store closes: messages being stored are acknowledged
	}
	watchRiverQueues(metrics, store)
	var h http.Handler = srv
	if !cfg.Server.Apps.Disabled {
		// the browser apps under /app/: they may call the identity
		// providers' token endpoints besides the gateway
		var origins []string
		for _, is := range cfg.Auth.Issuers {
			origins = append(origins, is.URL)
		}
		apps, err := web.New(web.Options{PatientClientID: cfg.Server.Apps.PatientClientID, SpecialistClientID: cfg.Server.Apps.SpecialistClientID, TokenOrigins: origins})
		if err != nil {
			return err
		}
		h = apps.Mount(srv)
	}
	return listenAndServe(ctx, f.addr, h, f.tlsCert, f.tlsKey, log)
}

// payers are the sources that answer coverage questions (type payer).
func payers(srcs []adapters.Source) []referral.Payer {
	var out []referral.Payer
	for _, s := range srcs {
		if p, ok := s.(referral.Payer); ok {
			out = append(out, p)
		}
	}
	return out
}

// newNarrator opens the optional narrative model of $summary; nil (and
// no error) when none is configured.
func newNarrator(c config.NarrativeModel, log *slog.Logger) (server.Narrator, error) {
	if c.Endpoint == "" {
		return nil, nil
	}
	cl, err := drafting.New(drafting.Config{Endpoint: c.Endpoint, Model: c.Model, APIKeyEnv: c.APIKeyEnv, Timeout: c.Timeout, MaxTokens: c.MaxTokens}, nil)
	if err != nil {
		return nil, fmt.Errorf("summary.narrative: %w", err)
	}
	log.Info("narrative model configured for $summary?narrative=draft", "model", c.Model)
	return cl, nil
}

// newValidator builds the write validator with the profiles the config names.
func newValidator(cfg *config.Config) (*validate.Validator, error) {
	v := validate.New(validate.Options{})
	// documents that claim the gateway's own opinion profile are checked
	// against it like any other write
	if err := v.AddProfile(referral.OpinionProfile(cfg.Server.CanonicalBase)); err != nil {
		return nil, fmt.Errorf("the second-opinion profile: %w", err)
	}
	for _, f := range cfg.Validation.Profiles {
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			// an unpacked FHIR package: every StructureDefinition in it
			if _, err := v.AddProfileDir(f); err != nil {
				return nil, fmt.Errorf("validation.profiles %s: %w", f, err)
			}
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("validation.profiles: %w", err)
		}
		if _, err := v.AddProfiles(b); err != nil {
			return nil, fmt.Errorf("validation.profiles %s: %w", f, err)
		}
	}
	return v, nil
}

// listenAndServe serves until ctx is cancelled (SIGINT/SIGTERM), then shuts
// down gracefully: /readyz answers 503 at once so that a load balancer
// stops sending, and in-flight requests finish. With a certificate and key
// it serves HTTPS (TLS 1.2 and up, HTTP/2).
func listenAndServe(ctx context.Context, addr string, h http.Handler, certFile, keyFile string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler: h,
		// Headers must arrive promptly and an idle keep-alive connection
		// is closed. Bodies and responses get deadlines per request that
		// move with progress (server.ioDeadlines): a fixed ReadTimeout or
		// WriteTimeout would either let a stalled client hold a connection
		// for minutes or cut a large upload or $everything that is flowing.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	scheme := "http"
	if certFile != "" {
		scheme = "https"
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		// read them now, so that a bad file stops the start with its error
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			ln.Close()
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		go func() { errc <- hs.ServeTLS(ln, certFile, keyFile) }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	ver, rev := buildInfo()
	log.Info("fhirgate serving", "addr", ln.Addr().String(), "scheme", scheme, "version", ver, "commit", rev)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	if d, ok := h.(interface{ SetDraining() }); ok {
		d.SetDraining()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envDefault("FHIRGATE_DB", defaultDB), "store: sqlite:<path> or postgres://... (env FHIRGATE_DB)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var (
		applied []string
		err     error
	)
	switch {
	case strings.HasPrefix(*db, "postgres://") || strings.HasPrefix(*db, "postgresql://"):
		applied, err = postgres.Migrate(ctx, postgres.Config{URL: *db})
	case strings.HasPrefix(*db, "sqlite:"):
		applied, err = sqlite.Migrate(ctx, sqlitePath(*db))
	default:
		return fmt.Errorf("--db must be sqlite:<path> or postgres://..., not %q", redactURL(*db))
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
	}
	for _, name := range applied {
		fmt.Fprintln(stdout, "applied", name)
	}
	return nil
}

func cmdReindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envDefault("FHIRGATE_DB", defaultDB), "store: sqlite:<path> or postgres://... (env FHIRGATE_DB)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	registry, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db, sqlstore.Options{Registry: registry})
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	n, err := st.(*sqlstore.Store).Reindex(ctx, func(done int) {
		fmt.Fprintf(stderr, "\rreindexed %d resources", done)
	})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reindexed %d resources in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}
