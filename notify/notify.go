// Package notify delivers FHIR Subscriptions (R5 Backport on R4,
// topic-based, rest-hook) for the second-opinion workflow: a recipient is
// told of new requests, requesters and patients of status changes.
//
// Durability comes in two steps. The store's write hook records every
// event in an outbox table inside the writing transaction, so an event
// exists exactly when its Task version does. A dispatcher then moves outbox
// rows into River jobs (queue "notify") in one transaction that also
// numbers the events of each subscription; River retries a failing
// endpoint with back-off and runs unfinished deliveries again after a
// restart. Heartbeats are enqueued by the same dispatcher when due.
package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/internal/riverdb"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
)

// Queue is the River queue notifications run on; other River clients on
// the same database must not work it.
const Queue = "notify"

// ErrUnsupportedStore: the store is neither the SQLite nor the PostgreSQL
// sqlstore.
var ErrUnsupportedStore = errors.New("notify: the store has no database River can use")

// Config configures a Service.
type Config struct {
	// Store is the gateway's store (a *sqlstore.Store). Required.
	Store storage.Store
	// BaseURL is the public FHIR base, for references in notifications.
	BaseURL string
	// HTTP posts notifications; a client with a 30 s timeout when nil.
	HTTP *http.Client
	// AllowHTTP admits http:// endpoints (tests, loopback setups).
	AllowHTTP bool
	// Logger; nil discards. Never receives bodies or channel headers.
	Logger *slog.Logger
	// Now is the clock of event timestamps and heartbeats; time.Now when nil.
	Now func() time.Time
	// PollInterval is how often the dispatcher looks at the outbox and
	// for due heartbeats, and how often idle SQLite workers poll (default 1 s).
	PollInterval time.Duration
	// MaxAttempts bounds the tries of one notification (default 8); when
	// the last fails the Subscription is set to error.
	MaxAttempts int
	// RetryDelay is the wait before retry n (1-based); default n⁴ seconds.
	RetryDelay func(attempt int) time.Duration
	// Workers is how many notifications are posted at once (default 4).
	Workers int
	// Middleware is installed in the River client (metrics).
	Middleware []rivertype.Middleware
	// Delivered, when set, is told of every attempt to post a
	// notification: its type, how long it took and its error.
	Delivered func(typ string, d time.Duration, err error)
}

// Service dispatches and delivers notifications.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *sqlstore.Store
	q     queue

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// queue hides River's transaction type: it runs fn in a transaction of the
// River database and inserts the jobs fn returns in it.
type queue interface {
	inTx(ctx context.Context, fn func(tx txExec) ([]DeliverArgs, error)) error
	start(ctx context.Context) error
	stop(ctx context.Context) error
}

// txExec runs statements (written with '?') in the dispatcher's transaction.
type txExec interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryInt(ctx context.Context, q string, args ...any) (int64, error)
}

type riverQueue[TTx any] struct {
	c     *river.Client[TTx]
	begin func(ctx context.Context) (TTx, txExec, func(context.Context) error, func(context.Context) error, error)
}

func (q riverQueue[TTx]) inTx(ctx context.Context, fn func(tx txExec) ([]DeliverArgs, error)) error {
	tx, ex, commit, rollback, err := q.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = rollback(context.WithoutCancel(ctx)) }()
	jobs, err := fn(ex)
	if err != nil {
		return err
	}
	if len(jobs) > 0 {
		ps := make([]river.InsertManyParams, len(jobs))
		for i := range jobs {
			ps[i] = river.InsertManyParams{Args: jobs[i], InsertOpts: &river.InsertOpts{Queue: Queue}}
		}
		if _, err := q.c.InsertManyTx(ctx, tx, ps); err != nil {
			return fmt.Errorf("insert notification jobs: %w", err)
		}
	}
	return commit(ctx)
}

func (q riverQueue[TTx]) start(ctx context.Context) error { return q.c.Start(ctx) }
func (q riverQueue[TTx]) stop(ctx context.Context) error  { return q.c.StopAndCancel(ctx) }

type sqlExec struct{ tx *sql.Tx }

func (e sqlExec) exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := e.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func (e sqlExec) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := e.tx.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

type pgExec struct{ tx pgx.Tx }

func (e pgExec) exec(ctx context.Context, q string, args ...any) (int64, error) {
	t, err := e.tx.Exec(ctx, rebind(q), args...)
	return t.RowsAffected(), err
}

func (e pgExec) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := e.tx.QueryRow(ctx, rebind(q), args...).Scan(&n)
	return n, err
}

// rebind turns '?' placeholders into PostgreSQL's $n (our statements
// have no '?' inside literals).
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// New creates the service's tables, runs River's migrations and prepares
// the workers; install Hooks on the store, then Start.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.RetryDelay == nil {
		cfg.RetryDelay = func(n int) time.Duration { return time.Duration(n*n*n*n) * time.Second }
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	ss, ok := cfg.Store.(*sqlstore.Store)
	if !ok {
		return nil, ErrUnsupportedStore
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With(slog.String("component", "notify")), store: ss}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &deliverWorker{s: s}); err != nil {
		return nil, err
	}
	rc := &river.Config{
		Logger:            s.log,
		Queues:            map[string]river.QueueConfig{Queue: {MaxWorkers: cfg.Workers}},
		Workers:           workers,
		MaxAttempts:       cfg.MaxAttempts,
		RetryPolicy:       retryPolicy{cfg.RetryDelay},
		JobTimeout:        5*time.Minute + 10*time.Second,
		FetchPollInterval: cfg.PollInterval,
		FetchCooldown:     min(100*time.Millisecond, cfg.PollInterval),
		Middleware:        cfg.Middleware,
	}
	switch db := ss.DB().(type) {
	case interface{ Writer() *sql.DB }:
		if err := createTables(ctx, ss.DB(), "INTEGER PRIMARY KEY AUTOINCREMENT"); err != nil {
			return nil, err
		}
		drv := riversqlite.New(db.Writer())
		if err := riverdb.Migrate(ctx, drv); err != nil {
			return nil, err
		}
		c, err := river.NewClient(drv, rc)
		if err != nil {
			return nil, err
		}
		w := db.Writer()
		s.q = riverQueue[*sql.Tx]{c: c, begin: func(ctx context.Context) (*sql.Tx, txExec, func(context.Context) error, func(context.Context) error, error) {
			tx, err := w.BeginTx(ctx, nil)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			return tx, sqlExec{tx}, func(context.Context) error { return tx.Commit() }, func(context.Context) error { return tx.Rollback() }, nil
		}}
	case interface{ Pool() *pgxpool.Pool }:
		if err := createTables(ctx, ss.DB(), "BIGSERIAL PRIMARY KEY"); err != nil {
			return nil, err
		}
		drv := riverpgxv5.New(db.Pool())
		if err := riverdb.Migrate(ctx, drv); err != nil {
			return nil, err
		}
		c, err := river.NewClient(drv, rc)
		if err != nil {
			return nil, err
		}
		pool := db.Pool()
		s.q = riverQueue[pgx.Tx]{c: c, begin: func(ctx context.Context) (pgx.Tx, txExec, func(context.Context) error, func(context.Context) error, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			return tx, pgExec{tx}, tx.Commit, tx.Rollback, nil
		}}
	default:
		return nil, ErrUnsupportedStore
	}
	return s, nil
}

func createTables(ctx context.Context, db sqlstore.DB, serial string) error {
	for _, q := range []string{
		// one row per Subscription: what matching needs, and the event counter
		`CREATE TABLE IF NOT EXISTS notify_sub (id TEXT PRIMARY KEY, topic TEXT NOT NULL, filters TEXT NOT NULL,
			status TEXT NOT NULL, heartbeat BIGINT NOT NULL, next_heartbeat BIGINT NOT NULL, events BIGINT NOT NULL DEFAULT 0)`,
		// the last seen status of every second-opinion Task, to tell changes
		`CREATE TABLE IF NOT EXISTS notify_task (id TEXT PRIMARY KEY, status TEXT NOT NULL)`,
		// the parties of every second-opinion Task, to address its messages
		`CREATE TABLE IF NOT EXISTS notify_task_refs (id TEXT PRIMARY KEY, refs TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS notify_outbox (id ` + serial + `, kind TEXT NOT NULL, sub TEXT NOT NULL,
			topic TEXT NOT NULL, focus TEXT NOT NULL, refs TEXT NOT NULL, at BIGINT NOT NULL)`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			return fmt.Errorf("notify tables: %w", err)
		}
	}
	return nil
}

type retryPolicy struct{ delay func(int) time.Duration }

func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(p.delay(max(job.Attempt, 1)))
}

// Hooks returns the store hooks that record events, chained after prev.
func (s *Service) Hooks(prev sqlstore.Hooks) sqlstore.Hooks {
	return sqlstore.Hooks{AfterWrite: func(ctx context.Context, c sqlstore.Conn, ws []sqlstore.Write) error {
		if prev.AfterWrite != nil {
			if err := prev.AfterWrite(ctx, c, ws); err != nil {
				return err
			}
		}
		return s.afterWrite(ctx, c, ws)
	}}
}

// Install sets the service's hooks on its store. Hooks already set cannot
// be read back and are replaced: where the store has others, chain them
// with Hooks instead.
func (s *Service) Install() { s.store.SetHooks(s.Hooks(sqlstore.Hooks{})) }

// serviceWrite marks the context of the service's own status changes.
type serviceWrite struct{}

// taskRefs are the references a Task is matched on.
type taskRefs struct {
	Owner     string `json:"owner,omitempty"`
	Requester string `json:"requester,omitempty"`
	Patient   string `json:"patient,omitempty"`
}

func (t taskRefs) get(param string) string {
	switch param {
	case "owner":
		return t.Owner
	case "requester":
		return t.Requester
	case "patient":
		return t.Patient
	}
	return ""
}

type taskJSON struct {
	Status          string `json:"status"`
	GroupIdentifier struct {
		System string `json:"system"`
	} `json:"groupIdentifier"`
	Owner     struct{ Reference string } `json:"owner"`
	Requester struct{ Reference string } `json:"requester"`
	For       struct{ Reference string } `json:"for"`
}

func (s *Service) afterWrite(ctx context.Context, c sqlstore.Conn, ws []sqlstore.Write) error {
	now := s.cfg.Now().UnixMicro()
	for _, w := range ws {
		switch w.Type {
		case "Subscription":
			if err := s.subscriptionWritten(ctx, c, w, now); err != nil {
				return err
			}
		case "Task":
			if err := s.taskWritten(ctx, c, w, now); err != nil {
				return err
			}
		case "Communication":
			if err := s.messageWritten(ctx, c, w, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) subscriptionWritten(ctx context.Context, c sqlstore.Conn, w sqlstore.Write, now int64) error {
	if w.Resource == nil {
		_, err := c.Exec(ctx, `DELETE FROM notify_sub WHERE id = ?`, w.ID)
		return err
	}
	if !topicSubscription(w.Resource) {
		// an R4 core (query-based) Subscription: the gateway notifies only
		// on its topics, so it refuses one a client would wait on in vain;
		// one that is off asks for nothing and is kept as sent
		if err := checkQueryBased(w.Resource); err != nil {
			return err
		}
		_, err := c.Exec(ctx, `DELETE FROM notify_sub WHERE id = ?`, w.ID)
		return err
	}
	sub, err := ParseSubscription(w.Resource.Raw, s.cfg.AllowHTTP)
	if err != nil {
		return err
	}
	if sub.Status == "active" || sub.Status == "error" {
		// only the handshake and failed deliveries set these; a client
		// may keep them while changing other elements
		var prev string
		err := c.QueryRow(ctx, `SELECT status FROM notify_sub WHERE id = ?`, w.ID).Scan(&prev)
		if err != nil && !errors.Is(err, sqlstore.ErrNoRows) {
			return fmt.Errorf("notify: subscription state: %w", err)
		}
		if prev != sub.Status && ctx.Value(serviceWrite{}) == nil {
			return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Subscription.status"},
				"status %s is set by the server; create or update the Subscription with status requested", sub.Status)
		}
	}
	filters, _ := json.Marshal(sub.Filters)
	next := int64(0)
	if sub.Heartbeat > 0 {
		next = now + sub.Heartbeat*1e6
	}
	// the event counter survives updates of the Subscription
	if _, err := c.Exec(ctx, `INSERT INTO notify_sub (id, topic, filters, status, heartbeat, next_heartbeat, events) VALUES (?, ?, ?, ?, ?, ?, 0)
		ON CONFLICT (id) DO UPDATE SET topic = excluded.topic, filters = excluded.filters, status = excluded.status,
		heartbeat = excluded.heartbeat, next_heartbeat = excluded.next_heartbeat`,
		w.ID, sub.Topic, string(filters), sub.Status, sub.Heartbeat, next); err != nil {
		return fmt.Errorf("notify: record subscription: %w", err)
	}
	if sub.Status == "requested" {
		if _, err := c.Exec(ctx, `INSERT INTO notify_outbox (kind, sub, topic, focus, refs, at) VALUES ('handshake', ?, ?, '', '', ?)`, w.ID, sub.Topic, now); err != nil {
			return fmt.Errorf("notify: record handshake: %w", err)
		}
	}
	return nil
}

func (s *Service) taskWritten(ctx context.Context, c sqlstore.Conn, w sqlstore.Write, now int64) error {
	if w.Resource == nil {
		if _, err := c.Exec(ctx, `DELETE FROM notify_task_refs WHERE id = ?`, w.ID); err != nil {
			return err
		}
		_, err := c.Exec(ctx, `DELETE FROM notify_task WHERE id = ?`, w.ID)
		return err
	}
	var t taskJSON
	if err := json.Unmarshal(w.Resource.Raw, &t); err != nil || t.GroupIdentifier.System != referral.RequisitionSystem {
		return nil // not a second-opinion Task (the store has validated the JSON)
	}
	parties, _ := json.Marshal(taskRefs{Owner: t.Owner.Reference, Requester: t.Requester.Reference, Patient: t.For.Reference})
	if _, err := c.Exec(ctx, `INSERT INTO notify_task_refs (id, refs) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET refs = excluded.refs`, w.ID, string(parties)); err != nil {
		return fmt.Errorf("notify: task parties: %w", err)
	}
	var prev string
	err := c.QueryRow(ctx, `SELECT status FROM notify_task WHERE id = ?`, w.ID).Scan(&prev)
	existed := err == nil
	if err != nil && !errors.Is(err, sqlstore.ErrNoRows) {
		return fmt.Errorf("notify: task state: %w", err)
	}
	if existed && prev == t.Status {
		return nil
	}
	if _, err := c.Exec(ctx, `INSERT INTO notify_task (id, status) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status`, w.ID, t.Status); err != nil {
		return fmt.Errorf("notify: task state: %w", err)
	}
	refs, _ := json.Marshal(taskRefs{Owner: t.Owner.Reference, Requester: t.Requester.Reference, Patient: t.For.Reference})
	topic := TopicStatusChanged
	if !existed {
		topic = TopicNewRequest
	}
	if _, err := c.Exec(ctx, `INSERT INTO notify_outbox (kind, sub, topic, focus, refs, at) VALUES ('event', '', ?, ?, ?, ?)`,
		topic, "Task/"+w.ID, string(refs), now); err != nil {
		return fmt.Errorf("notify: record event: %w", err)
	}
	return nil
}

type messageJSON struct {
	PartOf    []struct{ Reference string } `json:"partOf"`
	BasedOn   []struct{ Reference string } `json:"basedOn"`
	Sender    struct{ Reference string }   `json:"sender"`
	Recipient []struct{ Reference string } `json:"recipient"`
}

// messageWritten records an event for a new follow-up message of a
// second-opinion Task, addressed to the Task's parties that sent or
// receive it.
func (s *Service) messageWritten(ctx context.Context, c sqlstore.Conn, w sqlstore.Write, now int64) error {
	if w.Resource == nil || !w.Created {
		return nil
	}
	var m messageJSON
	if err := json.Unmarshal(w.Resource.Raw, &m); err != nil {
		return nil
	}
	involved := map[string]bool{localRef(m.Sender.Reference): true}
	for _, r := range m.Recipient {
		involved[localRef(r.Reference)] = true
	}
	for _, r := range append(m.PartOf, m.BasedOn...) {
		id, ok := strings.CutPrefix(localRef(r.Reference), "Task/")
		if !ok {
			continue
		}
		var raw string
		err := c.QueryRow(ctx, `SELECT refs FROM notify_task_refs WHERE id = ?`, id).Scan(&raw)
		if errors.Is(err, sqlstore.ErrNoRows) {
			continue // not a second-opinion Task
		}
		if err != nil {
			return fmt.Errorf("notify: task parties: %w", err)
		}
		var parties, refs taskRefs
		if err := json.Unmarshal([]byte(raw), &parties); err != nil {
			return err
		}
		for _, f := range []struct{ from, to *string }{{&parties.Owner, &refs.Owner}, {&parties.Requester, &refs.Requester}, {&parties.Patient, &refs.Patient}} {
			if involved[localRef(*f.from)] {
				*f.to = *f.from
			}
		}
		b, _ := json.Marshal(refs)
		if _, err := c.Exec(ctx, `INSERT INTO notify_outbox (kind, sub, topic, focus, refs, at) VALUES ('event', '', ?, ?, ?, ?)`,
			TopicMessage, "Communication/"+w.ID, string(b), now); err != nil {
			return fmt.Errorf("notify: record event: %w", err)
		}
		return nil
	}
	return nil
}

// localRef drops a base URL and a version from a reference: "Type/id".
func localRef(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return ref
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

// Start starts the workers and the dispatcher; notifications left over
// from an earlier run are delivered.
func (s *Service) Start(ctx context.Context) error {
	if err := s.q.start(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan struct{})
	go s.dispatchLoop(dctx, s.done)
	return nil
}

// Stop stops the dispatcher and the workers; unfinished deliveries run
// again after the next Start.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
	s.mu.Unlock()
	return s.q.stop(ctx)
}

func (s *Service) dispatchLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		if err := s.Dispatch(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("dispatching notifications failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type outboxRow struct {
	id                      int64
	kind, sub, topic, focus string
	refs                    string
	at                      int64
}

type subRow struct {
	id, filters string
}

// Dispatch moves recorded events into delivery jobs and enqueues due
// heartbeats, each in one transaction; the dispatcher calls it every
// PollInterval.
func (s *Service) Dispatch(ctx context.Context) error {
	db := s.store.DB()
	rows, err := db.Query(ctx, `SELECT id, kind, sub, topic, focus, refs, at FROM notify_outbox ORDER BY id LIMIT 200`)
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.id, &r.kind, &r.sub, &r.topic, &r.focus, &r.refs, &r.at); err != nil {
			rows.Close()
			return err
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	subs := map[string][]subRow{}
	for _, r := range out {
		if r.kind != "event" || subs[r.topic] != nil {
			continue
		}
		ss, err := s.activeSubs(ctx, r.topic)
		if err != nil {
			return err
		}
		subs[r.topic] = ss
	}
	if len(out) > 0 {
		if err := s.q.inTx(ctx, func(tx txExec) ([]DeliverArgs, error) {
			var jobs []DeliverArgs
			for _, r := range out {
				// another gateway process may have taken the row
				n, err := tx.exec(ctx, `DELETE FROM notify_outbox WHERE id = ?`, r.id)
				if err != nil || n == 0 {
					if err != nil {
						return nil, err
					}
					continue
				}
				at := time.UnixMicro(r.at).UTC()
				if r.kind == "handshake" {
					jobs = append(jobs, DeliverArgs{Subscription: r.sub, Type: TypeHandshake, At: at})
					continue
				}
				var refs taskRefs
				if err := json.Unmarshal([]byte(r.refs), &refs); err != nil {
					return nil, err
				}
				for _, sr := range subs[r.topic] {
					if !matches(sr.filters, refs) {
						continue
					}
					ev, err := tx.queryInt(ctx, `UPDATE notify_sub SET events = events + 1 WHERE id = ? AND status = 'active' RETURNING events`, sr.id)
					if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
						continue
					}
					if err != nil {
						return nil, err
					}
					jobs = append(jobs, DeliverArgs{Subscription: sr.id, Type: TypeEvent, Event: ev, Focus: r.focus, At: at})
				}
			}
			return jobs, nil
		}); err != nil {
			return fmt.Errorf("dispatch events: %w", err)
		}
	}
	return s.heartbeats(ctx)
}

func (s *Service) activeSubs(ctx context.Context, topic string) ([]subRow, error) {
	rows, err := s.store.DB().Query(ctx, `SELECT id, filters FROM notify_sub WHERE topic = ? AND status = 'active'`, topic)
	if err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	defer rows.Close()
	var out []subRow
	for rows.Next() {
		var r subRow
		if err := rows.Scan(&r.id, &r.filters); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// matches reports whether every filter of a subscription holds for a Task.
func matches(filters string, refs taskRefs) bool {
	var f map[string]string
	if json.Unmarshal([]byte(filters), &f) != nil || len(f) == 0 {
		return false
	}
	for p, v := range f {
		if refs.get(p) != v {
			return false
		}
	}
	return true
}

func (s *Service) heartbeats(ctx context.Context) error {
	now := s.cfg.Now()
	rows, err := s.store.DB().Query(ctx, `SELECT id FROM notify_sub WHERE status = 'active' AND heartbeat > 0 AND next_heartbeat <= ?`, now.UnixMicro())
	if err != nil {
		return fmt.Errorf("read heartbeats: %w", err)
	}
	var due []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		due = append(due, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(due) == 0 {
		return err
	}
	return s.q.inTx(ctx, func(tx txExec) ([]DeliverArgs, error) {
		var jobs []DeliverArgs
		for _, id := range due {
			n, err := tx.exec(ctx, `UPDATE notify_sub SET next_heartbeat = ? + heartbeat * 1000000 WHERE id = ? AND next_heartbeat <= ?`, now.UnixMicro(), id, now.UnixMicro())
			if err != nil {
				return nil, err
			}
			if n > 0 {
				jobs = append(jobs, DeliverArgs{Subscription: id, Type: TypeHeartbeat, At: now.UTC()})
			}
		}
		return jobs, nil
	})
}

// EventsSinceStart returns how many events a Subscription has had (the
// value of events-since-subscription-start); ErrNotFound from storage when
// the gateway does not know it.
func (s *Service) EventsSinceStart(ctx context.Context, id string) (int64, error) {
	var n int64
	err := s.store.DB().QueryRow(ctx, `SELECT events FROM notify_sub WHERE id = ?`, id).Scan(&n)
	if errors.Is(err, sqlstore.ErrNoRows) {
		return 0, fmt.Errorf("Subscription/%s: %w", id, storage.ErrNotFound)
	}
	return n, err
}

// Check refuses a Subscription the service would refuse when it is
// stored (a query-based one that is not off, an unknown topic, a filter or
// channel it does not serve), before any transaction: the server calls it
// with the other write checks so that a refusal inside a transaction
// Bundle names its entry. The store hook checks again.
func (s *Service) Check(r *fhir.Resource) error {
	if r.Type != "Subscription" {
		return nil
	}
	if !topicSubscription(r) {
		return checkQueryBased(r)
	}
	_, err := ParseSubscription(r.Raw, s.cfg.AllowHTTP)
	return err
}

// checkQueryBased refuses an R4 core Subscription whose criteria is a
// search ("Observation?code=1234") rather than one of the gateway's topics,
// unless its status is off: such a Subscription would never be activated
// nor notified. The error is a 422 naming Subscription.criteria. A
// topic-based Subscription (see ParseSubscription) passes.
func checkQueryBased(r *fhir.Resource) error {
	if r.Type != "Subscription" || topicSubscription(r) {
		return nil
	}
	if r.Root().Get("status").String() == "off" {
		return nil
	}
	return fhir.Errorf(http.StatusUnprocessableEntity, "not-supported", []string{"Subscription.criteria"},
		"query-based Subscriptions (criteria %q) are not served: this server notifies only through topic-based Subscriptions of the R4 backport profile (%s) on the topics %s, %s and %s; a Subscription with status off is kept as a record",
		r.Root().Get("criteria").String(), ProfileSubscription, TopicNewRequest, TopicStatusChanged, TopicMessage)
}

// topicSubscription reports whether a Subscription is one the gateway
// manages: it claims the R4 backport profile, or its criteria is one of the
// gateway's topics (a misspelt topic is then refused, not ignored).
func topicSubscription(r *fhir.Resource) bool {
	root := r.Root()
	if profiles := root.Get("meta").Get("profile"); profiles != nil {
		for _, p := range profiles.Items {
			if p.String() == ProfileSubscription {
				return true
			}
		}
	}
	return strings.HasPrefix(root.Get("criteria").String(), TopicBase)
}
