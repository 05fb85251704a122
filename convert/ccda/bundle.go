package ccda

import (
	"bytes"
	"fmt"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// TransactionBundle returns resources as a transaction Bundle: each entry's
// fullUrl is urn:uuid:<id>, its resource has no id, references between the
// resources ("Type/id") are rewritten to those fullUrls, and its request is
// POST Type. Resources must have UUID-shaped ids (as Convert assigns).
func TransactionBundle(rs []*fhir.Resource) ([]byte, error) {
	urls := make(map[string]string, len(rs))
	for _, r := range rs {
		if !uuidPattern.MatchString(r.ID) {
			return nil, fmt.Errorf("ccda: bundle: %s id %q is not a UUID", r.Type, r.ID)
		}
		urls[r.Type+"/"+r.ID] = "urn:uuid:" + r.ID
	}
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"fullUrl":`)
		b.Write(fjson.AppendString(nil, urls[r.Type+"/"+r.ID]))
		b.WriteString(`,"resource":{"resourceType":`)
		b.Write(fjson.AppendString(nil, r.Type))
		for _, m := range r.Root().Members {
			if m.Key == "id" || m.Key == "resourceType" {
				continue
			}
			b.WriteByte(',')
			b.Write(fjson.AppendString(nil, m.Key))
			b.WriteByte(':')
			b.Write(rewriteRefs(fjson.AppendCompact(nil, m.Value), urls))
		}
		b.WriteString(`},"request":{"method":"POST","url":`)
		b.Write(fjson.AppendString(nil, r.Type))
		b.WriteString(`}}`)
	}
	b.WriteString(`]}`)
	return b.Bytes(), nil
}

// rewriteRefs replaces "reference":"Type/id" values found in urls.
func rewriteRefs(js []byte, urls map[string]string) []byte {
	const key = `"reference":"`
	if !bytes.Contains(js, []byte(key)) {
		return js
	}
	var out []byte
	for {
		i := bytes.Index(js, []byte(key))
		if i < 0 {
			return append(out, js...)
		}
		i += len(key)
		out = append(out, js[:i]...)
		js = js[i:]
		j := bytes.IndexByte(js, '"')
		if j < 0 {
			return append(out, js...)
		}
		if u, ok := urls[string(js[:j])]; ok {
			out = append(out, u...)
		} else {
			out = append(out, js[:j]...)
		}
		js = js[j:]
	}
}
