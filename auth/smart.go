package auth

import (
	"context"
	"errors"
	"slices"
)

// SMARTConfiguration is the document served at
// /.well-known/smart-configuration (SMART App Launch 2.2, §2.3 of
// STANDARDS.md).
type SMARTConfiguration struct {
	Issuer                                     string   `json:"issuer,omitempty"`
	JWKSURI                                    string   `json:"jwks_uri,omitempty"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint,omitempty"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	Capabilities                               []string `json:"capabilities"`
}

// ErrNoIssuer: the configuration names no issuer, so there is no SMART
// configuration to publish (the server answers 404).
var ErrNoIssuer = errors.New("auth: no issuer configured")

// ScopesSupported are the scopes the gateway understands and enforces.
var ScopesSupported = []string{
	"openid", "fhirUser", "launch/patient", "offline_access", "online_access",
	"patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
	"patient/*.read", "patient/*.write", "patient/*.*",
	"user/*.read", "user/*.write", "user/*.*",
	"system/*.read", "system/*.write", "system/*.*",
}

// SMARTConfiguration builds the SMART configuration from the first
// configured issuer, the one patient apps log in with; it discovers the
// issuer if that has not happened yet (ErrUnavailable when it cannot).
// Endpoints are the identity provider's: the gateway verifies tokens, it
// does not issue them. Only S256 is advertised for PKCE, never plain.
func (v *Verifier) SMARTConfiguration(ctx context.Context) (*SMARTConfiguration, error) {
	if len(v.issuers) == 0 {
		return nil, ErrNoIssuer
	}
	is := v.issuers[0]
	st, err := is.discover(ctx, false)
	if err != nil {
		return nil, newError(ErrUnavailable, "the identity provider could not be reached", err)
	}
	m := st.meta
	c := &SMARTConfiguration{
		Issuer:                            m.Issuer,
		JWKSURI:                           m.JWKSURI,
		AuthorizationEndpoint:             m.AuthorizationEndpoint,
		TokenEndpoint:                     m.TokenEndpoint,
		IntrospectionEndpoint:             firstNonEmpty(is.cfg.IntrospectionURL, m.IntrospectionEndpoint),
		RevocationEndpoint:                m.RevocationEndpoint,
		RegistrationEndpoint:              m.RegistrationEndpoint,
		TokenEndpointAuthMethodsSupported: m.TokenEndpointAuthMethodsSupported,
		TokenEndpointAuthSigningAlgValuesSupported: m.TokenEndpointAuthSigningAlgs,
		ScopesSupported:               slices.Clone(ScopesSupported),
		ResponseTypesSupported:        []string{"code"},
		CodeChallengeMethodsSupported: []string{"S256"},
	}
	// OAuth's default grants when the provider does not list them.
	grants := m.GrantTypesSupported
	if len(grants) == 0 {
		grants = []string{"authorization_code", "implicit"}
	}
	for _, g := range []string{"authorization_code", "client_credentials"} {
		if slices.Contains(grants, g) {
			c.GrantTypesSupported = append(c.GrantTypesSupported, g)
		}
	}
	if len(c.GrantTypesSupported) == 0 {
		c.GrantTypesSupported = []string{"authorization_code"}
	}

	caps := []string{"sso-openid-connect", "context-standalone-patient", "permission-patient", "permission-user", "permission-v1", "permission-v2"}
	if c.AuthorizationEndpoint != "" && slices.Contains(c.GrantTypesSupported, "authorization_code") {
		caps = append(caps, "launch-standalone")
	}
	methods := m.TokenEndpointAuthMethodsSupported
	if len(methods) == 0 {
		methods = []string{"client_secret_basic"} // the OpenID default
	}
	if slices.Contains(methods, "none") {
		caps = append(caps, "client-public")
	}
	if slices.Contains(methods, "client_secret_basic") || slices.Contains(methods, "client_secret_post") {
		caps = append(caps, "client-confidential-symmetric")
	}
	if slices.Contains(methods, "private_key_jwt") {
		caps = append(caps, "client-confidential-asymmetric")
	}
	if slices.Contains(m.ScopesSupported, "offline_access") {
		caps = append(caps, "permission-offline")
	}
	slices.Sort(caps)
	c.Capabilities = caps
	return c, nil
}
