package abdm

import (
	"context"
	"fmt"

	"github.com/fhirgate/fhirgate/adapters"
)

var _ adapters.PatientFinder = (*HIU)(nil)

// FindPatient implements adapters.PatientFinder. In ABDM the patient is
// addressed by the ABHA address on the gateway's own Patient, and Fetch
// takes that local Patient's id: so the "patient at the source" is the
// local Patient itself, found when it carries an ABHA address.
func (h *HIU) FindPatient(ctx context.Context, q adapters.PatientQuery) ([]adapters.PatientMatch, error) {
	if q.Patient == nil || q.Patient.ID == "" {
		return nil, h.fetchErr("find patient", fmt.Errorf("%w: ABDM needs the gateway's own Patient", adapters.ErrPatientNotFound))
	}
	if abhaOf(q.Patient) == "" {
		return nil, h.fetchErr("find patient", fmt.Errorf("%w: %w", adapters.ErrPatientNotFound, ErrNoABHA))
	}
	return []adapters.PatientMatch{{ID: q.Patient.ID, Resource: q.Patient, Method: "identifier", Score: 1, Certain: true}}, nil
}
