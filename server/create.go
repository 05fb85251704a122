package server

import (
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
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
	if typ == "Binary" && nativeContent(c) {
		s.createBinaryNative(c)
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
	if _, err := s.authorize(c, "create", "", typ); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.checkWrite(c, res); err != nil {
		s.fail(c, err)
		return
	}
	res.ID = s.newID()
	if err := s.validateWrite(res, ""); err != nil {
		s.fail(c, err)
		return
	}
	var out *fhir.Resource
	if cond := c.GetHeader("If-None-Exist"); cond != "" {
		if err := s.systemOnly(c, "create", typ); err != nil {
			s.fail(c, err)
			return
		}
		// conditional create: the search and the create in one transaction
		var existing *fhir.Resource
		err = s.cfg.Store.InTx(c.Request.Context(), func(tx storage.Tx) error {
			m, err := s.conditionalMatch(c.Request.Context(), tx, typ, strings.TrimPrefix(cond, "?"), -1, "")
			if err != nil || m != nil {
				existing = m
				return err
			}
			out, err = tx.Create(c.Request.Context(), res)
			return err
		})
		if err != nil {
			s.fail(c, err)
			return
		}
		if existing != nil {
			s.writeResult(c, http.StatusOK, existing, "a matching "+typ+" exists; nothing was created")
			return
		}
	} else if out, err = s.cfg.Store.Create(c.Request.Context(), res); err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Location", s.location(c, out))
	s.writeResult(c, http.StatusCreated, out, "created "+out.Type+"/"+out.ID)
}
