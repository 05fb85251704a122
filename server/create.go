package server

import (
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

// createOrOperation answers POST [type], or POST [base]/$op.
func (s *Server) createOrOperation(c *gin.Context) {
	if strings.HasPrefix(c.Param("type"), "$") {
		s.systemOperation(c)
		return
	}
	s.create(c)
}

// create answers POST [type]: the server assigns the id (an id in the body
// is ignored, as R4 says), 201 with Location, ETag and Last-Modified.
func (s *Server) create(c *gin.Context) {
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.readResource(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if res.Type != typ {
		s.fail(c, fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{"resourceType"}, "the body is a %s but was posted to /%s", res.Type, typ))
		return
	}
	res.ID = s.newID()
	if err := s.validateWrite(res, ""); err != nil {
		s.fail(c, err)
		return
	}
	out, err := s.cfg.Store.Create(c.Request.Context(), res)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", s.location(c, out))
	s.writeResult(c, http.StatusCreated, out, "created "+out.Type+"/"+out.ID)
}
