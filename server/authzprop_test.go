package server_test

// TestAuthzProperty is the property-based proof of the trust boundary
// (issue 14, trust-spec.md): a world generated from a seed is loaded
// through the API of a secured gateway, then every principal sends
// queries drawn from a grammar of every read form, and the SET of
// (type, id, version) it receives, with every count it is given, is
// compared with an oracle computed from the policy alone on an in-test
// model of the world (authzprop_world_test.go, authzprop_oracle_test.go,
// authzprop_query_test.go). The anonymous principal (--auth=none) sees
// everything, so its comparisons check the model's search semantics; the
// others check the release rule.
//
// Seeds: a fixed one, and a fresh one on every run (printed on failure);
// FHIRGATE_AUTHZ_SEED=n runs that seed only. FHIRGATE_AUTHZ_QUERIES=n sets
// the queries per principal; FHIRGATE_AUTHZ_LARGE=1 runs a larger world
// with thousands of queries per principal.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// authzFixedSeed is the seed CI always runs.
const authzFixedSeed = 14

type authzConfig struct {
	seeds   []uint64
	queries int // per principal
	size    worldSize
	// maxDiffs stops a run after that many differences; only runs the
	// principals whose name contains it (for debugging)
	maxDiffs int
	only     string
}

func authzSettings(t *testing.T) authzConfig {
	cfg := authzConfig{queries: 300, size: worldSize{patients: 4, perPatient: 4}, maxDiffs: 12}
	if v := os.Getenv("FHIRGATE_AUTHZ_MAXDIFF"); v != "" {
		cfg.maxDiffs, _ = strconv.Atoi(v)
	}
	cfg.only = os.Getenv("FHIRGATE_AUTHZ_PRINCIPAL")
	if os.Getenv("FHIRGATE_AUTHZ_LARGE") != "" {
		cfg.queries, cfg.size = 2500, worldSize{patients: 6, perPatient: 6}
	}
	if testing.Short() {
		cfg.queries = 40
	}
	if v := os.Getenv("FHIRGATE_AUTHZ_QUERIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FHIRGATE_AUTHZ_QUERIES=%q is not a positive number", v)
		}
		cfg.queries = n
	}
	if v := os.Getenv("FHIRGATE_AUTHZ_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FHIRGATE_AUTHZ_SEED=%q is not a number", v)
		}
		cfg.seeds = []uint64{s}
	} else {
		cfg.seeds = []uint64{authzFixedSeed, uint64(time.Now().UnixNano()) % 1_000_000_000}
	}
	return cfg
}

func TestAuthzProperty(t *testing.T) {
	cfg := authzSettings(t)
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			for _, seed := range cfg.seeds {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					runAuthzProperty(t, k, seed, cfg)
				})
			}
		})
	}
}

func runAuthzProperty(t *testing.T, k storeKind, seed uint64, cfg authzConfig) {
	g := newGateway(t, k)
	w, c := genWorld(t, g, seed, cfg.size)
	ck := &checker{t: t, g: g, w: w, limit: cfg.maxDiffs, audit: auditSnapshot(t, g)}
	for _, ev := range ck.audit {
		ck.auditList = append(ck.auditList, ev)
	}
	slices.SortFunc(ck.auditList, func(a, b *auditEv) int { return strings.Compare(a.id, b.id) })
	start := time.Now()
	t.Logf("seed %d: what each principal may receive of %d current versions: %s", seed, len(w.order), w.releaseStats(c.readers))
	for _, p := range c.readers {
		if cfg.only != "" && !strings.Contains(p.name, cfg.only) {
			continue
		}
		n := cfg.queries
		if p.kind == kRefused {
			n = max(10, n/10)
		}
		gn := &gen{rng: rand.New(rand.NewPCG(seed, hashName(p.name))), w: w, p: p, audit: ck.auditList}
		for i := 0; i < n && !ck.full(); i++ {
			ck.check(p, gn.next())
		}
	}
	t.Logf("seed %d on %s: %d resources, %d versions, %d audit events; %d queries (%d requests) in %v",
		seed, k.name, len(w.order), w.versions(), len(ck.audit), ck.queries, ck.requests, time.Since(start).Round(time.Millisecond))
	if len(ck.diffs) > 0 {
		t.Errorf("%d difference(s) from the oracle (first %d shown):\n  %s\nrerun: FHIRGATE_AUTHZ_SEED=%d go test ./server/ -run 'TestAuthzProperty/%s'",
			ck.count, len(ck.diffs), strings.Join(ck.diffs, "\n  "), seed, k.name)
	}
}

func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// releaseStats says how much of the world each principal may receive, so
// that a run shows its Consents permit and deny in earnest.
func (w *world) releaseStats(ps []*principal) string {
	var out []string
	for _, p := range ps {
		if p.kind != kPatient && p.kind != kProvider {
			continue
		}
		n := 0
		for _, r := range w.order {
			if f := r.current(); f != nil && w.isPatientData(f) && w.released(p, f) {
				n++
			}
		}
		out = append(out, fmt.Sprintf("%s %d", p.name, n))
	}
	return strings.Join(out, ", ")
}

func (w *world) versions() int {
	n := 0
	for _, r := range w.order {
		n += len(r.vers)
	}
	return n
}

// auditSnapshot reads the audit trail as the oracle knows it: every
// AuditEvent recorded while the world was loaded (see gateway.freeze),
// from the trail's log.
func auditSnapshot(t testing.TB, g *gateway) map[string]*auditEv {
	out := map[string]*auditEv{}
	if err := g.auditor.Log().ScanAudit(context.Background(), 1, func(rec *storage.AuditRecord) error {
		r, err := audit.Render(rec)
		if err != nil {
			return err
		}
		ev, err := parseAuditEvent(r.Raw)
		if err != nil {
			return err
		}
		ev.version = r.VersionID
		out[ev.id] = ev
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

var _ = search.MinTime

// ---- comparing answers with the oracle ----

type checker struct {
	t         *testing.T
	g         *gateway
	w         *world
	audit     map[string]*auditEv
	auditList []*auditEv
	diffs     []string
	count     int
	limit     int
	queries   int
	requests  int
}

func (c *checker) full() bool { return c.count >= c.limit }

func (c *checker) fail(p *principal, q *query, format string, args ...any) {
	c.count++
	if len(c.diffs) < c.limit {
		c.diffs = append(c.diffs, fmt.Sprintf("[%s] %s: %s", p, q, fmt.Sprintf(format, args...)))
	}
}

// key names a version.
type key struct{ typ, id, vid string }

func (k key) String() string { return k.typ + "/" + k.id + "/_history/" + k.vid }

func keyOf(f *fact) key { return key{f.typ, f.id, f.vid} }

func keys(fs []*fact) []key {
	out := make([]key, 0, len(fs))
	for _, f := range fs {
		out = append(out, keyOf(f))
	}
	return out
}

// setDiff lists what want has and got lacks, and what got has beyond want.
func setDiff(want, got []key) (missing, extra []key) {
	for _, k := range want {
		if !slices.Contains(got, k) {
			missing = append(missing, k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			extra = append(extra, k)
		}
	}
	return
}

func (c *checker) compareSets(p *principal, q *query, what string, want, got []key) {
	if missing, extra := setDiff(want, got); len(missing) > 0 || len(extra) > 0 {
		c.fail(p, q, "%s: missing %v, extra (withheld or wrong) %v", what, missing, extra)
	}
}

// bundleJSON is what the checks read of a Bundle.
type bundleJSON struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Search   *struct {
			Mode string `json:"mode"`
		} `json:"search"`
		Request *struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Response *struct {
			Status string `json:"status"`
			Etag   string `json:"etag"`
		} `json:"response"`
	} `json:"entry"`
}

type header struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID string `json:"versionId"`
	} `json:"meta"`
}

func headerOf(raw json.RawMessage) header {
	var h header
	_ = json.Unmarshal(raw, &h)
	return h
}

// page is one page of a Bundle answer.
type page struct {
	total      *int
	next       string
	matches    []key
	includes   []key
	audit      []*auditEv
	auditRaw   []json.RawMessage
	outcomes   []string
	history    []key // history entries, deletions included
	historyAud []*auditEv
}

func parsePage(b []byte) (*page, error) {
	var bj bundleJSON
	if err := json.Unmarshal(b, &bj); err != nil {
		return nil, err
	}
	if bj.ResourceType != "Bundle" {
		return nil, fmt.Errorf("not a Bundle: %.200s", b)
	}
	pg := &page{total: bj.Total}
	for _, l := range bj.Link {
		if l.Relation == "next" {
			pg.next = l.URL
		}
	}
	for _, e := range bj.Entry {
		h := headerOf(e.Resource)
		if bj.Type == "history" {
			k := key{h.ResourceType, h.ID, h.Meta.VersionID}
			if e.Resource == nil && e.Request != nil {
				k.typ, k.id, _ = strings.Cut(e.Request.URL, "/")
				if e.Response != nil {
					k.vid = strings.TrimSuffix(strings.TrimPrefix(e.Response.Etag, `W/"`), `"`)
				}
			}
			if k.typ == "AuditEvent" {
				ev, err := parseAuditEvent(e.Resource)
				if err != nil {
					return nil, err
				}
				pg.historyAud = append(pg.historyAud, ev)
				continue
			}
			pg.history = append(pg.history, k)
			continue
		}
		mode := ""
		if e.Search != nil {
			mode = e.Search.Mode
		}
		if h.ResourceType == "OperationOutcome" {
			pg.outcomes = append(pg.outcomes, string(e.Resource))
			continue
		}
		if h.ResourceType == "AuditEvent" {
			ev, err := parseAuditEvent(e.Resource)
			if err != nil {
				return nil, err
			}
			pg.audit = append(pg.audit, ev)
			continue
		}
		k := key{h.ResourceType, h.ID, h.Meta.VersionID}
		if mode == "include" {
			pg.includes = append(pg.includes, k)
		} else {
			pg.matches = append(pg.matches, k)
		}
	}
	return pg, nil
}

// fetch sends q's request and, on a Bundle answer, follows its next links
// to the end.
func (c *checker) fetch(p *principal, q *query) (int, []*page, []byte, bool) {
	c.requests++
	r := c.g.do(p, q.method, q.path, q.body, q.header...)
	if r.Code != http.StatusOK {
		return r.Code, nil, r.Body.Bytes(), true
	}
	var pages []*page
	body := r.Body.Bytes()
	for range 400 {
		pg, err := parsePage(body)
		if err != nil {
			c.fail(p, q, "answer is not a Bundle: %v", err)
			return http.StatusOK, nil, nil, false
		}
		pages = append(pages, pg)
		if pg.next == "" {
			return http.StatusOK, pages, nil, true
		}
		path := strings.TrimPrefix(pg.next, "http://fhir.test")
		c.requests++
		r = c.g.do(p, http.MethodGet, path, nil)
		if r.Code != http.StatusOK {
			c.fail(p, q, "next page %s answered %d: %.200s", path, r.Code, r.Body.String())
			return http.StatusOK, nil, nil, false
		}
		body = r.Body.Bytes()
	}
	c.fail(p, q, "more than 400 pages")
	return http.StatusOK, nil, nil, false
}

// checkPaging: a next link promises at least one more released entry,
// and no page but a lone first one is empty.
func (c *checker) checkPaging(p *principal, q *query, pages []*page, entries func(*page) int) {
	for i, pg := range pages {
		if pg.next == "" {
			continue
		}
		if entries(pg) == 0 {
			c.fail(p, q, "page %d is empty but has a next link", i+1)
			return
		}
		rest := 0
		for _, later := range pages[i+1:] {
			rest += entries(later)
		}
		if rest == 0 {
			c.fail(p, q, "page %d has a next link but nothing released follows", i+1)
			return
		}
	}
}

// notFound: the record of an unknown Patient is not found; a patient or
// provider may be refused it instead (it tells nothing either way).
func notFound(p *principal) []int {
	if p.kind == kPatient || p.kind == kProvider {
		return []int{http.StatusNotFound, http.StatusForbidden}
	}
	return []int{http.StatusNotFound}
}

func statusIn(code int, allowed ...int) bool { return slices.Contains(allowed, code) }

func (c *checker) check(p *principal, q *query) {
	c.queries++
	if p.kind == kRefused {
		c.requests++
		r := c.g.do(p, q.method, q.path, q.body, q.header...)
		if r.Code != http.StatusForbidden {
			c.fail(p, q, "status %d, want 403 (refused at authentication): %.200s", r.Code, r.Body.String())
		}
		return
	}
	switch q.kind {
	case qRead, qVRead:
		c.requests++
		r := c.g.do(p, q.method, q.path, nil)
		c.checkOne(p, q, r.Code, r.Body.Bytes())
	case qSearch:
		c.checkSearch(p, q)
	case qHistory:
		c.checkHistory(p, q)
	case qEverything:
		c.checkEverything(p, q)
	case qBatch:
		c.checkBatch(p, q)
	case qAuditSearch:
		c.checkAuditSearch(p, q)
	case qAuditRead:
		c.checkAuditRead(p, q)
	}
}

// expectOne is what a read or vread must answer: the allowed statuses and
// the version a 200 carries.
func (c *checker) expectOne(p *principal, q *query) ([]int, *fact) {
	w := c.w
	r := w.get(q.ref)
	if p.scopeRefuses(refType(q.ref)) {
		return []int{http.StatusForbidden}, nil
	}
	if r == nil {
		return []int{http.StatusNotFound}, nil
	}
	withheld := []int{http.StatusForbidden}
	if q.kind == qRead {
		if r.current() == nil && !readings.deletedIsWithheld {
			withheld = append(withheld, http.StatusGone)
		}
		if !w.released(p, r.lastContent()) {
			return withheld, nil
		}
		if r.current() == nil {
			return []int{http.StatusGone}, nil
		}
		return []int{http.StatusOK}, r.current()
	}
	for i, v := range r.vers {
		if v.vid != q.vid {
			continue
		}
		if v.f == nil && !readings.deletedIsWithheld {
			withheld = append(withheld, http.StatusGone)
		}
		if !w.released(p, r.contentOf(i)) {
			return withheld, nil
		}
		if v.f == nil {
			return []int{http.StatusGone}, nil
		}
		return []int{http.StatusOK}, v.f
	}
	if !w.released(p, r.lastContent()) {
		return []int{http.StatusNotFound, http.StatusForbidden}, nil
	}
	return []int{http.StatusNotFound}, nil
}

func (c *checker) checkOne(p *principal, q *query, code int, body []byte) {
	want, f := c.expectOne(p, q)
	if !statusIn(code, want...) {
		c.fail(p, q, "status %d, want %v: %.160s", code, want, body)
		return
	}
	if code == http.StatusOK {
		if h := headerOf(body); (key{h.ResourceType, h.ID, h.Meta.VersionID}) != keyOf(f) {
			c.fail(p, q, "answered %s/%s/_history/%s, want %s", h.ResourceType, h.ID, h.Meta.VersionID, keyOf(f))
		}
	} else if code >= 400 && !strings.Contains(string(body), `"OperationOutcome"`) {
		c.fail(p, q, "a %d without an OperationOutcome", code)
	}
}

// canSeePatient: whether p may receive the Patient (for compartment
// searches and $everything).
func (c *checker) canSeePatient(p *principal, pt string) (exists, released bool) {
	f := c.w.cur(pt)
	if f == nil {
		return false, false
	}
	return true, c.w.released(p, f)
}

func (c *checker) checkSearch(p *principal, q *query) {
	allowed := []int{http.StatusOK}
	if p.scopeRefuses(q.typ) {
		allowed = []int{http.StatusForbidden}
	} else if q.compartment != "" {
		exists, rel := c.canSeePatient(p, q.compartment)
		switch {
		case !exists:
			allowed = notFound(p)
		case !rel:
			// a compartment of a Patient the caller may not see: refused,
			// or answered with what it may see there
			allowed = append(allowed, http.StatusForbidden)
		}
	}
	code, pages, body, ok := c.fetch(p, q)
	if !ok {
		return
	}
	if !statusIn(code, allowed...) {
		c.fail(p, q, "status %d, want %v: %.160s", code, allowed, body)
		return
	}
	if code != http.StatusOK {
		return
	}
	matches := c.w.searchMatches(p, q)
	c.compareSearch(p, q, pages, matches, c.w.included(p, q, matches))
}

func (c *checker) compareSearch(p *principal, q *query, pages []*page, matches, included []*fact) {
	var gotM, gotI []key
	for _, pg := range pages {
		if len(pg.outcomes) > 0 {
			c.fail(p, q, "the server reported a search problem (the model assumed it understood the query): %.300s", pg.outcomes[0])
		}
		gotM = append(gotM, pg.matches...)
		gotI = append(gotI, pg.includes...)
		if len(pg.audit) > 0 {
			c.fail(p, q, "AuditEvents in a search of %s", q.typ)
		}
	}
	if q.summaryCount {
		if len(gotM) > 0 {
			c.fail(p, q, "_summary=count answered entries")
		}
		switch t := pages[0].total; {
		case t == nil && (p.kind == kAnon || p.kind == kSystem):
			c.fail(p, q, "_summary=count without a total")
		case t != nil && *t != len(matches):
			c.fail(p, q, "_summary=count total %d, want %d (the released matches)", *t, len(matches))
		}
		return
	}
	if dup := duplicates(gotM); len(dup) > 0 {
		c.fail(p, q, "matches repeated across pages: %v", dup)
	}
	c.compareSets(p, q, "matches", keys(matches), gotM)
	c.compareSets(p, q, "includes", keys(included), gotI)
	if t := pages[0].total; t != nil && *t != len(matches) {
		c.fail(p, q, "total %d, want %d (the released matches)", *t, len(matches))
	}
	c.checkPaging(p, q, pages, func(pg *page) int { return len(pg.matches) })
}

func duplicates(ks []key) []key {
	var out []key
	for i, k := range ks {
		if slices.Contains(ks[:i], k) && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// historyWant lists the versions a history answers p: each decided on its
// own content, a deletion on the version it deleted.
func (c *checker) historyWant(p *principal, rs []*resource) []key {
	var out []key
	for _, r := range rs {
		for i, v := range r.vers {
			if c.w.released(p, r.contentOf(i)) {
				out = append(out, key{r.typ, r.id, v.vid})
			}
		}
	}
	return out
}

func (c *checker) checkHistory(p *principal, q *query) {
	w := c.w
	allowed := []int{http.StatusOK}
	var rs []*resource
	switch q.histLevel {
	case 0:
		r := w.get(q.ref)
		switch {
		case r == nil:
			allowed = []int{http.StatusNotFound}
		case !w.released(p, r.lastContent()):
			allowed = []int{http.StatusForbidden} // the resource as it stands is withheld
		}
		if r != nil {
			rs = []*resource{r}
		}
	case 1:
		rs = w.ofType(q.typ)
		if p.scopeRefuses(q.typ) {
			allowed = []int{http.StatusForbidden}
		}
	case 2:
		rs = w.order
		if p.kind == kPatient || p.scopes != nil {
			// whole-system interactions are not for patients, nor for
			// clients whose scopes name types
			allowed = append(allowed, http.StatusForbidden)
		}
	}
	if q.histLevel == 0 && p.scopeRefuses(refType(q.ref)) {
		allowed = []int{http.StatusForbidden}
	}
	code, pages, body, ok := c.fetch(p, q)
	if !ok {
		return
	}
	if !statusIn(code, allowed...) {
		c.fail(p, q, "status %d, want %v: %.160s", code, allowed, body)
		return
	}
	if code != http.StatusOK {
		return
	}
	var got []key
	var gotAudit []*auditEv
	for _, pg := range pages {
		got = append(got, pg.history...)
		gotAudit = append(gotAudit, pg.historyAud...)
	}
	want := c.historyWant(p, rs)
	c.compareSets(p, q, "versions", want, got)
	if dup := duplicates(got); len(dup) > 0 {
		c.fail(p, q, "versions repeated across pages: %v", dup)
	}
	var notYours []string
	for _, ev := range gotAudit {
		if q.histLevel != 2 || !auditAllowed(p, ev) {
			notYours = append(notYours, ev.id)
		}
	}
	if len(notYours) > 0 {
		c.fail(p, q, "%d AuditEvents in the history are not this caller's to see: %v", len(notYours), notYours[:min(len(notYours), 5)])
	}
	if t := pages[0].total; t != nil {
		// AuditEvents, when the history holds them, count as received
		if *t != len(want)+len(gotAudit) {
			c.fail(p, q, "history total %d, want %d (released versions %d, audit events received %d)", *t, len(want)+len(gotAudit), len(want), len(gotAudit))
		}
	}
	if q.histLevel == 2 && p.kind != kPatient {
		// every event of the trail this caller must see is in the history,
		// when the history serves the trail at all
		if len(gotAudit) > 0 || p.kind == kAnon {
			var need, have []key
			for _, ev := range c.auditList {
				if auditRequired(p, ev) {
					need = append(need, key{"AuditEvent", ev.id, ev.version})
				}
			}
			for _, ev := range gotAudit {
				have = append(have, key{"AuditEvent", ev.id, ev.version})
			}
			if missing, _ := setDiff(need, have); len(missing) > 0 && p.kind != kAnon {
				c.fail(p, q, "audit events of this caller missing from the history: %v", missing)
			}
		}
	}
	c.checkPaging(p, q, pages, func(pg *page) int { return len(pg.history) + len(pg.historyAud) })
}

func (c *checker) checkEverything(p *principal, q *query) {
	allowed := []int{http.StatusOK}
	exists, rel := c.canSeePatient(p, q.patient)
	switch {
	case !exists:
		allowed = notFound(p)
	case !rel:
		allowed = []int{http.StatusForbidden}
	}
	code, pages, body, ok := c.fetch(p, q)
	if !ok {
		return
	}
	if !statusIn(code, allowed...) {
		c.fail(p, q, "status %d, want %v: %.160s", code, allowed, body)
		return
	}
	if code != http.StatusOK {
		return
	}
	var got []key
	for _, pg := range pages {
		got = append(got, pg.matches...)
		if len(pg.audit) > 0 {
			c.fail(p, q, "AuditEvents in $everything without _type naming them")
		}
	}
	want := c.w.everything(p, q.patient, q.types)
	c.compareSets(p, q, "$everything", keys(want), got)
	if t := pages[0].total; t != nil && *t != len(want) {
		c.fail(p, q, "$everything total %d, want %d", *t, len(want))
	}
	c.checkPaging(p, q, pages, func(pg *page) int { return len(pg.matches) })
}

func (c *checker) checkBatch(p *principal, q *query) {
	var entries []any
	for _, e := range q.entries {
		entries = append(entries, map[string]any{"request": map[string]any{"method": "GET", "url": e.path}})
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "batch", "entry": entries})
	q.body = body
	c.requests++
	r := c.g.do(p, http.MethodPost, "/", body)
	if r.Code != http.StatusOK {
		c.fail(p, q, "batch status %d: %.300s", r.Code, r.Body.String())
		return
	}
	var bj bundleJSON
	if err := json.Unmarshal(r.Body.Bytes(), &bj); err != nil || len(bj.Entry) != len(q.entries) {
		c.fail(p, q, "batch-response with %d entries for %d: %v", len(bj.Entry), len(q.entries), err)
		return
	}
	for i, e := range q.entries {
		re := bj.Entry[i]
		code := 0
		if re.Response != nil {
			code, _ = strconv.Atoi(strings.Fields(re.Response.Status + " 0")[0])
		}
		switch e.kind {
		case qRead, qVRead:
			body := []byte(re.Resource)
			if code >= 400 && body == nil {
				body = []byte(`"OperationOutcome"`) // the outcome may sit in response.outcome
			}
			c.checkOne(p, &query{kind: e.kind, ref: e.ref, vid: e.vid, path: fmt.Sprintf("batch entry %d: %s", i, e.path)}, code, body)
		case qSearch:
			eq := &query{kind: qSearch, typ: e.typ, clauses: e.clauses, path: fmt.Sprintf("batch entry %d: %s", i, e.path)}
			if code == http.StatusForbidden && (p.kind != kAnon && p.kind != kSystem || p.scopeRefuses(e.typ)) {
				continue // searches inside a batch may be refused to patients and providers
			}
			if code != http.StatusOK {
				c.fail(p, eq, "status %d", code)
				continue
			}
			pg, err := parsePage(re.Resource)
			if err != nil {
				c.fail(p, eq, "%v", err)
				continue
			}
			if pg.next != "" {
				c.fail(p, eq, "a search entry with more than one page")
				continue
			}
			c.compareSearch(p, eq, []*page{pg}, c.w.searchMatches(p, eq), nil)
		}
	}
}

func (c *checker) checkAuditSearch(p *principal, q *query) {
	allowed := []int{http.StatusOK}
	if p.kind == kSystem && !p.auditScope {
		allowed = append(allowed, http.StatusForbidden)
	}
	code, pages, body, ok := c.fetch(p, q)
	if !ok {
		return
	}
	if !statusIn(code, allowed...) {
		c.fail(p, q, "status %d, want %v: %.160s", code, allowed, body)
		return
	}
	if code != http.StatusOK {
		return
	}
	var got []*auditEv
	for _, pg := range pages {
		got = append(got, pg.audit...)
		if len(pg.matches) > 0 {
			c.fail(p, q, "non-AuditEvent entries: %v", pg.matches)
		}
	}
	var have, notYours, notMatching []string
	for _, ev := range got {
		have = append(have, ev.id)
		if !auditAllowed(p, ev) {
			notYours = append(notYours, fmt.Sprintf("%s (patients %v, agents %v, clients %v)", ev.id, ev.patients, ev.agents, ev.clients))
		}
		if !auditMatchesPatient(ev, q.auditPatient) {
			notMatching = append(notMatching, ev.id)
		}
	}
	if len(notYours) > 0 {
		c.fail(p, q, "%d AuditEvents are not this caller's to see: %v", len(notYours), notYours[:min(len(notYours), 3)])
	}
	if len(notMatching) > 0 {
		c.fail(p, q, "AuditEvents that do not name %s: %v", q.auditPatient, notMatching[:min(len(notMatching), 5)])
	}
	var missing []string
	for _, ev := range c.auditList {
		if auditRequired(p, ev) && auditMatchesPatient(ev, q.auditPatient) && !slices.Contains(have, ev.id) {
			missing = append(missing, ev.id)
		}
	}
	if len(missing) > 0 {
		c.fail(p, q, "audit events this caller must see are missing: %v", missing)
	}
	if t := pages[0].total; t != nil && *t != len(got) {
		c.fail(p, q, "total %d, but %d events received", *t, len(got))
	}
	c.checkPaging(p, q, pages, func(pg *page) int { return len(pg.audit) })
}

func (c *checker) checkAuditRead(p *principal, q *query) {
	c.requests++
	r := c.g.do(p, http.MethodGet, q.path, nil)
	ev := c.audit[q.auditID]
	var allowed []int
	switch {
	case ev == nil:
		allowed = []int{http.StatusNotFound, http.StatusForbidden}
	case auditRequired(p, ev):
		allowed = []int{http.StatusOK}
	case auditAllowed(p, ev):
		allowed = []int{http.StatusOK, http.StatusForbidden, http.StatusNotFound}
	default:
		allowed = []int{http.StatusForbidden, http.StatusNotFound}
	}
	if !statusIn(r.Code, allowed...) {
		detail := ""
		if ev != nil {
			detail = fmt.Sprintf(" (event patients %v, agents %v, clients %v)", ev.patients, ev.agents, ev.clients)
		}
		c.fail(p, q, "status %d, want %v%s", r.Code, allowed, detail)
	}
}
