package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// CORS (Fetch standard): browser apps on the configured origins may call
// the API with a bearer token. Tokens travel in the Authorization header,
// never in cookies, so credentials mode is not allowed: a page on another
// origin cannot ride on anything the browser holds.
var (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, X-Request-Id, X-Security-Context, Range"
	// what a FHIR client reads from responses
	corsExpose = "Location, Content-Location, ETag, Last-Modified, X-Request-Id, X-Progress, Retry-After, WWW-Authenticate, Content-Range, Accept-Ranges"
)

// cors answers preflights and marks responses readable by allowed origins.
// With no origins configured it does nothing, and a browser on another
// origin cannot read any answer.
func (s *Server) cors() gin.HandlerFunc {
	origins := s.cfg.CORSOrigins
	anyOrigin := slices.Contains(origins, "*")
	allowed := func(o string) bool {
		return anyOrigin || slices.ContainsFunc(origins, func(a string) bool { return strings.EqualFold(strings.TrimSuffix(a, "/"), o) })
	}
	return func(c *gin.Context) {
		origin := c.GetHeader("Origin")
		if len(origins) == 0 || origin == "" {
			c.Next()
			return
		}
		h := c.Writer.Header()
		h.Add("Vary", "Origin")
		if !allowed(origin) {
			c.Next()
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", "600")
			c.AbortWithStatus(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExpose)
		c.Next()
	}
}

// hsts tells browsers that reached the gateway over HTTPS to keep using it.
func hsts(c *gin.Context) {
	if c.Request.TLS != nil {
		c.Header("Strict-Transport-Security", "max-age=31536000")
	}
	c.Next()
}
