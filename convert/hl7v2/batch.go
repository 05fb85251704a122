package hl7v2

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Batch is an HL7 v2 batch: FHS and BHS headers, messages, BTS and FTS
// trailers (HL7 v2 chapter 2 batch protocol). Either header may be absent
// (a batch without a file, or a file of one batch whose BHS was left out).
type Batch struct {
	// FHS, BHS, BTS, FTS are the envelope segments (nil when absent).
	FHS, BHS, BTS, FTS *Segment
	// Messages are each message's own bytes (segments ending with CR), as
	// they would travel alone.
	Messages [][]byte
}

// IsBatch reports whether data is a batch: it starts (after a byte-order
// mark and white space) with FHS or BHS.
func IsBatch(data []byte) bool {
	data = bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")), " \t\r\n")
	return bytes.HasPrefix(data, []byte("FHS")) || bytes.HasPrefix(data, []byte("BHS"))
}

// MaxBatchMessages bounds the messages of one batch.
const MaxBatchMessages = 10000

// ParseBatch splits a batch into its messages and reads its envelope. The
// messages are not parsed: each is parsed and acknowledged on its own.
func ParseBatch(data []byte) (*Batch, error) {
	data = bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")), " \t\r\n")
	if !IsBatch(data) {
		return nil, fmt.Errorf("%w: a batch starts with FHS or BHS", ErrMalformed)
	}
	b := &Batch{}
	// the envelope segments declare their delimiters as MSH does
	env := &Message{}
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			b.Messages = append(b.Messages, cur)
			cur = nil
		}
	}
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		line := data
		if i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimRight(line, " \t")
		if len(line) < 3 {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			return nil, fmt.Errorf("%w: %w: bad segment %q", ErrMalformed, ErrBadSegment, line)
		}
		name := string(line[:3])
		switch name {
		case "FHS", "BHS":
			flush()
			seg, d, err := parseHeader(line)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
			}
			env.Delims = d
			if name == "FHS" {
				b.FHS = seg
			} else {
				b.BHS = seg
			}
		case "BTS", "FTS":
			flush()
			if env.Delims.Field == 0 {
				return nil, fmt.Errorf("%w: %s before FHS or BHS", ErrMalformed, name)
			}
			seg, err := env.parseSegment(string(line), false)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
			}
			if name == "BTS" {
				b.BTS = seg
			} else {
				b.FTS = seg
			}
		case "MSH":
			flush()
			if len(b.Messages) >= MaxBatchMessages {
				return nil, fmt.Errorf("%w: more than %d messages in a batch", ErrMalformed, MaxBatchMessages)
			}
			cur = append(append([]byte(nil), line...), '\r')
		default:
			if cur == nil {
				return nil, fmt.Errorf("%w: %w: %s outside a message", ErrMalformed, ErrBadSegment, name)
			}
			cur = append(append(cur, line...), '\r')
		}
	}
	flush()
	if len(b.Messages) == 0 {
		return nil, fmt.Errorf("%w: a batch without messages", ErrMalformed)
	}
	if b.BTS != nil {
		if n, err := strconv.Atoi(b.BTS.Get(1, 1)); err == nil && n != len(b.Messages) {
			return nil, fmt.Errorf("%w: BTS-1 counts %d messages, the batch has %d", ErrMalformed, n, len(b.Messages))
		}
	}
	return b, nil
}

// BatchACK wraps the acknowledgements of a batch's messages, in order, in
// the batch's envelope going back: FHS and BHS with sender and receiver
// swapped, their control ids referencing the batch's (FHS-12, BHS-12),
// BTS counting the messages, FTS the batch.
func BatchACK(b *Batch, acks [][]byte, now time.Time) []byte {
	var out strings.Builder
	ts := now.Format("20060102150405-0700")
	header := func(name string, s *Segment) {
		var sendApp, sendFac, recvApp, recvFac, control string
		if s != nil {
			sendApp, sendFac = s.Get(5, 1), s.Get(6, 1)
			recvApp, recvFac = s.Get(3, 1), s.Get(4, 1)
			control = s.Get(11, 1)
		}
		out.WriteString(name + "|^~\\&|")
		for _, f := range []string{sendApp, sendFac, recvApp, recvFac} {
			out.WriteString(escape(f) + "|")
		}
		out.WriteString(ts + "||||" + escape(ackControlID(control, now)) + "|" + escape(control) + "\r")
	}
	if b != nil && b.FHS != nil {
		header("FHS", b.FHS)
	}
	var bhs *Segment
	if b != nil {
		bhs = b.BHS
	}
	header("BHS", bhs)
	for _, a := range acks {
		out.Write(bytes.TrimRight(a, "\r\n"))
		out.WriteByte('\r')
	}
	out.WriteString("BTS|" + strconv.Itoa(len(acks)) + "\r")
	if b != nil && b.FHS != nil {
		out.WriteString("FTS|1\r")
	}
	return []byte(out.String())
}
