package hl7v2

import (
	"strconv"
	"strings"
	"time"
)

// Acknowledgment codes (MSA-1, original mode).
const (
	AA = "AA" // accepted
	AE = "AE" // error: the message was understood but could not be processed
	AR = "AR" // rejected: malformed, unsupported type or version
)

// ERR-3 error codes (HL7 table 0357).
const (
	ErrCodeSegmentSequence = "100"
	ErrCodeRequiredMissing = "101"
	ErrCodeUnsupportedType = "200"
	ErrCodeUnsupportedEvt  = "201"
	ErrCodeInternal        = "207"
)

// AckError is one ERR segment of an acknowledgement.
type AckError struct {
	// Location is ERR-2 (ERL): the segment, its sequence, the field, the
	// repetition ("PID", 1, 5, 1); an empty Segment leaves it out.
	Segment                   string
	Sequence, Field, FieldRep int
	// Code is ERR-3 (table 0357); ErrCodeInternal when "".
	Code string
	// AppCode and AppText are ERR-5, the application's own error code.
	AppCode, AppText string
	// Text is ERR-8, the user message.
	Text string
}

// ACK builds an acknowledgement of msg (which may be nil when the message
// could not be parsed) with MSA and, unless code is AA, an ERR segment
// carrying errCode (table 0357) and text. Segments end with CR.
func ACK(msg *Message, code, errCode, text string, now time.Time) []byte {
	var errs []AckError
	if code != AA {
		errs = []AckError{{Code: errCode, Text: text}}
	}
	return ACKErrors(msg, code, text, errs, now)
}

// ACKErrors builds an acknowledgement with MSA (MSA-3 text unless code is
// AA) and one ERR segment per error.
func ACKErrors(msg *Message, code, text string, errs []AckError, now time.Time) []byte {
	var sendApp, sendFac, recvApp, recvFac, trigger, control, version, proc string
	version, proc = "2.5.1", "P"
	if msg != nil && len(msg.Segments) > 0 {
		msh := msg.Segments[0]
		// The ACK goes back: its sender is the original receiver.
		sendApp, sendFac = rawField(msg, msh, 5), rawField(msg, msh, 6)
		recvApp, recvFac = rawField(msg, msh, 3), rawField(msg, msh, 4)
		_, trigger, version = msg.Type()
		control = msg.ControlID()
		if p := msh.Get(11, 1); p != "" {
			proc = p
		}
	}
	var b strings.Builder
	b.WriteString("MSH|^~\\&|")
	for _, f := range []string{sendApp, sendFac, recvApp, recvFac} {
		b.WriteString(f)
		b.WriteByte('|')
	}
	b.WriteString(now.Format("20060102150405-0700"))
	b.WriteString("||ACK^")
	b.WriteString(escape(trigger))
	b.WriteString("^ACK|")
	b.WriteString(escape(ackControlID(control, now)))
	b.WriteByte('|')
	b.WriteString(escape(proc))
	b.WriteByte('|')
	b.WriteString(escape(version))
	b.WriteString("\rMSA|")
	b.WriteString(code)
	b.WriteByte('|')
	b.WriteString(escape(control))
	if code != AA {
		b.WriteByte('|')
		b.WriteString(escape(text))
	}
	b.WriteByte('\r')
	for _, e := range errs {
		if e.Code == "" {
			e.Code = ErrCodeInternal
		}
		b.WriteString("ERR||")
		if e.Segment != "" {
			b.WriteString(escape(e.Segment))
			for _, n := range []int{e.Sequence, e.Field, e.FieldRep} {
				b.WriteByte('^')
				if n > 0 {
					b.WriteString(strconv.Itoa(n))
				}
			}
		}
		b.WriteByte('|')
		b.WriteString(e.Code)
		b.WriteString("^")
		b.WriteString(errorNames[e.Code])
		b.WriteString("^HL70357|E|")
		if e.AppCode != "" {
			b.WriteString(escape(e.AppCode) + "^" + escape(e.AppText) + "^L")
		}
		b.WriteString("|||")
		b.WriteString(escape(e.Text))
		b.WriteByte('\r')
	}
	return []byte(b.String())
}

var errorNames = map[string]string{
	ErrCodeSegmentSequence: "Segment sequence error",
	ErrCodeRequiredMissing: "Required field missing",
	ErrCodeUnsupportedType: "Unsupported message type",
	ErrCodeUnsupportedEvt:  "Unsupported event code",
	ErrCodeInternal:        "Application internal error",
}

func ackControlID(orig string, now time.Time) string {
	if orig == "" {
		return "ACK" + now.Format("20060102150405")
	}
	id := "ACK" + orig
	if len(id) > 199 {
		id = id[:199]
	}
	return id
}

// rawField re-encodes a field with the standard delimiters.
func rawField(msg *Message, s *Segment, n int) string {
	var reps []string
	for _, r := range s.Field(n) {
		var comps []string
		for _, c := range r {
			subs := make([]string, len(c))
			for i, sub := range c {
				subs[i] = escape(sub)
			}
			comps = append(comps, strings.Join(subs, "&"))
		}
		reps = append(reps, strings.Join(comps, "^"))
	}
	return strings.Join(reps, "~")
}

var escaper = strings.NewReplacer(`\`, `\E\`, "|", `\F\`, "^", `\S\`, "&", `\T\`, "~", `\R\`, "\r", " ", "\n", " ")

// escape encodes text for the standard delimiters.
func escape(s string) string { return escaper.Replace(s) }
