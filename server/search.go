package server

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/summary"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// cursorParam carries the store's paging cursor in next links.
const cursorParam = "_cursor"

// searchOrOperation answers GET [type] (search), or GET [base]/$op.
func (s *Server) searchOrOperation(c *gin.Context) {
	if strings.HasPrefix(c.Param("type"), "$") {
		s.systemOperation(c)
		return
	}
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.runSearch(c, typ, c.Request.URL.Query(), "")
}

// searchPost answers POST [type]/_search (form-encoded parameters, merged
// with those of the URL).
func (s *Server) searchPost(c *gin.Context) {
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	params := c.Request.URL.Query()
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/x-www-form-urlencoded" {
			s.fail(c, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "POST _search takes application/x-www-form-urlencoded parameters"))
			return
		}
		body, err := s.readBodyAllowEmpty(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "the form body is malformed"))
			return
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
	}
	s.runSearch(c, typ, params, "")
}

// compartmentSearch answers GET Patient/[id]/[type].
func (s *Server) compartmentSearch(c *gin.Context) {
	comp, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if comp != "Patient" {
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "only the Patient compartment is supported"))
		return
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", nil, "the id in the URL must match [A-Za-z0-9\\-\\.]{1,64}"))
		return
	}
	typ := c.Param("op")
	if !fhir.IsResourceType(typ) {
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "%q is not an R4 resource type", typ))
		return
	}
	if !s.cfg.Search.InPatientCompartment(typ) {
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "%s is not in the Patient compartment", typ))
		return
	}
	if _, err := s.cfg.Store.Read(c.Request.Context(), "Patient", id); err != nil {
		s.failRead(c, nil, err, "Patient/"+id)
		return
	}
	s.runSearch(c, typ, c.Request.URL.Query(), id)
}

// strictHandling reports Prefer: handling=strict.
func strictHandling(c *gin.Context) bool {
	for _, v := range c.Request.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.EqualFold(strings.TrimSpace(k), "handling") && strings.EqualFold(strings.Trim(strings.TrimSpace(val), `"`), "strict") {
				return true
			}
		}
	}
	return false
}

func (s *Server) runSearch(c *gin.Context, typ string, params url.Values, compartment string) {
	if _, err := s.authorize(c, "search-type", "", typ); err != nil {
		s.fail(c, err)
		return
	}
	q, err := s.cfg.Search.ParseQuery(typ, params, strictHandling(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	accessOf(c).query = q.Encode()
	cursor := q.Reserved.Get(cursorParam)
	req := storage.SearchRequest{Query: q, Cursor: cursor, PatientCompartment: compartment}
	if err := s.patientSearchScope(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	// the guard hands the store the caller's release rule: pages, links,
	// includes, _has and chains, and counts see only what it releases
	g := s.guard(c)
	// (the guard's Search records the patients of what it returns)
	res, err := g.Search(c.Request.Context(), req)
	if err != nil {
		s.fail(c, searchError(err))
		return
	}
	base := s.baseURL(c.Request)
	path := base + c.Request.URL.Path
	if strings.HasSuffix(path, "/_search") {
		path = strings.TrimSuffix(path, "/_search")
	}
	self := path + "?" + q.Encode()
	if cursor != "" {
		self += "&" + cursorParam + "=" + url.QueryEscape(cursor)
	}
	b := newBundle("searchset")
	if res.Total >= 0 {
		b.total(res.Total)
	}
	b.link("self", self)
	if res.Next != "" {
		b.link("next", path+"?"+q.Encode()+"&"+cursorParam+"="+url.QueryEscape(res.Next))
	}
	if len(q.Issues) > 0 {
		b.entry(bundleEntry{Resource: fhir.NewOutcome(q.Issues...).JSON(), Search: &bundleSearch{Mode: "outcome"}})
	}
	mode, elements := summaryMode(q)
	for _, r := range res.Matches {
		b.entry(bundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: summary.Apply(r, mode, elements).Raw, Search: &bundleSearch{Mode: "match"}})
	}
	for _, r := range res.Included {
		b.entry(bundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: summary.Apply(r, mode, elements).Raw, Search: &bundleSearch{Mode: "include"}})
	}
	s.writeJSON(c, http.StatusOK, b.bytes())
}

func summaryMode(q *search.Query) (summary.Mode, []string) {
	switch q.Summary {
	case search.SummaryTrue:
		return summary.True, nil
	case search.SummaryText:
		return summary.Text, nil
	case search.SummaryData:
		return summary.Data, nil
	}
	return summary.Full, q.Elements
}

// searchError turns a store's refusal of a search into a 400.
func searchError(err error) error {
	if errors.Is(err, storage.ErrInvalidSearch) {
		return fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "%s", err.Error())
	}
	return err
}

// searchAll runs a search for conditional operations; limit bounds how many
// matches are needed (2 is enough to tell one from many).
func (s *Server) searchAll(ctx context.Context, r storage.Reader, typ, query string, limit int) ([]*fhir.Resource, error) {
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "the conditional search is malformed")
	}
	params.Set("_count", strconv.Itoa(limit))
	params.Set("_total", "none")
	q, err := s.cfg.Search.ParseQuery(typ, params, true)
	if err != nil {
		return nil, err
	}
	if len(q.Clauses) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", nil, "a conditional request needs search parameters that the server understands")
	}
	res, err := r.Search(ctx, storage.SearchRequest{Query: q})
	if err != nil {
		return nil, searchError(err)
	}
	return res.Matches, nil
}

// searchBundleForEntry answers a search inside a batch or transaction.
func (s *Server) searchBundleForEntry(ctx context.Context, r storage.Reader, be *bundleEntryReq) ([]byte, error) {
	params, err := url.ParseQuery(be.query)
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "the search in request.url is malformed")
	}
	q, err := s.cfg.Search.ParseQuery(be.typ, params, false)
	if err != nil {
		return nil, err
	}
	req := storage.SearchRequest{Query: q, Cursor: q.Reserved.Get(cursorParam)}
	if g := release.GuardFrom(ctx); g != nil {
		// the caller's release rule and scope constraints, as for a
		// search on its own
		req.Release = g.Release()
	}
	res, err := r.Search(ctx, req)
	if err != nil {
		return nil, searchError(err)
	}
	b := newBundle("searchset")
	if res.Total >= 0 {
		b.total(res.Total)
	}
	for _, m := range res.Matches {
		b.entry(bundleEntry{FullURL: m.Type + "/" + m.ID, Resource: m.Raw, Search: &bundleSearch{Mode: "match"}})
	}
	for _, m := range res.Included {
		b.entry(bundleEntry{FullURL: m.Type + "/" + m.ID, Resource: m.Raw, Search: &bundleSearch{Mode: "include"}})
	}
	return b.bytes(), nil
}

// everythingDefinition is the canonical OperationDefinition of $everything.
const everythingDefinition = "http://hl7.org/fhir/OperationDefinition/Patient-everything"

// everythingDefaultCount is large so that a typical record comes in one
// page; _count asks for smaller pages.
const (
	everythingDefaultCount = 1000
	everythingMaxCount     = 5000
)

func (s *Server) registerEverything() {
	s.RegisterOperation(Operation{
		Name: "everything", Definition: everythingDefinition,
		Instance: true, Types: []string{"Patient"}, Idempotent: true,
		Handler: s.everything,
	})
}

// everything answers Patient/[id]/$everything: the Patient, its
// compartment and what those refer to, paged.
func (s *Server) everything(c *gin.Context, typ, id string) {
	if _, err := s.authorize(c, "operation", "everything", "Patient"); err != nil {
		s.fail(c, err)
		return
	}
	if p := principal(c); p != nil && p.Kind == auth.KindPatient && patientID(p) != id {
		accessOf(c).refused = "another patient's record"
		s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only ask for its own record"))
		return
	}
	accessOf(c).resource = "Patient/" + id
	params := c.Request.URL.Query()
	if c.Request.Method == http.MethodPost {
		if p, err := s.operationParams(c); err != nil {
			s.fail(c, err)
			return
		} else {
			for k, v := range p {
				params[k] = v
			}
		}
	}
	req := storage.EverythingRequest{PatientID: id, Count: everythingDefaultCount, Cursor: params.Get(cursorParam)}
	for name, dst := range map[string]*time.Time{"start": &req.Start, "end": &req.End} {
		if v := params.Get(name); v != "" {
			lo, hi, perr := parseDateRange(v)
			if perr != nil {
				s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{name}, "%s must be a date such as 2020-01-01", name))
				return
			}
			if name == "start" {
				*dst = lo
			} else {
				*dst = hi
			}
		}
	}
	if v := params.Get("_since"); v != "" {
		var err error
		if req.Since, err = parseInstant("_since", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	if v := params.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"_count"}, "_count must be a positive integer"))
			return
		}
		req.Count = min(n, everythingMaxCount)
	}
	for _, v := range params["_type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); !fhir.IsResourceType(t) {
				s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"_type"}, "_type names an unknown resource type"))
				return
			}
			req.Types = append(req.Types, t)
		}
	}
	g := s.guard(c)
	base := s.baseURL(c.Request)
	// without a release rule the page depends on the record alone: the
	// one answered last is sent again while the record is unchanged
	var pageKey string
	if g.Release() == nil {
		pageKey = base + "\x00" + c.Request.URL.Path + "\x00" + encodeQuery(params)
		if pe, ok := s.pages.Get(pageKey); ok {
			req.IfVersion = pe.version
		}
	}
	res, err := g.Everything(c.Request.Context(), req)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) || errors.Is(err, release.ErrWithheld) {
			s.failRead(c, nil, err, "Patient/"+id)
			return
		}
		s.fail(c, err)
		return
	}
	if res.Unchanged {
		if pe, ok := s.pages.Get(pageKey); ok && pe.version == req.IfVersion {
			for _, pt := range pe.patients {
				accessOf(c).Patient(pt)
			}
			s.writeJSON(c, http.StatusOK, pe.body)
			return
		}
		// evicted meanwhile: read it again
		req.IfVersion = ""
		if res, err = g.Everything(c.Request.Context(), req); err != nil {
			s.fail(c, err)
			return
		}
	}
	path := base + c.Request.URL.Path
	keep := url.Values{}
	for _, k := range []string{"start", "end", "_since", "_type", "_count"} {
		if v, ok := params[k]; ok {
			keep[k] = v
		}
	}
	b := newBundle("searchset")
	b.link("self", path+encodeQuery(params))
	if res.Next != "" {
		keep.Set(cursorParam, res.Next)
		b.link("next", path+"?"+keep.Encode())
	}
	g.Saw(c.Request.Context(), res.Matches...)
	for _, r := range res.Matches {
		b.entry(bundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: r.Raw, Search: &bundleSearch{Mode: "match"}})
	}
	body := b.bytes()
	if pageKey != "" && res.Version != "" {
		var pats []string
		for p := range accessOf(c).patients {
			pats = append(pats, p)
		}
		s.pages.Put(pageKey, &pageEntry{version: res.Version, body: body, patients: pats}, int64(len(body)))
	}
	s.writeJSON(c, http.StatusOK, body)
}

// parseDateRange reads a FHIR date/dateTime and returns the instants it
// covers at its precision.
func parseDateRange(v string) (time.Time, time.Time, error) {
	layouts := []struct {
		layout string
		add    func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{time.RFC3339Nano, func(t time.Time) time.Time { return t.Add(time.Nanosecond) }},
	}
	for _, l := range layouts {
		if t, err := time.Parse(l.layout, v); err == nil {
			return t, l.add(t).Add(-time.Nanosecond), nil
		}
	}
	return time.Time{}, time.Time{}, errors.New("bad date")
}

// operationParams reads a POSTed Parameters resource (or form) into
// query-style values (primitive parameters only).
func (s *Server) operationParams(c *gin.Context) (url.Values, error) {
	out := url.Values{}
	if c.Request.ContentLength == 0 {
		return out, nil
	}
	r, err := s.readParameters(c, "an operation's body must be a Parameters resource")
	if err != nil {
		return nil, err
	}
	for _, p := range r.Root().Get("parameter").Elems() {
		name := p.Get("name").String()
		for _, m := range p.Members {
			if strings.HasPrefix(m.Key, "value") {
				out.Add(name, m.Value.Str)
			}
		}
	}
	return out, nil
}

// readParameters reads a FHIR JSON body that must be a Parameters
// resource; notParameters is the 400's text when it is another resource.
func (s *Server) readParameters(c *gin.Context, notParameters string) (*fhir.Resource, error) {
	body, err := s.readBodyJSON(c)
	if err != nil {
		return nil, err
	}
	r, err := fhir.Parse(body)
	if err != nil {
		return nil, err
	}
	if r.Type != "Parameters" {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "%s", notParameters)
	}
	return r, nil
}
