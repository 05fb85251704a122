package release

import (
	"context"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// Options configure a Decider.
type Options struct {
	// Store holds the resources decided on. Required.
	Store storage.Store
	// Search is the registry the store indexes with (compartments,
	// reference parameters). Required.
	Search *search.Registry
	// BaseURL is the gateway's FHIR base: references to it are local.
	BaseURL string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Decider holds what decisions share across requests: compiled Consent
// policies and the patients sharing with each provider, both keyed by the
// store's Consent change mark. It is safe for concurrent use.
type Decider struct {
	store   storage.Store
	reg     *search.Registry
	baseURL string
	now     func() time.Time

	mu       sync.Mutex
	policies map[string]*consent.Policy // "Patient/x@mark" and "Patient/x,consent@v,..." -> policy
	sharing  map[string][]string        // actors + "@" + mark -> patient ids
	// pointing are the reference parameters of types outside the Patient
	// compartment that can name a Patient (Task.for, Device.patient…).
	pointing map[string][]string

	patients  patientsCache // content -> patients it is about (cache.go)
	decisions decisionCache // policy, request, content -> decision
}

// New returns a Decider.
func New(opts Options) *Decider {
	d := &Decider{store: opts.Store, reg: opts.Search, baseURL: strings.TrimSuffix(opts.BaseURL, "/"), now: opts.Now}
	if d.now == nil {
		d.now = time.Now
	}
	d.pointing = map[string][]string{}
	for _, typ := range fhir.ResourceTypes {
		if d.reg.InPatientCompartment(typ) || typ == "Bundle" || typ == "Binary" {
			continue
		}
		for _, p := range d.reg.Params(typ) {
			if p.Type == search.TypeReference && slices.Contains(p.Targets, "Patient") {
				d.pointing[typ] = append(d.pointing[typ], p.Code)
			}
		}
	}
	return d
}

// draftsKey carries draft Consents in a context (WithDraftConsents).
type draftsKey struct{}

type draftConsents struct {
	patient  string
	consents []*fhir.Resource
}

// WithDraftConsents returns a context in which the release rule decides
// the patient's ("Patient/x") data as if the draft Consents were among its
// active ones (a draft replaces a stored Consent with its id). It is for
// previews that store nothing (what a second-opinion package would hold):
// no write may run in such a context.
func WithDraftConsents(ctx context.Context, patient string, drafts []*fhir.Resource) context.Context {
	return context.WithValue(ctx, draftsKey{}, &draftConsents{patient: patient, consents: drafts})
}

// policyMemo keeps, for one read of many resources (a search page,
// $everything, a history page), the policies it used: the Consent change
// mark is read once per patient in it, not once per resource (on
// PostgreSQL a round trip each: 700 of them made a provider's $everything
// 16 times the patient's own). Nothing is written inside such a read, so
// the policy cannot change under it; the next request reads the mark again.
type policyMemo struct {
	mu sync.Mutex
	m  map[string]*consent.Policy
}

type policyMemoKey struct{}

// withPolicyMemo scopes a policy memo to one read.
func withPolicyMemo(ctx context.Context) context.Context {
	if _, ok := ctx.Value(policyMemoKey{}).(*policyMemo); ok {
		return ctx
	}
	return context.WithValue(ctx, policyMemoKey{}, &policyMemo{m: map[string]*consent.Policy{}})
}

// policyFor returns the compiled Consent policy of a patient ("Patient/x").
func (d *Decider) policyFor(ctx context.Context, patient string) (*consent.Policy, error) {
	if dr, ok := ctx.Value(draftsKey{}).(*draftConsents); ok && dr.patient == patient {
		return d.compileDrafts(ctx, patient, dr.consents)
	}
	if memo, ok := ctx.Value(policyMemoKey{}).(*policyMemo); ok {
		memo.mu.Lock()
		pol := memo.m[patient]
		memo.mu.Unlock()
		if pol != nil {
			return pol, nil
		}
		pol, err := d.currentPolicy(ctx, patient)
		if err == nil {
			memo.mu.Lock()
			memo.m[patient] = pol
			memo.mu.Unlock()
		}
		return pol, err
	}
	return d.currentPolicy(ctx, patient)
}

// currentPolicy is the patient's policy as the store's Consents are now.
func (d *Decider) currentPolicy(ctx context.Context, patient string) (*consent.Policy, error) {
	// Any Consent written anywhere changes the mark; until then the
	// compiled policy of this patient stands.
	mark, err := d.store.ChangeMark(ctx, "Consent")
	if err != nil {
		return nil, err
	}
	fast := patient + "@" + strconv.FormatInt(mark, 10)
	d.mu.Lock()
	pol, ok := d.policies[fast]
	d.mu.Unlock()
	if ok {
		return pol, nil
	}
	if pol, err = d.compilePolicy(ctx, patient); err != nil {
		return nil, err
	}
	d.remember(fast, pol)
	return pol, nil
}

// compilePolicy reads the patient's active Consents and compiles them,
// reusing a compiled policy while the Consents' versions are unchanged.
func (d *Decider) compilePolicy(ctx context.Context, patient string) (*consent.Policy, error) {
	q, err := d.reg.ParseQuery("Consent", url.Values{"patient": {patient}, "status": {"active"}, "_count": {"1000"}, "_total": {"none"}}, true)
	if err != nil {
		return nil, err
	}
	res, err := d.store.Search(ctx, storage.SearchRequest{Query: q})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(res.Matches)+1)
	keys = append(keys, patient)
	for _, r := range res.Matches {
		keys = append(keys, r.ID+"@"+r.VersionID)
	}
	sort.Strings(keys[1:])
	key := strings.Join(keys, ",")
	d.mu.Lock()
	pol, ok := d.policies[key]
	d.mu.Unlock()
	if ok {
		return pol, nil
	}
	pol = consent.Compile(patient, res.Matches, consent.Options{Resolve: func(ref string) (*fhir.Resource, error) {
		typ, id, _ := strings.Cut(ref, "/")
		return d.store.Read(ctx, typ, id)
	}})
	d.remember(key, pol)
	return pol, nil
}

// compileDrafts compiles the patient's active Consents with the drafts,
// kept nowhere.
func (d *Decider) compileDrafts(ctx context.Context, patient string, drafts []*fhir.Resource) (*consent.Policy, error) {
	q, err := d.reg.ParseQuery("Consent", url.Values{"patient": {patient}, "status": {"active"}, "_count": {"1000"}, "_total": {"none"}}, true)
	if err != nil {
		return nil, err
	}
	res, err := d.store.Search(ctx, storage.SearchRequest{Query: q})
	if err != nil {
		return nil, err
	}
	all := slices.Clone(drafts)
	for _, r := range res.Matches {
		if !slices.ContainsFunc(drafts, func(dr *fhir.Resource) bool { return dr.ID == r.ID }) {
			all = append(all, r)
		}
	}
	return consent.Compile(patient, all, consent.Options{Resolve: func(ref string) (*fhir.Resource, error) {
		typ, id, _ := strings.Cut(ref, "/")
		return d.store.Read(ctx, typ, id)
	}}), nil
}

func (d *Decider) remember(key string, pol *consent.Policy) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.policies == nil || len(d.policies) > 10000 {
		d.policies = map[string]*consent.Policy{}
	}
	d.policies[key] = pol
}

// maxSharing bounds the patients a provider's searches are narrowed to in
// SQL; beyond it every candidate is decided on its own (still correct,
// only slower).
const maxSharing = 2000

// sharingPatients lists the ids of the patients with an active Consent
// that names one of the provider's actors anywhere in its provisions: the
// only patients whose data can be released to it. ok is false when there
// are too many to narrow a search by.
func (d *Decider) sharingPatients(ctx context.Context, p *auth.Principal) ([]string, bool, error) {
	actors := p.Actors()
	if len(actors) == 0 {
		return nil, true, nil
	}
	mark, err := d.store.ChangeMark(ctx, "Consent")
	if err != nil {
		return nil, false, err
	}
	key := strings.Join(actors, ",") + "@" + strconv.FormatInt(mark, 10)
	d.mu.Lock()
	ids, ok := d.sharing[key]
	d.mu.Unlock()
	if ok {
		return ids, len(ids) <= maxSharing, nil
	}
	q, err := d.reg.ParseQuery("Consent", url.Values{"actor": {strings.Join(actors, ",")}, "status": {"active"}, "_count": {"1000"}, "_total": {"none"}}, true)
	if err != nil {
		return nil, false, err
	}
	seen := map[string]bool{}
	cursor := ""
	for {
		res, err := d.store.Search(ctx, storage.SearchRequest{Query: q, Cursor: cursor})
		if err != nil {
			return nil, false, err
		}
		for _, r := range res.Matches {
			if id, ok := strings.CutPrefix(d.local(r.Root().Get("patient").Get("reference").String()), "Patient/"); ok && fhir.ValidID(id) && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if res.Next == "" {
			break
		}
		cursor = res.Next
	}
	sort.Strings(ids)
	d.mu.Lock()
	if d.sharing == nil || len(d.sharing) > 1000 {
		d.sharing = map[string][]string{}
	}
	d.sharing[key] = ids
	d.mu.Unlock()
	return ids, len(ids) <= maxSharing, nil
}

// local turns a reference into "Type/id" (versions dropped, this server's
// base removed); "" when it names something elsewhere or is malformed.
func (d *Decider) local(ref string) string {
	if d.baseURL != "" {
		ref = strings.TrimPrefix(ref, d.baseURL+"/")
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
		return ""
	}
	return typ + "/" + id
}
