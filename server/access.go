package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fhirpath"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// Authenticator turns a request's bearer token into a principal
// (*auth.Verifier). Nil serves without authentication (--auth=none).
type Authenticator interface {
	Authenticate(r *http.Request) (*auth.Principal, error)
}

const (
	ctxPrincipal = "fhirgate.principal"
	ctxAccess    = "fhirgate.access"
)

// access records what a request touched, for authorisation decisions and
// the audit trail.
type access struct {
	interaction, operation string
	resourceType           string
	resource               string // Type/id of an instance interaction
	query                  string
	patients               map[string]bool
	consents               map[string]bool
	refused                string // why access was refused, for the audit trail
	note                   string // what else the audit trail must say (an accepted demographics mismatch)
}

func accessOf(c *gin.Context) *access {
	if v, ok := c.Get(ctxAccess); ok {
		return v.(*access)
	}
	a := &access{patients: map[string]bool{}, consents: map[string]bool{}}
	c.Set(ctxAccess, a)
	return a
}

// principal returns the request's principal; nil when authentication is off.
func principal(c *gin.Context) *auth.Principal {
	if v, ok := c.Get(ctxPrincipal); ok {
		return v.(*auth.Principal)
	}
	return nil
}

// authenticate resolves the bearer token of every non-public route.
func (s *Server) authenticate() gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.cfg.Auth == nil || s.publicPaths[c.FullPath()] || c.FullPath() == "" && s.publicPaths[c.Request.URL.Path] {
			c.Next()
			return
		}
		p, err := s.cfg.Auth.Authenticate(c.Request)
		if err != nil {
			status, www, oo := auth.Response(err, "fhirgate")
			if www != "" {
				c.Header("WWW-Authenticate", www)
			}
			a := accessOf(c)
			a.refused = "authentication failed"
			s.fail(c, &fhir.Error{Status: status, Issues: oo.Issues})
			c.Abort()
			return
		}
		c.Set(ctxPrincipal, p)
		c.Next()
	}
}

// authorize checks the principal's scopes for an interaction on a type
// ("*" for whole-system interactions). It returns the scope decision (with
// any query filters) or a 403.
func (s *Server) authorize(c *gin.Context, interaction, operation, typ string) (auth.Decision, error) {
	a := accessOf(c)
	a.interaction, a.operation, a.resourceType = interaction, operation, typ
	p := principal(c)
	if p == nil {
		return auth.Decision{Allowed: true}, nil
	}
	var (
		perm auth.Perm
		ok   bool
	)
	if interaction == "operation" {
		perm, ok = auth.OperationPerm(operation)
	} else {
		perm, ok = auth.InteractionPerm(interaction)
	}
	if !ok {
		a.refused = "interaction not permitted"
		return auth.Decision{}, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "%s is not available to this token", interaction)
	}
	if typ == "" {
		typ = "*"
	}
	d := p.Check(typ, perm)
	if !d.Allowed {
		a.refused = "insufficient scope"
		status, _, oo := auth.Response(auth.InsufficientScope(typ, perm), "fhirgate")
		return d, &fhir.Error{Status: status, Issues: oo.Issues}
	}
	if p.Kind == auth.KindPatient && typ == "*" && interaction != auth.InteractionCapabilities {
		a.refused = "whole-system access is not available to patients"
		return d, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token cannot use whole-system interactions")
	}
	return d, nil
}

// patientRef is the patient a patient principal is ("Patient/123").
func patientID(p *auth.Principal) string {
	_, id, _ := strings.Cut(p.Patient, "/")
	return id
}

// patientsOf lists the Patients ("Patient/id") whose compartment holds r:
// the targets of the type's Patient-compartment parameters (evaluating only
// those, not every search parameter).
func (s *Server) patientsOf(r *fhir.Resource) []string {
	if r.Type == "Patient" {
		if r.ID == "" {
			return nil // a Patient being created: no record yet
		}
		return []string{"Patient/" + r.ID}
	}
	switch r.Type {
	case "Bundle", "Task":
		return referralPatients(r)
	case "Binary":
		return s.binaryPatients(r)
	}
	var out []string
	root := r.Root()
	for _, code := range s.cfg.Search.PatientCompartment(r.Type) {
		p, ok := s.cfg.Search.Param(r.Type, code)
		if !ok || p.Expr() == nil {
			continue
		}
		items, err := p.Expr().Eval(root, r.Type, &fhirpath.Env{Resource: root, RootResource: root})
		if err != nil {
			continue
		}
		for _, it := range items {
			if it.Node == nil {
				continue
			}
			ref := it.Node.Get("reference").String()
			if fhirpath.ReferenceType(ref) != "Patient" {
				continue
			}
			ref = strings.TrimPrefix(ref, s.cfg.BaseURL+"/")
			if i := strings.Index(ref, "Patient/"); i >= 0 {
				ref = ref[i:]
			}
			if id, _, _ := strings.Cut(strings.TrimPrefix(ref, "Patient/"), "/"); fhir.ValidID(id) && !slices.Contains(out, "Patient/"+id) {
				out = append(out, "Patient/"+id)
			}
		}
	}
	return out
}

// release decides whether the request's principal may receive r, and
// records the patient and the deciding Consents for the audit trail.
// Patients see their own compartment (and resources in no patient's
// compartment); providers what an active Consent of every patient the
// resource belongs to permits; system clients everything their scopes allow.
func (s *Server) release(c *gin.Context, r *fhir.Resource, scope auth.Decision) (bool, error) {
	p := principal(c)
	a := accessOf(c)
	pats := s.patientsOf(r)
	for _, pt := range pats {
		a.patients[pt] = true
	}
	if p == nil {
		return true, nil
	}
	if !scope.Unconditional() {
		ok, err := scope.Matches(s.cfg.Search, r)
		if err != nil || !ok {
			return false, err
		}
	}
	if r.Type == "Binary" && p.Kind != auth.KindSystem {
		return s.releaseBinary(c, r, 0)
	}
	return s.releaseTo(c, r, pats)
}

// releaseTo decides for a patient or provider whether r, which belongs to
// the patients pats, may be released.
func (s *Server) releaseTo(c *gin.Context, r *fhir.Resource, pats []string) (bool, error) {
	p := principal(c)
	a := accessOf(c)
	for _, pt := range pats {
		a.patients[pt] = true
	}
	switch p.Kind {
	case auth.KindSystem:
		return true, nil
	case auth.KindPatient:
		return len(pats) == 0 || slices.Contains(pats, p.Patient), nil
	case auth.KindProvider:
		if !referralParty(r, p) {
			return false, nil // another provider's second-opinion Task
		}
		if len(pats) == 0 {
			return true, nil
		}
		req := consent.Request{Actors: p.Actors(), Action: consent.ActionAccess, Purpose: purposeOf(p), Time: s.now()}
		switch {
		case referralAddressee(r, req.Actors):
			// the patient's request to this provider: the Consent's
			// conditions on data do not hide it
			return s.releaseRelationship(c, req, pats)
		case isDocument(r):
			return s.releaseDocument(c, req, r, pats)
		}
		for _, pt := range pats {
			pol, err := s.policyFor(c.Request.Context(), pt)
			if err != nil {
				return false, err
			}
			d := pol.DecideResource(req, r)
			if !d.Permitted() {
				return false, nil
			}
			for _, ref := range d.Consents {
				a.consents[ref.Reference] = true
			}
		}
		return true, nil
	}
	return false, nil
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

// releaseOne answers a single resource fetch: 403 when the principal may
// not see it.
func (s *Server) releaseOne(c *gin.Context, r *fhir.Resource, scope auth.Decision) error {
	ok, err := s.release(c, r, scope)
	if err != nil {
		return err
	}
	if !ok {
		accessOf(c).refused = "no consent or outside the token's patient"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "this token may not see %s/%s", r.Type, r.ID)
	}
	return nil
}

// releaseAll filters a list; it reports whether anything was withheld.
func (s *Server) releaseAll(c *gin.Context, rs []*fhir.Resource, scope auth.Decision) ([]*fhir.Resource, bool, error) {
	if principal(c) == nil {
		if s.cfg.Auditor == nil {
			return rs, false, nil
		}
		for _, r := range rs {
			for _, pt := range s.patientsOf(r) {
				accessOf(c).patients[pt] = true
			}
		}
		return rs, false, nil
	}
	out := rs[:0:0]
	withheld := false
	for _, r := range rs {
		ok, err := s.release(c, r, scope)
		if err != nil {
			return nil, false, err
		}
		if ok {
			out = append(out, r)
		} else {
			withheld = true
		}
	}
	return out, withheld, nil
}

// policyCache keeps compiled consent policies keyed by the patient and the
// exact versions of its active Consents, so a Consent written anywhere (on
// any replica) is seen on the very next request, while an unchanged set is
// not parsed again.
type policyCache struct {
	mu sync.Mutex
	m  map[string]*consent.Policy
}

func (s *Server) policyFor(ctx context.Context, patient string) (*consent.Policy, error) {
	// Any Consent written anywhere changes the mark; until then the
	// compiled policy of this patient stands.
	mark, err := s.cfg.Store.ChangeMark(ctx, "Consent")
	if err != nil {
		return nil, err
	}
	fast := patient + "@" + strconv.FormatInt(mark, 10)
	s.policies.mu.Lock()
	pol, ok := s.policies.m[fast]
	s.policies.mu.Unlock()
	if ok {
		return pol, nil
	}
	pol, err = s.compilePolicy(ctx, patient)
	if err != nil {
		return nil, err
	}
	s.policies.mu.Lock()
	s.policies.m[fast] = pol
	s.policies.mu.Unlock()
	return pol, nil
}

// compilePolicy reads the patient's active Consents and compiles them,
// reusing a compiled policy while the Consents' versions are unchanged.
func (s *Server) compilePolicy(ctx context.Context, patient string) (*consent.Policy, error) {
	q, err := s.cfg.Search.ParseQuery("Consent", url.Values{"patient": {patient}, "status": {"active"}, "_count": {"1000"}, "_total": {"none"}}, true)
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Store.Search(ctx, storage.SearchRequest{Query: q})
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
	s.policies.mu.Lock()
	pol, ok := s.policies.m[key]
	s.policies.mu.Unlock()
	if ok {
		return pol, nil
	}
	pol = consent.Compile(patient, res.Matches, consent.Options{Resolve: func(ref string) (*fhir.Resource, error) {
		typ, id, _ := strings.Cut(ref, "/")
		return s.cfg.Store.Read(ctx, typ, id)
	}})
	s.policies.mu.Lock()
	if s.policies.m == nil || len(s.policies.m) > 10000 {
		s.policies.m = map[string]*consent.Policy{}
	}
	s.policies.m[key] = pol
	s.policies.mu.Unlock()
	return pol, nil
}

// checkWrite limits what a principal may write: a patient only into its
// own compartment, and Consents it records must be well-formed and its own.
func (s *Server) checkWrite(c *gin.Context, r *fhir.Resource) error {
	p := principal(c)
	a := accessOf(c)
	for _, pt := range s.patientsOf(r) {
		a.patients[pt] = true
	}
	if r.Type == "Consent" && (p != nil && p.Kind == auth.KindPatient || grantsSharing(r)) {
		opts := consent.ValidateOptions{}
		if p != nil && p.Kind == auth.KindPatient {
			opts.Patient = p.Patient
		}
		if issues := consent.Validate(r, opts); hasErrorIssues(issues) {
			return &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
		}
	}
	if r.Type == "Subscription" && p != nil && p.Kind != auth.KindSystem {
		return s.checkSubscriptionFilters(c, p, r)
	}
	if p == nil || p.Kind != auth.KindPatient {
		return nil
	}
	pats := s.patientsOf(r)
	if !slices.Contains(pats, p.Patient) {
		a.refused = "write outside the patient's own record"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only write resources of its own record")
	}
	return nil
}

func hasErrorIssues(issues []fhir.Issue) bool {
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			return true
		}
	}
	return false
}

// patientSearchScope restricts a patient's search to its own compartment
// (types outside the Patient compartment hold no patient's data and are
// searched as they are); a patient searching Patient finds only itself.
func (s *Server) patientSearchScope(c *gin.Context, typ string, req *storage.SearchRequest) error {
	p := principal(c)
	if p == nil || p.Kind != auth.KindPatient {
		return nil
	}
	if req.PatientCompartment != "" && req.PatientCompartment != patientID(p) {
		accessOf(c).refused = "another patient's record"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only search its own record")
	}
	if s.cfg.Search.InPatientCompartment(typ) || typ == "Patient" {
		req.PatientCompartment = patientID(p)
	}
	return nil
}

// authorizeChange checks an update, patch or delete of typ/id: the scope,
// the new content (when given), and that the resource being changed is one
// the principal may see (a patient may not overwrite another's resource).
func (s *Server) authorizeChange(c *gin.Context, interaction, typ, id string, res *fhir.Resource) error {
	scope, err := s.authorize(c, interaction, "", typ)
	if err != nil {
		return err
	}
	accessOf(c).resource = typ + "/" + id
	if res != nil {
		if err := s.checkWrite(c, res); err != nil {
			return err
		}
	}
	p := principal(c)
	if p == nil || p.Kind == auth.KindSystem {
		return nil
	}
	cur, err := s.cfg.Store.Read(c.Request.Context(), typ, id)
	if err != nil {
		return nil // nothing to protect: the store answers 404/410 or creates
	}
	ok, err := s.release(c, cur, scope)
	if err != nil {
		return err
	}
	if !ok {
		accessOf(c).refused = "change of a resource the token may not see"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "this token may not change %s/%s", typ, id)
	}
	return nil
}

// SMARTConfigurer publishes /.well-known/smart-configuration (*auth.Verifier).
type SMARTConfigurer interface {
	SMARTConfiguration(ctx context.Context) (*auth.SMARTConfiguration, error)
}

func (s *Server) smartConfiguration(sc SMARTConfigurer) gin.HandlerFunc {
	return func(c *gin.Context) {
		doc, err := sc.SMARTConfiguration(c.Request.Context())
		if err != nil {
			if errors.Is(err, auth.ErrNoIssuer) {
				s.fail(c, fhir.Errorf(http.StatusNotFound, "not-found", nil, "no identity provider is configured"))
				return
			}
			s.fail(c, fhir.Errorf(http.StatusServiceUnavailable, "transient", nil, "the identity provider cannot be reached"))
			return
		}
		b, _ := json.Marshal(doc)
		c.Header("Content-Type", "application/json")
		c.Header("Cache-Control", "public, max-age=300")
		c.Status(http.StatusOK)
		_, _ = c.Writer.Write(b)
	}
}

// systemOnly authorises interactions whose targets are found by a search
// (conditional update and delete, searches inside Bundles): they could touch
// resources a patient or provider may not see, so only system clients (and
// unauthenticated local use) may run them.
func (s *Server) systemOnly(c *gin.Context, interaction, typ string) error {
	if _, err := s.authorize(c, interaction, "", typ); err != nil {
		return err
	}
	if p := principal(c); p != nil && p.Kind != auth.KindSystem {
		accessOf(c).refused = "conditional interaction needs a system client"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "conditional %s is only available to system clients", interaction)
	}
	return nil
}

// authorizeEntry checks one entry of a transaction or batch as if it were
// its own request.
func (s *Server) authorizeEntry(c *gin.Context, be *bundleEntryReq) error {
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return prefixExpr(err, fmt.Sprintf("Bundle.entry[%d]", be.index))
	}
	switch be.method {
	case http.MethodGet, http.MethodHead:
		if be.id == "" {
			return wrap(s.systemOnly(c, "search-type", be.typ))
		}
		interaction := "read"
		if be.vid != "" {
			interaction = "vread"
		}
		scope, err := s.authorize(c, interaction, "", be.typ)
		if err != nil {
			return wrap(err)
		}
		be.release = func(r *fhir.Resource) error { return s.releaseOne(c, r, scope) }
		return nil
	case http.MethodPost:
		if be.ifNoneExist != "" {
			if err := s.systemOnly(c, "create", be.typ); err != nil {
				return wrap(err)
			}
		} else if _, err := s.authorize(c, "create", "", be.typ); err != nil {
			return wrap(err)
		}
		return wrap(s.checkWrite(c, be.res))
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		interaction := map[string]string{http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}[be.method]
		if be.typ == "Task" && be.method != http.MethodDelete {
			// the referral workflow applies to Task changes in Bundles too
			var err error
			switch {
			case be.id == "" && (be.method == http.MethodPatch || isReferralTask(be.res)):
				err = errConditionalTask
			case be.id == "":
				// a conditional PUT of another Task: the checks below apply
			case be.method == http.MethodPut:
				err = s.checkTaskUpdate(c, be.typ, be.id, be.res)
			default:
				if doc, derr := binaryData(be.body); derr == nil {
					err = s.checkTaskPatch(c, be.typ, be.id, doc)
				}
			}
			if err != nil {
				return wrap(err)
			}
		}
		if be.id == "" {
			if err := s.systemOnly(c, interaction, be.typ); err != nil {
				return wrap(err)
			}
			if be.res != nil {
				return wrap(s.checkWrite(c, be.res))
			}
			return nil
		}
		return wrap(s.authorizeChange(c, interaction, be.typ, be.id, be.res))
	}
	return nil
}

// grantsSharing reports whether a Consent would grant access under the
// opt-in policy (active, patient-privacy, root permit): such a Consent must
// be well-formed for the decision point to read it. Others (opt-outs,
// drafts, research consents) grant nothing here and are stored as sent.
func grantsSharing(r *fhir.Resource) bool {
	root := r.Root()
	if root.Get("status").String() != "active" || root.Get("provision").Get("type").String() != "permit" {
		return false
	}
	for _, c := range root.Get("scope").Get("coding").Elems() {
		if c.Get("code").String() == "patient-privacy" {
			return true
		}
	}
	return false
}

// checkSubscriptionFilters limits what a patient or provider may subscribe
// to: a provider only to Tasks its own organization owns or requested, a
// patient only to its own record's Tasks. Notifications carry Task ids and
// timing, which are themselves worth protecting.
func (s *Server) checkSubscriptionFilters(c *gin.Context, p *auth.Principal, r *fhir.Resource) error {
	sub, err := notify.ParseSubscription(r.Raw, true) // endpoint rules are the notify service's
	if err != nil {
		return nil // the service refuses it with its own 422
	}
	allowed := map[string][]string{}
	switch p.Kind {
	case auth.KindProvider:
		allowed["owner"], allowed["requester"] = p.Actors(), p.Actors()
	case auth.KindPatient:
		allowed["patient"] = []string{p.Patient}
	}
	for param, ref := range sub.Filters {
		if !slices.Contains(allowed[param], ref) {
			accessOf(c).refused = "subscription to another party's requests"
			return fhir.Errorf(http.StatusForbidden, "forbidden", []string{"Subscription.criteria"},
				"this token may only subscribe to its own requests (filter %s)", param)
		}
	}
	if len(sub.Filters) == 0 {
		return fhir.Errorf(http.StatusForbidden, "forbidden", []string{"Subscription.criteria"}, "a subscription needs a filter naming this token's own organization or patient")
	}
	return nil
}

// referralParty reports whether a provider may see r as far as the
// second-opinion workflow goes: a referral Task (one carrying the
// requisition identifier) only to its owner and its requester, so that one
// specialist's inbox is not another's; anything else is left to consent.
func referralParty(r *fhir.Resource, p *auth.Principal) bool {
	if r.Type != "Task" {
		return true
	}
	root := r.Root()
	if root.Get("groupIdentifier").Get("system").String() != referral.RequisitionSystem {
		return true
	}
	actors := p.Actors()
	for _, field := range []string{"owner", "requester"} {
		if slices.Contains(actors, root.Get(field).Get("reference").String()) {
			return true
		}
	}
	return false
}

// referralAddressee reports whether r is a resource of the second-opinion
// workflow the actors are a party to: a referral Task (requisition
// groupIdentifier) they own or requested, or a referral ServiceRequest
// (requisition identifier) naming them as performer or requester.
func referralAddressee(r *fhir.Resource, actors []string) bool {
	root := r.Root()
	var fields []string
	switch r.Type {
	case "Task":
		if root.Get("groupIdentifier").Get("system").String() != referral.RequisitionSystem {
			return false
		}
		fields = []string{"owner", "requester"}
	case "ServiceRequest":
		if root.Get("requisition").Get("system").String() != referral.RequisitionSystem {
			return false
		}
		fields = []string{"performer", "requester"}
	default:
		return false
	}
	for _, f := range fields {
		v := root.Get(f)
		refs := items(v)
		if v != nil && v.Kind != fjson.Array {
			refs = []*fjson.Value{v}
		}
		for _, ref := range refs {
			if slices.Contains(actors, ref.Get("reference").String()) {
				return true
			}
		}
	}
	return false
}

// releaseRelationship releases a referral resource addressed to the
// provider when every patient it belongs to currently shares with the
// provider (consent.Policy.DecideRelationship): an active Consent names
// it, and no deny of the provider or of the present period applies. A
// revoked Consent ends the relationship.
func (s *Server) releaseRelationship(c *gin.Context, req consent.Request, pats []string) (bool, error) {
	a := accessOf(c)
	for _, pt := range pats {
		pol, err := s.policyFor(c.Request.Context(), pt)
		if err != nil {
			return false, err
		}
		d := pol.DecideRelationship(req)
		if !d.Permitted() {
			return false, nil
		}
		for _, ref := range d.Consents {
			a.consents[ref.Reference] = true
		}
	}
	return true, nil
}

// isDocument reports whether r is a document Bundle (a second-opinion
// package or any other document) whose Composition names a patient.
func isDocument(r *fhir.Resource) bool {
	return r.Type == "Bundle" && r.Root().Get("type").String() == "document" && len(referralPatients(r)) > 0
}

// releaseDocument decides a document Bundle for a provider by what it
// holds, at the moment of the fetch: the provider must be a party the
// patient shares with (releaseRelationship), no Consent may deny the
// document itself (its aggregated labels), and every entry must be
// released by the Consents of the document's patient, and of any other
// patient whose compartment the entry is in, now — as every resource was
// when the gateway assembled the package. A Consent changed since then to
// deny something in it refuses the whole document; a revoked one ends the
// relationship. The document's own scaffolding is not decided on its own:
// the Composition (its first entry, dated when it was assembled), the
// Devices it names as author and the Provenance of the Composition (the
// ones the gateway writes, see referral.Summary).
func (s *Server) releaseDocument(c *gin.Context, req consent.Request, r *fhir.Resource, pats []string) (bool, error) {
	if ok, err := s.releaseRelationship(c, req, pats); err != nil || !ok {
		return false, err
	}
	ctx := c.Request.Context()
	a := accessOf(c)
	decide := func(pt string, res *fhir.Resource) (consent.Decision, error) {
		pol, err := s.policyFor(ctx, pt)
		if err != nil {
			return consent.Decision{}, err
		}
		return pol.DecideResource(req, res), nil
	}
	for _, pt := range pats {
		d, err := decide(pt, r)
		if err != nil || d.Effect == consent.Deny {
			return false, err
		}
	}
	entries := items(r.Root().Get("entry"))
	scaffold := documentScaffold(entries)
	for i, e := range entries {
		if scaffold[i] {
			continue
		}
		v := e.Get("resource")
		if v == nil {
			continue
		}
		res, err := fhir.FromValue(v)
		if err != nil {
			return false, nil // an entry that cannot be decided is not released
		}
		owners := slices.Clone(pats)
		for _, pt := range s.patientsOf(res) {
			if !slices.Contains(owners, pt) {
				owners = append(owners, pt)
			}
		}
		for _, pt := range owners {
			a.patients[pt] = true
			d, err := decide(pt, res)
			if err != nil || !d.Permitted() {
				return false, err
			}
			for _, ref := range d.Consents {
				a.consents[ref.Reference] = true
			}
		}
	}
	return true, nil
}

// documentScaffold marks the entries of a document that make the document
// rather than carry data: the Composition (first entry), the Devices the
// Composition names as author, and the Provenance entries whose every
// target is the Composition.
func documentScaffold(entries []*fjson.Value) map[int]bool {
	out := map[int]bool{}
	if len(entries) == 0 || entries[0].Get("resource").Get("resourceType").String() != "Composition" {
		return out
	}
	out[0] = true
	compURL := entries[0].Get("fullUrl").String()
	var authors []string
	for _, au := range items(entries[0].Get("resource").Get("author")) {
		authors = append(authors, au.Get("reference").String())
	}
	for i, e := range entries[1:] {
		url := e.Get("fullUrl").String()
		res := e.Get("resource")
		switch res.Get("resourceType").String() {
		case "Device":
			out[i+1] = url != "" && slices.Contains(authors, url)
		case "Provenance":
			targets := items(res.Get("target"))
			own := compURL != "" && len(targets) > 0
			for _, tg := range targets {
				own = own && tg.Get("reference").String() == compURL
			}
			out[i+1] = own
		}
	}
	return out
}

// errConditionalTask refuses conditional changes of Tasks: the referral
// workflow checks a change against the Task's current version, so the Task
// must be named by its id.
var errConditionalTask = fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "a second-opinion Task is changed by its id (PUT Task/[id]), not by a conditional update, so that its workflow can be checked")
