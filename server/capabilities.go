package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

// CapabilityContributor adds what a component registers (search
// parameters, operations, security) to the generated CapabilityStatement.
type CapabilityContributor func(cs *CapabilityStatement)

// CapabilityStatement is the subset of the resource the gateway fills.
type CapabilityStatement struct {
	ResourceType   string            `json:"resourceType"`
	Status         string            `json:"status"`
	Date           string            `json:"date"`
	Publisher      string            `json:"publisher,omitempty"`
	Kind           string            `json:"kind"`
	Software       *csSoftware       `json:"software,omitempty"`
	Implementation *csImplementation `json:"implementation,omitempty"`
	FHIRVersion    string            `json:"fhirVersion"`
	Format         []string          `json:"format"`
	PatchFormat    []string          `json:"patchFormat,omitempty"`
	Rest           []CSRest          `json:"rest"`
}

type csSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

type csImplementation struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

// CSRest is CapabilityStatement.rest.
type CSRest struct {
	Mode        string          `json:"mode"`
	Security    json.RawMessage `json:"security,omitempty"`
	Resource    []CSResource    `json:"resource"`
	Interaction []CSInteraction `json:"interaction,omitempty"`
	SearchParam []CSSearchParam `json:"searchParam,omitempty"`
	Operation   []CSOperation   `json:"operation,omitempty"`
	Compartment []string        `json:"compartment,omitempty"`
}

// CSResource is CapabilityStatement.rest.resource.
type CSResource struct {
	Extension         []CSExtension   `json:"extension,omitempty"`
	Type              string          `json:"type"`
	Profile           string          `json:"profile,omitempty"`
	SupportedProfile  []string        `json:"supportedProfile,omitempty"`
	Interaction       []CSInteraction `json:"interaction"`
	Versioning        string          `json:"versioning"`
	ReadHistory       bool            `json:"readHistory"`
	UpdateCreate      bool            `json:"updateCreate"`
	ConditionalCreate bool            `json:"conditionalCreate"`
	ConditionalRead   string          `json:"conditionalRead"`
	ConditionalUpdate bool            `json:"conditionalUpdate"`
	ConditionalDelete string          `json:"conditionalDelete"`
	SearchInclude     []string        `json:"searchInclude,omitempty"`
	SearchRevInclude  []string        `json:"searchRevInclude,omitempty"`
	SearchParam       []CSSearchParam `json:"searchParam,omitempty"`
	Operation         []CSOperation   `json:"operation,omitempty"`
	Documentation     string          `json:"documentation,omitempty"`
}

// CSExtension is an extension of a canonical value.
type CSExtension struct {
	URL            string `json:"url"`
	ValueCanonical string `json:"valueCanonical,omitempty"`
}

// CSInteraction is an interaction code.
type CSInteraction struct {
	Code string `json:"code"`
}

// CSSearchParam is a supported search parameter.
type CSSearchParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// CSOperation is a supported operation.
type CSOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

var (
	typeInteractions = []string{InteractionRead, InteractionVRead, InteractionUpdate, InteractionPatch, InteractionDelete,
		InteractionHistoryInstance, InteractionHistoryType, InteractionCreate, InteractionSearchType}
	systemInteractions = []string{"transaction", "batch", "search-system", InteractionHistorySystem}
)

// AddCapabilities registers a contributor; call before serving.
func (s *Server) AddCapabilities(f CapabilityContributor) { s.contributors = append(s.contributors, f) }

// capabilityStatement generates the statement from the route table and
// the contributors: what is claimed is exactly what is registered.
func (s *Server) capabilityStatement(base string) *CapabilityStatement {
	registered := map[string]bool{}
	for _, r := range s.routes {
		registered[r.Name] = true
	}
	registered["batch"] = registered[InteractionTransaction] // one route serves both
	cs := &CapabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           fhir.FormatInstant(s.started),
		Publisher:      "fhirgate",
		Kind:           "instance",
		Software:       &csSoftware{Name: s.cfg.Software, Version: s.cfg.Version},
		Implementation: &csImplementation{Description: "fhirgate FHIR R4 records gateway", URL: base},
		FHIRVersion:    "4.0.1",
		Format:         []string{"application/fhir+json", "json"},
		PatchFormat:    []string{"application/json-patch+json"},
	}
	rest := CSRest{Mode: "server"}
	var codes []CSInteraction
	for _, code := range typeInteractions {
		if registered[code] {
			codes = append(codes, CSInteraction{Code: code})
		}
	}
	for _, t := range fhir.ResourceTypes {
		rest.Resource = append(rest.Resource, CSResource{
			Type:              t,
			Profile:           "http://hl7.org/fhir/StructureDefinition/" + t,
			Interaction:       codes,
			Versioning:        "versioned-update",
			ReadHistory:       registered[InteractionVRead],
			UpdateCreate:      registered[InteractionUpdate],
			ConditionalRead:   "not-supported",
			ConditionalCreate: registered[InteractionCreate] && registered[InteractionSearchType],
			ConditionalUpdate: registered[InteractionConditionalUpdate],
			ConditionalDelete: condDelete(registered[InteractionConditionalDelete]),
		})
	}
	for _, code := range systemInteractions {
		if registered[code] {
			rest.Interaction = append(rest.Interaction, CSInteraction{Code: code})
		}
	}
	cs.Rest = []CSRest{rest}
	for _, f := range s.contributors {
		f(cs)
	}
	s.auditCapabilities(cs)
	return cs
}

// auditSearchParams are the AuditEvent search parameters the gateway
// claims for its trail.
var auditSearchParams = []string{"_id", "_lastUpdated", "action", "agent", "date", "entity", "outcome", "patient", "subtype", "type"}

// auditCapabilities declares the audit trail read-only: AuditEvents are
// written by the gateway alone (every write answers 405), read and
// searched by the parties they concern.
func (s *Server) auditCapabilities(cs *CapabilityStatement) {
	r := cs.ResourceEntry("AuditEvent")
	if r == nil {
		return
	}
	if s.cfg.Auditor == nil {
		// no trail: nothing to read, and nobody writes AuditEvents
		res := cs.Rest[0].Resource
		i := slices.IndexFunc(res, func(r CSResource) bool { return r.Type == "AuditEvent" })
		cs.Rest[0].Resource = slices.Delete(res, i, i+1)
		return
	}
	r.Interaction = []CSInteraction{{Code: InteractionRead}, {Code: InteractionVRead}, {Code: InteractionHistoryInstance}, {Code: InteractionHistoryType}, {Code: InteractionSearchType}}
	r.ReadHistory, r.UpdateCreate, r.ConditionalCreate, r.ConditionalUpdate = false, false, false, false
	r.ConditionalDelete, r.Versioning = "not-supported", "versioned"
	r.SearchInclude, r.SearchRevInclude = nil, nil
	r.SearchParam = slices.DeleteFunc(r.SearchParam, func(p CSSearchParam) bool { return !slices.Contains(auditSearchParams, p.Name) })
	r.Documentation = "The audit trail is the gateway's alone: every access and import is recorded by the gateway, and create, update, patch and delete answer 405. " +
		"A patient reads the events about itself, a provider those of its own accesses, a system client the whole trail only with a scope that names AuditEvent (system/AuditEvent.rs)."
}

// maxCachedBases bounds the CapabilityStatements kept: a gateway answers
// under one base URL, or a few names of itself; beyond that, a new base
// takes the place of one kept before.
const maxCachedBases = 8

func (s *Server) capabilities(c *gin.Context) {
	if mode := c.Query("mode"); mode != "" && mode != "full" {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "not-supported", []string{"mode"}, "only mode=full is supported"))
		return
	}
	base := s.baseURL(c.Request)
	s.capsMu.Lock()
	b, ok := s.capsCache[base]
	s.capsMu.Unlock()
	if ok {
		s.writeJSON(c, http.StatusOK, b)
		return
	}
	cs := s.capabilityStatement(base)
	sec, complete := s.restSecurity(c.Request.Context())
	cs.Rest[0].Security = sec
	b, err := json.Marshal(cs)
	if err != nil {
		s.fail(c, err)
		return
	}
	if complete {
		s.capsMu.Lock()
		if s.capsCache == nil {
			s.capsCache = map[string][]byte{}
		}
		if len(s.capsCache) >= maxCachedBases {
			// make room: a full cache that refused new bases would keep
			// whatever hosts a caller sent first, and the gateway's own
			// would be built for every request from then on
			for k := range s.capsCache {
				delete(s.capsCache, k)
				break
			}
		}
		s.capsCache[base] = b
		s.capsMu.Unlock()
	}
	s.writeJSON(c, http.StatusOK, b)
}

// ResourceEntry returns the statement's entry for a type, for contributors.
func (cs *CapabilityStatement) ResourceEntry(typ string) *CSResource {
	i, ok := slices.BinarySearchFunc(cs.Rest[0].Resource, typ, func(r CSResource, t string) int { return strings.Compare(r.Type, t) })
	if !ok {
		return nil
	}
	return &cs.Rest[0].Resource[i]
}

// operationCapabilities lists the registered operations.
func (s *Server) operationCapabilities(cs *CapabilityStatement) {
	for i := range s.operations {
		op := &s.operations[i]
		entry := CSOperation{Name: op.Name, Definition: s.definitionURL(op)}
		if op.System {
			cs.Rest[0].Operation = append(cs.Rest[0].Operation, entry)
		}
		if !op.Type && !op.Instance {
			continue
		}
		for i := range cs.Rest[0].Resource {
			r := &cs.Rest[0].Resource[i]
			if op.Types == nil || slices.Contains(op.Types, r.Type) {
				r.Operation = append(r.Operation, entry)
			}
		}
	}
}

func condDelete(ok bool) string {
	if ok {
		return "multiple"
	}
	return "not-supported"
}

// unclaimedParams are defined for every type but not searchable here (the
// parser ignores them with a warning), so they are not claimed.
var unclaimedParams = map[string]bool{"_text": true, "_content": true, "_list": true, "_query": true, "_filter": true}

// searchCapabilities lists every search parameter of every type, and the
// include/revinclude forms.
func (s *Server) searchCapabilities(cs *CapabilityStatement) {
	for i := range cs.Rest[0].Resource {
		r := &cs.Rest[0].Resource[i]
		for _, p := range s.cfg.Search.Params(r.Type) {
			if p.Type.String() == "special" || unclaimedParams[p.Code] {
				continue
			}
			r.SearchParam = append(r.SearchParam, CSSearchParam{Name: p.Code, Definition: p.URL, Type: p.Type.String()})
			if p.Type.String() == "reference" {
				r.SearchInclude = append(r.SearchInclude, r.Type+":"+p.Code)
			}
		}
		r.SearchInclude = append(r.SearchInclude, "*")
		r.SearchRevInclude = append(r.SearchRevInclude, "*")
	}
}
