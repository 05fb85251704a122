package server

import (
	"context"
	"encoding/base64"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// conditionalMatches returns the current resources of typ that match a
// conditional URL's search (If-None-Exist, conditional update/patch/delete).
func (s *Server) conditionalMatches(ctx context.Context, r storage.Reader, typ, query string, entry int, field string) ([]*fhir.Resource, error) {
	if query == "" {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", nil, "a conditional request needs search parameters")
	}
	return s.searchAll(ctx, r, typ, query, 2)
}

// conditionalMatch is conditionalMatches for operations that need at most
// one match: more than one answers 412.
func (s *Server) conditionalMatch(ctx context.Context, r storage.Reader, typ, query string, entry int, field string) (*fhir.Resource, error) {
	ms, err := s.conditionalMatches(ctx, r, typ, query, entry, field)
	if err != nil {
		return nil, err
	}
	switch len(ms) {
	case 0:
		return nil, nil
	case 1:
		return ms[0], nil
	}
	return nil, fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", nil, "the condition matches more than one %s", typ)
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
