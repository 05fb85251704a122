package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// ImportFile keeps a PDF, image or DICOM object as a Binary and a
// DocumentReference in the patient's record; see ImportFileWith.
func (im *Importer) ImportFile(ctx context.Context, patientID, mediaType string, body []byte) (*Result, error) {
	return im.ImportFileWith(ctx, patientID, mediaType, bytes.NewReader(body), FileMeta{}, Options{})
}

// ImportFileStream is ImportFileWith without metadata or options.
func (im *Importer) ImportFileStream(ctx context.Context, patientID, mediaType string, r io.Reader) (*Result, error) {
	return im.ImportFileWith(ctx, patientID, mediaType, r, FileMeta{}, Options{})
}

// ImportFileMeta is ImportFileWith without options.
func (im *Importer) ImportFileMeta(ctx context.Context, patientID, mediaType string, r io.Reader, meta FileMeta) (*Result, error) {
	return im.ImportFileWith(ctx, patientID, mediaType, r, meta, Options{})
}

// dicomHeaderBytes is how much of a DICOM file is looked at for its
// header (the tags read come before the pixel data, in ascending order).
const dicomHeaderBytes = 1 << 20

// ImportFileWith keeps a PDF, image or DICOM object read from r as a
// Binary and a DocumentReference in the patient's record, after checking
// that its first bytes are what the media type says. The DocumentReference
// carries meta (title, type, date, specialty: the document's date is its
// context.period, the clinical date Consents' dataPeriod judge it by)
// and, for JPEG and PNG
// images and PDFs, a second content attachment: a thumbnail generated
// from the image or the PDF's first page. A DICOM file is read for its
// study, series, modality and body part, described by an ImagingStudy
// that the DocumentReference names, and its patient's demographics are
// checked against the Patient as a document's are (opts may accept a
// mismatch).
//
// With a store that keeps blobs (both of the gateway's do), the content
// streams into it and is never held whole in memory (a thumbnail reads it
// back); the Binary the result lists is then the stored stub (its content
// is read with GET Binary/[id]). An error from r (a size limit) is
// returned as is. Importing the same bytes again stores nothing new,
// except the metadata given this time, which updates the
// DocumentReference.
func (im *Importer) ImportFileWith(ctx context.Context, patientID, mediaType string, r io.Reader, meta FileMeta, opts Options) (*Result, error) {
	bufSize := 64 << 10
	if mediaType == MediaDICOM {
		bufSize = dicomHeaderBytes
	}
	br := bufio.NewReaderSize(r, bufSize)
	head, err := br.Peek(132)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	if !magicOK(mediaType, head) {
		return nil, fmt.Errorf("%w: the content is not %s (its first bytes do not match)", ErrMalformed, mediaType)
	}
	dm, err := im.resolveMeta(meta)
	if err != nil {
		return nil, err
	}
	target, err := im.checkPatient(ctx, patientID)
	if err != nil {
		return nil, err
	}
	var (
		issues   []fhir.Issue
		dcm      *dicomHeader
		accepted []subject.Mismatch
	)
	if mediaType == MediaDICOM {
		hb, err := br.Peek(dicomHeaderBytes)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		h, perr := parseDICOMHeader(hb)
		if perr != nil && !errors.Is(perr, errDICOMShort) {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: "incomplete",
				Details: &fhir.IssueDetails{Text: "the DICOM header could not be read to its end: " + perr.Error()}})
		}
		if h != nil {
			if accepted, err = checkSubject(target, h.demographics(), opts); err != nil {
				return nil, err
			}
			dcm = h
		}
	}
	h1, h256 := sha1.New(), sha256.New()
	tee := io.TeeReader(br, io.MultiWriter(h1, h256))
	var (
		blobID string
		inline []byte
		size   int64
	)
	bs, blobs := im.Store.(storage.Blobs)
	if blobs {
		info, err := bs.PutBlob(ctx, tee)
		if err != nil {
			return nil, err
		}
		blobID, size = info.ID, info.Size
	} else {
		if inline, err = io.ReadAll(tee); err != nil {
			return nil, err
		}
		size = int64(len(inline))
	}
	var thumb *thumbnail
	switch mediaType {
	case MediaJPEG, MediaPNG, MediaPDF:
		open := func() (io.ReadCloser, error) {
			if blobID != "" {
				rc, _, err := bs.OpenBlob(ctx, blobID)
				return rc, err
			}
			return io.NopCloser(bytes.NewReader(inline)), nil
		}
		var terr error
		if thumb, terr = makeThumbnail(ctx, mediaType, open, size); terr != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational",
				Details: &fhir.IssueDetails{Text: "no thumbnail: " + terr.Error()}})
		}
	}
	source := fileSource(patientID, h256)
	binID := consolidate.LocalID(source, "Binary", "original")
	docID := consolidate.LocalID(source, "DocumentReference", "original")
	metaSource := map[string]any{"source": consolidate.SourceURI(source)}
	bin := map[string]any{
		"resourceType": "Binary", "id": binID, "meta": metaSource,
		"contentType": mediaType,
		// the document stands for the content's sensitivity: whoever may
		// see the DocumentReference may see the file
		"securityContext": map[string]any{"reference": "DocumentReference/" + docID},
	}
	if blobID == "" {
		bin["data"] = base64.StdEncoding.EncodeToString(inline)
	}
	doc := map[string]any{
		"resourceType": "DocumentReference", "id": docID, "meta": metaSource,
		"status":  "current",
		"subject": map[string]any{"reference": "Patient/" + patientID},
		"date":    im.now().UTC().Format("2006-01-02T15:04:05Z"),
		"content": []any{map[string]any{"attachment": map[string]any{
			"contentType": mediaType, "url": "Binary/" + binID,
			"size": size, "hash": base64.StdEncoding.EncodeToString(h1.Sum(nil)),
		}}},
	}
	var study map[string]any
	if dcm != nil {
		study = dcm.imagingStudy(consolidate.LocalID(source, "ImagingStudy", "original"), patientID, metaSource)
		if study == nil {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: "incomplete",
				Details: &fhir.IssueDetails{Text: "the DICOM header names no valid study and series UIDs: no ImagingStudy was made"}})
		}
	}
	applyDocMeta(doc, dm, thumb, study)
	maps := []map[string]any{bin, doc}
	if study != nil {
		maps = append(maps, study)
	}
	rs, err := resourcesOf(maps...)
	if err != nil {
		return nil, err
	}
	if blobID != "" {
		if rs[0], err = storage.BlobStub(rs[0], blobID); err != nil {
			return nil, err
		}
	}
	if rs, err = recordAcceptance(rs, false, accepted, opts.AcceptedBy, source, im.now().UTC().Format("2006-01-02T15:04:05Z")); err != nil {
		return nil, err
	}
	result := &Result{Source: source, Issues: issues, Accepted: accepted}
	err = im.Store.InTx(ctx, func(tx storage.Tx) error {
		result.Entries = result.Entries[:0]
		// the same file uploaded twice at once (to two replicas) is filed
		// once: the second waits here, then finds it
		if err := tx.Lock(ctx, consolidate.PatientLock(patientID)); err != nil {
			return err
		}
		if _, err := tx.Read(ctx, "Patient", patientID); err != nil {
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
				return fmt.Errorf("%w: Patient/%s", ErrNoPatient, patientID)
			}
			return err
		}
		for _, r := range rs {
			// the Binary is looked at without its content: no need to load
			// a file to learn that it is there
			ex, err := readStub(ctx, tx, r.Type, r.ID)
			switch {
			case err == nil:
				if r.Type == "DocumentReference" {
					upd, err := updatedDoc(ex, dm, thumb, study)
					if err != nil {
						return err
					}
					if upd != nil {
						stored, _, err := tx.Update(ctx, upd, storage.UpdateOptions{IfMatch: ex.VersionID})
						if err != nil {
							return err
						}
						result.Entries = append(result.Entries, Entry{Resource: stored, Status: Updated})
						continue
					}
				}
				result.Entries = append(result.Entries, Entry{Resource: ex, Status: Unchanged})
				continue
			case errors.Is(err, storage.ErrNotFound):
			default:
				return err // a deleted copy stays deleted
			}
			stored, err := tx.Create(ctx, r)
			if err != nil {
				return err
			}
			result.Entries = append(result.Entries, Entry{Resource: stored, Status: Created})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// thumbnailTitle starts the title of every thumbnail attachment.
const thumbnailTitle = "Thumbnail"

// applyDocMeta puts an upload's metadata, thumbnail and ImagingStudy into
// its DocumentReference (as JSON values).
func applyDocMeta(doc map[string]any, dm docMeta, thumb *thumbnail, study map[string]any) {
	content, _ := doc["content"].([]any)
	if len(content) == 0 {
		return
	}
	first, _ := content[0].(map[string]any)
	att, _ := first["attachment"].(map[string]any)
	if dm.title != "" {
		doc["description"] = dm.title
		if att != nil {
			att["title"] = dm.title
		}
	}
	if dm.typ != nil {
		doc["type"] = codeableConcept(dm.typ)
	}
	ctxv, _ := doc["context"].(map[string]any)
	if ctxv == nil {
		ctxv = map[string]any{}
	}
	if dm.date != "" {
		ctxv["period"] = map[string]any{"start": dm.date, "end": dm.date}
	}
	if dm.specialty != nil {
		ctxv["practiceSetting"] = codeableConcept(dm.specialty)
	}
	if study != nil {
		ref := "ImagingStudy/" + study["id"].(string)
		related, _ := ctxv["related"].([]any)
		found := false
		for _, r := range related {
			if m, ok := r.(map[string]any); ok && m["reference"] == ref {
				found = true
			}
		}
		if !found {
			ctxv["related"] = append(related, map[string]any{"reference": ref})
		}
	}
	if len(ctxv) > 0 {
		doc["context"] = ctxv
	}
	if thumb != nil && !hasThumbnail(content) {
		sum := sha1.Sum(thumb.data)
		doc["content"] = append(content, map[string]any{"attachment": map[string]any{
			"contentType": thumb.contentType,
			"data":        base64.StdEncoding.EncodeToString(thumb.data),
			"size":        len(thumb.data),
			"hash":        base64.StdEncoding.EncodeToString(sum[:]),
			"title":       thumb.title,
		}})
	}
}

func hasThumbnail(content []any) bool {
	for _, c := range content[min(1, len(content)):] {
		m, _ := c.(map[string]any)
		att, _ := m["attachment"].(map[string]any)
		if t, _ := att["title"].(string); strings.HasPrefix(t, thumbnailTitle) {
			return true
		}
	}
	return false
}

func codeableConcept(c *Coding) map[string]any {
	cc := map[string]any{}
	if c.Code != "" {
		coding := map[string]any{"system": c.System, "code": c.Code}
		if c.Display != "" {
			coding["display"] = c.Display
		}
		cc["coding"] = []any{coding}
	}
	if c.Display != "" {
		cc["text"] = c.Display
	}
	return cc
}

// updatedDoc is the stored DocumentReference of a file uploaded again
// with what this upload adds (metadata, a thumbnail it lacked, its
// ImagingStudy), or nil when that changes nothing.
func updatedDoc(ex *fhir.Resource, dm docMeta, thumb *thumbnail, study map[string]any) (*fhir.Resource, error) {
	dec := json.NewDecoder(bytes.NewReader(ex.Raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	before, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	applyDocMeta(doc, dm, thumb, study)
	after, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(before, after) {
		return nil, nil
	}
	if m, ok := doc["meta"].(map[string]any); ok {
		delete(m, "versionId")
		delete(m, "lastUpdated")
	}
	rs, err := resourcesOf(doc)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// readStub reads a resource inside tx, a Binary without inlining its
// content when the transaction can.
func readStub(ctx context.Context, tx storage.Tx, typ, id string) (*fhir.Resource, error) {
	if st, ok := tx.(storage.StubReader); ok {
		return st.ReadStub(ctx, typ, id)
	}
	return tx.Read(ctx, typ, id)
}

// fileSource is the consolidation source of an uploaded file: derived
// from its content, as docSource is for documents.
func fileSource(patientID string, h256 hash.Hash) string {
	h := sha256.New()
	h.Write([]byte(patientID))
	h.Write([]byte{0})
	h.Write(h256.Sum(nil))
	return "import-file-" + strings.ToLower(hex.EncodeToString(h.Sum(nil)[:8]))
}
