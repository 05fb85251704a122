package audit

import (
	"encoding/binary"
	"errors"
	"time"
)

// The log keeps an event as the facts of Event in a compact binary form
// (a version byte, then each field in a fixed order, strings and lists
// length-prefixed with uvarints), not as AuditEvent JSON: about a fifth
// of the bytes, written and hashed without building JSON on the path of
// every read. The AuditEvent is rendered from it when served (Render). An
// event moved from the resource store keeps its JSON (first byte '{').
const (
	codecV1   = 1
	codecJSON = '{'
)

// maxEncodedList bounds the lists of a decoded event, so a forged body
// cannot make the decoder allocate without limit.
const maxEncodedList = 1 << 20

// ErrMalformed: a body the codec cannot read.
var ErrMalformed = errors.New("audit: malformed event body")

// Encode returns the compact form of e.
func Encode(e *Event) []byte {
	n := 64 + len(e.Interaction) + len(e.Operation) + len(e.OutcomeDesc) + len(e.Who) + len(e.ClientID) + len(e.Issuer) +
		len(e.TokenID) + len(e.ClientAddress) + len(e.OnBehalfOf) + len(e.Origin) + len(e.Server) + len(e.Resource) +
		len(e.ResourceType) + len(e.Query) + len(e.Patient)
	for _, r := range e.Resources {
		n += len(r) + 2
	}
	for _, c := range e.Consents {
		n += len(c) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, codecV1)
	b = binary.AppendVarint(b, e.Recorded.UnixMicro())
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	list := func(l []string) {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str(e.Interaction)
	str(e.Operation)
	str(string(e.Outcome))
	str(e.OutcomeDesc)
	str(e.Who)
	str(e.ClientID)
	str(e.Issuer)
	str(e.TokenID)
	str(e.ClientAddress)
	str(e.OnBehalfOf)
	str(e.Origin)
	b = binary.AppendUvarint(b, uint64(len(e.Purpose)))
	for _, p := range e.Purpose {
		str(p.System)
		str(p.Code)
		str(p.Display)
	}
	str(e.Server)
	str(e.Resource)
	list(e.Resources)
	str(e.ResourceType)
	str(e.Query)
	str(e.Patient)
	list(e.Consents)
	return b
}

// Decode reads a compact body.
func Decode(b []byte) (*Event, error) {
	if len(b) == 0 || b[0] != codecV1 {
		return nil, ErrMalformed
	}
	d := decoder{b: b[1:]}
	e := &Event{}
	us := d.varint()
	e.Recorded = time.UnixMicro(us).UTC()
	e.Interaction = d.str()
	e.Operation = d.str()
	e.Outcome = Outcome(d.str())
	e.OutcomeDesc = d.str()
	e.Who = d.str()
	e.ClientID = d.str()
	e.Issuer = d.str()
	e.TokenID = d.str()
	e.ClientAddress = d.str()
	e.OnBehalfOf = d.str()
	e.Origin = d.str()
	if n := d.count(); n > 0 {
		e.Purpose = make([]Coding, 0, n)
		for range n {
			e.Purpose = append(e.Purpose, Coding{System: d.str(), Code: d.str(), Display: d.str()})
		}
	}
	e.Server = d.str()
	e.Resource = d.str()
	e.Resources = d.list()
	e.ResourceType = d.str()
	e.Query = d.str()
	e.Patient = d.str()
	e.Consents = d.list()
	if d.bad || len(d.b) != 0 {
		return nil, ErrMalformed
	}
	return e, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count() int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > maxEncodedList || v > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) str() string {
	n := d.count()
	if d.bad || n > len(d.b) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) list() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.str())
	}
	return out
}
