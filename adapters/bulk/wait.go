package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
)

// WaitExport polls the job until the manifest is ready.
func (s *Source) WaitExport(ctx context.Context, job *adapters.ExportJob, progress func(string)) (*adapters.Manifest, error) {
	m, err := s.wait(ctx, job, progress)
	return m, adapters.WithSource(s.id, err)
}

func (s *Source) wait(ctx context.Context, job *adapters.ExportJob, progress func(string)) (*adapters.Manifest, error) {
	const op = "poll export"
	interval := s.cfg.PollInterval
	for {
		resp, err := s.c.Do(ctx, &upstream.Request{
			Op: op, URL: job.StatusURL, Header: http.Header{"Accept": {"application/json"}}, Retry: retryPoll,
		})
		if err != nil {
			return nil, jobFailed(err)
		}
		switch resp.Status {
		case http.StatusOK:
			return s.manifest(resp, job)
		case http.StatusAccepted:
		default:
			return nil, s.c.Fail(op, "", job.StatusURL, resp.Status, fmt.Errorf("%w: unexpected status while polling", adapters.ErrMalformed))
		}
		if p := resp.Header.Get("X-Progress"); p != "" && progress != nil {
			progress(truncate(p, 100))
		}
		wait := interval
		if d, ok := upstream.ParseRetryAfter(resp.Header.Get("Retry-After"), s.c.Clock().Now()); ok {
			wait = min(d, s.c.Config().MaxRetryDelay)
		} else {
			interval = min(interval*2, s.cfg.MaxPollInterval)
		}
		if s.c.Clock().Now().Add(wait).Sub(job.Started) > s.cfg.MaxWait {
			return nil, s.c.Fail(op, "", job.StatusURL, resp.Status, fmt.Errorf("%w: the export did not complete within maxWait %s", adapters.ErrTimeout, s.cfg.MaxWait))
		}
		if err := s.c.Clock().Sleep(ctx, wait); err != nil {
			return nil, s.c.Fail(op, "", job.StatusURL, 0, err)
		}
	}
}

// retryPoll repeats polls that failed for a reason other than the job:
// 429, and 5xx unless an OperationOutcome says something other than
// "transient" (Bulk Data: a polling failure that is not a job failure
// SHOULD use the transient code).
func retryPoll(status int, body []byte) bool {
	switch {
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return true
	case status >= 500:
		oo := upstream.OutcomeOf(body)
		return oo == nil || transient(oo)
	}
	return false
}

func transient(oo *fhir.OperationOutcome) bool {
	for _, is := range oo.Issue {
		switch is.Code {
		case "transient", "throttled", "timeout":
			return true
		}
	}
	return false
}

// jobFailed marks a poll error as the job's failure (ErrExportFailed) unless
// it is about credentials, rate limits or the source's availability.
func jobFailed(err error) error {
	var e *adapters.Error
	if !errors.As(err, &e) || e.Status == 0 ||
		errors.Is(err, adapters.ErrUnauthorized) || errors.Is(err, adapters.ErrRateLimited) ||
		e.Status >= 500 && (e.Outcome == nil || transient(e.Outcome)) {
		return err
	}
	e.Err = fmt.Errorf("%w: %w", adapters.ErrExportFailed, e.Err)
	return e
}

// manifest parses and checks the completion manifest.
func (s *Source) manifest(resp *upstream.Response, job *adapters.ExportJob) (*adapters.Manifest, error) {
	const op = "read export manifest"
	fail := func(format string, args ...any) error {
		return s.c.Fail(op, "", job.StatusURL, resp.Status, fmt.Errorf("%w: "+format, append([]any{adapters.ErrMalformed}, args...)...))
	}
	body := bytes.TrimSpace(resp.Body)
	if len(body) > 0 && body[0] == '<' {
		return nil, s.c.Fail(op, "", job.StatusURL, resp.Status, fmt.Errorf("%w: got markup instead of a manifest", adapters.ErrNotFHIR))
	}
	var raw struct {
		TransactionTime     string                  `json:"transactionTime"`
		Request             string                  `json:"request"`
		RequiresAccessToken *bool                   `json:"requiresAccessToken"`
		Output              []adapters.ManifestFile `json:"output"`
		Error               []adapters.ManifestFile `json:"error"`
		Deleted             []adapters.ManifestFile `json:"deleted"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fail("the manifest is not valid JSON: %v", syntaxOnly(err))
	}
	if raw.RequiresAccessToken == nil || raw.Output == nil {
		return nil, fail("the manifest lacks requiresAccessToken or output")
	}
	tt, err := time.Parse(time.RFC3339Nano, raw.TransactionTime)
	if err != nil {
		return nil, fail("transactionTime %q is not an instant", raw.TransactionTime)
	}
	m := &adapters.Manifest{TransactionTime: tt, Request: raw.Request, RequiresAccessToken: *raw.RequiresAccessToken,
		Output: raw.Output, Error: raw.Error, Deleted: raw.Deleted}
	for _, files := range [][]adapters.ManifestFile{m.Output, m.Error, m.Deleted} {
		for _, f := range files {
			if u, err := url.Parse(f.URL); err != nil || !u.IsAbs() || u.Host == "" {
				return nil, fail("a file URL is not absolute")
			}
		}
	}
	return m, nil
}

// syntaxOnly keeps the position of a JSON error but not the offending
// value.
func syntaxOnly(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s has the wrong type", te.Field)
	}
	return errors.New("invalid JSON")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
