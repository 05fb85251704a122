package validate

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
	"unicode"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// attachment checks what an Attachment states about its inline data: size
// is the number of bytes of data, and hash is the base64 SHA-1 of them
// (FHIR R4 Attachment.size, Attachment.hash). Data that is not valid
// base64 is reported by the primitive checks and not looked at here.
func (w *walker) attachment(node *fjson.Value) {
	data, size, hash := node.Get("data"), node.Get("size"), node.Get("hash")
	if hash != nil && hash.Kind == fjson.String {
		if h, err := decodeBase64(hash.Str); err == nil && len(h) != sha1.Size {
			w.push("hash", -1, "")
			w.add(fhir.SeverityError, codeValue, "hash must be the base64 SHA-1 (20 bytes) of the data",
				"hash of "+strconv.Itoa(len(h))+" bytes")
			w.pop()
			hash = nil
		}
	}
	if data == nil || data.Kind != fjson.String || size == nil && hash == nil {
		return
	}
	if size != nil && size.Kind == fjson.Number {
		n, ok := base64Len(data.Str)
		stated, err := strconv.ParseUint(size.Str, 10, 64)
		if ok && err == nil && stated != uint64(n) {
			w.push("size", -1, "")
			w.add(fhir.SeverityError, codeValue, "size does not match the size of the data",
				"size "+size.Str+", data "+strconv.Itoa(n)+" bytes")
			w.pop()
		}
	}
	if hash != nil && hash.Kind == fjson.String {
		h, err := decodeBase64(hash.Str)
		if err != nil {
			return
		}
		raw, err := decodeBase64(data.Str)
		if err != nil {
			return
		}
		if sum := sha1.Sum(raw); !bytes.Equal(sum[:], h) {
			w.push("hash", -1, "")
			w.add(fhir.SeverityError, codeValue, "hash is not the SHA-1 of the data",
				"hash "+quote(hash)+", SHA-1 of the data "+strconv.Quote(base64.StdEncoding.EncodeToString(sum[:])))
			w.pop()
		}
	}
}

// base64Len is the number of bytes that the base64 text s decodes to,
// without decoding it; ok is false when s is not a whole number of
// quads.
func base64Len(s string) (n int, ok bool) {
	chars, pad := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\r', '\n':
		case '=':
			pad++
			chars++
		default:
			chars++
		}
	}
	if chars%4 != 0 || pad > 2 {
		return 0, false
	}
	return chars/4*3 - pad, true
}

// decodeBase64 decodes standard base64, ignoring whitespace.
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, " \t\r\n") {
		s = strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s)
	}
	return base64.StdEncoding.DecodeString(s)
}

// coding checks a Coding of one of the complete code systems the
// validator ships: its code must be one of the system's codes, and its
// display, when given, one of the code's displays (compared without regard
// to case and runs of white space), as the HL7 validator does.
func (w *walker) coding(node *fjson.Value) {
	sys, code := node.Get("system"), node.Get("code")
	if sys == nil || code == nil || sys.Kind != fjson.String || code.Kind != fjson.String {
		return
	}
	codes, ok := w.m.codeSystems[sys.Str]
	if !ok {
		return
	}
	displays, ok := codes[code.Str]
	if !ok {
		w.push("code", -1, "")
		w.add(fhir.SeverityError, codeCodeInvalid, "the code is not defined in the code system "+sys.Str, "code "+quote(code))
		w.pop()
		return
	}
	disp := node.Get("display")
	if disp == nil || disp.Kind != fjson.String || len(displays) == 0 {
		return
	}
	for _, d := range displays {
		if sameDisplay(d, disp.Str) {
			return
		}
	}
	w.push("display", -1, "")
	w.add(fhir.SeverityError, codeCodeInvalid, "the display is not a display of the code in "+sys.Str,
		"display "+quote(disp)+", valid: "+strconv.Quote(strings.Join(displays, `", "`)))
	w.pop()
}

// sameDisplay compares displays without regard to case and to runs of
// white space.
func sameDisplay(a, b string) bool {
	if a == b {
		return true
	}
	return strings.EqualFold(strings.Join(strings.Fields(a), " "), strings.Join(strings.Fields(b), " "))
}
