// Package bulk is the "bulk" source type: FHIR Bulk Data Access $export
// (STU2/STU3) at Patient and Group level. Kick-off with Prefer:
// respond-async, status polling that honours Retry-After and reports
// X-Progress, the completion manifest, NDJSON output downloaded and parsed
// as a stream (constant memory whatever the export's size, lines of any
// length up to a bound, gzip), error and deleted files, cancellation with
// DELETE, _since and _type.
//
// Fetch exports one patient with a Patient-level POST kick-off whose
// Parameters name the patient; the BulkExporter methods give a job runner
// the steps, to persist the job between them.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
)

// Type is the source type name in the config file.
const Type = "bulk"

// Config is the config block of a "bulk" source.
type Config struct {
	upstream.Config `yaml:",inline"`
	// Types is the _type of every export (default: every type the source
	// exports).
	Types []string `yaml:"types"`
	// PollInterval is the first wait between status polls when the source
	// sends no Retry-After (default 2s); it doubles up to MaxPollInterval
	// (default 1m).
	PollInterval    time.Duration `yaml:"pollInterval"`
	MaxPollInterval time.Duration `yaml:"maxPollInterval"`
	// MaxWait bounds how long an export may take to complete (default 6h);
	// longer is ErrTimeout.
	MaxWait time.Duration `yaml:"maxWait"`
	// MaxLineBytes bounds one NDJSON line, one resource (default 64 MiB).
	MaxLineBytes int `yaml:"maxLineBytes"`
	// Parallel is how many files are downloaded at once (default: the
	// source's concurrency).
	Parallel int `yaml:"parallel"`
}

func (c Config) withDefaults() Config {
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.MaxPollInterval <= 0 {
		c.MaxPollInterval = time.Minute
	}
	c.MaxPollInterval = max(c.MaxPollInterval, c.PollInterval)
	if c.MaxWait <= 0 {
		c.MaxWait = 6 * time.Hour
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = 64 << 20
	}
	return c
}

// Validate adds every problem of c to p.
func (c *Config) Validate(p *adapters.Problems, opts adapters.Options) {
	c.Config.Validate(p, opts)
	for i, t := range c.Types {
		if !fhir.IsResourceType(t) {
			p.Add(fmt.Sprintf("types[%d]", i), "%q is not an R4 resource type", t)
		}
	}
	for _, chk := range []struct {
		path string
		bad  bool
	}{
		{"pollInterval", c.PollInterval < 0},
		{"maxPollInterval", c.MaxPollInterval < 0},
		{"maxWait", c.MaxWait < 0},
		{"maxLineBytes", c.MaxLineBytes < 0},
		{"parallel", c.Parallel < 0},
	} {
		if chk.bad {
			p.Add(chk.path, "must not be negative")
		}
	}
}

// Factory opens "bulk" sources.
var Factory = adapters.ConfigFactory[Config](func(id string, cfg Config, opts adapters.Options) (adapters.Source, error) {
	s, err := New(id, cfg, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
})

// Source is a "bulk" source.
type Source struct {
	id  string
	cfg Config
	c   *upstream.Client
	log *slog.Logger
}

var (
	_ adapters.Source       = (*Source)(nil)
	_ adapters.Incremental  = (*Source)(nil)
	_ adapters.BulkExporter = (*Source)(nil)
	_ adapters.KeyPublisher = (*Source)(nil)
	_ adapters.Closer       = (*Source)(nil)
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
	cfg = cfg.withDefaults()
	if cfg.Parallel <= 0 {
		cfg.Parallel = c.Config().Concurrency
	}
	return &Source{id: id, cfg: cfg, c: c, log: opts.Logger}, nil
}

// ID is the source id.
func (s *Source) ID() string { return s.id }

// Client is the source's HTTP client.
func (s *Source) Client() *upstream.Client { return s.c }

// Close releases idle connections.
func (s *Source) Close() error { return s.c.Close() }

// PublicJWKs returns the SMART signing key's public JWK, if any.
func (s *Source) PublicJWKs() [][]byte { return s.c.PublicJWKs() }

// Fetch exports the patient's record (Patient/$export with the patient
// parameter), streams it and deletes the job at the source.
func (s *Source) Fetch(ctx context.Context, req adapters.FetchRequest, sink adapters.Sink) (adapters.Result, error) {
	return s.fetch(ctx, req, time.Time{}, sink)
}

// FetchSince is Fetch with _since.
func (s *Source) FetchSince(ctx context.Context, req adapters.FetchRequest, since time.Time, sink adapters.Sink) (adapters.Result, error) {
	return s.fetch(ctx, req, since, sink)
}

func (s *Source) fetch(ctx context.Context, req adapters.FetchRequest, since time.Time, sink adapters.Sink) (adapters.Result, error) {
	n := &upstream.Counter{}
	ctx = upstream.WithCounter(ctx, n)
	res, err := s.fetchCounted(ctx, req, since, sink)
	res.Method = "export"
	res.Requests, res.Retries = n.Requests(), n.Retries()
	return res, adapters.WithSource(s.id, err)
}

func (s *Source) fetchCounted(ctx context.Context, req adapters.FetchRequest, since time.Time, sink adapters.Sink) (adapters.Result, error) {
	if !fhir.ValidID(req.PatientID) {
		return adapters.Result{}, &adapters.Error{Op: "fetch", Err: fmt.Errorf("%w: %q is not a valid patient id", adapters.ErrRejected, req.PatientID)}
	}
	job, err := s.StartExport(ctx, adapters.ExportRequest{Level: "patient", Patients: []string{req.PatientID}, Types: req.Types, Since: since})
	if err != nil {
		return adapters.Result{}, err
	}
	// Whatever happens next, the job's files can go: delete it, even when
	// ctx was canceled.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.c.Config().Timeout)
		defer cancel()
		if err := s.CancelExport(cctx, job); err != nil {
			s.log.Warn("could not delete the export job", "error", err)
		}
	}()
	m, err := s.WaitExport(ctx, job, nil)
	if err != nil {
		return adapters.Result{}, err
	}
	types := slices.Concat(req.Types, s.cfg.Types)
	return s.read(ctx, m, since, types, sink)
}

// StartExport sends the kick-off. With Patients it POSTs a Parameters body
// (Bulk Data STU2+); otherwise it GETs with query parameters.
func (s *Source) StartExport(ctx context.Context, er adapters.ExportRequest) (*adapters.ExportJob, error) {
	var path string
	switch er.Level {
	case "patient", "":
		path = "Patient/$export"
	case "group":
		if !fhir.ValidID(er.GroupID) {
			return nil, adapters.WithSource(s.id, &adapters.Error{Op: "export kick-off", Err: fmt.Errorf("%w: %q is not a valid Group id", adapters.ErrRejected, er.GroupID)})
		}
		path = "Group/" + er.GroupID + "/$export"
		if len(er.Patients) > 0 {
			return nil, adapters.WithSource(s.id, &adapters.Error{Op: "export kick-off", Err: fmt.Errorf("%w: patients only apply to a patient-level export", adapters.ErrRejected)})
		}
	default:
		return nil, adapters.WithSource(s.id, &adapters.Error{Op: "export kick-off", Err: fmt.Errorf("%w: level must be patient or group", adapters.ErrRejected)})
	}
	types := slices.Concat(er.Types, s.cfg.Types)
	slices.Sort(types)
	types = slices.Compact(types)
	r := &upstream.Request{
		Op: "export kick-off",
		Header: http.Header{
			"Accept": {"application/fhir+json"},
			"Prefer": {"respond-async"},
		},
	}
	if len(er.Patients) > 0 {
		r.Method, r.URL = http.MethodPost, path
		r.Header.Set("Content-Type", "application/fhir+json")
		r.Body = parametersBody(er.Patients, types, er.Since)
	} else {
		q := []string{"_outputFormat=application%2Ffhir%2Bndjson"}
		if len(types) > 0 {
			q = append(q, "_type="+strings.Join(types, ","))
		}
		if !er.Since.IsZero() {
			q = append(q, "_since="+strings.ReplaceAll(fhir.FormatInstant(er.Since), "+", "%2B"))
		}
		r.URL = path + "?" + strings.Join(q, "&")
	}
	started := s.c.Clock().Now()
	resp, err := s.c.Do(ctx, r)
	if err != nil {
		if len(er.Patients) > 0 && errors.Is(err, adapters.ErrNotFound) {
			var e *adapters.Error
			if errors.As(err, &e) {
				e.Err = fmt.Errorf("%w: %w", adapters.ErrPatientNotFound, e.Err)
			}
		}
		return nil, adapters.WithSource(s.id, err)
	}
	loc := resp.Header.Get("Content-Location")
	if resp.Status != http.StatusAccepted || loc == "" {
		return nil, s.c.Fail(r.Op, r.Method, r.URL, resp.Status,
			fmt.Errorf("%w: the kick-off must answer 202 with Content-Location", adapters.ErrMalformed))
	}
	return &adapters.ExportJob{StatusURL: s.c.Resolve(loc), Request: s.c.Resolve(r.URL), Started: started}, nil
}

// parametersBody is the POST kick-off's Parameters resource.
func parametersBody(patients, types []string, since time.Time) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Parameters","parameter":[{"name":"_outputFormat","valueString":"application/fhir+ndjson"}`)
	for _, p := range patients {
		fmt.Fprintf(&b, `,{"name":"patient","valueReference":{"reference":"Patient/%s"}}`, p) // ids are [A-Za-z0-9.-]
	}
	if len(types) > 0 {
		fmt.Fprintf(&b, `,{"name":"_type","valueString":%q}`, strings.Join(types, ","))
	}
	if !since.IsZero() {
		fmt.Fprintf(&b, `,{"name":"_since","valueInstant":%q}`, fhir.FormatInstant(since))
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// CancelExport deletes the job. A job the source no longer knows counts as
// deleted.
func (s *Source) CancelExport(ctx context.Context, job *adapters.ExportJob) error {
	_, err := s.c.Do(ctx, &upstream.Request{Op: "delete export", Method: http.MethodDelete, URL: job.StatusURL,
		Header: http.Header{"Accept": {"application/fhir+json"}}})
	if err != nil && !errors.Is(err, adapters.ErrNotFound) {
		return adapters.WithSource(s.id, err)
	}
	return nil
}
