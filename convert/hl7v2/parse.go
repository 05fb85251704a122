// Package hl7v2 parses HL7 version 2 messages (2.3 to 2.8, ER7 encoding) and
// converts ADT A01/A04/A08, ORU R01, VXU V04 and MDM T02 into FHIR R4
// resources; ACK builds the acknowledgement a receiver answers with.
//
// The parser honours the encoding characters MSH declares, escape sequences
// (\F\ \S\ \T\ \R\ \E\ \Xhh…\ and formatting escapes), repetitions,
// components and sub-components, segments separated by CR, LF or CRLF, and a
// leading byte-order mark, as real feeds send them.
package hl7v2

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Parse errors. Every error Parse returns wraps ErrMalformed and one of the
// more specific ones.
var (
	ErrMalformed     = errors.New("hl7v2: malformed message")
	ErrNoMSH         = errors.New("hl7v2: message does not start with an MSH segment")
	ErrEncodingChars = errors.New("hl7v2: bad encoding characters")
	ErrTruncated     = errors.New("hl7v2: truncated message")
	ErrBadSegment    = errors.New("hl7v2: bad segment")
)

// MaxSegments bounds the segments of one message.
const MaxSegments = 100000

// Delimiters are a message's separators, from MSH-1 and MSH-2.
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent byte
}

// Message is a parsed message.
type Message struct {
	Delims   Delimiters
	Segments []*Segment
}

// Segment is one segment; Fields[0] is the segment name, so Fields[n] is
// field n (for MSH, Fields[1] is MSH-1, the field separator itself).
type Segment struct {
	Name   string
	Fields []Field
}

// Field is a field's repetitions.
type Field []Repetition

// Repetition is one repetition's components.
type Repetition []Component

// Component is one component's sub-components (unescaped).
type Component []string

// Parse parses one ER7-encoded message.
func Parse(data []byte) (*Message, error) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	data = bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(data, []byte("MSH")) {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, ErrNoMSH)
	}
	d, err := readDelimiters(data)
	if err != nil {
		return nil, err
	}
	m := &Message{Delims: d}
	// one string for the whole message: fields are substrings of it
	text := string(data)
	m.Segments = make([]*Segment, 0, strings.Count(text, "\r")+1)
	for len(text) > 0 {
		i := strings.IndexAny(text, "\r\n")
		line := text
		if i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		line = strings.TrimRight(line, " \t")
		if len(line) == 0 {
			continue
		}
		if len(m.Segments) >= MaxSegments {
			return nil, fmt.Errorf("%w: more than %d segments", ErrMalformed, MaxSegments)
		}
		seg, err := m.parseSegment(line, len(m.Segments) == 0)
		if err != nil {
			return nil, fmt.Errorf("%w: segment %d: %w", ErrMalformed, len(m.Segments)+1, err)
		}
		m.Segments = append(m.Segments, seg)
	}
	msh := m.Segments[0]
	if msh.Get(9, 1) == "" || msh.Get(10, 1) == "" || msh.Get(12, 1) == "" {
		return nil, fmt.Errorf("%w: %w: MSH lacks message type, control id or version (MSH-9, -10, -12)", ErrMalformed, ErrTruncated)
	}
	return m, nil
}

// readDelimiters reads the delimiters a header segment (MSH, FHS, BHS)
// declares in its first two fields.
func readDelimiters(data []byte) (Delimiters, error) {
	name := string(data[:3])
	if len(data) < 8 {
		return Delimiters{}, fmt.Errorf("%w: %w: %s ends before its encoding characters", ErrMalformed, ErrTruncated, name)
	}
	fs := data[3]
	end := bytes.IndexByte(data[4:], fs)
	if end < 0 {
		return Delimiters{}, fmt.Errorf("%w: %w: %s ends after its encoding characters", ErrMalformed, ErrTruncated, name)
	}
	enc := data[4 : 4+end]
	// 2.7+ adds a fifth, truncation character.
	if len(enc) != 4 && len(enc) != 5 {
		return Delimiters{}, fmt.Errorf("%w: %w: %d characters in %s-2, want 4", ErrMalformed, ErrEncodingChars, len(enc), name)
	}
	seen := map[byte]bool{fs: true}
	for _, ch := range append([]byte{fs}, enc...) {
		if ch == '\r' || ch == '\n' || ch == ' ' || (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') {
			return Delimiters{}, fmt.Errorf("%w: %w: %q cannot be a delimiter", ErrMalformed, ErrEncodingChars, ch)
		}
	}
	for _, ch := range enc {
		if seen[ch] {
			return Delimiters{}, fmt.Errorf("%w: %w: %q used twice", ErrMalformed, ErrEncodingChars, ch)
		}
		seen[ch] = true
	}
	return Delimiters{Field: fs, Component: enc[0], Repetition: enc[1], Escape: enc[2], Subcomponent: enc[3]}, nil
}

// parseHeader parses a header segment (FHS, BHS) with the delimiters it
// declares.
func parseHeader(line []byte) (*Segment, Delimiters, error) {
	d, err := readDelimiters(line)
	if err != nil {
		return nil, d, err
	}
	m := &Message{Delims: d}
	seg, err := m.parseSegment("MSH"+string(line[3:]), true)
	if err != nil {
		return nil, d, err
	}
	seg.Name = string(line[:3])
	seg.Fields[0] = Field{{{seg.Name}}}
	return seg, d, nil
}

func validName(n string) bool {
	if len(n) != 3 || n[0] < 'A' || n[0] > 'Z' {
		return false
	}
	for _, ch := range n[1:] {
		if !(ch >= 'A' && ch <= 'Z') && !(ch >= '0' && ch <= '9') {
			return false
		}
	}
	return true
}

func (m *Message) parseSegment(line string, first bool) (*Segment, error) {
	d := m.Delims
	if len(line) < 3 || !validName(line[:3]) || (len(line) > 3 && line[3] != d.Field) {
		n := min(len(line), 3)
		return nil, fmt.Errorf("%w: bad segment name %q", ErrBadSegment, line[:n])
	}
	name := line[:3]
	if !first && name == "MSH" {
		return nil, fmt.Errorf("%w: second MSH (send a batch with FHS/BHS, or one message per frame)", ErrBadSegment)
	}
	seg := &Segment{Name: name}
	nf := strings.Count(line, string(d.Field)) + 2
	seg.Fields = make([]Field, 1, nf)
	seg.Fields[0] = Field{{{name}}}
	rest := ""
	if len(line) > 3 {
		rest = line[4:]
	}
	if name == "MSH" {
		// MSH-1 is the separator and MSH-2 the encoding characters, taken as is.
		seg.Fields = append(seg.Fields, Field{{{string(d.Field)}}})
		enc, after, found := strings.Cut(rest, string(d.Field))
		seg.Fields = append(seg.Fields, Field{{{enc}}})
		if !found {
			return seg, nil
		}
		rest = after
	} else if len(line) == 3 {
		return seg, nil
	}
	for {
		f, after, found := strings.Cut(rest, string(d.Field))
		seg.Fields = append(seg.Fields, m.parseField(f))
		if !found {
			break
		}
		rest = after
	}
	return seg, nil
}

// parseField splits a field into repetitions, components and
// sub-components in one pass, with one allocation per level: the strings
// are substrings of the message (unescaped ones aside).
func (m *Message) parseField(p string) Field {
	if len(p) == 0 {
		return nil
	}
	d := m.Delims
	nr, nc, ns := 1, 1, 1
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case d.Repetition:
			nr++
			nc++
			ns++
		case d.Component:
			nc++
			ns++
		case d.Subcomponent:
			ns++
		}
	}
	reps := make([]Repetition, nr)
	comps := make([]Component, nc)
	subs := make([]string, ns)
	ri, ci, si := 0, 0, 0
	repStart, compStart, start := 0, 0, 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) {
			if c := p[i]; c != d.Repetition && c != d.Component && c != d.Subcomponent {
				continue
			}
		}
		subs[si] = m.unescape(p[start:i])
		si++
		start = i + 1
		if i < len(p) && p[i] == d.Subcomponent {
			continue
		}
		comps[ci] = subs[compStart:si:si]
		ci++
		compStart = si
		if i < len(p) && p[i] == d.Component {
			continue
		}
		reps[ri] = comps[repStart:ci:ci]
		ri++
		repStart = ci
	}
	return reps
}

// unescape resolves escape sequences; unknown ones are kept as they are.
func (m *Message) unescape(s string) string {
	esc := m.Delims.Escape
	if strings.IndexByte(s, esc) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != esc {
			b.WriteByte(s[i])
			continue
		}
		j := strings.IndexByte(s[i+1:], esc)
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		seq := s[i+1 : i+1+j]
		switch {
		case seq == "F":
			b.WriteByte(m.Delims.Field)
		case seq == "S":
			b.WriteByte(m.Delims.Component)
		case seq == "T":
			b.WriteByte(m.Delims.Subcomponent)
		case seq == "R":
			b.WriteByte(m.Delims.Repetition)
		case seq == "E":
			b.WriteByte(esc)
		case len(seq) > 1 && seq[0] == 'X':
			raw, err := hex.DecodeString(seq[1:])
			if err != nil {
				b.WriteString(s[i : i+2+j])
			} else {
				b.Write(raw)
			}
		case seq == ".br":
			b.WriteByte('\n')
		case seq == "H" || seq == "N":
			// highlighting on/off: no plain-text equivalent
		case len(seq) > 0 && seq[0] == '.':
			// other formatting commands (.sp, .in, …): dropped from plain text
		default:
			b.WriteString(s[i : i+2+j])
		}
		i += 1 + j
	}
	return b.String()
}

// Segment returns the first segment with this name, nil if none.
func (m *Message) Segment(name string) *Segment {
	for _, s := range m.Segments {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Type returns the message code, trigger event and version (MSH-9.1, 9.2, 12.1).
func (m *Message) Type() (code, trigger, version string) {
	msh := m.Segments[0]
	return msh.Get(9, 1), msh.Get(9, 2), msh.Get(12, 1)
}

// ControlID returns MSH-10.
func (m *Message) ControlID() string { return m.Segments[0].Get(10, 1) }

// Field returns field n (nil when absent).
func (s *Segment) Field(n int) Field {
	if s == nil || n < 0 || n >= len(s.Fields) {
		return nil
	}
	return s.Fields[n]
}

// Get returns the first sub-component of component c of the first
// repetition of field n ("" when absent).
func (s *Segment) Get(n, c int) string { return s.Field(n).Rep(0).Comp(c) }

// Rep returns repetition i (0-based), nil when absent.
func (f Field) Rep(i int) Repetition {
	if i < 0 || i >= len(f) {
		return nil
	}
	return f[i]
}

// Comp returns the first sub-component of component c (1-based).
func (r Repetition) Comp(c int) string { return r.Sub(c, 1) }

// Sub returns sub-component s of component c (both 1-based).
func (r Repetition) Sub(c, s int) string {
	if c < 1 || c > len(r) || s < 1 || s > len(r[c-1]) {
		return ""
	}
	return strings.TrimSpace(r[c-1][s-1])
}

// Empty reports whether the repetition carries no data.
func (r Repetition) Empty() bool {
	for _, c := range r {
		for _, s := range c {
			if strings.TrimSpace(s) != "" {
				return false
			}
		}
	}
	return true
}
