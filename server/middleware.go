package server

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

// recoverer turns a panic into a 500 OperationOutcome and logs the stack
// (never the request body).
func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(c.Request.Context(), "panic serving request", "method", c.Request.Method, "path", c.Request.URL.Path, "panic", p, "stack", string(debug.Stack()))
				if !c.Writer.Written() {
					s.writeJSON(c, http.StatusInternalServerError, s.outcome(c, fhir.Issue{Severity: fhir.SeverityFatal, Code: "exception", Details: &fhir.IssueDetails{Text: "internal error"}}).JSON())
				}
				c.Abort()
			}
		}()
		c.Next()
	}
}

// accessLog writes one structured line per request: method, path (never the
// query, which may hold patient identifiers), status, duration and size.
func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		if !s.log.Enabled(c.Request.Context(), levelAccess) {
			return
		}
		s.log.Log(c.Request.Context(), levelAccess, "request",
			"method", c.Request.Method,
			"path", c.Request.URL.Path,
			"status", c.Writer.Status(),
			"duration_ms", float64(time.Since(start).Microseconds())/1000,
			"bytes", c.Writer.Size())
	}
}
