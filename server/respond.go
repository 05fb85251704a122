package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// ContentTypeFHIRJSON is what every FHIR response carries.
const ContentTypeFHIRJSON = "application/fhir+json; charset=utf-8"

const (
	ctxPretty = "fhirgate.pretty"
	ctxNative = "fhirgate.native" // a Binary's content asked for in its own media type
)

// negotiate applies _format and Accept (406 for anything but FHIR JSON),
// and _pretty.
func (s *Server) negotiate() gin.HandlerFunc {
	return func(c *gin.Context) {
		q, err := url.ParseQuery(c.Request.URL.RawQuery)
		if err != nil {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "the query string is malformed (bad %%-escape or separator)"))
			c.Abort()
			return
		}
		if summaryHTMLRequested(c, q) {
			c.Set(ctxSummaryHTML, true) // the printable case summary (summary.go)
			c.Next()
			return
		}
		if f := q.Get("_format"); f != "" {
			if !jsonFormat(f) {
				s.fail(c, fhir.Errorf(http.StatusNotAcceptable, "not-supported", []string{"_format"}, "_format %q is not supported: this server speaks FHIR JSON only", f))
				c.Abort()
				return
			}
		} else if a := c.GetHeader("Accept"); a != "" && !acceptsJSON(a) {
			if binaryContentRead(c) {
				// R4 Binary read: a non-FHIR Accept asks for the content itself
				c.Set(ctxNative, true)
				c.Next()
				return
			}
			s.fail(c, fhir.Errorf(http.StatusNotAcceptable, "not-supported", nil, "cannot answer with any of the accepted media types; this server speaks application/fhir+json"))
			c.Abort()
			return
		}
		if p := q.Get("_pretty"); p == "true" {
			c.Set(ctxPretty, true)
		}
		c.Next()
	}
}

func jsonFormat(f string) bool {
	mt, params, err := mime.ParseMediaType(f)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(f))
	}
	switch mt {
	case "json", "application/json", "application/fhir+json", "application/json+fhir", "text/json":
		return fhirVersionOK(params)
	}
	return false
}

func fhirVersionOK(params map[string]string) bool {
	v, ok := params["fhirversion"]
	return !ok || v == "4.0" || v == "4.0.1"
}

// acceptsJSON reports whether an Accept header admits FHIR JSON.
func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
				continue
			}
		}
		switch mt {
		case "*/*", "application/*", "application/fhir+json", "application/json", "application/json+fhir", "text/json":
			if fhirVersionOK(params) {
				return true
			}
		}
	}
	return false
}

// requireJSONBody checks Content-Type of a request that carries a resource.
func requireJSONBody(c *gin.Context) error {
	ct := c.GetHeader("Content-Type")
	if ct == "" {
		return nil // lenient: a body without a type is read as FHIR JSON
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "unreadable Content-Type")
	}
	switch mt {
	case "application/fhir+json", "application/json", "application/json+fhir", "text/json":
		if !fhirVersionOK(params) {
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "only FHIR 4.0 is supported")
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "FHIR JSON must be UTF-8")
		}
		return nil
	}
	return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "Content-Type %s is not supported; send application/fhir+json", mt)
}

// readBody reads the request body within the configured limit.
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	body, err := s.readBodyAllowEmpty(c)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", nil, "the request body is empty")
	}
	return body, nil
}

func tooLarge(limit int64) error {
	return fhir.Errorf(http.StatusRequestEntityTooLarge, "too-long", nil, "the request body is larger than the limit of %d bytes", limit)
}

// readBodyAllowEmpty reads a body within the limit; empty is fine.
// The body takes its size (the whole limit when the client did not say)
// from the server's body budget for the rest of the request, and a JSON
// body is checked against the element and depth limits before anything
// parses it.
func (s *Server) readBodyAllowEmpty(c *gin.Context) ([]byte, error) {
	n := c.Request.ContentLength
	if n > s.cfg.MaxBodyBytes {
		return nil, tooLarge(s.cfg.MaxBodyBytes)
	}
	if n < 0 {
		n = s.cfg.MaxBodyBytes
	}
	if n > 0 {
		if err := s.admitBody(c, n); err != nil {
			return nil, err
		}
	}
	body, err := readAll(io.LimitReader(c.Request.Body, s.cfg.MaxBodyBytes+1), c.Request.ContentLength)
	if err != nil {
		if errors.Is(err, errSlowBody) {
			return nil, fhir.Errorf(http.StatusRequestTimeout, "timeout", nil, "the request body arrived too slowly")
		}
		return nil, fhir.BadRequest("could not read the request body")
	}
	if int64(len(body)) > s.cfg.MaxBodyBytes {
		return nil, tooLarge(s.cfg.MaxBodyBytes)
	}
	if err := s.admitParsed(c, body); err != nil {
		return nil, err
	}
	return body, nil
}

// readAll is io.ReadAll into a buffer of the declared length instead of
// one grown from 512 bytes (a 2.6 MB Bundle: 13 allocations, twice its
// size copied, and a buffer up to twice its size held for the request).
func readAll(r io.Reader, declared int64) ([]byte, error) {
	if declared <= 0 || declared > 1<<30 {
		return io.ReadAll(r)
	}
	var b bytes.Buffer
	b.Grow(int(declared) + bytes.MinRead) // ReadFrom wants MinRead free to read without growing
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// readBodyJSON reads a body that must be FHIR JSON.
func (s *Server) readBodyJSON(c *gin.Context) ([]byte, error) {
	if err := requireJSONBody(c); err != nil {
		return nil, err
	}
	return s.readBody(c)
}

func itoa(i int) string { return strconv.Itoa(i) }

// readResource reads and parses the body as a resource.
func (s *Server) readResource(c *gin.Context) (*fhir.Resource, error) {
	if err := requireJSONBody(c); err != nil {
		return nil, err
	}
	body, err := s.readBody(c)
	if err != nil {
		return nil, err
	}
	return fhir.Parse(body)
}

// errorStatus maps an error to the HTTP status and OperationOutcome issues.
// This table is the one place where store errors become HTTP.
func errorStatus(err error) (int, []fhir.Issue) {
	var fe *fhir.Error
	switch {
	case errors.As(err, &fe):
		return fe.Status, fe.Issues
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound, []fhir.Issue{fhir.NewIssue("not-found", "resource not found")}
	case errors.Is(err, storage.ErrGone):
		return http.StatusGone, []fhir.Issue{fhir.NewIssue("deleted", "resource deleted")}
	case errors.Is(err, storage.ErrVersionConflict):
		return http.StatusConflict, []fhir.Issue{fhir.NewIssue("conflict", "the resource was changed concurrently; retry")}
	case errors.Is(err, storage.ErrAlreadyExists):
		return http.StatusConflict, []fhir.Issue{fhir.NewIssue("duplicate", "a resource with this id already exists")}
	case errors.Is(err, storage.ErrInvalidCursor):
		return http.StatusBadRequest, []fhir.Issue{fhir.NewIssue("invalid", "invalid paging cursor")}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, []fhir.Issue{fhir.NewIssue("timeout", "the request took too long")}
	case errors.Is(err, context.Canceled):
		return 499, []fhir.Issue{fhir.NewIssue("incomplete", "request cancelled")}
	}
	return http.StatusInternalServerError, []fhir.Issue{{Severity: fhir.SeverityFatal, Code: "exception", Details: &fhir.IssueDetails{Text: "internal error"}}}
}

// fail answers err as an OperationOutcome.
func (s *Server) fail(c *gin.Context, err error) {
	if errors.Is(err, context.Canceled) && bodyFailed(c) {
		// the body broke off (a client that stalled or went away): the
		// server cancelled the request because of it, and the handler saw
		// the cancellation before the read error
		err = fhir.BadRequest("could not read the request body")
	}
	status, issues := errorStatus(err)
	if status >= 500 && status != http.StatusServiceUnavailable {
		// Store and driver errors carry no resource bodies; they are safe to log.
		s.log.ErrorContext(c.Request.Context(), "request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	s.writeJSON(c, status, s.outcome(c, issues...).JSON())
}

// writeJSON writes a FHIR JSON body (pretty-printed when asked, gzipped
// when the client accepts it and the body is worth compressing).
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	if c.GetBool(ctxPretty) {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	h := c.Writer.Header()
	h.Set("Content-Type", ContentTypeFHIRJSON)
	if c.Request.Method == http.MethodHead {
		c.Status(status)
		return
	}
	if len(body) > 1024 && acceptsGzip(c.Request) {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		c.Status(status)
		zw := gzipPool.Get().(*gzip.Writer)
		zw.Reset(c.Writer)
		_, _ = zw.Write(body)
		_ = zw.Close()
		gzipPool.Put(zw)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.Status(status)
	_, _ = c.Writer.Write(body)
}

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// versionHeaders sets ETag and Last-Modified for a resource version.
func versionHeaders(c *gin.Context, r *fhir.Resource) {
	if r.VersionID != "" {
		c.Header("ETag", etag(r.VersionID))
	}
	if !r.LastUpdated.IsZero() {
		c.Header("Last-Modified", r.LastUpdated.UTC().Format(http.TimeFormat))
	}
}

func etag(vid string) string { return `W/"` + vid + `"` }

// parseETag reads a version id out of If-Match's W/"n", "n" or n forms.
func parseETag(h string) (string, error) {
	v := strings.TrimSpace(h)
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	if v == "" || strings.ContainsAny(v, `",`) {
		return "", fhir.Errorf(http.StatusBadRequest, "invalid", nil, "If-Match must be a version ETag such as W/\"3\"")
	}
	return v, nil
}

func (s *Server) location(c *gin.Context, r *fhir.Resource) string {
	return fmt.Sprintf("%s/%s/%s/_history/%s", s.baseURL(c.Request), r.Type, r.ID, r.VersionID)
}

// preferReturn is the Prefer: return= value (representation by default).
func preferReturn(c *gin.Context) string {
	for _, v := range c.Request.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "return") {
				switch val = strings.Trim(strings.TrimSpace(val), `"`); val {
				case "minimal", "representation", "OperationOutcome":
					return val
				}
			}
		}
	}
	return "representation"
}

// writeResult answers a successful write according to Prefer.
func (s *Server) writeResult(c *gin.Context, status int, r *fhir.Resource, msg string) {
	versionHeaders(c, r)
	switch preferReturn(c) {
	case "minimal":
		c.Status(status)
		c.Writer.WriteHeaderNow()
	case "OperationOutcome":
		s.writeJSON(c, status, s.outcome(c, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational", Details: &fhir.IssueDetails{Text: msg}}).JSON())
	default:
		s.writeJSON(c, status, r.Raw)
	}
}

// httpTime parses an If-Modified-Since style date.
func httpTime(v string) (time.Time, bool) {
	t, err := http.ParseTime(v)
	return t, err == nil
}
