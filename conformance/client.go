package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// maxResponseBytes bounds what the suite reads of one response.
const maxResponseBytes = 64 << 20

// response is one HTTP exchange as a check sees it.
type response struct {
	req    string // "GET /Patient/123", for details
	status int
	header http.Header
	body   []byte
	// obj is the body decoded (numbers as json.Number) when it is a JSON object.
	obj map[string]any
}

func (r *response) String() string {
	return fmt.Sprintf("%s -> %d %s", r.req, r.status, snippet(r.body))
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}

// ct is the context of one check: it sends requests and collects the
// check's failures.
type ct struct {
	r   *runner
	ctx context.Context
	// fails are the check's failures so far.
	fails []string
	// noToken sends the next requests without the bearer token.
	noToken bool
	// quiet skips response checks (clean-up).
	quiet bool
	// lenientSubset: the responses may hold subsetted resources
	// (_elements, _summary), whose missing required elements are not errors.
	lenientSubset bool
}

func (c *ct) failf(format string, args ...any) {
	c.fails = append(c.fails, fmt.Sprintf(format, args...))
}

func (c *ct) failed() bool { return len(c.fails) > 0 }

// check runs fn as the check name for claim and records its result. detail
// is the pass detail.
func (r *runner) check(ctx context.Context, group, name, claim string, fn func(c *ct) string) {
	c := &ct{r: r, ctx: ctx}
	detail := func() (d string) {
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(stopCheck); !ok {
					panic(p)
				}
			}
		}()
		return fn(c)
	}()
	res := Result{Check: name, Claim: claim, Status: Pass, Detail: detail}
	if c.failed() {
		res.Status, res.Detail = Fail, strings.Join(c.fails, "; ")
	}
	r.record(group, res)
}

// stopCheck ends a check early (after a failure that makes the rest moot).
type stopCheck struct{}

// fatalf records a failure and ends the check.
func (c *ct) fatalf(format string, args ...any) {
	c.failf(format, args...)
	panic(stopCheck{})
}

// url resolves a path ("/Patient/1?x=y") or an absolute URL (a next link).
func (c *ct) url(p string) string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return p
	}
	return c.r.base + p
}

// do sends a request; hdr are "Name: value" strings. A body is sent as
// application/fhir+json unless hdr sets Content-Type. Every response is
// checked: a transport error, a FHIR response that is not FHIR JSON, an
// error status without an OperationOutcome, or a received resource that
// fhir/validate rejects are failures of the running check.
func (c *ct) do(method, path string, body []byte, hdr ...string) *response {
	resp := &response{req: method + " " + strings.TrimPrefix(c.url(path), c.r.base)}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.url(path), rd)
	if err != nil {
		c.failf("%s: %v", resp.req, err)
		return resp
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Accept", "application/fhir+json")
	if c.r.opts.Token != "" && !c.noToken {
		req.Header.Set("Authorization", "Bearer "+c.r.opts.Token)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	hr, err := c.r.opts.HTTPClient.Do(req)
	if err != nil {
		c.failf("%s: %v", resp.req, err)
		return resp
	}
	defer hr.Body.Close()
	resp.status, resp.header = hr.StatusCode, hr.Header
	resp.body, err = io.ReadAll(io.LimitReader(hr.Body, maxResponseBytes))
	if err != nil {
		c.failf("%s: reading the body: %v", resp.req, err)
		return resp
	}
	if c.quiet {
		return resp
	}
	c.inspect(resp)
	return resp
}

// inspect applies the rules every response must follow.
func (c *ct) inspect(resp *response) {
	if len(bytes.TrimSpace(resp.body)) == 0 {
		if resp.status >= 400 {
			c.failf("%s: error status without an OperationOutcome (empty body)", resp.req)
		}
		return
	}
	ct := resp.header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/fhir+json" {
		c.failf("%s: Content-Type %q, want application/fhir+json", resp.req, ct)
	} else if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		c.failf("%s: charset %q, want utf-8", resp.req, cs)
	}
	v, err := decodeObject(resp.body)
	if err != nil {
		c.failf("%s: body is not a JSON object: %v", resp.req, err)
		return
	}
	resp.obj = v
	c.validate(resp)
	if resp.status >= 400 {
		c.checkOutcome(resp)
	}
}

// validate checks a received resource with fhir/validate.
func (c *ct) validate(resp *response) {
	res, err := fhir.Parse(resp.body)
	if err != nil {
		c.failf("%s: received a body that is not a FHIR resource: %v", resp.req, err)
		return
	}
	var errs []string
	for _, is := range c.r.opts.Validator.Validate(res) {
		if is.Severity != fhir.SeverityError && is.Severity != fhir.SeverityFatal {
			continue
		}
		if c.lenientSubset && (is.Code == "required" || is.Code == "invariant") {
			continue
		}
		msg := strings.Join(is.Expression, ",")
		if is.Details != nil {
			msg += " " + is.Details.Text
		}
		errs = append(errs, msg)
	}
	if len(errs) > 0 {
		if len(errs) > 5 {
			errs = append(errs[:5], fmt.Sprintf("and %d more", len(errs)-5))
		}
		c.failf("%s: received %s fails validation: %s", resp.req, str(resp.obj, "resourceType"), strings.Join(errs, "; "))
	}
}

// issueTypes are the IssueType codes (http://hl7.org/fhir/issue-type).
var issueTypes = []string{"invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
	"expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
	"deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
	"lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational"}

// checkOutcome checks the OperationOutcome of an error response: at least
// one issue, each with a severity and an IssueType code, one of them an
// error or fatal.
func (c *ct) checkOutcome(resp *response) {
	if str(resp.obj, "resourceType") != "OperationOutcome" {
		c.failf("%s: error status %d without an OperationOutcome (got %s)", resp.req, resp.status, str(resp.obj, "resourceType"))
		return
	}
	issues := arr(resp.obj, "issue")
	if len(issues) == 0 {
		c.failf("%s: OperationOutcome without issues", resp.req)
		return
	}
	hasError := false
	for i, it := range issues {
		is, _ := it.(map[string]any)
		sev, code := str(is, "severity"), str(is, "code")
		if !slices.Contains([]string{"fatal", "error", "warning", "information"}, sev) {
			c.failf("%s: issue[%d].severity %q", resp.req, i, sev)
		}
		if !slices.Contains(issueTypes, code) {
			c.failf("%s: issue[%d].code %q is not an IssueType", resp.req, i, code)
		}
		hasError = hasError || sev == "error" || sev == "fatal"
	}
	if !hasError {
		c.failf("%s: error status %d but no issue is an error", resp.req, resp.status)
	}
}

// expectStatus fails unless the response has one of the statuses.
func (c *ct) expectStatus(resp *response, want ...int) bool {
	if slices.Contains(want, resp.status) {
		return true
	}
	c.failf("%s: status %d, want %s; body: %s", resp.req, resp.status, statusList(want), snippet(resp.body))
	return false
}

// mustStatus is expectStatus that ends the check on a mismatch.
func (c *ct) mustStatus(resp *response, want ...int) {
	if !c.expectStatus(resp, want...) {
		panic(stopCheck{})
	}
}

func statusList(s []int) string {
	var parts []string
	for _, x := range s {
		parts = append(parts, fmt.Sprint(x))
	}
	return strings.Join(parts, " or ")
}

// expectError checks an error answer: one of the statuses and an
// OperationOutcome (do has checked its shape).
func (c *ct) expectError(resp *response, want ...int) {
	if c.expectStatus(resp, want...) && str(resp.obj, "resourceType") != "OperationOutcome" {
		c.failf("%s: no OperationOutcome in the %d answer", resp.req, resp.status)
	}
}

// decodeObject decodes a JSON object keeping numbers as written.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("null")
	}
	return v, nil
}

// Accessors of decoded JSON; they return zero values for missing members.

func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func arr(v any, path ...string) []any {
	a, _ := get(v, path...).([]any)
	return a
}

func obj(v any, path ...string) map[string]any {
	m, _ := get(v, path...).(map[string]any)
	return m
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func jsonEqual(a, b any) bool { return bytes.Equal(mustJSON(a), mustJSON(b)) }

// q escapes a query value.
func q(s string) string { return url.QueryEscape(s) }
