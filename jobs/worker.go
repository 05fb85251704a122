package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/riverqueue/river"
)

// SourceReport is what one source job did; it is stored as the job's
// output and is the per-source part of a pull's report.
type SourceReport struct {
	Source string `json:"source"`
	// State is pending, running, retrying, completed or failed.
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// SourcePatient is the patient's id at the source.
	SourcePatient string `json:"sourcePatient,omitempty"`
	// Method, Requests and Retries describe the fetch (adapters.Result).
	Method   string `json:"method,omitempty"`
	Requests int    `json:"requests,omitempty"`
	Retries  int    `json:"retries,omitempty"`
	// Fetched counts resources received (so far, while running).
	Fetched int `json:"fetched"`
	// Written is what consolidation did with them.
	Written *consolidate.Report `json:"written,omitempty"`
	// SourceIssues are problems the source reported (error files,
	// OperationOutcomes in search results). They may hold patient data.
	SourceIssues []fhir.Issue `json:"sourceIssues,omitempty"`
	// Error is why the last attempt failed (safe to log: no patient data).
	Error string `json:"error,omitempty"`
	// RetryAfter is the wait the source asked for before the next try.
	RetryAfter time.Duration `json:"retryAfter,omitempty"`
	// Reconnect is set when the source no longer accepts the patient's
	// own login (a source the patient connects): the patient must
	// connect it again.
	Reconnect bool `json:"reconnect,omitempty"`
}

type pullWorker struct {
	river.WorkerDefaults[PullArgs]
	s *Service
}

// Work pulls one source. The fetch is collected before anything is written
// so that a failed fetch (a partial record) leaves the store untouched.
func (w *pullWorker) Work(ctx context.Context, job *river.Job[PullArgs]) error {
	s := w.s
	// what the pull writes is recorded, in its transactions, as this
	ctx = audit.WithActivity(ctx, &audit.Job{Event: audit.Event{Interaction: "operation", Operation: "pull", Origin: job.Args.Source}})
	rep := SourceReport{Source: job.Args.Source, State: "running", Attempts: job.Attempt}
	fail := func(err error, permanent bool) error {
		rep.State, rep.Error = "failed", err.Error()
		if errors.Is(err, adapters.ErrReconnect) {
			rep.Reconnect, permanent = true, true
		}
		var ae *adapters.Error
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			rep.RetryAfter = ae.RetryAfter
		}
		if !permanent && job.Attempt < job.MaxAttempts {
			rep.State = "retrying"
		}
		_ = river.RecordOutput(ctx, rep)
		s.log.Warn("pull failed", "source", job.Args.Source, "attempt", job.Attempt, "err", err)
		if permanent {
			return river.JobCancel(err)
		}
		return err
	}
	defer func() {
		s.mu.Lock()
		delete(s.progress, job.ID)
		s.mu.Unlock()
	}()
	src, ok := s.sources[job.Args.Source]
	if !ok {
		return fail(fmt.Errorf("%w: %q is no longer configured", ErrUnknownSource, job.Args.Source), true)
	}
	local, err := s.cfg.Store.Read(ctx, "Patient", job.Args.Patient)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			return fail(fmt.Errorf("%w: Patient/%s", ErrPatientNotFound, job.Args.Patient), true)
		}
		return fail(err, false)
	}
	var spid string
	connected := s.cfg.Connections != nil && s.cfg.Connections.Connectable(src.ID())
	if connected {
		// the patient's own login there says who the patient is; its
		// tokens go with every request of the fetch
		spid, err = s.cfg.Connections.SourcePatient(ctx, local.ID, src.ID())
		if err != nil {
			return fail(adapters.WithSource(src.ID(), err), !adapters.Temporary(err))
		}
		ctx = adapters.WithUserToken(ctx, s.cfg.Connections.UserToken(local.ID, src.ID()))
	} else if spid, err = s.findPatient(ctx, src, local); err != nil {
		return fail(err, !adapters.Temporary(err))
	}
	rep.SourcePatient = spid
	var rs []*fhir.Resource
	res, err := src.Fetch(ctx, adapters.FetchRequest{PatientID: spid}, func(r *fhir.Resource) error {
		rs = append(rs, r)
		s.mu.Lock()
		s.progress[job.ID] = len(rs)
		s.mu.Unlock()
		return nil
	})
	rep.Method, rep.Requests, rep.Retries, rep.Fetched, rep.SourceIssues = res.Method, res.Requests, res.Retries, len(rs), res.Issues
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // stopped: River runs the job again after the restart
		}
		if errors.Is(err, adapters.ErrPending) {
			// not a failure: ask again later without using up an attempt
			wait := time.Minute
			var ae *adapters.Error
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				wait = ae.RetryAfter
			}
			rep.State, rep.Error, rep.RetryAfter = "waiting", err.Error(), wait
			_ = river.RecordOutput(ctx, rep)
			return river.JobSnooze(wait)
		}
		return fail(err, !adapters.Temporary(err))
	}
	if connected {
		// the login named the patient, but a source's Patient that
		// contradicts the local one is the wrong record: nothing is filed
		if err := checkDemographics(local, spid, rs); err != nil {
			return fail(adapters.WithSource(src.ID(), err), true)
		}
	}
	written, err := s.cfg.Consolidator.Apply(ctx, consolidate.Batch{Source: src.ID(), PatientID: local.ID, SourcePatientID: spid, Resources: rs})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail(fmt.Errorf("write the record: %w", err), errors.Is(err, consolidate.ErrNoPatient))
	}
	rep.State, rep.Written = "completed", written
	return river.RecordOutput(ctx, rep)
}

// ErrWrongPatient: the source's Patient contradicts the local one.
var ErrWrongPatient = errors.New("the source's Patient contradicts the local Patient: nothing was filed")

// checkDemographics compares the source's Patient (when the fetch
// returned it) with the local one, as imports are checked; the error names
// the contradicting elements, never their values.
func checkDemographics(local *fhir.Resource, spid string, rs []*fhir.Resource) error {
	for _, r := range rs {
		if r.Type != "Patient" || r.ID != spid {
			continue
		}
		ms := subject.Compare(subject.FromPatient(r), subject.FromPatient(local))
		if len(ms) == 0 {
			return nil
		}
		safe := make([]string, len(ms))
		for i, m := range ms {
			safe[i] = m.Safe()
		}
		return fmt.Errorf("%w (%s)", ErrWrongPatient, strings.Join(safe, "; "))
	}
	return nil
}

// findPatient returns the patient's id at the source: the one an earlier
// pull recorded on the local Patient, else the best candidate the source's
// patient search finds from the local Patient's identifiers and
// demographics.
func (s *Service) findPatient(ctx context.Context, src adapters.Source, local *fhir.Resource) (string, error) {
	if id := consolidate.SourcePatientID(local, src.ID()); id != "" {
		return id, nil
	}
	pf, ok := src.(adapters.PatientFinder)
	if !ok {
		return "", adapters.WithSource(src.ID(), fmt.Errorf("%w: the source cannot search for patients and no earlier pull recorded the patient's id there", adapters.ErrUnsupported))
	}
	q := adapters.PatientQuery{Patient: local}
	root := local.Root()
	if ids := root.Get("identifier"); ids != nil {
		for _, id := range ids.Items {
			sys, val := id.Get("system").String(), id.Get("value").String()
			if val != "" && !strings.HasPrefix(sys, consolidate.SourcePrefix) {
				q.Identifiers = append(q.Identifiers, adapters.Identifier{System: sys, Value: val})
			}
		}
	}
	if names := root.Get("name"); names != nil && len(names.Items) > 0 {
		n := names.Items[0]
		q.Family = n.Get("family").String()
		if g := n.Get("given"); g != nil {
			for _, v := range g.Items {
				q.Given = append(q.Given, v.String())
			}
		}
	}
	q.BirthDate, q.Gender = root.Get("birthDate").String(), root.Get("gender").String()
	ms, err := pf.FindPatient(ctx, q)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Certain {
			return m.ID, nil
		}
	}
	if len(ms) == 1 {
		return ms[0].ID, nil
	}
	return "", adapters.WithSource(src.ID(), fmt.Errorf("%w: %d uncertain candidates; link the patient with an identifier", adapters.ErrPatientNotFound, len(ms)))
}

// Status is a pull's state.
type Status struct {
	ID      string `json:"id"`
	Patient string `json:"patient"`
	// Done is true when every source job ended (completed or failed).
	Done bool `json:"done"`
	// Progress is a short human-readable summary ("2 of 3 sources done,
	// 180 resources fetched").
	Progress string         `json:"progress"`
	Sources  []SourceReport `json:"sources"`
}

// Status returns the state of a pull.
func (s *Service) Status(ctx context.Context, pullID string) (*Status, error) {
	var ids []int64
	for _, p := range strings.Split(pullID, "-") {
		var id int64
		if _, err := fmt.Sscan(p, &id); err != nil || id <= 0 || fmt.Sprint(id) != p {
			return nil, fmt.Errorf("%w: %q", ErrUnknownPull, pullID)
		}
		ids = append(ids, id)
	}
	st := &Status{ID: pullID, Done: true}
	done, fetched := 0, 0
	for _, id := range ids {
		row, err := s.q.get(ctx, id)
		if err != nil {
			if errors.Is(err, river.ErrNotFound) {
				return nil, fmt.Errorf("%w: %q", ErrUnknownPull, pullID)
			}
			return nil, err
		}
		var args PullArgs
		if err := json.Unmarshal(row.EncodedArgs, &args); err != nil || row.Kind != (PullArgs{}).Kind() {
			return nil, fmt.Errorf("%w: %q", ErrUnknownPull, pullID)
		}
		if st.Patient == "" {
			st.Patient = args.Patient
		} else if st.Patient != args.Patient {
			return nil, fmt.Errorf("%w: %q", ErrUnknownPull, pullID)
		}
		rep := SourceReport{Source: args.Source, Attempts: row.Attempt}
		if out := row.Output(); len(out) > 0 {
			_ = json.Unmarshal(out, &rep)
			rep.Attempts = row.Attempt
		}
		recorded := rep.State
		switch row.State {
		case "completed":
			rep.State = "completed"
		case "cancelled", "discarded":
			rep.State = "failed"
			if rep.Error == "" && len(row.Errors) > 0 {
				rep.Error = row.Errors[len(row.Errors)-1].Error
			}
		case "running":
			rep.State = "running"
			s.mu.Lock()
			if n, ok := s.progress[row.ID]; ok {
				rep.Fetched = n
			}
			s.mu.Unlock()
		case "retryable":
			rep.State = "retrying"
		default:
			rep.State = "pending"
		}
		if recorded == "waiting" && (row.State == "scheduled" || row.State == "available" || row.State == "running") {
			// snoozed until the source is ready (a patient's grant)
			rep.State = "waiting"
		}
		if rep.State == "completed" || rep.State == "failed" {
			done++
		} else {
			st.Done = false
		}
		fetched += rep.Fetched
		st.Sources = append(st.Sources, rep)
	}
	st.Progress = fmt.Sprintf("%d of %d sources done, %d resources fetched", done, len(ids), fetched)
	return st, nil
}

// Wait polls a pull until it is done or ctx ends, calling progress (which
// may be nil) on every change.
func (s *Service) Wait(ctx context.Context, pullID string, every time.Duration, progress func(*Status)) (*Status, error) {
	last := ""
	for {
		st, err := s.Status(ctx, pullID)
		if err != nil {
			return nil, err
		}
		if progress != nil && st.Progress != last {
			last = st.Progress
			progress(st)
		}
		if st.Done {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(every):
		}
	}
}
