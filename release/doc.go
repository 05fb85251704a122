// Package release is the gateway's release rule: the one place that decides
// what a caller may receive and what it may write. Every road out of the
// store goes through a Guard — reads, searches (matches, _include and
// _revinclude, the inner criteria of _has and chains), counts and paging
// links, history, Patient/$everything, documents and Binaries — and every
// write through Guard.CheckWrite, so a new route cannot forget the rule: it
// has no other way to reach patient data.
//
// The rule (README "Who sees what"):
//
//   - A system client sees what its scopes allow; a gateway without
//     authentication everything.
//   - A resource about patients (in their R4 Patient compartment, or, for
//     types outside it, referring to them: Task.for, Device.patient…) is
//     released to a patient when it is about that patient, and to a
//     provider when the Consents of every patient it is about permit it
//     now (consent.Policy), or when it is a referral addressed to that
//     provider while the patient shares with it.
//   - A resource in no patient's compartment (Medication, Practitioner,
//     Organization, Location…) is released when asked for directly, but
//     reaches a caller through another resource (_include, _revinclude,
//     $everything) only from a released one.
//   - What points at or holds patient data is released only when that data
//     is: a Provenance when its targets are, a stored Bundle when every
//     entry is, a Binary when its securityContext is.
//   - An AuditEvent is released to the patient it is about, to the provider
//     whose access it records, and to system clients with an explicit
//     AuditEvent scope.
//
// Counts never count what is withheld: the store (storage.Release) fills
// pages with released resources only, gives a next link only when another
// released one follows, and counts released resources or none.
//
// Decisions are made per resource version and remembered for the rest of
// the request; compiled Consent policies are kept per patient until a
// Consent is written anywhere (storage.Store.ChangeMark), so revocation
// takes effect on the next request.
package release
