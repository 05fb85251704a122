package ingest

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/convert/subject"
)

// dicomHeader is what the gateway reads from a DICOM Part 10 file: the
// identifiers and descriptions of its study, series and instance, and its
// patient's demographics. Pixel data is never read.
type dicomHeader struct {
	studyUID, seriesUID, sopUID, sopClassUID               string
	modality, bodyPart                                     string
	studyDate, studyTime, seriesDate, seriesTime, tzOffset string
	studyDescription, seriesDescription                    string
	seriesNumber, instanceNumber                           string
	accession                                              string
	patientName, patientID, birthDate, sex                 string
}

// DICOM tags read (group<<16 | element).
const (
	tagTransferSyntax    = 0x00020010
	tagCharset           = 0x00080005
	tagSOPClassUID       = 0x00080016
	tagSOPInstanceUID    = 0x00080018
	tagStudyDate         = 0x00080020
	tagSeriesDate        = 0x00080021
	tagStudyTime         = 0x00080030
	tagSeriesTime        = 0x00080031
	tagAccession         = 0x00080050
	tagModality          = 0x00080060
	tagTimezoneOffset    = 0x00080201
	tagStudyDescription  = 0x00081030
	tagSeriesDescription = 0x0008103E
	tagPatientName       = 0x00100010
	tagPatientID         = 0x00100020
	tagBirthDate         = 0x00100030
	tagSex               = 0x00100040
	tagBodyPart          = 0x00180015
	tagStudyUID          = 0x0020000D
	tagSeriesUID         = 0x0020000E
	tagSeriesNumber      = 0x00200011
	tagInstanceNumber    = 0x00200013

	tagItem          = 0xFFFEE000
	tagItemDelim     = 0xFFFEE00D
	tagSequenceDelim = 0xFFFEE0DD
	undefinedLength  = 0xFFFFFFFF
)

// Transfer syntaxes whose data set is not explicit VR little endian.
const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitBE = "1.2.840.10008.1.2.2"
	tsDeflated   = "1.2.840.10008.1.2.1.99"
)

var errDICOMShort = errors.New("the DICOM header ends early")

// dicomReader walks the elements of a data set.
type dicomReader struct {
	b        []byte
	pos      int
	implicit bool
	bo       binary.ByteOrder
	depth    int // nesting of sequences being skipped
}

// parseDICOMHeader reads the header of a Part 10 file (preamble, "DICM",
// file meta information, then the data set up to group 0020). b may be
// only the start of the file: what is found before it ends is returned
// along with errDICOMShort.
func parseDICOMHeader(b []byte) (*dicomHeader, error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, errors.New("not a DICOM Part 10 file")
	}
	h := &dicomHeader{}
	meta := &dicomReader{b: b, pos: 132, bo: binary.LittleEndian}
	ts := ""
	// the file meta information: group 0002, explicit VR little endian
	for meta.pos+4 <= len(b) && binary.LittleEndian.Uint16(b[meta.pos:]) == 0x0002 {
		tag, val, err := meta.next()
		if err != nil {
			return h, err
		}
		if tag == tagTransferSyntax {
			ts = dicomString(val, false)
		}
	}
	ds := &dicomReader{b: b[meta.pos:], bo: binary.LittleEndian}
	switch ts {
	case tsImplicitLE:
		ds.implicit = true
	case tsExplicitBE:
		ds.bo = binary.BigEndian
	case tsDeflated:
		raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(ds.b)), 4<<20))
		if err != nil && len(raw) == 0 {
			return h, fmt.Errorf("the deflated DICOM data set cannot be read: %w", err)
		}
		ds.b = raw
	}
	utf8Charset := false
	for ds.pos < len(ds.b) {
		if ds.pos+4 > len(ds.b) {
			return h, errDICOMShort
		}
		if g := ds.bo.Uint16(ds.b[ds.pos:]); g > 0x0020 {
			break // the tags are in ascending order: all that is read is past
		}
		tag, val, err := ds.next()
		if err != nil {
			return h, err
		}
		s := func() string { return dicomString(val, utf8Charset) }
		switch tag {
		case tagCharset:
			cs := s()
			utf8Charset = strings.Contains(cs, "ISO_IR 192")
		case tagSOPClassUID:
			h.sopClassUID = s()
		case tagSOPInstanceUID:
			h.sopUID = s()
		case tagStudyDate:
			h.studyDate = s()
		case tagSeriesDate:
			h.seriesDate = s()
		case tagStudyTime:
			h.studyTime = s()
		case tagSeriesTime:
			h.seriesTime = s()
		case tagAccession:
			h.accession = s()
		case tagModality:
			h.modality = s()
		case tagTimezoneOffset:
			h.tzOffset = s()
		case tagStudyDescription:
			h.studyDescription = s()
		case tagSeriesDescription:
			h.seriesDescription = s()
		case tagPatientName:
			h.patientName = s()
		case tagPatientID:
			h.patientID = s()
		case tagBirthDate:
			h.birthDate = s()
		case tagSex:
			h.sex = s()
		case tagBodyPart:
			h.bodyPart = s()
		case tagStudyUID:
			h.studyUID = s()
		case tagSeriesUID:
			h.seriesUID = s()
		case tagSeriesNumber:
			h.seriesNumber = s()
		case tagInstanceNumber:
			h.instanceNumber = s()
		}
	}
	return h, nil
}

// next reads one element: its tag and value (nil for a sequence, which is
// skipped).
func (r *dicomReader) next() (uint32, []byte, error) {
	b := r.b
	if r.pos+8 > len(b) {
		return 0, nil, errDICOMShort
	}
	tag := uint32(r.bo.Uint16(b[r.pos:]))<<16 | uint32(r.bo.Uint16(b[r.pos+2:]))
	var vr string
	var length uint32
	switch {
	case tag == tagItem || tag == tagItemDelim || tag == tagSequenceDelim:
		length = r.bo.Uint32(b[r.pos+4:])
		r.pos += 8
	case r.implicit:
		length = r.bo.Uint32(b[r.pos+4:])
		r.pos += 8
		if length == undefinedLength {
			vr = "SQ" // implicit VR: an undefined length is a sequence
		}
	default:
		vr = string(b[r.pos+4 : r.pos+6])
		switch vr {
		case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
			if r.pos+12 > len(b) {
				return 0, nil, errDICOMShort
			}
			length = r.bo.Uint32(b[r.pos+8:])
			r.pos += 12
		default:
			length = uint32(r.bo.Uint16(b[r.pos+6:]))
			r.pos += 8
		}
	}
	if length == undefinedLength {
		// a sequence (or an encapsulated or UN value) of undefined length:
		// items until the sequence delimitation item
		if err := r.skipUndefined(); err != nil {
			return 0, nil, err
		}
		return tag, nil, nil
	}
	if uint64(r.pos)+uint64(length) > uint64(len(b)) {
		return 0, nil, errDICOMShort
	}
	val := b[r.pos : r.pos+int(length)]
	r.pos += int(length)
	if vr == "SQ" {
		val = nil
	}
	return tag, val, nil
}

// skipUndefined skips the items of a sequence of undefined length, nested
// sequences included, up to and past its delimitation item.
func (r *dicomReader) skipUndefined() error {
	if r.depth++; r.depth > 32 {
		return errors.New("the DICOM sequences nest too deep")
	}
	defer func() { r.depth-- }()
	for {
		tag, _, err := r.nextItem()
		if err != nil {
			return err
		}
		if tag == tagSequenceDelim {
			return nil
		}
	}
}

// nextItem reads one item of a sequence (skipping its content) or the
// sequence delimiter.
func (r *dicomReader) nextItem() (uint32, []byte, error) {
	if r.pos+8 > len(r.b) {
		return 0, nil, errDICOMShort
	}
	tag := uint32(r.bo.Uint16(r.b[r.pos:]))<<16 | uint32(r.bo.Uint16(r.b[r.pos+2:]))
	length := r.bo.Uint32(r.b[r.pos+4:])
	r.pos += 8
	switch tag {
	case tagSequenceDelim:
		return tag, nil, nil
	case tagItem:
		if length != undefinedLength {
			if uint64(r.pos)+uint64(length) > uint64(len(r.b)) {
				return 0, nil, errDICOMShort
			}
			r.pos += int(length)
			return tag, nil, nil
		}
		// an item of undefined length: its elements up to the item
		// delimiter
		for {
			if r.pos+4 > len(r.b) {
				return 0, nil, errDICOMShort
			}
			t, _, err := r.next()
			if err != nil {
				return 0, nil, err
			}
			if t == tagItemDelim {
				return tag, nil, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("the DICOM sequence holds an element (%08X) outside an item", tag)
}

// dicomString decodes a text value: padding and surrounding spaces
// removed, ISO 8859-1 (the usual extended repertoire) turned into UTF-8
// unless the data set is UTF-8 (ISO_IR 192).
func dicomString(v []byte, isUTF8 bool) string {
	v = bytes.TrimRight(v, "\x00 ")
	v = bytes.TrimLeft(v, " ")
	if isUTF8 || utf8.Valid(v) {
		return string(v)
	}
	rs := make([]rune, len(v))
	for i, c := range v {
		rs[i] = rune(c)
	}
	return string(rs)
}

// demographics is what the header says about the patient, for the
// wrong-patient check. DICOM's PatientID has no system the gateway can
// compare, so it is not used.
func (h *dicomHeader) demographics() subject.Demographics {
	var d subject.Demographics
	if h.patientName != "" {
		// Family^Given^Middle^Prefix^Suffix; a "=" starts the ideographic
		// and phonetic forms
		alpha, _, _ := strings.Cut(h.patientName, "=")
		parts := strings.Split(alpha, "^")
		n := subject.Name{Family: strings.TrimSpace(parts[0]), Path: "DICOM (0010,0010) PatientName"}
		for _, g := range parts[1:min(len(parts), 3)] {
			if g = strings.TrimSpace(g); g != "" {
				n.Given = append(n.Given, strings.Fields(g)...)
			}
		}
		if n.Family != "" || len(n.Given) > 0 {
			d.Names = append(d.Names, n)
		}
	}
	if bd := dicomDate(h.birthDate); bd != "" {
		d.BirthDate = subject.Value{Value: bd, Path: "DICOM (0010,0030) PatientBirthDate"}
	}
	if g := map[string]string{"M": "male", "F": "female", "O": "other"}[strings.ToUpper(h.sex)]; g != "" {
		d.Gender = subject.Value{Value: g, Path: "DICOM (0010,0040) PatientSex"}
	}
	return d
}

// dicomDate turns a DA value (YYYYMMDD) into a FHIR date; "" when it is
// not one.
func dicomDate(da string) string {
	if len(da) != 8 || !isDigits(da) {
		return ""
	}
	d := da[:4] + "-" + da[4:6] + "-" + da[6:]
	if !validDateTime(d) {
		return ""
	}
	return d
}

// dicomDateTime joins a DA and a TM (HHMMSS.frac) into a FHIR dateTime:
// with the time only when the offset from UTC is known (FHIR requires a
// zone with a time).
func dicomDateTime(da, tm, tz string) string {
	d := dicomDate(da)
	if d == "" {
		return ""
	}
	if len(tm) < 4 || !isDigits(tm[:4]) || len(tz) != 5 || (tz[0] != '+' && tz[0] != '-') || !isDigits(tz[1:]) {
		return d
	}
	sec := "00"
	if len(tm) >= 6 && isDigits(tm[4:6]) {
		sec = tm[4:6]
	}
	dt := d + "T" + tm[:2] + ":" + tm[2:4] + ":" + sec + tz[:3] + ":" + tz[3:]
	if !validDateTime(dt) {
		return d
	}
	return dt
}

// dicomModalities are the DICOM modality codes (CID 29 and the values of
// (0008,0060)) the gateway names.
var dicomModalities = map[string]string{
	"CR": "Computed Radiography", "CT": "Computed Tomography", "DX": "Digital Radiography",
	"ECG": "Electrocardiography", "ES": "Endoscopy", "IO": "Intra-oral Radiography",
	"MG": "Mammography", "MR": "Magnetic Resonance", "NM": "Nuclear Medicine",
	"OCT": "Optical Coherence Tomography", "OP": "Ophthalmic photography", "PT": "Positron emission tomography",
	"PX": "Panoramic X-Ray", "RF": "Radio Fluoroscopy", "SM": "Slide Microscopy", "US": "Ultrasound",
	"XA": "X-Ray Angiography", "XC": "External-camera Photography", "BMD": "Bone Mineral Densitometry",
	"OT": "Other", "SR": "SR Document", "DOC": "Document",
}

// dicomBodyParts map Body Part Examined values to SNOMED CT.
var dicomBodyParts = map[string]Coding{
	"CHEST":    {systemSNOMED, "51185008", "Thoracic structure"},
	"HEAD":     {systemSNOMED, "69536005", "Head structure"},
	"BRAIN":    {systemSNOMED, "12738006", "Brain structure"},
	"ABDOMEN":  {systemSNOMED, "113345001", "Abdominal structure"},
	"PELVIS":   {systemSNOMED, "12921003", "Pelvic structure"},
	"NECK":     {systemSNOMED, "45048000", "Neck structure"},
	"HEART":    {systemSNOMED, "80891009", "Heart structure"},
	"BREAST":   {systemSNOMED, "76752008", "Breast structure"},
	"KNEE":     {systemSNOMED, "72696002", "Knee region structure"},
	"SHOULDER": {systemSNOMED, "16982005", "Shoulder region structure"},
	"HAND":     {systemSNOMED, "85562004", "Hand structure"},
	"FOOT":     {systemSNOMED, "56459004", "Foot structure"},
}

// imagingStudy describes the file's study, series and instance; nil when
// the header lacks the UIDs that identify them.
func (h *dicomHeader) imagingStudy(id, patientID string, meta map[string]any) map[string]any {
	if !validUID(h.studyUID) || !validUID(h.seriesUID) {
		return nil
	}
	st := map[string]any{
		"resourceType": "ImagingStudy", "id": id, "meta": meta,
		"identifier":     []any{map[string]any{"system": "urn:dicom:uid", "value": "urn:oid:" + h.studyUID}},
		"status":         "available",
		"subject":        map[string]any{"reference": "Patient/" + patientID},
		"numberOfSeries": 1, "numberOfInstances": 1,
	}
	if h.accession != "" {
		st["identifier"] = append(st["identifier"].([]any), map[string]any{
			"type":  map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}}},
			"value": h.accession})
	}
	if t := dicomDateTime(h.studyDate, h.studyTime, h.tzOffset); t != "" {
		st["started"] = t
	}
	if h.studyDescription != "" {
		st["description"] = h.studyDescription
	}
	series := map[string]any{"uid": h.seriesUID, "numberOfInstances": 1}
	if h.modality != "" {
		m := map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": h.modality}
		if d := dicomModalities[h.modality]; d != "" {
			m["display"] = d
		}
		st["modality"] = []any{m}
		series["modality"] = m
	} else {
		series["modality"] = map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "OT", "display": "Other"}
	}
	if n, err := strconv.ParseUint(h.seriesNumber, 10, 31); err == nil {
		series["number"] = n
	}
	if h.seriesDescription != "" {
		series["description"] = h.seriesDescription
	}
	if h.bodyPart != "" {
		if c, ok := dicomBodyParts[strings.ToUpper(h.bodyPart)]; ok {
			series["bodySite"] = map[string]any{"system": c.System, "code": c.Code, "display": c.Display}
		} else {
			series["bodySite"] = map[string]any{"display": h.bodyPart}
		}
	}
	if t := dicomDateTime(h.seriesDate, h.seriesTime, h.tzOffset); t != "" {
		series["started"] = t
	}
	if validUID(h.sopUID) && validUID(h.sopClassUID) {
		inst := map[string]any{"uid": h.sopUID, "sopClass": map[string]any{"system": "urn:ietf:rfc:3986", "code": "urn:oid:" + h.sopClassUID}}
		if n, err := strconv.ParseUint(h.instanceNumber, 10, 31); err == nil {
			inst["number"] = n
		}
		series["instance"] = []any{inst}
	}
	st["series"] = []any{series}
	return st
}

// validUID reports whether s is a DICOM UID (digits and dots, at most 64)
// that FHIR's id and oid types accept.
func validUID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}
