package server

import (
	"cmp"
	"net"
	"net/http"
	"slices"
	"sync"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

// The audit trail (package audit) records every access of patient data,
// every refusal and every write, durably before the answer leaves:
//   - a write's events commit in the write's own transaction: the
//     request's activity (below) is in the context the store is called
//     with, and the trail's commit hook finds it there;
//   - the other events of a request (reads, refusals, failed writes) are
//     recorded when the response is about to be sent: the first byte of
//     the response waits until they are committed (group commit: one
//     transaction carries the events of every request waiting meanwhile).
//     If they cannot be recorded, the client gets a 503 instead.

// requestActivity is a request as the trail sees it (audit.Activity).
type requestActivity struct {
	s *Server
	c *gin.Context
	a *access

	mu      sync.Mutex
	covered map[string]bool // patients whose events a write transaction committed
	noted   string          // the request's note when they committed
}

// Describe implements audit.Activity.
func (r *requestActivity) Describe() audit.Event { return r.s.auditEvent(r.c, r.a) }

// Touched implements audit.Activity.
func (r *requestActivity) Touched() []string {
	out := make([]string, 0, len(r.a.patients))
	for p := range r.a.patients {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Committed implements audit.Activity.
func (r *requestActivity) Committed(patients []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.covered == nil {
		r.covered = map[string]bool{}
	}
	for _, p := range patients {
		r.covered[p] = true
	}
	r.noted = r.a.note
}

// auditMiddleware puts the request's activity in its context and holds
// its response until its events are durable.
func (s *Server) auditMiddleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.cfg.Auditor == nil {
			c.Next()
			return
		}
		act := &requestActivity{s: s, c: c, a: accessOf(c)}
		c.Request = c.Request.WithContext(audit.WithActivity(c.Request.Context(), act))
		end := s.cfg.Auditor.Begin() // the trail's group commit waits for this request
		defer end()
		w := &auditWriter{ResponseWriter: c.Writer, settle: func(status int) error {
			evs := s.requestEvents(c, act, status)
			end()
			return s.cfg.Auditor.Record(c.Request.Context(), evs...)
		}}
		c.Writer = w
		c.Next()
		w.before() // a response without a body (HEAD, 204 written by gin)
	}
}

// requestEvents are the events a request still owes when its response
// is sent: one for every patient it touched that no committed write
// already recorded (reads, refusals, failed writes), or one for a
// refusal or failure that touched no patient.
func (s *Server) requestEvents(c *gin.Context, act *requestActivity, status int) []audit.Event {
	a := act.a
	act.mu.Lock()
	var pats []string
	for p := range a.patients {
		if !act.covered[p] {
			pats = append(pats, p)
		}
	}
	noted := act.noted
	act.mu.Unlock()
	if len(pats) == 0 && a.refused == "" && status < 400 {
		if a.resourceType == "AuditEvent" {
			return []audit.Event{s.trailRead(c, a)} // a read of the trail
		}
		if a.note == "" || a.note == noted {
			return nil
		}
		// a note learnt after the writes committed (an accepted
		// demographics mismatch) gets events of its own
		for p := range a.patients {
			pats = append(pats, p)
		}
	}
	slices.Sort(pats)
	ev := s.auditEvent(c, a)
	ev.Recorded = s.now()
	ev.Outcome = audit.OutcomeForStatus(status)
	ev.OutcomeDesc = cmp.Or(a.refused, a.note)
	if a.refused != "" && ev.Outcome == audit.Success {
		ev.Outcome = audit.MinorFailure // a refusal inside a request that succeeded (a batch entry)
	}
	if len(pats) == 0 {
		return []audit.Event{ev}
	}
	out := make([]audit.Event, len(pats))
	for i, p := range pats {
		out[i] = ev
		out[i].Patient = p
	}
	return out
}

// trailRead is the event of a read of the audit trail.
func (s *Server) trailRead(c *gin.Context, a *access) audit.Event {
	ev := s.auditEvent(c, a)
	ev.Recorded, ev.Outcome = s.now(), audit.Success
	return ev
}

// auditEvent describes the request: who asked, through which client, for
// what purpose, what it did and under which Consents.
func (s *Server) auditEvent(c *gin.Context, a *access) audit.Event {
	ev := audit.Event{
		Interaction:  a.interaction,
		Operation:    a.operation,
		OutcomeDesc:  a.note,
		Server:       s.baseURL(c.Request),
		Resource:     a.resource,
		ResourceType: a.resourceType,
		Query:        a.query,
	}
	if !audit.KnownInteraction(ev.Interaction) {
		ev.Interaction = interactionOfRequest(c)
	}
	if host, _, err := net.SplitHostPort(c.Request.RemoteAddr); err == nil {
		ev.ClientAddress = host
	}
	if p := principal(c); p != nil {
		ev.Who, ev.ClientID, ev.Issuer, ev.TokenID = p.Who(), p.ClientID, p.Issuer, p.TokenID
		for _, pu := range p.PurposeOfUse {
			ev.Purpose = append(ev.Purpose, audit.Coding{System: pu.System, Code: pu.Code})
		}
		if p.Kind == auth.KindProvider && p.Organization != "" && ev.Who != p.Organization {
			ev.OnBehalfOf = p.Organization // a practitioner acting for its organization
		}
	}
	for ref := range a.consents {
		ev.Consents = append(ev.Consents, ref)
	}
	slices.Sort(ev.Consents)
	return ev
}

// interactionOfRequest names what a request that was refused before any
// handler named it (an authentication failure) tried to do.
func interactionOfRequest(c *gin.Context) string {
	switch c.Request.Method {
	case http.MethodPost:
		if c.Param("type") == "" {
			return "transaction"
		}
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	if c.Param("id") == "" && c.Param("type") != "" {
		return "search-type"
	}
	return "read"
}

// auditWriter holds a response's first byte until the request's events
// are durable; when they cannot be recorded, the response becomes a 503
// and what the handler writes is dropped.
type auditWriter struct {
	gin.ResponseWriter
	settle func(status int) error
	state  int // 0 pending, 1 recorded, 2 failed
}

func (w *auditWriter) before() bool {
	if w.state == 0 {
		if err := w.settle(w.ResponseWriter.Status()); err != nil {
			w.state = 2
			w.fail()
		} else {
			w.state = 1
		}
	}
	return w.state == 1
}

// fail answers 503: an access that cannot be recorded is not served.
func (w *auditWriter) fail() {
	h := w.ResponseWriter.Header()
	for _, k := range []string{"Content-Length", "Content-Encoding", "ETag", "Last-Modified", "Location", "Content-Range", "Content-Disposition", "Vary"} {
		h.Del(k)
	}
	body := fhir.NewOutcome(fhir.Issue{Severity: fhir.SeverityError, Code: "transient",
		Details: &fhir.IssueDetails{Text: "the audit trail cannot record this request now; nothing was served"}}).JSON()
	h.Set("Content-Type", ContentTypeFHIRJSON)
	h.Set("Retry-After", "1")
	w.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.ResponseWriter.Write(body)
}

func (w *auditWriter) WriteHeaderNow() {
	if w.before() {
		w.ResponseWriter.WriteHeaderNow()
	}
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if !w.before() {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *auditWriter) WriteString(s string) (int, error) {
	if !w.before() {
		return len(s), nil
	}
	return w.ResponseWriter.WriteString(s)
}

func (w *auditWriter) Flush() {
	if w.before() {
		w.ResponseWriter.Flush()
	}
}
