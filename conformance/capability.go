package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// capabilityStatement is the part of a CapabilityStatement the suite reads.
type capabilityStatement struct {
	ResourceType string   `json:"resourceType"`
	FHIRVersion  string   `json:"fhirVersion"`
	Kind         string   `json:"kind"`
	Format       []string `json:"format"`
	PatchFormat  []string `json:"patchFormat"`
	Rest         []struct {
		Mode     string `json:"mode"`
		Security *struct {
			Extension []struct {
				URL       string `json:"url"`
				Extension []struct {
					URL      string `json:"url"`
					ValueURI string `json:"valueUri"`
				} `json:"extension"`
			} `json:"extension"`
			Service []struct {
				Coding []struct {
					Code string `json:"code"`
				} `json:"coding"`
			} `json:"service"`
		} `json:"security"`
		Resource    []*csResource   `json:"resource"`
		Interaction []csInteraction `json:"interaction"`
		SearchParam []csSearchParam `json:"searchParam"`
		Operation   []csOperation   `json:"operation"`
	} `json:"rest"`
}

type csResource struct {
	Type              string          `json:"type"`
	Interaction       []csInteraction `json:"interaction"`
	Versioning        string          `json:"versioning"`
	ReadHistory       bool            `json:"readHistory"`
	UpdateCreate      bool            `json:"updateCreate"`
	ConditionalCreate bool            `json:"conditionalCreate"`
	ConditionalRead   string          `json:"conditionalRead"`
	ConditionalUpdate bool            `json:"conditionalUpdate"`
	ConditionalDelete string          `json:"conditionalDelete"`
	SearchInclude     []string        `json:"searchInclude"`
	SearchRevInclude  []string        `json:"searchRevInclude"`
	SearchParam       []csSearchParam `json:"searchParam"`
	Operation         []csOperation   `json:"operation"`
}

type csInteraction struct {
	Code string `json:"code"`
}

type csSearchParam struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type csOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

func (r *csResource) has(interaction string) bool {
	return slices.ContainsFunc(r.Interaction, func(i csInteraction) bool { return i.Code == interaction })
}

func (r *csResource) hasOp(name string) bool {
	return slices.ContainsFunc(r.Operation, func(o csOperation) bool { return strings.TrimPrefix(o.Name, "$") == name })
}

func (cs *capabilityStatement) systemHas(interaction string) bool {
	return len(cs.Rest) > 0 && slices.ContainsFunc(cs.Rest[0].Interaction, func(i csInteraction) bool { return i.Code == interaction })
}

// oauthURIs are the endpoints of rest[0].security's SMART oauth-uris
// extension (authorize, token…).
func (cs *capabilityStatement) oauthURIs() map[string]string {
	out := map[string]string{}
	if len(cs.Rest) == 0 || cs.Rest[0].Security == nil {
		return out
	}
	for _, e := range cs.Rest[0].Security.Extension {
		if e.URL != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
			continue
		}
		for _, x := range e.Extension {
			out[x.URL] = x.ValueURI
		}
	}
	return out
}

// securityServices are the codes of rest[0].security.service.
func (cs *capabilityStatement) securityServices() []string {
	var out []string
	if len(cs.Rest) == 0 || cs.Rest[0].Security == nil {
		return nil
	}
	for _, s := range cs.Rest[0].Security.Service {
		for _, c := range s.Coding {
			out = append(out, c.Code)
		}
	}
	return out
}

func (cs *capabilityStatement) resource(typ string) *csResource {
	if len(cs.Rest) == 0 {
		return nil
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type == typ {
			return r
		}
	}
	return nil
}

// readCapabilities reads /metadata; without it the suite cannot derive
// anything, so failing to read it ends the run.
func (r *runner) readCapabilities(ctx context.Context) error {
	c := &ct{r: r, ctx: ctx, quiet: true}
	resp := c.do(http.MethodGet, "/metadata", nil)
	if c.failed() {
		return fmt.Errorf("conformance: GET %s/metadata: %s", r.base, strings.Join(c.fails, "; "))
	}
	if resp.status != http.StatusOK {
		return fmt.Errorf("conformance: GET %s/metadata: status %d: %s", r.base, resp.status, snippet(resp.body))
	}
	var cs capabilityStatement
	if err := json.Unmarshal(resp.body, &cs); err != nil {
		return fmt.Errorf("conformance: GET %s/metadata: %w", r.base, err)
	}
	if cs.ResourceType != "CapabilityStatement" || len(cs.Rest) == 0 {
		return fmt.Errorf("conformance: GET %s/metadata: not a CapabilityStatement with a rest entry", r.base)
	}
	r.cs = &cs
	return nil
}

// typesToCheck returns the claimed resource types, restricted to
// Options.Types.
func (r *runner) typesToCheck() []*csResource {
	var out []*csResource
	for _, res := range r.cs.Rest[0].Resource {
		if len(r.opts.Types) == 0 || slices.Contains(r.opts.Types, res.Type) {
			out = append(out, res)
		}
	}
	return out
}

// claimTable maps every kind of claim a CapabilityStatement can make to
// the checks that verify it ("T/" stands for the resource type). A claim
// whose kind is not here has no check and is reported as a failure.
var claimTable = map[string][]string{
	"interaction:create":                      {"T/create"},
	"interaction:read":                        {"T/read"},
	"interaction:vread":                       {"T/vread"},
	"interaction:update":                      {"T/update"},
	"interaction:patch":                       {"T/patch"},
	"interaction:delete":                      {"T/delete"},
	"interaction:history-instance":            {"T/history-instance"},
	"interaction:history-type":                {"T/history-type"},
	"interaction:search-type":                 {"T/search-type"},
	"versioning:versioned-update":             {"T/versioned-update"},
	"versioning:versioned":                    {"T/vread"},
	"versioning:no-version":                   {"T/read"},
	"readHistory":                             {"T/vread-previous"},
	"updateCreate":                            {"T/update-create"},
	"conditionalCreate":                       {"T/conditional-create"},
	"conditionalUpdate":                       {"T/conditional-update"},
	"conditionalDelete:single":                {"T/conditional-delete"},
	"conditionalDelete:multiple":              {"T/conditional-delete"},
	"conditionalRead:not-match":               {"T/conditional-read"},
	"conditionalRead:full-support":            {"T/conditional-read"},
	"conditionalRead:modified-since":          {"T/conditional-read"},
	"searchInclude":                           {"T/include:<param>", "T/include:*"},
	"searchRevInclude":                        {"T/revinclude:Provenance:target", "T/revinclude:*"},
	"searchParam:token":                       {"T/search:token:<param>"},
	"searchParam:string":                      {"T/search:string:<param>"},
	"searchParam:date":                        {"T/search:date:<param>"},
	"searchParam:reference":                   {"T/search:reference:<param>"},
	"searchParam:quantity":                    {"T/search:quantity:<param>"},
	"searchParam:number":                      {"T/search:number:<param>"},
	"searchParam:uri":                         {"T/search:uri:<param>"},
	"searchParam:composite":                   {"T/search:composite:<param>"},
	"searchParam:_id":                         {"T/search:_id"},
	"searchParam:_lastUpdated":                {"T/search:_lastUpdated"},
	"searchParam:_tag":                        {"T/search:_tag"},
	"searchParam:_profile":                    {"T/search:_profile"},
	"searchParam:_security":                   {"T/search:_security"},
	"searchParam:_source":                     {"T/search:_source"},
	"searchParam:_text":                       {"T/search:_text"},
	"searchParam:_content":                    {"T/search:_content"},
	"searchParam:_query":                      {"T/search:_query"},
	"operation:validate":                      {"T/$validate", "T/$validate-instance"},
	"operation:everything":                    {"Patient/$everything"},
	"operation:summary":                       {"Patient/$summary"},
	"operation:import":                        {"Patient/$import"},
	"operation:second-opinion":                {"Patient/$second-opinion"},
	"operation:opinion":                       {"Task/$opinion"},
	"operation:opinions":                      {"ServiceRequest/$opinions"},
	"operation:share-link":                    {"Patient/$share-link"},
	"operation:share-links":                   {"Patient/$share-links"},
	"operation:share-link-revoke":             {"Patient/$share-link-revoke"},
	"operation:access-log":                    {"Patient/$access-log"},
	"operation:status":                        {"Subscription/$status"},
	"system:transaction":                      {"system/transaction", "system/transaction-atomic"},
	"system:batch":                            {"system/batch"},
	"system:history-system":                   {"system/history-system"},
	"system:search-system":                    {"system/search-system"},
	"security":                                {"rest/security"},
	"format:json":                             {"rest/_format"},
	"format:application/fhir+json":            {"rest/metadata"},
	"patchFormat:application/json-patch+json": {"T/patch"},
}

// claim is one thing the CapabilityStatement says.
type claim struct {
	group string // result group: a resource type or "system"
	text  string // as Results carry it: "Patient.interaction:read"
	kind  string // key of claimTable
}

// claims lists what the statement claims for the checked types.
func (r *runner) claims(types []*csResource) []claim {
	var out []claim
	add := func(group, prefix, kind string) {
		out = append(out, claim{group: group, text: prefix + kind, kind: kind})
	}
	cs := r.cs
	for _, f := range cs.Format {
		add(groupCapabilities, "", "format:"+f)
	}
	for _, f := range cs.PatchFormat {
		if !slices.ContainsFunc(types, func(t *csResource) bool { return t.has("patch") }) {
			continue
		}
		add(groupCapabilities, "", "patchFormat:"+f)
	}
	for _, code := range cs.securityServices() {
		out = append(out, claim{group: groupREST, text: "rest.security:" + code, kind: "security"})
	}
	for _, i := range cs.Rest[0].Interaction {
		add(groupSystem, "rest.", "system:"+i.Code)
	}
	for _, o := range cs.Rest[0].Operation {
		add(groupSystem, "rest.", "system-operation:"+strings.TrimPrefix(o.Name, "$"))
	}
	for _, sp := range cs.Rest[0].SearchParam {
		add(groupSystem, "rest.", "system-searchParam:"+sp.Name)
	}
	for _, t := range types {
		p := t.Type + "."
		for _, i := range t.Interaction {
			add(t.Type, p, "interaction:"+i.Code)
		}
		if t.Versioning != "" {
			add(t.Type, p, "versioning:"+t.Versioning)
		}
		if t.ReadHistory {
			add(t.Type, p, "readHistory")
		}
		if t.UpdateCreate {
			add(t.Type, p, "updateCreate")
		}
		if t.ConditionalCreate {
			add(t.Type, p, "conditionalCreate")
		}
		if t.ConditionalUpdate {
			add(t.Type, p, "conditionalUpdate")
		}
		if t.ConditionalDelete != "" && t.ConditionalDelete != "not-supported" {
			add(t.Type, p, "conditionalDelete:"+t.ConditionalDelete)
		}
		if t.ConditionalRead != "" && t.ConditionalRead != "not-supported" {
			add(t.Type, p, "conditionalRead:"+t.ConditionalRead)
		}
		if len(t.SearchInclude) > 0 {
			add(t.Type, p, "searchInclude")
		}
		if len(t.SearchRevInclude) > 0 {
			add(t.Type, p, "searchRevInclude")
		}
		seen := map[string]bool{}
		for _, sp := range t.SearchParam {
			k := "searchParam:" + sp.Type
			if strings.HasPrefix(sp.Name, "_") {
				k = "searchParam:" + sp.Name
			}
			if !seen[k] {
				seen[k] = true
				add(t.Type, p, k)
			}
		}
		for _, o := range t.Operation {
			add(t.Type, p, "operation:"+strings.TrimPrefix(o.Name, "$"))
		}
	}
	return out
}

// coveredBy reports whether a check of that name is one claimTable lists
// for the claim's kind ("T" is the claim's resource type, "<param>" any
// parameter).
func (cl claim) coveredBy(check string) bool {
	typ := `[A-Za-z]+`
	if fhirType.MatchString(cl.group) {
		typ = regexp.QuoteMeta(cl.group)
	}
	for _, pat := range claimTable[cl.kind] {
		re := regexp.QuoteMeta(pat)
		if strings.HasPrefix(pat, "T/") {
			re = typ + re[1:]
		}
		re = strings.ReplaceAll(re, regexp.QuoteMeta("<param>"), ".+")
		if regexp.MustCompile("^" + re + "$").MatchString(check) {
			return true
		}
	}
	return false
}

var fhirType = regexp.MustCompile(`^[A-Z][A-Za-z]+$`)

// uncheckedClaims records a failure for every claim that no check
// covered: either no check exists for its kind, or none of the checks
// claimTable lists for it ran.
func (r *runner) uncheckedClaims(types []*csResource) {
	r.mu.Lock()
	checks := map[string][]string{}
	for _, rs := range r.results {
		for _, res := range rs {
			checks[res.Claim] = append(checks[res.Claim], res.Check)
		}
	}
	r.mu.Unlock()
	for _, cl := range r.claims(types) {
		if slices.ContainsFunc(checks[cl.text], cl.coveredBy) {
			continue
		}
		name := "unchecked/" + cl.text
		if _, ok := claimTable[cl.kind]; !ok {
			r.record(cl.group, Result{Check: name, Claim: cl.text, Status: Fail, Detail: "claimed in /metadata, but the suite has no check for this claim"})
			continue
		}
		r.record(cl.group, Result{Check: name, Claim: cl.text, Status: Fail, Detail: "claimed in /metadata, but its check did not run"})
	}
}
