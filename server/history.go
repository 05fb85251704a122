package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// History paging limits.
const (
	defaultHistoryCount = 50
	maxHistoryCount     = 1000
)

func (s *Server) historySystem(c *gin.Context) { s.history(c, "", "") }

func (s *Server) historyType(c *gin.Context) {
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.history(c, typ, "")
}

func (s *Server) historyInstance(c *gin.Context) {
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	// an unknown resource is a 404, not an empty history
	if _, err := s.cfg.Store.VRead(c.Request.Context(), typ, id, "1"); err != nil && !isGone(err) {
		s.fail(c, err)
		return
	}
	s.history(c, typ, id)
}

// parseInstant reads a FHIR instant (or dateTime with a time zone) parameter.
func parseInstant(name, v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fhir.Errorf(http.StatusBadRequest, "value", []string{name}, "%s must be an instant such as 2024-01-02T03:04:05Z", name)
}

func (s *Server) history(c *gin.Context, typ, id string) {
	interaction := "history-system"
	switch {
	case id != "":
		interaction = "history-instance"
		accessOf(c).resource = typ + "/" + id
	case typ != "":
		interaction = "history-type"
	}
	if _, err := s.authorize(c, interaction, "", typ); err != nil {
		s.fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	hq := storage.HistoryQuery{Type: typ, ID: id, Count: defaultHistoryCount, Cursor: q.Get("_cursor")}
	var err error
	if v := q.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"_count"}, "_count must be a non-negative integer"))
			return
		}
		hq.Count = min(max(n, 1), maxHistoryCount)
	}
	if v := q.Get("_since"); v != "" {
		if hq.Since, err = parseInstant("_since", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	if v := q.Get("_at"); v != "" {
		if hq.At, err = parseInstant("_at", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	g := s.guard(c)
	page, err := g.History(c.Request.Context(), hq)
	if err == nil {
		for _, e := range page.Entries {
			if e.Resource != nil {
				g.Saw(c.Request.Context(), e.Resource)
			}
		}
	}
	if err != nil {
		if errors.Is(err, release.ErrWithheld) {
			accessOf(c).refused = "no consent or outside the token's patient"
		}
		s.fail(c, err)
		return
	}
	base := s.baseURL(c.Request)
	self := base + c.Request.URL.Path
	b := newBundle("history")
	if page.Total >= 0 {
		b.total(page.Total) // a history of what the caller may see is not counted
	}
	b.link("self", self+encodeQuery(q))
	if page.Next != "" {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("_cursor", page.Next)
		b.link("next", self+encodeQuery(nq))
	}
	for _, e := range page.Entries {
		full := base + "/" + e.Type + "/" + e.ID
		req := bundleRequest{Method: e.Method, URL: e.Type + "/" + e.ID}
		if e.Method == http.MethodPost {
			req.URL = e.Type
		}
		status := "200 OK"
		switch e.Method {
		case http.MethodPost:
			status = "201 Created"
		case http.MethodDelete:
			status = "204 No Content"
		}
		var raw []byte
		if e.Resource != nil {
			raw = e.Resource.Raw
		}
		b.entry(bundleEntry{FullURL: full, Resource: raw, Request: &req, Response: &bundleResponse{
			Status: status, Etag: etag(e.VersionID), LastModified: fhir.FormatInstant(e.LastUpdated),
		}})
	}
	s.writeJSON(c, http.StatusOK, b.bytes())
}

func encodeQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
