package fjson

import "fmt"

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
		case '"':
			// skip the string, then tell a key (followed by ':') from a value
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
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
