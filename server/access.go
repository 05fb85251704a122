package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
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
	ctxGuard     = "fhirgate.guard"
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

// Patient records a patient whose data the request touched
// (access.Recorder).
func (a *access) Patient(ref string) { a.patients[ref] = true }

// Consent records a Consent that released data (access.Recorder).
func (a *access) Consent(ref string) { a.consents[ref] = true }

// Note keeps what else the audit trail must say (release.Noter).
func (a *access) Note(text string) {
	if a.note != "" && a.note != text {
		text = a.note + "; " + text
	}
	a.note = text
}

// guard returns the request's release rule (package release): every read
// of stored data goes through it, and every write is checked by it.
func (s *Server) guard(c *gin.Context) *release.Guard {
	if v, ok := c.Get(ctxGuard); ok {
		return v.(*release.Guard)
	}
	g := s.decider.Guard(principal(c), accessOf(c))
	c.Set(ctxGuard, g)
	return g
}

// principal returns the request's principal; nil when authentication is off.
func principal(c *gin.Context) *auth.Principal {
	if v, ok := c.Get(ctxPrincipal); ok {
		return v.(*auth.Principal)
	}
	return nil
}

// auditWrite reports whether the request writes AuditEvents through the
// REST interface (create, update, patch, delete, conditional forms): the
// trail is the gateway's alone, for every caller.
func auditWrite(c *gin.Context) bool {
	if c.Param("type") != "AuditEvent" {
		return false
	}
	switch c.Request.Method {
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	case http.MethodPost:
		return c.FullPath() == "/:type"
	}
	return false
}

// authenticate resolves the bearer token of every non-public route.
func (s *Server) authenticate() gin.HandlerFunc {
	return func(c *gin.Context) {
		if auditWrite(c) {
			a := accessOf(c)
			a.interaction, a.resourceType, a.refused = strings.ToLower(c.Request.Method), "AuditEvent", "the audit trail is read-only"
			s.fail(c, s.guard(c).CheckWrite(c.Request.Context(), release.Write{Current: &fhir.Resource{Type: "AuditEvent"}}))
			c.Abort()
			return
		}
		if s.cfg.Auth == nil || s.publicPaths[c.FullPath()] || c.FullPath() == "" && s.publicPaths[c.Request.URL.Path] {
			s.bindGuard(c)
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
		s.bindGuard(c)
		c.Next()
	}
}

// bindGuard puts the request's guard in its context, where the store's
// write checks (release.Checked) find it.
func (s *Server) bindGuard(c *gin.Context) {
	c.Request = c.Request.WithContext(release.WithGuard(c.Request.Context(), s.guard(c)))
}

// authorize checks the principal's scopes for an interaction on a type
// ("*" for whole-system interactions). It returns the scope decision (with
// any query filters) or a 403, and hands the decision to the request's
// guard for the resources of typ it releases.
func (s *Server) authorize(c *gin.Context, interaction, operation, typ string) (auth.Decision, error) {
	d, err := s.authorizeScope(c, interaction, operation, typ)
	if err == nil && typ != "" && typ != "*" && principal(c) != nil {
		s.guard(c).Scope(typ, d)
	}
	return d, err
}

func (s *Server) authorizeScope(c *gin.Context, interaction, operation, typ string) (auth.Decision, error) {
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

// checkWrite checks that the principal may write r (a creation, or new
// content whose current version the caller already checked), and a
// Subscription's filters.
func (s *Server) checkWrite(c *gin.Context, r *fhir.Resource) error {
	if err := s.guard(c).CheckWrite(c.Request.Context(), release.Write{New: r}); err != nil {
		accessOf(c).refused = "write refused by the release rule"
		return err
	}
	return s.checkSubscription(c, r)
}

// checkSubscription checks a patient's or provider's Subscription filters
// (nil for anything else).
func (s *Server) checkSubscription(c *gin.Context, r *fhir.Resource) error {
	if p := principal(c); r != nil && r.Type == "Subscription" && p != nil && p.Kind != auth.KindSystem {
		return s.checkSubscriptionFilters(c, p, r)
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

// patientSearchScope refuses a patient's search of another patient's
// compartment outright (the release rule would leave it empty).
func (s *Server) patientSearchScope(c *gin.Context, req *storage.SearchRequest) error {
	p := principal(c)
	if p == nil || p.Kind != auth.KindPatient {
		return nil
	}
	if req.PatientCompartment != "" && req.PatientCompartment != patientID(p) {
		accessOf(c).refused = "another patient's record"
		return fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only search its own record")
	}
	return nil
}

// authorizeChange checks an update, patch or delete of typ/id: the scope,
// and that the release rule lets the principal replace the current version
// with res (nil for a delete, or for a patch whose result is checked
// later): a patient may not overwrite another's resource, a provider not
// one it may not see, nobody an AuditEvent.
func (s *Server) authorizeChange(c *gin.Context, interaction, typ, id string, res *fhir.Resource) error {
	if _, err := s.authorize(c, interaction, "", typ); err != nil {
		return err
	}
	accessOf(c).resource = typ + "/" + id
	return s.checkChange(c, s.cfg.Store, typ, id, res)
}

// checkChange is authorizeChange's release check, reading the current
// version through r (the store, or a transaction).
func (s *Server) checkChange(c *gin.Context, r storage.Reader, typ, id string, res *fhir.Resource) error {
	ctx := c.Request.Context()
	cur, err := r.Read(ctx, typ, id)
	if err != nil {
		cur = nil // nothing to protect: the store answers 404/410 or creates
	}
	if res == nil && cur == nil && typ == "AuditEvent" {
		cur = &fhir.Resource{Type: typ, ID: id}
	}
	if err := s.guard(c).CheckWrite(ctx, release.Write{New: res, Current: cur}); err != nil {
		accessOf(c).refused = "write refused by the release rule"
		return err
	}
	return s.checkSubscription(c, res)
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
		_ = scope
		g := s.guard(c)
		be.release = func(r *fhir.Resource) error {
			if err := g.Check(c.Request.Context(), r); err != nil {
				accessOf(c).refused = "no consent or outside the token's patient"
				return err
			}
			return nil
		}
		return nil
	case http.MethodPost:
		if be.typ == "AuditEvent" {
			return wrap(s.guard(c).CheckWrite(c.Request.Context(), release.Write{New: be.res}))
		}
		if be.ifNoneExist != "" {
			if err := s.systemOnly(c, "create", be.typ); err != nil {
				return wrap(err)
			}
		} else if _, err := s.authorize(c, "create", "", be.typ); err != nil {
			return wrap(err)
		}
		// the release rule decides the write inside the transaction, once
		// its references are final (release.Checked)
		return wrap(s.checkSubscription(c, be.res))
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		interaction := map[string]string{http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}[be.method]
		if be.typ == "Task" && be.id == "" && (be.method == http.MethodPatch || referral.IsTask(be.res)) {
			// the referral workflow checks a change against the Task's
			// current version (referral.Service.Store): it is named by id
			return wrap(errConditionalTask)
		}
		if be.id == "" {
			if err := s.systemOnly(c, interaction, be.typ); err != nil {
				return wrap(err)
			}
		} else if _, err := s.authorize(c, interaction, "", be.typ); err != nil {
			return wrap(err)
		}
		if be.typ == "AuditEvent" {
			return wrap(s.guard(c).CheckWrite(c.Request.Context(), release.Write{Current: &fhir.Resource{Type: be.typ, ID: be.id}}))
		}
		return wrap(s.checkSubscription(c, be.res))
	}
	return nil
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

// errConditionalTask refuses conditional changes of Tasks: the referral
// workflow checks a change against the Task's current version, so the Task
// must be named by its id.
var errConditionalTask = fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "a second-opinion Task is changed by its id (PUT Task/[id]), not by a conditional update, so that its workflow can be checked")
