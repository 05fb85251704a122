package consolidate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Markers the gateway writes into meta (the only place besides id it may
// change in a pulled resource).
const (
	// SourcePrefix starts meta.source of every pulled resource:
	// "urn:fhirgate:source:city-hospital". The same URI is the identifier
	// system under which the local Patient records its id at that source.
	SourcePrefix = "urn:fhirgate:source:"
	// TagSourceID is the meta.tag system whose code is the resource's
	// "Type/id" at its source.
	TagSourceID = "urn:fhirgate:source-id"
	// TagDuplicateOf is the meta.tag system whose code is the local
	// "Type/id" of the resource this one duplicates. Tagged resources are
	// kept (nothing is thrown away) but are not part of the consolidated
	// view.
	TagDuplicateOf = "urn:fhirgate:duplicate-of"
	// TagGenerated marks the Provenance resources consolidation authors.
	TagGenerated = "urn:fhirgate:generated"
	// SourcesSystem is the identifier system naming a source in
	// Provenance agents and entities.
	SourcesSystem = "urn:fhirgate:sources"
)

// SourceURI is the meta.source (and Patient identifier system) of a source.
func SourceURI(sourceID string) string { return SourcePrefix + sourceID }

// LocalID is the local id of the resource typ/id pulled from a source. It
// is derived, not assigned, so that a re-pull (or a pull resumed after a
// crash) writes to the same resource instead of creating another.
func LocalID(sourceID, typ, id string) string {
	sum := sha256.Sum256([]byte(sourceID + "\x00" + typ + "\x00" + id))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// tag returns the code of the first meta.tag of system, or "".
func tag(r *fhir.Resource, system string) string {
	meta := r.Root().Get("meta")
	if meta == nil {
		return ""
	}
	for _, t := range items(meta.Get("tag")) {
		if t.Get("system").String() == system {
			return t.Get("code").String()
		}
	}
	return ""
}

// metaSource returns meta.source, or "".
func metaSource(r *fhir.Resource) string {
	if meta := r.Root().Get("meta"); meta != nil {
		return meta.Get("source").String()
	}
	return ""
}

// DuplicateOf returns the local "Type/id" that r duplicates, or "" when r
// is part of the consolidated view.
func DuplicateOf(r *fhir.Resource) string { return tag(r, TagDuplicateOf) }

// IsDuplicate reports whether r is a duplicate copy kept out of the
// consolidated view (Patient/$everything must leave it out).
func IsDuplicate(r *fhir.Resource) bool { return DuplicateOf(r) != "" }

// WithoutDuplicates returns rs without duplicate copies, reusing rs's array.
func WithoutDuplicates(rs []*fhir.Resource) []*fhir.Resource {
	out := rs[:0]
	for _, r := range rs {
		if !IsDuplicate(r) {
			out = append(out, r)
		}
	}
	clear(rs[len(out):])
	return out
}

// View wraps a store so that Everything returns the consolidated view
// (duplicate copies left out; a page may then hold fewer than Count
// resources, its Next cursor stays valid). Everything else passes through.
func View(st storage.Store) storage.Store {
	if b, ok := st.(storage.Blobs); ok {
		return blobView{view{st}, b} // uploads keep streaming through the view
	}
	return view{st}
}

type view struct{ storage.Store }

// Ready forwards the store's readiness check (reachable and migrated).
func (v view) Ready(ctx context.Context) error {
	if r, ok := v.Store.(interface{ Ready(context.Context) error }); ok {
		return r.Ready(ctx)
	}
	return v.Store.Ping(ctx)
}

type blobView struct {
	view
	storage.Blobs
}

func (v view) Everything(ctx context.Context, req storage.EverythingRequest) (*storage.SearchResult, error) {
	res, err := v.Store.Everything(ctx, req)
	if err != nil {
		return nil, err
	}
	res.Matches = WithoutDuplicates(res.Matches)
	return res, nil
}
