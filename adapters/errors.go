package adapters

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Sentinel errors. Every error an adapter returns wraps one of them (check
// with errors.Is) inside an *Error that names the source and the request.
var (
	// ErrUnauthorized: the upstream refused the credentials (401/403 after
	// one token renewal, or the token endpoint refused the client).
	ErrUnauthorized = errors.New("not authorized by the source")
	// ErrNotFound: the upstream answered 404/410 for something the fetch
	// needs.
	ErrNotFound = errors.New("not found at the source")
	// ErrPatientNotFound: no patient matched at the source.
	ErrPatientNotFound = errors.New("patient not found at the source")
	// ErrRateLimited: the upstream kept answering 429, or asked to wait
	// longer than the adapter may.
	ErrRateLimited = errors.New("rate limited by the source")
	// ErrUnavailable: the upstream kept failing (5xx, connection errors).
	ErrUnavailable = errors.New("source unavailable")
	// ErrTimeout: requests to the upstream kept timing out.
	ErrTimeout = errors.New("source timed out")
	// ErrMalformed: a response was not valid JSON / NDJSON, was cut short,
	// or was not the FHIR resource expected (for example a search that did
	// not return a Bundle).
	ErrMalformed = errors.New("malformed response from the source")
	// ErrNotFHIR: the upstream did not answer as a FHIR R4 server (an HTML
	// page, another FHIR version).
	ErrNotFHIR = errors.New("source did not answer as a FHIR R4 server")
	// ErrPageLoop: a search's next link led back to a page already read.
	ErrPageLoop = errors.New("search paging loops")
	// ErrPageLimit: a search had more pages than the configured pageLimit.
	ErrPageLimit = errors.New("search has more pages than the page limit")
	// ErrExportFailed: a Bulk Data export job failed at the source.
	ErrExportFailed = errors.New("bulk export failed at the source")
	// ErrUnsupported: the upstream does not offer what was asked.
	ErrUnsupported = errors.New("not supported by the source")
	// ErrRejected: the upstream refused the request itself (another 4xx).
	ErrRejected = errors.New("request refused by the source")
	// ErrConfig: the source's configuration is invalid.
	ErrConfig = errors.New("invalid source configuration")
	// ErrPending: the source is not done yet and nobody is at fault — a
	// patient has not granted a consent request, an export is still being
	// prepared. The caller asks again later (Error.RetryAfter) without
	// counting it as a failed attempt.
	ErrPending = errors.New("waiting on the source")
	// ErrNotConnected: the source reads a patient's record only with the
	// patient's own login there, and the patient has not connected it.
	ErrNotConnected = errors.New("the patient has not connected this source")
	// ErrReconnect: the patient's tokens at the source stopped working
	// (the refresh was refused or there is no refresh token): the patient
	// must connect the source again.
	ErrReconnect = errors.New("reconnect needed: the source no longer accepts the patient's login")
)

// Error is an adapter failure. Error() is safe to log: it holds the source
// id, the operation, the method, the URL path (never the query, which can
// carry identifiers) and the status; the upstream's OperationOutcome, which
// may hold patient data, is kept apart in Outcome.
type Error struct {
	Source string
	// Op says what the adapter was doing ("read CapabilityStatement",
	// "search Observation", "poll export").
	Op     string
	Method string
	// Path is the request URL without query string.
	Path string
	// Status is the last HTTP status, 0 when no response arrived.
	Status int
	// Attempts is how many times the request was sent.
	Attempts int
	// RetryAfter is the wait the upstream asked for when it gave up
	// rate-limited (a job runner can reschedule after it).
	RetryAfter time.Duration
	// Outcome is the upstream's OperationOutcome, if it sent one.
	Outcome *fhir.OperationOutcome
	// Err is the cause; it wraps one of the sentinel errors.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		fmt.Fprintf(&b, "source %s: ", e.Source)
	}
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Method != "" {
		fmt.Fprintf(&b, "%s %s: ", e.Method, e.Path)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d: ", e.Status)
	}
	b.WriteString(e.Err.Error())
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether err is worth retrying later as a whole (rate
// limits, unavailability, time-outs): a job runner reschedules these and
// fails the others.
func Temporary(err error) bool {
	return errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrPending)
}

// WithSource sets the source id of err if it is an *Error without one, and
// wraps any other error (except context errors) into one.
func WithSource(id string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Source == "" {
			e.Source = id
		}
		return err
	}
	if errors.Is(err, errSink) {
		return err
	}
	return &Error{Source: id, Err: err}
}

// errSink marks errors returned by a Sink, which the adapter passes through.
var errSink = errors.New("sink")

// SinkError wraps an error returned by a Sink so that it reaches the caller
// unchanged (errors.Is still finds the sink's own error).
func SinkError(err error) error {
	return fmt.Errorf("%w: %w", errSink, err)
}
