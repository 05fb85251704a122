package referral

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/release"
)

// Previewed is the package one recipient would receive.
type Previewed struct {
	Recipient string
	// Package is the document Bundle, not stored (its id is a fresh one).
	Package *fhir.Resource
}

// Preview builds the packages Open would build for req, as if the draft
// Consents (not stored) were among the patient's active ones, and stores
// nothing: what a patient sees before granting is exactly what each
// recipient would be given, decided by the same release rule. Stored
// Consents named in req.Consents may join the drafts. The caller must be
// allowed to open the request (the patient itself or a system client);
// each draft must be an active Consent of this patient that the consent
// checks accept, as if it were being written.
func (s *Service) Preview(ctx context.Context, p *auth.Principal, rec release.Recorder, req OpenRequest) ([]Previewed, error) {
	drafts := req.Drafts
	patientRef := "Patient/" + req.PatientID
	if rec != nil {
		rec.Patient(patientRef)
	}
	if err := MayOpen(p, req.PatientID); err != nil {
		return nil, err
	}
	if len(req.Recipients) == 0 {
		return nil, paramError(http.StatusBadRequest, "required", "recipient", "at least one recipient is required")
	}
	if len(req.Consents)+len(drafts) == 0 {
		return nil, paramError(http.StatusBadRequest, "required", "consent", "at least one consent (a reference, or a draft Consent as resource) is required")
	}
	patient, err := s.cfg.Store.Read(ctx, "Patient", req.PatientID)
	if err != nil {
		return nil, err
	}
	all := make([]*fhir.Resource, 0, len(drafts)+len(req.Consents))
	for i, d := range drafts {
		if d.Type != "Consent" {
			return nil, paramError(http.StatusBadRequest, "value", "consent", "a draft consent must be a Consent, not %s", d.Type)
		}
		root := d.Root()
		if root.Get("status").String() != "active" || root.Get("patient").Get("reference").String() != patientRef {
			return nil, paramError(http.StatusUnprocessableEntity, "business-rule", "consent", "draft consent %d is not an active Consent of this patient", i+1)
		}
		if issues := consent.Validate(d, consent.ValidateOptions{Patient: patientRef}); hasError(issues) {
			return nil, &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
		}
		if d.ID == "" {
			// the packages' Provenance and audit name the Consent that
			// released them
			if d, err = withMembers(d, map[string]any{"id": fmt.Sprintf("draft-%d", i+1)}); err != nil {
				return nil, err
			}
			drafts[i] = d
		}
		all = append(all, d)
	}
	for _, ref := range req.Consents {
		typ, cid, _ := strings.Cut(ref, "/")
		cr, err := s.cfg.Store.Read(ctx, typ, cid)
		if err != nil || cr.Root().Get("status").String() != "active" || cr.Root().Get("patient").Get("reference").String() != patientRef {
			return nil, paramError(http.StatusUnprocessableEntity, "business-rule", "consent", "%s is not an active Consent of this patient", ref)
		}
		if rec != nil {
			rec.Consent(ref)
		}
		all = append(all, cr)
	}
	named := consent.Compile(patientRef, all, consent.Options{})
	now := s.cfg.Now()
	ctx = release.WithDraftConsents(ctx, patientRef, drafts)
	record, err := s.Record(ctx, req.PatientID, req.Start, req.End)
	if err != nil {
		return nil, err
	}
	out := make([]Previewed, 0, len(req.Recipients))
	for _, rc := range req.Recipients {
		cands := named.Candidates(recipientRequest(rc, now))
		if len(cands) == 0 {
			return nil, paramError(http.StatusUnprocessableEntity, "business-rule", "recipient", "no Consent given permits %s", rc)
		}
		doc, err := s.packageFor(ctx, rc, patient, record, req, cands[0].Reference, now)
		if err != nil {
			return nil, err
		}
		out = append(out, Previewed{Recipient: rc, Package: doc.Bundle})
	}
	return out, nil
}

func hasError(issues []fhir.Issue) bool {
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			return true
		}
	}
	return false
}
