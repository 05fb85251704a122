package release

import "github.com/fhirgate/fhirgate/auth"

// PatientSelf answers whether the caller is the patient Patient/id itself
// (or anyone, on a gateway without authentication), for what only the
// patient does with its own account: its SMART Health Links, its
// connections to sources (its own logins there). Neither a provider nor a
// system client acts for the patient in these; what names the refused
// action ("connects the patient's sources").
func (g *Guard) PatientSelf(id, what string) error {
	if g.p == nil || g.p.Kind == auth.KindPatient && patientID(g.p) == id {
		return nil
	}
	return forbidden("only the patient %s", what)
}
