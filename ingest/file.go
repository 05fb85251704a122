package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// ImportFile keeps a PDF, image or DICOM object as a Binary and a
// DocumentReference in the patient's record; see ImportFileStream.
func (im *Importer) ImportFile(ctx context.Context, patientID, mediaType string, body []byte) (*Result, error) {
	return im.ImportFileStream(ctx, patientID, mediaType, bytes.NewReader(body))
}

// ImportFileStream keeps a PDF, image or DICOM object read from r as a
// Binary and a DocumentReference in the patient's record, after checking
// that its first bytes are what the media type says. With a store that
// keeps blobs (both of the gateway's do), the content streams into it and
// is never held whole in memory; the Binary the result lists is then the
// stored stub (its content is read with GET Binary/[id]). An error from r
// (a size limit) is returned as is. Importing the same bytes again
// changes nothing.
func (im *Importer) ImportFileStream(ctx context.Context, patientID, mediaType string, r io.Reader) (*Result, error) {
	return im.ImportFileMeta(ctx, patientID, mediaType, r, FileMeta{})
}

// FileMeta is what the uploader says of a file: its title, its document
// type (a LOINC code unless System names another), the date of the
// document (a FHIR date or dateTime) and the practice setting (SNOMED CT
// unless SpecialtySystem names another). Empty fields are left out.
type FileMeta struct {
	Title                      string
	TypeSystem, TypeCode       string
	Date                       string
	SpecialtySystem, Specialty string
}

// ImportFileMeta is ImportFileStream with the uploader's metadata on the
// DocumentReference: description and attachment title, type, the
// document's date as context.period (the clinical date Consents'
// dataPeriod judge it by), and context.practiceSetting. The same bytes
// uploaded again are the same document: its first metadata stays.
func (im *Importer) ImportFileMeta(ctx context.Context, patientID, mediaType string, r io.Reader, fm FileMeta) (*Result, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(132)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	if !magicOK(mediaType, head) {
		return nil, fmt.Errorf("%w: the content is not %s (its first bytes do not match)", ErrMalformed, mediaType)
	}
	if _, err := im.checkPatient(ctx, patientID); err != nil {
		return nil, err
	}
	h1, h256 := sha1.New(), sha256.New()
	tee := io.TeeReader(br, io.MultiWriter(h1, h256))
	var (
		blobID string
		inline []byte
		size   int64
	)
	if bs, ok := im.Store.(storage.Blobs); ok {
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
	source := fileSource(patientID, h256)
	binID := consolidate.LocalID(source, "Binary", "original")
	docID := consolidate.LocalID(source, "DocumentReference", "original")
	meta := map[string]any{"source": consolidate.SourceURI(source)}
	bin := map[string]any{
		"resourceType": "Binary", "id": binID, "meta": meta,
		"contentType": mediaType,
		// the document stands for the content's sensitivity: whoever may
		// see the DocumentReference may see the file
		"securityContext": map[string]any{"reference": "DocumentReference/" + docID},
	}
	if blobID == "" {
		bin["data"] = base64.StdEncoding.EncodeToString(inline)
	}
	doc := map[string]any{
		"resourceType": "DocumentReference", "id": docID, "meta": meta,
		"status":  "current",
		"subject": map[string]any{"reference": "Patient/" + patientID},
		"date":    im.now().UTC().Format("2006-01-02T15:04:05Z"),
		"content": []any{map[string]any{"attachment": map[string]any{
			"contentType": mediaType, "url": "Binary/" + binID,
			"size": size, "hash": base64.StdEncoding.EncodeToString(h1.Sum(nil)),
		}}},
	}
	fm.apply(doc)
	rs, err := resourcesOf(bin, doc)
	if err != nil {
		return nil, err
	}
	if blobID != "" {
		if rs[0], err = storage.BlobStub(rs[0], blobID); err != nil {
			return nil, err
		}
	}
	result := &Result{Source: source}
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

// apply puts the metadata on the DocumentReference being built.
func (fm FileMeta) apply(doc map[string]any) {
	att := doc["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)
	if fm.Title != "" {
		doc["description"] = fm.Title
		att["title"] = fm.Title
	}
	if fm.TypeCode != "" {
		sys := fm.TypeSystem
		if sys == "" {
			sys = "http://loinc.org"
		}
		doc["type"] = map[string]any{"coding": []any{map[string]any{"system": sys, "code": fm.TypeCode}}}
	}
	ctx := map[string]any{}
	if fm.Date != "" {
		ctx["period"] = map[string]any{"start": fm.Date, "end": fm.Date}
	}
	if fm.Specialty != "" {
		sys := fm.SpecialtySystem
		if sys == "" {
			sys = "http://snomed.info/sct"
		}
		ctx["practiceSetting"] = map[string]any{"coding": []any{map[string]any{"system": sys, "code": fm.Specialty}}}
	}
	if len(ctx) > 0 {
		doc["context"] = ctx
	}
}
