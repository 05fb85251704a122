package release

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Write is one change a caller asks for.
type Write struct {
	// New is the content to store; nil for a deletion.
	New *fhir.Resource
	// Current is the version it replaces; nil for a creation (or when
	// there is none).
	Current *fhir.Resource
	// Within is the transaction the write happens in, through which the
	// resources it points at are read (nil: the store).
	Within storage.Reader

	filing bool // see Filing
	// assembling: the gateway writes documents it assembled (Assembling)
	assembling bool
	// quiet: the write's patients are not recorded (the request that
	// makes it records what it touched itself)
	quiet bool
}

// ErrAuditReadOnly is wrapped by the 405 every write of an AuditEvent
// answers: the audit trail is the gateway's alone.
var ErrAuditReadOnly = errors.New("release: the audit trail is read-only")

// CheckWrite decides whether the caller may make the change (README "Who
// may write what"):
//
//   - nobody writes an AuditEvent (405), and no client a Bundle carrying
//     the tag of the documents the gateway assembles (422);
//   - a Consent is written (created, changed or deleted) only by the
//     patient it names, or by a system client configured as that
//     patient's custodian, whose Consent must name its organization in
//     Consent.organization;
//   - a patient writes only resources wholly of its own record: every
//     patient it is about is itself (a Provenance's targets, a Bundle's
//     entries, a Binary's securityContext included), before and after;
//   - a provider writes about a patient only while the patient shares
//     with it (an active Consent names it), and changes only what it may
//     see;
//   - a system client writes what its scopes allow.
//
// It answers nil or a *fhir.Error (403, 405 or 422).
func (g *Guard) CheckWrite(ctx context.Context, w Write) error {
	for _, r := range []*fhir.Resource{w.New, w.Current} {
		if r != nil && r.Type == "AuditEvent" {
			return &outcomeError{fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "AuditEvents are written by the gateway alone: the audit trail cannot be created, changed or deleted through the API"), ErrAuditReadOnly}
		}
	}
	if !w.assembling && w.New != nil && w.New.Type == "Bundle" && carriesAssembled(w.New.Root(), 0) {
		return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Bundle.meta.tag"},
			"the tag %s|%s marks documents the gateway assembles itself; a client cannot write it", AssembledSystem, AssembledCode)
	}
	if g.p == nil {
		return nil
	}
	for _, r := range []*fhir.Resource{w.New, w.Current} {
		if r != nil && !w.quiet {
			g.recordPatients(ctx, r)
		}
	}
	if isConsent(w.New) || isConsent(w.Current) {
		return g.checkConsentWrite(ctx, w)
	}
	switch g.p.Kind {
	case auth.KindSystem:
		return nil
	case auth.KindPatient:
		if w.New != nil && w.New.Type == "Patient" {
			if err := g.checkPatientLinks(w); err != nil {
				return err
			}
		}
		for _, r := range []*fhir.Resource{w.New, w.Current} {
			if r == nil {
				continue
			}
			if ok, err := g.ownRecord(ctx, w, r); err != nil {
				return err
			} else if !ok {
				return forbidden("a patient token may only write resources of its own record: every patient the resource is about must be itself")
			}
		}
		return nil
	case auth.KindProvider:
		if w.Current != nil {
			ok, err := g.Released(ctx, w.Current)
			if err != nil {
				return err
			}
			if !ok {
				return forbidden("this token may not change %s/%s", w.Current.Type, w.Current.ID)
			}
		}
		for _, r := range []*fhir.Resource{w.New, w.Current} {
			if r == nil {
				continue
			}
			pats, err := g.aboutPatients(ctx, w.Within, r, 0)
			if err != nil {
				return err
			}
			if len(pats) == 0 {
				continue
			}
			if ok, err := g.relationship(ctx, g.request(), pats); err != nil {
				return err
			} else if !ok {
				return forbidden("a provider writes about a patient only while the patient shares their record with it")
			}
		}
		return nil
	}
	return forbidden("this token may not write")
}

func isConsent(r *fhir.Resource) bool { return r != nil && r.Type == "Consent" }

func forbidden(format string, args ...any) error {
	return fhir.Errorf(http.StatusForbidden, "forbidden", nil, format, args...)
}

// checkConsentWrite is the rule for Consents: the patient itself, or its
// custodian, and nobody else; a Consent cannot become another type's
// resource or another patient's.
func (g *Guard) checkConsentWrite(ctx context.Context, w Write) error {
	if w.New != nil && w.Current != nil && w.New.Type != w.Current.Type {
		return forbidden("a Consent cannot be replaced by another type")
	}
	for _, r := range []*fhir.Resource{w.New, w.Current} {
		if r == nil {
			continue
		}
		patient := g.d.local(r.Root().Get("patient").Get("reference").String())
		switch g.p.Kind {
		case auth.KindPatient:
			if patient != g.p.Patient {
				return forbidden("a patient records Consents for itself only (Consent.patient must be %s)", g.p.Patient)
			}
		case auth.KindSystem:
			if !strings.HasPrefix(patient, "Patient/") {
				return fhir.Errorf(http.StatusUnprocessableEntity, "required", []string{"Consent.patient"}, "a Consent must name its patient")
			}
			ok, err := g.custodianOf(ctx, w.Within, patient)
			if err != nil {
				return err
			}
			if !ok {
				return forbidden("only the patient, or a system client configured as the patient's custodian, may write the patient's Consents")
			}
		default:
			return forbidden("Consents are the patient's: a provider never writes or changes them")
		}
	}
	if g.p.Kind == auth.KindSystem {
		// a custodian writes and changes the Consents it records on the
		// patient's behalf, never those the patient wrote
		if w.Current != nil && !g.namesOrganization(w.Current) {
			return forbidden("a custodian changes only the Consents it recorded (Consent.organization naming %s); this one is the patient's", g.p.Organization)
		}
		if w.New != nil && !g.namesOrganization(w.New) {
			return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Consent.organization"},
				"a custodian records Consents on the patient's behalf: Consent.organization must name %s", g.p.Organization)
		}
		if n, ok := g.rec.(Noter); ok && !w.quiet {
			n.Note("the Consent was recorded on the patient's behalf by its custodian " + g.p.Organization)
		}
	}
	if w.New != nil && (g.p.Kind == auth.KindPatient || grantsSharing(w.New)) {
		opts := consent.ValidateOptions{}
		if g.p.Kind == auth.KindPatient {
			opts.Patient = g.p.Patient
		}
		if issues := consent.Validate(w.New, opts); hasErrors(issues) {
			return &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
		}
	}
	return nil
}

// namesOrganization reports whether a Consent names the system client's
// organization as one of its recorders.
func (g *Guard) namesOrganization(r *fhir.Resource) bool {
	for _, o := range items(r.Root().Get("organization")) {
		if g.p.Organization != "" && g.d.local(o.Get("reference").String()) == g.p.Organization {
			return true
		}
	}
	return false
}

// custodianOf reports whether the system client is the configured
// custodian of the patient ("Patient/x").
func (g *Guard) custodianOf(ctx context.Context, within storage.Reader, patient string) (bool, error) {
	if g.p.Custodian == nil {
		return false, nil
	}
	var ids [][2]string
	if len(g.p.Custodian.IdentifierSystems) > 0 {
		_, id, _ := strings.Cut(patient, "/")
		pr, err := g.reader(within).Read(ctx, "Patient", id)
		if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrGone) {
			return false, err
		}
		if err == nil {
			for _, idf := range items(pr.Root().Get("identifier")) {
				ids = append(ids, [2]string{idf.Get("system").String(), idf.Get("value").String()})
			}
		}
	}
	return g.p.CustodianOf(patient, ids), nil
}

// grantsSharing reports whether a Consent would grant access under the
// opt-in policy (active, patient-privacy, root permit): such a Consent must
// be well-formed for the decision point to read it. Others (opt-outs,
// drafts, research consents) grant nothing here and are stored as sent.
func grantsSharing(r *fhir.Resource) bool {
	root := r.Root()
	if root.Get("status").String() != "active" || root.Get("provision").Get("type").String() != "permit" {
		return false
	}
	for _, c := range items(root.Get("scope").Get("coding")) {
		if c.Get("code").String() == "patient-privacy" {
			return true
		}
	}
	return false
}

func hasErrors(issues []fhir.Issue) bool {
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			return true
		}
	}
	return false
}

// ownRecord reports whether r is wholly of the patient's own record: it is
// about the patient and no other (a Provenance's targets, a Bundle's
// entries and a Binary's securityContext included). Resources about nobody
// are not a patient's to write, unless the gateway files them from the
// patient's own document (Filing).
func (g *Guard) ownRecord(ctx context.Context, w Write, r *fhir.Resource) (bool, error) {
	pats, err := g.aboutPatients(ctx, w.Within, r, 0)
	if err != nil {
		return false, err
	}
	self := patientID(g.p)
	if r.Type == "Patient" && r.ID == "" {
		return false, nil // a new Patient is nobody's record yet
	}
	if r.Type == "Patient" && w.filing && duplicateOf(r) == g.p.Patient {
		// a source's copy of the patient itself, as consolidation keeps it
		// when it files the patient's own document
		return true, nil
	}
	if len(pats) == 0 {
		return w.filing, nil
	}
	for _, pt := range pats {
		if pt != self {
			return false, nil
		}
	}
	return true, nil
}

// aboutPatients lists every patient r is about, following what it points
// at or holds: a Provenance's targets, a Bundle's entries, a Binary's
// securityContext. A reference that cannot be followed to this server's
// resources adds nothing; a local one that does not resolve, of a type
// that holds patient data, makes r about an unknown patient ("?").
func (g *Guard) aboutPatients(ctx context.Context, within storage.Reader, r *fhir.Resource, depth int) ([]string, error) {
	if depth > maxDepth {
		return []string{"?"}, nil
	}
	pats := g.d.patientsOf(r)
	add := func(more []string) {
		for _, pt := range more {
			if !slices.Contains(pats, pt) {
				pats = append(pats, pt)
			}
		}
	}
	switch r.Type {
	case "Bundle":
		for _, e := range items(r.Root().Get("entry")) {
			v := e.Get("resource")
			if v == nil {
				continue
			}
			res, err := fhir.FromValue(v)
			if err != nil {
				add([]string{"?"})
				continue
			}
			more, err := g.aboutPatients(ctx, within, res, depth+1)
			if err != nil {
				return nil, err
			}
			add(more)
		}
	case "Binary":
		ref := g.d.binaryContext(r)
		if ref == "" || strings.HasPrefix(ref, "Patient/") {
			break
		}
		more, err := g.referencedPatients(ctx, within, ref, depth)
		if err != nil {
			return nil, err
		}
		add(more)
	case "Provenance":
		for _, t := range items(r.Root().Get("target")) {
			ref := g.d.local(t.Get("reference").String())
			if ref == "" {
				continue
			}
			more, err := g.referencedPatients(ctx, within, ref, depth)
			if err != nil {
				return nil, err
			}
			add(more)
		}
	}
	return pats, nil
}

// referencedPatients is aboutPatients of the resource a local reference
// names.
func (g *Guard) referencedPatients(ctx context.Context, within storage.Reader, ref string, depth int) ([]string, error) {
	typ, id, _ := strings.Cut(ref, "/")
	var (
		target *fhir.Resource
		err    error
	)
	if sr, ok := g.reader(within).(storage.StubReader); ok {
		target, err = sr.ReadStub(ctx, typ, id)
	} else {
		target, err = g.reader(within).Read(ctx, typ, id)
	}
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			if g.d.holdsPatientData(typ) {
				return []string{"?"}, nil
			}
			return nil, nil
		}
		return nil, err
	}
	return g.aboutPatients(ctx, within, target, depth+1)
}

// reader is within, or the store.
func (g *Guard) reader(within storage.Reader) storage.Reader {
	if within != nil {
		return within
	}
	return g.d.store
}

// checkPatientLinks refuses a patient's write of its Patient that links it
// to another Patient it was not linked to: a link puts the Patient in the
// other's compartment, where that patient would see it.
func (g *Guard) checkPatientLinks(w Write) error {
	had := map[string]bool{}
	if w.Current != nil {
		for _, l := range items(w.Current.Root().Get("link")) {
			had[g.d.local(l.Get("other").Get("reference").String())] = true
		}
	}
	for _, l := range items(w.New.Root().Get("link")) {
		ref := g.d.local(l.Get("other").Get("reference").String())
		if ref != "" && ref != g.p.Patient && !had[ref] {
			return fhir.Errorf(http.StatusForbidden, "forbidden", []string{"Patient.link"}, "a patient token may not link its record to another patient's")
		}
	}
	return nil
}

// duplicateOf returns the local "Type/id" a consolidated copy duplicates
// (its urn:fhirgate:duplicate-of tag), or "".
func duplicateOf(r *fhir.Resource) string {
	for _, t := range items(r.Root().Get("meta").Get("tag")) {
		if t.Get("system").String() == "urn:fhirgate:duplicate-of" {
			return t.Get("code").String()
		}
	}
	return ""
}

// MayWriteRecord answers whether the caller may write into the record of
// Patient/id at all (a patient: its own; a provider: while the patient
// shares with it; a system client and a gateway without authentication:
// yes), before anything of the record is read for it: an operation that
// compares what it is given with the record ($import's demographics
// check) must not tell an unauthorised caller what the record says.
func (g *Guard) MayWriteRecord(ctx context.Context, id string) error {
	if g.p == nil {
		return nil
	}
	switch g.p.Kind {
	case auth.KindSystem:
		return nil
	case auth.KindPatient:
		if patientID(g.p) == id {
			return nil
		}
		return forbidden("a patient token may only write into its own record")
	case auth.KindProvider:
		ok, err := g.relationship(ctx, g.request(), []string{id})
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		return forbidden("a provider writes about a patient only while the patient shares their record with it")
	}
	return forbidden("this token may not write")
}
