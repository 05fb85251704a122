package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

func (s *Server) registerImport() {
	cons := s.cfg.Consolidator
	if cons == nil {
		cons = &consolidate.Consolidator{Store: s.cfg.Store, Now: s.now}
	}
	im := &ingest.Importer{Store: s.cfg.Store, Consolidator: cons, Now: s.now, Specialties: specialtyCoding}
	s.RegisterOperation(Operation{
		Name:     "import",
		Instance: true, Types: []string{"Patient"},
		Handler: func(c *gin.Context, _, id string) { s.importRecord(c, im, id) },
	})
}

// importRecord answers POST Patient/[id]/$import: the raw body (C-CDA,
// HL7 v2, a FHIR Bundle, a PDF or image) is converted and filed into the
// patient's consolidated record. The answer is a collection Bundle: an
// OperationOutcome of what was not converted first, then every resource
// the import created, updated or found unchanged.
func (s *Server) importRecord(c *gin.Context, im *ingest.Importer, id string) {
	_, err := s.authorize(c, "operation", "import", "Patient")
	if err != nil {
		s.fail(c, err)
		return
	}
	// whether the caller may write into this record is decided before
	// anything of it is read (the demographics check compares the document
	// with the Patient, and its answer names what the record says)
	if err := s.guard(c).MayWriteRecord(c.Request.Context(), id); err != nil {
		accessOf(c).refused = "import into a record the token may not write"
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.resource = "Patient/" + id
	a.patients["Patient/"+id] = true // an import is an access to the patient's record
	opts, err := importOptions(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	meta, err := fileMeta(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ct := c.GetHeader("Content-Type")
	kind, mt := ingest.KindOf(ct)
	if kind == ingest.KindNone {
		s.fail(c, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil,
			"Content-Type %q cannot be imported; send %s, %s, %s, %s, %s, %s or %s", ct,
			ingest.MediaCDA, ingest.MediaHL7v2, ingest.MediaFHIRJSON, ingest.MediaPDF, ingest.MediaJPEG, ingest.MediaPNG, ingest.MediaDICOM))
		return
	}
	// the gateway files the document on the caller's behalf: what it
	// writes is checked inside the filing transaction (release.Checked),
	// and may include what the document says of nobody in particular
	ctx := release.Filing(c.Request.Context())
	var res *ingest.Result
	if kind == ingest.KindFile {
		// files stream into the store, within their own limit
		if c.Request.ContentLength > s.cfg.MaxUploadBytes {
			s.fail(c, uploadTooLarge(s.cfg.MaxUploadBytes))
			return
		}
		res, err = im.ImportFileWith(ctx, id, mt, &limitedBody{r: c.Request.Body, left: s.cfg.MaxUploadBytes, limit: s.cfg.MaxUploadBytes}, meta, opts)
	} else {
		if !meta.Empty() {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "not-supported", nil,
				"title, type, date and specialty describe uploaded files (PDF, JPEG, PNG, DICOM); a document or message carries its own"))
			return
		}
		var body []byte
		if body, err = s.readBody(c); err != nil {
			s.fail(c, err)
			return
		}
		res, err = im.ImportWith(ctx, id, ct, body, opts)
	}
	if err != nil {
		if errors.Is(err, ingest.ErrDemographicsMismatch) {
			a.refused = "the document's demographics contradict the patient's"
		}
		s.fail(c, importError(err, id))
		return
	}
	if len(res.Accepted) > 0 {
		a.note = fmt.Sprintf("the client accepted %d contradictions between the document's demographics and the patient's", len(res.Accepted))
	}
	out := fjson.AppendString([]byte(`{"resourceType":"Bundle","type":"collection","timestamp":`), fhir.FormatInstant(s.now()))
	out = append(out, `,"entry":[{"fullUrl":`...)
	out = fjson.AppendString(out, "urn:uuid:"+uuid.NewString())
	out = append(out, `,"resource":`...)
	out = append(out, res.Outcome().JSON()...)
	out = append(out, '}')
	base := s.baseURL(c.Request)
	for _, e := range res.Entries {
		out = append(out, `,{"fullUrl":`...)
		out = fjson.AppendString(out, base+"/"+e.Resource.Type+"/"+e.Resource.ID)
		out = append(out, `,"resource":`...)
		out = append(out, e.Resource.Raw...)
		out = append(out, '}')
	}
	if res.ACK != nil {
		// an HL7 v2 batch: its acknowledgement, one ACK per message, as the
		// sender would have had it over MLLP (not stored)
		out = append(out, `,{"fullUrl":`...)
		out = fjson.AppendString(out, "urn:uuid:"+uuid.NewString())
		out = append(out, `,"resource":{"resourceType":"Binary","contentType":"x-application/hl7-v2+er7","data":`...)
		out = fjson.AppendString(out, base64.StdEncoding.EncodeToString(res.ACK))
		out = append(out, "}}"...)
	}
	out = append(out, "]}"...)
	s.writeJSON(c, http.StatusOK, out)
}

// importError maps ingest errors to HTTP: input problems are the client's
// (4xx with the reason), anything else goes through errorStatus.
func importError(err error, id string) error {
	if me := (*ingest.MismatchError)(nil); errors.As(err, &me) {
		return mismatchOutcome(me, id)
	}
	if me := (*ingest.MetaError)(nil); errors.As(err, &me) {
		return fhir.Errorf(http.StatusBadRequest, "value", []string{me.Field}, "%s %s", me.Field, me.Why)
	}
	switch {
	case errors.Is(err, ingest.ErrNoPatient):
		return fhir.Errorf(http.StatusNotFound, "not-found", nil, "Patient/%s is not known", id)
	case errors.Is(err, ingest.ErrUnsupportedMedia):
		return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "%s", err.Error())
	case errors.Is(err, ingest.ErrMalformed):
		return fhir.Errorf(http.StatusBadRequest, "structure", nil, "%s", err.Error())
	case errors.Is(err, ingest.ErrUnconvertible):
		return fhir.Errorf(http.StatusUnprocessableEntity, "processing", nil, "%s", err.Error())
	}
	return err
}

// mismatchOutcome is the 422 of a wrong-patient import: one issue per
// contradiction, located in the document and in the Patient, with both
// values in the diagnostics (the caller may import into this Patient, so
// may see it; the values never reach a log), then how to override.
func mismatchOutcome(me *ingest.MismatchError, id string) error {
	issues := make([]fhir.Issue, 0, len(me.Mismatches)+1)
	for _, m := range me.Mismatches {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: "business-rule",
			Details:     &fhir.IssueDetails{Text: "demographics mismatch: " + m.Element},
			Diagnostics: m.String(),
			Expression:  []string{m.SourcePath, m.TargetPath}})
	}
	issues = append(issues, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational", Details: &fhir.IssueDetails{Text: fmt.Sprintf(
		"nothing was filed into Patient/%s; a system client that has checked it is the same person may file it with demographicsMismatch=accept", id)}})
	return &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
}

// importOptions reads $import's query parameters: demographicsMismatch
// (refuse, the default, or accept, for system clients only).
func importOptions(c *gin.Context) (ingest.Options, error) {
	var opts ingest.Options
	vals := c.Request.URL.Query()["demographicsMismatch"]
	if len(vals) == 0 {
		return opts, nil
	}
	if len(vals) > 1 {
		return opts, fhir.Errorf(http.StatusBadRequest, "invalid", []string{"demographicsMismatch"}, "demographicsMismatch is given %d times", len(vals))
	}
	switch vals[0] {
	case "refuse":
		return opts, nil
	case "accept":
	default:
		return opts, fhir.Errorf(http.StatusBadRequest, "invalid", []string{"demographicsMismatch"}, "demographicsMismatch must be accept or refuse")
	}
	p := principal(c)
	if p != nil && p.Kind != auth.KindSystem && p.Kind != auth.KindAnonymous {
		accessOf(c).refused = "only a system client may accept a demographics mismatch"
		return opts, fhir.Errorf(http.StatusForbidden, "forbidden", []string{"demographicsMismatch"}, "only a system client may file a document whose demographics contradict the patient's")
	}
	opts.AcceptMismatch = true
	if p != nil {
		opts.AcceptedBy = p.ClientID
	}
	return opts, nil
}

func uploadTooLarge(limit int64) error {
	return fhir.Errorf(http.StatusRequestEntityTooLarge, "too-long", nil, "the file is larger than the upload limit of %d bytes", limit)
}

// limitedBody reads a request body and fails with 413 once it has given
// more than limit bytes (a body without Content-Length, or one longer
// than it said).
type limitedBody struct {
	r           io.Reader
	left, limit int64
	err         error
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.err = uploadTooLarge(l.limit)
		return 0, l.err
	}
	if err != nil && !errors.Is(err, io.EOF) {
		// the client went away or sent a broken body
		l.err = fhir.BadRequest("could not read the request body")
		return n, l.err
	}
	return n, err
}

// specialtyCoding resolves an upload's specialty against the gateway's
// specialties: their short name or display ("cardiology"), or one of their
// codes (a SNOMED CT code, or system|code).
func specialtyCoding(s string) (ingest.Coding, bool) {
	sys, code, qualified := strings.Cut(s, "|")
	for _, sp := range referral.Specialties() {
		match := strings.EqualFold(s, sp.Code) || strings.EqualFold(s, sp.Display) ||
			qualified && sys == referral.SpecialtySystem && code == sp.Code
		for _, c := range sp.Codes {
			if qualified && c.System == sys && c.Code == code || !qualified && c.Code == s {
				match = true
			}
		}
		if !match {
			continue
		}
		for _, c := range sp.Codes {
			if c.System == "http://snomed.info/sct" {
				return ingest.Coding{System: c.System, Code: c.Code, Display: sp.Display}, true
			}
		}
		return ingest.Coding{System: referral.SpecialtySystem, Code: sp.Code, Display: sp.Display}, true
	}
	return ingest.Coding{}, false
}

// fileBinary answers POST /Binary whose content comes with upload metadata
// (title, type, date, specialty): the file is filed into the record of the
// Patient that X-Security-Context names, as Patient/[id]/$import files it
// (a DocumentReference carrying the metadata and a thumbnail, an
// ImagingStudy for DICOM, the demographics check). The answer is the
// Binary (201 when new, 200 when the same bytes were already there), its
// DocumentReference in a Link header (rel="describedby").
func (s *Server) fileBinary(c *gin.Context, meta ingest.FileMeta) {
	sc := strings.TrimSpace(c.GetHeader("X-Security-Context"))
	typ, id, ok := strings.Cut(sc, "/")
	if !ok || typ != "Patient" || !fhir.ValidID(id) {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"Binary.securityContext"},
			"a Binary with a title, type, date or specialty is filed into a patient's record: X-Security-Context must name the Patient (Patient/[id])"))
		return
	}
	kind, mt := ingest.KindOf(c.GetHeader("Content-Type"))
	if kind != ingest.KindFile {
		s.fail(c, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil,
			"a Binary with a title, type, date or specialty is a file: send %s, %s, %s or %s", ingest.MediaPDF, ingest.MediaJPEG, ingest.MediaPNG, ingest.MediaDICOM))
		return
	}
	if err := s.guard(c).MayWriteRecord(c.Request.Context(), id); err != nil {
		accessOf(c).refused = "upload into a record the token may not write"
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.patients["Patient/"+id] = true
	opts, err := importOptions(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if c.Request.ContentLength > s.cfg.MaxUploadBytes {
		s.fail(c, uploadTooLarge(s.cfg.MaxUploadBytes))
		return
	}
	im := &ingest.Importer{Store: s.cfg.Store, Now: s.now, Specialties: specialtyCoding}
	res, err := im.ImportFileWith(release.Filing(c.Request.Context()), id, mt,
		&limitedBody{r: c.Request.Body, left: s.cfg.MaxUploadBytes, limit: s.cfg.MaxUploadBytes}, meta, opts)
	if err != nil {
		if errors.Is(err, ingest.ErrDemographicsMismatch) {
			a.refused = "the file's demographics contradict the patient's"
		}
		s.fail(c, importError(err, id))
		return
	}
	if len(res.Accepted) > 0 {
		a.note = fmt.Sprintf("the client accepted %d contradictions between the file's demographics and the patient's", len(res.Accepted))
	}
	var bin, doc *ingest.Entry
	for i := range res.Entries {
		switch res.Entries[i].Resource.Type {
		case "Binary":
			bin = &res.Entries[i]
		case "DocumentReference":
			doc = &res.Entries[i]
		}
	}
	if bin == nil || doc == nil {
		s.fail(c, errors.New("the upload was filed without its Binary or DocumentReference"))
		return
	}
	a.resource = "Binary/" + bin.Resource.ID
	status := http.StatusOK
	if bin.Status == ingest.Created {
		status = http.StatusCreated
		c.Header("Location", s.location(c, bin.Resource))
	}
	c.Header("Link", "<"+s.baseURL(c.Request)+"/DocumentReference/"+doc.Resource.ID+`>; rel="describedby"`)
	s.writeResult(c, status, bin.Resource, "Binary/"+bin.Resource.ID+" filed with DocumentReference/"+doc.Resource.ID)
}
