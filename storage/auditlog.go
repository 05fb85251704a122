package storage

import (
	"context"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// The audit trail is not a set of resources: it is an append-only log of
// its own (package audit builds, seals and verifies its records; the
// server serves them as read-only AuditEvents). A store that keeps it
// implements AuditLog; its transactions implement AuditAppender, so that
// the events of a write commit with the write.

// AuditRecord is one event of the audit trail as the log keeps it.
type AuditRecord struct {
	// Seq is the event's position in the trail, from 1, dense. AppendAudit
	// assigns it from the log's head, inside the appending transaction, so
	// the order is the database's, whichever process appends.
	Seq int64
	// Recorded is when the event happened.
	Recorded time.Time
	// Action, Outcome, Type and Subtype are the event's AuditEvent.action,
	// outcome, type code and first subtype code, kept as columns for search.
	Action, Outcome, Type, Subtype string
	// Body is the event in package audit's encoding.
	Body []byte
	// KeyID names the key that sealed the event; Prev is the Hash of the
	// event before it (empty for the first); Hash is the event's seal.
	KeyID      string
	Prev, Hash []byte
	// Refs are the references the log indexes (for search and for the
	// release rule): derived from Body, so a verifier can check them.
	Refs []AuditRef
}

// AuditRef is one indexed reference of an event: Ref is a reference
// ("Patient/1", unversioned) or a client id prefixed with "@"; Role says
// where the event holds it (a combination of the AuditRole bits).
type AuditRef struct {
	Ref  string
	Role int
}

// The roles of an indexed reference.
const (
	// AuditAgent: AuditEvent.agent.who (or the organization an agent acted for).
	AuditAgent = 1 << iota
	// AuditClient: the OAuth client of the request (Ref is "@" + client id).
	AuditClient
	// AuditEntity: AuditEvent.entity.what.
	AuditEntity
	// AuditPatientRole: an entity in the role of the patient (object-role 1):
	// the patient whose data the event is about.
	AuditPatientRole
	// AuditRefusedAgent: an agent or client of a refused or failed access
	// that names a patient, in place of AuditAgent or AuditClient: the
	// agent does not read it back (that the refused Condition/x is
	// patient y's is what the refusal withheld), searches by agent find it.
	AuditRefusedAgent
)

// AuditSealer seals r, whose Seq is set, after the event whose hash is
// prev: it sets KeyID, Prev and Hash. AppendAudit calls it in sequence
// order while it holds the log's head.
type AuditSealer func(prev []byte, r *AuditRecord)

// AuditAppender appends events to the trail.
type AuditAppender interface {
	// AppendAudit assigns the records the next sequence numbers, seals each
	// with seal, stores them and their refs, and advances the head, all in
	// the caller's transaction (a Tx) or in one of its own (a store).
	//
	// A log that keeps pending events (AuditPendingLog) may instead, when
	// another appender holds the head, store them pending: durable, each
	// MACed by seal(nil, r) with r.Seq 0, and not yet in the trail. The
	// records are then left with Seq 0; the caller has them sealed soon
	// after (SealPending).
	AppendAudit(ctx context.Context, recs []*AuditRecord, seal AuditSealer) error
}

// PendingAudit is an event stored pending: the sealing key's id, the MAC
// of its body (seal(nil, r) with Seq 0) and the body.
type PendingAudit struct {
	ID      int64
	KeyID   string
	MAC     []byte
	Body    []byte
	Refused bool
}

// AuditPendingLog is implemented by logs whose appenders do not wait for
// a head another appender holds (replicas on one PostgreSQL): they store
// their events pending, and whoever seals next moves them into the trail.
// The trail's order is then the order in which the sealer found them: the
// database's, not a process's.
type AuditPendingLog interface {
	// SealPending waits for the head, then moves up to max pending events
	// into the trail, oldest first: open checks each (its MAC) and returns
	// its record (sequence number unset); an event open refuses is marked
	// refused and stays where verify finds it. It returns how many events
	// it sealed and how many it refused; when nothing is pending it returns
	// at once without taking the head.
	SealPending(ctx context.Context, max int, open func(PendingAudit) (*AuditRecord, error), seal AuditSealer) (sealed, refused int, err error)
	// ScanPendingAudit calls fn for every pending event (refused ones too).
	ScanPendingAudit(ctx context.Context, fn func(PendingAudit) error) error
}

// AuditAppenderRole is an AuditPendingLog that several processes share
// (replicas on one PostgreSQL database), in which one process at a time
// holds the appender's role: it appends its events to the chain and seals
// into it what the others stored pending, while the others store their
// events pending (one insert, durable before the answer, that never waits
// for the chain's head). Without the role, every replica's appends
// contend for the one head: each is refused or waits whenever another
// holds it. Correctness does not depend on the role: an append moves the
// head only from where it is, whoever appends.
type AuditAppenderRole interface {
	// ClaimAppender takes the role when no process holds it, or checks
	// that this one still does, and reports whether this process holds
	// it. Until it is first called, a process appends to the chain.
	ClaimAppender(ctx context.Context) (bool, error)
}

// AuditHead is the last event of the trail (Seq 0 for an empty trail).
type AuditHead struct {
	Seq  int64
	Hash []byte
}

// AuditRefFilter matches an event that holds one of Refs in one of the
// Roles (any bit).
type AuditRefFilter struct {
	Refs  []string
	Roles int
}

// AuditQuery selects events. Its conditions are ANDed; an empty list or
// zero value does not restrict.
type AuditQuery struct {
	// Seqs restricts to these events.
	Seqs []int64
	// Refs are reference conditions (each must hold).
	Refs []AuditRefFilter
	// From and To bound Recorded: From <= recorded < To.
	From, To time.Time
	// Action, Outcome, Type and Subtype are ORed value lists.
	Action, Outcome, Type, Subtype []string
	// Desc lists newest first; otherwise oldest first.
	Desc bool
	// Count is the page size.
	Count int
	// After continues a listing after this sequence number (in the
	// listing's direction); 0 starts at its beginning.
	After int64
	// Until, when not 0, leaves out events after it: the pages of one
	// listing stop at the trail's head when its first page was read
	// (reading the trail adds to it).
	Until int64
	// Total asks for the number of matching events.
	Total bool
}

// AuditPage is one page of events.
type AuditPage struct {
	Records []*AuditRecord
	// Next is the After of the next page; 0 on the last page.
	Next int64
	// Total is the number of matching events; -1 when not asked.
	Total int
}

// AuditLog is a store's audit trail.
type AuditLog interface {
	AuditAppender
	// SearchAudit lists matching events (Refs left empty).
	SearchAudit(ctx context.Context, q AuditQuery) (*AuditPage, error)
	// ScanAudit calls fn for every event from sequence from on, in
	// sequence order, as stored (Refs left empty); an error from fn stops it.
	ScanAudit(ctx context.Context, from int64, fn func(*AuditRecord) error) error
	// ScanAuditRefs calls fn for every stored ref, in no particular order.
	ScanAuditRefs(ctx context.Context, fn func(seq int64, ref AuditRef) error) error
	// AuditHead returns the head the log records.
	AuditHead(ctx context.Context) (AuditHead, error)
	// SaveAuditCheckpoint keeps a checkpoint (package audit's text) of
	// the trail at seq; AuditCheckpoints lists the kept ones, oldest first.
	SaveAuditCheckpoint(ctx context.Context, seq int64, checkpoint string) error
	AuditCheckpoints(ctx context.Context) ([]string, error)
}

// Written is one version a transaction wrote, as a CommitHook sees it.
type Written struct {
	Type, ID, VersionID string
	// Method is POST, PUT, PATCH or DELETE.
	Method string
	// Resource is the stored version; nil for a deletion.
	Resource *fhir.Resource
	// Patients are the ids of the Patients whose compartment held the
	// resource before the write or holds it after (the store's index of
	// compartment membership).
	Patients []string
}

// CommitHook runs inside every transaction that wrote something (or that
// changed a patient's state for the request in its context without
// writing a resource: a source connection, with written empty), after
// its writes and just before it commits; an error rolls the transaction
// back. after, when not nil, is called once the transaction ended, with
// whether it committed.
type CommitHook func(ctx context.Context, tx Tx, written []Written) (after func(committed bool), err error)

// CommitHooker is implemented by stores that run a CommitHook.
type CommitHooker interface {
	SetCommitHook(h CommitHook)
}

// TypePurger is implemented by stores that can remove every version of
// every resource of a type, with its index, inside a transaction (moving
// the AuditEvents of the resource store into the audit log).
type TypePurger interface {
	PurgeType(ctx context.Context, typ string) (int64, error)
}
