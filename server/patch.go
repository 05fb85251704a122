package server

import (
	"context"
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
	if err := s.authorizeChange(c, "patch", typ, id, nil); err != nil {
		s.fail(c, err)
		return
	}
	var out *fhir.Resource
	err = s.cfg.Store.InTx(c.Request.Context(), func(tx storage.Tx) error {
		out, err = s.applyPatch(c.Request.Context(), tx, typ, id, body, c.GetHeader("If-Match"))
		if err == nil {
			err = s.checkWrite(c, out)
		}
		return err
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeResult(c, http.StatusOK, out, "patched "+out.Type+"/"+out.ID)
}

// applyPatch applies a JSON Patch document to the current version of
// typ/id inside tx and stores the result as a PATCH version.
func (s *Server) applyPatch(ctx context.Context, tx storage.Tx, typ, id string, doc []byte, ifMatch string) (*fhir.Resource, error) {
	ops, err := jsonpatch.Parse(doc)
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", nil, "%s", err.Error())
	}
	if ifMatch != "" {
		if ifMatch, err = parseETag(ifMatch); err != nil {
			return nil, err
		}
	}
	cur, err := tx.Read(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	if ifMatch != "" && ifMatch != cur.VersionID {
		return nil, preconditionError(storage.ErrVersionConflict, ifMatch)
	}
	patched, err := jsonpatch.Apply(cur.Root(), ops)
	if err != nil {
		status := http.StatusUnprocessableEntity
		if errors.Is(err, jsonpatch.ErrMalformed) {
			status = http.StatusBadRequest
		}
		return nil, fhir.Errorf(status, "processing", nil, "%s", err.Error())
	}
	res, err := fhir.Parse(fjson.AppendCompact(nil, patched))
	if err != nil {
		return nil, fhir.Errorf(http.StatusUnprocessableEntity, "processing", nil, "the patched resource is not valid: %s", err.Error())
	}
	if err := checkBodyFitsURL(res, typ, id); err != nil {
		return nil, fhir.Errorf(http.StatusUnprocessableEntity, "processing", nil, "a patch may not change the resource's type or id")
	}
	if err := s.validateWrite(res, ""); err != nil {
		return nil, err
	}
	out, _, err := tx.Update(ctx, res, storage.UpdateOptions{IfMatch: ifMatch, Method: http.MethodPatch})
	return out, preconditionError(err, ifMatch)
}
