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
	entries []entryBytes
	size    int
}

// entryBytes is one entry as written: its own members before and after
// the resource, and the resource's stored bytes (not copied until the
// Bundle is assembled, once).
type entryBytes struct {
	head, resource, tail []byte
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

// searchModes are the search members the gateway writes, encoded once.
var searchModes = map[string][]byte{}

func init() {
	for _, m := range []string{"match", "include", "outcome"} {
		searchModes[m], _ = json.Marshal(bundleSearch{Mode: m})
	}
}

func (b *bundleWriter) entry(e bundleEntry) {
	head := make([]byte, 0, 128)
	head = append(head, '{')
	if e.FullURL != "" {
		head = append(head, `"fullUrl":`...)
		head = fjson.AppendString(head, e.FullURL)
	}
	if len(e.Resource) > 0 {
		if e.FullURL != "" {
			head = append(head, ',')
		}
		head = append(head, `"resource":`...)
	}
	var tail []byte
	sep := e.FullURL != "" || len(e.Resource) > 0
	for _, part := range []struct {
		name string
		v    any
		ok   bool
	}{{"search", e.Search, e.Search != nil}, {"request", e.Request, e.Request != nil}, {"response", e.Response, e.Response != nil}} {
		if !part.ok {
			continue
		}
		if sep {
			tail = append(tail, ',')
		}
		sep = true
		tail = append(tail, '"')
		tail = append(tail, part.name...)
		tail = append(tail, '"', ':')
		if s, ok := part.v.(*bundleSearch); ok && searchModes[s.Mode] != nil {
			tail = append(tail, searchModes[s.Mode]...)
			continue
		}
		j, _ := json.Marshal(part.v)
		tail = append(tail, j...)
	}
	tail = append(tail, '}')
	b.entries = append(b.entries, entryBytes{head: head, resource: e.Resource, tail: tail})
	b.size += len(head) + len(e.Resource) + len(tail) + 1
}

func (b *bundleWriter) bytes() []byte {
	out := make([]byte, 0, b.size+256+len(b.links)*256)
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
			out = append(out, e.head...)
			out = append(out, e.resource...)
			out = append(out, e.tail...)
		}
		out = append(out, ']')
	}
	return append(out, '}')
}
