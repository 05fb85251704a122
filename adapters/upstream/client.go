package upstream

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/smart"
	"github.com/fhirgate/fhirgate/fhir"
)

// Client sends requests to one upstream.
type Client struct {
	id    string
	cfg   Config
	base  *url.URL
	hc    *http.Client
	clock adapters.Clock
	log   *slog.Logger
	auth  authorizer
	key   *smart.Key
	login *adapters.PatientLogin // smart-patient
	sem   chan struct{}
	lim   *limiter
	// ownHTTP: the client made its own *http.Client (and may close its idle
	// connections).
	ownHTTP bool
}

// New returns a client for cfg, which should have passed Validate. Secrets
// are read now; nothing is sent until the first request.
func New(id string, cfg Config, opts adapters.Options) (*Client, error) {
	opts = opts.WithDefaults()
	p := &adapters.Problems{}
	cfg.Validate(p, opts)
	if len(p.Items) > 0 {
		return nil, adapters.ProblemsError(p.Items)
	}
	cfg = cfg.withDefaults()
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: baseURL: %w", adapters.ErrConfig, err)
	}
	hc := opts.HTTPClient
	own := hc == nil
	if own {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Concurrency
		hc = &http.Client{Transport: tr}
	}
	c := &Client{
		id: id, cfg: cfg, base: base, hc: hc, clock: opts.Clock, log: opts.Logger,
		sem: make(chan struct{}, cfg.Concurrency), ownHTTP: own,
	}
	if cfg.RateLimit > 0 {
		c.lim = &limiter{rate: cfg.RateLimit, burst: float64(cfg.RateBurst), clock: opts.Clock}
	}
	a := cfg.Auth
	tc := smart.TokenConfig{
		FHIRBase: cfg.BaseURL, TokenURL: a.TokenURL, ClientID: a.ClientID,
		Scope: strings.Join(a.Scopes, " "), HTTP: hc, Now: opts.Clock.Now,
	}
	switch a.Type {
	case AuthNone:
	case AuthBearer:
		tok, _ := opts.LookupEnv(a.TokenEnv)
		c.auth = staticToken(tok)
	case AuthClientSecret:
		tc.Secret, _ = opts.LookupEnv(a.SecretEnv)
		c.auth = &tokenAuth{smart.NewTokenSource(tc)}
	case AuthSMARTBackend:
		k, err := smart.LoadKeyFile(a.PrivateKeyFile, a.KeyID)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", adapters.ErrConfig, err)
		}
		c.key, tc.Key = k, k
		c.auth = &tokenAuth{smart.NewTokenSource(tc)}
	case AuthSMARTPatient:
		c.auth = userAuth{}
		c.login = &adapters.PatientLogin{BaseURL: cfg.BaseURL, ClientID: a.ClientID, Scope: strings.Join(a.Scopes, " ")}
		if a.SecretEnv != "" {
			c.login.Secret, _ = opts.LookupEnv(a.SecretEnv)
		}
	}
	return c, nil
}

// Close releases the idle connections of the client's own connection pool
// (not those of an HTTPClient passed in Options).
func (c *Client) Close() error {
	if c.ownHTTP {
		c.hc.CloseIdleConnections()
	}
	return nil
}

// BaseURL is the upstream's FHIR base without a trailing slash.
func (c *Client) BaseURL() string { return c.cfg.BaseURL }

// Config is the client's configuration with defaults applied.
func (c *Client) Config() Config { return c.cfg }

// Clock is the client's clock.
func (c *Client) Clock() adapters.Clock { return c.clock }

// Logger is the client's logger.
func (c *Client) Logger() *slog.Logger { return c.log }

// PublicJWKs returns the public JWK of the SMART signing key, if any.
func (c *Client) PublicJWKs() [][]byte {
	if c.key == nil {
		return nil
	}
	return [][]byte{c.key.PublicJWKJSON()}
}

// TokenFetches reports how many access tokens were obtained (0 without
// OAuth).
func (c *Client) TokenFetches() int {
	if ta, ok := c.auth.(*tokenAuth); ok {
		return ta.ts.Fetches()
	}
	return 0
}

// Resolve makes ref absolute against the base URL ("Patient/1" →
// "{base}/Patient/1"); absolute URLs are returned unchanged.
func (c *Client) Resolve(ref string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return ref
	}
	return c.cfg.BaseURL + "/" + strings.TrimPrefix(ref, "/")
}

// SameOrigin reports whether u has the base URL's scheme, host and port:
// only such URLs get the credentials by default (SMART: never forward the
// token to other servers).
func (c *Client) SameOrigin(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && strings.EqualFold(pu.Scheme, c.base.Scheme) && strings.EqualFold(pu.Host, c.base.Host)
}

// AuthPolicy says when to send credentials.
type AuthPolicy int

const (
	// AuthSameOrigin sends them only to the base URL's origin.
	AuthSameOrigin AuthPolicy = iota
	// AuthAlways sends them anywhere (Bulk Data files with
	// requiresAccessToken true).
	AuthAlways
	// AuthOmit never sends them (Bulk Data files with requiresAccessToken
	// false are capability URLs).
	AuthOmit
)

// Request is one request; Do repeats it as needed.
type Request struct {
	// Op names what the request is for, in errors and logs ("search
	// Observation").
	Op string
	// Method defaults to GET.
	Method string
	// URL is absolute or relative to the base URL.
	URL    string
	Header http.Header
	Body   []byte
	Auth   AuthPolicy
	// Retry decides whether an error status is worth repeating; nil is
	// RetryStatus.
	Retry func(status int, body []byte) bool
	// Resumed says the caller is repeating the request itself (a download
	// resumed after it broke off): its first attempt counts as a retry.
	Resumed bool
}

// RetryStatus is the default retry decision: 408, 429, 500, 502, 503, 504.
func RetryStatus(status int, _ []byte) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Response is a complete response with a 2xx (or 3xx not followed) status.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// URL is the URL that answered.
	URL string
}

// Counter counts the requests of one fetch; see WithCounter.
type Counter struct {
	requests, retries atomic.Int64
}

// Requests returns the number of requests sent.
func (c *Counter) Requests() int { return int(c.requests.Load()) }

// Retries returns how many of them were repeats.
func (c *Counter) Retries() int { return int(c.retries.Load()) }

type counterKey struct{}

// WithCounter returns a context whose requests are counted in n.
func WithCounter(ctx context.Context, n *Counter) context.Context {
	return context.WithValue(ctx, counterKey{}, n)
}

func countRequest(ctx context.Context, retry bool) {
	if n, ok := ctx.Value(counterKey{}).(*Counter); ok {
		n.requests.Add(1)
		if retry {
			n.retries.Add(1)
		}
	}
}

// Do sends the request, reads the whole body (at most MaxResponseBytes)
// and returns a 2xx/3xx response. It repeats the request on connection
// errors, time-outs and retryable statuses (waiting for Retry-After or an
// exponential back-off with jitter), and once after a 401 with a renewed
// token. Failures are *adapters.Error.
func (c *Client) Do(ctx context.Context, r *Request) (*Response, error) {
	var out *Response
	err := c.retry(ctx, r, func(ctx context.Context, resp *http.Response, release func()) (int, []byte, error) {
		defer release()
		defer resp.Body.Close()
		body, err := readBody(resp, c.cfg.MaxResponseBytes)
		if err != nil {
			return resp.StatusCode, nil, err
		}
		if resp.StatusCode < 400 {
			out = &Response{Status: resp.StatusCode, Header: resp.Header, Body: body, URL: resp.Request.URL.String()}
		}
		return resp.StatusCode, body, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Stream is a response whose body is read as it arrives.
type Stream struct {
	Status int
	Header http.Header
	// Body is decompressed when the upstream sent gzip; reading it fails
	// with a time-out when no data arrives for the configured Timeout.
	Body io.ReadCloser
}

// Open is Do for large bodies: it retries until a 2xx status arrives and
// returns the body unread. The caller must close it. Failures while
// reading are the caller's to retry (see Backoff).
func (c *Client) Open(ctx context.Context, r *Request) (*Stream, error) {
	var out *Stream
	err := c.retry(ctx, r, func(actx context.Context, resp *http.Response, release func()) (int, []byte, error) {
		if resp.StatusCode >= 300 {
			defer release()
			defer resp.Body.Close()
			body, err := readBody(resp, 1<<20)
			return resp.StatusCode, body, err
		}
		body, err := decompress(resp)
		if err != nil {
			release()
			resp.Body.Close()
			return resp.StatusCode, nil, err
		}
		out = &Stream{Status: resp.StatusCode, Header: resp.Header, Body: &streamBody{r: body, closer: resp.Body, release: release, ctx: actx, timeout: c.cfg.Timeout}}
		return resp.StatusCode, nil, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Backoff waits before retry number attempt (1 for the first retry) of
// something the caller repeats itself, such as a download cut short.
func (c *Client) Backoff(ctx context.Context, attempt int) error {
	return c.clock.Sleep(ctx, c.backoff(attempt))
}

// MaxRetries is the configured number of retries.
func (c *Client) MaxRetries() int { return *c.cfg.MaxRetries }

// Fail builds the *adapters.Error for a failure the caller detected in a
// response (a malformed body, for example).
func (c *Client) Fail(op, method, rawURL string, status int, err error) *adapters.Error {
	if method == "" {
		method = http.MethodGet
	}
	return &adapters.Error{Source: c.id, Op: op, Method: method, Path: urlPath(c.Resolve(rawURL)), Status: status, Err: err}
}

// attemptFunc handles a response (of any status). It must call release
// once it no longer needs the connection slot, and returns the status and,
// for error statuses, the body (to find an OperationOutcome), or an error
// while reading.
type attemptFunc func(ctx context.Context, resp *http.Response, release func()) (int, []byte, error)

func (c *Client) retry(ctx context.Context, r *Request, handle attemptFunc) error {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	target := c.Resolve(r.URL)
	fail := func(status, attempts int, cause error) *adapters.Error {
		return &adapters.Error{Source: c.id, Op: r.Op, Method: method, Path: urlPath(target), Status: status, Attempts: attempts, Err: cause}
	}
	retryStatus := r.Retry
	if retryStatus == nil {
		retryStatus = RetryStatus
	}
	renewed := false
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fail(0, attempt, err)
		}
		status, body, hdr, err := c.attempt(ctx, r, method, target, attempt > 0 || r.Resumed, handle)
		var (
			retryable bool
			wait      time.Duration
			cause     error
		)
		var tokErr *smart.TokenError
		switch {
		case err == nil && status < 400:
			return nil
		case ctx.Err() != nil:
			return fail(status, attempt+1, ctx.Err())
		case errors.As(err, &tokErr):
			if !tokErr.Temporary() {
				return fail(tokErr.Status, attempt+1, fmt.Errorf("%w: %w", adapters.ErrUnauthorized, err))
			}
			retryable, cause = true, fmt.Errorf("%w: %w", adapters.ErrUnavailable, err)
		case errors.Is(err, adapters.ErrNotConnected) || errors.Is(err, adapters.ErrReconnect):
			return fail(0, attempt+1, err)
		case errors.Is(err, smart.ErrDiscovery) || errors.Is(err, smart.ErrKey):
			return fail(0, attempt+1, fmt.Errorf("%w: %w", adapters.ErrUnauthorized, err))
		case errors.Is(err, errTooLarge):
			return fail(status, attempt+1, fmt.Errorf("%w: %w", adapters.ErrMalformed, err))
		case errors.Is(err, errAttemptTimeout):
			retryable, cause = true, fmt.Errorf("%w: no answer within %s", adapters.ErrTimeout, c.cfg.Timeout)
		case err != nil:
			retryable, cause = true, fmt.Errorf("%w: %w", adapters.ErrUnavailable, scrub(err))
		case status == http.StatusUnauthorized && c.auth != nil && c.auth.renewable() && !renewed:
			// The token expired or was revoked mid-pull: renew it once,
			// without counting this as a retry.
			renewed = true
			attempt--
			c.log.Info("access token refused, renewing", "op", r.Op)
			continue
		default:
			cause = statusError(status, body)
			retryable = retryStatus(status, body)
			if d, ok := ParseRetryAfter(hdr.Get("Retry-After"), c.clock.Now()); ok && retryable {
				if d > c.cfg.MaxRetryDelay {
					e := fail(status, attempt+1, fmt.Errorf("%w: asked to wait %s, more than maxRetryDelay %s", cause, d, c.cfg.MaxRetryDelay))
					e.RetryAfter, e.Outcome = d, outcomeOf(body)
					return e
				}
				wait = d
			}
		}
		if !retryable || attempt >= *c.cfg.MaxRetries {
			e := fail(status, attempt+1, cause)
			e.Outcome = outcomeOf(body)
			return e
		}
		if wait == 0 {
			wait = c.backoff(attempt + 1)
		}
		c.log.Warn("upstream request failed, retrying", "op", r.Op, "method", method, "path", urlPath(target),
			"status", status, "attempt", attempt+1, "wait", wait, "error", cause)
		if err := c.clock.Sleep(ctx, wait); err != nil {
			return fail(status, attempt+1, err)
		}
	}
}

var (
	errAttemptTimeout = errors.New("attempt timed out")
	errTooLarge       = errors.New("response larger than maxResponseBytes")
)

// attempt sends the request once and hands the response to handle.
func (c *Client) attempt(ctx context.Context, r *Request, method, target string, isRetry bool, handle attemptFunc) (int, []byte, http.Header, error) {
	if err := c.lim.wait(ctx); err != nil {
		return 0, nil, nil, err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, nil, nil, ctx.Err()
	}
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(c.cfg.Timeout, func() { cancel(errAttemptTimeout) })
	var once sync.Once
	release := func() {
		once.Do(func() {
			timer.Stop()
			cancel(nil)
			<-c.sem
		})
	}
	req, err := http.NewRequestWithContext(actx, method, target, bytes.NewReader(r.Body))
	if err != nil {
		release()
		return 0, nil, nil, fmt.Errorf("%w: %w", adapters.ErrConfig, err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/fhir+json")
	}
	// Set explicitly, so the transport leaves decompression to us (it only
	// does it when it added the header itself), for every response alike.
	req.Header.Set("Accept-Encoding", "gzip")
	if c.auth != nil && (r.Auth == AuthAlways || r.Auth == AuthSameOrigin && c.SameOrigin(target)) {
		if err := c.auth.authorize(actx, req); err != nil {
			release()
			return 0, nil, nil, err
		}
	}
	countRequest(ctx, isRetry)
	resp, err := c.hc.Do(req)
	if err != nil {
		release()
		if context.Cause(actx) == errAttemptTimeout && ctx.Err() == nil {
			return 0, nil, nil, errAttemptTimeout
		}
		return 0, nil, nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && c.auth != nil {
		c.auth.invalidate(req)
	}
	// Once the headers are in, a streamed body gets an idle time-out
	// instead of one for the whole transfer.
	status, body, err := handle(actx, timeoutResponse{resp, timer, c.cfg.Timeout}.wrap(), release)
	if err != nil && context.Cause(actx) == errAttemptTimeout && ctx.Err() == nil {
		err = errAttemptTimeout
	}
	return status, body, resp.Header, err
}

// timeoutResponse arranges for reads of a body to push the attempt's
// time-out further on each successful read.
type timeoutResponse struct {
	resp    *http.Response
	timer   *time.Timer
	timeout time.Duration
}

func (t timeoutResponse) wrap() *http.Response {
	t.resp.Body = &idleBody{ReadCloser: t.resp.Body, timer: t.timer, timeout: t.timeout}
	return t.resp
}

type idleBody struct {
	io.ReadCloser
	timer   *time.Timer
	timeout time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.timer.Reset(b.timeout)
	}
	return n, err
}

type streamBody struct {
	r       io.Reader
	closer  io.Closer
	release func()
	ctx     context.Context
	timeout time.Duration
}

// Read reports a stalled download as adapters.ErrTimeout.
func (s *streamBody) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && context.Cause(s.ctx) == errAttemptTimeout {
		err = fmt.Errorf("%w: no data for %s", adapters.ErrTimeout, s.timeout)
	}
	return n, err
}

func (s *streamBody) Close() error {
	err := s.closer.Close()
	s.release()
	return err
}

// readBody reads a whole (possibly gzip) body of at most limit bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	r, err := decompress(resp)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// decompress returns the body, gunzipped when the upstream said so or when
// it starts with the gzip magic number (file servers that send .ndjson.gz
// as is; JSON never starts with 0x1f).
func decompress(resp *http.Response) (io.Reader, error) {
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	gz := strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip")
	if !gz {
		if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
			gz = true
		}
	}
	if !gz {
		return br, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return bytes.NewReader(nil), nil // empty body
		}
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return zr, nil
}

func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.RetryDelay << min(attempt-1, 20)
	if d <= 0 || d > c.cfg.MaxRetryDelay {
		d = c.cfg.MaxRetryDelay
	}
	// Half fixed, half random ("equal jitter"): spreads retries of many
	// clients without ever retrying at once.
	return d/2 + rand.N(d/2+1)
}

// ParseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date
// (relative to now); ok is false when it is absent or invalid.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 || secs > int64(24*time.Hour/time.Second) {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// statusError maps an error status to a sentinel, with the upstream's
// issue codes (not its texts, which can hold patient data).
func statusError(status int, body []byte) error {
	var s error
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		s = adapters.ErrUnauthorized
	case status == http.StatusNotFound || status == http.StatusGone:
		s = adapters.ErrNotFound
	case status == http.StatusTooManyRequests:
		s = adapters.ErrRateLimited
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		s = adapters.ErrTimeout
	case status >= 500:
		s = adapters.ErrUnavailable
	default:
		s = adapters.ErrRejected
	}
	if oo := outcomeOf(body); oo != nil && len(oo.Issue) > 0 {
		codes := make([]string, 0, len(oo.Issue))
		for _, is := range oo.Issue {
			codes = append(codes, is.Code)
		}
		return fmt.Errorf("%w (OperationOutcome: %s)", s, strings.Join(codes, ", "))
	}
	return s
}

// outcomeOf parses body as an OperationOutcome, or returns nil.
func outcomeOf(body []byte) *fhir.OperationOutcome {
	if len(body) == 0 || !bytes.Contains(body, []byte(`"OperationOutcome"`)) {
		return nil
	}
	var oo fhir.OperationOutcome
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	return &oo
}

// OutcomeOf is outcomeOf for adapters: the OperationOutcome in body, or nil.
func OutcomeOf(body []byte) *fhir.OperationOutcome { return outcomeOf(body) }

// scrub removes the URL (and its query, which can carry identifiers) from
// transport errors.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

func urlPath(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	if u.Path == "" {
		return "/"
	}
	return u.EscapedPath()
}

// limiter is a token bucket on the client's clock.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	clock  adapters.Clock
}

// wait reserves one token and sleeps until it is due.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := l.clock.Now()
	if l.last.IsZero() {
		l.tokens = l.burst
	} else if now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	l.tokens--
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	return l.clock.Sleep(ctx, d)
}

// authorizer adds credentials to a request.
type authorizer interface {
	authorize(ctx context.Context, req *http.Request) error
	// invalidate is told about a 401 for req.
	invalidate(req *http.Request)
	// renewable reports whether a 401 is worth one retry with new
	// credentials.
	renewable() bool
}

type staticToken string

func (t staticToken) authorize(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+string(t))
	return nil
}
func (staticToken) invalidate(*http.Request) {}
func (staticToken) renewable() bool          { return false }

type tokenAuth struct{ ts *smart.TokenSource }

func (a *tokenAuth) authorize(ctx context.Context, req *http.Request) error {
	tok, err := a.ts.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (a *tokenAuth) invalidate(req *http.Request) {
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		a.ts.Invalidate(tok)
	}
}

func (a *tokenAuth) renewable() bool { return true }

// userAuth sends the token of the patient whose record is fetched, which
// the caller put in the context (adapters.WithUserToken).
type userAuth struct{}

func (userAuth) authorize(ctx context.Context, req *http.Request) error {
	ut := adapters.UserTokenFrom(ctx)
	if ut == nil {
		return adapters.ErrNotConnected
	}
	tok, err := ut.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (userAuth) invalidate(req *http.Request) {
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		if ut := adapters.UserTokenFrom(req.Context()); ut != nil {
			ut.Invalidate(tok)
		}
	}
}

func (userAuth) renewable() bool { return true }

// PatientLogin describes how patients connect the source (auth type
// smart-patient); ok is false for the other auth types.
func (c *Client) PatientLogin() (adapters.PatientLogin, bool) {
	if c.login == nil {
		return adapters.PatientLogin{}, false
	}
	return *c.login, true
}
