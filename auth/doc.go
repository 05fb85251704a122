// Package auth establishes who a request acts for and what its token lets
// it do: OpenID Connect access tokens verified with go-oidc (JWTs against
// the issuer's JWKS) or RFC 7662 introspection (opaque tokens), mapped to a
// Principal (patient, provider or system client), and SMART scopes (v1 and
// v2, with query constraints) checked per interaction.
//
// A server uses it in three steps:
//
//	v, err := auth.New(cfg.Auth, auth.Options{Logger: log})
//	p, err := v.Authenticate(req)               // 401/403/503: auth.Response(err, realm)
//	d := p.Check("Observation", auth.PermRead)  // !d.Allowed: auth.InsufficientScope(...)
//
// and then limits a patient to its compartment, a provider to what its
// Consents allow (package consent), and applies d.Filters.
//
// Nothing in this package logs or returns a token, a secret or a claim
// value.
package auth
