package ingest

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidMeta: an upload's metadata (title, type, date, specialty) is
// not usable; the error is a *MetaError naming the field. Nothing was
// filed.
var ErrInvalidMeta = errors.New("ingest: invalid upload metadata")

// MetaError says which field of an upload's metadata is not usable, and
// why (never with its value).
type MetaError struct {
	Field, Why string
}

func (e *MetaError) Error() string { return fmt.Sprintf("%s: %s %s", ErrInvalidMeta, e.Field, e.Why) }

// Is makes errors.Is(err, ErrInvalidMeta) hold.
func (e *MetaError) Is(target error) bool { return target == ErrInvalidMeta }

// FileMeta is what the uploader says of a file. Every field is optional;
// what is given is carried by the file's DocumentReference.
type FileMeta struct {
	// Title names the document (DocumentReference.description and the
	// attachment's title), at most 500 characters.
	Title string
	// TypeSystem and TypeCode are the document type
	// (DocumentReference.type): a LOINC code, its check digit verified,
	// when TypeSystem is "" or LOINC's; any system's code otherwise.
	TypeSystem, TypeCode string
	// Date is when the content was made: a FHIR date or dateTime
	// (DocumentReference.context.period).
	Date string
	// SpecialtySystem and Specialty are the clinical specialty it comes
	// from (DocumentReference.context.practiceSetting): without a system,
	// one of the gateway's specialty names or codes (Importer.Specialties)
	// or a SNOMED CT code; with one, that system's code.
	SpecialtySystem, Specialty string
}

// Empty reports whether no field is given.
func (m FileMeta) Empty() bool {
	return m.Title == "" && m.TypeCode == "" && m.Date == "" && m.Specialty == ""
}

// Coding is a code of a code system with its display.
type Coding struct {
	System, Code, Display string
}

// LOINC and SNOMED CT, as FHIR names them.
const (
	systemLOINC  = "http://loinc.org"
	systemSNOMED = "http://snomed.info/sct"
)

// docMeta is FileMeta checked and resolved.
type docMeta struct {
	title     string
	typ       *Coding
	date      string
	specialty *Coding // Code "" when only the text is known
}

// resolveMeta checks an upload's metadata and resolves its codes; errors
// are *MetaError.
func (im *Importer) resolveMeta(m FileMeta) (docMeta, error) {
	var d docMeta
	bad := func(field, why string) (docMeta, error) {
		return docMeta{}, &MetaError{Field: field, Why: why}
	}
	for _, f := range []struct{ name, v string }{{"title", m.Title}, {"type", m.TypeSystem + m.TypeCode}, {"date", m.Date}, {"specialty", m.SpecialtySystem + m.Specialty}} {
		if !utf8.ValidString(f.v) || strings.IndexFunc(f.v, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) >= 0 {
			return bad(f.name, "must be text without control characters")
		}
	}
	if t := strings.TrimSpace(m.Title); t != "" {
		if utf8.RuneCountInString(t) > 500 {
			return bad("title", "must be at most 500 characters")
		}
		d.title = t
	}
	if code := strings.TrimSpace(m.TypeCode); code != "" {
		switch sys := m.TypeSystem; {
		case sys == "" || sys == systemLOINC:
			if !ValidLOINC(code) {
				return bad("type", "is not a LOINC code (nnnnn-c with its check digit)")
			}
			d.typ = &Coding{System: systemLOINC, Code: code, Display: DocumentTypes[code]}
		case !strings.Contains(sys, ":") || strings.ContainsAny(sys+code, " \t"):
			return bad("type", "must be system|code with an absolute system URI")
		default:
			d.typ = &Coding{System: sys, Code: code}
		}
	}
	if t := strings.TrimSpace(m.Date); t != "" {
		if !validDateTime(t) {
			return bad("date", "must be a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)")
		}
		d.date = t
	}
	if code := strings.TrimSpace(m.Specialty); code != "" {
		c, err := im.resolveSpecialty(m.SpecialtySystem, code)
		if err != nil {
			return bad("specialty", err.Error())
		}
		d.specialty = c
	}
	return d, nil
}

// resolveSpecialty reads a specialty: a name or code the Specialties hook
// knows, system|code, or a SNOMED CT code.
func (im *Importer) resolveSpecialty(sys, code string) (*Coding, error) {
	key := code
	if sys != "" {
		key = sys + "|" + code
	}
	if im.Specialties != nil {
		if c, ok := im.Specialties(key); ok {
			return &c, nil
		}
	}
	switch {
	case strings.ContainsAny(code, " \t"):
		return nil, errors.New("must be a code")
	case sys != "":
		if !strings.Contains(sys, ":") {
			return nil, errors.New("must be system|code with an absolute system URI")
		}
		return &Coding{System: sys, Code: code}, nil
	case isDigits(code) && len(code) >= 6 && len(code) <= 18:
		return &Coding{System: systemSNOMED, Code: code}, nil
	}
	return nil, errors.New("must be one of the gateway's specialties, a SNOMED CT code or system|code")
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ValidLOINC reports whether code is a LOINC code: digits, a hyphen and
// the mod-10 check digit LOINC computes over them.
func ValidLOINC(code string) bool {
	num, check, ok := strings.Cut(code, "-")
	if !ok || len(check) != 1 || !isDigits(num) || !isDigits(check) || len(num) > 7 {
		return false
	}
	sum := 0
	for i := 0; i < len(num); i++ {
		d := int(num[len(num)-1-i] - '0')
		if i%2 == 0 { // the rightmost digit and every second one to its left
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return (10-sum%10)%10 == int(check[0]-'0')
}

// validDateTime reports whether s is a FHIR date or dateTime.
func validDateTime(s string) bool {
	for _, layout := range []string{"2006", "2006-01", "2006-01-02", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05.999999999Z07:00"} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

// DocumentTypes are the LOINC document types the gateway knows by name
// (the US Core clinical note types and other common kinds of document);
// any other LOINC code is accepted without a display.
var DocumentTypes = map[string]string{
	"11488-4": "Consult note",
	"18842-5": "Discharge summary",
	"34117-2": "History and physical note",
	"28570-0": "Procedure note",
	"11506-3": "Progress note",
	"18748-4": "Diagnostic imaging study",
	"11502-2": "Laboratory report",
	"11526-1": "Pathology study",
	"34133-9": "Summary of episode note",
	"57133-1": "Referral note",
	"60591-5": "Patient summary Document",
	"57833-6": "Prescription for medication",
	"11524-6": "EKG study",
	"18745-0": "Cardiac catheterization study",
	"34111-5": "Emergency department Note",
	"18761-7": "Transfer summary note",
	"47420-5": "Functional status assessment note",
	"11504-8": "Surgical operation note",
	"18841-7": "Hospital consultations Document",
	"26436-6": "Laboratory studies (set)",
	"18726-0": "Radiology studies (set)",
	"42348-3": "Advance directives",
	"56445-0": "Medication summary Document",
	"48765-2": "Allergies and adverse reactions Document",
	"11369-6": "History of Immunization Narrative",
	"10160-0": "History of Medication use Narrative",
	"18776-5": "Plan of care note",
	"34109-9": "Note",
	"68608-9": "Summary note",
	"34108-1": "Outpatient Note",
	"11485-0": "Anesthesia records",
	"15508-5": "Labor and delivery records",
	"18743-5": "Autopsy report",
	"34895-3": "Education note",
	"47039-3": "Hospital Admission history and physical note",
	"28655-9": "Physician attending Discharge summary",
	"11490-0": "Physician Discharge summary",
	"18747-6": "CT study",
	"18755-9": "MRI study",
	"18760-9": "Ultrasound study",
	"18752-6": "Exercise stress test study",
	"11522-0": "Echocardiography study",
	"18746-8": "Colonoscopy study",
	"18751-8": "Endoscopy study",
	"11529-5": "Surgical pathology study",
	"18782-3": "Radiology Study observation (narrative)",
}
