// Package consent is the gateway's policy decision point: given a
// patient's Consents, who asks (the requester's Organization,
// PractitionerRole or Practitioner), for what action and purpose, and the
// resource to release, it answers permit or deny and names the Consents
// that decided.
//
// The semantics follow STANDARDS.md §5.4 (opt-in: nothing is visible
// without a Consent whose root permit names the requester; nested
// provisions are exceptions; deny wins); Policy.Decide documents them in
// full. A server compiles a patient's Consents once and keeps the Policy
// until one of them is written:
//
//	pol := consent.Compile("Patient/p1", consents, consent.Options{Resolve: load})
//	req := consent.Request{Actors: principal.Actors(), Action: consent.ActionAccess,
//		Purpose: []consent.Coding{consent.Treatment}, Time: time.Now()}
//	for _, res := range page {
//		if d := pol.DecideResource(req, res); d.Permitted() { ... audit d.Consents ... }
//	}
//
// Validate checks a Consent a client asks the gateway to store.
package consent
