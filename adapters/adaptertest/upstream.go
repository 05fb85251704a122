package adaptertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/smart"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Auth modes of a fake upstream.
const (
	AuthSMART  = "smart-backend"
	AuthBearer = "bearer"
	AuthNone   = "none"
)

// ClientID is the client id the fake token endpoint knows.
const ClientID = "fhirgate-test"

// BearerEnv is the environment variable (in Upstream.Env) holding the
// bearer token of AuthBearer upstreams; BearerToken is the token.
const (
	BearerEnv   = "FAKE_UPSTREAM_TOKEN"
	BearerToken = "fake-upstream-bearer-token"
)

// GroupID is the Group whose members are every loaded patient.
const GroupID = "everyone"

// ServerOptions configure a fake upstream. The zero value serves the first
// Synthea bundle with SMART Backend Services auth, paged searches, and no
// $everything, $match or $export.
type ServerOptions struct {
	// Bundles are Synthea transaction bundle files to load (default: the
	// first shared one).
	Bundles []string
	// Keep, when set, serves only the resources it keeps (Patients are
	// always kept): to split a record over several sources.
	Keep func(*fhir.Resource) bool
	// PageSize is the page size when the client gives no _count (default
	// 10); MaxPageSize caps _count (default 50).
	PageSize, MaxPageSize int
	// Everything, Match and Export offer Patient/$everything,
	// Patient/$match and Bulk Data $export.
	Everything, Match, Export bool
	// Auth is AuthSMART (default), AuthBearer or AuthNone.
	Auth string
	// SigningAlg is the client key's algorithm, RS384 (default) or ES384.
	SigningAlg string
	// TokenLifetime is the expires_in of issued tokens (default 5m).
	TokenLifetime time.Duration
	// Latency is real time added to every request (benchmarks only).
	Latency time.Duration
	// ExportPolls is how many status polls answer 202 before the manifest
	// (default 2).
	ExportPolls int
	// GzipFiles sends export files gzip-encoded to clients that accept it.
	GzipFiles bool
	// ErrorFile adds an OperationOutcome error file to every manifest.
	ErrorFile bool
	// OpenFiles makes requiresAccessToken false: files need no token, and
	// requests for them that carry one are refused.
	OpenFiles bool
	// LargeResource adds to the first patient a DocumentReference whose
	// JSON is larger than 64 KiB.
	LargeResource bool
	// Synthetic, when > 0, makes every export return this many generated
	// Observations instead of the loaded data (for memory benchmarks); they
	// are produced as they are sent, never held.
	Synthetic int
	// Faults to inject.
	Faults []*Fault
}

// Upstream is a fake FHIR R4 server on loopback, built from Synthea data.
type Upstream struct {
	// URL is the FHIR base.
	URL string
	// Clock is the fake clock the adapter under test must use (it is in
	// Options); the server uses it for tokens, dates and Retry-After.
	Clock *FakeClock
	// Config is what an adapter under test should use as its
	// upstream.Config: base URL, credentials, short time-outs.
	Config upstream.Config
	// Options are the adapters.Options to open it with.
	Options adapters.Options
	// Env holds the environment Options.LookupEnv reads.
	Env map[string]string

	opts   ServerOptions
	srv    *httptest.Server
	data   *store
	closed chan struct{}
	keys   map[string]smart.JWK

	mu       sync.Mutex
	counts   map[Kind]int
	tokens   map[string]time.Time
	jtis     map[string]bool
	issued   int
	authErrs []string
	jobs     map[string]*exportJob
	jobSeq   int
	canceled int
}

// NewUpstream starts a fake upstream; it stops when the test ends.
func NewUpstream(t testing.TB, opts ServerOptions) *Upstream {
	t.Helper()
	if len(opts.Bundles) == 0 {
		opts.Bundles = SyntheaBundles(t)[:1]
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 10
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = 50
	}
	if opts.Auth == "" {
		opts.Auth = AuthSMART
	}
	if opts.SigningAlg == "" {
		opts.SigningAlg = smart.RS384
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = 5 * time.Minute
	}
	if opts.ExportPolls == 0 {
		opts.ExportPolls = 2
	}
	data, err := loadStore(opts)
	if err != nil {
		t.Fatalf("fake upstream: %v", err)
	}
	u := &Upstream{
		Clock: NewFakeClock(), opts: opts, data: data, closed: make(chan struct{}),
		keys: map[string]smart.JWK{}, counts: map[Kind]int{}, tokens: map[string]time.Time{},
		jtis: map[string]bool{}, jobs: map[string]*exportJob{}, Env: map[string]string{},
	}
	u.srv = httptest.NewServer(http.HandlerFunc(u.handle))
	t.Cleanup(func() {
		close(u.closed)
		u.srv.Close()
	})
	u.URL = u.srv.URL + "/fhir"
	retries := 3
	u.Config = upstream.Config{
		BaseURL:       u.URL,
		Timeout:       5 * time.Second,
		MaxRetries:    &retries,
		RetryDelay:    100 * time.Millisecond,
		MaxRetryDelay: 30 * time.Second,
	}
	switch opts.Auth {
	case AuthSMART:
		k := testKey(t, opts.SigningAlg)
		pemBytes, err := k.PEM()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "client-key.pem")
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		// The server knows the client by its JWKS, as an EHR does after
		// registration.
		var set struct{ Keys []smart.JWK }
		if err := json.Unmarshal(smart.JWKS(k), &set); err != nil {
			t.Fatal(err)
		}
		for _, j := range set.Keys {
			u.keys[j.Kid] = j
		}
		u.Config.Auth = upstream.Auth{Type: upstream.AuthSMARTBackend, ClientID: ClientID, PrivateKeyFile: path}
	case AuthBearer:
		u.Env[BearerEnv] = BearerToken
		u.Config.Auth = upstream.Auth{Type: upstream.AuthBearer, TokenEnv: BearerEnv}
	case AuthNone:
		u.Config.Auth = upstream.Auth{Type: upstream.AuthNone}
	}
	u.Options = adapters.Options{
		Clock: u.Clock,
		LookupEnv: func(k string) (string, bool) {
			v, ok := u.Env[k]
			return v, ok
		},
	}
	return u
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]*smart.Key{}

	storeMu    sync.Mutex
	storeCache = map[string]*store{}
)

// loadStore builds the server's data. Stores are never changed once built,
// so those without a Keep filter are shared between fake servers: parsing
// and indexing Synthea for each of a suite's servers would dominate its run
// time.
func loadStore(opts ServerOptions) (*store, error) {
	key := ""
	if opts.Keep == nil {
		key = fmt.Sprint(opts.Bundles, opts.LargeResource)
		storeMu.Lock()
		defer storeMu.Unlock()
		if s, ok := storeCache[key]; ok {
			return s, nil
		}
	}
	data, err := newStore()
	if err != nil {
		return nil, err
	}
	for _, b := range opts.Bundles {
		if err := data.loadBundle(b, opts.Keep); err != nil {
			return nil, err
		}
	}
	if opts.LargeResource && len(data.patients) > 0 {
		if err := data.add(largeDocument(data.patients[0])); err != nil {
			return nil, err
		}
	}
	if key != "" {
		storeCache[key] = data
	}
	return data, nil
}

// testKey returns a process-wide key per algorithm: RSA generation is too
// slow to repeat for every fake server.
func testKey(t testing.TB, alg string) *smart.Key {
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[alg]; ok {
		return k
	}
	k, err := smart.GenerateKey(alg)
	if err != nil {
		t.Fatalf("fake upstream: %v", err)
	}
	keyCache[alg] = k
	return k
}

// Patients returns the ids of the loaded patients.
func (u *Upstream) Patients() []string { return slices.Clone(u.data.patients) }

// Patient returns the stored Patient with the given id.
func (u *Upstream) Patient(id string) *fhir.Resource {
	if e, ok := u.data.byKey["Patient/"+id]; ok {
		return e.res
	}
	return nil
}

// Record returns the patient's record as the server holds it: what a
// complete fetch must return, each resource exactly once and byte for
// byte.
func (u *Upstream) Record(pid string) []*fhir.Resource {
	var out []*fhir.Resource
	for _, k := range u.data.record(pid) {
		out = append(out, u.data.byKey[k].res)
	}
	return out
}

// All returns every stored resource, in load order.
func (u *Upstream) All() []*fhir.Resource {
	out := make([]*fhir.Resource, 0, len(u.data.order))
	for _, k := range u.data.order {
		out = append(out, u.data.byKey[k].res)
	}
	return out
}

// Count returns how many requests of a kind arrived.
func (u *Upstream) Count(k Kind) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[k]
}

// TokensIssued returns how many access tokens the token endpoint issued.
func (u *Upstream) TokensIssued() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.issued
}

// AuthErrors returns why the token endpoint refused assertions.
func (u *Upstream) AuthErrors() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.authErrs)
}

// Canceled returns how many export jobs were deleted by the client.
func (u *Upstream) Canceled() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.canceled
}

// RevokeTokens makes every issued token invalid (as if it expired).
func (u *Upstream) RevokeTokens() {
	u.mu.Lock()
	defer u.mu.Unlock()
	clear(u.tokens)
}

// Kind classifies requests, for counting and fault injection.
type Kind string

// Request kinds.
const (
	KindMetadata   Kind = "metadata"
	KindDiscovery  Kind = "smart-configuration"
	KindToken      Kind = "token"
	KindRead       Kind = "read"
	KindSearch     Kind = "search"
	KindEverything Kind = "everything"
	KindMatch      Kind = "match"
	KindKickoff    Kind = "export-kickoff"
	KindStatus     Kind = "export-status"
	KindFile       Kind = "export-file"
	KindCancel     Kind = "export-cancel"
	KindOther      Kind = "other"
)

// DataKinds are the requests that carry record data; faults without On
// target them.
var DataKinds = []Kind{KindRead, KindSearch, KindEverything, KindFile}

func classify(r *http.Request) Kind {
	p := r.URL.Path
	switch {
	case p == "/token":
		return KindToken
	case strings.HasPrefix(p, "/jobs/"):
		if r.Method == http.MethodDelete {
			return KindCancel
		}
		return KindStatus
	case strings.HasPrefix(p, "/files/"):
		return KindFile
	case p == "/fhir/metadata":
		return KindMetadata
	case p == "/fhir/.well-known/smart-configuration":
		return KindDiscovery
	case strings.HasSuffix(p, "/$everything"):
		return KindEverything
	case strings.HasSuffix(p, "/$match"):
		return KindMatch
	case strings.HasSuffix(p, "/$export"):
		return KindKickoff
	case strings.HasPrefix(p, "/fhir/"):
		switch strings.Count(strings.Trim(strings.TrimPrefix(p, "/fhir/"), "/"), "/") {
		case 0:
			return KindSearch
		case 1:
			return KindRead
		}
	}
	return KindOther
}

func (u *Upstream) handle(w http.ResponseWriter, r *http.Request) {
	if u.opts.Latency > 0 {
		select {
		case <-time.After(u.opts.Latency):
		case <-r.Context().Done():
			return
		}
	}
	kind := classify(r)
	u.mu.Lock()
	u.counts[kind]++
	u.mu.Unlock()
	w.Header().Set("Date", u.Clock.Now().UTC().Format(http.TimeFormat))

	var act *Fault
	for _, f := range u.opts.Faults {
		if f.hit(kind) {
			act = f
			break
		}
	}
	if act != nil && u.preFault(w, r, act) {
		return
	}
	if act != nil && act.Do == ExpireToken {
		u.RevokeTokens()
	}
	if !u.authorized(w, r, kind) {
		return
	}
	if act != nil && (act.Do == CutBody || act.Do == TruncateJSON || act.Do == Stall) {
		rec := httptest.NewRecorder()
		u.route(rec, r, kind, act)
		u.postFault(w, rec, act)
		return
	}
	u.route(w, r, kind, act)
}

// authorized checks credentials and answers 401 when they are missing or
// invalid.
func (u *Upstream) authorized(w http.ResponseWriter, r *http.Request, kind Kind) bool {
	switch kind {
	case KindMetadata, KindDiscovery, KindToken, KindOther:
		return true
	case KindFile:
		if u.opts.OpenFiles {
			if r.Header.Get("Authorization") != "" {
				// A capability URL must not be sent the token (Bulk Data:
				// requiresAccessToken false).
				writeOutcome(w, http.StatusBadRequest, "security", "this file needs no token; none may be sent")
				return false
			}
			return true
		}
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	valid := false
	switch u.opts.Auth {
	case AuthNone:
		return true
	case AuthBearer:
		valid = ok && tok == BearerToken
	case AuthSMART:
		u.mu.Lock()
		exp, known := u.tokens[tok]
		u.mu.Unlock()
		valid = ok && known && u.Clock.Now().Before(exp)
	}
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOutcome(w, http.StatusUnauthorized, "login", "missing, invalid or expired access token")
	}
	return valid
}

func (u *Upstream) route(w http.ResponseWriter, r *http.Request, kind Kind, act *Fault) {
	switch kind {
	case KindMetadata:
		u.metadata(w)
	case KindDiscovery:
		u.discovery(w)
	case KindToken:
		u.token(w, r)
	case KindRead:
		u.read(w, r)
	case KindSearch:
		u.search(w, r, act)
	case KindEverything:
		u.everything(w, r, act)
	case KindMatch:
		u.match(w, r)
	case KindKickoff:
		u.kickoff(w, r)
	case KindStatus:
		u.status(w, r)
	case KindCancel:
		u.cancel(w, r)
	case KindFile:
		u.file(w, r)
	default:
		writeOutcome(w, http.StatusNotFound, "not-found", "no such endpoint")
	}
}

func writeJSON(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func writeOutcome(w http.ResponseWriter, status int, code, text string) {
	oo := fhir.NewOutcome(fhir.Issue{Severity: fhir.SeverityError, Code: code, Details: &fhir.IssueDetails{Text: text}})
	writeJSON(w, status, "application/fhir+json", oo.JSON())
}

func (u *Upstream) metadata(w http.ResponseWriter) {
	var res []string
	seen := map[string]bool{}
	for _, k := range u.data.order {
		t, _, _ := strings.Cut(k, "/")
		if !seen[t] {
			seen[t] = true
			res = append(res, t)
		}
	}
	slices.Sort(res)
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"CapabilityStatement","status":"active","date":"2025-01-01","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","security":{"service":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/restful-security-service","code":"SMART-on-FHIR"}]}]},"resource":[`)
	for i, t := range res {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":%q,"interaction":[{"code":"read"},{"code":"search-type"}]`, t)
		if t == "Patient" {
			var ops []string
			if u.opts.Everything {
				ops = append(ops, `{"name":"everything","definition":"http://hl7.org/fhir/OperationDefinition/Patient-everything"}`)
			}
			if u.opts.Match {
				ops = append(ops, `{"name":"match","definition":"http://hl7.org/fhir/OperationDefinition/Patient-match"}`)
			}
			if u.opts.Export {
				ops = append(ops, `{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}`)
			}
			if len(ops) > 0 {
				b.WriteString(`,"operation":[` + strings.Join(ops, ",") + `]`)
			}
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}]}`)
	writeJSON(w, http.StatusOK, "application/fhir+json", b.Bytes())
}

func (u *Upstream) discovery(w http.ResponseWriter) {
	if u.opts.Auth != AuthSMART {
		writeOutcome(w, http.StatusNotFound, "not-found", "no SMART configuration")
		return
	}
	body, _ := json.Marshal(map[string]any{
		"token_endpoint":                                   u.srv.URL + "/token",
		"grant_types_supported":                            []string{"client_credentials"},
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{smart.RS384, smart.ES384},
		"scopes_supported":                                 []string{"system/*.rs", "system/*.read"},
		"capabilities":                                     []string{"client-confidential-asymmetric", "permission-v2"},
	})
	writeJSON(w, http.StatusOK, "application/json", body)
}

func (u *Upstream) read(w http.ResponseWriter, r *http.Request) {
	k := strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/")
	e, ok := u.data.byKey[k]
	if !ok {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such resource")
		return
	}
	w.Header().Set("ETag", `W/"1"`)
	writeJSON(w, http.StatusOK, "application/fhir+json", e.res.Raw)
}

// page writes one page of keys as a searchset Bundle with self and next
// links (next carries _offset; the rest of the query is kept).
func (u *Upstream) page(w http.ResponseWriter, r *http.Request, keys []string, act *Fault) {
	q := r.URL.Query()
	count := u.opts.PageSize
	if c, err := strconv.Atoi(q.Get("_count")); err == nil && c > 0 {
		count = c
	}
	count = min(count, u.opts.MaxPageSize)
	offset, _ := strconv.Atoi(q.Get("_offset"))
	offset = max(0, min(offset, len(keys)))
	end := min(offset+count, len(keys))
	self := u.srv.URL + r.URL.RequestURI()
	next := ""
	if end < len(keys) {
		q.Set("_offset", strconv.Itoa(end))
		nu := *r.URL
		nu.RawQuery = q.Encode()
		next = u.srv.URL + nu.RequestURI()
	}
	if act != nil && act.Do == LoopNext {
		next = self
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"resourceType":"Bundle","type":"searchset","total":%d,"link":[{"relation":"self","url":%q}`, len(keys), self)
	if next != "" {
		fmt.Fprintf(&b, `,{"relation":"next","url":%q}`, next)
	}
	b.WriteString(`],"entry":[`)
	for i, k := range keys[offset:end] {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":%q,"resource":`, u.URL+"/"+k)
		b.Write(u.data.byKey[k].res.Raw)
		b.WriteString(`,"search":{"mode":"match"}}`)
	}
	b.WriteString(`]}`)
	writeJSON(w, http.StatusOK, "application/fhir+json", b.Bytes())
}

// search serves type-level searches with the few parameters adapters use.
func (u *Upstream) search(w http.ResponseWriter, r *http.Request, act *Fault) {
	typ := strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/")
	if !fhir.IsResourceType(typ) {
		writeOutcome(w, http.StatusNotFound, "not-supported", "unknown resource type")
		return
	}
	q := r.URL.Query()
	var keys []string
	for _, k := range u.data.order {
		if !strings.HasPrefix(k, typ+"/") {
			continue
		}
		ok, bad := u.matches(u.data.byKey[k], q)
		if bad != "" {
			writeOutcome(w, http.StatusBadRequest, "not-supported", bad)
			return
		}
		if ok {
			keys = append(keys, k)
		}
	}
	u.page(w, r, keys, act)
}

// matches reports whether e matches every search parameter of q, or names
// a parameter the fake does not support.
func (u *Upstream) matches(e *entry, q url.Values) (bool, string) {
	res := e.res
	root := res.Root()
	for p, vals := range q {
		v := vals[0]
		switch p {
		case "_count", "_offset", "_format":
			continue
		case "_id":
			if res.ID != v {
				return false, ""
			}
		case "_lastUpdated":
			if !matchInstant(res.LastUpdated, v) {
				return false, ""
			}
		case "identifier":
			sys, val, hasSys := strings.Cut(strings.ReplaceAll(v, `\|`, "\x00"), "|")
			if !hasSys {
				sys, val = "", sys
			}
			sys, val = strings.ReplaceAll(sys, "\x00", "|"), strings.ReplaceAll(val, "\x00", "|")
			found := false
			for _, id := range items(root.Get("identifier")) {
				if id.Get("value").String() == val && (!hasSys || id.Get("system").String() == sys) {
					found = true
				}
			}
			if !found {
				return false, ""
			}
		case "family", "given":
			found := false
			for _, n := range items(root.Get("name")) {
				var parts []string
				if p == "family" {
					parts = []string{n.Get("family").String()}
				} else {
					for _, g := range items(n.Get("given")) {
						parts = append(parts, g.String())
					}
				}
				for _, s := range parts {
					for _, want := range strings.Fields(v) {
						if strings.HasPrefix(strings.ToLower(s), strings.ToLower(want)) {
							found = true
						}
					}
				}
			}
			if !found {
				return false, ""
			}
		case "birthdate":
			if root.Get("birthDate").String() != v {
				return false, ""
			}
		case "gender":
			if root.Get("gender").String() != v {
				return false, ""
			}
		default:
			if sp, ok := u.data.reg.Param(res.Type, p); !ok || sp.Type.String() != "reference" {
				return false, "unsupported search parameter " + p
			}
			found := false
			for _, want := range strings.Split(v, ",") {
				for _, got := range e.refs[p] {
					if got == want || strings.HasSuffix(got, "/"+want) && !strings.Contains(want, "/") {
						found = true
					}
				}
			}
			if !found {
				return false, ""
			}
		}
	}
	return true, ""
}

// matchInstant supports the gt, ge, lt and le prefixes.
func matchInstant(t time.Time, v string) bool {
	prefix := "eq"
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	x, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return false
	}
	switch prefix {
	case "gt":
		return t.After(x)
	case "ge":
		return !t.Before(x)
	case "lt":
		return t.Before(x)
	case "le":
		return !t.After(x)
	}
	return t.Equal(x)
}

func (u *Upstream) everything(w http.ResponseWriter, r *http.Request, act *Fault) {
	if !u.opts.Everything {
		writeOutcome(w, http.StatusNotFound, "not-supported", "$everything is not offered")
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/"), "/")
	if len(parts) != 3 || parts[0] != "Patient" {
		writeOutcome(w, http.StatusBadRequest, "not-supported", "only Patient/[id]/$everything")
		return
	}
	keys := u.data.record(parts[1])
	if keys == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such patient")
		return
	}
	keys = u.filter(keys, r.URL.Query().Get("_since"), r.URL.Query().Get("_type"))
	u.page(w, r, keys, act)
}

// filter applies _since and _type.
func (u *Upstream) filter(keys []string, since, types string) []string {
	var s time.Time
	if since != "" {
		s, _ = time.Parse(time.RFC3339Nano, since)
	}
	var only map[string]bool
	if types != "" {
		only = map[string]bool{}
		for _, t := range strings.Split(types, ",") {
			only[strings.TrimSpace(t)] = true
		}
	}
	var out []string
	for _, k := range keys {
		e := u.data.byKey[k]
		if !s.IsZero() && !e.res.LastUpdated.After(s) {
			continue
		}
		if only != nil && !only[e.res.Type] {
			continue
		}
		out = append(out, k)
	}
	return out
}

// match serves Patient/$match: certain when family, given and birth date
// agree, possible when family and birth date do.
func (u *Upstream) match(w http.ResponseWriter, r *http.Request) {
	if !u.opts.Match || r.Method != http.MethodPost {
		writeOutcome(w, http.StatusNotFound, "not-supported", "$match is not offered")
		return
	}
	body, _ := io.ReadAll(r.Body)
	params, err := fjson.Parse(body)
	if err != nil || params.Get("resourceType").String() != "Parameters" {
		writeOutcome(w, http.StatusBadRequest, "invalid", "expected Parameters")
		return
	}
	var pat *fjson.Value
	for _, p := range items(params.Get("parameter")) {
		if p.Get("name").String() == "resource" {
			pat = p.Get("resource")
		}
	}
	if pat == nil {
		writeOutcome(w, http.StatusBadRequest, "required", "resource is required")
		return
	}
	family, given := nameOf(pat)
	birth := pat.Get("birthDate").String()
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","entry":[`)
	n := 0
	for _, pid := range u.data.patients {
		e := u.data.byKey["Patient/"+pid]
		f, g := nameOf(e.res.Root())
		if !strings.EqualFold(f, family) || birth == "" || e.res.Root().Get("birthDate").String() != birth {
			continue
		}
		score, grade := 0.7, "possible"
		if given != "" && strings.EqualFold(g, given) {
			score, grade = 1, "certain"
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		fmt.Fprintf(&b, `{"fullUrl":%q,"resource":%s,"search":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/match-grade","valueCode":%q}],"mode":"match","score":%g}}`,
			u.URL+"/Patient/"+pid, e.res.Raw, grade, score)
	}
	b.WriteString(`]}`)
	writeJSON(w, http.StatusOK, "application/fhir+json", b.Bytes())
}

func nameOf(p *fjson.Value) (family, given string) {
	names := items(p.Get("name"))
	if len(names) == 0 {
		return "", ""
	}
	family = names[0].Get("family").String()
	if g := items(names[0].Get("given")); len(g) > 0 {
		given = g[0].String()
	}
	return family, given
}

// largeDocument is a DocumentReference of the patient whose JSON is well
// over 64 KiB (the bufio.Scanner default line limit).
func largeDocument(pid string) *fhir.Resource {
	data := bytes.Repeat([]byte("QUJDRA"), 30000) // 180 KB of base64
	raw := fmt.Sprintf(`{"resourceType":"DocumentReference","id":"large-document","status":"current","subject":{"reference":"Patient/%s"},"content":[{"attachment":{"contentType":"text/plain","data":"%s"}}]}`, pid, data)
	r, err := fhir.Parse([]byte(raw))
	if err != nil {
		panic(err)
	}
	return r
}
