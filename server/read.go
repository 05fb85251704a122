package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// serverPaths are the base's own endpoints: other methods on them are 405.
var serverPaths = map[string]bool{"metadata": true, "healthz": true, "readyz": true, "_history": true}

// pathType validates the :type segment (404 for an unknown type).
func pathType(c *gin.Context) (string, error) {
	t := c.Param("type")
	if serverPaths[t] {
		return "", fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "method %s is not allowed at /%s", c.Request.Method, t)
	}
	if !fhir.IsResourceType(t) {
		return "", fhir.Errorf(http.StatusNotFound, "not-supported", nil, "%q is not an R4 resource type", t)
	}
	return t, nil
}

// pathTypeID validates :type and :id.
func pathTypeID(c *gin.Context) (string, string, error) {
	t, err := pathType(c)
	if err != nil {
		return "", "", err
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return "", "", fhir.Errorf(http.StatusBadRequest, "value", nil, "the id in the URL must match [A-Za-z0-9\\-\\.]{1,64}")
	}
	return t, id, nil
}

// read answers GET [type]/[id] (and HEAD).
func (s *Server) read(c *gin.Context) {
	if strings.HasPrefix(c.Param("id"), "$") {
		s.typeOperation(c)
		return
	}
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if _, err := s.authorize(c, "read", "", typ); err != nil {
		s.fail(c, err)
		return
	}
	accessOf(c).resource = typ + "/" + id
	g := s.guard(c)
	var r *fhir.Resource
	if typ == "Binary" {
		r, err = g.ReadStub(c.Request.Context(), typ, id) // the content streams
	} else if d := s.definition(typ, id); d != nil {
		r = d // the server's own OperationDefinitions (opdefs.go)
	} else {
		r, err = g.Read(c.Request.Context(), typ, id)
	}
	if err != nil {
		s.failRead(c, r, err, typ+"/"+id)
		return
	}
	if typ == "Binary" {
		s.writeBinary(c, r)
		return
	}
	s.writeVersion(c, r)
}

// vread answers GET [type]/[id]/_history/[vid].
func (s *Server) vread(c *gin.Context) {
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if _, err := s.authorize(c, "vread", "", typ); err != nil {
		s.fail(c, err)
		return
	}
	accessOf(c).resource = typ + "/" + id + "/_history/" + c.Param("vid")
	g := s.guard(c)
	var r *fhir.Resource
	if typ == "Binary" {
		r, err = g.VReadStub(c.Request.Context(), typ, id, c.Param("vid"))
	} else {
		r, err = g.VRead(c.Request.Context(), typ, id, c.Param("vid"))
	}
	if err != nil {
		s.failRead(c, r, err, typ+"/"+id+"/_history/"+c.Param("vid"))
		return
	}
	if typ == "Binary" {
		s.writeBinary(c, r)
		return
	}
	s.writeVersion(c, r)
}

// failRead answers a read error naming what was asked for; a deletion
// keeps its version headers.
func (s *Server) failRead(c *gin.Context, r *fhir.Resource, err error, what string) {
	switch {
	case errors.Is(err, release.ErrWithheld):
		accessOf(c).refused = "no consent or outside the token's patient"
	case errors.Is(err, storage.ErrGone):
		if r != nil {
			versionHeaders(c, r)
		}
		err = fhir.Errorf(http.StatusGone, "deleted", nil, "%s has been deleted", what)
	case errors.Is(err, storage.ErrNotFound):
		err = fhir.Errorf(http.StatusNotFound, "not-found", nil, "%s is not known", what)
	}
	s.fail(c, err)
}

// writeVersion answers a resource version, honouring If-None-Match and
// If-Modified-Since with 304.
func (s *Server) writeVersion(c *gin.Context, r *fhir.Resource) {
	versionHeaders(c, r)
	if notModified(c, r) {
		return
	}
	s.writeJSON(c, http.StatusOK, r.Raw)
}

// notModified answers 304 when If-None-Match or If-Modified-Since say the
// client has this version.
func notModified(c *gin.Context, r *fhir.Resource) bool {
	if inm := c.GetHeader("If-None-Match"); inm != "" {
		if v, err := parseETag(inm); err == nil && v == r.VersionID {
			c.Status(http.StatusNotModified)
			c.Writer.WriteHeaderNow()
			return true
		}
	} else if ims := c.GetHeader("If-Modified-Since"); ims != "" {
		if t, ok := httpTime(ims); ok && !r.LastUpdated.Truncate(1e9).After(t) {
			c.Status(http.StatusNotModified)
			c.Writer.WriteHeaderNow()
			return true
		}
	}
	return false
}
