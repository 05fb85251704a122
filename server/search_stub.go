package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// searchAll runs a search for conditional operations; limit bounds how many
// matches are needed (2 is enough to tell one from many).
func (s *Server) searchAll(ctx context.Context, r storage.Reader, typ, query string, limit int) ([]*fhir.Resource, error) {
	return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "conditional operations are not available yet: the search index is not configured")
}

// searchBundleForEntry answers a search inside a batch or transaction.
func (s *Server) searchBundleForEntry(ctx context.Context, r storage.Reader, be *bundleEntryReq) ([]byte, error) {
	return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "searches inside a Bundle are not available yet")
}

// searchOrOperation answers GET [type] (search), or GET [base]/$op.
func (s *Server) searchOrOperation(c *gin.Context) {
	if strings.HasPrefix(c.Param("type"), "$") {
		s.systemOperation(c)
		return
	}
	if _, err := pathType(c); err != nil {
		s.fail(c, err)
		return
	}
	s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "search is not available yet"))
}

// compartmentSearch answers GET [type]/[id]/[type2].
func (s *Server) compartmentSearch(c *gin.Context) {
	s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "compartment search is not available yet"))
}
