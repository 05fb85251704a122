package server

import (
	"errors"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// update answers PUT [type]/[id]: 200 when it updated, 201 + Location when
// it created; If-Match makes it version-aware (412 when stale).
func (s *Server) update(c *gin.Context) {
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.readResource(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := checkBodyFitsURL(res, typ, id); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.authorizeChange(c, "update", typ, id, res); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.validateWrite(res, ""); err != nil {
		s.fail(c, err)
		return
	}
	opts := storage.UpdateOptions{AllowCreate: true, Method: http.MethodPut}
	if im := c.GetHeader("If-Match"); im != "" {
		if opts.IfMatch, err = parseETag(im); err != nil {
			s.fail(c, err)
			return
		}
	}
	out, created, err := s.cfg.Store.Update(c.Request.Context(), res, opts)
	if err != nil {
		s.fail(c, preconditionError(err, opts.IfMatch))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.Header("Location", s.location(c, out))
	}
	s.writeResult(c, status, out, "updated "+out.Type+"/"+out.ID)
}

// checkBodyFitsURL enforces that a PUT/PATCH body names the URL's resource.
func checkBodyFitsURL(res *fhir.Resource, typ, id string) error {
	if res.Type != typ {
		return fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{"resourceType"}, "the body is a %s but the URL names a %s", res.Type, typ)
	}
	if res.ID == "" {
		return fhir.Errorf(http.StatusBadRequest, "required", []string{typ + ".id"}, "the body has no id; an update must carry the id of the URL")
	}
	if res.ID != id {
		return fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{typ + ".id"}, "the body's id does not match the id in the URL")
	}
	return nil
}

// preconditionError turns a version conflict under If-Match into 412.
func preconditionError(err error, ifMatch string) error {
	if ifMatch != "" && errors.Is(err, storage.ErrVersionConflict) {
		return fhir.Errorf(http.StatusPreconditionFailed, "conflict", nil, "If-Match version %s is not the current version", ifMatch)
	}
	return err
}
