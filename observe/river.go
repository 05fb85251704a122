package observe

import (
	"context"
	"errors"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// RiverMiddleware records every River job this process works (kind,
// queue, outcome, duration) in m; install it in river.Config.Middleware.
func (m *Metrics) RiverMiddleware() rivertype.Middleware { return &riverMiddleware{m: m} }

type riverMiddleware struct {
	river.MiddlewareDefaults
	m *Metrics
}

func (r *riverMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	start := time.Now()
	err := doInner(ctx)
	var snooze *river.JobSnoozeError
	var cancel *river.JobCancelError
	state := "completed"
	switch {
	case err == nil:
	case errors.As(err, &snooze):
		state = "snoozed"
	case errors.As(err, &cancel):
		state = "cancelled"
	case job.Attempt >= job.MaxAttempts:
		state = "discarded"
	default:
		state = "retryable"
	}
	r.m.JobDone(job.Kind, job.Queue, state, time.Since(start))
	return err
}
