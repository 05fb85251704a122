// Package audit keeps the gateway's audit trail: it builds the AuditEvents
// (FHIR R4, in the shape of IHE Basic Audit Log Patterns) and appends them to
// the store's audit log (storage.AuditLog: tables of their own, not resources
// of the store), sealed so that nobody without the key can rewrite it.
//
//   - Trail (trail.go) appends: the events of a write transaction through the
//     store's commit hook, inside that transaction; other events (reads,
//     refusals) with group commit — Record returns once its events are
//     committed, and one append carries every event recorded while the
//     previous append was committing. It publishes checkpoints of the head
//     (sequence number and seal, MACed) to its log, a file and a URL.
//   - Keys (keys.go) seal each event with HMAC-SHA256 over the previous seal,
//     its sequence number, the key id and its body. The key comes from
//     configuration, never from the database; the first key of a Keyring
//     seals, every key verifies what it sealed (rotation).
//   - VerifyLog (verify.go) walks the log in sequence order and names every
//     problem: an edited, missing, inserted, reordered or re-sealed event, an
//     edited index or head row, a truncated tail against the last checkpoint,
//     a forged or rolled-back checkpoint.
//   - Migrate (migrate.go) moves AuditEvent resources written before the log
//     existed into it, re-sealed, recording the old chain's head.
//
// The log keeps an event in a compact binary form of its own (codec.go: a
// row is written on every request, so it is encoded and hashed without
// building JSON) and renders the AuditEvent when it is served (render.go);
// its search columns (index.go) are taken from the event's facts, not by a
// general FHIRPath engine.
package audit
