package server

import (
	"context"
	"encoding/json"
)

// restSecurity is CapabilityStatement.rest.security as SMART App Launch
// clients look for it: the SMART-on-FHIR service coding, and the OAuth
// endpoints in the oauth-uris extension (they also read
// /.well-known/smart-configuration). complete is false when the identity
// provider could not be reached, so the statement is not kept.
func (s *Server) restSecurity(ctx context.Context) (sec json.RawMessage, complete bool) {
	sc, ok := s.cfg.Auth.(SMARTConfigurer)
	if !ok || s.cfg.Auth == nil {
		return nil, true
	}
	doc := map[string]any{
		"cors": len(s.cfg.CORSOrigins) > 0,
		"service": []any{map[string]any{
			"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}},
			"text":   "OAuth2 with OpenID Connect, SMART App Launch 2 (see /.well-known/smart-configuration)",
		}},
		"description": "Every request but /metadata and the well-known documents needs an access token from the configured identity provider; SMART scopes and the patient's Consents decide what it may see.",
	}
	cfg, err := sc.SMARTConfiguration(ctx)
	if err != nil {
		b, _ := json.Marshal(doc)
		return b, false
	}
	var uris []any
	for _, u := range [][2]string{{"authorize", cfg.AuthorizationEndpoint}, {"token", cfg.TokenEndpoint}, {"introspect", cfg.IntrospectionEndpoint}, {"revoke", cfg.RevocationEndpoint}, {"register", cfg.RegistrationEndpoint}} {
		if u[1] != "" {
			uris = append(uris, map[string]any{"url": u[0], "valueUri": u[1]})
		}
	}
	doc["extension"] = []any{map[string]any{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": uris}}
	b, _ := json.Marshal(doc)
	return b, true
}
