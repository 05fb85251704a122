package server

import (
	"encoding/json"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// bundleWriter assembles a Bundle as bytes, embedding each resource's raw
// JSON untouched (never re-marshalled).
type bundleWriter struct {
	typ     string
	totalN  int
	hasTot  bool
	links   []bundleLink
	entries [][]byte
	size    int
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type bundleRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type bundleResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

type bundleSearch struct {
	Mode string `json:"mode"`
}

type bundleEntry struct {
	FullURL  string
	Resource []byte
	Search   *bundleSearch
	Request  *bundleRequest
	Response *bundleResponse
}

func newBundle(typ string) *bundleWriter { return &bundleWriter{typ: typ} }

func (b *bundleWriter) total(n int) { b.totalN, b.hasTot = n, true }

func (b *bundleWriter) link(rel, url string) {
	b.links = append(b.links, bundleLink{Relation: rel, URL: url})
}

func (b *bundleWriter) entry(e bundleEntry) {
	out := make([]byte, 0, len(e.Resource)+160)
	out = append(out, '{')
	sep := false
	field := func(name string) {
		if sep {
			out = append(out, ',')
		}
		sep = true
		out = append(out, '"')
		out = append(out, name...)
		out = append(out, '"', ':')
	}
	if e.FullURL != "" {
		field("fullUrl")
		out = fjson.AppendString(out, e.FullURL)
	}
	if len(e.Resource) > 0 {
		field("resource")
		out = append(out, e.Resource...)
	}
	for _, part := range []struct {
		name string
		v    any
		ok   bool
	}{{"search", e.Search, e.Search != nil}, {"request", e.Request, e.Request != nil}, {"response", e.Response, e.Response != nil}} {
		if part.ok {
			field(part.name)
			j, _ := json.Marshal(part.v)
			out = append(out, j...)
		}
	}
	out = append(out, '}')
	b.entries = append(b.entries, out)
	b.size += len(out) + 1
}

func (b *bundleWriter) bytes() []byte {
	out := make([]byte, 0, b.size+256)
	out = append(out, `{"resourceType":"Bundle","type":`...)
	out = fjson.AppendString(out, b.typ)
	if b.hasTot {
		out = append(out, `,"total":`...)
		out = strconv.AppendInt(out, int64(b.totalN), 10)
	}
	if len(b.links) > 0 {
		out = append(out, `,"link":[`...)
		for i, l := range b.links {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"relation":`...)
			out = fjson.AppendString(out, l.Relation)
			out = append(out, `,"url":`...)
			out = fjson.AppendString(out, l.URL)
			out = append(out, '}')
		}
		out = append(out, ']')
	}
	if len(b.entries) > 0 {
		out = append(out, `,"entry":[`...)
		for i, e := range b.entries {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, e...)
		}
		out = append(out, ']')
	}
	return append(out, '}')
}
