package validate

import (
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// The checks below implement the R4 regular expressions of the primitive
// types (kept in the model as Model.Regexes and compared with these
// functions in the tests) without the regexp package, which would be the
// validator's main cost, plus what the expressions cannot say: calendar
// validity of dates, the 32-bit range of integers, padding of base64.

// maxStringLen is the R4 limit on string length (1 MiB characters).
const maxStringLen = 1024 * 1024

// primProblem describes what is wrong with a primitive value, in words that
// never contain the value itself; "" means the value is valid.
type primProblem string

func checkPrimitive(p prim, v *fjson.Value) (problem primProblem, warning primProblem) {
	switch p {
	case primBoolean:
		if v.Kind != fjson.Bool {
			return "a boolean must be a JSON true or false", ""
		}
		return "", ""
	case primInteger, primPositiveInt, primUnsignedInt:
		if v.Kind != fjson.Number {
			return "an integer must be a JSON number", ""
		}
		return checkInteger(p, v.Str), ""
	case primDecimal:
		// JSON's number grammar is exactly the R4 decimal expression.
		if v.Kind != fjson.Number {
			return "a decimal must be a JSON number", ""
		}
		return "", ""
	}
	if v.Kind != fjson.String {
		return "must be a JSON string", ""
	}
	s := v.Str
	if s == "" {
		return "empty strings are not allowed; omit the element instead", ""
	}
	switch p {
	case primString, primMarkdown:
		return checkString(s)
	case primCode:
		if !isCode(s) {
			return "not a valid code: no leading, trailing or repeated whitespace allowed", ""
		}
	case primID:
		if !isID(s) {
			return "not a valid id: 1 to 64 of A-Z, a-z, 0-9, '-' and '.'", ""
		}
	case primURI, primURL, primCanonical:
		if strings.ContainsAny(s, " \t\n\r\f\v") {
			return "a URI must not contain whitespace", ""
		}
	case primOID:
		if !isOID(s) {
			return "not a valid OID: urn:oid: followed by a dotted number", ""
		}
	case primUUID:
		if !isUUID(s) {
			return "not a valid UUID: urn:uuid: followed by a lower-case UUID", ""
		}
	case primDate:
		if !isDate(s) {
			return "not a valid date: YYYY, YYYY-MM or YYYY-MM-DD", ""
		}
	case primDateTime:
		if !isDateTime(s) {
			if len(s) > 10 && s[10] == 'T' && !hasZone(s) {
				return "not a valid dateTime: a dateTime with a time must have a time zone", ""
			}
			return "not a valid dateTime: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss)(Z|+hh:mm)", ""
		}
	case primInstant:
		if !isInstant(s) {
			return "not a valid instant: YYYY-MM-DDThh:mm:ss(.sss)(Z|+hh:mm)", ""
		}
	case primTime:
		if !isTime(s) {
			return "not a valid time: hh:mm:ss(.sss)", ""
		}
	case primBase64Binary:
		if !isBase64(s) {
			return "not a valid base64 value", ""
		}
	case primXHTML:
		if msg := checkXHTML(s); msg != "" {
			return primProblem(msg), ""
		}
	}
	return "", ""
}

func checkString(s string) (problem, warning primProblem) {
	if len(s) > maxStringLen && utf8.RuneCountInString(s) > maxStringLen {
		return "a string must not be longer than 1 MiB characters", ""
	}
	blank := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\v' || c == '\f':
			// [ \r\n\t\S]+ excludes the other whitespace characters.
			return "a string must not contain vertical tab or form feed characters", ""
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case c < 0x20:
			warning = "a string should not contain control characters other than tab, carriage return and line feed"
			blank = false
		default:
			blank = false
		}
	}
	if blank {
		return "", "a string should contain non-whitespace content"
	}
	return "", warning
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// isCode implements [^\s]+(\s[^\s]+)*.
func isCode(s string) bool {
	if s == "" || isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// isID implements [A-Za-z0-9\-\.]{1,64}.
func isID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits(s string, n int) bool {
	if len(s) < n {
		return false
	}
	for i := 0; i < n; i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func num2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

// checkInteger implements -?([0]|([1-9][0-9]*)), [1-9][0-9]* and
// [0]|([1-9][0-9]*) and the 32-bit range of the three integer types.
func checkInteger(p prim, s string) primProblem {
	neg := strings.HasPrefix(s, "-")
	d := s
	if neg {
		d = s[1:]
	}
	ok := d != "" && (d == "0" || d[0] >= '1' && d[0] <= '9')
	for i := 0; ok && i < len(d); i++ {
		ok = isDigit(d[i])
	}
	if !ok {
		return "not a valid integer: no fraction, exponent or leading zeros"
	}
	big := len(d) > 10 || len(d) == 10 && d > "2147483647"
	if neg && len(d) == 10 && d == "2147483648" {
		big = false
	}
	switch {
	case big:
		return "an integer must be within the 32-bit signed range"
	case p == primPositiveInt && (neg || d == "0"):
		return "a positiveInt must be 1 or more"
	case p == primUnsignedInt && neg:
		return "an unsignedInt must not be negative"
	}
	return ""
}

// isYear implements ([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000),
// that is four digits other than 0000.
func isYear(s string) bool { return digits(s, 4) && s[:4] != "0000" }

func leap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// dateLen checks the date part YYYY(-MM(-DD)?)? at the start of s and returns
// its length, or -1.
func dateLen(s string) int {
	if !isYear(s) {
		return -1
	}
	if len(s) == 4 || s[4] != '-' {
		return 4
	}
	if !digits(s[5:], 2) {
		return -1
	}
	mo := num2(s[5:])
	if mo < 1 || mo > 12 {
		return -1
	}
	if len(s) == 7 || s[7] != '-' {
		return 7
	}
	if !digits(s[8:], 2) {
		return -1
	}
	d := num2(s[8:])
	y := int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[mo]
	if mo == 2 && leap(y) {
		days = 29
	}
	if d < 1 || d > days {
		return -1
	}
	return 10
}

func isDate(s string) bool { return dateLen(s) == len(s) }

// timeLen checks hh:mm:ss(.s+)? at the start of s and returns its length,
// or -1.
func timeLen(s string) int {
	if len(s) < 8 || !digits(s, 2) || s[2] != ':' || !digits(s[3:], 2) || s[5] != ':' || !digits(s[6:], 2) {
		return -1
	}
	if num2(s) > 23 || num2(s[3:]) > 59 || num2(s[6:]) > 60 {
		return -1
	}
	n := 8
	if n < len(s) && s[n] == '.' {
		n++
		start := n
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == start {
			return -1
		}
	}
	return n
}

func isTime(s string) bool { return timeLen(s) == len(s) }

// isZone implements Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00).
func isZone(s string) bool {
	if s == "Z" {
		return true
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || !digits(s[1:], 2) || s[3] != ':' || !digits(s[4:], 2) {
		return false
	}
	h, m := num2(s[1:]), num2(s[4:])
	return h <= 13 && m <= 59 || h == 14 && m == 0
}

func hasZone(s string) bool {
	return strings.HasSuffix(s, "Z") || strings.LastIndexAny(s, "+-") > 10
}

func isDateTime(s string) bool {
	n := dateLen(s)
	if n < 0 {
		return false
	}
	if n == len(s) {
		return true
	}
	if n != 10 || s[10] != 'T' {
		return false
	}
	t := timeLen(s[11:])
	return t > 0 && isZone(s[11+t:])
}

func isInstant(s string) bool {
	return dateLen(s) == 10 && len(s) > 10 && isDateTime(s)
}

// isOID implements urn:oid:[0-2](\.(0|[1-9][0-9]*))+.
func isOID(s string) bool {
	rest, ok := strings.CutPrefix(s, "urn:oid:")
	if !ok || len(rest) < 3 || rest[0] < '0' || rest[0] > '2' || rest[1] != '.' {
		return false
	}
	for _, part := range strings.Split(rest[2:], ".") {
		if part == "" || len(part) > 1 && part[0] == '0' {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !isDigit(part[i]) {
				return false
			}
		}
	}
	return true
}

// isUUID implements urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}.
func isUUID(s string) bool {
	rest, ok := strings.CutPrefix(s, "urn:uuid:")
	return ok && isBareUUID(rest)
}

func isBareUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(isDigit(c) || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '+' || c == '/'
}

// isBase64 implements (\s*([0-9a-zA-Z\+/=]){4}\s*)+ and, stricter than the
// expression, allows '=' only as padding at the end.
func isBase64(s string) bool {
	groups := 0
	padded := false
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return groups > 0
		}
		if padded || len(s)-i < 4 {
			return false
		}
		g := s[i : i+4]
		for j := 0; j < 4; j++ {
			c := g[j]
			switch {
			case isB64(c):
				if padded {
					return false
				}
			case c == '=' && j >= 2:
				padded = true
			default:
				return false
			}
		}
		if padded && g[3] != '=' {
			return false
		}
		groups++
		i += 4
	}
}

// checkXHTML checks that a narrative is a well-formed XHTML div. It does not
// check the allowed element and attribute lists of the narrative rules.
func checkXHTML(s string) string {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	depth := 0
	seenRoot := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "the narrative is not well-formed XHTML"
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if seenRoot {
					return "the narrative must be a single div element"
				}
				if t.Name.Local != "div" || t.Name.Space != "http://www.w3.org/1999/xhtml" {
					return "the narrative must be a div element in the XHTML namespace"
				}
				seenRoot = true
			}
			switch strings.ToLower(t.Name.Local) {
			case "script", "object", "applet", "embed", "form", "iframe", "frame", "frameset", "input", "base", "link", "meta", "style", "title", "head", "body", "html":
				return "the narrative contains an element that is not allowed (scripts, forms, frames, head elements)"
			}
			for _, a := range t.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
					return "the narrative contains an event handler attribute"
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return "the narrative has text outside its div"
			}
		case xml.ProcInst, xml.Directive:
			return "the narrative must not contain processing instructions or directives"
		}
	}
	if !seenRoot {
		return "the narrative must be a div element"
	}
	return ""
}

// isMediaType checks a BCP 13 media type (the mimetypes value set, which a
// code list cannot enumerate). The short forms xml, json and ttl are allowed
// where CapabilityStatement.format uses them.
func isMediaType(s string) bool {
	switch s {
	case "xml", "json", "ttl":
		return true
	}
	mt, _, err := mime.ParseMediaType(s)
	return err == nil && strings.Contains(mt, "/")
}
