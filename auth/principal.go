package auth

import (
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/fhir"
)

// Kind says who a principal is, which decides how its requests are
// authorised: a patient sees its own compartment, a provider what Consents
// allow, a system client what its scopes allow.
type Kind string

// The kinds of principal.
const (
	KindAnonymous Kind = "anonymous"
	KindPatient   Kind = "patient"
	KindProvider  Kind = "provider"
	KindSystem    Kind = "system"
)

// Coding is a code in a code system (purpose of use).
type Coding struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code"`
}

// PurposeOfUseSystem is the v3 ActReason code system (TREAT, ETREAT, ...).
const PurposeOfUseSystem = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

// Principal is who a request acts for, as established from its access
// token. The Verifier returns the same *Principal for repeated requests with
// one token: treat it as read-only.
type Principal struct {
	Kind Kind
	// Issuer and Subject are the token's iss and sub.
	Issuer  string
	Subject string
	// ClientID is the OAuth client (client_id, else azp, else sub).
	ClientID string
	// FHIRUser is the signed-in user ("Patient/123", "Practitioner/x",
	// "PractitionerRole/y"), "" for client-only tokens.
	FHIRUser string
	// Patient is the patient a patient principal is ("Patient/123").
	Patient string
	// Organization is what a provider acts for, from auth.clients
	// ("Organization/x" or "PractitionerRole/y"), or the organization a
	// system client names; "" when unknown.
	Organization string
	// Custodian, for a system client so configured, names the patients it
	// may record Consents for.
	Custodian *config.Custodian
	// Scopes are the granted scopes.
	Scopes ScopeSet
	// PurposeOfUse is the token's purpose of use, if it carries one.
	PurposeOfUse []Coding
	// Expiry is when the token expires (zero for anonymous).
	Expiry time.Time
	// TokenID is the token's jti, for audit correlation; "" when absent.
	TokenID string
}

// Anonymous is the principal of a request without a token when auth is off.
var Anonymous = &Principal{Kind: KindAnonymous}

// Contexts returns the scope contexts that apply to the principal: patient/
// and user/ scopes for a patient, user/ and system/ scopes for a provider,
// system/ scopes for a system client.
func (p *Principal) Contexts() []Context {
	switch p.Kind {
	case KindPatient:
		return []Context{ContextPatient, ContextUser}
	case KindProvider:
		return []Context{ContextUser, ContextSystem}
	case KindSystem:
		return []Context{ContextSystem}
	}
	return nil
}

// Check decides whether the principal's scopes, in the contexts that apply
// to it, grant perms on resources of type typ. Passing the scope check is
// necessary, not sufficient: a patient is further limited to its
// compartment and a provider to what Consents allow.
func (p *Principal) Check(typ string, perms Perm) Decision {
	if p.Kind == KindAnonymous {
		return Decision{}
	}
	return p.Scopes.check(p.Contexts(), typ, perms)
}

// Actors returns the references a Consent may name to grant this principal
// access: its organization (or PractitionerRole) and its FHIR user when
// that is a Practitioner or PractitionerRole. Empty for others.
func (p *Principal) Actors() []string {
	if p.Kind != KindProvider {
		return nil
	}
	var out []string
	if p.Organization != "" {
		out = append(out, p.Organization)
	}
	if t, _, ok := splitRef(p.FHIRUser); ok && (t == "Practitioner" || t == "PractitionerRole") && p.FHIRUser != p.Organization {
		out = append(out, p.FHIRUser)
	}
	return out
}

// Who returns the reference that best names the principal in an audit
// trail: its FHIR user, else its organization, else "" (then the client id
// identifies it).
func (p *Principal) Who() string {
	if p.FHIRUser != "" {
		return p.FHIRUser
	}
	return p.Organization
}

// splitRef splits "Type/id" into its parts, checking both.
func splitRef(ref string) (typ, id string, ok bool) {
	typ, id, found := strings.Cut(ref, "/")
	if !found || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

// normalizeFHIRUser turns a fhirUser value (absolute URL or relative
// reference, possibly versioned) into "Type/id".
func normalizeFHIRUser(v string) (string, bool) {
	v = strings.TrimSuffix(v, "/")
	if i := strings.Index(v, "/_history/"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, "/")
	if len(parts) < 2 {
		return "", false
	}
	ref := parts[len(parts)-2] + "/" + parts[len(parts)-1]
	if _, _, ok := splitRef(ref); !ok {
		return "", false
	}
	if len(parts) > 2 && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
		return "", false
	}
	return ref, true
}

// CustodianOf reports whether the principal is a system client configured
// as the custodian of the patient ("Patient/id"); identifiers are the
// patient's identifiers as (system, value) pairs, for custodians that name
// their patients by identifier system.
func (p *Principal) CustodianOf(patient string, identifiers [][2]string) bool {
	if p.Kind != KindSystem || p.Custodian == nil {
		return false
	}
	if slices.Contains(p.Custodian.Patients, "*") || slices.Contains(p.Custodian.Patients, patient) {
		return true
	}
	for _, id := range identifiers {
		if id[1] != "" && slices.Contains(p.Custodian.IdentifierSystems, id[0]) {
			return true
		}
	}
	return false
}
