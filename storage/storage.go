// Package storage defines the gateway's resource store: every version of
// every resource, kept as the exact JSON the gateway accepted, with
// all-or-nothing writes. Implementations live in storage/sqlite and
// storage/postgres and both pass the storagetest suite.
package storage

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// Sentinel errors. Implementations wrap them; callers test with errors.Is.
var (
	// ErrNotFound: no such resource or version.
	ErrNotFound = errors.New("storage: not found")
	// ErrGone: the resource's current version is a deletion.
	ErrGone = errors.New("storage: resource deleted")
	// ErrVersionConflict: an If-Match style precondition did not hold.
	ErrVersionConflict = errors.New("storage: version conflict")
	// ErrAlreadyExists: create of an id that is already taken.
	ErrAlreadyExists = errors.New("storage: already exists")
	// ErrInvalidCursor: a paging cursor the store did not issue.
	ErrInvalidCursor = errors.New("storage: invalid page cursor")
	// ErrInvalidSearch: a search the store cannot run as asked.
	ErrInvalidSearch = errors.New("storage: invalid search")
)

// Reader reads resources and their history.
type Reader interface {
	// Read returns the current version of a resource. A deleted resource
	// answers ErrGone, an unknown one ErrNotFound.
	Read(ctx context.Context, typ, id string) (*fhir.Resource, error)
	// VRead returns one version. A version that is a deletion answers ErrGone.
	VRead(ctx context.Context, typ, id, versionID string) (*fhir.Resource, error)
	// History lists versions newest first.
	History(ctx context.Context, q HistoryQuery) (*HistoryPage, error)
	// Search runs a parsed FHIR search over the current versions.
	Search(ctx context.Context, req SearchRequest) (*SearchResult, error)
	// Everything pages through a Patient's compartment and what it refers to.
	Everything(ctx context.Context, req EverythingRequest) (*SearchResult, error)
}

// SearchRequest is one page of a search.
type SearchRequest struct {
	Query *search.Query
	// Cursor continues from SearchResult.Next of the previous page.
	Cursor string
	// PatientCompartment, when set, restricts the search to the
	// compartment of that Patient id (GET /Patient/{id}/{type}).
	PatientCompartment string
	// Release, when set, is the caller's release rule: only what it
	// releases is returned, counted, followed by _include/_revinclude and
	// matched by the inner criteria of _has and chains.
	Release Release
}

// SearchResult is one page of results.
type SearchResult struct {
	// Matches are the page's matching resources, in order.
	Matches []*fhir.Resource
	// Included are the resources _include/_revinclude added.
	Included []*fhir.Resource
	// Total counts all matches; -1 when not computed (_total=none).
	Total int
	// Next is the cursor of the next page; "" on the last page.
	Next string
	// Version, from Everything, names the state of the record the page
	// was read from ("" when the store does not tell); Unchanged says the
	// record is still at EverythingRequest.IfVersion (nothing was read).
	Version   string
	Unchanged bool
}

// EverythingRequest is one page of Patient/$everything.
type EverythingRequest struct {
	PatientID string
	// Start and End bound the care dates (zero: open); Since bounds
	// lastUpdated (zero: none); Types restricts the resource types.
	Start, End, Since time.Time
	Types             []string
	Count             int
	Cursor            string
	// Release, when set, is the caller's release rule: only released
	// compartment resources are returned, and only the resources they
	// refer to join them.
	Release Release
	// IfVersion, without a Release, is a SearchResult.Version the caller
	// holds the page of: when the record is still at that version the
	// store answers Unchanged without reading it.
	IfVersion string
}

// Writer changes resources. Every method writes one new version.
type Writer interface {
	// Create stores res as version 1 under res.ID, which the caller assigns.
	// It answers ErrAlreadyExists when the id is taken (even by a deleted resource).
	Create(ctx context.Context, res *fhir.Resource) (*fhir.Resource, error)
	// CreateMany is Create for many resources at once (the fast path for
	// loading Bundles); it fails as a whole.
	CreateMany(ctx context.Context, res []*fhir.Resource) ([]*fhir.Resource, error)
	// Update stores res as the next version of res.Type/res.ID. With
	// IfMatch set, the current version must equal it (ErrVersionConflict
	// otherwise). Without AllowCreate, an unknown id answers ErrNotFound.
	Update(ctx context.Context, res *fhir.Resource, opts UpdateOptions) (stored *fhir.Resource, created bool, err error)
	// Delete records a deletion as the next version. Deleting an unknown
	// resource answers ErrNotFound; deleting a deleted one changes nothing
	// and answers its deleted version.
	Delete(ctx context.Context, typ, id string, opts DeleteOptions) (versionID string, err error)
}

// UpdateOptions qualify an Update.
type UpdateOptions struct {
	IfMatch     string // required current version id, "" for none
	AllowCreate bool   // update-as-create of an unknown id
	// Method is recorded in history: PUT (the default) or PATCH.
	Method string
}

// DeleteOptions qualify a Delete.
type DeleteOptions struct {
	IfMatch string
}

// Tx is a transaction: reads see its own writes; nothing is visible to
// others until it commits.
type Tx interface {
	Reader
	Writer
	// Lock takes exclusive locks named by keys, held until the transaction
	// ends, in every process sharing the database: a check-then-write
	// (a conditional create, a patient's consolidation) that locks a key
	// before its check is serialised with every other that locks the same
	// key. Keys are taken in a fixed order, so that two transactions
	// locking the same keys at once cannot deadlock; a transaction that
	// takes locks more than once should take them all in its first call.
	// A store whose transactions are already serialised (SQLite's single
	// writer) has nothing to do.
	Lock(ctx context.Context, keys ...string) error
}

// Store is a resource store.
type Store interface {
	Reader
	Writer
	// InTx runs fn in one transaction, committed if fn returns nil and
	// rolled back otherwise. A transaction Bundle, a pull batch and a
	// package are each written through one InTx.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// ChangeMark returns a number that changes whenever a resource of typ
	// is written (by anyone sharing the database): callers key caches of
	// derived data on it. For Consent it changes with every committed
	// write, in commit order, across replicas (a counter the writes
	// advance); for other types it is the newest version's sequence, which
	// on PostgreSQL can miss a write that commits after a later one.
	ChangeMark(ctx context.Context, typ string) (int64, error)
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}

// HistoryQuery selects versions for a history interaction. Type and ID
// narrow it to a type or one resource; empty means the whole system.
type HistoryQuery struct {
	Type, ID string
	Since    time.Time // only versions updated at or after (zero: no bound)
	At       time.Time // only the version current at this instant (zero: all)
	Count    int       // page size
	// Cursor is the opaque position returned in HistoryPage.Next.
	Cursor string
	// Release, when set, is the caller's release rule: each version is
	// decided on its own content, a deletion on the version it deleted.
	// Total is then -1 (not counted); without one it is counted on the
	// first page (no Cursor) only.
	Release Release
}

// HistoryEntry is one version in a history page.
type HistoryEntry struct {
	Type, ID    string
	VersionID   string
	LastUpdated time.Time
	// Method is the interaction that made the version: POST, PUT, PATCH or DELETE.
	Method string
	// Resource is nil for a deletion.
	Resource *fhir.Resource
}

// Release is one caller's release rule (package release). A store applies it
// to every resource a read would return — matches, included resources,
// $everything entries, history versions and the inner resources of _has
// and chains — so that pages, paging links and counts only ever see what
// may leave: a page is filled with released resources, and a next cursor
// is given only when another released one follows. Bound lets the store
// decide in SQL what it can.
type Release interface {
	// Released reports whether r (one version) may be returned.
	Released(ctx context.Context, r *fhir.Resource) (bool, error)
	// Bound says what the store may decide for resources of typ without
	// calling Released.
	Bound(typ string) Bound
}

// Bound is what a Release decides about a whole resource type.
type Bound struct {
	// None: no resource of the type is released.
	None bool
	// Restrict: only resources in no Patient's compartment, or in the
	// compartment of one of Patients (ids), can be released.
	Restrict bool
	Patients []string
	// Exact: every resource that passes None and Restrict is released, so
	// the store need not ask Released and may count in SQL.
	Exact bool
}

// HistoryPage is one page of a history, newest first.
type HistoryPage struct {
	Entries []HistoryEntry
	// Next is the cursor of the following page, "" on the last page.
	Next string
	// Total is the number of versions matching the query; -1 when not
	// counted (a query with a Release).
	Total int
}

// BlobExtension is the extension on a Binary's _data that names content
// the store keeps outside the resource body (see Blobs): its valueString
// is the blob id. Read and VRead answer such a Binary with its data
// inlined; Search, History and Everything leave the extension in place
// (a valid FHIR primitive extension without a value), so that a page of
// results never holds many files in memory.
const BlobExtension = "https://fhirgate.org/fhir/StructureDefinition/binary-blob"

// BlobInfo describes stored content.
type BlobInfo struct {
	// ID names the content: "sha256-" and its SHA-256 in hex.
	ID string
	// Size is its length in bytes.
	Size int64
}

// Blobs is implemented by stores that keep large content outside resource
// bodies, in chunks, so that uploads and downloads stream.
type Blobs interface {
	// PutBlob reads r to its end and stores what it read, never holding
	// all of it in memory. The same content is kept once. An error from r
	// (a size limit, say) is returned as is and leaves nothing behind.
	// Content no Binary names yet is visible to nobody.
	PutBlob(ctx context.Context, r io.Reader) (BlobInfo, error)
	// OpenBlob streams stored content; ErrNotFound for an unknown id.
	OpenBlob(ctx context.Context, id string) (io.ReadCloser, BlobInfo, error)
	StubReader
	// VReadStub is VRead without inlining.
	VReadStub(ctx context.Context, typ, id, versionID string) (*fhir.Resource, error)
}

// StubReader reads a resource without inlining a blob-backed Binary's
// content (the _data extension stays), for callers that stream it or only
// need to know it is there. Stores that keep blobs and their transactions
// implement it.
type StubReader interface {
	ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error)
}

// RecordMarker is implemented by stores and their transactions that can
// tell cheaply whether a patient's record changed, for callers that keep
// derived state of a record (consolidation): RecordMark changes whenever a
// resource in the Patient's compartment (AuditEvents aside: reading a
// record writes them) or one of refs ("Type/id") is written or deleted.
type RecordMarker interface {
	RecordMark(ctx context.Context, patientID string, refs []string) (string, error)
}
