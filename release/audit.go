package release

import (
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/storage"
)

// AuditFilter is the release rule of the audit trail (which the store
// keeps as a log of its own, not as resources) as conditions on the log's
// query, so that totals and pages count only what the caller may see: a
// patient the events about itself (itself as the patient entity), a
// provider those it was an agent of (its organization, its practitioner
// user or its client), a system client the whole trail with a scope that
// names AuditEvent. ok is false when the caller may see none of it; a nil
// filter with ok is the whole trail.
func (g *Guard) AuditFilter() (filter []storage.AuditRefFilter, ok bool) {
	if g.p == nil {
		return nil, true
	}
	switch g.p.Kind {
	case auth.KindPatient:
		return []storage.AuditRefFilter{{Refs: []string{g.p.Patient}, Roles: storage.AuditPatientRole}}, true
	case auth.KindProvider:
		refs := g.p.Actors()
		if g.p.ClientID != "" {
			refs = append(refs, "@"+g.p.ClientID) // the log's key of a client (audit.ClientRef)
		}
		return []storage.AuditRefFilter{{Refs: refs, Roles: storage.AuditAgent | storage.AuditClient}}, true
	case auth.KindSystem:
		return nil, auditScope(g.p)
	}
	return nil, false
}
