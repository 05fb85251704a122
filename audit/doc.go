// Package audit builds the gateway's AuditEvents (FHIR R4, in the shape of
// IHE Basic Audit Log Patterns) and makes the trail tamper-evident: Seal
// chains each event to the one before it by hash, and Verify finds an
// edited, deleted, inserted or reordered event and says which.
//
// The package stores nothing. A server records an access like this:
//
//	ev, err := audit.Build(audit.Event{Interaction: "read", Recorded: now, Outcome: audit.Success,
//		Who: p.Who(), ClientID: p.ClientID, Issuer: p.Issuer, TokenID: p.TokenID,
//		ClientAddress: ip, Server: baseURL, Resource: "Observation/1", Patient: "Patient/p1",
//		Consents: []string{"Consent/c1"}})
//	_, err = chain.Append(ev, func(sealed *fhir.Resource) error { _, err := store.Create(ctx, sealed); return err })
//
// and "fhirgate audit verify" feeds the stored events, in chain order, to
// Verify (or to a Verifier, one at a time).
package audit
