package server

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/summary"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// AuditEvents are not resources of the store: they are the audit trail's
// log (package audit), served read-only. Every request on AuditEvent is
// answered here, before the resource handlers: read, vread, history and
// search from the log, under the release rule of the trail (a patient
// sees the events about itself, a provider those it was an agent of, a
// system client needs an explicit AuditEvent scope); every way of writing
// answers 405 for everybody.

// auditEventRoutes answers every request whose type is AuditEvent (and
// GET Patient/[id]/AuditEvent).
func (s *Server) auditEventRoutes() gin.HandlerFunc {
	return func(c *gin.Context) {
		typ, id, op := c.Param("type"), c.Param("id"), c.Param("op")
		m := c.Request.Method
		switch {
		case typ == "Patient" && op == "AuditEvent" && m == http.MethodGet:
			if s.cfg.Auditor == nil {
				s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "this gateway keeps no audit trail"))
				break
			}
			if !fhir.ValidID(id) {
				s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", nil, "the id in the URL must match [A-Za-z0-9\\-\\.]{1,64}"))
				break
			}
			params := c.Request.URL.Query()
			s.auditSearch(c, params, "Patient/"+id)
		case typ != "AuditEvent":
			c.Next()
			return
		case strings.HasPrefix(id, "$") || strings.HasPrefix(op, "$"):
			c.Next() // operations ($validate): they store nothing
			return
		case s.cfg.Auditor == nil && (m == http.MethodGet || m == http.MethodHead || m == http.MethodPost && id == "_search"):
			s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "this gateway keeps no audit trail"))
		case m != http.MethodGet && m != http.MethodHead && !(m == http.MethodPost && id == "_search"):
			c.Next() // writes: refused before authentication (auditWrite), for everybody
			return
		case c.FullPath() == "/:type/_history":
			s.auditHistory(c, "")
		case id == "" || id == "_search":
			params := c.Request.URL.Query()
			if id == "_search" {
				form, err := s.searchForm(c)
				if err != nil {
					s.fail(c, err)
					break
				}
				for k, vs := range form {
					params[k] = append(params[k], vs...)
				}
			}
			s.auditSearch(c, params, "")
		case c.FullPath() == "/:type/:id":
			s.auditRead(c, id, "")
		case c.FullPath() == "/:type/:id/_history/:vid":
			s.auditRead(c, id, c.Param("vid"))
		case c.FullPath() == "/:type/:id/_history":
			s.auditHistory(c, id)
		default:
			c.Next()
			return
		}
		c.Abort()
	}
}

// searchForm reads the form body of POST _search.
func (s *Server) searchForm(c *gin.Context) (url.Values, error) {
	ct := c.GetHeader("Content-Type")
	if ct == "" {
		return url.Values{}, nil
	}
	if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(mt) != "application/x-www-form-urlencoded" {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "POST _search takes application/x-www-form-urlencoded parameters")
	}
	body, err := s.readBodyAllowEmpty(c)
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "the form body is malformed")
	}
	return form, nil
}

// auditAuthorize checks the scope for an interaction on the trail and
// returns the principal's restriction.
func (s *Server) auditAuthorize(c *gin.Context, interaction string) ([]storage.AuditRefFilter, error) {
	if _, err := s.authorize(c, interaction, "", "AuditEvent"); err != nil {
		return nil, err
	}
	filter, ok := s.guard(c).AuditFilter()
	if !ok {
		accessOf(c).refused = "no access to the audit trail"
		return nil, fhir.Errorf(http.StatusForbidden, "forbidden", nil,
			"this token may not read the audit trail (a system client needs a scope naming AuditEvent, such as system/AuditEvent.rs; a wildcard does not give it)")
	}
	return filter, nil
}

// auditRead answers read and vread of an event.
func (s *Server) auditRead(c *gin.Context, id, vid string) {
	interaction := "read"
	if vid != "" {
		interaction = "vread"
	}
	restrict, err := s.auditAuthorize(c, interaction)
	if err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.resource = "AuditEvent/" + id
	if vid != "" {
		a.resource += "/_history/" + vid
	}
	rec, err := s.auditFind(c, id, vid, restrict)
	if err != nil {
		s.fail(c, err)
		return
	}
	r, err := s.auditRelease(c, rec)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeVersion(c, r)
}

// auditFind reads one event the principal may see: 404 for an unknown
// one, 403 for one it may not.
func (s *Server) auditFind(c *gin.Context, id, vid string, restrict []storage.AuditRefFilter) (*storage.AuditRecord, error) {
	seq, ok := audit.ParseID(id)
	if !ok || vid != "" && vid != "1" {
		what := "AuditEvent/" + id
		if vid != "" {
			what += "/_history/" + vid
		}
		return nil, fhir.Errorf(http.StatusNotFound, "not-found", nil, "%s is not known", what)
	}
	lg := s.cfg.Auditor.Log()
	page, err := lg.SearchAudit(c.Request.Context(), storage.AuditQuery{Seqs: []int64{seq}, Refs: restrict, Count: 1})
	if err != nil {
		return nil, err
	}
	if len(page.Records) == 1 {
		return page.Records[0], nil
	}
	if restrict != nil {
		if all, err := lg.SearchAudit(c.Request.Context(), storage.AuditQuery{Seqs: []int64{seq}, Count: 1}); err == nil && len(all.Records) == 1 {
			accessOf(c).refused = "an audit event the token may not see"
			return nil, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "this token may not see AuditEvent/%s", id)
		}
	}
	return nil, fhir.Errorf(http.StatusNotFound, "not-found", nil, "AuditEvent/%s is not known", id)
}

// auditRelease renders an event. A read of the trail is itself recorded
// (requestEvents), as one event naming the reader and the query but no
// patient: it is metadata about accesses, not an access to anyone's
// record, and a patient paging through its own trail would otherwise add
// to it with every page.
func (s *Server) auditRelease(_ *gin.Context, rec *storage.AuditRecord) (*fhir.Resource, error) {
	return audit.Render(rec)
}

// auditHistory answers the history of one event (its only version) or of
// the trail (every event, newest first).
func (s *Server) auditHistory(c *gin.Context, id string) {
	interaction := "history-type"
	if id != "" {
		interaction = "history-instance"
	}
	restrict, err := s.auditAuthorize(c, interaction)
	if err != nil {
		s.fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	aq := storage.AuditQuery{Refs: restrict, Desc: true, Count: defaultHistoryCount, Total: true}
	if id != "" {
		accessOf(c).resource = "AuditEvent/" + id
		rec, err := s.auditFind(c, id, "", restrict)
		if err != nil {
			s.fail(c, err)
			return
		}
		aq.Seqs = []int64{rec.Seq}
	}
	if v := q.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"_count"}, "_count must be a non-negative integer"))
			return
		}
		aq.Count = min(max(n, 1), maxHistoryCount)
	}
	if v := q.Get("_since"); v != "" {
		if aq.From, err = parseInstant("_since", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	if v := q.Get("_at"); v != "" {
		at, err := parseInstant("_at", v)
		if err != nil {
			s.fail(c, err)
			return
		}
		aq.To = at.Add(time.Microsecond) // events are never changed: every one recorded by then
	}
	if v := q.Get("_cursor"); v != "" {
		if err = parseAuditCursor(v, &aq); err != nil {
			s.fail(c, err)
			return
		}
	}
	page, aq, err := s.auditPage(c, aq)
	if err != nil {
		s.fail(c, err)
		return
	}
	base := s.baseURL(c.Request)
	self := base + c.Request.URL.Path
	b := newBundle("history")
	b.total(page.Total)
	b.link("self", self+encodeQuery(q))
	if page.Next != 0 {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("_cursor", auditCursor(page.Next, aq))
		b.link("next", self+encodeQuery(nq))
	}
	for _, rec := range page.Records {
		r, err := s.auditRelease(c, rec)
		if err != nil {
			s.fail(c, err)
			return
		}
		b.entry(bundleEntry{FullURL: base + "/AuditEvent/" + r.ID, Resource: r.Raw,
			Request:  &bundleRequest{Method: http.MethodPost, URL: "AuditEvent"},
			Response: &bundleResponse{Status: "201 Created", Etag: etag("1"), LastModified: fhir.FormatInstant(rec.Recorded)}})
	}
	s.writeJSON(c, http.StatusOK, b.bytes())
}

// An audit listing's cursor is "after.until": the last event of the page
// read, and the trail's head when the first page was read (the pages end
// there: reading the trail adds events to it).
func parseAuditCursor(v string, q *storage.AuditQuery) error {
	a, u, ok := strings.Cut(v, ".")
	after, err1 := strconv.ParseInt(a, 10, 64)
	until, err2 := strconv.ParseInt(u, 10, 64)
	if !ok || err1 != nil || err2 != nil || after < 1 || until < 1 {
		return fhir.Errorf(http.StatusBadRequest, "invalid", []string{"_cursor"}, "invalid paging cursor")
	}
	q.After, q.Until = after, until
	return nil
}

func auditCursor(next int64, q storage.AuditQuery) string {
	return strconv.FormatInt(next, 10) + "." + strconv.FormatInt(q.Until, 10)
}

// auditPage runs a listing's query, bounding a first page by the head.
func (s *Server) auditPage(c *gin.Context, q storage.AuditQuery) (*storage.AuditPage, storage.AuditQuery, error) {
	lg := s.cfg.Auditor.Log()
	if q.Until == 0 {
		// events stored pending (another replica held the head) are sealed
		// first: a listing shows what was recorded before it was asked for
		if err := s.cfg.Auditor.Settle(c.Request.Context()); err != nil {
			return nil, q, err
		}
		head, err := lg.AuditHead(c.Request.Context())
		if err != nil {
			return nil, q, err
		}
		q.Until = max(head.Seq, 1)
	}
	page, err := lg.SearchAudit(c.Request.Context(), q)
	return page, q, err
}

// auditSearch answers a search of the trail; patient, when set, is the
// compartment searched (GET Patient/[id]/AuditEvent).
func (s *Server) auditSearch(c *gin.Context, params url.Values, patient string) {
	restrict, err := s.auditAuthorize(c, "search-type")
	if err != nil {
		s.fail(c, err)
		return
	}
	q, err := s.cfg.Search.ParseQuery("AuditEvent", params, strictHandling(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.query = q.Encode()
	aq, issues, err := auditQuery(q, strictHandling(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	if patient != "" {
		aq.Refs = append(aq.Refs, storage.AuditRefFilter{Refs: []string{patient}, Roles: storage.AuditAgent | storage.AuditEntity})
	}
	aq.Refs = append(aq.Refs, restrict...)
	if v := q.Reserved.Get(cursorParam); v != "" {
		if err = parseAuditCursor(v, &aq); err != nil {
			s.fail(c, err)
			return
		}
	}
	if q.Summary == search.SummaryCount {
		aq.Total, aq.Count = true, 1
	}
	page, aq, err := s.auditPage(c, aq)
	if err != nil {
		s.fail(c, err)
		return
	}
	base := s.baseURL(c.Request)
	path := base + strings.TrimSuffix(c.Request.URL.Path, "/_search")
	b := newBundle("searchset")
	if page.Total >= 0 {
		b.total(page.Total)
	}
	b.link("self", path+"?"+q.Encode())
	if q.Summary == search.SummaryCount {
		s.writeJSON(c, http.StatusOK, b.bytes())
		return
	}
	if page.Next != 0 {
		b.link("next", path+"?"+q.Encode()+"&"+cursorParam+"="+auditCursor(page.Next, aq))
	}
	if issues = append(q.Issues, issues...); len(issues) > 0 {
		b.entry(bundleEntry{Resource: fhir.NewOutcome(issues...).JSON(), Search: &bundleSearch{Mode: "outcome"}})
	}
	mode, elements := summaryMode(q)
	for _, rec := range page.Records {
		r, err := s.auditRelease(c, rec)
		if err != nil {
			s.fail(c, err)
			return
		}
		b.entry(bundleEntry{FullURL: base + "/AuditEvent/" + r.ID, Resource: summary.Apply(r, mode, elements).Raw, Search: &bundleSearch{Mode: "match"}})
	}
	s.writeJSON(c, http.StatusOK, b.bytes())
}

// auditParams are the search parameters the trail answers.
var auditParams = map[string]bool{"_id": true, "_lastUpdated": true, "date": true, "patient": true, "agent": true,
	"entity": true, "action": true, "outcome": true, "type": true, "subtype": true}

// auditQuery turns a parsed AuditEvent search into a query of the log.
// Parameters the log does not index are refused in strict handling and
// ignored with a warning otherwise.
func auditQuery(q *search.Query, strict bool) (storage.AuditQuery, []fhir.Issue, error) {
	aq := storage.AuditQuery{Count: q.Count, Total: q.Total != search.TotalNone}
	var issues []fhir.Issue
	unsupported := func(param, why string) error {
		if strict {
			return fhir.Errorf(http.StatusBadRequest, "not-supported", []string{param}, "%s: %s", param, why)
		}
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: "not-supported", Expression: []string{param},
			Details: &fhir.IssueDetails{Text: param + " was ignored: " + why}})
		return nil
	}
	if len(q.Sort) > 0 {
		// the trail's order is its recording order: date, _lastUpdated
		// and _id all sort by it
		switch k := q.Sort[0]; {
		case len(q.Sort) == 1 && (k.Param == "date" || k.Param == "_lastUpdated" || k.Param == "_id"):
			aq.Desc = k.Desc
		default:
			if err := unsupported("_sort", "the audit trail sorts by date (its order) only"); err != nil {
				return aq, nil, err
			}
		}
	}
	if len(q.Includes) > 0 || len(q.RevIncludes) > 0 {
		if err := unsupported("_include", "the audit trail does not include other resources"); err != nil {
			return aq, nil, err
		}
	}
	for _, cl := range q.Clauses {
		if !auditParams[cl.Param] || cl.Chain != nil || cl.Has != nil {
			if err := unsupported(cl.Param, "the audit trail is searched by _id, date, patient, agent, entity, action, outcome, type and subtype"); err != nil {
				return aq, nil, err
			}
			continue
		}
		if cl.Modifier != search.ModNone && !(cl.Param == "agent" && cl.Modifier == search.ModIdentifier) {
			if err := unsupported(cl.Param+":"+cl.Modifier.String(), "this modifier is not supported on the audit trail"); err != nil {
				return aq, nil, err
			}
			continue
		}
		switch cl.Param {
		case "_id":
			var seqs []int64
			for _, v := range cl.Values {
				if seq, ok := audit.ParseID(v.Raw); ok {
					seqs = append(seqs, seq)
				}
			}
			if aq.Seqs != nil {
				// a repeated _id: both hold
				seqs = slices.DeleteFunc(seqs, func(n int64) bool { return !slices.Contains(aq.Seqs, n) })
			}
			if len(seqs) == 0 {
				seqs = []int64{-1} // matches nothing
			}
			aq.Seqs = seqs
		case "date", "_lastUpdated":
			if len(cl.Values) != 1 {
				if err := unsupported(cl.Param, "one date per parameter (repeat the parameter to give a range)"); err != nil {
					return aq, nil, err
				}
				continue
			}
			v := cl.Values[0]
			from, to := v.Start, v.End.Add(time.Microsecond)
			switch v.Prefix {
			case search.PrefixEq:
				aq.From, aq.To = later(aq.From, from), earlier(aq.To, to)
			case search.PrefixGe:
				aq.From = later(aq.From, from)
			case search.PrefixGt, search.PrefixSa:
				aq.From = later(aq.From, to)
			case search.PrefixLt, search.PrefixEb:
				aq.To = earlier(aq.To, from)
			case search.PrefixLe:
				aq.To = earlier(aq.To, to)
			default:
				if err := unsupported(cl.Param, "the prefixes eq, ge, gt, le, lt, sa and eb are supported"); err != nil {
					return aq, nil, err
				}
			}
		case "patient", "agent", "entity":
			roles := map[string]int{"patient": storage.AuditAgent | storage.AuditRefusedAgent | storage.AuditEntity,
				"agent": storage.AuditAgent | storage.AuditRefusedAgent, "entity": storage.AuditEntity}[cl.Param]
			var refs []string
			for _, v := range cl.Values {
				switch {
				case cl.Modifier == search.ModIdentifier:
					refs = append(refs, audit.ClientRef(v.Code))
					roles = storage.AuditClient | storage.AuditRefusedAgent
				case cl.Param == "patient" && v.RefID != "":
					refs = append(refs, "Patient/"+v.RefID)
				case v.RefType != "" && v.RefID != "":
					refs = append(refs, v.RefType+"/"+v.RefID)
				case v.RefID != "":
					return aq, nil, fhir.Errorf(http.StatusBadRequest, "value", []string{cl.Param}, "%s needs a typed reference (Type/id) on the audit trail", cl.Param)
				}
			}
			aq.Refs = append(aq.Refs, storage.AuditRefFilter{Refs: refs, Roles: roles})
		case "action", "outcome", "type", "subtype":
			var codes []string
			for _, v := range cl.Values {
				codes = append(codes, v.Code)
			}
			switch cl.Param {
			case "action":
				aq.Action = append(aq.Action, codes...)
			case "outcome":
				aq.Outcome = append(aq.Outcome, codes...)
			case "type":
				aq.Type = append(aq.Type, codes...)
			default:
				aq.Subtype = append(aq.Subtype, codes...)
			}
		}
	}
	return aq, issues, nil
}

func later(a, b time.Time) time.Time {
	if a.IsZero() || b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// auditEventEntry answers the entries of a transaction or batch on
// AuditEvent before any other check: a write is 405 for everybody, as
// outside a Bundle (whatever the token's scopes), and a read is sent to
// the trail's own endpoints (GET AuditEvent, AuditEvent/[id]).
func auditEventEntry(c *gin.Context, be *bundleEntryReq) error {
	if be.typ != "AuditEvent" {
		return nil
	}
	where := []string{"Bundle.entry[" + strconv.Itoa(be.index) + "].request"}
	if be.method == http.MethodGet || be.method == http.MethodHead {
		return fhir.Errorf(http.StatusBadRequest, "not-supported", where, "the audit trail is read with GET /AuditEvent and GET /AuditEvent/[id], not inside a Bundle")
	}
	accessOf(c).refused = "the audit trail is read-only"
	return fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", where, "the audit trail is read-only: %s is not allowed on AuditEvent, for anybody", be.method)
}
