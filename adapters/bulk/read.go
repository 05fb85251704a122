package bulk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// maxIssues bounds the issues kept from error files; the rest are counted.
const maxIssues = 1000

// ReadExport downloads and parses every file of the manifest.
func (s *Source) ReadExport(ctx context.Context, m *adapters.Manifest, sink adapters.Sink) (adapters.Result, error) {
	n := &upstream.Counter{}
	ctx = upstream.WithCounter(ctx, n)
	res, err := s.read(ctx, m, time.Time{}, nil, sink)
	res.Method = "export"
	res.Requests, res.Retries = n.Requests(), n.Retries()
	return res, adapters.WithSource(s.id, err)
}

type fileKind int

const (
	outputFile fileKind = iota
	errorFile
	deletedFile
)

type task struct {
	kind fileKind
	f    adapters.ManifestFile
}

// reader is the state of one ReadExport.
type reader struct {
	s     *Source
	m     *adapters.Manifest
	since time.Time
	types map[string]bool

	mu      sync.Mutex // guards below and serialises sink calls
	sink    adapters.Sink
	res     adapters.Result
	dropped int  // issues beyond maxIssues
	stopped bool // the sink failed: call it no more
}

func (s *Source) read(ctx context.Context, m *adapters.Manifest, since time.Time, types []string, sink adapters.Sink) (adapters.Result, error) {
	r := &reader{s: s, m: m, since: since, sink: sink}
	if len(types) > 0 {
		r.types = map[string]bool{}
		for _, t := range types {
			r.types[t] = true
		}
	}
	var tasks []task
	for _, f := range m.Output {
		tasks = append(tasks, task{outputFile, f})
	}
	for _, f := range m.Error {
		tasks = append(tasks, task{errorFile, f})
	}
	for _, f := range m.Deleted {
		tasks = append(tasks, task{deletedFile, f})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := parallel(ctx, cancel, s.cfg.Parallel, len(tasks), func(i int) error { return r.file(ctx, tasks[i]) })
	if r.dropped > 0 {
		r.res.Issues = append(r.res.Issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: "too-costly",
			Details: &fhir.IssueDetails{Text: fmt.Sprintf("%d more issues in the export's error files were not kept", r.dropped)}})
	}
	r.res.Watermark = m.TransactionTime
	return r.res, err
}

// errStream marks a download that broke off: it is resumed.
type errStream struct{ err error }

func (e *errStream) Error() string { return e.err.Error() }
func (e *errStream) Unwrap() error { return e.err }

// file downloads one file, resuming after the lines already handled when
// the download breaks off, so that no resource is passed twice.
func (r *reader) file(ctx context.Context, t task) error {
	op := "download " + t.f.Type + " file"
	switch t.kind {
	case errorFile:
		op = "download error file"
	case deletedFile:
		op = "download deleted file"
	}
	done := 0
	for attempt := 0; ; attempt++ {
		n, err := r.stream(ctx, t, op, done, attempt > 0)
		done = n
		var se *errStream
		if err == nil {
			break
		}
		if !errors.As(err, &se) || ctx.Err() != nil {
			return err
		}
		if attempt >= r.s.c.MaxRetries() {
			cause := adapters.ErrUnavailable
			if errors.Is(err, adapters.ErrTimeout) {
				cause = adapters.ErrTimeout
			}
			e := r.s.c.Fail(op, "", t.f.URL, http.StatusOK, fmt.Errorf("%w: download broke off after %d lines: %v", cause, done, se.err))
			e.Attempts = attempt + 1
			return e
		}
		r.s.log.Warn("download broke off, resuming", "op", op, "lines", done, "attempt", attempt+1, "error", se.err)
		if err := r.s.c.Backoff(ctx, attempt+1); err != nil {
			return err
		}
	}
	if t.kind == outputFile && t.f.Count > 0 && done != t.f.Count {
		return r.s.c.Fail(op, "", t.f.URL, http.StatusOK,
			fmt.Errorf("%w: the file holds %d resources, the manifest says %d", adapters.ErrMalformed, done, t.f.Count))
	}
	return nil
}

// stream reads the file once, skipping its first skip lines, and returns
// how many lines have now been handled. resumed says it is a repeat.
func (r *reader) stream(ctx context.Context, t task, op string, skip int, resumed bool) (int, error) {
	auth := upstream.AuthOmit
	if r.m.RequiresAccessToken {
		auth = upstream.AuthAlways
	}
	st, err := r.s.c.Open(ctx, &upstream.Request{Op: op, URL: t.f.URL, Auth: auth, Resumed: resumed,
		Header: http.Header{"Accept": {"application/fhir+ndjson"}}})
	if err != nil {
		return skip, err
	}
	defer st.Body.Close()
	if ct, _, _ := mime.ParseMediaType(st.Header.Get("Content-Type")); strings.HasPrefix(ct, "text/html") || strings.HasSuffix(ct, "xml") {
		return skip, r.s.c.Fail(op, "", t.f.URL, st.Status, fmt.Errorf("%w: got %s instead of NDJSON", adapters.ErrNotFHIR, ct))
	}
	br := bufio.NewReaderSize(st.Body, 64<<10)
	var buf []byte
	lineNo := 0
	for {
		line, complete, err := readLine(br, &buf, r.s.cfg.MaxLineBytes)
		if errors.Is(err, errLineTooLong) {
			return lineNo, r.s.c.Fail(op, "", t.f.URL, st.Status, fmt.Errorf("%w: line %d is longer than maxLineBytes %d", adapters.ErrMalformed, lineNo+1, r.s.cfg.MaxLineBytes))
		}
		if complete && len(bytes.TrimSpace(line)) > 0 {
			lineNo++
			if lineNo > skip {
				if herr := r.handle(t, bytes.TrimSpace(line), lineNo); herr != nil {
					if errors.Is(herr, adapters.ErrMalformed) {
						herr = r.s.c.Fail(op, "", t.f.URL, st.Status, herr)
					}
					return lineNo - 1, herr
				}
			}
		}
		if err == io.EOF {
			return max(lineNo, skip), nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return max(lineNo, skip), r.s.c.Fail(op, "", t.f.URL, 0, ctx.Err())
			}
			return max(lineNo, skip), &errStream{err}
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line into *buf (reused). complete is false for a
// last line cut short by an error other than io.EOF, which must not be
// used.
func readLine(br *bufio.Reader, buf *[]byte, limit int) (line []byte, complete bool, err error) {
	*buf = (*buf)[:0]
	for {
		chunk, err := br.ReadSlice('\n')
		if len(*buf)+len(chunk) > limit+1 {
			return nil, false, errLineTooLong
		}
		*buf = append(*buf, chunk...)
		switch {
		case err == nil:
			return *buf, true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			return *buf, true, io.EOF
		default:
			return *buf, false, err
		}
	}
}

// handle processes one line.
func (r *reader) handle(t task, line []byte, n int) error {
	switch t.kind {
	case errorFile:
		r.issues(line, n)
		return nil
	case deletedFile:
		return r.deleted(line, n)
	}
	// fhir.Parse keeps a tree that aliases its input: give it its own copy.
	res, err := fhir.Parse(bytes.Clone(line))
	if err != nil {
		return fmt.Errorf("%w: line %d: %v", adapters.ErrMalformed, n, err)
	}
	if !r.since.IsZero() && !res.LastUpdated.IsZero() && !res.LastUpdated.After(r.since) {
		return nil
	}
	if r.types != nil && !r.types[res.Type] {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return context.Canceled // another file's sink call failed; that error is reported
	}
	if err := r.sink(res); err != nil {
		r.stopped = true
		return adapters.SinkError(err)
	}
	adapters.Counter(&r.res, func(*fhir.Resource) error { return nil })(res)
	return nil
}

// issues keeps the issues of an error file's OperationOutcome line.
func (r *reader) issues(line []byte, n int) {
	var found []fhir.Issue
	if oo := upstream.OutcomeOf(line); oo != nil {
		found = oo.Issue
	} else {
		found = []fhir.Issue{{Severity: fhir.SeverityWarning, Code: "structure",
			Details: &fhir.IssueDetails{Text: fmt.Sprintf("line %d of an error file is not an OperationOutcome", n)}}}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, is := range found {
		if len(r.res.Issues) >= maxIssues {
			r.dropped++
			continue
		}
		r.res.Issues = append(r.res.Issues, is)
	}
}

// deleted reads a deleted file's transaction Bundle of DELETE entries.
func (r *reader) deleted(line []byte, n int) error {
	root, err := fjson.Parse(line)
	if err != nil || root.Get("resourceType").String() != "Bundle" {
		return fmt.Errorf("%w: deleted file line %d is not a Bundle", adapters.ErrMalformed, n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := root.Get("entry"); e != nil && e.Kind == fjson.Array {
		for _, en := range e.Items {
			req := en.Get("request")
			if req.Get("method").String() == http.MethodDelete {
				if u := req.Get("url").String(); u != "" {
					r.res.Deleted = append(r.res.Deleted, u)
				}
			}
		}
	}
	return nil
}

// parallel runs fn(0..n-1) with at most limit at once; the first error
// cancels ctx and is returned (an error other than a cancellation wins
// over one).
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
				// a cancellation another call caused can be seen before
				// that call's own error: the cause is what is reported
				if firstErr == nil || errors.Is(firstErr, context.Canceled) && !errors.Is(err, context.Canceled) {
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
