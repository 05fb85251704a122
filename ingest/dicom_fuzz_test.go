package ingest

import (
	"encoding/binary"
	"testing"
)

// FuzzDICOMHeader: no input makes the header reader panic or loop; every
// prefix of a valid header is among the seeds.
func FuzzDICOMHeader(f *testing.F) {
	var b []byte
	b = append(b, make([]byte, 128)...)
	b = append(b, "DICM"...)
	el := func(g, e uint16, vr string, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	el(0x0002, 0x0010, "UI", []byte("1.2.840.10008.1.2.1\x00"))
	el(0x0008, 0x0060, "CS", []byte("CT"))
	// a sequence of undefined length with an item of undefined length
	b = append(b, 0x08, 0x00, 0x40, 0x11, 'S', 'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	b = append(b, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF)
	el(0x0008, 0x1150, "UI", []byte("1.2\x00"))
	b = append(b, 0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
	el(0x0020, 0x000D, "UI", []byte("1.2.3\x00"))
	for i := 128; i <= len(b); i++ {
		f.Add(b[:i])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, _ := parseDICOMHeader(data)
		if h != nil {
			_ = h.demographics()
			_ = h.imagingStudy("x", "p", nil)
		}
	})
}
