package release

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// Recorder receives what a request touched, for its audit events.
type Recorder interface {
	// Patient is called with "Patient/x" for every patient whose data the
	// request was given, or was refused in a single read.
	Patient(ref string)
	// Consent is called with "Consent/y" for every Consent that released
	// something.
	Consent(ref string)
}

// Noter is a Recorder that also keeps what else the audit trail must say
// of the request (a custodian acting on a patient's behalf).
type Noter interface {
	Note(text string)
}

// Guard is the release rule for one caller, for the span of one request:
// it remembers its decisions. It implements storage.Reader (every read
// passes through it) and storage.Release (what the store asks about each
// row). Safe for concurrent use.
type Guard struct {
	d   *Decider
	p   *auth.Principal // nil: unrestricted
	rec Recorder

	// record, when set, is the patient (id) whose record is being
	// decided: resources in it about nobody (its Organization, the
	// Practitioners it names) are decided by that patient's Consents, as
	// entries of a document about the patient are.
	record string

	mu      sync.Mutex
	scopes  map[string]auth.Decision
	memo    map[versionKey]memoEntry
	sharing *sharingSet
	// last is the last resource patientsOf answered for
	last lastPatients
	// req is the caller's consent request without its time, and reqKey
	// its key in the Decider's decision cache: the same for every
	// resource a request decides (built once, not per resource)
	req    *consent.Request
	reqKey string
}

// lastPatients is what patientsOf last answered, and for what: the
// resource (held, so its memory is not reused), its type, id and bytes.
type lastPatients struct {
	res      *fhir.Resource
	typ, id  string
	raw      *byte
	size     int
	patients []string
	// key is the resource's content key, when computing its patients
	// needed it (hasKey)
	key    contentKey
	hasKey bool
}

// is reports whether l was computed for r as it is now.
func (l *lastPatients) is(r *fhir.Resource) bool {
	return l.res == r && l.typ == r.Type && l.id == r.ID && l.raw == unsafe.SliceData(r.Raw) && l.size == len(r.Raw)
}

// versionKey names a version of a resource (Guard.memo): a struct, not a
// joined string, so that remembering a decision allocates nothing.
type versionKey struct{ typ, id, version string }

// memoEntry is a remembered decision, and whether the resource's patients
// were given to the recorder with it (Released does; Saw need not again).
type memoEntry struct{ ok, recorded bool }

type sharingSet struct {
	ids []string
	ok  bool
}

var (
	_ storage.Reader  = (*Guard)(nil)
	_ storage.Release = (*Guard)(nil)
)

// Guard returns the release rule of a principal (nil: a gateway without
// authentication, which releases everything). rec may be nil.
func (d *Decider) Guard(p *auth.Principal, rec Recorder) *Guard {
	if p != nil && p.Kind == auth.KindAnonymous {
		p = nil
	}
	return &Guard{d: d, p: p, rec: rec}
}

// RecordGuard is Guard deciding one patient's record as a whole, as a
// second-opinion package holds it: resources in the record that are about
// nobody are released only as that patient's Consents allow.
func (d *Decider) RecordGuard(p *auth.Principal, rec Recorder, patientID string) *Guard {
	g := d.Guard(p, rec)
	g.record = patientID
	return g
}

// Principal is the caller (nil without authentication).
func (g *Guard) Principal() *auth.Principal { return g.p }

// Scope sets the scope decision that applies to resources of typ: the
// route's own decision for the type it serves (SMART v2 "?param=value"
// constraints included). Other types need read permission of their own.
func (g *Guard) Scope(typ string, d auth.Decision) {
	g.mu.Lock()
	if g.scopes == nil {
		g.scopes = map[string]auth.Decision{}
	}
	g.scopes[typ] = d
	g.mu.Unlock()
}

func (g *Guard) scopeFor(typ string) auth.Decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.scopes[typ]
	if !ok {
		d = g.p.Check(typ, auth.PermRead)
		if g.scopes == nil {
			g.scopes = map[string]auth.Decision{}
		}
		g.scopes[typ] = d
	}
	return d
}

// Release is what stores are handed: nil when the caller is unrestricted.
func (g *Guard) Release() storage.Release {
	if g.p == nil {
		return nil
	}
	return g
}

// auditScope reports whether a system client holds a scope that names
// AuditEvent itself (system/AuditEvent.rs): the trail is not given to
// system/*.
func auditScope(p *auth.Principal) bool {
	for _, sc := range p.Scopes.Scopes() {
		if sc.Type == "AuditEvent" && sc.Context == auth.ContextSystem && sc.Perms&(auth.PermRead|auth.PermSearch) != 0 {
			return true
		}
	}
	return false
}

// special types are decided by rules of their own, never by a bound.
func special(typ string) bool {
	switch typ {
	case "AuditEvent", "Binary", "Bundle", "Provenance", "Subscription":
		return true
	}
	return false
}

// Bound implements storage.Release.
func (g *Guard) Bound(typ string) storage.Bound {
	if g.p == nil {
		return storage.Bound{Exact: true}
	}
	sd := g.scopeFor(typ)
	if !sd.Allowed {
		return storage.Bound{None: true}
	}
	exact := sd.Unconditional()
	if g.p.Kind == auth.KindSystem {
		if typ == "AuditEvent" && !auditScope(g.p) {
			return storage.Bound{None: true}
		}
		return storage.Bound{Exact: exact}
	}
	inCompartment := g.d.reg.InPatientCompartment(typ) || typ == "Patient"
	exact = exact && !special(typ) && len(g.d.pointing[typ]) == 0
	switch g.p.Kind {
	case auth.KindPatient:
		if inCompartment {
			return storage.Bound{Restrict: true, Patients: []string{patientID(g.p)}, Exact: exact}
		}
		return storage.Bound{Exact: exact}
	case auth.KindProvider:
		if inCompartment {
			if ids, ok := g.sharingIDs(); ok {
				return storage.Bound{Restrict: true, Patients: ids}
			}
			return storage.Bound{}
		}
		return storage.Bound{Exact: exact}
	}
	return storage.Bound{None: true}
}

// sharingIDs are the patients sharing with the provider (see
// Decider.sharingPatients), read once per request.
func (g *Guard) sharingIDs() ([]string, bool) {
	g.mu.Lock()
	s := g.sharing
	g.mu.Unlock()
	if s != nil {
		return s.ids, s.ok
	}
	ids, ok, err := g.d.sharingPatients(context.Background(), g.p)
	if err != nil {
		ids, ok = nil, false // decide row by row
	}
	g.mu.Lock()
	g.sharing = &sharingSet{ids: ids, ok: ok}
	g.mu.Unlock()
	return ids, ok
}

func patientID(p *auth.Principal) string {
	_, id, _ := strings.Cut(p.Patient, "/")
	return id
}

// Released implements storage.Release: whether the caller may receive r.
func (g *Guard) Released(ctx context.Context, r *fhir.Resource) (bool, error) {
	if g.p == nil {
		g.recordPatients(ctx, r)
		return true, nil
	}
	key := versionKey{r.Type, r.ID, r.VersionID}
	g.mu.Lock()
	m, known := g.memo[key]
	g.mu.Unlock()
	if known && (m.recorded || !m.ok) {
		return m.ok, nil
	}
	ok := m.ok
	if !known {
		var err error
		if ok, err = g.decide(ctx, r, 0, true, nil); err != nil {
			return false, err
		}
	}
	if ok {
		g.recordPatients(ctx, r)
	}
	g.remember(key, memoEntry{ok: ok, recorded: ok})
	return ok, nil
}

func (g *Guard) remember(key versionKey, m memoEntry) {
	g.mu.Lock()
	if g.memo == nil {
		g.memo = map[versionKey]memoEntry{}
	}
	g.memo[key] = m
	g.mu.Unlock()
}

// recorded reports whether Released gave r's patients to the recorder.
func (g *Guard) recorded(r *fhir.Resource) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.memo[versionKey{r.Type, r.ID, r.VersionID}].recorded
}

// Saw records, for the audit trail, the patients of resources the request
// is given (a store skips Released for what a bound decides, and an
// unrestricted caller has no release at all); those Released recorded
// already are not computed again.
func (g *Guard) Saw(ctx context.Context, rs ...*fhir.Resource) {
	if g.rec == nil {
		return
	}
	g.mu.Lock()
	decided := len(g.memo) > 0 // none for a patient's own $everything
	g.mu.Unlock()
	for _, r := range rs {
		if !decided || !g.recorded(r) {
			g.recordPatients(ctx, r)
		}
	}
}

// patientsOf is the Decider's patientsOf, remembering its last answer:
// Released decides a resource, then records its patients, and computing
// them twice (hashing the resource's bytes for the Decider's cache, or
// extracting them) was a tenth of a consented provider's $everything.
// The answer is reused only for the same resource, unchanged: the same
// value, type, id and bytes (the same memory, held meanwhile).
func (g *Guard) patientsOf(r *fhir.Resource) []string {
	g.mu.Lock()
	if g.last.is(r) {
		pats := g.last.patients
		g.mu.Unlock()
		return pats
	}
	g.mu.Unlock()
	pats, k, hasKey := g.d.patientsAndKey(r)
	g.mu.Lock()
	g.last = lastPatients{res: r, typ: r.Type, id: r.ID, raw: unsafe.SliceData(r.Raw), size: len(r.Raw), patients: pats, key: k, hasKey: hasKey}
	g.mu.Unlock()
	return pats
}

// contentKey is keyOf(r), reusing the one patientsOf computed for r.
func (g *Guard) contentKey(r *fhir.Resource) contentKey {
	g.mu.Lock()
	if g.last.is(r) && g.last.hasKey {
		k := g.last.key
		g.mu.Unlock()
		return k
	}
	g.mu.Unlock()
	return keyOf(r)
}

// recordPatients tells the recorder every patient r is about, following
// what a Binary, Provenance or Bundle stands for.
func (g *Guard) recordPatients(ctx context.Context, r *fhir.Resource) {
	if g.rec == nil {
		return
	}
	pats := g.patientsOf(r)
	if special(r.Type) {
		if more, err := g.aboutPatients(ctx, nil, r, 0); err == nil {
			pats = more
		}
	}
	for _, pt := range pats {
		if pt != "?" {
			g.rec.Patient("Patient/" + pt)
		}
	}
}

// maxDepth bounds how far a decision follows what a resource points at or
// holds (a Provenance of a Provenance, a Bundle in a Bundle).
const maxDepth = 4

// decide is the release rule. scoped says whether the caller's scopes are
// checked for r (not for the resource a Binary's securityContext names:
// the scope was checked for the Binary); bundle holds the fullUrls of the
// Bundle r is an entry of, whose entries are decided on their own.
func (g *Guard) decide(ctx context.Context, r *fhir.Resource, depth int, scoped bool, bundle map[string]bool) (bool, error) {
	if depth > maxDepth {
		return false, nil
	}
	if scoped {
		sd := g.scopeFor(r.Type)
		if !sd.Allowed {
			return false, nil
		}
		if !sd.Unconditional() {
			if ok, err := sd.Matches(g.d.reg, r); err != nil || !ok {
				return false, err
			}
		}
	}
	if g.p.Kind == auth.KindSystem {
		return r.Type != "AuditEvent" || auditScope(g.p), nil
	}
	if g.p.Kind == auth.KindProvider && (r.Type == "Communication" || r.Type == "Bundle") {
		// an opinion or a follow-up message of a referral Task
		if ok, decided, err := g.workflowReleased(ctx, r); decided || err != nil {
			return ok, err
		}
	}
	switch r.Type {
	case "AuditEvent":
		return g.auditReleased(r), nil
	case "Binary":
		return g.binaryReleased(ctx, r, depth)
	case "Bundle":
		return g.bundleReleased(ctx, r, depth)
	case "Subscription":
		return g.subscriptionReleased(r), nil
	case "Provenance":
		if ok, err := g.targetsReleased(ctx, r, depth, bundle); err != nil || !ok {
			return false, err
		}
	case "Patient":
		if g.p.Kind == auth.KindPatient {
			// a Patient is in the compartments of the Patients it links
			// (R4 Patient compartment, as the search index keeps it)
			return g.releaseTo(ctx, r, g.d.reg.Patients(r))
		}
	}
	return g.releaseTo(ctx, r, g.patientsOf(r))
}

// releaseTo decides for a patient or provider whether r, which is about
// the patients pats (ids), may be released.
func (g *Guard) releaseTo(ctx context.Context, r *fhir.Resource, pats []string) (bool, error) {
	switch g.p.Kind {
	case auth.KindPatient:
		return len(pats) == 0 || slices.Contains(pats, patientID(g.p)), nil
	case auth.KindProvider:
		if !referralParty(r, g.p) {
			return false, nil // another provider's second-opinion Task
		}
		if len(pats) == 0 && g.record != "" {
			pats = []string{g.record}
		}
		if len(pats) == 0 {
			return true, nil
		}
		req := g.request()
		if referralAddressee(r, req.Actors) {
			// the patient's request to this provider: the Consent's
			// conditions on data do not hide it
			return g.relationship(ctx, req, pats)
		}
		used, ok, err := g.permittedByAll(ctx, req, r, pats)
		if err != nil || !ok {
			return false, err
		}
		g.recordConsents(used)
		return true, nil
	}
	return false, nil
}

// permittedByAll decides r for the provider under the Consents of every
// patient (ids) and returns the Consents that permit it.
func (g *Guard) permittedByAll(ctx context.Context, req consent.Request, r *fhir.Resource, pats []string) ([]consent.Ref, bool, error) {
	var used []consent.Ref
	for _, pt := range pats {
		pol, err := g.d.policyFor(ctx, "Patient/"+pt)
		if err != nil {
			return nil, false, err
		}
		d := g.d.decideResource(pol, req, g.requestKey(), r, g.contentKey(r))
		if !d.Permitted() {
			return nil, false, nil
		}
		if used == nil {
			used = d.Consents // only read (recordConsents); appending copies
		} else {
			used = append(slices.Clip(used), d.Consents...)
		}
	}
	return used, true, nil
}

func (g *Guard) recordConsents(refs []consent.Ref) {
	if g.rec == nil {
		return
	}
	for _, ref := range refs {
		g.rec.Consent(ref.Reference)
	}
}

// request is the consent request of the provider.
func (g *Guard) request() consent.Request {
	g.mu.Lock()
	g.buildRequest()
	req := *g.req
	g.mu.Unlock()
	req.Time = g.d.now()
	return req
}

// requestKey is requestKey(g.request()).
func (g *Guard) requestKey() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.buildRequest()
	return g.reqKey
}

// buildRequest builds the time-less request once; g.mu is held. Its
// slices are shared by every copy: consent never modifies a request.
func (g *Guard) buildRequest() {
	if g.req == nil {
		req := consent.Request{Actors: slices.Clip(g.p.Actors()), Action: consent.ActionAccess, Purpose: slices.Clip(purposeOf(g.p))}
		g.req, g.reqKey = &req, requestKey(req)
	}
}

func purposeOf(p *auth.Principal) []consent.Coding {
	if len(p.PurposeOfUse) == 0 {
		return []consent.Coding{consent.Treatment}
	}
	out := make([]consent.Coding, len(p.PurposeOfUse))
	for i, c := range p.PurposeOfUse {
		out[i] = consent.Coding{System: c.System, Code: c.Code}
	}
	return out
}

// relationship reports whether every patient (ids) currently shares with
// the provider (consent.Policy.DecideRelationship): an active Consent
// names it, and no deny of the provider or of the present period applies.
func (g *Guard) relationship(ctx context.Context, req consent.Request, pats []string) (bool, error) {
	var used []consent.Ref
	for _, pt := range pats {
		pol, err := g.d.policyFor(ctx, "Patient/"+pt)
		if err != nil {
			return false, err
		}
		d := pol.DecideRelationship(req)
		if !d.Permitted() {
			return false, nil
		}
		used = append(used, d.Consents...)
	}
	g.recordConsents(used)
	return true, nil
}

// auditReleased decides an AuditEvent for a patient (the events whose
// patient — the entity in role patient — is itself) or a provider (the
// events recording its own accesses, except a refusal that names a
// patient: the refused provider would learn whose the resource it may not
// see is).
func (g *Guard) auditReleased(r *fhir.Resource) bool {
	root := r.Root()
	var patients []string
	for _, e := range items(root.Get("entity")) {
		if isPatientRole(e.Get("role")) {
			patients = append(patients, g.d.local(e.Get("what").Get("reference").String()))
		}
	}
	switch g.p.Kind {
	case auth.KindPatient:
		return slices.Contains(patients, g.p.Patient)
	case auth.KindProvider:
		if len(patients) > 0 && root.Get("outcome").String() != "0" {
			return false
		}
		actors := g.p.Actors()
		for _, a := range items(r.Root().Get("agent")) {
			who := a.Get("who")
			if slices.Contains(actors, g.d.local(who.Get("reference").String())) {
				return true
			}
			id := who.Get("identifier")
			if g.p.ClientID != "" && id.Get("value").String() == g.p.ClientID && (id.Get("system").String() == g.p.Issuer || id.Get("system") == nil) {
				return true
			}
		}
	}
	return false
}

// isPatientRole reports whether an AuditEvent entity's role is patient
// (object-role 1).
func isPatientRole(role *fjson.Value) bool {
	return role.Get("code").String() == "1" && role.Get("system").String() == "http://terminology.hl7.org/CodeSystem/object-role"
}

// Check answers a single read: nil when the caller may see r, a 403
// OperationOutcome otherwise (the patients r is about are recorded as
// refused).
func (g *Guard) Check(ctx context.Context, r *fhir.Resource) error {
	ok, err := g.Released(ctx, r)
	if err != nil {
		return err
	}
	if !ok {
		g.recordPatients(ctx, r)
		return withheld(r)
	}
	return nil
}

// ErrWithheld is wrapped by the 403 a single read of a withheld resource
// answers.
var ErrWithheld = errors.New("release: withheld")

func withheld(r *fhir.Resource) error {
	return &outcomeError{fhir.Errorf(http.StatusForbidden, "forbidden", nil, "this token may not see %s/%s", r.Type, r.ID), ErrWithheld}
}

// outcomeError is an OperationOutcome error that also wraps one of the
// package's sentinels.
type outcomeError struct {
	outcome  *fhir.Error
	sentinel error
}

func (e *outcomeError) Error() string   { return e.outcome.Error() }
func (e *outcomeError) Unwrap() []error { return []error{e.outcome, e.sentinel} }

// Read implements storage.Reader: a withheld resource answers a 403.
func (g *Guard) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return g.checked(ctx, func() (*fhir.Resource, error) { return g.d.store.Read(ctx, typ, id) })
}

// VRead implements storage.Reader, deciding on the version read.
func (g *Guard) VRead(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	return g.checked(ctx, func() (*fhir.Resource, error) { return g.d.store.VRead(ctx, typ, id, vid) })
}

// ReadStub is Read without inlining a blob-backed Binary's content.
func (g *Guard) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	bs, ok := g.d.store.(storage.Blobs)
	if !ok {
		return g.Read(ctx, typ, id)
	}
	return g.checked(ctx, func() (*fhir.Resource, error) { return bs.ReadStub(ctx, typ, id) })
}

// VReadStub is VRead without inlining.
func (g *Guard) VReadStub(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	bs, ok := g.d.store.(storage.Blobs)
	if !ok {
		return g.VRead(ctx, typ, id, vid)
	}
	return g.checked(ctx, func() (*fhir.Resource, error) { return bs.VReadStub(ctx, typ, id, vid) })
}

func (g *Guard) checked(ctx context.Context, read func() (*fhir.Resource, error)) (*fhir.Resource, error) {
	r, err := read()
	if err != nil {
		if errors.Is(err, storage.ErrGone) && r != nil {
			if cerr := g.CheckDeleted(ctx, r.Type, r.ID); cerr != nil {
				return nil, cerr
			}
		}
		return r, err
	}
	if err := g.Check(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Search implements storage.Reader under the release rule.
func (g *Guard) Search(ctx context.Context, req storage.SearchRequest) (*storage.SearchResult, error) {
	req.Release = g.Release()
	res, err := g.d.store.Search(withPolicyMemo(ctx), req)
	if err == nil {
		// the patients of what the store did not ask Released about (no
		// restriction, or an exact bound): every access is on the trail
		g.Saw(ctx, res.Matches...)
		g.Saw(ctx, res.Included...)
	}
	return res, err
}

// Everything implements storage.Reader: the Patient itself must be
// released (403 otherwise); its compartment and what released resources
// refer to follow the release rule.
func (g *Guard) Everything(ctx context.Context, req storage.EverythingRequest) (*storage.SearchResult, error) {
	if g.p != nil {
		if _, err := g.Read(ctx, "Patient", req.PatientID); err != nil {
			return nil, err
		}
	}
	req.Release = g.Release()
	res, err := g.d.store.Everything(withPolicyMemo(ctx), req)
	if err == nil && g.rec != nil {
		g.rec.Patient("Patient/" + req.PatientID) // whose record it is
	}
	return res, err
}

// History implements storage.Reader: every version is decided on its own
// content. An instance history of a resource whose newest content is
// withheld answers 403, as a read would.
func (g *Guard) History(ctx context.Context, q storage.HistoryQuery) (*storage.HistoryPage, error) {
	if g.p != nil && q.ID != "" {
		if last, err := g.lastContent(ctx, q.Type, q.ID); err != nil {
			return nil, err
		} else if last != nil {
			if err := g.Check(ctx, last); err != nil {
				return nil, err
			}
		}
	}
	q.Release = g.Release()
	page, err := g.d.store.History(withPolicyMemo(ctx), q)
	if err == nil && g.rec != nil {
		for _, e := range page.Entries {
			if e.Resource != nil {
				g.recordPatients(ctx, e.Resource)
			}
		}
	}
	return page, err
}

// CheckDeleted answers a read that found the resource deleted: a 403 when
// the caller could not see what was deleted ("deleted" would tell it that
// something was there), nil when the 410 may stand.
func (g *Guard) CheckDeleted(ctx context.Context, typ, id string) error {
	if g.p == nil {
		return nil
	}
	last, err := g.lastContent(ctx, typ, id)
	if err != nil || last == nil {
		return err
	}
	return g.Check(ctx, last)
}

// lastContent is the newest version of a resource that has content (the
// current one, or the one before a deletion); nil when there is none.
func (g *Guard) lastContent(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := g.d.store.Read(ctx, typ, id)
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, storage.ErrGone) && r != nil:
		page, herr := g.d.store.History(ctx, storage.HistoryQuery{Type: typ, ID: id, Count: 50})
		if herr != nil {
			return nil, herr
		}
		for _, e := range page.Entries {
			if e.Resource != nil {
				return e.Resource, nil
			}
		}
		return nil, nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrGone):
		return nil, nil
	}
	return nil, err
}

func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}
