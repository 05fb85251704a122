package server

import (
	"errors"
	"mime"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/jsonpatch"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// patch answers PATCH [type]/[id] with a JSON Patch document. The patch is
// applied to the stored JSON tree, so untouched values keep their bytes; the
// result must still be the same resource (type and id).
func (s *Server) patch(c *gin.Context) {
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/json-patch+json" {
		s.fail(c, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "PATCH takes application/json-patch+json (JSON Patch)"))
		return
	}
	body, err := s.readBody(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ops, err := jsonpatch.Parse(body)
	if err != nil {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "%s", err.Error()))
		return
	}
	opts := storage.UpdateOptions{Method: http.MethodPatch}
	if im := c.GetHeader("If-Match"); im != "" {
		if opts.IfMatch, err = parseETag(im); err != nil {
			s.fail(c, err)
			return
		}
	}
	var out *fhir.Resource
	err = s.cfg.Store.InTx(c.Request.Context(), func(tx storage.Tx) error {
		cur, err := tx.Read(c.Request.Context(), typ, id)
		if err != nil {
			return err
		}
		if opts.IfMatch != "" && opts.IfMatch != cur.VersionID {
			return preconditionError(storage.ErrVersionConflict, opts.IfMatch)
		}
		patched, err := jsonpatch.Apply(cur.Root(), ops)
		if err != nil {
			status := http.StatusUnprocessableEntity
			if errors.Is(err, jsonpatch.ErrMalformed) {
				status = http.StatusBadRequest
			}
			return fhir.Errorf(status, "processing", nil, "%s", err.Error())
		}
		res, err := fhir.Parse(fjson.AppendCompact(nil, patched))
		if err != nil {
			return fhir.Errorf(http.StatusUnprocessableEntity, "processing", nil, "the patched resource is not valid: %s", err.Error())
		}
		if err := checkBodyFitsURL(res, typ, id); err != nil {
			return fhir.Errorf(http.StatusUnprocessableEntity, "processing", nil, "a patch may not change the resource's type or id")
		}
		out, _, err = tx.Update(c.Request.Context(), res, opts)
		return err
	})
	if err != nil {
		s.fail(c, preconditionError(err, opts.IfMatch))
		return
	}
	s.writeResult(c, http.StatusOK, out, "patched "+out.Type+"/"+out.ID)
}
