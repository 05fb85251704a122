package ingest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/storage"
)

// dicomFile builds a DICOM Part 10 file: the file meta information, then
// the data set elements (tag, VR, value) in the transfer syntax ts
// (explicit or implicit VR little endian). A nil value with VR "SQ" is a
// sequence of undefined length holding one item of undefined length with
// one element; "OW" with a nil value is pixel data.
func dicomFile(ts string, elems []dcmElem) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 128))
	b.WriteString("DICM")
	meta := []dcmElem{
		{0x00020001, "OB", []byte{0, 1}},
		{0x00020002, "UI", []byte("1.2.840.10008.5.1.4.1.1.2")},
		{0x00020003, "UI", []byte("1.2.826.0.1.3680043.2.1125.1.3")},
		{0x00020010, "UI", []byte(ts)},
	}
	var mb bytes.Buffer
	for _, e := range meta {
		writeElem(&mb, e, false)
	}
	writeElem(&b, dcmElem{0x00020000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(mb.Len()))}, false)
	b.Write(mb.Bytes())
	implicit := ts == "1.2.840.10008.1.2"
	for _, e := range elems {
		writeElem(&b, e, implicit)
	}
	return b.Bytes()
}

type dcmElem struct {
	tag uint32
	vr  string
	val []byte
}

func writeElem(b *bytes.Buffer, e dcmElem, implicit bool) {
	v := e.val
	if len(v)%2 == 1 {
		pad := byte(' ')
		if e.vr == "UI" || e.vr == "OB" {
			pad = 0
		}
		v = append(append([]byte{}, v...), pad)
	}
	le := binary.LittleEndian
	binary.Write(b, le, uint16(e.tag>>16))
	binary.Write(b, le, uint16(e.tag))
	if e.vr == "SQ" && e.val == nil {
		if implicit {
			binary.Write(b, le, uint32(0xFFFFFFFF))
		} else {
			b.WriteString("SQ\x00\x00")
			binary.Write(b, le, uint32(0xFFFFFFFF))
		}
		// one item of undefined length with one element, then the delimiters
		binary.Write(b, le, []uint16{0xFFFE, 0xE000})
		binary.Write(b, le, uint32(0xFFFFFFFF))
		writeElem(b, dcmElem{0x00081150, "UI", []byte("1.2.840.10008.5.1.4.1.1.2")}, implicit)
		binary.Write(b, le, []uint16{0xFFFE, 0xE00D})
		binary.Write(b, le, uint32(0))
		binary.Write(b, le, []uint16{0xFFFE, 0xE0DD})
		binary.Write(b, le, uint32(0))
		return
	}
	switch {
	case implicit:
		binary.Write(b, le, uint32(len(v)))
	case e.vr == "OB" || e.vr == "OW" || e.vr == "UN" || e.vr == "UT":
		b.WriteString(e.vr + "\x00\x00")
		binary.Write(b, le, uint32(len(v)))
	default:
		b.WriteString(e.vr)
		binary.Write(b, le, uint16(len(v)))
	}
	b.Write(v)
}

const (
	studyUID  = "1.2.826.0.1.3680043.2.1125.1.1"
	seriesUID = "1.2.826.0.1.3680043.2.1125.1.2"
	sopUID    = "1.2.826.0.1.3680043.2.1125.1.3"
)

// ctSlice is one CT image of a chest study, about the person named, with
// a sequence and a private element before the tags read and pixel data
// after them.
func ctSlice(ts, name, sex, birth string) []byte {
	return dicomFile(ts, []dcmElem{
		{0x00080005, "CS", []byte("ISO_IR 100")},
		{0x00080016, "UI", []byte("1.2.840.10008.5.1.4.1.1.2")},
		{0x00080018, "UI", []byte(sopUID)},
		{0x00080020, "DA", []byte("20250314")},
		{0x00080021, "DA", []byte("20250314")},
		{0x00080030, "TM", []byte("102030.25")},
		{0x00080031, "TM", []byte("102500")},
		{0x00080050, "SH", []byte("ACC-77")},
		{0x00080060, "CS", []byte("CT")},
		{0x00080201, "SH", []byte("+0100")},
		{0x00081030, "LO", []byte("CT chest with contrast")},
		{0x0008103E, "LO", []byte("Axial 1mm")},
		{0x00081140, "SQ", nil},
		{0x00090010, "LO", []byte("PRIVATE CREATOR")},
		{0x00091001, "OB", bytes.Repeat([]byte{0xAB}, 300)},
		{0x00100010, "PN", []byte(name)},
		{0x00100020, "LO", []byte("PID-123")},
		{0x00100030, "DA", []byte(birth)},
		{0x00100040, "CS", []byte(sex)},
		{0x00180015, "CS", []byte("CHEST")},
		{0x0020000D, "UI", []byte(studyUID)},
		{0x0020000E, "UI", []byte(seriesUID)},
		{0x00200011, "IS", []byte("2")},
		{0x00200013, "IS", []byte("7")},
		{0x00280010, "US", []byte{0, 2}},
		{0x7FE00010, "OW", make([]byte, 4096)},
	})
}

// TestDICOMImagingStudy: a DICOM file is described by an ImagingStudy with
// the study, series and instance its header names (explicit and implicit
// VR), which the DocumentReference points to.
func TestDICOMImagingStudy(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatientRaw(t, st, `{"resourceType":"Patient","id":"erika","name":[{"family":"Müller","given":["Erika"]}],"gender":"female","birthDate":"1964-08-12"}`)
		im := &ingest.Importer{Store: st, Now: fixedNow}
		for _, ts := range []string{"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"} {
			body := ctSlice(ts, "M\xfcller^Erika", "F", "19640812") // Latin-1, as ISO_IR 100 says
			res, err := im.ImportFileWith(context.Background(), "erika", ingest.MediaDICOM, bytes.NewReader(body), ingest.FileMeta{Title: "Chest CT"}, ingest.Options{})
			if err != nil {
				t.Fatalf("%s: %v", ts, err)
			}
			var study, doc string
			for _, e := range res.Entries {
				if errs := validateIssues(e.Resource); len(errs) > 0 {
					t.Errorf("%s: %s does not validate: %v", ts, e.Resource.Type, errs)
				}
				switch e.Resource.Type {
				case "ImagingStudy":
					study = string(e.Resource.Raw)
					doc = "ImagingStudy/" + e.Resource.ID
				}
			}
			if study == "" {
				t.Fatalf("%s: no ImagingStudy", ts)
			}
			for _, want := range []string{
				`"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:` + studyUID + `"},{"type":{"coding":[{"code":"ACSN","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"ACC-77"}]`,
				`"started":"2025-03-14T10:20:30+01:00"`,
				`"modality":[{"code":"CT","display":"Computed Tomography","system":"http://dicom.nema.org/resources/ontology/DCM"}]`,
				`"description":"CT chest with contrast"`,
				`"uid":"` + seriesUID + `"`, `"number":2`, `"description":"Axial 1mm"`,
				`"bodySite":{"code":"51185008","display":"Thoracic structure","system":"http://snomed.info/sct"}`,
				`"started":"2025-03-14T10:25:00+01:00"`,
				`"instance":[{"number":7,"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.2","system":"urn:ietf:rfc:3986"},"uid":"` + sopUID + `"}]`,
				`"subject":{"reference":"Patient/erika"}`,
			} {
				if !bytes.Contains([]byte(study), []byte(want)) {
					t.Errorf("%s: the ImagingStudy lacks %s:\n%s", ts, want, study)
				}
			}
			related := docOf(t, res).Get("context").Get("related").Elems()
			if len(related) != 1 || related[0].Get("reference").String() != doc {
				t.Errorf("%s: the DocumentReference does not name %s", ts, doc)
			}
		}
	})
}

// TestDICOMWrongPatient: a DICOM file about someone else is refused like a
// document, and filed with the mismatch recorded when a client accepts it.
func TestDICOMWrongPatient(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatientRaw(t, st, `{"resourceType":"Patient","id":"erika","name":[{"family":"Müller","given":["Erika"]}],"gender":"female","birthDate":"1964-08-12"}`)
		im := &ingest.Importer{Store: st, Now: fixedNow}
		body := ctSlice("1.2.840.10008.1.2.1", "Schmidt^Hans", "M", "19700101")
		_, err := im.ImportFileWith(context.Background(), "erika", ingest.MediaDICOM, bytes.NewReader(body), ingest.FileMeta{}, ingest.Options{})
		var me *ingest.MismatchError
		if !errors.As(err, &me) || len(me.Mismatches) != 3 {
			t.Fatalf("%v, want a mismatch of name, birth date and sex", err)
		}
		for _, m := range me.Mismatches {
			if m.SourcePath == "" || bytes.Contains([]byte(me.Error()), []byte("Schmidt")) {
				t.Errorf("mismatch %+v / error %q", m, me.Error())
			}
		}
		if n := len(everything(t, st, "erika")["DocumentReference"]); n != 0 {
			t.Fatalf("%d DocumentReferences filed for the wrong patient", n)
		}
		res, err := im.ImportFileWith(context.Background(), "erika", ingest.MediaDICOM, bytes.NewReader(body), ingest.FileMeta{}, ingest.Options{AcceptMismatch: true, AcceptedBy: "pacs"})
		if err != nil {
			t.Fatal(err)
		}
		var provs int
		for _, e := range res.Entries {
			if e.Resource.Type == "Provenance" {
				provs++
				if !bytes.Contains(e.Resource.Raw, []byte("demographics-mismatch-accepted")) || !bytes.Contains(e.Resource.Raw, []byte(`"pacs"`)) {
					t.Errorf("Provenance without the accepted mismatch: %s", e.Resource.Raw)
				}
			}
		}
		if provs != 1 || len(res.Accepted) != 3 {
			t.Errorf("%d Provenances, %d accepted", provs, len(res.Accepted))
		}
	})
}
