package server

import (
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
)

// Validator checks resources on write; nil disables validation.
type Validator interface {
	Validate(r *fhir.Resource) []fhir.Issue
}

// validateWrite rejects a resource with validation errors (422 with every
// issue). prefix is put before the issues' expressions for Bundle entries.
func (s *Server) validateWrite(r *fhir.Resource, prefix string) error {
	if s.cfg.Validator == nil {
		return nil
	}
	issues := s.cfg.Validator.Validate(r)
	var errs int
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			errs++
		}
	}
	if errs == 0 {
		return nil
	}
	err := &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
	if prefix != "" && prefix != r.Type {
		return prefixExpr(err, prefix)
	}
	return err
}
