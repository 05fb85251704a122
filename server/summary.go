package server

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/gin-gonic/gin"
)

// This file holds what Patient/[id]/$summary adds to the IPS document:
// the printable HTML rendering of the case summary and the optional
// machine-written narrative.

// Narrator drafts a narrative of a computed case summary (a
// *drafting.Client); the server asks it only when a request says
// narrative=draft.
type Narrator interface {
	Draft(ctx context.Context, cs *referral.CaseSummary) (*referral.Draft, error)
}

const ctxSummaryHTML = "fhirgate.summaryHTML"

// summaryHTMLRequested: Patient/[id]/$summary asked for as a page, by
// _format=html (or text/html) or by an Accept header that prefers
// text/html to FHIR JSON (what a browser sends).
func summaryHTMLRequested(c *gin.Context, q url.Values) bool {
	if c.Param("type") != "Patient" || c.Param("op") != "$summary" {
		return false
	}
	if f := q.Get("_format"); f != "" {
		mt, _, err := mime.ParseMediaType(f)
		if err != nil {
			mt = strings.ToLower(strings.TrimSpace(f))
		}
		return mt == "html" || mt == "text/html"
	}
	return prefersHTML(c.GetHeader("Accept"))
}

// prefersHTML reports whether an Accept header names text/html with a
// quality at least that of any JSON type it names (wildcards do not
// count for JSON: "text/html,*/*;q=0.8" prefers HTML).
func prefersHTML(accept string) bool {
	qHTML, qJSON := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "text/html", "application/xhtml+xml":
			qHTML = max(qHTML, q)
		case "application/fhir+json", "application/json", "application/json+fhir", "text/json":
			qJSON = max(qJSON, q)
		}
	}
	return qHTML > 0 && qHTML >= qJSON
}

// summaryNarrate reads the narrative parameter of $summary: "draft" asks
// the configured model; absent, nothing. The draft is built from the
// case summary the document computes, itself over what the caller may
// see.
func (s *Server) summaryNarrate(c *gin.Context) (func(*referral.CaseSummary) *referral.Draft, error) {
	v := c.Query("narrative")
	switch v {
	case "":
		return nil, nil
	case "draft":
	default:
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", []string{"narrative"}, "narrative must be draft (a machine-written draft of the case summary)")
	}
	if s.cfg.Narrator == nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", []string{"narrative"}, "no narrative model is configured on this gateway (summary.narrative in the config file)")
	}
	ctx := c.Request.Context()
	a := accessOf(c)
	return func(cs *referral.CaseSummary) *referral.Draft {
		d, err := s.cfg.Narrator.Draft(ctx, cs)
		// sending the summary out is a disclosure: the access's audit
		// event says so
		a.note = "the de-identified case summary was sent to the configured narrative model"
		if err == nil {
			a.note += " at " + d.Endpoint
		}
		if err != nil {
			s.log.Warn("narrative model failed", "error", err.Error())
			msg := "the narrative model did not answer usably"
			if errors.Is(err, context.DeadlineExceeded) {
				msg = "the narrative model did not answer in time"
			}
			return &referral.Draft{Error: msg}
		}
		return d
	}, nil
}

// writeSummary answers with the document Bundle, or its HTML rendering
// when the request asked for a page.
func (s *Server) writeSummary(c *gin.Context, doc *referral.Document) {
	if !c.GetBool(ctxSummaryHTML) {
		s.writeJSON(c, http.StatusOK, doc.Bundle.Raw)
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// no script, no external resource; the page holds patient data
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept")
	if c.Request.Method == http.MethodHead {
		c.Status(http.StatusOK)
		return
	}
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(referral.RenderHTML(doc))
}
