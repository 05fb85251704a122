package server

import (
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Validator checks resources on write; nil disables validation.
type Validator interface {
	Validate(r *fhir.Resource) []fhir.Issue
}

// validateWrite rejects a resource with validation errors (422 with every
// issue). prefix is put before the issues' expressions for Bundle entries.
func (s *Server) validateWrite(r *fhir.Resource, prefix string) error {
	if _, ok := storage.BlobOf(r); ok {
		// only the gateway's uploads name stored content: a client naming
		// a blob could otherwise reach content it was never given
		err := fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{"Binary.data"},
			"the extension %s is set by the gateway's uploads only; send the content in Binary.data", storage.BlobExtension)
		if prefix != "" && prefix != r.Type {
			return prefixExpr(err, prefix)
		}
		return err
	}
	if r.Type == "Subscription" && s.subs != nil {
		if err := s.subs.Check(r); err != nil {
			if prefix != "" && prefix != r.Type {
				return prefixExpr(err, prefix)
			}
			return err
		}
	}
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
