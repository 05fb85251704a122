package fjson

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// LimitError says which bound of Limits a document exceeded.
type LimitError struct {
	// What is "values" or "depth".
	What string
	// Max is the bound that was exceeded.
	Max int
}

func (e *LimitError) Error() string {
	if e.What == "depth" {
		return fmt.Sprintf("the JSON nests deeper than %d levels", e.Max)
	}
	return fmt.Sprintf("the JSON holds more than %d values", e.Max)
}

// CheckLimits reports whether a document stays within maxValues values
// (objects, arrays, strings, numbers, literals; keys are not counted) and
// maxDepth levels of nesting, without building anything: a pass over the
// bytes that stops at the first bound exceeded. A parsed tree costs about
// a hundred bytes per value (more once validated and indexed), so a body
// of many tiny values costs far more memory than its size suggests;
// checking first keeps that cost bounded. Syntax is not checked (Parse
// does that); a malformed document is answered nil or a LimitError.
// A bound of 0 or less is no bound. It returns the number of values.
func CheckLimits(data []byte, maxValues, maxDepth int) (int, error) {
	values, depth := 0, 0
	count := func() error {
		values++
		if maxValues > 0 && values > maxValues {
			return &LimitError{What: "values", Max: maxValues}
		}
		return nil
	}
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if err := count(); err != nil {
				return values, err
			}
			depth++
			if maxDepth > 0 && depth > maxDepth {
				return values, &LimitError{What: "depth", Max: maxDepth}
			}
		case '}', ']':
			depth--
		case ' ', '\n', '\r', '\t':
			// indentation comes in runs: eight spaces at a time, then
			// whatever whitespace is left
			for i+9 <= len(data) && binary.LittleEndian.Uint64(data[i+1:]) == eightSpaces {
				i += 8
			}
			for i+1 < len(data) && (data[i+1] == ' ' || data[i+1] == '\n' || data[i+1] == '\r' || data[i+1] == '\t') {
				i++
			}
		case '"':
			// skip the string (to the first quote not escaped: one after
			// an even run of backslashes), then tell a key (followed by
			// ':') from a value
			i = stringEnd(data, i)
			j := i + 1
			for j < len(data) && (data[j] == ' ' || data[j] == '\t' || data[j] == '\n' || data[j] == '\r') {
				j++
			}
			if j < len(data) && data[j] == ':' {
				continue
			}
			if err := count(); err != nil {
				return values, err
			}
		case 't', 'f', 'n':
			if err := count(); err != nil {
				return values, err
			}
			for i+1 < len(data) && data[i+1] >= 'a' && data[i+1] <= 'z' {
				i++
			}
		default:
			if c == '-' || (c >= '0' && c <= '9') {
				if err := count(); err != nil {
					return values, err
				}
				for i+1 < len(data) && isNumberByte(data[i+1]) {
					i++
				}
			}
		}
	}
	return values, nil
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

const eightSpaces = 0x20 * ones

// stringEnd returns the index of the quote that closes the string opened
// at data[open], or len(data) if none does. It looks for quotes with
// bytes.IndexByte (a body is mostly strings, and this is the scan's
// hot loop) and counts the backslashes before each.
func stringEnd(data []byte, open int) int {
	for i := open + 1; ; i++ {
		k := bytes.IndexByte(data[i:], '"')
		if k < 0 {
			return len(data)
		}
		i += k
		esc := 0
		for j := i - 1; j > open && data[j] == '\\'; j-- {
			esc++
		}
		if esc%2 == 0 {
			return i
		}
	}
}
