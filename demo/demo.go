// Package demo runs `fhirgate demo`: the gateway on the embedded store with
// OpenID Connect authentication against a development issuer, two demo EHRs
// (FHIR servers on loopback holding overlapping parts of one synthetic
// patient, configured as "fhir" sources) and ready tokens for the three
// roles of the second-opinion flow: the patient's app, the hospital's system
// client and the second-opinion provider.
//
//	d, err := demo.Start(ctx, demo.Config{Dir: dir})
//	defer d.Close()
//	d.PrintGuide(os.Stdout)
//
// Everything listens on loopback only. The development issuer logs in
// whoever asks: it is for trying the gateway, never for real data.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/payer"
	"github.com/fhirgate/fhirgate/adapters/payer/payertest"
	"github.com/fhirgate/fhirgate/adapters/smart/smarttest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/connect"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/seal"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/fhirgate/fhirgate/web"
)

// Names of the demo's parties.
const (
	// PatientID is the gateway's Patient the walkthrough is about.
	PatientID = "amy"
	// HospitalClientID is the hospital's system client.
	HospitalClientID = "city-hospital-ehr"
	// ClinicClientID is the second-opinion provider's client.
	ClinicClientID = "second-look-clinic"
	// ClinicOrganization is the provider's Organization, named in Consents.
	ClinicOrganization = "Organization/second-look-clinic"
	// ClinicPractitioner is the clinic's specialist (logs in to the
	// specialist workspace).
	ClinicPractitioner = "Practitioner/dr-rao"
	// NorthsideClientID, NorthsideOrganization and NorthsidePractitioner
	// are a second second-opinion provider, so that a patient can ask two
	// specialists and compare their opinions.
	NorthsideClientID     = "northside-heart"
	NorthsideOrganization = "Organization/northside-heart"
	NorthsidePractitioner = "Practitioner/dr-mehta"
	// InsurerID is the demo insurer's source id (type payer).
	InsurerID = "acme-health"
	// DefaultAddr is where the gateway listens unless told otherwise.
	DefaultAddr = "127.0.0.1:8080"
)

// Config configures a demo.
type Config struct {
	// Dir holds the stores (gateway and both EHRs). Required.
	Dir string
	// Addr is the gateway's listen address (DefaultAddr when empty); it
	// must be on loopback. The issuer and the EHRs take free loopback ports.
	Addr string
	// TokenTTL is the lifetime of the printed tokens (default 8 hours).
	TokenTTL time.Duration
	// Logger receives the servers' logs; nil discards them.
	Logger *slog.Logger
	// Version is reported in the CapabilityStatement.
	Version string
}

// Source is one demo EHR.
type Source struct {
	ID, Title, BaseURL string
	// PatientLogin: the EHR opens Amy's record only to her own login
	// there; she connects it from the patient app.
	PatientLogin bool
}

// connectClientID is the gateway's client id at the demo EHR that Amy
// connects herself.
const connectClientID = "fhirgate-demo"

// Demo is a running demo.
type Demo struct {
	// BaseURL is the gateway's FHIR base.
	BaseURL string
	// IssuerURL is the development OpenID issuer.
	IssuerURL string
	// InsurerURL is the demo insurer's FHIR endpoint (a payer source).
	InsurerURL string
	// Sources are the demo EHRs, as configured in the gateway.
	Sources []Source
	// PatientToken, HospitalToken and ClinicToken are access tokens of the
	// patient's app, the hospital's system client and the provider.
	PatientToken, HospitalToken, ClinicToken string
	// PatientApp and SpecialistApp are the browser apps' addresses.
	PatientApp, SpecialistApp string
	// Dir is Config.Dir.
	Dir string

	closers []func() // in the order they run
}

// Start starts the issuer, the demo EHRs (loading their data) and the
// gateway (with its Patient and the provider's Organization), and mints
// the tokens. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (d *Demo, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("demo: Config.Dir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 8 * time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !config.LoopbackAddr(cfg.Addr) {
		return nil, fmt.Errorf("demo: the gateway only listens on loopback in the demo, not %q", cfg.Addr)
	}
	d = &Demo{Dir: cfg.Dir}
	defer func() {
		if err != nil {
			d.Close()
			d = nil
		}
	}()

	is, err := authtest.NewDevIssuer("127.0.0.1:0")
	if err != nil {
		return d, err
	}
	is.TokenTTL = cfg.TokenTTL
	d.IssuerURL = is.URL
	d.closers = append(d.closers, is.Close)

	var (
		srcs   []adapters.Source
		logins []*smarttest.Login
	)
	for _, sd := range demoSources() {
		base, login, err := d.startEHR(ctx, cfg, log, sd)
		if err != nil {
			return d, fmt.Errorf("demo: EHR %s: %w", sd.id, err)
		}
		d.Sources = append(d.Sources, Source{ID: sd.id, Title: sd.title, BaseURL: base, PatientLogin: sd.patientLogin})
		uc := upstream.Config{BaseURL: base}
		if login != nil {
			logins = append(logins, login)
			uc.Auth = upstream.Auth{Type: upstream.AuthSMARTPatient, ClientID: connectClientID}
		}
		src, err := fhirrest.New(sd.id, fhirrest.Config{Config: uc}, adapters.Options{Logger: log})
		if err != nil {
			return d, fmt.Errorf("demo: source %s: %w", sd.id, err)
		}
		srcs = append(srcs, src)
		d.closers = append(d.closers, func() { _ = src.Close() })
	}

	// the demo's insurer: Amy's Coverage is with it, and it covers a
	// second opinion in network with a co-payment (the fake insurer of the
	// tests), so the patient app can say so before she asks
	ins := payertest.Start()
	d.InsurerURL = ins.URL
	d.closers = append(d.closers, ins.Close)
	insurer, err := payer.New(InsurerID, payer.Config{
		Config: fhirrest.Config{Config: upstream.Config{BaseURL: ins.URL}},
		Payors: []payer.Identifier{{System: insurerSystem, Value: InsurerID}},
	}, adapters.Options{Logger: log})
	if err != nil {
		return d, fmt.Errorf("demo: insurer: %w", err)
	}
	d.closers = append(d.closers, func() { _ = insurer.Close() })

	if err := d.startGateway(ctx, cfg, log, is, srcs, insurer); err != nil {
		return d, fmt.Errorf("demo: gateway: %w", err)
	}
	for _, l := range logins {
		// set before the first login can reach the EHR: the gateway's
		// address was not known when the EHR started
		l.SetRedirectURIs(d.BaseURL + connect.CallbackPath)
	}
	return d, nil
}

// startEHR serves one demo EHR on a free loopback port: the gateway's own
// FHIR server without authentication, on its own store, loaded with the
// source's resources. An EHR of patient logins gets a fake SMART
// authorization server with a login page in front (package smarttest:
// it stands for what is outside the gateway), returned.
func (d *Demo) startEHR(ctx context.Context, cfg Config, log *slog.Logger, sd sourceData) (string, *smarttest.Login, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	base := "http://" + ln.Addr().String()
	srv, err := d.newServer(ctx, filepath.Join(cfg.Dir, sd.id), base, server.Config{Logger: log.With("ehr", sd.id), Software: sd.title, Version: cfg.Version}, nil)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	for _, body := range sd.resources {
		if err := put(srv, "", body); err != nil {
			ln.Close()
			return "", nil, err
		}
	}
	if !sd.patientLogin {
		d.serve(ln, srv, log)
		return base, nil, nil
	}
	login := &smarttest.Login{Title: sd.title + " patient portal", ClientID: connectClientID, Base: base, FHIR: srv,
		People: []smarttest.Person{{Name: "Amy Rivera", Patient: patientAt(sd)}}}
	d.serve(ln, login, log)
	return base, login, nil
}

// patientAt is the id of the source's Patient (its first resource).
func patientAt(sd sourceData) string {
	r, err := fhir.Parse([]byte(sd.resources[0]))
	if err != nil || r.Type != "Patient" {
		return ""
	}
	return r.ID
}

// startGateway opens the gateway's store, pull workers and verifier, seeds
// its Patient and the provider's Organization and serves it.
func (d *Demo) startGateway(ctx context.Context, cfg Config, log *slog.Logger, is *authtest.Issuer, srcs []adapters.Source, insurer referral.Payer) error {
	v, err := auth.New(config.Auth{
		Issuers: []config.Issuer{is.Config(authtest.DefaultAudience)},
		Clients: []config.Client{
			{ClientID: HospitalClientID, Role: "system"},
			// the specialists log in to the workspace (a public client of
			// no role): their practitioner logins act for their clinics
			{ClientID: ClinicClientID, Role: "provider", Organization: ClinicOrganization, Practitioners: []string{ClinicPractitioner}},
			{ClientID: NorthsideClientID, Role: "provider", Organization: NorthsideOrganization, Practitioners: []string{NorthsidePractitioner}},
		},
	}, auth.Options{Logger: log})
	if err != nil {
		return err
	}
	if err := v.Discover(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	d.BaseURL = "http://" + ln.Addr().String()
	var conn *connect.Service
	patientApp := d.BaseURL + web.Prefix + "patient/"
	srv, err := d.newServer(ctx, filepath.Join(cfg.Dir, "gateway"), d.BaseURL, server.Config{
		Auth: v, Logger: log.With("gateway", true), Version: cfg.Version, Payers: []referral.Payer{insurer},
	}, func(st *sqlstore.Store) (jobs.Connections, error) {
		sl, err := stateKey(filepath.Join(cfg.Dir, "gateway", "state.key"))
		if err != nil {
			return nil, err
		}
		titles := map[string]string{}
		for _, s := range d.Sources {
			titles[s.ID] = s.Title
		}
		conn = connect.New(connect.Config{Sources: connect.SourcesOf(srcs, titles), Store: st, Sealer: sl, BaseURL: d.BaseURL,
			ReturnURLs: []string{patientApp}, Logger: log.With("gateway", true)})
		return conn, nil
	}, srcs...)
	if err != nil {
		ln.Close()
		return err
	}
	mint := func(c authtest.Claims) string {
		if err == nil {
			var tok string
			tok, err = is.Mint(c)
			return tok
		}
		return ""
	}
	d.PatientToken = mint(authtest.Claims{"sub": "patient-" + PatientID, "fhirUser": "Patient/" + PatientID, "client_id": "patient-app",
		"scope": "openid fhirUser launch/patient patient/*.cruds"})
	d.HospitalToken = mint(authtest.Claims{"sub": HospitalClientID, "client_id": HospitalClientID, "scp": []string{"system/*.cruds"}})
	d.ClinicToken = mint(authtest.Claims{"sub": ClinicClientID, "client_id": ClinicClientID, "scp": []string{"system/*.cruds"}})
	if err != nil {
		ln.Close()
		return err
	}
	for _, body := range append(append([]string{localPatient}, directory...), insurance...) {
		if err := put(srv, d.HospitalToken, body); err != nil {
			ln.Close()
			return err
		}
	}
	srv.RegisterConnect(conn)
	apps, err := web.New(web.Options{TokenOrigins: []string{is.URL}})
	if err != nil {
		ln.Close()
		return err
	}
	d.PatientApp, d.SpecialistApp = patientApp, d.BaseURL+web.Prefix+"specialist/"
	registerPeople(is, d.PatientApp, d.SpecialistApp)
	d.serve(ln, apps.Mount(srv), log)
	return nil
}

// newServer opens a SQLite store in dir and builds a FHIR server on it;
// with sources it also runs the pull workers (with the patients'
// connections conns makes on the store, when not nil) and answers
// $everything with the consolidated view, as `fhirgate serve` does.
func (d *Demo) newServer(ctx context.Context, dir, base string, sc server.Config, conns func(*sqlstore.Store) (jobs.Connections, error), srcs ...adapters.Source) (*server.Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	reg, err := search.New(search.Options{BaseURL: base, Reserved: []string{"_cursor"}})
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "fhirgate.db"), sqlstore.Options{Registry: reg})
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = st.Close() })
	keys, _, err := audit.KeyFile(filepath.Join(dir, "audit.key"), true)
	if err != nil {
		return nil, err
	}
	aud, err := audit.Open(ctx, st, audit.Options{Keys: keys, Logger: sc.Logger, Server: base})
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, aud.Close)
	sc.Store, sc.Search, sc.Auditor, sc.BaseURL = st, reg, aud, base
	sc.Validator = validate.Default()
	if len(srcs) > 0 {
		// pulls and imports share one consolidator, as in `fhirgate serve`
		sc.Consolidator = &consolidate.Consolidator{Store: release.Checked(st)}
		jc := jobs.Config{Store: st, Sources: srcs, Logger: sc.Logger, PollInterval: 200 * time.Millisecond, Consolidator: sc.Consolidator}
		if conns != nil {
			if jc.Connections, err = conns(st); err != nil {
				return nil, err
			}
		}
		svc, err := jobs.New(ctx, jc)
		if err != nil {
			return nil, err
		}
		if err := svc.Start(ctx); err != nil {
			return nil, err
		}
		// stopped before the store closes (closers run in reverse)
		d.closers = append(d.closers, func() { _ = svc.Stop(context.Background()) })
		sc.Pull = svc
		sc.Store = consolidate.View(st)
	}
	return server.New(sc), nil
}

// serve serves h on ln until Close.
func (d *Demo) serve(ln net.Listener, h http.Handler, log *slog.Logger) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = hs.Serve(ln) }()
	d.closers = append(d.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	})
}

// put writes one resource (with its id) in-process.
func put(h http.Handler, token, body string) error {
	r, err := fhir.Parse([]byte(body))
	if err != nil {
		return err
	}
	req := httptest.NewRequest(http.MethodPut, "/"+r.Type+"/"+r.ID, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK && w.Code != http.StatusCreated {
		return fmt.Errorf("PUT %s/%s: %d %.300s", r.Type, r.ID, w.Code, w.Body.String())
	}
	return nil
}

// Close stops everything the demo started, the servers first.
func (d *Demo) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// Env is the shell environment of the walkthrough: BASE and the three
// tokens, as export lines.
func (d *Demo) Env() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "export BASE=%s\n", d.BaseURL)
	fmt.Fprintf(&b, "export PATIENT_TOKEN=%s\n", d.PatientToken)
	fmt.Fprintf(&b, "export HOSPITAL_TOKEN=%s\n", d.HospitalToken)
	fmt.Fprintf(&b, "export CLINIC_TOKEN=%s\n", d.ClinicToken)
	return b.String()
}

// WriteEnv writes Env to <Dir>/env.sh and returns its path.
func (d *Demo) WriteEnv() (string, error) {
	p := filepath.Join(d.Dir, "env.sh")
	if err := os.WriteFile(p, []byte(d.Env()), 0o600); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	return p, nil
}

// PrintGuide prints what is running, the tokens of each role and the next
// commands to try (the README's "Five-minute demo" walks through them).
func (d *Demo) PrintGuide(w io.Writer, envFile string) {
	fmt.Fprintf(w, "fhirgate demo is running (stop it with Ctrl-C)\n\n")
	fmt.Fprintf(w, "Open in a browser:\n")
	fmt.Fprintf(w, "  patient app          %s   (sign in as Amy Rivera)\n", d.PatientApp)
	fmt.Fprintf(w, "  specialist workspace %s   (sign in as Dr. Priya Rao or Dr. Arjun Mehta)\n\n", d.SpecialistApp)
	fmt.Fprintf(w, "  gateway              %s   (OpenID Connect tokens required)\n", d.BaseURL)
	fmt.Fprintf(w, "  OpenID issuer        %s   (development only: logs in anyone)\n", d.IssuerURL)
	for _, s := range d.Sources {
		if s.PatientLogin {
			fmt.Fprintf(w, "  source %-13s %s   (%s, opens Amy's record only to her own login there: connect it in the patient app)\n", s.ID, s.BaseURL, s.Title)
			continue
		}
		fmt.Fprintf(w, "  source %-13s %s   (%s, a FHIR server holding part of Amy's record)\n", s.ID, s.BaseURL, s.Title)
	}
	fmt.Fprintf(w, "  insurer %-12s %s   (a payer source: Amy's Coverage is with it)\n", InsurerID, d.InsurerURL)
	fmt.Fprintf(w, "  store                %s\n\n", d.Dir)
	fmt.Fprintf(w, "Roles and their access tokens:\n")
	fmt.Fprintf(w, "  PATIENT_TOKEN   Amy's patient app (Patient/%s, patient/*.cruds)\n", PatientID)
	fmt.Fprintf(w, "  HOSPITAL_TOKEN  the hospital's system client %q (system/*.cruds)\n", HospitalClientID)
	fmt.Fprintf(w, "  CLINIC_TOKEN    the second-opinion provider %q (%s; sees only what Amy consents to)\n\n", ClinicClientID, ClinicOrganization)
	fmt.Fprintf(w, "In another terminal, set them:\n\n")
	w.Write([]byte(d.Env()))
	if envFile != "" {
		fmt.Fprintf(w, "\n(or: . %s)\n", envFile)
	}
	fmt.Fprintf(w, `
Then try (the README's "Five-minute demo" has the whole walkthrough):

  # the hospital pulls Amy's record from both sources
  curl -si -X POST "$BASE/Patient/%[1]s/\$pull" -H "Authorization: Bearer $HOSPITAL_TOKEN"
  # Amy reads her consolidated record
  curl -s "$BASE/Patient/%[1]s/\$everything" -H "Authorization: Bearer $PATIENT_TOKEN"
  # the clinic cannot see it before Amy consents (403)
  curl -si "$BASE/Patient/%[1]s" -H "Authorization: Bearer $CLINIC_TOKEN"
  # the clinic's inbox of second-opinion requests
  curl -s "$BASE/Task?owner=%[2]s&status=requested" -H "Authorization: Bearer $CLINIC_TOKEN"
`, PatientID, ClinicOrganization)
}

// stateKey reads the demo's state key (which seals the tokens Amy's
// logins give), making it on the first start.
func stateKey(path string) (*seal.Sealer, error) {
	k, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k = make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		err = os.WriteFile(path, k, 0o600)
	}
	if err != nil {
		return nil, err
	}
	return seal.New(k)
}
