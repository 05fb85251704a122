// Package adapters defines how the gateway talks to the systems that hold a
// patient's records: a small Source interface that every kind of upstream
// implements, optional capabilities a caller discovers with a type assertion
// (PatientFinder, EverythingFetcher, BulkExporter, Incremental), and the
// Registry that maps the type names of the config file ("fhir", "bulk") to
// the factories that open them.
//
// The shape follows dexidp/dex's connectors: the core imports no
// implementation; cmd registers each package's Factory:
//
//	reg := adapters.NewRegistry()
//	reg.Register(fhirrest.Type, fhirrest.Factory)
//	reg.Register(bulk.Type, bulk.Factory)
//	specs := make([]adapters.Spec, len(cfg.Sources))
//	for i := range cfg.Sources {
//		s := &cfg.Sources[i]
//		specs[i] = adapters.Spec{ID: s.ID, Type: s.Type, Config: &s.Config,
//			Path: fmt.Sprintf("sources[%d]", i), Line: cfg.SourceLine(i)}
//	}
//	for _, p := range reg.Validate(specs, opts) { // every problem, each with its line
//		problems.Add(p.Line, "%s: %s", p.Path, p.Msg)
//	}
//	sources, err := reg.OpenAll(specs, opts)
//	jwks := adapters.JWKS(sources...) // served at /.well-known/jwks.json
//
// Resources are handed to a Sink one at a time as they arrive, exactly as the
// upstream sent them (compacted, never re-marshalled through a struct), so a
// caller can store a record of any size with constant memory. A fetch that
// returns an error may already have passed some resources to the sink: those
// are a partial record and must not be committed as a complete pull. A fetch
// that returns nil passed every resource of the record exactly once.
package adapters

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Source is one configured upstream system.
type Source interface {
	// ID is the source's configured id (for example "city-hospital").
	ID() string
	// Fetch streams the record of one patient at the source to sink: every
	// resource the source holds for that patient, each exactly once, in no
	// particular order. The sink is never called concurrently. An error
	// returned by the sink stops the fetch and is returned wrapped.
	Fetch(ctx context.Context, req FetchRequest, sink Sink) (Result, error)
}

// Sink receives fetched resources. It may keep the resource: the adapter
// does not reuse it. Returning an error aborts the fetch.
type Sink func(*fhir.Resource) error

// FetchRequest says whose record to fetch.
type FetchRequest struct {
	// PatientID is the patient's logical id at the source, found with a
	// PatientFinder or remembered from an earlier pull.
	PatientID string
	// Types restricts the fetch to these resource types; empty means all.
	// The Patient resource itself is fetched only when Types is empty or
	// holds "Patient".
	Types []string
}

// Result describes a finished (or failed) fetch of one source.
type Result struct {
	// Method is how the record was fetched: "everything" (Patient/$everything),
	// "search" (per-type searches of the patient compartment) or "export"
	// (Bulk Data $export).
	Method string
	// Resources is the number of resources passed to the sink.
	Resources int
	// ByType counts them by resource type.
	ByType map[string]int
	// Issues are problems the source reported without failing the fetch:
	// OperationOutcome entries of search Bundles, Bulk Data error files,
	// references that could not be resolved. Their Diagnostics may hold
	// patient data: report them to the caller, never log them.
	Issues []fhir.Issue
	// Deleted lists "Type/id" of resources the source reported deleted since
	// the watermark (Bulk Data "deleted" files).
	Deleted []string
	// Watermark is the instant, on the source's clock, that the fetched data
	// is complete up to: pass it as since to the next FetchSince.
	Watermark time.Time
	// Requests is the number of HTTP requests made, Retries how many of them
	// were repeats after a failure.
	Requests, Retries int
}

// count records one resource passed to a sink.
func (r *Result) count(res *fhir.Resource) {
	if r.ByType == nil {
		r.ByType = map[string]int{}
	}
	r.Resources++
	r.ByType[res.Type]++
}

// Counter wraps sink so that every resource it accepts is counted in res.
// Adapters use it to keep Result.Resources and ByType right.
func Counter(res *Result, sink Sink) Sink {
	return func(r *fhir.Resource) error {
		if err := sink(r); err != nil {
			return err
		}
		res.count(r)
		return nil
	}
}

// Incremental is implemented by sources that can restrict a fetch to what
// changed after an instant (FHIR _since / _lastUpdated, Bulk Data _since).
type Incremental interface {
	Source
	// FetchSince is Fetch restricted to resources changed after since (a
	// previous Result.Watermark). Resources whose meta.lastUpdated is not
	// after since are never passed to the sink, even if the upstream ignores
	// the filter.
	FetchSince(ctx context.Context, req FetchRequest, since time.Time, sink Sink) (Result, error)
}

// EverythingFetcher is implemented by sources that can fetch a record with
// Patient/$everything. Fetch already uses it when the upstream offers it.
type EverythingFetcher interface {
	Source
	// Everything fetches with Patient/$everything, and fails with
	// ErrUnsupported when the upstream does not offer it.
	Everything(ctx context.Context, req FetchRequest, sink Sink) (Result, error)
}

// PatientFinder is implemented by sources that can find a patient's id at
// the source.
type PatientFinder interface {
	Source
	// FindPatient tries, in order, the identifiers (one search each), then
	// Patient/$match when the upstream offers it, then a demographics search
	// (family, given, birth date, gender), and returns the candidates of the
	// first step that found any, best first. It fails with
	// ErrPatientNotFound when no step found one.
	FindPatient(ctx context.Context, q PatientQuery) ([]PatientMatch, error)
}

// PatientQuery describes the patient to look for.
type PatientQuery struct {
	Identifiers []Identifier
	Family      string
	Given       []string
	// BirthDate is a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
	BirthDate string
	Gender    string
	// Patient is the gateway's own Patient resource when there is one; it is
	// sent as-is to Patient/$match. Otherwise one is built from the fields
	// above.
	Patient *fhir.Resource
}

// Identifier is a FHIR Identifier's system and value.
type Identifier struct {
	System, Value string
}

// PatientMatch is one candidate found by a PatientFinder.
type PatientMatch struct {
	// ID is the patient's logical id at the source.
	ID string
	// Resource is the Patient as the source returned it.
	Resource *fhir.Resource
	// Method is the step that found it: "identifier", "match" or
	// "demographics".
	Method string
	// Score is the $match search.score (0..1); 1 for identifier matches, 0
	// when the source gave none.
	Score float64
	// Certain is true for identifier matches and for $match results the
	// source graded "certain".
	Certain bool
}

// BulkExporter is implemented by sources that speak Bulk Data $export. The
// steps are separate so that a durable job can persist the ExportJob after
// the kick-off and resume polling after a restart instead of starting over.
type BulkExporter interface {
	Source
	// StartExport sends the kick-off request and returns the job to poll.
	StartExport(ctx context.Context, req ExportRequest) (*ExportJob, error)
	// WaitExport polls the job until it completes (honouring Retry-After and
	// reporting X-Progress to progress, which may be nil) and returns the
	// manifest. A failed job is ErrExportFailed.
	WaitExport(ctx context.Context, job *ExportJob, progress func(string)) (*Manifest, error)
	// ReadExport downloads every output file of the manifest and streams
	// its resources to sink, with memory that does not grow with the
	// export's size. Error files become Result.Issues, deleted files
	// Result.Deleted; Result.Watermark is the manifest's transactionTime.
	ReadExport(ctx context.Context, m *Manifest, sink Sink) (Result, error)
	// CancelExport deletes the job at the source (DELETE on its status URL),
	// which also tells the source that its files may be removed.
	CancelExport(ctx context.Context, job *ExportJob) error
}

// ExportRequest is the kick-off of a Bulk Data export.
type ExportRequest struct {
	// Level is "patient" (Patient/$export) or "group" (Group/[id]/$export).
	Level string
	// GroupID is the Group's id for the group level.
	GroupID string
	// Patients restricts a patient-level export to these patient ids (sent
	// as a POST Parameters body, Bulk Data STU2+).
	Patients []string
	// Types is _type; empty means every type the source exports.
	Types []string
	// Since is _since; zero means everything.
	Since time.Time
}

// ExportJob is an export the source accepted. It is plain data (JSON
// encodable) so that a job runner can persist it.
type ExportJob struct {
	// StatusURL is the Content-Location of the kick-off response.
	StatusURL string `json:"statusURL"`
	// Request is the kick-off URL.
	Request string `json:"request"`
	// Started is when the kick-off was accepted.
	Started time.Time `json:"started"`
}

// Manifest is a completed export's manifest.
type Manifest struct {
	TransactionTime     time.Time      `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []ManifestFile `json:"output"`
	Error               []ManifestFile `json:"error"`
	Deleted             []ManifestFile `json:"deleted,omitempty"`
}

// ManifestFile is one file of a manifest.
type ManifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count,omitempty"`
}

// KeyPublisher is implemented by sources that sign with the gateway's own
// keys (SMART Backend Services): their public keys belong in the JWKS the
// gateway serves at /.well-known/jwks.json.
type KeyPublisher interface {
	// PublicJWKs returns the public keys as JSON Web Keys, each with a kid.
	PublicJWKs() [][]byte
}

// Closer is implemented by sources that hold resources (idle connections)
// to release at shutdown.
type Closer interface {
	Close() error
}

// Clock is the time source of an adapter. Tests inject a fake one so that
// back-off, Retry-After and token expiry run without waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, whichever is first, and
	// returns ctx.Err() in the second case.
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the real clock.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Options are what a factory needs besides the source's own config.
type Options struct {
	// Logger receives the source's logs; the factory scopes it with the
	// source's type and id. Nil discards.
	Logger *slog.Logger
	// Clock defaults to SystemClock.
	Clock Clock
	// HTTPClient is used for every upstream request; nil means a client of
	// the adapter's own (with its own connection pool).
	HTTPClient *http.Client
	// LookupEnv reads secrets named by tokenEnv and secretEnv; nil means
	// os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// WithDefaults returns o with every nil field set to its default.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = SystemClock
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	return o
}

// Collect fetches into memory: for tests and small records. It returns the
// resources only when the fetch succeeded.
func Collect(ctx context.Context, src Source, req FetchRequest) ([]*fhir.Resource, Result, error) {
	var out []*fhir.Resource
	res, err := src.Fetch(ctx, req, func(r *fhir.Resource) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, res, err
	}
	return out, res, nil
}
