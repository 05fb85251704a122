package server

import (
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

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
