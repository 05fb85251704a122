package storage

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// BlobOf returns the blob a Binary's content is kept in, when it is kept
// outside the body (the BlobExtension on _data).
func BlobOf(r *fhir.Resource) (string, bool) {
	if r == nil || r.Type != "Binary" || !bytes.Contains(r.Raw, []byte(BlobExtension)) {
		return "", false
	}
	for _, e := range r.Root().Get("_data").Get("extension").Elems() {
		if e.Get("url").String() == BlobExtension {
			if id := e.Get("valueString").String(); id != "" {
				return id, true
			}
		}
	}
	return "", false
}

// BlobStub returns a Binary's body with its content replaced by a
// reference to the blob holding it: what the store keeps for an upload.
// The members of bin other than data and _data are kept in order.
func BlobStub(bin *fhir.Resource, blobID string) (*fhir.Resource, error) {
	root := bin.Root()
	out := []byte(`{"resourceType":"Binary"`)
	for _, m := range root.Members {
		switch m.Key {
		case "resourceType", "data", "_data":
			continue
		}
		out = append(out, ',')
		out = fjson.AppendString(out, m.Key)
		out = append(out, ':')
		out = fjson.AppendCompact(out, m.Value)
	}
	out = append(out, `,"_data":{"extension":[{"url":`...)
	out = fjson.AppendString(out, BlobExtension)
	out = append(out, `,"valueString":`...)
	out = fjson.AppendString(out, blobID)
	out = append(out, "}]}}"...)
	return fhir.Parse(out)
}

// WriteInlined writes the JSON of a blob-backed Binary with its content
// (read from content) base64-encoded into data, streaming: the content is
// never held whole. Other extensions on _data are kept.
func WriteInlined(w io.Writer, stub *fhir.Resource, content io.Reader) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	root := stub.Root()
	if _, err := bw.WriteString("{"); err != nil {
		return err
	}
	first := true
	sep := func() {
		if !first {
			_ = bw.WriteByte(',')
		}
		first = false
	}
	for _, m := range root.Members {
		if m.Key != "_data" {
			sep()
			_, _ = bw.Write(fjson.AppendString(nil, m.Key))
			_ = bw.WriteByte(':')
			_, _ = bw.Write(fjson.AppendCompact(nil, m.Value))
			continue
		}
		sep()
		if _, err := bw.WriteString(`"data":"`); err != nil {
			return err
		}
		enc := base64.NewEncoder(base64.StdEncoding, bw)
		if _, err := io.Copy(enc, content); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
		_ = bw.WriteByte('"')
		if rest := otherMembers(m.Value); len(rest) > 0 {
			_, _ = bw.WriteString(`,"_data":`)
			_, _ = bw.Write(fjson.AppendCompact(nil, &fjson.Value{Kind: fjson.Object, Members: rest}))
		}
	}
	if err := bw.WriteByte('}'); err != nil {
		return err
	}
	return bw.Flush()
}

// otherMembers is _data without the blob extension: its id and other
// extensions, if it has any.
func otherMembers(v *fjson.Value) []fjson.Member {
	var out []fjson.Member
	for _, m := range v.Members {
		if m.Key != "extension" {
			out = append(out, m)
			continue
		}
		var keep []*fjson.Value
		for _, e := range m.Value.Elems() {
			if e.Get("url").String() != BlobExtension {
				keep = append(keep, e)
			}
		}
		if len(keep) > 0 {
			out = append(out, fjson.Member{Key: "extension", Value: &fjson.Value{Kind: fjson.Array, Items: keep}})
		}
	}
	return out
}
