package server

import (
	"errors"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// typeOperation answers [type]/$op. No type-level operations are registered yet.
func (s *Server) typeOperation(c *gin.Context) {
	if _, err := pathType(c); err != nil {
		s.fail(c, err)
		return
	}
	s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "operation %s is not supported", c.Param("id")))
}

func isGone(err error) bool { return errors.Is(err, storage.ErrGone) }
