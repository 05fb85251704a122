// Package fhir is the gateway's lossless resource core: a Resource is its raw
// JSON plus a parsed header, never a struct that could drop what a source sent.
package fhir

//go:generate go run ./internal/typesgen ../../shared/testdata/fhir-r4-definitions/profiles-resources.assembled.json

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Resource is a FHIR resource kept as the exact JSON it arrived as (compacted),
// with the header fields the gateway needs parsed out.
type Resource struct {
	Type        string
	ID          string
	VersionID   string
	LastUpdated time.Time
	// Raw is the resource's compact JSON.
	Raw  []byte
	root *fjson.Value
}

var resourceTypeRe = regexp.MustCompile(`^\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"`)

// IsResourceType reports whether t is one of the 146 concrete R4 resource types.
func IsResourceType(t string) bool {
	_, ok := slices.BinarySearch(ResourceTypes, t)
	return ok
}

// ValidID reports whether id matches the R4 id rule [A-Za-z0-9\-\.]{1,64}.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Parse checks that body is one JSON object without duplicate keys, with a
// known resourceType and, if present, a valid id, and returns the resource.
// The body is compacted; nothing else about it changes. Errors are *Error
// with status 400.
func Parse(body []byte) (*Resource, error) {
	root, err := fjson.Parse(body)
	if err != nil {
		var expr []string
		if je, ok := err.(*fjson.Error); ok && je.Path != "" {
			// FHIRPath starts at the resource type; find it without a tree
			if m := resourceTypeRe.FindSubmatch(body); m != nil && IsResourceType(string(m[1])) {
				expr = []string{string(m[1]) + "." + je.Path}
			} else {
				expr = []string{je.Path}
			}
		}
		return nil, Errorf(http.StatusBadRequest, "structure", expr, "%s", err.Error())
	}
	return FromValue(root)
}

// FromValue is Parse for an already parsed document.
func FromValue(root *fjson.Value) (*Resource, error) {
	if root.Kind != fjson.Object {
		return nil, Errorf(http.StatusBadRequest, "structure", nil, "a resource must be a JSON object, not a %s", root.Kind)
	}
	rt := root.Get("resourceType")
	if rt == nil {
		return nil, Errorf(http.StatusBadRequest, "required", []string{"resourceType"}, "resourceType is missing")
	}
	if rt.Kind != fjson.String || !IsResourceType(rt.Str) {
		return nil, Errorf(http.StatusBadRequest, "value", []string{"resourceType"}, "resourceType is not an R4 resource type")
	}
	r := &Resource{Type: rt.Str, root: root}
	if idv := root.Get("id"); idv != nil {
		if idv.Kind != fjson.String || !ValidID(idv.Str) {
			return nil, Errorf(http.StatusBadRequest, "value", []string{r.Type + ".id"}, "id must match [A-Za-z0-9\\-\\.]{1,64}")
		}
		r.ID = idv.Str
	}
	if meta := root.Get("meta"); meta != nil {
		if meta.Kind != fjson.Object {
			return nil, Errorf(http.StatusBadRequest, "structure", []string{r.Type + ".meta"}, "meta must be an object")
		}
		if v := meta.Get("versionId"); v != nil && v.Kind == fjson.String {
			r.VersionID = v.Str
		}
		if v := meta.Get("lastUpdated"); v != nil && v.Kind == fjson.String {
			if t, err := time.Parse(time.RFC3339Nano, v.Str); err == nil {
				r.LastUpdated = t
			}
		}
	}
	r.Raw = compact(root)
	return r, nil
}

// scratch holds buffers compact writes a resource into before copying it
// out at its exact size.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// compact returns root's compact JSON in a slice of its own length. (Sized
// from root's source span, the buffer of an indented document's resource
// was two and a half times what it kept, held for the resource's life.)
func compact(root *fjson.Value) []byte {
	buf := scratch.Get().(*[]byte)
	*buf = fjson.AppendCompact((*buf)[:0], root)
	out := bytes.Clone(*buf)
	if cap(*buf) <= 1<<20 { // keep no huge buffer
		scratch.Put(buf)
	}
	return out
}

// Root returns the parsed JSON tree of the resource.
func (r *Resource) Root() *fjson.Value {
	if r.root == nil {
		v, err := fjson.Parse(r.Raw)
		if err != nil {
			// Raw always comes from Parse or the store, which hold valid JSON.
			panic("fhir: resource holds invalid JSON: " + err.Error())
		}
		r.root = v
	}
	return r.root
}

// FormatInstant formats t as a FHIR instant in UTC with millisecond precision.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// WithMeta returns a copy of r whose id, meta.versionId and meta.lastUpdated
// are set to the given values. Every other member, including the rest of
// meta, is kept byte for byte and in order; id and meta are placed right
// after resourceType when they were absent.
func (r *Resource) WithMeta(id, versionID string, lastUpdated time.Time) *Resource {
	return r.Rewrite(id, func(meta []fjson.Member) []fjson.Member {
		meta = setMember(meta, "versionId", strValue(versionID))
		return setMember(meta, "lastUpdated", strValue(FormatInstant(lastUpdated)))
	}, versionID, lastUpdated)
}

func strValue(s string) *fjson.Value {
	raw := fjson.AppendString(nil, s)
	return &fjson.Value{Kind: fjson.String, Str: s, Raw: raw}
}

func setMember(ms []fjson.Member, key string, v *fjson.Value) []fjson.Member {
	for i := range ms {
		if ms[i].Key == key {
			ms[i].Value = v
			return ms
		}
	}
	return append(ms, fjson.Member{Key: key, Value: v})
}

// Rewrite returns a copy of r with the given id and with meta transformed by
// editMeta (which receives a copy of the current meta members, possibly empty).
func (r *Resource) Rewrite(id string, editMeta func([]fjson.Member) []fjson.Member, versionID string, lastUpdated time.Time) *Resource {
	root := r.Root()
	var metaMembers []fjson.Member
	if m := root.Get("meta"); m != nil {
		metaMembers = slices.Clone(m.Members)
	}
	if editMeta != nil {
		metaMembers = editMeta(metaMembers)
	}
	out := make([]byte, 0, len(r.Raw)+96)
	out = append(out, `{"resourceType":`...)
	out = fjson.AppendString(out, r.Type)
	if id != "" {
		out = append(out, `,"id":`...)
		out = fjson.AppendString(out, id)
	}
	if len(metaMembers) > 0 {
		out = append(out, `,"meta":`...)
		out = fjson.AppendCompact(out, &fjson.Value{Kind: fjson.Object, Members: metaMembers})
	}
	for _, m := range root.Members {
		switch m.Key {
		case "resourceType", "id", "meta":
			continue
		}
		out = append(out, ',')
		out = fjson.AppendString(out, m.Key)
		out = append(out, ':')
		out = fjson.AppendCompact(out, m.Value)
	}
	out = append(out, '}')
	// The new tree reuses the old values (they alias the old buffer, which the
	// tree keeps alive) so that callers need not parse the result again.
	members := make([]fjson.Member, 0, len(root.Members)+2)
	members = append(members, fjson.Member{Key: "resourceType", Value: strValue(r.Type)})
	if id != "" {
		members = append(members, fjson.Member{Key: "id", Value: strValue(id)})
	}
	if len(metaMembers) > 0 {
		members = append(members, fjson.Member{Key: "meta", Value: &fjson.Value{Kind: fjson.Object, Members: metaMembers}})
	}
	for _, m := range root.Members {
		switch m.Key {
		case "resourceType", "id", "meta":
			continue
		}
		members = append(members, m)
	}
	nr := &fjson.Value{Kind: fjson.Object, Members: members, Raw: out}
	return &Resource{Type: r.Type, ID: id, VersionID: versionID, LastUpdated: lastUpdated, Raw: out, root: nr}
}
