package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/storage"
)

// Options configure a Trail.
type Options struct {
	// Keys seal the trail and MAC its checkpoints. Required.
	Keys *Keyring
	// Logger receives the checkpoints and the trail's errors.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Server is the gateway's base URL, named in events of writes that no
	// activity describes.
	Server string
	// CheckpointInterval is how often a checkpoint is published when the
	// trail grew; DefaultCheckpointInterval when 0; never when negative
	// (one is still published at Close).
	CheckpointInterval time.Duration
	// CheckpointFile, when set, receives every checkpoint as a line (the
	// file is opened for appending and synced after each line).
	CheckpointFile string
	// CheckpointURL, when set, receives every checkpoint in a POST
	// (application/json); failures are logged, not retried.
	CheckpointURL string
	// Client posts to CheckpointURL; a client with a 10 s timeout when nil.
	Client *http.Client
	// GroupCommit is the longest the first event of an append waits,
	// from when it was recorded, for the requests being answered (Begin)
	// to join it; DefaultGroupCommit when 0; never when negative. Time it
	// spent waiting for the previous append to commit counts, so a read
	// waits for its event at most GroupCommit or the commit before (the
	// longer), then its own commit. It waits only while other requests are
	// in flight or it carries fewer events than the last append did (when
	// that one carried four or more), so a lone client is not slowed down.
	GroupCommit time.Duration
	// OnAppend, when set, is told of every append of reads' events (how
	// many, how long it took, its error): the gateway's metrics. A write's
	// events commit in the write's own transaction and are not reported.
	OnAppend func(events int, d time.Duration, err error)
	// OnPending, when set, is told of events this process stored pending
	// (another appender held the trail's head: stored > 0) and of those
	// its sealer moved into the trail or refused (their MAC did not hold).
	OnPending func(stored, sealed, refused int)
	// OnRole, when set, is told after every check of the appender's role
	// (storage.AuditAppenderRole) whether this process holds it.
	OnRole func(held bool)
}

// DefaultGroupCommit is how long an append waits, at most, for the other
// requests in flight to join it.
const DefaultGroupCommit = time.Millisecond

// maxGroup bounds the events of one append that waits for others.
const maxGroup = 1024

// DefaultCheckpointInterval is how often checkpoints are published.
const DefaultCheckpointInterval = time.Minute

// Trail writes the audit trail into a store's log: the events of a
// store's write transactions in those transactions (a commit hook), and
// other events (reads, refusals) with group commit: Record waits until
// its events are durable, and one appending transaction carries every
// event recorded while the previous one was committing. Checkpoints of
// the trail's head are published periodically.
type Trail struct {
	log  storage.AuditLog
	keys *Keyring
	opts Options
	log_ *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	cur    *batch
	closed bool
	wake   chan struct{}
	done   chan struct{}

	// appending is held by whoever appends a batch: the writer, or a
	// request appending its own events (Record)
	appending sync.Mutex
	// last is the number of events of the last append
	last atomic.Int64

	// inflight counts the requests begun (Begin) that have not yet
	// recorded their events or ended
	inflight atomic.Int64

	// pend is the log's pending events, when it keeps them (replicas on
	// PostgreSQL): an appender that finds the head held stores its events
	// there, and the sealer moves them into the trail
	pend storage.AuditPendingLog
	// role, when the log is shared by several processes that take turns
	// at the appender's role (storage.AuditAppenderRole); appender
	// reports whether this process holds it (always, without a role)
	role     storage.AuditAppenderRole
	appender atomic.Bool
	// claimFailing is set while the role cannot be checked (claim runs
	// in Open, then only in the sealer: no lock needed)
	claimFailing bool
	sealWake     chan struct{}
	stopSeal     chan struct{}
	sealDone     chan struct{}
	// sealMu makes one sealing pass of this process at a time
	sealMu sync.Mutex

	stopCP   chan struct{}
	cpDone   chan struct{}
	cpMu     sync.Mutex
	lastCP   int64
	closeOne sync.Once
}

type batch struct {
	recs []*storage.AuditRecord
	done chan struct{}
	err  error
	// since is when its first event was recorded: how long group commit
	// may still hold it is measured from there
	since time.Time
}

// ErrClosed: the trail was closed; nothing more can be recorded.
var ErrClosed = errors.New("audit: the trail is closed")

// Open starts a trail on a store that keeps an audit log: it moves the
// AuditEvents of the resource store into the log if there are any
// (Migrate), installs the commit hook that records every write, and
// starts the group-commit writer and the checkpoints.
func Open(ctx context.Context, st storage.Store, opts Options) (*Trail, error) {
	lg, ok := st.(storage.AuditLog)
	if !ok {
		return nil, errors.New("audit: the store keeps no audit log")
	}
	if opts.Keys == nil {
		return nil, errors.New("audit: no key to seal the trail with")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.GroupCommit == 0 {
		opts.GroupCommit = DefaultGroupCommit
	}
	t := &Trail{log: lg, keys: opts.Keys, opts: opts, log_: opts.Logger, now: opts.Now,
		wake: make(chan struct{}, 1), done: make(chan struct{}), stopCP: make(chan struct{}), cpDone: make(chan struct{}),
		sealWake: make(chan struct{}, 1), stopSeal: make(chan struct{}), sealDone: make(chan struct{})}
	t.pend, _ = lg.(storage.AuditPendingLog)
	t.appender.Store(true)
	if r, ok := lg.(storage.AuditAppenderRole); ok && t.pend != nil {
		t.role = r
		t.claim(ctx)
	}
	if _, err := Migrate(ctx, st, opts.Keys, opts.Logger, opts.Now); err != nil {
		return nil, err
	}
	// events a process stored pending before it stopped (or crashed)
	if err := t.Settle(ctx); err != nil {
		return nil, err
	}
	if h, ok := st.(storage.CommitHooker); ok {
		h.SetCommitHook(t.hook)
	} else {
		return nil, errors.New("audit: the store cannot record the events of its writes")
	}
	head, err := lg.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	t.lastCP = -1
	if cps, err := lg.AuditCheckpoints(ctx); err == nil && len(cps) > 0 {
		if c, err := ParseCheckpoint(cps[len(cps)-1]); err == nil && c.Seq == head.Seq {
			t.lastCP = c.Seq
		}
	}
	go t.writer()
	go t.sealer()
	go t.checkpointer()
	return t, nil
}

// Log returns the store's audit log (to serve and verify the trail).
func (t *Trail) Log() storage.AuditLog { return t.log }

// Keys returns the trail's keys.
func (t *Trail) Keys() *Keyring { return t.keys }

// Record appends events and returns once they are durable (committed).
func (t *Trail) Record(ctx context.Context, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	recs := make([]*storage.AuditRecord, 0, len(evs))
	for i := range evs {
		r, err := NewRecord(&evs[i])
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	b := t.cur
	if b == nil {
		b = &batch{done: make(chan struct{}), since: time.Now()}
		t.cur = b
	}
	b.recs = append(b.recs, recs...)
	// A request that group commit would not hold, with no append under
	// way, appends its events itself: handed to the writer they waited,
	// on two cores, for the writer goroutine to be scheduled (a tenth of
	// a millisecond at the median, most of the trail's p99 in an open-loop
	// benchmark). Appends still happen one at a time.
	if !t.holds(b) && t.appending.TryLock() {
		t.cur = nil
		t.mu.Unlock()
		func() {
			// a panic (recovered by the server, for this request) must
			// not leave the trail locked
			defer t.appending.Unlock()
			t.append(b)
		}()
		t.signal() // events recorded meanwhile are the writer's
		return b.err
	}
	t.mu.Unlock()
	t.signal()
	<-b.done
	return b.err
}

// holds reports whether group commit holds batch b for others to join:
// other requests are being answered, or the requests the last append
// released (regroupMin of them at least) are about to ask again (until
// GroupCommit after its first event was recorded; a lone client never
// waits). t.mu is held.
func (t *Trail) holds(b *batch) bool {
	if t.closed || t.opts.GroupCommit <= 0 || len(b.recs) >= maxGroup {
		return false
	}
	if t.inflight.Load() > 0 {
		return true
	}
	last := t.last.Load()
	return last >= regroupMin && int64(len(b.recs)) < last
}

// regroupMin is how many events the last append must have carried (about
// as many requests released) for the next one to wait for their clients
// to ask again. Clients that ask again as
// soon as they are answered (a saturated gateway: wrk's 32 connections)
// come back in numbers, and waiting for them is what fills the appends
// (without it a served gateway's read rate fell by a quarter and its p99
// rose sixfold). Requests that arrive on their own, each from a different
// client (an open loop), never come back: a lone event or a pair would
// wait the whole interval for an arrival to pair with, to save at most one
// commit: that wait was most of what the trail added to a read's p99 at
// 2,000 reads a second.
const regroupMin = 4

// append appends batch b and releases its requests, with an error if the
// append panicked (the panic goes on); t.appending is held.
func (t *Trail) append(b *batch) {
	done := false
	defer func() {
		if !done {
			b.err = errors.New("audit trail: the append failed")
			close(b.done)
		}
	}()
	t.last.Store(int64(len(b.recs)))
	start := time.Now()
	b.err = t.log.AppendAudit(context.Background(), b.recs, t.keys.Seal)
	if t.opts.OnAppend != nil {
		t.opts.OnAppend(len(b.recs), time.Since(start), b.err)
	}
	if b.err != nil {
		t.log_.Error("audit trail append failed", "events", len(b.recs), "err", b.err)
		b.err = fmt.Errorf("audit trail: %w", b.err)
	} else if b.recs[0].Seq == 0 {
		t.pended(len(b.recs)) // another appender held the head
	}
	done = true
	close(b.done)
}

// writer appends the queued events, one transaction at a time: what was
// recorded while a transaction committed goes into the next one.
func (t *Trail) writer() {
	defer close(t.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		t.mu.Lock()
		b := t.cur
		closed := t.closed
		if b != nil && t.holds(b) {
			// let them join this append, until GroupCommit after its
			// first event was recorded (events recorded while the last
			// append was committing have waited already)
			if wait := time.Until(b.since.Add(t.opts.GroupCommit)); wait > 0 {
				t.mu.Unlock()
				timer.Reset(wait)
				select {
				case <-t.wake:
				case <-timer.C:
				}
				continue
			}
		}
		t.cur = nil
		t.mu.Unlock()
		if b != nil {
			t.appending.Lock()
			t.append(b)
			t.appending.Unlock()
			continue
		}
		if closed {
			// a request may still be appending its own events
			t.appending.Lock()
			t.appending.Unlock()
			return
		}
		<-t.wake
	}
}

// Begin tells the trail that a request is being answered whose events
// Record will be asked to append (group commit waits for it); the
// request calls the returned function once its events are recorded or it
// needs none (it may be called more than once).
func (t *Trail) Begin() (end func()) {
	t.inflight.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) && t.inflight.Add(-1) == 0 {
			t.signal()
		}
	}
}

// signal wakes the writer.
func (t *Trail) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// hook records the events of a write transaction in it.
func (t *Trail) hook(ctx context.Context, tx storage.Tx, ws []storage.Written) (func(bool), error) {
	act := ActivityOf(ctx)
	evs, patients, err := t.writeEvents(ctx, tx, act, ws)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	recs := make([]*storage.AuditRecord, 0, len(evs))
	for i := range evs {
		r, err := NewRecord(&evs[i])
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	app, ok := tx.(storage.AuditAppender)
	if !ok {
		return nil, errors.New("audit: the transaction cannot append to the trail")
	}
	if err := app.AppendAudit(ctx, recs, t.keys.Seal); err != nil {
		return nil, err
	}
	pending := recs[0].Seq == 0 // another appender held the head
	if act == nil && !pending {
		return nil, nil
	}
	return func(committed bool) {
		if !committed {
			return
		}
		if pending {
			t.pended(len(recs))
		}
		if act != nil {
			act.Committed(patients)
		}
	}, nil
}

// writeEvents builds the events of a transaction's writes: one per
// patient whose record it changed (the compartment the store indexes,
// before and after), naming the versions as stored; resources of no
// patient are named in each (or in one event of their own). Patients the
// activity touched otherwise (a read inside a transaction) get an event
// too, when they exist. Writes of the gateway's own bookkeeping, which no
// activity describes and which touch no patient, get none.
func (t *Trail) writeEvents(ctx context.Context, tx storage.Tx, act Activity, ws []storage.Written) ([]Event, []string, error) {
	byPatient := map[string][]string{}
	consents := map[string]bool{}
	var others []string
	for _, w := range ws {
		ref := w.Type + "/" + w.ID
		if w.VersionID != "" {
			ref += "/_history/" + w.VersionID
		}
		if len(w.Patients) == 0 {
			others = append(others, ref)
		}
		for _, p := range w.Patients {
			pr := "Patient/" + p
			byPatient[pr] = append(byPatient[pr], ref)
			if w.Type == "Consent" {
				consents[pr] = true
			}
		}
	}
	if act == nil && len(byPatient) == 0 {
		return nil, nil, nil
	}
	var base Event
	if act != nil {
		base = act.Describe()
	} else {
		base = Event{Interaction: interactionOf(ws), Server: t.opts.Server, Origin: "fhirgate"}
	}
	base.Recorded = t.now()
	base.Outcome = Success // a note the activity gives (OutcomeDesc) stays
	base.Patient, base.Resource, base.Resources = "", "", nil
	patients := make([]string, 0, len(byPatient))
	for p := range byPatient {
		patients = append(patients, p)
	}
	slices.Sort(patients)
	var extra []string
	if act != nil {
		for _, p := range act.Touched() {
			if _, ok := byPatient[p]; ok || slices.Contains(extra, p) {
				continue
			}
			// a patient named by what was submitted but stored under
			// another id does not exist: only real patients get an event
			id, ok := strings.CutPrefix(p, "Patient/")
			if !ok {
				continue
			}
			if _, err := tx.Read(ctx, "Patient", id); err == nil || errors.Is(err, storage.ErrGone) {
				extra = append(extra, p)
			} else if !errors.Is(err, storage.ErrNotFound) {
				return nil, nil, err
			}
		}
		slices.Sort(extra)
	}
	if len(ws) == 0 && len(extra) == 0 {
		// a change of state that is no resource (a source connection's
		// tokens, refreshed by a pull job) touched no patient the
		// activity names: nothing to record
		return nil, nil, nil
	}
	var evs []Event
	for _, p := range patients {
		e := base
		e.Patient = p
		e.Resources = append(slices.Clone(byPatient[p]), others...)
		if consents[p] && e.OnBehalfOf == "" && e.Who != p {
			e.OnBehalfOf = p // a custodian wrote the patient's Consent
		}
		evs = append(evs, e)
	}
	for _, p := range extra {
		e := base
		e.Patient = p
		evs = append(evs, e)
	}
	if len(evs) == 0 {
		e := base
		e.Resources = others
		evs = append(evs, e)
	}
	return evs, append(patients, extra...), nil
}

// interactionOf names what writes of the gateway's own did.
func interactionOf(ws []storage.Written) string {
	m := ws[0].Method
	for _, w := range ws[1:] {
		if w.Method != m {
			return "transaction"
		}
	}
	switch m {
	case "POST":
		return "create"
	case "PATCH":
		return "patch"
	case "DELETE":
		return "delete"
	}
	return "update"
}

// Checkpoint publishes a checkpoint of the trail's head now (unless one
// of this head was published already) and returns it.
func (t *Trail) Checkpoint(ctx context.Context) (Checkpoint, error) {
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	// a checkpoint covers what was recorded before it, pending or not
	if err := t.Settle(ctx); err != nil {
		t.log_.Error("audit: pending events not sealed", "err", err)
	}
	head, err := t.log.AuditHead(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	c := t.keys.Checkpoint(head, t.now())
	if head.Seq == t.lastCP {
		return c, nil
	}
	line := c.String()
	if err := t.log.SaveAuditCheckpoint(ctx, c.Seq, line); err != nil {
		return c, err
	}
	t.lastCP = head.Seq
	t.log_.Info("audit checkpoint", "seq", c.Seq, "checkpoint", line)
	if f := t.opts.CheckpointFile; f != "" {
		if err := appendLine(f, line); err != nil {
			t.log_.Error("audit checkpoint not written to its file", "file", f, "err", err)
		}
	}
	if u := t.opts.CheckpointURL; u != "" {
		if err := t.post(ctx, u, line); err != nil {
			t.log_.Error("audit checkpoint not posted", "err", err)
		}
	}
	return c, nil
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (t *Trail) post(ctx context.Context, url, line string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(line)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.opts.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST answered %s", resp.Status)
	}
	return nil
}

// sealPass bounds the events one sealing transaction moves.
const sealPass = 4096

// sealSweep is how often the sealer looks for pending events nobody told
// it of (another replica's, left when it stopped).
const sealSweep = time.Second

// pended notes n events stored pending and wakes the sealer.
func (t *Trail) pended(n int) {
	if t.opts.OnPending != nil {
		t.opts.OnPending(n, 0, 0)
	}
	t.sealSoon()
}

// sealSoon wakes the sealer.
func (t *Trail) sealSoon() {
	select {
	case t.sealWake <- struct{}{}:
	default:
	}
}

// roleSweep is how often the process that holds the appender's role
// seals what the other replicas stored pending (their events are durable
// already; a listing of the trail seals what is pending first), and how
// often the others try to take the role. Sealing in batches of this
// length, rather than as soon as each replica's events arrive, keeps the
// chain's head out of the replicas' way (BENCHMARKS.md, issue 15).
const roleSweep = 200 * time.Millisecond

// claim takes the appender's role, or checks this process still holds it.
func (t *Trail) claim(ctx context.Context) {
	held, err := t.role.ClaimAppender(ctx)
	if err != nil {
		// said once, not at every sweep while the database is away
		if !t.claimFailing {
			t.log_.Warn("audit: the appender's role could not be checked; appending to the chain meanwhile", "err", err)
		}
		held = true // the store appends to the chain when the role is unknown
	}
	t.claimFailing = err != nil
	if held != t.appender.Load() {
		t.log_.Info("audit: appender's role", "held", held)
	}
	t.appender.Store(held)
	if t.opts.OnRole != nil {
		t.opts.OnRole(held)
	}
}

// sealer moves pending events into the trail when told some were stored,
// every sealSweep, and once more when the trail closes. In a log shared
// by several processes (t.role) the one that holds the appender's role
// seals every roleSweep, whoever stored them; the others, whose every
// event goes pending, leave it to it (and still seal every sealSweep, in
// case it is stuck).
func (t *Trail) sealer() {
	defer close(t.sealDone)
	if t.pend == nil {
		<-t.stopSeal
		return
	}
	every := sealSweep
	if t.role != nil {
		every = roleSweep
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-t.stopSeal:
			if err := t.Settle(context.Background()); err != nil {
				t.log_.Error("audit: pending events not sealed", "err", err)
			}
			return
		case <-t.sealWake:
			if t.role != nil {
				// sealed at the next sweep, with whatever else is pending
				// then: sealing at once takes the head from this process's
				// own appends, which then go pending too
				continue
			}
		case <-tick.C:
			if t.role != nil {
				t.claim(context.Background())
				if !t.appender.Load() && time.Since(last) < sealSweep {
					continue
				}
			}
		}
		last = time.Now()
		if err := t.Settle(context.Background()); err != nil {
			t.log_.Error("audit: pending events not sealed", "err", err)
		}
	}
}

// Settle seals every event stored pending so far (by any process) into
// the trail: a reader of the trail calls it first, to see what was
// recorded before it asked. It returns at once when nothing is pending.
func (t *Trail) Settle(ctx context.Context) error {
	if t.pend == nil {
		return nil
	}
	t.sealMu.Lock()
	defer t.sealMu.Unlock()
	for {
		n, bad, err := t.pend.SealPending(ctx, sealPass, t.openPending, t.keys.Seal)
		if err != nil {
			return err
		}
		if t.opts.OnPending != nil && n+bad > 0 {
			t.opts.OnPending(0, n, bad)
		}
		if bad > 0 {
			t.log_.Error("audit: pending events whose MAC does not hold were refused (not sealed); audit verify names them", "events", bad)
		}
		if n+bad < sealPass {
			return nil
		}
	}
}

// openPending checks a pending event's MAC (sequence number 0, no
// previous seal) and returns its record.
func (t *Trail) openPending(p storage.PendingAudit) (*storage.AuditRecord, error) {
	sum, ok := t.keys.sealOf(nil, 0, p.KeyID, p.Body)
	if !ok {
		return nil, fmt.Errorf("audit: pending event %d names an unknown key", p.ID)
	}
	if !hmac.Equal(sum, p.MAC) {
		return nil, fmt.Errorf("audit: pending event %d: its MAC does not hold", p.ID)
	}
	r, err := derived(p.Body)
	if err != nil {
		return nil, err
	}
	r.Body = p.Body
	return r, nil
}

func (t *Trail) checkpointer() {
	defer close(t.cpDone)
	if t.opts.CheckpointInterval < 0 {
		<-t.stopCP
		return
	}
	tick := time.NewTicker(t.opts.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stopCP:
			return
		case <-tick.C:
			if _, err := t.Checkpoint(context.Background()); err != nil {
				t.log_.Error("audit checkpoint failed", "err", err)
			}
		}
	}
}

// Close writes what is queued, publishes a last checkpoint and stops.
// Events recorded after Close fail with ErrClosed.
func (t *Trail) Close() {
	t.closeOne.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		select {
		case t.wake <- struct{}{}:
		default:
		}
		<-t.done
		close(t.stopSeal)
		<-t.sealDone
		close(t.stopCP)
		<-t.cpDone
		if _, err := t.Checkpoint(context.Background()); err != nil {
			t.log_.Error("audit checkpoint failed", "err", err)
		}
	})
}
