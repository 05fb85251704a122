// Package ingest files records that arrive as documents or messages —
// C-CDA documents, HL7 v2 messages, FHIR Bundles, PDFs and images — into a
// patient's consolidated record.
//
// Converted resources go through consolidate exactly like pulled ones, so
// the same fact from a FHIR source and a C-CDA document is kept once with a
// Provenance naming both. Each document is its own source (named after a
// hash of its bytes: importing it again changes nothing), while HL7 v2
// messages share one source per sending facility, so that a feed does not
// add an identifier to the Patient per message.
package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Media types Import accepts.
const (
	MediaCDA      = "application/cda+xml"
	MediaHL7v2    = "x-application/hl7-v2+er7"
	MediaHL7v2Alt = "application/hl7-v2"
	MediaFHIRJSON = "application/fhir+json"
	MediaPDF      = "application/pdf"
	MediaJPEG     = "image/jpeg"
	MediaPNG      = "image/png"
	MediaDICOM    = "application/dicom"
)

// Errors Import returns, wrapped with the details. Callers map them to
// protocol answers (HTTP status, HL7 acknowledgement code).
var (
	// ErrUnsupportedMedia: a media type that is not imported.
	ErrUnsupportedMedia = errors.New("ingest: unsupported media type")
	// ErrMalformed: the input is not what its media type says (bad XML,
	// JSON or ER7, bytes that are not a PDF…).
	ErrMalformed = errors.New("ingest: malformed input")
	// ErrUnconvertible: well-formed input that cannot be converted (an
	// unsupported message type, a Bundle of several patients…).
	ErrUnconvertible = errors.New("ingest: input cannot be converted")
	// ErrNoPatient: the local Patient does not exist.
	ErrNoPatient = consolidate.ErrNoPatient
)

// Importer files documents and messages into patients' records.
type Importer struct {
	// Store receives the record. Required.
	Store storage.Store
	// Consolidator files converted resources; one over Store when nil.
	// Share the one pulls use, so batches of one patient are serialised.
	Consolidator *consolidate.Consolidator
	// Now stamps conversions and new resources; time.Now when nil.
	Now func() time.Time
	// Specialties resolves an upload's specialty (a name or code) to its
	// coding; nil: only codes are read.
	Specialties func(string) (Coding, bool)
}

// Status says what an import did to one stored resource.
type Status string

// Statuses of a Result entry.
const (
	Created   Status = "created"
	Updated   Status = "updated"
	Unchanged Status = "unchanged"
)

// Entry is one resource of the record an import wrote or touched.
type Entry struct {
	Resource *fhir.Resource
	Status   Status
}

// Result is what an import did.
type Result struct {
	// Source is the consolidation source the input was filed under.
	Source string
	// Report is consolidation's report (nil for PDFs and images, which are
	// stored as they are).
	Report *consolidate.Report
	// Entries are the stored versions of the resources the import wrote
	// or found unchanged: its own resources (duplicate copies included,
	// tagged consolidate.TagDuplicateOf), the local Patient and the
	// Provenance consolidation keeps.
	Entries []Entry
	// Issues report what was not converted or converted with a loss, and
	// validation findings. Diagnostics may hold patient data: never log
	// them.
	Issues []fhir.Issue
	// Accepted lists the contradictions between the input's demographics
	// and the Patient that Options.AcceptMismatch let through (patient
	// data: never log the values).
	Accepted []subject.Mismatch
	// Messages, for an HL7 v2 batch, say what became of each message, in
	// order; ACK is the batch acknowledgement (one ACK per message).
	Messages []MessageResult
	ACK      []byte
}

// MessageResult is what became of one message of an HL7 v2 batch.
type MessageResult struct {
	// ControlID is the message's MSH-10; Code its acknowledgement code
	// (AA, AE, AR).
	ControlID, Code string
	// Err says why it was not filed (nil when filed).
	Err error
}

// Kind is the converter a media type selects.
type Kind int

// Kinds of input.
const (
	KindNone Kind = iota
	KindCDA
	KindXML // application/xml or text/xml: C-CDA when the root is a ClinicalDocument
	KindHL7v2
	KindFHIR
	KindFile
)

// KindOf returns the kind of input a Content-Type value announces and its
// bare media type; KindNone when it is not imported.
func KindOf(contentType string) (Kind, string) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return KindNone, ""
	}
	switch mt {
	case MediaCDA:
		return KindCDA, mt
	case "application/xml", "text/xml":
		return KindXML, mt
	case MediaHL7v2, MediaHL7v2Alt, "application/x-hl7":
		return KindHL7v2, mt
	case MediaFHIRJSON, "application/json", "application/json+fhir":
		return KindFHIR, mt
	case MediaPDF, MediaJPEG, MediaPNG, MediaDICOM:
		return KindFile, mt
	}
	return KindNone, mt
}

func (im *Importer) now() time.Time {
	if im.Now != nil {
		return im.Now()
	}
	return time.Now()
}

func (im *Importer) consolidator() *consolidate.Consolidator {
	if im.Consolidator == nil {
		im.Consolidator = &consolidate.Consolidator{Store: im.Store, Now: im.Now}
	}
	return im.Consolidator
}

// Import converts body according to its Content-Type and files it into
// the record of Patient/patientID; see ImportWith.
func (im *Importer) Import(ctx context.Context, patientID, contentType string, body []byte) (*Result, error) {
	return im.ImportWith(ctx, patientID, contentType, body, Options{})
}

// ImportWith converts body according to its Content-Type and files it into
// the record of Patient/patientID. A C-CDA document, HL7 v2 message or FHIR
// Bundle whose demographics contradict the Patient is refused with a
// *MismatchError (ErrDemographicsMismatch) unless opts accepts it.
func (im *Importer) ImportWith(ctx context.Context, patientID, contentType string, body []byte, opts Options) (*Result, error) {
	kind, mt := KindOf(contentType)
	if kind == KindNone {
		return nil, fmt.Errorf("%w: %q; send %s, %s, %s, %s, %s, %s or %s", ErrUnsupportedMedia, mt, MediaCDA, MediaHL7v2, MediaFHIRJSON, MediaPDF, MediaJPEG, MediaPNG, MediaDICOM)
	}
	target, err := im.checkPatient(ctx, patientID)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindCDA, KindXML:
		return im.importCCDA(ctx, target, body, kind == KindXML, opts)
	case KindHL7v2:
		return im.importHL7v2(ctx, target, body, opts)
	case KindFHIR:
		return im.importBundle(ctx, target, body, opts)
	default:
		return im.ImportFile(ctx, patientID, mt, body)
	}
}

// checkPatient reads the local Patient an import files into.
func (im *Importer) checkPatient(ctx context.Context, id string) (*fhir.Resource, error) {
	if !fhir.ValidID(id) {
		return nil, fmt.Errorf("%w: Patient/%s", ErrNoPatient, id)
	}
	p, err := im.Store.Read(ctx, "Patient", id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			return nil, fmt.Errorf("%w: Patient/%s", ErrNoPatient, id)
		}
		return nil, err
	}
	if of := consolidate.DuplicateOf(p); of != "" {
		return nil, fmt.Errorf("%w: Patient/%s is a source's copy of %s; import into %s", ErrUnconvertible, id, of, of)
	}
	return p, nil
}

// docSource names the source of one document filed into one patient's
// record: its kind and a hash of the patient and its bytes, so that
// importing the same document again writes nothing new, while the same
// document filed for another patient makes resources of its own (it never
// rewrites the first patient's copies).
func docSource(kind, patientID string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(patientID))
	h.Write([]byte{0})
	h.Write(body)
	return "import-" + kind + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// file consolidates a batch and collects what it wrote.
func (im *Importer) file(ctx context.Context, b consolidate.Batch, issues []fhir.Issue) (*Result, error) {
	var err error
	if b.Resources, err = localAttachments(b); err != nil {
		return nil, err
	}
	refs := batchRefs(b)
	before, err := im.versions(ctx, refs)
	if err != nil {
		return nil, err
	}
	start := time.Now() // the store stamps lastUpdated with its own clock
	rep, err := im.consolidator().Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	res := &Result{Source: b.Source, Report: rep, Issues: issues}
	for _, is := range rep.Issues {
		if is.Severity == fhir.SeverityInformation {
			continue
		}
		res.Issues = append(res.Issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: is.Code, Details: &fhir.IssueDetails{Text: "validation of " + is.Resource + ": stored anyway"}, Diagnostics: is.Diagnostics, Expression: is.Expression})
	}
	if err := im.collect(ctx, res, refs, before, start); err != nil {
		return nil, err
	}
	// the Provenance kept for facts that several sources delivered
	var dedup []string
	seen := map[string]bool{}
	for _, e := range res.Entries {
		if e.Resource.Type == "Patient" || e.Resource.Type == "Provenance" {
			continue
		}
		kept := consolidate.DuplicateOf(e.Resource)
		if kept == "" {
			kept = e.Resource.Type + "/" + e.Resource.ID
		}
		if ref := "Provenance/" + consolidate.LocalID("", "Provenance", "dedup/"+kept); !seen[ref] {
			seen[ref] = true
			dedup = append(dedup, ref)
		}
	}
	if err := im.collect(ctx, res, dedup, nil, start); err != nil {
		return nil, err
	}
	return res, nil
}

// batchRefs lists the local "Type/id" a batch writes to: the local Patient,
// each resource and the source's Provenance.
func batchRefs(b consolidate.Batch) []string {
	refs := []string{"Patient/" + b.PatientID}
	seen := map[string]bool{refs[0]: true}
	for _, r := range b.Resources {
		if r.ID == "" {
			continue
		}
		ref := r.Type + "/" + consolidate.LocalID(b.Source, r.Type, r.ID)
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	return append(refs, "Provenance/"+consolidate.LocalID(b.Source, "Provenance", "pull/"+b.PatientID))
}

// versions reads the current version id of each reference ("" when absent).
func (im *Importer) versions(ctx context.Context, refs []string) (map[string]string, error) {
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		typ, id, _ := strings.Cut(ref, "/")
		r, err := im.Store.Read(ctx, typ, id)
		switch {
		case err == nil:
			out[ref] = r.VersionID
		case errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone):
		default:
			return nil, err
		}
	}
	return out, nil
}

// collect appends the stored versions of refs that exist to res. Without
// before (versions read before the write), a version written since start
// counts as created (version 1) or updated.
func (im *Importer) collect(ctx context.Context, res *Result, refs []string, before map[string]string, start time.Time) error {
	for _, ref := range refs {
		typ, id, _ := strings.Cut(ref, "/")
		r, err := im.Store.Read(ctx, typ, id)
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			continue
		} else if err != nil {
			return err
		}
		st := Unchanged
		if before != nil {
			switch v, ok := before[ref]; {
			case !ok:
				st = Created
			case v != r.VersionID:
				st = Updated
			}
		} else if !r.LastUpdated.Before(start.Add(-time.Second)) {
			st = Updated
			if r.VersionID == "1" {
				st = Created
			}
		}
		res.Entries = append(res.Entries, Entry{Resource: r, Status: st})
	}
	return nil
}

// Counts tallies the entries by status.
func (r *Result) Counts() (created, updated, unchanged int) {
	for _, e := range r.Entries {
		switch e.Status {
		case Created:
			created++
		case Updated:
			updated++
		default:
			unchanged++
		}
	}
	return
}

// localAttachments points attachment URLs "Binary/id" at the local id the
// batch's Binary gets: consolidation rewrites references, and an
// attachment URL is not one.
func localAttachments(b consolidate.Batch) ([]*fhir.Resource, error) {
	var olds, news [][]byte
	for _, r := range b.Resources {
		if r.Type == "Binary" && r.ID != "" {
			olds = append(olds, []byte(`"url":"Binary/`+r.ID+`"`))
			news = append(news, []byte(`"url":"Binary/`+consolidate.LocalID(b.Source, "Binary", r.ID)+`"`))
		}
	}
	if len(olds) == 0 {
		return b.Resources, nil
	}
	out := make([]*fhir.Resource, len(b.Resources))
	for i, r := range b.Resources {
		out[i] = r
		raw, changed := r.Raw, false
		for j := range olds {
			if bytes.Contains(raw, olds[j]) {
				raw, changed = bytes.ReplaceAll(raw, olds[j], news[j]), true
			}
		}
		if !changed {
			continue
		}
		nr, err := fhir.Parse(raw)
		if err != nil {
			return nil, err
		}
		out[i] = nr
	}
	return out, nil
}
