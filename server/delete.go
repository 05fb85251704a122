package server

import (
	"net/http"

	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// delete answers DELETE [type]/[id]: 204, with the deletion's version as
// ETag; later reads answer 410. Deleting a deleted resource is a no-op.
func (s *Server) delete(c *gin.Context) {
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := s.authorizeChange(c, "delete", typ, id, nil); err != nil {
		s.fail(c, err)
		return
	}
	var opts storage.DeleteOptions
	if im := c.GetHeader("If-Match"); im != "" {
		if opts.IfMatch, err = parseETag(im); err != nil {
			s.fail(c, err)
			return
		}
	}
	vid, err := s.cfg.Store.Delete(c.Request.Context(), typ, id, opts)
	if err != nil {
		s.fail(c, preconditionError(err, opts.IfMatch))
		return
	}
	c.Header("ETag", etag(vid))
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
}
