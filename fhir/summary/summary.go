// Package summary subsets resources for _summary and _elements, working on
// the raw JSON tree so that what is kept stays byte for byte.
package summary

//go:generate go run ./internal/gen ../../../shared/testdata/fhir-r4-definitions/profiles-resources.assembled.json

import (
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// subsettedTag marks a resource that is not complete (R4 search rules).
const subsettedTag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}`

// Mode is the _summary value.
type Mode int

// The _summary values that change what is returned.
const (
	Full Mode = iota
	True      // only the summary elements
	Text      // text, id, meta and the mandatory elements
	Data      // everything but text
)

// always kept members
var keep = map[string]bool{"resourceType": true, "id": true, "meta": true}

// isMember reports whether key is the JSON member of element name (choice
// elements appear as name + type, primitives may have a _name twin).
func isMember(key, name string) bool {
	key = strings.TrimPrefix(key, "_")
	if key == name {
		return true
	}
	return strings.HasPrefix(key, name) && len(key) > len(name) && key[len(name)] >= 'A' && key[len(name)] <= 'Z'
}

// Apply subsets r; elements (for _elements) lists top-level element names.
// The result carries the SUBSETTED tag when anything was removed.
func Apply(r *fhir.Resource, mode Mode, elements []string) *fhir.Resource {
	if mode == Full && len(elements) == 0 {
		return r
	}
	root := r.Root()
	var want func(key string) bool
	switch {
	case len(elements) > 0:
		want = func(key string) bool {
			for _, e := range elements {
				if isMember(key, e) {
					return true
				}
			}
			return mandatory(r.Type, key)
		}
	case mode == True:
		want = func(key string) bool {
			for _, e := range summaryElements[r.Type] {
				if isMember(key, e) {
					return true
				}
			}
			return false
		}
	case mode == Text:
		want = func(key string) bool { return key == "text" || mandatory(r.Type, key) }
	case mode == Data:
		want = func(key string) bool { return key != "text" }
	}
	removed := false
	for _, m := range root.Members {
		if !keep[m.Key] && !want(m.Key) {
			removed = true
			break
		}
	}
	if !removed && mode != True {
		return r
	}
	out := &fhir.Resource{Type: r.Type, ID: r.ID, VersionID: r.VersionID, LastUpdated: r.LastUpdated}
	tagged := r.Rewrite(r.ID, func(meta []fjson.Member) []fjson.Member {
		tag, _ := fjson.Parse([]byte(subsettedTag))
		for i := range meta {
			if meta[i].Key == "tag" && meta[i].Value.Kind == fjson.Array {
				items := append(append([]*fjson.Value(nil), meta[i].Value.Items...), tag)
				meta[i].Value = &fjson.Value{Kind: fjson.Array, Items: items}
				return meta
			}
		}
		return append(meta, fjson.Member{Key: "tag", Value: &fjson.Value{Kind: fjson.Array, Items: []*fjson.Value{tag}}})
	}, r.VersionID, r.LastUpdated)
	// keep only the wanted members of the rewritten tree
	b := make([]byte, 0, len(r.Raw))
	b = append(b, '{')
	first := true
	for _, m := range tagged.Root().Members {
		if m.Key != "meta" && m.Key != "resourceType" && m.Key != "id" && !want(m.Key) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = fjson.AppendString(b, m.Key)
		b = append(b, ':')
		b = fjson.AppendCompact(b, m.Value)
	}
	out.Raw = append(b, '}')
	return out
}

// mandatory reports whether a top-level member is a required element
// (min >= 1), which _elements and _summary=text keep.
func mandatory(typ, key string) bool {
	for _, e := range mandatoryElements[typ] {
		if isMember(key, e) {
			return true
		}
	}
	return false
}
