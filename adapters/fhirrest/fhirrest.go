// Package fhirrest is the "fhir" source type: any FHIR R4 server with a
// REST API (Epic, Oracle Health, HAPI, Medplum…). It reads the server's
// CapabilityStatement once, fetches a record with Patient/$everything when
// offered and with parallel per-type searches of the patient compartment
// otherwise, follows next links (with loop detection and a page limit),
// reads the resources outside the compartment that the record references,
// supports incremental pulls (_since / _lastUpdated) and finds patients by
// identifier, Patient/$match or demographics.
package fhirrest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// Type is the source type name in the config file.
const Type = "fhir"

// Everything modes.
const (
	EverythingAuto   = "auto"
	EverythingAlways = "always"
	EverythingNever  = "never"
)

// Config is the config block of a "fhir" source.
type Config struct {
	upstream.Config `yaml:",inline"`
	// Everything says when to use Patient/$everything: auto (when the
	// CapabilityStatement offers it; the default), always or never.
	Everything string `yaml:"everything"`
	// PageSize is the _count asked for. Default 100.
	PageSize int `yaml:"pageSize"`
	// PageLimit is the most pages one search may have; more is an error
	// (ErrPageLimit), not a silently truncated record. Default 1000.
	PageLimit int `yaml:"pageLimit"`
	// Types are the resource types searched when $everything is not used.
	// Default: every type of the R4 patient compartment that the
	// CapabilityStatement lists as searchable.
	Types []string `yaml:"types"`
	// ResolveReferences reads the resources outside the patient compartment
	// (Practitioner, Organization, Location, Medication…) that the record
	// references and that the fetch did not already return. Default true.
	ResolveReferences *bool `yaml:"resolveReferences"`
}

func (c Config) withDefaults() Config {
	if c.Everything == "" {
		c.Everything = EverythingAuto
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	if c.PageLimit <= 0 {
		c.PageLimit = 1000
	}
	if c.ResolveReferences == nil {
		t := true
		c.ResolveReferences = &t
	}
	return c
}

// Validate adds every problem of c to p.
func (c *Config) Validate(p *adapters.Problems, opts adapters.Options) {
	c.Config.Validate(p, opts)
	switch c.Everything {
	case "", EverythingAuto, EverythingAlways, EverythingNever:
	default:
		p.Add("everything", "must be auto, always or never")
	}
	if c.PageSize < 0 {
		p.Add("pageSize", "must not be negative")
	}
	if c.PageLimit < 0 {
		p.Add("pageLimit", "must not be negative")
	}
	for i, t := range c.Types {
		if !fhir.IsResourceType(t) {
			p.Add(fmt.Sprintf("types[%d]", i), "%q is not an R4 resource type", t)
		}
	}
}

// Factory opens "fhir" sources.
var Factory = adapters.ConfigFactory[Config](func(id string, cfg Config, opts adapters.Options) (adapters.Source, error) {
	s, err := New(id, cfg, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
})

// Source is a "fhir" source.
type Source struct {
	id  string
	cfg Config
	c   *upstream.Client
	reg *search.Registry

	mu   sync.Mutex
	caps *capabilities
}

var (
	_ adapters.Source             = (*Source)(nil)
	_ adapters.Incremental        = (*Source)(nil)
	_ adapters.EverythingFetcher  = (*Source)(nil)
	_ adapters.PatientFinder      = (*Source)(nil)
	_ adapters.KeyPublisher       = (*Source)(nil)
	_ adapters.PatientConnectable = (*Source)(nil)
	_ adapters.Closer             = (*Source)(nil)
)

// New returns a source for cfg.
func New(id string, cfg Config, opts adapters.Options) (*Source, error) {
	opts = opts.WithDefaults()
	p := &adapters.Problems{}
	cfg.Validate(p, opts)
	if len(p.Items) > 0 {
		return nil, adapters.ProblemsError(p.Items)
	}
	opts.Logger = opts.Logger.With(slog.Group("source", "type", Type, "id", id))
	c, err := upstream.New(id, cfg.Config, opts)
	if err != nil {
		return nil, err
	}
	reg, err := search.New(search.Options{})
	if err != nil {
		return nil, err
	}
	return &Source{id: id, cfg: cfg.withDefaults(), c: c, reg: reg}, nil
}

// ID is the source id.
func (s *Source) ID() string { return s.id }

// Client is the source's HTTP client (for its counters in tests).
func (s *Source) Client() *upstream.Client { return s.c }

// Close releases idle connections.
func (s *Source) Close() error { return s.c.Close() }

// PublicJWKs returns the SMART signing key's public JWK, if any.
func (s *Source) PublicJWKs() [][]byte { return s.c.PublicJWKs() }

// PatientLogin implements adapters.PatientConnectable: sources of auth type
// smart-patient are read with the patient's own login there.
func (s *Source) PatientLogin() (adapters.PatientLogin, bool) { return s.c.PatientLogin() }

// Fetch streams the patient's record: with $everything when the server
// offers it (or everything is "always"), otherwise with per-type searches.
func (s *Source) Fetch(ctx context.Context, req adapters.FetchRequest, sink adapters.Sink) (adapters.Result, error) {
	return s.fetch(ctx, req, time.Time{}, sink, false)
}

// FetchSince is Fetch restricted to resources updated after since.
func (s *Source) FetchSince(ctx context.Context, req adapters.FetchRequest, since time.Time, sink adapters.Sink) (adapters.Result, error) {
	return s.fetch(ctx, req, since, sink, false)
}

// Everything fetches with Patient/$everything only.
func (s *Source) Everything(ctx context.Context, req adapters.FetchRequest, sink adapters.Sink) (adapters.Result, error) {
	return s.fetch(ctx, req, time.Time{}, sink, true)
}

func (s *Source) fetch(ctx context.Context, req adapters.FetchRequest, since time.Time, sink adapters.Sink, forceEverything bool) (adapters.Result, error) {
	n := &upstream.Counter{}
	ctx = upstream.WithCounter(ctx, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &fetch{
		s: s, ctx: ctx, cancel: cancel, since: since, sink: sink,
		seen: map[string]bool{}, refs: map[string]bool{},
		start: s.c.Clock().Now(),
	}
	if len(req.Types) > 0 {
		f.types = map[string]bool{}
		for _, t := range req.Types {
			f.types[t] = true
		}
	}
	err := f.run(req, forceEverything)
	f.res.Requests, f.res.Retries = n.Requests(), n.Retries()
	f.res.Watermark = f.watermark()
	return f.res, adapters.WithSource(s.id, err)
}

// fetch is the state of one Fetch.
type fetch struct {
	s      *Source
	ctx    context.Context
	cancel context.CancelFunc
	since  time.Time
	types  map[string]bool
	start  time.Time

	mu        sync.Mutex // guards everything below, and serialises sink calls
	sink      adapters.Sink
	seen      map[string]bool
	refs      map[string]bool
	res       adapters.Result
	serverNow time.Time
	stopped   bool // the sink failed: call it no more
}

func (f *fetch) run(req adapters.FetchRequest, forceEverything bool) error {
	if !fhir.ValidID(req.PatientID) {
		return &adapters.Error{Op: "fetch", Err: fmt.Errorf("%w: %q is not a valid patient id", adapters.ErrRejected, req.PatientID)}
	}
	caps, err := f.s.capabilities(f.ctx)
	if err != nil {
		return err
	}
	useEverything := f.s.cfg.Everything == EverythingAlways ||
		f.s.cfg.Everything == EverythingAuto && caps.everything
	if forceEverything {
		if !caps.everything && f.s.cfg.Everything != EverythingAlways {
			return &adapters.Error{Op: "Patient/$everything", Err: fmt.Errorf("%w: the CapabilityStatement does not offer Patient/$everything", adapters.ErrUnsupported)}
		}
		useEverything = true
	}
	if useEverything {
		f.res.Method = "everything"
		err = f.everything(req.PatientID)
	} else {
		f.res.Method = "search"
		err = f.searches(req.PatientID, caps)
	}
	if err != nil {
		return err
	}
	if *f.s.cfg.ResolveReferences {
		return f.resolveReferences()
	}
	return nil
}

func (f *fetch) everything(pid string) error {
	q := url.Values{}
	q.Set("_count", fmt.Sprint(f.s.cfg.PageSize))
	if !f.since.IsZero() {
		q.Set("_since", fhir.FormatInstant(f.since))
	}
	if len(f.types) > 0 {
		ts := make([]string, 0, len(f.types))
		for t := range f.types {
			ts = append(ts, t)
		}
		slices.Sort(ts)
		q.Set("_type", strings.Join(ts, ","))
	}
	err := f.pages("Patient/$everything", "Patient/"+pid+"/$everything?"+q.Encode())
	if isNotFound(err) {
		return patientNotFound(err)
	}
	return err
}

func (f *fetch) searches(pid string, caps *capabilities) error {
	// The Patient first: it tells a missing patient apart from an empty
	// record, and its Date header starts the watermark.
	resp, err := f.s.c.Do(f.ctx, &upstream.Request{Op: "read Patient", URL: "Patient/" + pid})
	if err != nil {
		if isNotFound(err) {
			return patientNotFound(err)
		}
		return err
	}
	f.noteDate(resp)
	pat, err := f.s.parseResource(resp, "read Patient", "Patient/"+pid)
	if err != nil {
		return err
	}
	if pat.Type != "Patient" {
		return f.s.c.Fail("read Patient", "", "Patient/"+pid, resp.Status, fmt.Errorf("%w: expected a Patient, got %s", adapters.ErrMalformed, pat.Type))
	}
	if err := f.emit(pat); err != nil {
		return err
	}
	plan := f.s.searchPlan(caps, f.types)
	return parallel(f.ctx, f.cancel, f.s.c.Config().Concurrency, len(plan), func(i int) error {
		st := plan[i]
		q := url.Values{}
		q.Set(st.param, "Patient/"+pid)
		q.Set("_count", fmt.Sprint(f.s.cfg.PageSize))
		if !f.since.IsZero() {
			q.Set("_lastUpdated", "gt"+fhir.FormatInstant(f.since))
		}
		err := f.pages("search "+st.typ, st.typ+"?"+q.Encode())
		if err != nil && !st.declared && (isNotFound(err) || isRejected(err)) {
			// A type the server never declared: it does not hold any.
			f.issue(fhir.Issue{Severity: fhir.SeverityWarning, Code: "not-supported",
				Details: &fhir.IssueDetails{Text: fmt.Sprintf("search %s refused by the source: %v", st.typ, err)}})
			return nil
		}
		return err
	})
}

// pages reads a search (or $everything) and every page after it.
func (f *fetch) pages(op, first string) error {
	visited := map[string]bool{}
	next := f.s.c.Resolve(first)
	total, matches, explained := -1, 0, false
	for page := 1; next != ""; page++ {
		key := canonicalURL(next)
		if visited[key] {
			return f.s.c.Fail(op, "", next, 0, fmt.Errorf("%w: page %d links back to an earlier page", adapters.ErrPageLoop, page))
		}
		visited[key] = true
		if page > f.s.cfg.PageLimit {
			return f.s.c.Fail(op, "", next, 0, fmt.Errorf("%w (%d)", adapters.ErrPageLimit, f.s.cfg.PageLimit))
		}
		if page > 1 && !f.s.c.SameOrigin(next) {
			// Following it would send the patient's query elsewhere, and the
			// token could not go with it.
			return f.s.c.Fail(op, "", first, 0, fmt.Errorf("%w: a next link leaves the source's base URL", adapters.ErrMalformed))
		}
		resp, err := f.s.c.Do(f.ctx, &upstream.Request{Op: op, URL: next})
		if err != nil {
			return err
		}
		f.noteDate(resp)
		b, err := f.s.parseBundle(resp, op, next)
		if err != nil {
			return err
		}
		for _, r := range b.resources {
			if err := f.emit(r); err != nil {
				return err
			}
		}
		for _, is := range b.issues {
			f.issue(is)
		}
		if page == 1 {
			total = b.total
		}
		matches += b.matches
		explained = explained || len(b.issues) > 0
		next = b.next
	}
	if total > matches && !explained {
		// The server counted more than its pages held and gave no next link
		// (or no reason): a record silently cut short is worse than none.
		return f.s.c.Fail(op, "", first, 0, fmt.Errorf("%w: the search reported %d matches but its pages held %d", adapters.ErrMalformed, total, matches))
	}
	return nil
}

// emit passes r to the sink unless it was already passed, is older than
// since, or is of a type not asked for.
func (f *fetch) emit(r *fhir.Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.ID != "" {
		key := r.Type + "/" + r.ID
		if f.seen[key] {
			return nil
		}
		f.seen[key] = true
	}
	if *f.s.cfg.ResolveReferences {
		f.s.collectRefs(r.Root(), f.refs)
	}
	if !f.since.IsZero() && !r.LastUpdated.IsZero() && !r.LastUpdated.After(f.since) {
		return nil
	}
	if f.types != nil && !f.types[r.Type] {
		return nil
	}
	if f.stopped {
		return context.Canceled // the sink failed in another goroutine; that error is reported
	}
	if err := f.sink(r); err != nil {
		f.stopped = true
		f.cancel()
		return adapters.SinkError(err)
	}
	adapters.Counter(&f.res, func(*fhir.Resource) error { return nil })(r)
	return nil
}

func (f *fetch) issue(is fhir.Issue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res.Issues = append(f.res.Issues, is)
}

// noteDate keeps the upstream's Date of the first response: the record is
// complete up to that instant on the upstream's clock.
func (f *fetch) noteDate(resp *upstream.Response) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.serverNow.IsZero() {
		return
	}
	if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		f.serverNow = t
	}
}

func (f *fetch) watermark() time.Time {
	if !f.serverNow.IsZero() {
		return f.serverNow
	}
	return f.start
}

// resolveReferences reads the referenced resources the fetch did not
// return. A reference that cannot be read is an issue, not a failure: the
// record itself is complete.
func (f *fetch) resolveReferences() error {
	f.mu.Lock()
	var todo []string
	for ref := range f.refs {
		typ, _, _ := strings.Cut(ref, "/")
		if !f.seen[ref] && (f.types == nil || f.types[typ]) {
			todo = append(todo, ref)
		}
	}
	f.mu.Unlock()
	slices.Sort(todo)
	return parallel(f.ctx, f.cancel, f.s.c.Config().Concurrency, len(todo), func(i int) error {
		ref := todo[i]
		typ, _, _ := strings.Cut(ref, "/")
		op := "read referenced " + typ
		resp, err := f.s.c.Do(f.ctx, &upstream.Request{Op: op, URL: ref})
		if err != nil {
			if isNotFound(err) || isRejected(err) || isUnauthorized(err) {
				f.issue(fhir.Issue{Severity: fhir.SeverityWarning, Code: "not-found",
					Details: &fhir.IssueDetails{Text: fmt.Sprintf("referenced %s could not be read: %v", typ, err)}})
				return nil
			}
			return err
		}
		r, err := f.s.parseResource(resp, op, ref)
		if err != nil {
			return err
		}
		return f.emit(r)
	})
}

func patientNotFound(err error) error {
	if e, ok := err.(*adapters.Error); ok {
		e.Err = fmt.Errorf("%w: %w", adapters.ErrPatientNotFound, e.Err)
		return e
	}
	return fmt.Errorf("%w: %w", adapters.ErrPatientNotFound, err)
}

// canonicalURL normalises a URL for loop detection: the same query in
// another order is the same page.
func canonicalURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.RawQuery = u.Query().Encode()
	u.Fragment = ""
	return u.String()
}

// parallel runs fn(0..n-1) with at most limit at once. The first error
// cancels the fetch (so the others stop) and is returned.
func parallel(ctx context.Context, cancel context.CancelFunc, limit, n int, fn func(int) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, max(limit, 1))
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}
