// Package conformance is a black-box conformance suite for a FHIR R4
// server, written against the HTTP interface only. It reads the server's
// CapabilityStatement (/metadata) and derives its checks from what the
// statement claims: every interaction of every resource type, the system
// interactions, the operations, the conditional flags, the include and
// revinclude lists, and samples of the search parameters of every type;
// plus the REST rules of FHIR R4 http.html and search.html (headers, status
// codes, OperationOutcome on errors, Bundle types and links, paging,
// versioning, _format, Prefer).
//
// A claim without a check, or a check that fails, is a failure. Checks that
// fail because of a known defect of the gateway are listed in
// knownGatewayBugs and reported apart.
//
// The suite creates its own resources (tagged with a run-unique tag, so it
// can run against a server that holds other data), validates every resource
// it receives with fhir/validate, and deletes what it created at the end.
//
//	rep, err := conformance.Run(ctx, conformance.Options{BaseURL: "http://127.0.0.1:8080", Token: tok})
//	rep.WriteTable(os.Stdout, conformance.TableAll)
//	if !rep.OK() { ... }
package conformance

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/fhirgate/fhirgate/fhir/validate"
)

// Options configure a run.
type Options struct {
	// BaseURL is the FHIR base of the server under test. Required.
	BaseURL string
	// Token, when set, is sent as a bearer token with every request except
	// the check that /metadata answers without one.
	Token string
	// HTTPClient sends the requests; a client with a 60 s timeout when nil.
	HTTPClient *http.Client
	// Validator checks every received resource; validate.Default() when nil.
	Validator *validate.Validator
	// Types restricts the per-type checks to these resource types (all the
	// claimed types when empty). The system and REST checks always run.
	Types []string
	// AllSearchParams checks every claimed search parameter that has a
	// sample, not one sample per parameter type.
	AllSearchParams bool
	// Parallel is how many resource types are checked at once (default 4).
	Parallel int
	// Keep leaves the created resources in place (no clean-up).
	Keep bool
	// RunID makes the run's identifiers unique; random when empty. Lower
	// case letters and digits only.
	RunID string
}

// Status is the outcome of a check.
type Status int

// Check outcomes.
const (
	// Pass: the server behaved as the claim or rule requires.
	Pass Status = iota
	// Fail: it did not, or a claim has no check.
	Fail
	// KnownBug: it did not, and the check is listed in knownGatewayBugs.
	KnownBug
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case KnownBug:
		return "KNOWN-BUG"
	}
	return "FAIL"
}

// Result is the outcome of one check.
type Result struct {
	// Check names the check: "Patient/read", "rest/status-406-accept".
	// Names are stable; knownGatewayBugs is keyed by them.
	Check string
	// Claim is what the check verifies: a CapabilityStatement claim
	// ("Patient.interaction:read") or a REST rule ("rest:ETag").
	Claim  string
	Status Status
	// Detail says what went wrong (the request, what was expected and what
	// came back), or what was verified.
	Detail string
}

// Report is the outcome of a run.
type Report struct {
	BaseURL string
	RunID   string
	Results []Result
	Elapsed time.Duration
	// Created counts the resources the run created; Cleaned how many of
	// them it deleted again.
	Created, Cleaned int
}

// OK reports whether no check failed (known gateway bugs aside).
func (r *Report) OK() bool { return len(r.Failures()) == 0 }

// Failures returns the failed checks, known gateway bugs excluded.
func (r *Report) Failures() []Result { return r.with(Fail) }

// KnownBugs returns the checks that failed and are known gateway bugs.
func (r *Report) KnownBugs() []Result { return r.with(KnownBug) }

func (r *Report) with(s Status) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == s {
			out = append(out, res)
		}
	}
	return out
}

// Count returns how many checks have the status.
func (r *Report) Count(s Status) int { return len(r.with(s)) }

// TableMode selects the rows WriteTable prints.
type TableMode int

// Table modes.
const (
	// TableAll prints every check.
	TableAll TableMode = iota
	// TableProblems prints failures and known bugs only.
	TableProblems
)

// WriteTable prints the checks as a table (check, status, claim, detail),
// then the known gateway bugs apart, then a summary line.
func (r *Report) WriteTable(w io.Writer, mode TableMode) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tCLAIM\tDETAIL")
	for _, res := range r.Results {
		if mode == TableProblems && res.Status == Pass {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Check, res.Status, res.Claim, oneLine(res.Detail, 300))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if kb := r.KnownBugs(); len(kb) > 0 {
		fmt.Fprintf(w, "\nKnown gateway bugs (%d, listed in knownGatewayBugs; not counted as failures):\n", len(kb))
		for _, res := range kb {
			why, _ := knownBug(res.Check)
			fmt.Fprintf(w, "  %s: %s\n    got: %s\n", res.Check, why, oneLine(res.Detail, 500))
		}
	}
	_, err := fmt.Fprintf(w, "\n%d checks: %d passed, %d failed, %d known gateway bugs; %d resources created, %d deleted; %s against %s (run %s)\n",
		len(r.Results), r.Count(Pass), r.Count(Fail), r.Count(KnownBug), r.Created, r.Cleaned, r.Elapsed.Round(time.Millisecond), r.BaseURL, r.RunID)
	return err
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// knownGatewayBugs lists checks that fail because the gateway is wrong, by
// check name ("*/" stands for any resource type), with what is wrong. A
// listed check that fails is reported as KnownBug, not as a failure; a
// listed check that passes is a failure (the entry must then be removed),
// so the list stays true.
var knownGatewayBugs = map[string]string{}

// knownBug looks a check up in knownGatewayBugs.
func knownBug(check string) (string, bool) {
	if why, ok := knownGatewayBugs[check]; ok {
		return why, true
	}
	if _, rest, ok := strings.Cut(check, "/"); ok {
		why, ok := knownGatewayBugs["*/"+rest]
		return why, ok
	}
	return "", false
}

// ErrBadOptions is returned by Run for unusable options.
var ErrBadOptions = errors.New("conformance: bad options")

// Run runs the suite against opts.BaseURL. The error is for a run that could
// not start (bad options, /metadata unreadable); failed checks are in the
// report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.BaseURL == "" {
		return nil, fmt.Errorf("%w: BaseURL is required", ErrBadOptions)
	}
	if opts.RunID == "" {
		opts.RunID = randomID()
	}
	for _, c := range opts.RunID {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') || len(opts.RunID) > 20 {
			return nil, fmt.Errorf("%w: RunID must be up to 20 lower-case letters and digits", ErrBadOptions)
		}
	}
	opts.Parallel = cmp.Or(opts.Parallel, 4)
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if opts.Validator == nil {
		opts.Validator = validate.Default()
	}
	data, err := loadSamples()
	if err != nil {
		return nil, err
	}
	r := &runner{
		opts:    opts,
		base:    strings.TrimRight(opts.BaseURL, "/"),
		uniq:    opts.RunID,
		data:    data,
		pool:    map[string]*poolEntry{},
		results: map[string][]Result{},
	}
	start := time.Now()
	if err := r.readCapabilities(ctx); err != nil {
		return nil, err
	}
	r.runAll(ctx)
	rep := &Report{BaseURL: r.base, RunID: r.uniq}
	if !opts.Keep {
		rep.Cleaned = r.cleanup(ctx)
	}
	rep.Created = len(r.created)
	rep.Results = r.collect()
	rep.Elapsed = time.Since(start)
	return rep, nil
}

func randomID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// runner holds the state of one run.
type runner struct {
	opts Options
	base string
	uniq string
	data *sampleData
	cs   *capabilityStatement

	mu      sync.Mutex
	results map[string][]Result // group -> results in order
	groups  []string
	created []createdRef
	counter int
	pool    map[string]*poolEntry

	patchFormatOnce sync.Once
}

type createdRef struct{ typ, id string }

// record adds a result to its group, applying knownGatewayBugs.
func (r *runner) record(group string, res Result) {
	if why, ok := knownBug(res.Check); ok {
		switch res.Status {
		case Fail:
			res.Status = KnownBug
		case Pass:
			res.Status = Fail
			res.Detail = "passes now, but is listed in knownGatewayBugs (" + why + "): remove it from the list"
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.results[group]; !ok {
		r.groups = append(r.groups, group)
	}
	r.results[group] = append(r.results[group], res)
}

// collect returns the results: the system and REST groups first, then the
// resource types in order.
func (r *runner) collect() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	groups := slices.Clone(r.groups)
	rank := func(g string) int {
		switch g {
		case groupCapabilities:
			return 0
		case groupSystem:
			return 1
		case groupREST:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(groups, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	var out []Result
	for _, g := range groups {
		out = append(out, r.results[g]...)
	}
	return out
}

// next returns a number unique within the run.
func (r *runner) next() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counter++
	return r.counter
}

// noteCreated remembers a created resource for the clean-up.
func (r *runner) noteCreated(typ, id string) {
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.created, createdRef{typ, id}) {
		r.created = append(r.created, createdRef{typ, id})
	}
}

// Result groups.
const (
	groupCapabilities = "capabilities"
	groupSystem       = "system"
	groupREST         = "rest"
)

// runAll runs the system and REST checks, then the per-type checks in
// parallel, then records every claim that got no check as a failure.
func (r *runner) runAll(ctx context.Context) {
	r.capabilityChecks(ctx)
	r.systemChecks(ctx)
	r.restChecks(ctx)
	types := r.typesToCheck()
	work := make(chan *csResource)
	var wg sync.WaitGroup
	for range r.opts.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for res := range work {
				r.checkType(ctx, res)
			}
		}()
	}
	for _, t := range types {
		work <- t
	}
	close(work)
	wg.Wait()
	r.uncheckedClaims(types)
}

// cleanup deletes what the run created and returns how many deletes
// succeeded (already deleted ones count).
func (r *runner) cleanup(ctx context.Context) int {
	r.mu.Lock()
	todo := slices.Clone(r.created)
	r.mu.Unlock()
	c := &ct{r: r, ctx: ctx, quiet: true}
	work := make(chan createdRef)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range r.opts.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range work {
				resp := c.do(http.MethodDelete, "/"+ref.typ+"/"+ref.id, nil)
				if resp.status < 300 || resp.status == http.StatusGone || resp.status == http.StatusNotFound {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}()
	}
	for _, ref := range todo {
		work <- ref
	}
	close(work)
	wg.Wait()
	return n
}
