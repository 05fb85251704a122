package server_test

import (
	"net/http"
	"testing"
)

// TestMetadataSecurity: a secured gateway's CapabilityStatement declares
// SMART on FHIR in rest.security, with the identity provider's endpoints
// in the oauth-uris extension, as SMART clients look for them.
func TestMetadataSecurity(t *testing.T) {
	s := newSecured(t, storeKinds[0])
	w := s.do(http.MethodGet, "/metadata", nil)
	mustStatus(t, w, http.StatusOK)
	rest := jsonMap(t, w.Body.Bytes())["rest"].([]any)[0].(map[string]any)
	sec, ok := rest["security"].(map[string]any)
	if !ok {
		t.Fatalf("no rest.security: %v", rest["security"])
	}
	coding := sec["service"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)
	if coding["system"] != "http://terminology.hl7.org/CodeSystem/restful-security-service" || coding["code"] != "SMART-on-FHIR" {
		t.Errorf("service coding = %v", coding)
	}
	uris := map[string]any{}
	for _, e := range sec["extension"].([]any) {
		e := e.(map[string]any)
		if e["url"] != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
			continue
		}
		for _, x := range e["extension"].([]any) {
			x := x.(map[string]any)
			uris[x["url"].(string)] = x["valueUri"]
		}
	}
	if uris["authorize"] != s.is.URL+"/authorize" || uris["token"] != s.is.URL+"/token" {
		t.Errorf("oauth-uris = %v", uris)
	}
	// an unsecured gateway (--auth=none) declares nothing
	h := newHarness(t, storeKinds[0], serverConfigForFuzz())
	w = h.do(http.MethodGet, "/metadata", nil)
	if _, ok := jsonMap(t, w.Body.Bytes())["rest"].([]any)[0].(map[string]any)["security"]; ok {
		t.Error("rest.security without authentication")
	}
}
