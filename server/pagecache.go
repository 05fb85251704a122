package server

import "github.com/fhirgate/fhirgate/internal/lru"

// pages keep the bytes of the $everything pages the gateway answered
// without a release rule (no authentication, or nothing to decide), with
// the version of the record each was read from (storage.SearchResult
// .Version): the store says whether the record is still at that version
// without reading it, and the page is then sent again as it was. Bounded
// by bytes; a page is replaced when its record moves on.
type pageEntry struct {
	version  string
	body     []byte
	patients []string
}

func newPageCache() *lru.Cache[*pageEntry] {
	return &lru.Cache[*pageEntry]{Max: 64 << 20, MaxEntry: 16 << 20}
}
