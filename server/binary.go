package server

import (
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

// Binary resources are in no R4 compartment: who may see one is decided by
// its securityContext, "a resource that can be used as a proxy of the
// security sensitivity" of the content. The gateway reads it as:
//
//   - securityContext Patient/x: the content is that patient's data: the
//     patient sees it, a provider when the patient's Consents release the
//     Binary itself (its own meta.security labels);
//   - securityContext another resource (the DocumentReference an upload
//     made, say): the Binary is released exactly when that resource is;
//   - no securityContext: nothing says whose data it is, so only system
//     clients (and a gateway without authentication) may read it.

// binaryContext returns a Binary's securityContext reference as a local
// "Type/id" (a reference to this server's base is made local); "" when it
// has none or names something elsewhere.
func (s *Server) binaryContext(r *fhir.Resource) string {
	ref := r.Root().Get("securityContext").Get("reference").String()
	if ref == "" {
		return ""
	}
	if s.cfg.BaseURL != "" {
		ref = strings.TrimPrefix(ref, strings.TrimSuffix(s.cfg.BaseURL, "/")+"/")
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
		return ""
	}
	return typ + "/" + id
}

// binaryPatients names the Patient a Binary belongs to when its
// securityContext is that Patient.
func (s *Server) binaryPatients(r *fhir.Resource) []string {
	if ref := s.binaryContext(r); strings.HasPrefix(ref, "Patient/") {
		return []string{ref}
	}
	return nil
}

// releaseBinary is release for a Binary and a patient or provider.
func (s *Server) releaseBinary(c *gin.Context, r *fhir.Resource, depth int) (bool, error) {
	ref := s.binaryContext(r)
	switch {
	case ref == "":
		accessOf(c).refused = "Binary without securityContext"
		return false, nil
	case strings.HasPrefix(ref, "Patient/"):
		return s.releaseTo(c, r, []string{ref})
	case depth > 0:
		return false, nil // a Binary whose context is another Binary
	}
	typ, id, _ := strings.Cut(ref, "/")
	target, err := s.cfg.Store.Read(c.Request.Context(), typ, id)
	if err != nil {
		// a context that is gone or never was protects nothing: refuse
		return false, nil
	}
	if target.Type == "Binary" {
		return s.releaseBinary(c, target, depth+1)
	}
	// the token's scopes were checked for the Binary it asked for; the
	// context is consulted for the patient and the Consents only
	return s.release(c, target, auth.Decision{Allowed: true})
}
