package auth

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/config"
)

// principal maps verified claims to a Principal:
//
//  1. the FHIR-user claim (fhirUserClaim, default "fhirUser") naming a
//     Patient makes a patient; a Practitioner or PractitionerRole makes a
//     provider only through an explicit entry: its client is a configured
//     provider (it acts for that client's organization), or the
//     practitioner is listed in a provider entry's practitioners (it acts
//     for that entry's organization). Any other practitioner login is
//     refused: an unknown client gets nothing of any patient;
//  2. else sub listed in patientMapping makes that patient;
//  3. else the client (client_id, else azp, else sub) found in
//     auth.clients makes a provider (with its organization) or a system
//     client;
//  4. else the token is refused with ErrForbidden.
func (is *issuer) principal(c claimSet, clients, practitioners map[string]config.Client) (*Principal, error) {
	p := &Principal{
		Issuer:   is.cfg.URL,
		Subject:  c.str("sub"),
		ClientID: firstNonEmpty(c.str("client_id"), c.str("azp"), c.str("sub")),
		Scopes:   scopesOf(c),
		TokenID:  c.str("jti"),
	}
	if exp, ok := c.time("exp"); ok {
		p.Expiry = exp
	}
	p.PurposeOfUse = purposeOfUse(c)
	client, known := clients[p.ClientID]

	if raw, ok := c[is.userClaim]; ok {
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return nil, newError(ErrForbidden, "the "+is.userClaim+" claim is not a string", nil)
		}
		ref, ok := normalizeFHIRUser(v)
		if !ok {
			return nil, newError(ErrForbidden, "the "+is.userClaim+" claim is not a FHIR reference", nil)
		}
		p.FHIRUser = ref
		switch typ, _, _ := strings.Cut(ref, "/"); typ {
		case "Patient":
			p.Kind, p.Patient = KindPatient, ref
		case "Practitioner", "PractitionerRole":
			switch entry, listed := practitioners[ref]; {
			case known && client.Role == "provider":
				p.Kind, p.Organization = KindProvider, client.Organization
			case listed:
				p.Kind, p.Organization = KindProvider, entry.Organization
			default:
				return nil, newError(ErrForbidden, "a practitioner login is accepted only from a client configured as a provider, or for a practitioner listed in auth.clients", nil)
			}
		default:
			return nil, newError(ErrForbidden, "a "+typ+" user is not supported", nil)
		}
		return p, nil
	}
	if ref, ok := is.mapping[p.Subject]; ok && p.Subject != "" {
		p.Kind, p.Patient, p.FHIRUser = KindPatient, ref, ref
		return p, nil
	}
	if known {
		switch client.Role {
		case "provider":
			p.Kind, p.Organization = KindProvider, client.Organization
			return p, nil
		case "system":
			p.Kind, p.Organization = KindSystem, client.Organization
			if client.Custodian != nil {
				cu := *client.Custodian
				p.Custodian = &cu
			}
			return p, nil
		}
	}
	return nil, newError(ErrForbidden, "the token names no patient, provider or system client known to this server", nil)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// scopesOf reads "scope" (space-separated, as RFC 8693 and 9068 say; an
// array is accepted too) or else "scp" (an array, as Hydra and Okta send
// it, or a string).
func scopesOf(c claimSet) ScopeSet {
	for _, name := range []string{"scope", "scp"} {
		raw, ok := c[name]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return ParseScopes(s)
		}
		var list []string
		if json.Unmarshal(raw, &list) == nil {
			return NewScopeSet(list)
		}
		return ScopeSet{invalid: []string{"(" + name + " claim is neither a string nor an array of strings)"}}
	}
	return ScopeSet{}
}

// purposeOfUse reads the purpose of use: a top-level "purpose_of_use"
// claim (a code, a Coding, or an array of either; bare codes are v3
// ActReason), or IHE IUA's extensions.ihe_iua.purpose_of_use.
func purposeOfUse(c claimSet) []Coding {
	raw, ok := c["purpose_of_use"]
	if !ok {
		var ext struct {
			IUA struct {
				PurposeOfUse json.RawMessage `json:"purpose_of_use"`
			} `json:"ihe_iua"`
		}
		if r, ok := c["extensions"]; !ok || json.Unmarshal(r, &ext) != nil || ext.IUA.PurposeOfUse == nil {
			return nil
		}
		raw = ext.IUA.PurposeOfUse
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		items = []json.RawMessage{raw}
	}
	var out []Coding
	for _, it := range items {
		var code string
		if json.Unmarshal(it, &code) == nil {
			if code != "" {
				out = append(out, Coding{System: PurposeOfUseSystem, Code: code})
			}
			continue
		}
		var cd Coding
		if json.Unmarshal(it, &cd) == nil && cd.Code != "" {
			if cd.System == "" {
				cd.System = PurposeOfUseSystem
			}
			out = append(out, cd)
		}
	}
	return slices.Compact(out)
}
