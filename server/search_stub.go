package server

import (
	"context"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
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
