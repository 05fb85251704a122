package server

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/gin-gonic/gin"
)

var (
	// a FHIR date or dateTime (R4 primitive regexes)
	fhirDate = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	// a code (R4 code: no leading or trailing space, single spaces)
	fhirCode = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)
)

// maxTitle bounds an uploaded file's title (characters).
const maxTitle = 500

// fileMeta reads what the uploader of a file says of it: the query
// parameters title, type, date and specialty of $import, or the headers
// X-Title, X-Document-Type, X-Document-Date and X-Specialty (a header's
// value is percent-decoded, so that any title travels in one). A value
// that is not what its parameter takes answers 400 naming it.
func fileMeta(c *gin.Context) (ingest.FileMeta, error) {
	var fm ingest.FileMeta
	q := c.Request.URL.Query()
	get := func(param, header string) (string, error) {
		if vs, ok := q[param]; ok {
			if len(vs) > 1 {
				return "", fhir.Errorf(http.StatusBadRequest, "value", []string{param}, "%s is given more than once", param)
			}
			return strings.TrimSpace(vs[0]), nil
		}
		return strings.TrimSpace(percentDecode(c.GetHeader(header))), nil
	}
	bad := func(param, format string, args ...any) error {
		return fhir.Errorf(http.StatusBadRequest, "value", []string{param}, format, args...)
	}
	var err error
	if fm.Title, err = get("title", "X-Title"); err != nil {
		return fm, err
	}
	if !utf8.ValidString(fm.Title) || utf8.RuneCountInString(fm.Title) > maxTitle || strings.ContainsFunc(fm.Title, func(r rune) bool { return r < 0x20 && r != '\t' }) {
		return fm, bad("title", "title must be at most %d characters of text", maxTitle)
	}
	typ, err := get("type", "X-Document-Type")
	if err != nil {
		return fm, err
	}
	if typ != "" {
		sys, code, ok := strings.Cut(typ, "|")
		if !ok {
			sys, code = "", typ
		}
		if !fhirCode.MatchString(code) || (sys == "" && !loincCode.MatchString(code)) || (ok && !absoluteURI(sys)) {
			return fm, bad("type", "type must be a LOINC code (11488-4) or system|code")
		}
		fm.TypeSystem, fm.TypeCode = sys, code
	}
	if fm.Date, err = get("date", "X-Document-Date"); err != nil {
		return fm, err
	}
	if fm.Date != "" && !fhirDate.MatchString(fm.Date) {
		return fm, bad("date", "date must be a FHIR date or dateTime (2025-03-14, 2025-03-14T09:30:00Z)")
	}
	spec, err := get("specialty", "X-Specialty")
	if err != nil {
		return fm, err
	}
	if spec != "" {
		sys, code, ok := strings.Cut(spec, "|")
		if !ok {
			sys, code = "", spec
		}
		if !fhirCode.MatchString(code) || (ok && !absoluteURI(sys)) {
			return fm, bad("specialty", "specialty must be a SNOMED CT code or system|code")
		}
		fm.SpecialtySystem, fm.Specialty = sys, code
	}
	return fm, nil
}

var loincCode = regexp.MustCompile(`^[0-9]{1,7}-[0-9]$`)

// percentDecode decodes %XX escapes of a header value; a malformed escape
// leaves the value as sent.
func percentDecode(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// absoluteURI says whether s can name a code system.
func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && !strings.ContainsAny(s, " \t")
}
