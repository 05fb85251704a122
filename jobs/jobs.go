// Package jobs runs the gateway's durable background work on River: pulls
// of a patient's record from configured sources, one River job per source,
// on riversqlite (the embedded store's single write connection) or
// riverpgxv5 (the PostgreSQL store's pool). River's migrations run when the
// service is created.
//
// A pull is the set of its source jobs: its id lists their River job ids,
// so the status needs no table of its own, and each job stores its report
// as River job output. A job retries (with back-off) when its source failed
// temporarily (adapters.Temporary) and is cancelled with its error
// otherwise; one source failing never touches what the others delivered,
// because each source's delivery is written in its own all-or-nothing
// transaction. A job interrupted by a stop runs again after the restart;
// consolidation's derived ids make the re-run write nothing twice.
package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/internal/riverdb"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
)

// Errors.
var (
	// ErrUnknownSource: a pull named a source that is not configured.
	ErrUnknownSource = errors.New("unknown source")
	// ErrUnknownPull: no pull has that id (or its jobs were cleaned up).
	ErrUnknownPull = errors.New("unknown pull")
	// ErrPatientNotFound: the local Patient does not exist.
	ErrPatientNotFound = errors.New("patient not found")
	// ErrUnsupportedStore: the store is neither the SQLite nor the
	// PostgreSQL sqlstore.
	ErrUnsupportedStore = errors.New("jobs: the store has no database River can use")
)

// Config configures the Service.
type Config struct {
	// Store is the gateway's store; River's tables live in its database.
	// Required: a *sqlstore.Store on SQLite or PostgreSQL.
	Store storage.Store
	// Sources are the configured sources, by their ids.
	Sources []adapters.Source
	// Consolidator writes pulled batches; one on Store when nil.
	Consolidator *consolidate.Consolidator
	// Logger; nil discards. Never receives resource bodies.
	Logger *slog.Logger
	// Workers is how many source jobs run at once (default 4).
	Workers int
	// MaxAttempts bounds the tries of one source job (default 5).
	MaxAttempts int
	// RetryDelay is the wait before retry n (1-based); default n⁴ seconds
	// (1 s, 16 s, 81 s, ...) with River's jitter, or the source's
	// Retry-After when it asked for longer.
	RetryDelay func(attempt int) time.Duration
	// JobTimeout bounds one attempt (default 30 minutes).
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay "running" before River
	// assumes its process died and runs it again (default JobTimeout + 1
	// minute).
	RescueAfter time.Duration
	// PollInterval is how often idle workers look for jobs on databases
	// without notifications (SQLite); default 1 s.
	PollInterval time.Duration
	// Middleware is installed in the River client (metrics).
	Middleware []rivertype.Middleware
	// Connections gives the patient's own tokens for the sources patients
	// connect themselves (*connect.Service); nil when there are none.
	Connections Connections
}

// Connections are patients' own logins at sources (*connect.Service).
type Connections interface {
	// Connectable reports whether the source is read with the patient's
	// own login.
	Connectable(source string) bool
	// SourcePatient is the patient's id at a connected source;
	// adapters.ErrNotConnected or adapters.ErrReconnect otherwise.
	SourcePatient(ctx context.Context, patient, source string) (string, error)
	// UserToken gives a fetch the patient's token there.
	UserToken(patient, source string) adapters.UserToken
}

// Service runs pulls.
type Service struct {
	cfg     Config
	log     *slog.Logger
	sources map[string]adapters.Source
	q       queue

	mu       sync.Mutex
	progress map[int64]int // job id -> resources fetched by the running attempt
}

// queue hides River's transaction type parameter.
type queue interface {
	insert(ctx context.Context, args []PullArgs) ([]int64, error)
	get(ctx context.Context, id int64) (*rivertype.JobRow, error)
	start(ctx context.Context) error
	stop(ctx context.Context) error
}

type riverQueue[TTx any] struct{ c *river.Client[TTx] }

func (q riverQueue[TTx]) insert(ctx context.Context, args []PullArgs) ([]int64, error) {
	ps := make([]river.InsertManyParams, len(args))
	for i := range args {
		ps[i] = river.InsertManyParams{Args: args[i]}
	}
	res, err := q.c.InsertMany(ctx, ps)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	return ids, nil
}

func (q riverQueue[TTx]) get(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return q.c.JobGet(ctx, id)
}
func (q riverQueue[TTx]) start(ctx context.Context) error { return q.c.Start(ctx) }
func (q riverQueue[TTx]) stop(ctx context.Context) error  { return q.c.StopAndCancel(ctx) }

// PullArgs are the arguments of one source job.
type PullArgs struct {
	Patient string `json:"patient"`
	Source  string `json:"source"`
}

// Kind implements river.JobArgs.
func (PullArgs) Kind() string { return "fhirgate.pull" }

// New runs River's migrations and prepares the service; Start runs it.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Consolidator == nil {
		cfg.Consolidator = &consolidate.Consolidator{Store: cfg.Store}
	}
	cfg.Workers = cmpOr(cfg.Workers, 4)
	cfg.MaxAttempts = cmpOr(cfg.MaxAttempts, 5)
	if cfg.RetryDelay == nil {
		cfg.RetryDelay = func(n int) time.Duration { return time.Duration(n*n*n*n) * time.Second }
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 30 * time.Minute
	}
	if cfg.RescueAfter <= cfg.JobTimeout {
		cfg.RescueAfter = cfg.JobTimeout + time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With(slog.String("component", "jobs")), sources: map[string]adapters.Source{}, progress: map[int64]int{}}
	for _, src := range cfg.Sources {
		s.sources[src.ID()] = src
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &pullWorker{s: s}); err != nil {
		return nil, err
	}
	rc := &river.Config{
		Logger:               s.log,
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}},
		Workers:              workers,
		MaxAttempts:          cfg.MaxAttempts,
		RetryPolicy:          retryPolicy{cfg.RetryDelay},
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		FetchPollInterval:    cfg.PollInterval,
		FetchCooldown:        min(100*time.Millisecond, cfg.PollInterval),
		// keep reports long enough for a client to come back for them
		CompletedJobRetentionPeriod: 7 * 24 * time.Hour,
		CancelledJobRetentionPeriod: 7 * 24 * time.Hour,
		DiscardedJobRetentionPeriod: 7 * 24 * time.Hour,
		Middleware:                  cfg.Middleware,
	}
	ss, ok := cfg.Store.(*sqlstore.Store)
	if !ok {
		return nil, ErrUnsupportedStore
	}
	switch db := ss.DB().(type) {
	case interface{ Writer() *sql.DB }:
		drv := riversqlite.New(db.Writer())
		if err := riverdb.Migrate(ctx, drv); err != nil {
			return nil, err
		}
		c, err := river.NewClient(drv, rc)
		if err != nil {
			return nil, err
		}
		s.q = riverQueue[*sql.Tx]{c}
	case interface{ Pool() *pgxpool.Pool }:
		drv := riverpgxv5.New(db.Pool())
		if err := riverdb.Migrate(ctx, drv); err != nil {
			return nil, err
		}
		c, err := river.NewClient(drv, rc)
		if err != nil {
			return nil, err
		}
		s.q = riverQueue[pgx.Tx]{c}
	default:
		return nil, ErrUnsupportedStore
	}
	return s, nil
}

// Start starts the workers; jobs left over from an earlier run (waiting,
// retrying, or interrupted) run again.
func (s *Service) Start(ctx context.Context) error { return s.q.start(ctx) }

// Stop cancels running jobs and waits for them to return (they run again
// after the next Start).
func (s *Service) Stop(ctx context.Context) error { return s.q.stop(ctx) }

// HasSource reports whether a source is configured.
func (s *Service) HasSource(id string) bool { _, ok := s.sources[id]; return ok }

// SourceIDs returns the configured source ids, sorted.
func (s *Service) SourceIDs() []string {
	ids := make([]string, 0, len(s.sources))
	for id := range s.sources {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Enqueue starts a pull of the local Patient's record from sources (every
// configured source when empty, except those the patient connects
// and has not) and returns the pull's id. Naming a source the patient has
// not connected fails with adapters.ErrNotConnected.
func (s *Service) Enqueue(ctx context.Context, patientID string, sources []string) (string, error) {
	if _, err := s.cfg.Store.Read(ctx, "Patient", patientID); err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			return "", fmt.Errorf("%w: Patient/%s", ErrPatientNotFound, patientID)
		}
		return "", err
	}
	all := len(sources) == 0
	if all {
		sources = s.SourceIDs()
	}
	var args []PullArgs
	seen := map[string]bool{}
	for _, id := range sources {
		if !s.HasSource(id) {
			return "", fmt.Errorf("%w: %q", ErrUnknownSource, id)
		}
		if c := s.cfg.Connections; c != nil && c.Connectable(id) {
			// a broken connection is pulled: its report says to reconnect
			if _, err := c.SourcePatient(ctx, patientID, id); errors.Is(err, adapters.ErrNotConnected) {
				if all {
					continue
				}
				return "", fmt.Errorf("%w: %q (connect it first)", adapters.ErrNotConnected, id)
			} else if err != nil && !errors.Is(err, adapters.ErrReconnect) {
				return "", err
			}
		}
		if !seen[id] {
			seen[id] = true
			args = append(args, PullArgs{Patient: patientID, Source: id})
		}
	}
	if len(args) == 0 {
		return "", fmt.Errorf("%w: no source is configured", ErrUnknownSource)
	}
	ids, err := s.q.insert(ctx, args)
	if err != nil {
		return "", fmt.Errorf("enqueue pull: %w", err)
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(parts, "-"), nil
}

func cmpOr(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// retryPolicy waits cfg.RetryDelay, or longer when the source asked for it.
type retryPolicy struct{ delay func(int) time.Duration }

func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	d := p.delay(max(job.Attempt, 1))
	var out SourceReport
	if json.Unmarshal(job.Output(), &out) == nil && out.RetryAfter > d {
		d = out.RetryAfter
	}
	return time.Now().Add(d)
}
